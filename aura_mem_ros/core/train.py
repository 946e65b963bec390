"""The one trainer: every memory (AURA layer, KV cache, GRU, fixed-schedule gates) is trained
here, by ``Trainer.train``: one loop, one budget controller, a pluggable gate objective,
callbacks for validation, early stopping and progress (and data collection: DAgger).

Objective per batch of whole sequences (B sequences of T steps; memory carried through):

    L = action_error(actions | writes) + gate_weight * gate_loss

action_error is the masked cross-entropy (discrete logits (B, T, 1, n)) or L1 (continuous
chunks (B, T, chunk, dim), as OpenVLA-OFT) of the actions the layer produces when memory is
written on the objective's schedule; head, memory projections and beta learn from it through
time (BPTT through the delta-rule memory). The gate objective (``objectives.py``) decides the
schedule and the gate's loss:

- ``CounterfactualGate`` (reference): benefit_t = L(g_t = 0) - L(g_t = 1), the summed action
  loss of the sequence (or of an H-step window: ``horizon``) without vs with the write at t,
  every other decision held; the gate is fitted (BCE) to write where benefit_t > price.
- ``StraightThroughGate``: first-order dL/dg_t through the hard decision (price in the loss).
- ``FixedGate``: no gate learning (always/random/periodic/score gates, KV cache, GRU).

Cost of the counterfactual objective (``write_benefits``; measured by ``make bench-gate-cost``
= ``aura-mem-bench gate-cost`` -> docs/results/gate_cost.json, one thread on the shared 2-core
machine, so upper bounds), per 1,000 sequence steps, batch of 32, the shipped MiniGrid layer:
MiniGrid episodes (T <= 13 here): exact 0.24 s, horizon 8 0.15 s (the same write decisions as
exact on every step), the reference (two full re-runs per step) 1.27 s; never-reset streams of
12 episodes (T <= 129): exact 1.7 s, horizon 24 0.32 s (92% the same decisions), reference
9.9 s. (The prototype measured 0.88 / 10.8 s exact under heavier load.) Exact costs O(T^2)
step evaluations per sequence, horizon H O(T H). The whole 3,000-iteration MiniGrid run
(batch 64, DAgger rollouts, closed-loop validation) took 966 s (models/mini/train_report.json).

Budget: ONE controller (``PriceController``) for every learned gate. The price of a write
(in the objective's units: summed nats for the counterfactual gate, logit units for
straight-through) follows dual ascent on the relative write-rate error,
    integral <- max(floor, integral + lr * e),  e = clip((rate - budget) / budget, -1, 1)
    price = max(floor, integral + p_gain * e_smoothed)
where rate is the batch's write rate. Budget None: the price stays at its floor.

Warm-up (``warmup`` iterations): no price; the counterfactual gate writes every step, so
the head and projections learn to read a written memory before writes are priced.

Validation and early stopping: every ``eval_every`` iterations ``validate`` runs held-out
sequences with the inference rollout (the gate decides), or a ``selector`` scores the model
(e.g. closed-loop success on validation seeds where a simulator exists). The best eligible
checkpoint (after the warm-up, write rate within budget x ``rate_slack``) is kept; ``patience``
evaluations without improvement stop the run. At the end the best is restored; if it is not
better than the start, the START weights are restored and ``TrainResult.improved`` is False
(a warning; ``aura-mem-train`` then exits non-zero unless ``--allow-worse``).

Who calls it: ``aura-mem-train`` (``retrain/cli.py``: ``CounterfactualGate`` on bag windows),
``make train-default`` (``aura_mem_dev/training/recipes.py``: AURA by ``CounterfactualGate``
with DAgger callbacks, the KV arm by ``FixedGate("always")``), and through ``train_aura`` (the
older entry point, kept as a thin mapping onto ``Trainer`` with ``StraightThroughGate`` /
``FixedGate``) the synthetic benchmark and the arm recipe (``aura_mem_dev/arm``).
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from aura_mem_ros.core.batch import (
    SequenceBatch,
    SequenceModel,
    action_loss,
    is_discrete,
    step_mask,
)
from aura_mem_ros.core.evaluation import calibrate_threshold, evaluate, write_rate
from aura_mem_ros.core.gates import get_gate
from aura_mem_ros.core.objectives import (
    Context,
    CounterfactualGate,
    FixedGate,
    GateObjective,
    StraightThroughGate,
)

__all__ = [
    "CounterfactualGate",
    "FixedGate",
    "PriceController",
    "SequenceBatch",
    "SequenceModel",
    "StraightThroughGate",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "action_loss",
    "calibrate_threshold",
    "evaluate",
    "train_aura",
    "validate",
    "write_rate",
]

# source(batch_size, generator) -> one training batch
Source = Callable[[int, torch.Generator], SequenceBatch]
CRITERIA = ("loss", "accuracy", "memory_accuracy")


@dataclass(frozen=True)
class TrainerConfig:
    iterations: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    lr_final: float | None = None  # cosine decay from lr to lr_final (None: constant)
    gate_lr_scale: float = 1.0  # learning-rate multiplier of parameters named gate_*
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    gate_weight: float = 1.0
    seed: int = 0
    # budget controller
    budget: float | None = None  # writes/step upper bound (None: the price stays at its floor)
    price_lr: float = 0.05
    price_p_gain: float = 0.0  # proportional term (damps the integral's overshoot)
    price_init: float = 0.0
    warmup: int = 0  # iterations before the price runs (counterfactual gate: always-write)
    # validation / early stopping
    eval_every: int = 50
    patience: int | None = None  # evaluations without improvement before stopping
    # what validation minimises: "loss" (held-out action loss), "accuracy" (discrete: 1 -
    # per-step accuracy) or "memory_accuracy" (discrete: 1 - accuracy on the held-out steps
    # memory decides, see ``validate``; ties broken by the loss). A selector, where given,
    # overrides it.
    criterion: str = "loss"
    rate_slack: float = 1.25  # a checkpoint writing > budget x slack is not eligible
    # nothing beat the start on validation: restore the start weights (False: keep the best
    # eligible checkpoint, else the last weights; ``improved`` is False either way)
    restore_start: bool = True

    def __post_init__(self) -> None:
        if self.iterations <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ValueError("iterations, batch_size and lr must be positive")
        if self.lr_final is not None and self.lr_final <= 0:
            raise ValueError("lr_final must be positive (or None)")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise ValueError("budget must lie in (0, 1] writes/step (or None)")
        if self.warmup < 0 or self.eval_every <= 0:
            raise ValueError("warmup >= 0 and eval_every > 0 required")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be >= 1 evaluations (or None)")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")


class PriceController:
    """The price of one write: dual ascent on the relative write-rate error (+ optional P)."""

    def __init__(
        self, budget: float | None, floor: float, lr: float, p_gain: float = 0.0, init: float = 0.0
    ):
        self.budget, self.floor, self.lr, self.p_gain = budget, floor, lr, p_gain
        self.integral = self.price = max(floor, init)
        self.error = 0.0  # smoothed relative error: one batch's rate is noisy

    def update(self, rate: float) -> float:
        if self.budget is not None:
            now = max(-1.0, min(1.0, (rate - self.budget) / self.budget))
            self.error = 0.5 * self.error + 0.5 * now
            self.integral = max(self.floor, self.integral + self.lr * now)
            self.price = max(self.floor, self.integral + self.p_gain * self.error)
        return self.price


@torch.no_grad()
def validate(
    model: SequenceModel, batches: Sequence[SequenceBatch], gate: str, threshold: float | None
) -> dict[str, float]:
    """Inference rollout (the gate decides) on fixed held-out batches: mean action loss,
    write rate, and accuracy (discrete) or L1 (continuous) per step. Discrete also:
    ``memory_accuracy``, the accuracy on the steps memory decides: those whose label the
    memoryless backbone's own action misses, plus those where the layer overrode the
    backbone (labels only; an override that is wrong counts against it, so flipping every
    fork does not score; NaN when there are none)."""
    was = model.training
    model.eval()
    loss = writes = steps = score = 0.0
    hard_steps = hard_ok = 0.0
    for batch in batches:
        out = model.forward_sequence(
            batch.features,
            batch.base_actions,
            gate=gate,
            threshold=threshold,
            generator=torch.Generator().manual_seed(0),
        )
        mask = step_mask(batch)
        n = float(mask.sum())
        loss += float(action_loss(out.actions, batch)) * n
        writes += float((out.writes * mask).sum())
        steps += n
        if is_discrete(batch):
            ok = (out.actions[:, :, 0].argmax(-1) == batch.targets).to(mask.dtype)
            score += float((ok * mask).sum())
            # the steps memory decides: the backbone alone is wrong, or the layer overrode it
            base = batch.base_actions[:, :, 0].argmax(-1)
            decided = (base != batch.targets) | (out.actions[:, :, 0].argmax(-1) != base)
            decided = decided.to(mask.dtype) * mask
            hard_steps += float(decided.sum())
            hard_ok += float((ok * decided).sum())
        else:
            score += float(((out.actions - batch.targets).abs().mean(dim=(-2, -1)) * mask).sum())
    model.train(was)
    metrics = {"loss": loss / steps, "write_rate": writes / steps}
    if is_discrete(batches[0]):
        metrics["accuracy"] = score / steps
        metrics["memory_accuracy"] = hard_ok / hard_steps if hard_steps else math.nan
    else:
        metrics["l1"] = score / steps
    return metrics


def _beats(best: dict[str, float] | None, start: dict[str, float], criterion: str | bool) -> bool:
    """Better than the start on the criterion and not worse on the rest of the held-out
    steps either (a layer that fixes the memory steps by breaking others is not an
    improvement a robot user wants). For ``memory_accuracy`` "the rest" is the accuracy on
    every step, the action the robot executes; for ``accuracy`` it is the loss. Not the loss
    for memory_accuracy: on a few held-out episodes a handful of confidently wrong steps
    outweigh it (a MiniGrid layer at 0.96/0.93 closed-loop success was refused for a
    held-out loss of 0.513 against the start's 0.468)."""
    if best is None or best["criterion"] >= start["criterion"]:
        return False
    if criterion == "memory_accuracy" and math.isfinite(best.get("memory_accuracy", math.nan)):
        return best["accuracy"] >= start["accuracy"]
    return criterion in (False, "loss") or best["loss"] <= start["loss"]


def criterion_of(metrics: dict[str, float], criterion: str) -> float:
    """Lower is better. Accuracy criteria are ties broken by the loss (1e-3 of it); one that
    the metrics cannot give (continuous actions, no hard steps) falls back to the loss."""
    if criterion == "loss":
        return metrics["loss"]
    value = metrics.get(criterion)
    if value is None or math.isnan(value):
        return metrics["loss"]
    return 1.0 - value + 1e-3 * metrics["loss"]


class Callback(Protocol):
    """Called with event "iteration" (info: it, loss, gate_loss, write_rate, price) and
    "validation" (info: it, metrics); may set ``trainer.stop = True``."""

    def __call__(self, event: str, trainer: Trainer, info: dict[str, Any]) -> None: ...


def print_progress(every: int = 50) -> Callback:
    def callback(event: str, trainer: Trainer, info: dict[str, Any]) -> None:
        if event == "iteration" and info["it"] % every == 0:
            keys = ("it", "loss", "gate_loss", "write_rate", "price")
            print(" ".join(f"{k}={info[k]:.4g}" for k in keys), flush=True)
        elif event == "validation":
            metrics = {k: round(v, 4) for k, v in info["metrics"].items() if v is not None}
            print(f"  validation @{info['it']}: {metrics}", flush=True)

    return callback


def progress_bar(total: int, desc: str) -> Callback:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False)

    def callback(event: str, trainer: Trainer, info: dict[str, Any]) -> None:
        if event == "iteration":
            bar.set_postfix(loss=f"{info['loss']:.3f}", writes=f"{info['write_rate']:.3f}")
            bar.update(1)
            if info["it"] + 1 >= total:
                bar.close()

    return callback


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    start_val: dict[str, float] | None = None
    best_val: dict[str, float] | None = None
    best_it: int = -1  # -1: no validation, or the start was kept
    improved: bool = True
    price: float = 0.0  # the price the layer keeps (straight-through: folded into the gate)
    threshold: float | None = None  # the threshold the model was trained (and should run) at
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def lagrange_multiplier(self) -> float:
        return self.price

    @property
    def write_rate(self) -> float:
        return self.history[-1]["write_rate"] if self.history else float("nan")


