"""Training through time: whole sequences, hard write decisions, a write budget.

Loss per batch of sequences

    L = action_error(actions, targets) + (λ + write_penalty) · mean_t g_t

where action_error is cross-entropy (discrete logits) or L1 (continuous chunks, as
OpenVLA-OFT), over every step of every sequence, and the rollout is the one inference runs:
the gate's hard decision g_t = [p_t > threshold] decides what is written and read.

Estimator: straight-through. The forward pass uses the hard g_t ∈ {0, 1} (so the states the
loss sees are the states inference visits: no train/test mismatch), and the backward pass
hands dL/dg_t to the gate's (bounded) logit z_t unchanged, i.e. dg/dz = 1. Because the
memory update is W ← W + g β k̂ eᵀ, the gradient
dL/dg_t = <dL/dW_{t+1}, β k̂ eᵀ> + <dL/da_t, Δa_t> is defined even where g_t = 0:
it is the first-order effect on ALL later actions of writing at step t. That is what lets
the gate learn to store a cue whose effect on the action is delayed. A relaxed (soft /
Gumbel-sigmoid) estimator would write p_t·Δ at every step during training, so the model
would learn to rely on small soft writes that never happen at inference.

Exploration: for the first ``explore_fraction`` of training the hard writes are drawn,
P(write) = σ((z - logit threshold)/τ) with τ annealed 1 -> 0, instead of thresholded (still
0/1 writes, so still no soft leak); the rest of training thresholds, exactly as inference.
Without it every step's logit crosses the threshold together while the gate is still
undifferentiated, and the rate jumps between all and nothing.

Budget: λ is a Lagrange multiplier for "writes/step <= target": the price of a write, both
in the loss (above) and in the decision (a step is written iff its gate logit exceeds
logit(threshold) + λ, so the rate answers a price change at once). It is a PI controller on
the relative rate error ε = clip((rate - target)/target, ±1): λ = max(0, λ_I + k_p ε̄) with
λ_I ← max(0, λ_I + η ε) after every batch (dual ascent plus a damping term); it stays 0 while
the gate writes less than the budget. At the end λ is folded into the gate
(AuraLayer.gate_offset). The threshold can afterwards be re-tuned to a (different) budget
without retraining with ``calibrate_threshold``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor, nn

from aura_mem_ros.core.aura import SequenceOutput
from aura_mem_ros.core.gates import get_gate


@dataclass
class SequenceBatch:
    """A batch of whole sequences.

    features (B, T, d_model); base_actions (B, T, chunk, dim) (logits (B, T, 1, n) if
    discrete); targets (B, T) class ids (discrete) or (B, T, chunk, dim) (continuous);
    mask (B, T) loss weights (padding = 0); writes (B, T) forced decisions (oracle gate only).
    """

    features: Tensor
    base_actions: Tensor
    targets: Tensor
    mask: Tensor | None = None
    writes: Tensor | None = None


class SequenceModel(Protocol):
    """What train/evaluate need: AuraLayer and every baseline in ``baselines`` speak it."""

    def forward_sequence(
        self,
        features: Tensor,
        base_actions: Tensor,
        *,
        gate: str = ...,
        threshold: float | None = ...,
        writes: Tensor | None = ...,
        generator: torch.Generator | None = ...,
    ) -> SequenceOutput: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...


@dataclass
class TrainConfig:
    iterations: int = 300
    lr: float = 1e-2
    gate_lr_scale: float = 10.0  # learning-rate multiplier of parameters named gate_*
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    target_write_rate: float | None = None  # writes/step budget (None: no controller)
    write_penalty: float = 0.0  # fixed cost per write in the loss, on top of the multiplier
    lambda_lr: float = 0.05  # dual-ascent (integral) step of the multiplier, logit units
    lambda_p: float = 0.3  # proportional term: damps the overshoot of the pure integral
    lambda_init: float = 0.0
    # Batches before the controller starts: the gate starts open (AuraConfig.gate_init_bias),
    # so the head first learns to use written memories; only then are writes priced.
    budget_warmup: float = 0.25  # fraction of iterations
    # Fraction of iterations in which the learned gate's hard writes are drawn at random
    # around the threshold (P = σ((z - logit threshold) / temperature)) rather than
    # thresholded: the write rate then moves smoothly with the gate instead of every step
    # crossing the threshold at once (a cliff the controller cannot steer). The temperature
    # anneals from 1 to 0 over that fraction; the rest of training thresholds, i.e. trains on
    # exactly the rollout inference will run.
    explore_fraction: float = 0.7
    # The multiplier also raises the decision threshold (in logit units), so the rate answers
    # the price at once instead of after the gate has re-learned (which made λ overshoot).
    price_decisions: bool = True
    calibrate_every: int = 25  # score gates (reconstruction, similarity): re-match the budget
    progress: bool = False  # tqdm bar
    desc: str = "train"
    seed: int = 0


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    lagrange_multiplier: float = 0.0
    threshold: float | None = None  # the threshold the model was trained (and should run) at

    @property
    def write_rate(self) -> float:
        return self.history[-1]["write_rate"] if self.history else float("nan")


def is_discrete(batch: SequenceBatch) -> bool:
    return not torch.is_floating_point(batch.targets)


def _mask(batch: SequenceBatch) -> Tensor:
    if batch.mask is not None:
        return batch.mask.to(batch.features.dtype)
    return torch.ones(batch.features.shape[:2], dtype=batch.features.dtype)


def action_loss(actions: Tensor, batch: SequenceBatch) -> Tensor:
    """Masked mean over steps: CE on logits (B, T, 1, n) or L1 on (B, T, chunk, dim)."""
    mask = _mask(batch)
    if is_discrete(batch):
        per_step = F.cross_entropy(
            actions[:, :, 0].flatten(0, 1), batch.targets.flatten(), reduction="none"
        ).view(mask.shape)
    else:
        per_step = (actions - batch.targets).abs().mean(dim=(-2, -1))
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


def _batches(
    source: Iterable[SequenceBatch] | Callable[[int], SequenceBatch],
) -> Iterator[SequenceBatch]:
    if callable(source):
        i = 0
        while True:
            yield source(i)
            i += 1
    else:
        yield from source


def _forward(
    model: SequenceModel,
    batch: SequenceBatch,
    gate: str,
    threshold: float | None,
    generator: torch.Generator | None,
    explore: float = 0.0,
) -> SequenceOutput:
    extra = {"explore": explore} if explore > 0 else {}
    return model.forward_sequence(
        batch.features,
        batch.base_actions,
        gate=gate,
        threshold=threshold,
        writes=batch.writes if get_gate(gate).needs_writes else None,
        generator=generator,
        **extra,
    )


def _priced(threshold: float, lam: float) -> float:
    """The probability threshold whose logit is ``lam`` above ``threshold``'s."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return 1.0 / (1.0 + math.exp(-(math.log(t / (1 - t)) + lam)))


