"""The arm's learned-gate threshold, calibrated in closed loop to the trained write budget.

    python -m aura_mem_dev.arm.calibrate [--model-dir DIR] [--episodes 40]

Why: after training, the arm gate's probabilities lie within a few hundredths of 0.5 on
every chunk (the straight-through trainer holds them at the threshold), and at 0.5 the gate
writes 0.035-0.040 per chunk request in closed loop, below the 0.05 it was trained for; which
side of 0.5 the cue frame falls on decides the episode. ``core.train.calibrate_threshold``
does this for ``aura-mem-train`` on recorded batches; the arm has no recorded batches after
training, so the rate is measured where it matters, in closed loop. ``never_reset=True``
also plays the seeds back to back with one memory and keeps the budget in both modes
(issue 15; off in the shipped recipe, see ``counterfactual.py``).

How: bisection on the threshold, each candidate run on validation seeds (900,000..; never
the benchmark's >= 1,000,000), keeping the threshold whose writes per chunk request are
closest to ``target_write_rate`` without exceeding it. Only write counts are read: no
success label, no simulator state. The result goes into ``aura/aura_config.json``
(``threshold``) and ``train_report.json`` (``threshold_calibration``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

VALIDATION_SEED_BASE = 900_000  # as aura_mem_dev.arm.train's validation


def closed_loop_write_rate(
    backbone, layer, threshold: float, seeds: list[int], task, never_reset: bool = False
) -> float:
    """Writes per chunk request of the learned gate at ``threshold`` over ``seeds``.

    ``never_reset``: the seeds are played back to back and the memory is cleared once,
    before the first (a robot that is never reset), instead of before every episode."""
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.env import ArmEnv
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    env = ArmEnv(task)
    agent = ChunkAgent(backbone, AuraRuntime(layer, threshold=threshold, fused=False))
    agent.reset()
    eps = [run_episode(env, agent, s, reset_agent=not never_reset) for s in seeds]
    env.close()
    return sum(e.writes for e in eps) / max(1, sum(e.chunks for e in eps))


def calibrate_threshold_closed_loop(
    backbone,
    layer,
    target_rate: float,
    seeds: list[int],
    task,
    low: float = 0.05,
    high: float = 0.95,
    iterations: int = 7,
    never_reset: bool = False,
) -> dict:
    """Bisection over [low, high]: the threshold whose closed-loop rate is closest to
    ``target_rate`` without exceeding it (``high`` if none does). Returns the probes too.

    ``never_reset``: each candidate also plays the same seeds back to back with one memory,
    and the rate that decides is the higher of the two modes (the budget holds in both)."""
    t0 = time.time()
    probes: list[dict] = []
    best, best_gap = high, float("inf")
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        rate = closed_loop_write_rate(backbone, layer, mid, seeds, task)
        probe = {"threshold": round(mid, 6), "writes_per_chunk": round(rate, 6)}
        if never_reset:
            stream = closed_loop_write_rate(backbone, layer, mid, seeds, task, never_reset=True)
            probe |= {"reset_writes_per_chunk": round(rate, 6)}
            probe |= {"never_reset_writes_per_chunk": round(stream, 6)}
            rate = max(rate, stream)
            probe["writes_per_chunk"] = round(rate, 6)
        probes.append(probe)
        if rate <= target_rate and target_rate - rate < best_gap:
            best, best_gap = mid, target_rate - rate
        if rate > target_rate:
            low = mid  # too many writes: raise the threshold
        else:
            high = mid
    return {
        "threshold": round(best, 6),
        "target_writes_per_chunk": target_rate,
        "episodes": len(seeds),
        "seed_offset": seeds[0],
        "modes": ["reset", "never_reset"] if never_reset else ["reset"],
        "probes": probes,
        "seconds": round(time.time() - t0, 1),
    }


def with_threshold(layer, threshold: float):
    """A copy of ``layer`` whose config carries ``threshold`` (the runtime's default)."""
    from aura_mem_ros.core.aura import AuraLayer

    out = AuraLayer(dataclasses.replace(layer.config, threshold=float(threshold)))
    out.load_state_dict(layer.state_dict(), strict=True)
    return out.eval()


def main(argv: list[str] | None = None) -> int:
    from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR, ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura, save_aura
    from aura_mem_ros.sim.arm.env import ArmTaskConfig

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--episodes", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    layer = load_aura(args.model_dir / "aura")
    target = layer.config.target_write_rate
    if target is None:
        ap.error("the AURA layer has no target_write_rate to calibrate to")
    seeds = list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + args.episodes))
    backbone = ArmMiniBackbone(args.model_dir)
    task = ArmTaskConfig(image_size=backbone.net.cfg.image_size)
    result = calibrate_threshold_closed_loop(backbone, layer, target, seeds, task)
    save_aura(with_threshold(layer, result["threshold"]), args.model_dir / "aura")
    report_path = args.model_dir / "train_report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        report["threshold_calibration"] = result | {"after_training": True}
        report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
