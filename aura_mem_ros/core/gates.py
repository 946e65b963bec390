"""Write gates by name: the learned action-utility gate and every baseline schedule/heuristic.

A gate sees the per-step quantities the AURA layer computes anyway and returns a write
probability (what is reported) and a hard decision. Threshold meaning per gate:

    learned          write when the gate probability > threshold
    always / never   threshold unused
    reconstruction   write when the inner prediction error |v - Wᵀk̂| > threshold
    similarity       write when the value is farther than threshold from the last written one
    action_surprise  write when the action would change by > threshold if written (one-step rule)
    random           threshold is the write rate (Bernoulli per step)
    periodic         threshold is the write rate (every round(1/rate) steps)
    oracle           no threshold: the caller passes the writes (the task's informative steps)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class GateInputs:
    prob: Tensor | None  # (B,) the learned gate's write probability (learned gate only)
    error_norm: Tensor  # (B,) |e|, the inner prediction error of W on (k̂, v)
    novelty: Tensor  # (B,) |v - m|, distance to the last value written
    action_surprise: Tensor  # (B,) mean |action if written - action if not|
    t: int  # step index since reset
    generator: torch.Generator | None = None


# (inputs, threshold) -> (write probability (B,), hard decision (B,) bool)
GateFn = Callable[[GateInputs, float], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Gate:
    decide: GateFn
    default_threshold: float | None  # None: the layer config's threshold
    learned: bool = False  # the straight-through gradient trains it
    threshold_is_rate: bool = False  # random / periodic: budget-match by passing the rate
    needs_writes: bool = False  # oracle: decisions come from the caller
    score_threshold: bool = False  # write when a score > threshold: calibrate it to a budget


def _above(score: Callable[[GateInputs], Tensor]) -> GateFn:
    def decide(inputs: GateInputs, threshold: float) -> tuple[Tensor, Tensor]:
        write = score(inputs) > threshold
        return write.float(), write

    return decide


def _learned(inputs: GateInputs, threshold: float) -> tuple[Tensor, Tensor]:
    assert inputs.prob is not None
    return inputs.prob, inputs.prob > threshold


def _constant(value: bool) -> GateFn:
    def decide(inputs: GateInputs, threshold: float) -> tuple[Tensor, Tensor]:
        write = torch.full_like(inputs.error_norm, float(value)).bool()
        return write.float(), write

    return decide


def _random(inputs: GateInputs, rate: float) -> tuple[Tensor, Tensor]:
    shape, device = inputs.error_norm.shape, inputs.error_norm.device
    u = torch.rand(shape, generator=inputs.generator, device=device)
    return torch.full_like(inputs.error_norm, rate), u < rate


def _periodic(inputs: GateInputs, rate: float) -> tuple[Tensor, Tensor]:
    period = max(1, round(1.0 / max(rate, 1e-9)))
    write = torch.full_like(inputs.error_norm, float(inputs.t % period == 0)).bool()
    return torch.full_like(inputs.error_norm, 1.0 / period), write


def _oracle(inputs: GateInputs, threshold: float) -> tuple[Tensor, Tensor]:
    raise ValueError("the oracle gate needs the writes passed explicitly (write=...)")


GATES: dict[str, Gate] = {
    "learned": Gate(_learned, None, learned=True),
    "always": Gate(_constant(True), 0.0),
    "never": Gate(_constant(False), 0.0),
    "reconstruction": Gate(_above(lambda i: i.error_norm), 1.0, score_threshold=True),
    "similarity": Gate(_above(lambda i: i.novelty), 1.0, score_threshold=True),
    "action_surprise": Gate(_above(lambda i: i.action_surprise), 0.05, score_threshold=True),
    "random": Gate(_random, 0.1, threshold_is_rate=True),
    "periodic": Gate(_periodic, 0.1, threshold_is_rate=True),
    "oracle": Gate(_oracle, 0.0, needs_writes=True),
}


# Gates whose decision needs nothing but the layer's own outputs: the ones ``core/fused.py``
# compiles into its kernel (the others keep the reference path in ``aura.py``).
FUSED_GATES: tuple[str, ...] = ("learned", "always", "never")


def get_gate(name: str) -> Gate:
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r}; available: {sorted(GATES)}")
    return GATES[name]