def train_aura(
    model: SequenceModel,
    batches: Iterable[SequenceBatch] | Callable[[int], SequenceBatch],
    config: TrainConfig,
    *,
    gate: str = "learned",
    threshold: float | None = None,
) -> TrainResult:
    """Train ``model`` (an AuraLayer or a baseline) for ``config.iterations`` batches.

    gate: how writes are decided during training (and hence at inference): "learned" trains
    the gate with the straight-through estimator and the budget controller; score gates
    ("reconstruction", "similarity", "action_surprise") get their threshold re-calibrated to
    the budget every ``calibrate_every`` batches; "random"/"periodic" run at the budget rate.
    """
    spec = get_gate(gate)
    budget = config.target_write_rate
    if budget is None:
        budget = getattr(getattr(model, "config", None), "target_write_rate", None)
    if spec.threshold_is_rate and budget is not None:
        threshold = budget
    generator = torch.Generator().manual_seed(config.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    # The gate must tell useful writes from useless ones before the budget bites, from a
    # per-step signal (dL/dg) that is much sparser than the action loss's: it learns faster.
    groups = [
        {"params": [p for n, p in named if not n.startswith("gate_")], "lr": config.lr},
        {
            "params": [p for n, p in named if n.startswith("gate_")],
            "lr": config.lr * config.gate_lr_scale,
        },
    ]
    optim = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    lam_i, error = config.lambda_init, 0.0  # integral part, smoothed relative rate error
    lam = lam_i
    base_threshold = threshold
    if spec.learned and base_threshold is None:
        base_threshold = model.config.threshold  # type: ignore[attr-defined]
    result = TrainResult(threshold=threshold)
    stream = _batches(batches)
    bar = None
    if config.progress:
        from tqdm import tqdm

        bar = tqdm(total=config.iterations, desc=config.desc, leave=False)
    for it in range(config.iterations):
        batch = next(stream)
        if spec.score_threshold and budget is not None and it % config.calibrate_every == 0:
            threshold = calibrate_threshold(model, [batch], budget, gate=gate)
        explore_iters = config.explore_fraction * config.iterations
        explore = 1.0 - it / explore_iters if spec.learned and it < explore_iters else 0.0
        step_threshold = threshold
        if spec.learned:
            step_threshold = _priced(base_threshold, lam if config.price_decisions else 0.0)
        out = _forward(model, batch, gate, step_threshold, generator, explore)
        mask = _mask(batch)
        loss_action = action_loss(out.actions, batch)
        rate = (out.writes * mask).sum() / mask.sum().clamp_min(1.0)
        loss = loss_action
        priced = it >= config.budget_warmup * config.iterations
        if spec.learned and priced:
            loss = loss + (lam + config.write_penalty) * rate
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        optim.step()
        hard_rate = float(rate.detach())
        if spec.learned and budget is not None and priced:
            # relative error, clipped: λ ramps up slowly (the gate has time to tell useful
            # writes from useless ones before writes get expensive) and falls as fast when
            # the rate undershoots, so an over-shut gate can re-open.
            now = min(1.0, max(-1.0, (hard_rate - budget) / budget))
            error = 0.5 * error + 0.5 * now  # one batch's rate is noisy
            lam_i = max(0.0, lam_i + config.lambda_lr * now)
            lam = max(0.0, lam_i + config.lambda_p * error)
        result.history.append(
            {"loss": float(loss_action.detach()), "write_rate": hard_rate, "lambda": lam}
        )
        if bar is not None:
            bar.set_postfix(loss=f"{float(loss_action):.3f}", writes=f"{hard_rate:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    # The price the layer keeps: λ averaged over the last tenth of training (one batch's λ
    # carries that batch's noise through the proportional term).
    tail = result.history[-max(1, config.iterations // 10) :]
    lam = statistics.fmean(h["lambda"] for h in tail) if tail else lam
    result.lagrange_multiplier = lam
    if spec.learned and lam > 0 and config.price_decisions:
        # Fold the price into the gate: the layer alone, at its configured threshold, now
        # makes the decisions it was trained with.
        with torch.no_grad():
            model.gate_offset += lam  # type: ignore[attr-defined]
    result.threshold = threshold
    return result


@torch.no_grad()
def evaluate(
    model: SequenceModel,
    batch: SequenceBatch,
    *,
    gate: str = "learned",
    threshold: float | None = None,
    score_mask: Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy (discrete) or L1 (continuous) on ``score_mask`` steps, plus write counts."""
    out = _forward(model, batch, gate, threshold, torch.Generator().manual_seed(seed))
    score = _mask(batch) if score_mask is None else score_mask.to(batch.features.dtype)
    n = score.sum().clamp_min(1.0)
    result = {
        "writes_per_seq": float(out.writes.sum(1).mean()),
        "steps_per_seq": float(batch.features.shape[1]),
        "write_rate": float(out.writes.mean()),
        "loss": float(action_loss(out.actions, batch)),
    }
    if is_discrete(batch):
        correct = (out.actions[:, :, 0].argmax(-1) == batch.targets).to(score.dtype)
        result["accuracy"] = float((correct * score).sum() / n)
    else:
        l1 = (out.actions - batch.targets).abs().mean(dim=(-2, -1))
        result["l1"] = float((l1 * score).sum() / n)
    return result


@torch.no_grad()
def write_rate(
    model: SequenceModel,
    batches: Iterable[SequenceBatch],
    *,
    gate: str = "learned",
    threshold: float | None = None,
) -> float:
    writes = steps = 0.0
    for batch in batches:
        out = _forward(model, batch, gate, threshold, torch.Generator().manual_seed(0))
        mask = _mask(batch)
        writes += float((out.writes * mask).sum())
        steps += float(mask.sum())
    return writes / max(steps, 1.0)


@torch.no_grad()
def calibrate_threshold(
    model: SequenceModel,
    batches: Iterable[SequenceBatch],
    target_rate: float,
    *,
    gate: str = "learned",
    iterations: int = 20,
) -> float:
    """The threshold at which ``gate`` writes ``target_rate`` writes/step on ``batches``.

    Bisection over full closed-loop rollouts (what is written changes later gate inputs, so
    the rate is measured, not read off one pass's scores). Learned gate: over log-odds
    [-30, 30]; score gates: over log-space [1e-4, 1e4]. Returns the threshold whose rate is
    closest to the target without exceeding it when one exists.
    """
    spec = get_gate(gate)
    if not (spec.learned or spec.score_threshold or spec.threshold_is_rate):
        raise ValueError(f"gate {gate!r} has no threshold to calibrate")
    if spec.threshold_is_rate:
        return float(target_rate)
    batches = list(batches)
    # bisection on a transformed axis: log for scores (any scale), log-odds for the learned
    # gate's probability (its values crowd near 0 and 1)
    if spec.learned:
        lo, hi = -30.0, 30.0

        def to_threshold(u: float) -> float:
            return 1.0 / (1.0 + math.exp(-u))
    else:
        lo, hi = math.log(1e-4), math.log(1e4)
        to_threshold = math.exp

    best, best_gap = hi, float("inf")
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        rate = write_rate(model, batches, gate=gate, threshold=to_threshold(mid))
        gap = abs(rate - target_rate)
        if rate <= target_rate and gap < best_gap:
            best, best_gap = mid, gap
        if rate > target_rate:
            lo = mid  # too many writes: raise the threshold
        else:
            hi = mid
    return to_threshold(best)
