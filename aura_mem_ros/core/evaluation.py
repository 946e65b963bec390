"""Evaluation of any sequence model on held-out batches: accuracy / L1 and write counts, the
write rate at a threshold, and the threshold that meets a write budget (bisection)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from aura_mem_ros.core.batch import (
    SequenceBatch,
    SequenceModel,
    action_loss,
    is_discrete,
    step_mask,
)
from aura_mem_ros.core.gates import get_gate


def _rollout(model, batch, gate, threshold, seed):
    return model.forward_sequence(
        batch.features,
        batch.base_actions,
        gate=gate,
        threshold=threshold,
        writes=batch.writes if get_gate(gate).needs_writes else None,
        generator=torch.Generator().manual_seed(seed),
    )


@torch.no_grad()
def evaluate(
    model: SequenceModel,
    batch: SequenceBatch,
    *,
    gate: str = "learned",
    threshold: float | None = None,
    score_mask: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy (discrete) or L1 (continuous) on ``score_mask`` steps, plus write counts."""
    out = _rollout(model, batch, gate, threshold, seed)
    score = step_mask(batch) if score_mask is None else score_mask.to(batch.features.dtype)
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
        out = _rollout(model, batch, gate, threshold, 0)
        mask = step_mask(batch)
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
    if spec.learned:  # log-odds: the learned gate's probabilities crowd near 0 and 1
        lo, hi = -30.0, 30.0

        def to_threshold(u: float) -> float:
            return 1.0 / (1.0 + math.exp(-u))
    else:  # log: scores of any scale
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
