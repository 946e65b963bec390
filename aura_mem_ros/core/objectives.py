"""Gate objectives for the one trainer (``train.py``): how a batch's writes are scheduled and
what the gate is fitted to. Each one is a ``training_pass(model, batch, ctx)`` returning the
outputs (with grad, for the action loss), the gate's loss and the batch's write rate.

- ``CounterfactualGate`` (the reference): the gate is fitted to the action utility of each
  write measured on the sequence itself (``write_benefits``: exact, or truncated to a
  horizon of H steps). No oracle: the schedule is the gate's own greedy decisions plus
  random exploration writes, with a share of dense random rows that teach the head to read.
- ``StraightThroughGate``: hard decisions forward, dL/dg to the gate's logit backward
  (first order; cheaper; on MiniGrid it converges to a "marker" write, see
  ``aura_mem_dev/training/recipes.py``). The synthetic benchmark and the arm use it.
- ``FixedGate``: nothing to learn in the gate (always / random / periodic / score gates at
  the budget, the oracle gate of the synthetic benchmark, the KV-cache and GRU baselines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from aura_mem_ros.core.aura import SequenceOutput
from aura_mem_ros.core.batch import (
    SequenceBatch,
    is_discrete,
    per_step_loss,
    select_rows,
    step_mask,
)
from aura_mem_ros.core.evaluation import calibrate_threshold
from aura_mem_ros.core.gates import get_gate
from aura_mem_ros.core.memory import MemoryState


@dataclass
class Context:
    """What an objective may know about the run at one iteration."""

    it: int
    iterations: int
    price: float  # the budget controller's current price of one write
    budget: float | None  # writes/step
    generator: torch.Generator
    warm: bool  # inside the warm-up (no price; the counterfactual gate writes every step)


class GateObjective(Protocol):
    gate: str  # the gate the trained model runs at inference
    learned: bool  # the gate is trained (the budget controller runs)
    price_floor: float  # the least a write must pay, in the objective's units

    def threshold(self) -> float | None: ...

    def training_pass(
        self, model: nn.Module, batch: SequenceBatch, ctx: Context
    ) -> tuple[SequenceOutput, Tensor, float]: ...

    def finish(self, model: nn.Module, price: float) -> float: ...


# ---------------------------------------------------------------------------------------------
# the exact (or truncated-horizon) counterfactual benefit of every write
@torch.no_grad()
def rollout_states(layer, batch: SequenceBatch, writes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Forced-write rollout caching the memory BEFORE every step.

    -> W (B, T, d_key, d_val), m (B, T, d_val), actions (B, T, chunk, dim)."""
    feats, base = batch.features, batch.base_actions
    pre = list(zip(*(p.unbind(1) for p in layer._precompute(feats)), strict=True))
    state = layer.init_state(feats.shape[0])
    ws, ms, acts = [], [], []
    for t in range(feats.shape[1]):
        ws.append(state.W)
        ms.append(state.m)
        out = layer._step(pre[t], base[:, t], state, "learned", None, writes[:, t], t, None)
        acts.append(out.action)
        state = out.state
    return torch.stack(ws, 1), torch.stack(ms, 1), torch.stack(acts, 1)


@torch.no_grad()
def write_benefits(
    layer,
    batch: SequenceBatch,
    writes: Tensor,
    horizon: int | None = None,
    chunk: int = 4096,
) -> Tensor:
    """benefit (B, T): L(g_t = 0) - L(g_t = 1), the summed action loss over the steps
    [t, t + horizon), every other decision as in ``writes`` (B, T) 0/1.

    Exact for horizon None (or >= T). One no-grad pass caches the memory state before every
    step; each flip then re-runs only its H-step window from that state, all flips of the
    batch together (rows of a chunk): cost T x H step evaluations per sequence instead of
    2 T^2 for re-running whole sequences."""
    mask = step_mask(batch)
    b_len, t_len = writes.shape
    h = t_len if horizon is None else min(horizon, t_len)
    discrete = is_discrete(batch)
    w_all, m_all, acts = rollout_states(layer, batch, writes)  # (B, T, k, v), (B, T, v)
    base_loss = per_step_loss(acts, batch.targets, discrete) * mask  # (B, T)
    b_idx, t_idx = mask.bool().nonzero(as_tuple=True)  # one flip per real step
    benefit = torch.zeros(b_len, t_len)
    for s in range(0, len(b_idx), chunk):
        bi, ti = b_idx[s : s + chunk], t_idx[s : s + chunk]  # (N,)
        idx = ti[:, None] + torch.arange(h)[None]  # (N, H) the window's steps
        valid = (idx < t_len).float()
        idx = idx.clamp(max=t_len - 1)
        rows = bi[:, None]
        win_w = writes[rows, idx] * valid  # (N, H) the schedule inside the window
        first = win_w[:, 0].clone()
        win_w[:, 0] = 1.0 - first  # the flip
        win_mask = mask[rows, idx] * valid
        out = layer.forward_sequence(
            batch.features[rows, idx],
            batch.base_actions[rows, idx],
            writes=win_w,
            state=MemoryState(w_all[bi, ti], m_all[bi, ti]),
        )
        flip = (per_step_loss(out.actions, batch.targets[rows, idx], discrete) * win_mask).sum(1)
        keep = (base_loss[rows, idx] * valid).sum(1)
        # written in the schedule: the flip removes the write; not written: adds it
        benefit[bi, ti] = torch.where(first > 0, flip - keep, keep - flip)
    return benefit


