"""``aura-mem-bench closed-loop``: the MiniGrid-Memory closed-loop panel, in-process.

Every arm drives the same frozen ``mini`` policy through the same backbone/runtime calls the
ROS node makes (``sim.agent``), on evaluation seeds disjoint from every training seed:

    memoryless   the frozen policy alone
    always_kv    KV-cache memory residual, appends every step (256 bytes/step)
    always_aura  the trained AURA layer with its gate forced on
    aura         the trained AURA layer, learned gate
    random       the AURA layer, Bernoulli writes at aura's measured rate (budget-matched)
    periodic     the AURA layer, every round(1/rate) steps at aura's rate

Success intervals are Wilson 95% score intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aura_mem_dev.scale.panel import add_ray_arguments
from aura_mem_dev.training.seeds import EVAL_SEED_BASE, check_eval_seed

ARMS: tuple[str, ...] = ("memoryless", "always_kv", "always_aura", "aura", "random", "periodic")
DEFAULT_MAX_STEPS = 100  # the oracle needs <= 19 steps; a looping policy is cut here


@dataclass(frozen=True)
class ArmResult:
    success: float
    ci95: tuple[float, float]
    writes_per_episode: float
    steps_per_episode: float
    writes_per_step: float
    successes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "ci95": list(self.ci95),
            "writes_per_episode": self.writes_per_episode,
            "steps_per_episode": self.steps_per_episode,
            "writes_per_step": self.writes_per_step,
            "successes": self.successes,
        }


@dataclass
class Panel:
    """Every arm on the same seeds of one environment (docs/results/closed_loop_<env>.json)."""

    env: str
    episodes: int
    seed_offset: int
    max_steps: int
    budget_writes_per_step: float | None  # aura's measured rate (random/periodic run at it)
    arms: dict[str, ArmResult]
    per_episode: dict[str, list[dict[str, Any]]]  # seed, success, steps, writes, ...
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "env": self.env,
            "episodes": self.episodes,
            "seed_offset": self.seed_offset,
            "max_steps": self.max_steps,
            "budget_writes_per_step": self.budget_writes_per_step,
            "arms": {a: r.to_dict() for a, r in self.arms.items()},
            "per_episode": self.per_episode,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Panel:
        arms = {a: ArmResult(**{**r, "ci95": tuple(r["ci95"])}) for a, r in data["arms"].items()}
        return cls(**{**data, "arms": arms})


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval: well-behaved at 0/n and n/n, unlike the normal approximation."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="MiniGrid-MemoryS13-v0")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=EVAL_SEED_BASE,
        help=f"first evaluation seed (>= {EVAL_SEED_BASE}: training uses less)",
    )
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset")
    parser.add_argument("--model-dir", default=None, help="default: the shipped models/mini")
    parser.add_argument("--out", type=Path, default=None, help="JSON output file")
    add_ray_arguments(parser)  # --ray [auto|ADDRESS|local]: shard episodes (scale/panel.py)


def run_panel(
    env_id: str,
    episodes: int,
    seed_offset: int,
    max_steps: int = DEFAULT_MAX_STEPS,
    arms: tuple[str, ...] = ARMS,
    model_dir: str | None = None,
    aura_rate: float | None = None,
) -> Panel:
    from aura_mem_dev.agent import Agent, run_agent_episode
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR, MiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.kv import KVRuntime, load_kv
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.env import make_env

    check_eval_seed(seed_offset)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {list(ARMS)}")
    if episodes <= 0 or max_steps <= 0:
        raise ValueError("episodes and max_steps must be positive")
    torch.set_num_threads(1)
    root = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    backbone = MiniBackbone(root)
    layer = load_aura(root / "aura")
    env = make_env(env_id)
    seeds = [seed_offset + i for i in range(episodes)]
    results: dict[str, ArmResult] = {}
    per_episode: dict[str, list[dict]] = {}
    # aura runs first: random/periodic are matched to its measured writes/step (or to
    # ``aura_rate`` when given: a shard of a sharded run gets the rate over all seeds).
    order = sorted(arms, key=lambda a: 0 if a == "aura" else 1)
    for arm in order:
        if arm == "memoryless":
            runtime = None
        elif arm == "always_kv":
            runtime = KVRuntime(load_kv(root / "kv"))
        elif arm in ("random", "periodic"):
            if aura_rate is None:
                aura_rate = _measure_rate(backbone, layer, env, seeds, max_steps)
            runtime = AuraRuntime(layer, gate=arm, threshold=max(aura_rate, 1e-6))
        else:
            runtime = AuraRuntime(layer, gate="always" if arm == "always_aura" else "learned")
        agent = Agent(backbone, runtime)
        outs = []
        for seed in seeds:
            if isinstance(runtime, AuraRuntime):
                runtime.seed = seed  # a fresh random write pattern per episode, reproducibly
            outs.append(run_agent_episode(env, agent, seed, max_steps))
        n_succ = sum(o.success for o in outs)
        steps = sum(o.steps for o in outs)
        writes = sum(o.writes for o in outs)
        results[arm] = ArmResult(
            n_succ / episodes,
            wilson_interval(n_succ, episodes),
            writes / episodes,
            steps / episodes,
            writes / max(1, steps),
            n_succ,
        )
        per_episode[arm] = [
            {
                "seed": o.seed,
                "success": o.success,
                "steps": o.steps,
                "writes": o.writes,
                "cue_first_seen": o.cue_first_seen,
                "write_steps": o.write_steps,
            }
            for o in outs
        ]
        if arm == "aura":
            aura_rate = results[arm].writes_per_step
    return Panel(
        env=env_id,
        episodes=episodes,
        seed_offset=seed_offset,
        max_steps=max_steps,
        budget_writes_per_step=aura_rate,
        arms={a: results[a] for a in arms},
        per_episode=per_episode,
    )


def _measure_rate(backbone, layer, env, seeds: list[int], max_steps: int) -> float:
    from aura_mem_dev.agent import Agent, run_agent_episode
    from aura_mem_ros.core.runtime import AuraRuntime

    agent = Agent(backbone, AuraRuntime(layer))
    outs = [run_agent_episode(env, agent, s, max_steps) for s in seeds]
    return sum(o.writes for o in outs) / max(1, sum(o.steps for o in outs))


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.report.closed_loop import arm_table

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if args.ray:
        from aura_mem_dev.scale import panel as sharded

        panel = sharded.run(args, arms)  # the same Panel, episodes sharded over Ray
    else:
        t0 = time.time()
        panel = run_panel(
            args.env, args.episodes, args.seed_offset, args.max_steps, arms, args.model_dir
        )
        panel.seconds = round(time.time() - t0, 2)
    print(
        f"{args.env}: {args.episodes} episodes/arm, seeds {args.seed_offset}.."
        f"{args.seed_offset + args.episodes - 1}, {panel.seconds} s"
    )
    print("\n".join(arm_table(panel)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(panel.to_dict(), indent=2) + "\n")
    return 0
