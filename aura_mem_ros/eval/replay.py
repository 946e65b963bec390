"""Counterfactual replay: the recorded observation stream through other write gates.

The frozen backbone's features and base actions are computed once per step (extract.py);
every gate then re-runs only the AURA memory (core AuraRuntime, the same object the node
steps) with the recorded memory resets, and its actions are compared with the recorded
ones. Replaying the node's own gate must reproduce the recorded writes and actions: that
"fidelity" row is the check that the replay is the run that happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from aura_mem_ros.eval.extract import Recording

if TYPE_CHECKING:  # the model is built lazily: `aura-mem-eval --no-replay` needs no torch
    from aura_mem_ros.backbones import Backbone
    from aura_mem_ros.core.aura import AuraLayer
    from aura_mem_ros.serving import ActionClamp


@dataclass(frozen=True)
class GateSpec:
    label: str
    gate: str
    threshold: float | None = None
    seed: int = 0
    budget_matched: bool = False  # threshold found by search to meet the recorded budget


@dataclass
class ReplayResult:
    label: str
    gate: str
    threshold: float | None
    steps: int
    writes: int
    divergence: float  # mean |action - recorded action| (continuous) / logit L1 (discrete)
    disagreement: float | None  # discrete: fraction of steps whose argmax action differs
    wrote: np.ndarray = field(repr=False)
    budget_matched: bool = False
    # Against the recorded target actions (teleop / expert), when the bag has them: mean L1
    # (continuous) or the fraction of steps whose argmax differs from the target's (discrete).
    target_error: float | None = None

    @property
    def writes_per_step(self) -> float:
        return self.writes / self.steps if self.steps else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "gate": self.gate,
            "threshold": self.threshold,
            "budget_matched": self.budget_matched,
            "steps": self.steps,
            "writes": self.writes,
            "writes_per_step": round(self.writes_per_step, 6),
            "action_divergence": round(self.divergence, 8),
            "argmax_disagreement": (
                None if self.disagreement is None else round(self.disagreement, 6)
            ),
            "target_error": None if self.target_error is None else round(self.target_error, 6),
        }


@dataclass
class ReplayModel:
    """The frozen backbone + AURA layer a recording is replayed with."""

    backbone: Backbone
    layer: AuraLayer
    gate: str
    threshold: float | None
    seed: int
    clamp: ActionClamp
    checkpoint: str
    description: dict[str, Any]


def build_model(
    params: dict[str, Any],
    *,
    backbone: str | None = None,
    backbone_args: str | None = None,
    checkpoint: str | None = None,
    gate: str | None = None,
    threshold: float | None = None,
    seed: int | None = None,
) -> ReplayModel:
    """The node's model from the bag's stored parameters, each overridable."""
    from aura_mem_ros.serving import ServingSpec

    if not (backbone or params.get("backbone")):
        raise ValueError(
            "the bag holds no node parameters (was the recorder started with the "
            "node running?): pass --backbone (and --backbone-args, --checkpoint)"
        )
    spec = ServingSpec.from_params(
        params,
        backbone=backbone,
        backbone_args=backbone_args,
        aura_checkpoint=checkpoint,
        gate=gate,
        gate_threshold=threshold,
        seed=seed,
    )
    bb = spec.build_backbone()
    ckpt = spec.resolve_checkpoint(bb)  # resolved exactly as the node resolves it
    if ckpt and not Path(ckpt).is_dir():
        raise FileNotFoundError(
            f"AURA checkpoint {ckpt!r} (from the bag) is not here: pass "
            f"--checkpoint DIR (or --checkpoint '' for the untrained layer)"
        )
    runtime, _ = spec.build_runtime(bb)
    return ReplayModel(
        bb,
        runtime.layer,
        spec.gate,
        spec.threshold,
        spec.seed,
        spec.clamp(bb),
        ckpt,
        {
            "backbone": spec.backbone,
            "backbone_args": spec.backbone_args,
            "aura_checkpoint": ckpt,
            "gate": spec.gate,
            "gate_threshold": spec.threshold,
            "seed": spec.seed,
        },
    )


def replay(
    rec: Recording, model: ReplayModel, spec: GateSpec, progress: bool = False
) -> ReplayResult:
    from aura_mem_ros.core.runtime import AuraRuntime

    assert rec.features is not None and rec.base_actions is not None and rec.matched is not None
    rt = AuraRuntime(model.layer, gate=spec.gate, threshold=spec.threshold, seed=spec.seed)
    discrete = bool(model.layer.config.discrete)
    wrote = np.zeros(rec.n, bool)
    diffs: list[float] = []
    disagree: list[bool] = []
    target_errors: list[float] = []
    has_targets = rec.targets is not None and rec.target_found is not None
    for i in tqdm(range(rec.n), desc=f"replay {spec.label}", disable=not progress, leave=False):
        if rec.resets[i]:
            rt.reset()
        if not rec.matched[i] or (rec.memory_known is not None and not rec.memory_known[i]):
            continue  # observation not in the bag, or memory content unknown: not replayable
        out = rt.select_action(rec.features[i], rec.base_actions[i])
        action = np.asarray(out.action, np.float32)
        if not discrete:
            action, _ = model.clamp.apply(action)
        wrote[i] = out.wrote
        recorded = rec.actions[i]
        if recorded.shape != action.shape:
            raise ValueError(
                f"recorded action shape {recorded.shape} differs from the replay "
                f"model's {action.shape}: wrong --backbone?"
            )
        diffs.append(float(np.mean(np.abs(action - recorded))))
        if discrete:
            disagree.append(int(np.argmax(action[-1])) != int(np.argmax(recorded[-1])))
        if has_targets and rec.target_found[i]:
            target = rec.targets[i]
            target_errors.append(
                float(int(np.argmax(action[-1])) != int(np.argmax(target[-1])))
                if discrete
                else float(np.mean(np.abs(action - target)))
            )
    steps = int(replayable(rec).sum())
    return ReplayResult(
        spec.label,
        spec.gate,
        spec.threshold,
        steps,
        int(wrote.sum()),
        float(np.mean(diffs)) if diffs else 0.0,
        float(np.mean(disagree)) if discrete and disagree else None,
        wrote,
        spec.budget_matched,
        float(np.mean(target_errors)) if target_errors else None,
    )


def replayable(rec: Recording) -> np.ndarray:
    """Steps a replay runs and is scored on (observation found, memory content known)."""
    assert rec.matched is not None
    known = rec.memory_known if rec.memory_known is not None else np.ones(rec.n, bool)
    return rec.matched & known


def match_budget(
    rec: Recording,
    model: ReplayModel,
    gate: str,
    budget: float,
    lo: float,
    hi: float,
    iters: int = 10,
) -> tuple[float, ReplayResult]:
    """Bisect the threshold of a "write when score > threshold" gate to ``budget`` writes/step
    (the rate falls as the threshold rises); returns the closest run found."""
    best: tuple[float, ReplayResult] | None = None
    # Grow hi until it is strict enough (similarity's scale depends on the features).
    for _ in range(12):
        res = replay(rec, model, GateSpec("search", gate, hi))
        best = _closer(best, (hi, res), budget)
        if res.writes_per_step <= budget:
            break
        lo, hi = hi, hi * 2.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        res = replay(rec, model, GateSpec("search", gate, mid))
        best = _closer(best, (mid, res), budget)
        if res.writes_per_step > budget:
            lo = mid
        else:
            hi = mid
    assert best is not None
    return best


def _closer(
    a: tuple[float, ReplayResult] | None, b: tuple[float, ReplayResult], budget: float
) -> tuple[float, ReplayResult]:
    if a is None:
        return b
    return b if abs(b[1].writes_per_step - budget) < abs(a[1].writes_per_step - budget) else a


def default_gates(
    model: ReplayModel, budget: float, thresholds: Sequence[float], seed: int = 0
) -> list[GateSpec]:
    """The comparison set; budget-matched searches are added by ``run_all``."""
    thr = "default" if model.threshold is None else f"{model.threshold:g}"
    specs = [
        GateSpec(f"recorded ({model.gate}@{thr})", model.gate, model.threshold, model.seed),
        GateSpec("always", "always"),
        GateSpec("never (base policy)", "never"),
        GateSpec(f"random@{budget:.3f}", "random", budget, seed),
        GateSpec(f"periodic@{budget:.3f}", "periodic", budget, seed),
        GateSpec("similarity@1", "similarity", 1.0),
        GateSpec("action_surprise@0.05", "action_surprise", 0.05),
    ]
    specs += [GateSpec(f"learned@{t:g}", "learned", t) for t in thresholds]
    return specs


def run_all(
    rec: Recording,
    model: ReplayModel,
    budget: float,
    thresholds: Sequence[float],
    seed: int = 0,
    progress: bool = True,
    match: Sequence[str] = ("similarity", "learned"),
) -> list[ReplayResult]:
    specs = default_gates(model, budget, thresholds, seed)
    results = [
        replay(rec, model, s) for s in tqdm(specs, desc="gates", disable=not progress, leave=False)
    ]
    for gate in match:
        thr, res = match_budget(rec, model, gate, budget, 0.0, 1.0)
        res.label = f"{gate}@budget (thr {thr:.4g})"
        res.threshold = thr
        res.budget_matched = True
        results.append(res)
    return results