@dataclass
class CounterfactualGate:
    """Fit the gate (BCE) to write where the counterfactual benefit exceeds the price.

    Schedules per batch row (no oracle, only the gate's own decisions and random ones):
    a ``dense_fraction`` of the rows is written at random with P(write) ~ U(0.2, 1) (head
    only: a dense memory at a small beta still holds an early cue, so the head learns to
    read it without knowing where the cue was); the other rows run the gate's greedy
    schedule, an ``explore_rows`` share of them with ``explore_rate`` extra random writes
    per step so that a write the gate does not make yet can show its benefit; the gate is
    fitted on these rows. During the trainer's warm-up every step is written.

    horizon: None = exact benefit (cost O(T^2) step evaluations per sequence of T steps);
    H = truncated (O(T H)); a write's effect more than H steps later is ignored.
    benefit_rows: share of the gate rows whose benefits are measured (and the gate fitted
    on): a cost knob for long sequences.
    price_floor: nats (summed over the window) a write must at least pay, even under budget.
    censor_tail: with a horizon H, fit the gate only on steps whose H-step window lies inside
    the sequence. Near the end of a training window a write's benefit is not zero but
    unobserved: a write that pays off in the NEXT episode (never-reset streams: a mark that
    the cue was used) would otherwise be taught "useless" at every sequence's last episode.
    """

    horizon: int | None = None
    dense_fraction: float = 0.3
    explore_rows: float = 0.3
    explore_rate: float = 0.1
    benefit_rows: float = 1.0
    price_floor: float = 0.05
    censor_tail: bool = False
    gate: str = "learned"
    learned: bool = True
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.horizon is not None and self.horizon < 1:
            raise ValueError("horizon must be >= 1 step (None: exact)")
        for name in ("dense_fraction", "explore_rows", "benefit_rows"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if not 0.0 <= self.explore_rate < 1.0:
            raise ValueError("explore_rate must lie in [0, 1)")
        if self.censor_tail and self.horizon is None:
            raise ValueError("censor_tail needs a horizon (exact benefits reach every step)")

    def threshold(self) -> float | None:
        return None  # the layer's own configured threshold: nothing is folded in

    def finish(self, model: nn.Module, price: float) -> float:
        return price

    def training_pass(self, model, batch, ctx):
        mask, gen = step_mask(batch), ctx.generator  # (B, T)
        n_seq = mask.shape[0]
        with torch.no_grad():
            greedy = model.forward_sequence(batch.features, batch.base_actions).writes * mask
        rate = float(greedy.sum() / mask.sum())  # what inference would write
        u = torch.rand(mask.shape, generator=gen)
        if ctx.warm:
            schedule, gate_rows = mask.clone(), torch.zeros(n_seq, dtype=torch.bool)
        else:
            explore_row = torch.rand(n_seq, 1, generator=gen) < self.explore_rows
            explore = (u < self.explore_rate).float() * explore_row
            schedule = torch.maximum(greedy, explore) * mask
            dense = torch.rand(n_seq, generator=gen) < self.dense_fraction
            p_dense = 0.2 + 0.8 * torch.rand(n_seq, 1, generator=gen)
            schedule = torch.where(dense[:, None], (u < p_dense).float() * mask, schedule)
            measured = torch.rand(n_seq, generator=gen) < self.benefit_rows
            gate_rows = ~dense & measured
        out = model.forward_sequence(batch.features, batch.base_actions, writes=schedule)
        gate_loss = torch.zeros(())
        if bool(gate_rows.any()):
            sub = select_rows(batch, gate_rows)
            benefit = write_benefits(model, sub, schedule[gate_rows], self.horizon)
            want = (benefit > ctx.price).float()  # (b, T) the decisions the gate should make
            m = sub.mask
            if self.censor_tail:  # only steps whose whole window was observed
                t_idx = torch.arange(m.shape[1])[None]
                m = m * (t_idx + self.horizon <= m.sum(1, keepdim=True)).float()
            probs = out.write_probs[gate_rows].clamp(1e-6, 1 - 1e-6)
            bce = F.binary_cross_entropy(probs, want, reduction="none")
            gate_loss = (bce * m).sum() / m.sum().clamp_min(1.0)
            self.stats["benefit_pos"] = float((want * m).sum() / m.sum().clamp_min(1.0))
        return out, gate_loss, rate


# ---------------------------------------------------------------------------------------------
def priced_threshold(threshold: float, price: float) -> float:
    """The probability threshold whose logit is ``price`` above ``threshold``'s."""
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    return 1.0 / (1.0 + math.exp(-(math.log(t / (1 - t)) + price)))


@dataclass
class StraightThroughGate:
    """Hard decisions forward, dL/dg_t to the gate's (bounded) logit backward.

    The memory update W <- W + g beta k e^T makes dL/dg_t the first-order effect of writing
    at t on ALL later actions, defined even where g_t = 0. The price (logit units) is in the
    loss (price x write rate) and in the decision (threshold raised by the price), so the
    rate answers a price change at once. For the first ``explore_fraction`` of training the
    hard writes are drawn, P = sigma((z - logit thr) / tau), tau annealed 1 -> 0, instead of
    thresholded: without it every logit crosses the threshold together and the rate jumps
    between all and nothing. At the end the price is folded into ``gate_offset``: the layer
    alone, at its configured threshold, makes the decisions it was trained with."""

    explore_fraction: float = 0.7
    base_threshold: float | None = None  # None: the model's configured threshold
    price_floor: float = 0.0
    gate: str = "learned"
    learned: bool = True
    _priced: float | None = None

    def _base(self, model) -> float:
        return model.config.threshold if self.base_threshold is None else self.base_threshold

    def threshold(self) -> float | None:
        return self._priced  # validation decides as training does

    def training_pass(self, model, batch, ctx):
        mask = step_mask(batch)
        n_explore = self.explore_fraction * ctx.iterations
        temp = 1.0 - ctx.it / n_explore if ctx.it < n_explore else 0.0
        self._priced = priced_threshold(self._base(model), ctx.price)
        extra = {"explore": temp} if temp > 0 else {}
        out = model.forward_sequence(
            batch.features,
            batch.base_actions,
            threshold=self._priced,
            generator=ctx.generator,
            **extra,
        )
        rate = (out.writes * mask).sum() / mask.sum().clamp_min(1.0)  # grad via the ST path
        gate_loss = torch.zeros(()) if ctx.warm else ctx.price * rate
        return out, gate_loss, float(rate.detach())

    def finish(self, model: nn.Module, price: float) -> float:
        if price > 0:
            with torch.no_grad():
                model.gate_offset += price
        self._priced = None
        return price


@dataclass
class FixedGate:
    """No gate learning: always / never / random / periodic / score gates / oracle, and the
    always-write baselines (KV cache, GRU). Rate gates run at the budget; score gates
    (reconstruction, similarity, action_surprise) have their threshold re-calibrated to the
    budget every ``calibrate_every`` batches."""

    gate: str = "always"
    threshold_value: float | None = None
    calibrate_every: int = 25
    learned: bool = False
    price_floor: float = 0.0

    def threshold(self) -> float | None:
        return self.threshold_value

    def finish(self, model: nn.Module, price: float) -> float:
        return price

    def training_pass(self, model, batch, ctx):
        spec = get_gate(self.gate)
        if spec.threshold_is_rate and ctx.budget is not None:
            self.threshold_value = ctx.budget
        elif spec.score_threshold and ctx.budget is not None and ctx.it % self.calibrate_every == 0:
            self.threshold_value = calibrate_threshold(model, [batch], ctx.budget, gate=self.gate)
        out = model.forward_sequence(
            batch.features,
            batch.base_actions,
            gate=self.gate,
            threshold=self.threshold_value,
            writes=batch.writes if spec.needs_writes else None,
            generator=ctx.generator,
        )
        mask = step_mask(batch)
        rate = float((out.writes * mask).sum() / mask.sum().clamp_min(1.0))
        return out, torch.zeros(()), rate
