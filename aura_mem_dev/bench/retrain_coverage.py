"""``aura-mem-bench retrain-coverage``: does a layer retrained from bags fail on starts the
bags showed, or on starts they did not? -> docs/results/retrain_coverage.json + .md.

A MiniGrid-Memory episode's start configuration is (cue object, the side of the object that
matches it, the agent's start cell relative to the cue, its heading). The frame in which the
layer writes the cue depends on where the agent starts; the frozen mini backbone's features
are position-specific (a strided conv, then flatten), so the value a write stores for "a key
seen from two cells away" is learned from episodes that start there.

For each layer given (``make bench-retrain`` writes them under its ``--work`` folder), the
held-out episodes of the retrain panel (the same seeds, ``retrain.EVAL_OFFSET``..) are run in
the closed loop and split by what the training episodes showed of their start (the bags'
seeds are ``retrain.record_bags``': (BAG_SEED0 + i) x 100,000 + episode): the same start, the
same view of the cue but never with its match on this side, or not even the view
(``split_by_coverage``). The configuration is read from the simulator to label held-out
episodes after the fact: an evaluation tool, never an input to training.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aura_mem_dev.bench.retrain import BAG_SEED0, EVAL_ENVS, EVAL_OFFSET, TRAIN_ENVS

Configuration = tuple[str, str, int, int, int]


def start_configuration(env: Any, seed: int) -> Configuration:
    """(cue object, side of its match, start column - cue column, start row - cue row,
    heading) of ``env`` reset with ``seed`` (a MiniGrid MemoryEnv: the cue at (1, h/2 - 1))."""
    env.reset(seed=seed)
    u = env.unwrapped
    cue_x, cue_y = 1, u.height // 2 - 1
    cue = u.grid.get(cue_x, cue_y)
    side = "up" if u.success_pos[1] < u.height // 2 else "down"
    x, y = (int(v) for v in u.agent_pos)
    return (type(cue).__name__.lower(), side, x - cue_x, y - cue_y, int(u.agent_dir))


def training_configurations(episodes: int) -> set[Configuration]:
    """The start configurations of the ``episodes`` training episodes of ``retrain``'s bags."""
    from aura_mem_ros.sim.env import make_env

    seen: set[Configuration] = set()
    for i, env_id in enumerate(TRAIN_ENVS):
        env = make_env(env_id)
        for e in range(episodes // 2):
            seen.add(start_configuration(env, (BAG_SEED0 + i) * 100_000 + e))
    return seen


PARTS = ("shown", "view_shown", "view_never_shown")


def cue_view(config: Configuration) -> tuple[str, int, int, int]:
    """What the frame a layer writes shows: the cue object seen from the start (the match
    side is out of view there; it decides the action at the fork)."""
    cue, _side, dx, dy, heading = config
    return (cue, dx, dy, heading)


def split_by_coverage(
    rows: Iterable[dict[str, Any]], configs: dict[int, Configuration], seen: set[Configuration]
) -> dict[str, dict[str, Any]]:
    """Per-episode closed-loop rows -> three parts: ``shown`` (some training episode started
    the same way), ``view_shown`` (the cue was seen from this start in training, but never
    with its match on this side: a new combination of two things the bags showed) and
    ``view_never_shown``; each with its episodes, successes, success rate and Wilson 95%
    interval."""
    from aura_mem_dev.bench.closed_loop import wilson_interval

    views = {cue_view(c) for c in seen}
    parts: dict[str, list[bool]] = {name: [] for name in PARTS}
    for row in rows:
        config = configs[row["seed"]]
        if config in seen:
            part = "shown"
        elif cue_view(config) in views:
            part = "view_shown"
        else:
            part = "view_never_shown"
        parts[part].append(bool(row["success"]))
    out = {}
    for name, results in parts.items():
        n, k = len(results), sum(results)
        out[name] = {
            "episodes": n,
            "successes": k,
            "success": k / n if n else None,
            "ci95": list(wilson_interval(k, n)) if n else None,
        }
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--layers",
        type=Path,
        nargs="+",
        required=True,
        help="layers aura-mem-train wrote from retrain's bags (their model cards give N)",
    )
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--envs", nargs="+", default=list(EVAL_ENVS))
    p.add_argument("--out", type=Path, default=Path("docs/results/retrain_coverage.json"))


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.bench.cli import command_line
    from aura_mem_dev.bench.closed_loop import run_panel
    from aura_mem_ros.sim.env import make_env

    configs = {}  # env -> {seed: configuration} of the held-out episodes
    for env_id in args.envs:
        env = make_env(env_id)
        seeds = range(EVAL_OFFSET, EVAL_OFFSET + args.eval_episodes)
        configs[env_id] = {s: start_configuration(env, s) for s in seeds}
    runs = []
    for layer in args.layers:
        card = json.loads((layer / "model_card.json").read_text())
        n = int(card["data"]["episodes"])
        seen = training_configurations(n)
        for env_id in args.envs:
            panel = run_panel(
                env_id, args.eval_episodes, EVAL_OFFSET, arms=("aura",), aura_checkpoint=str(layer)
            )
            row = {
                "layer": layer.name,
                "episodes": n,
                "seed": card["training"]["seed"],
                "env": env_id,
                "success": panel.arms["aura"].success,
                **split_by_coverage(panel.per_episode["aura"], configs[env_id], seen),
            }
            runs.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "command": command_line("retrain-coverage"),
        "eval_offset": EVAL_OFFSET,
        "eval_episodes": args.eval_episodes,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


def _part(p: dict[str, Any]) -> str:
    if not p["episodes"]:
        return "none"
    lo, hi = p["ci95"]
    return f"{p['success']:.2f} [{lo:.2f}, {hi:.2f}] ({p['episodes']})"


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Retrained layers on held-out starts the bags showed, and on starts they did not",
        "",
        f"Command: `{result['command']}`. Held-out seeds {result['eval_offset']}.. "
        f"({result['eval_episodes']} per env), the retrain panel's. A start configuration is "
        "(cue object, side of its match, start cell relative to the cue, heading), read from "
        "the simulator after the fact, for this table only. `shown`: some training episode "
        "started the same way; `cue view shown`: the bags saw the cue from this start, but "
        "never with its match on this side; `cue view never shown`: no training episode saw "
        "this cue from this start. Cells: success [Wilson 95%] (episodes).",
        "",
        "| episodes | seed | layer (`--work` folder: the recipe) | env | success | "
        "starts shown | cue view shown, not with this side | cue view never shown |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['episodes']} | {r['seed']} | `{r['layer']}` | {r['env']} | "
            f"{r['success']:.2f} | " + " | ".join(_part(r[name]) for name in PARTS) + " |"
        )
    return "\n".join(lines) + "\n"
