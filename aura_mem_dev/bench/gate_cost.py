"""``aura-mem-bench gate-cost``: what the counterfactual gate objective costs per 1,000 steps.

The figures ``core/train.py`` states: one thread, seconds per 1,000 sequence steps of
``objectives.write_benefits`` (cached states, all flips batched) exact and at a truncated
horizon, against the reference (two full re-runs of the sequence per step), on MiniGrid
episodes (T <= 30) and on never-reset streams of 12 episodes (T ~ 150); plus how often the
truncated benefit makes the same write decision (benefit > 0.05 nats) as the exact one, and
the largest difference between exact and reference (they are the same quantity).

    aura-mem-bench gate-cost [--layer aura_mem_ros/models/mini/aura] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aura_mem_ros.core.batch import SequenceBatch, per_step_loss


def add_arguments(p: argparse.ArgumentParser) -> None:
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR

    p.add_argument("--layer", type=Path, default=DEFAULT_MODEL_DIR / "aura")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("docs/results/gate_cost.json"))


@torch.no_grad()
def reference_benefits(layer, batch: SequenceBatch, writes: torch.Tensor) -> torch.Tensor:
    """Two full re-runs per step: L(rest | g_t = 0) - L(rest | g_t = 1)."""
    mask = batch.mask
    out = torch.zeros_like(writes)
    for t in range(writes.shape[1]):
        totals = []
        for g in (0.0, 1.0):
            w = writes.clone()
            w[:, t] = g
            acts = layer.forward_sequence(batch.features, batch.base_actions, writes=w).actions
            totals.append((per_step_loss(acts, batch.targets, True) * mask)[:, t:].sum(1))
        out[:, t] = (totals[0] - totals[1]) * mask[:, t]
    return out


def _seconds_per_1000(fn: Callable[[], object], steps: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / steps * 1000.0


def measure(layer, batch: SequenceBatch, writes: torch.Tensor, horizon: int) -> dict:
    from aura_mem_ros.core.objectives import write_benefits

    mask = batch.mask
    steps = int(mask.sum())
    exact = write_benefits(layer, batch, writes)
    reference = reference_benefits(layer, batch, writes)
    truncated = write_benefits(layer, batch, writes, horizon)
    same = ((truncated > 0.05) == (exact > 0.05))[mask.bool()].float().mean()
    return {
        "sequences": mask.shape[0],
        "max_steps": mask.shape[1],
        "steps": steps,
        "max_abs_diff_exact_vs_reference": float((exact - reference).abs().max()),
        "benefit_scale": float(exact.abs().max()),
        f"same_decisions_horizon_{horizon}_vs_exact": float(same),
        "seconds_per_1000_steps": {
            "reference_two_full_reruns": _seconds_per_1000(
                lambda: reference_benefits(layer, batch, writes), steps, 1
            ),
            "exact": _seconds_per_1000(lambda: write_benefits(layer, batch, writes), steps, 3),
            f"horizon_{horizon}": _seconds_per_1000(
                lambda: write_benefits(layer, batch, writes, horizon), steps, 3
            ),
        },
    }


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.bench.cli import command_line
    from aura_mem_dev.training.episodes import EpisodeSource
    from aura_mem_dev.training.recipes import TRAIN_SEED0, DaggerRecipe, Seeds, base_data
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR, MiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura

    torch.set_num_threads(1)
    backbone = MiniBackbone()
    layer = load_aura(args.layer)
    recipe = DaggerRecipe(
        demo_episodes=args.episodes * 7 // 10, base_episodes=args.episodes * 3 // 10
    )
    eps = base_data(backbone, recipe, Seeds(TRAIN_SEED0)).episodes
    gen = torch.Generator().manual_seed(0)
    shipped = DEFAULT_MODEL_DIR.resolve()
    layer_path = Path(args.layer).resolve()
    if layer_path == shipped or shipped in layer_path.parents:
        layer_path = Path("models/mini") / layer_path.relative_to(shipped)
    result: dict = {"command": command_line("gate-cost"), "layer": str(layer_path)}
    for name, source, horizon in (
        ("episodes", EpisodeSource(eps), 8),
        ("streams_150", EpisodeSource(eps, stream_len=(12, 12), max_stream_steps=150), 24),
    ):
        batch = source.sample(32, gen)
        mask = batch.mask
        with torch.no_grad():  # the gate's own schedule + 10% exploration, as in training
            greedy = layer.forward_sequence(batch.features, batch.base_actions).writes
        writes = torch.maximum(greedy, (torch.rand(mask.shape, generator=gen) < 0.1).float())
        writes = writes * mask
        result[name] = measure(layer, batch, writes, horizon)
        print(name, json.dumps(result[name], indent=1), flush=True)
    result["note"] = "one thread; on a shared machine the times are upper bounds"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0