class Trainer:
    """``Trainer(model, source, objective, config, ...).train()`` = the one loop.

    validation: fixed held-out batches (``validate``); selector(model) -> {"score": higher
    is better, "write_rate": ...} replaces the held-out loss as the checkpoint criterion."""

    def __init__(
        self,
        model: nn.Module,
        source: Source,
        objective: GateObjective,
        config: TrainerConfig,
        validation: Sequence[SequenceBatch] | None = None,
        callbacks: Sequence[Callback] = (),
        selector: Callable[[nn.Module], dict[str, float]] | None = None,
    ):
        self.model, self.source, self.objective, self.config = model, source, objective, config
        self.validation = list(validation) if validation else None
        self.selector = selector
        self.callbacks = list(callbacks)
        budget = config.budget if objective.learned else None
        self.controller = PriceController(
            budget, objective.price_floor, config.price_lr, config.price_p_gain, config.price_init
        )
        self.stop = False  # a callback may set it

    def _emit(self, event: str, info: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(event, self, info)

    def _validate(self) -> dict[str, float]:
        gate, threshold = self.objective.gate, self.objective.threshold()
        metrics: dict[str, Any] = {}
        if self.validation:
            metrics = validate(self.model, self.validation, gate, threshold)
        if self.selector is not None:
            sel = self.selector(self.model)
            metrics.update({f"selector_{k}": v for k, v in sel.items()})
            # lower is better: the negated score, ties broken by the held-out loss
            metrics["criterion"] = -sel["score"] + 1e-3 * metrics.get("loss", 0.0)
            metrics.setdefault("write_rate", sel.get("write_rate", 0.0))
        else:
            metrics["criterion"] = criterion_of(metrics, self.config.criterion)
        metrics["threshold"] = threshold
        metrics["price"] = self.controller.price
        return metrics

    def _eligible(self, it: int, metrics: dict[str, float]) -> bool:
        cfg = self.config
        if self.objective.learned and it < cfg.warmup:
            return False
        if self.objective.learned and cfg.budget is not None:
            return metrics["write_rate"] <= cfg.budget * cfg.rate_slack
        return True

    def _optimizer(self) -> torch.optim.Optimizer:
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for _, p in named], "scale": 1.0}]
        if self.config.gate_lr_scale != 1.0:
            # a gate learning from a sparser per-step signal than the head: optionally faster
            groups = [
                {"params": [p for n, p in named if not n.startswith("gate_")], "scale": 1.0},
                {
                    "params": [p for n, p in named if n.startswith("gate_")],
                    "scale": self.config.gate_lr_scale,
                },
            ]
        groups = [g for g in groups if g["params"]]
        for g in groups:
            g["lr"] = self.config.lr * g["scale"]
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def train(self) -> TrainResult:
        cfg, model = self.config, self.model
        gen = torch.Generator().manual_seed(cfg.seed)
        res = TrainResult()
        t0 = time.perf_counter()
        checking = bool(self.validation) or self.selector is not None
        start_state = copy.deepcopy(model.state_dict())
        if checking:
            res.start_val = self._validate()
            self._emit("validation", {"it": -1, "metrics": res.start_val})
        best_state, best, since_best = None, math.inf, 0
        optim = self._optimizer()
        params = [p for p in model.parameters() if p.requires_grad]  # clipped together
        model.train()
        for it in range(cfg.iterations):
            if cfg.lr_final is not None:  # cosine from lr to lr_final
                frac = it / max(1, cfg.iterations - 1)
                lr = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * frac))
                for group in optim.param_groups:
                    group["lr"] = lr * group["scale"]
            warm = it < cfg.warmup
            ctx = Context(it, cfg.iterations, self.controller.price, cfg.budget, gen, warm)
            batch = self.source(cfg.batch_size, gen)
            out, gate_loss, rate = self.objective.training_pass(model, batch, ctx)
            loss_action = action_loss(out.actions, batch)
            loss = loss_action + cfg.gate_weight * gate_loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optim.step()
            if self.objective.learned and not warm:
                self.controller.update(rate)
            info = {
                "it": it,
                "loss": float(loss_action.detach()),
                "gate_loss": float(gate_loss.detach()),
                "write_rate": rate,
                "price": self.controller.price,
            }
            res.history.append(info)
            self._emit("iteration", info)
            if checking and ((it + 1) % cfg.eval_every == 0 or it == cfg.iterations - 1):
                metrics = self._validate()
                entry = {"it": it, "metrics": metrics}
                res.validations.append(entry)
                self._emit("validation", entry)
                if self._eligible(it, metrics):
                    if metrics["criterion"] < best:
                        best, since_best = metrics["criterion"], 0
                        best_state = copy.deepcopy(model.state_dict())
                        res.best_val, res.best_it = metrics, it
                    else:
                        since_best += 1
                if cfg.patience is not None and since_best >= cfg.patience:
                    res.stopped_early = True
                    break
            if self.stop:
                res.stopped_early = True
                break
        price = self.controller.price
        if checking:
            if best_state is not None:
                model.load_state_dict(best_state)
                price = res.best_val["price"] if res.best_val else price
            assert res.start_val is not None
            if not _beats(res.best_val, res.start_val, self.selector is None and cfg.criterion):
                res.improved = False
                kept = "the best trained weights are kept anyway"
                if cfg.restore_start:
                    model.load_state_dict(start_state)
                    res.best_it, price, kept = -1, 0.0, "the start weights are kept"
                warnings.warn(
                    "training did not beat the starting layer on validation "
                    f"(start {res.start_val}, best {res.best_val}): {kept}",
                    stacklevel=2,
                )
        elif res.history:  # no validation: the price over the last tenth (one batch is noisy)
            tail = res.history[-max(1, len(res.history) // 10) :]
            price = statistics.fmean(h["price"] for h in tail)
        restored = checking and not res.improved and cfg.restore_start
        res.price = 0.0 if restored else self.objective.finish(model, price)
        res.threshold = self.objective.threshold()
        res.seconds = time.perf_counter() - t0
        model.eval()
        return res


# ---------------------------------------------------------------------------------------------
# compatibility entry point (synthetic benchmark, arm recipe): straight-through or fixed gate
@dataclass(frozen=True)
class TrainConfig:
    """``train_aura``'s options; mapped onto ``TrainerConfig`` + an objective."""

    iterations: int = 300
    lr: float = 1e-2
    gate_lr_scale: float = 10.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    target_write_rate: float | None = None
    lambda_lr: float = 0.05
    lambda_p: float = 0.3
    lambda_init: float = 0.0
    budget_warmup: float = 0.25  # fraction of iterations before writes are priced
    explore_fraction: float = 0.7
    calibrate_every: int = 25
    progress: bool = False
    desc: str = "train"
    seed: int = 0


def _source(batches: Iterable[SequenceBatch] | Callable[[int], SequenceBatch]) -> Source:
    def counted() -> Iterator[SequenceBatch]:
        i = 0
        while True:
            yield batches(i)  # type: ignore[operator]
            i += 1

    stream = counted() if callable(batches) else iter(batches)
    return lambda batch_size, generator: next(stream)


def train_aura(
    model: SequenceModel,
    batches: Iterable[SequenceBatch] | Callable[[int], SequenceBatch],
    config: TrainConfig,
    *,
    gate: str = "learned",
    threshold: float | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.iterations`` batches with ``Trainer``: the learned gate
    by ``StraightThroughGate`` under the budget controller (PI), any other gate by
    ``FixedGate``. No validation: the price over the last tenth is folded into the gate."""
    spec = get_gate(gate)
    budget = config.target_write_rate
    if budget is None:
        budget = getattr(getattr(model, "config", None), "target_write_rate", None)
    objective: GateObjective
    if spec.learned:
        objective = StraightThroughGate(config.explore_fraction, threshold)
    else:
        objective = FixedGate(gate, threshold, config.calibrate_every)
    trainer_config = TrainerConfig(
        iterations=config.iterations,
        lr=config.lr,
        gate_lr_scale=config.gate_lr_scale,
        weight_decay=config.weight_decay,
        grad_clip=config.grad_clip,
        seed=config.seed,
        budget=budget,
        price_lr=config.lambda_lr,
        price_p_gain=config.lambda_p,
        price_init=config.lambda_init,
        warmup=round(config.budget_warmup * config.iterations),
    )
    callbacks = [progress_bar(config.iterations, config.desc)] if config.progress else []
    result = Trainer(model, _source(batches), objective, trainer_config, None, callbacks).train()
    result.threshold = threshold if spec.learned else objective.threshold()
    return result
