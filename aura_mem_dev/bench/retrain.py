"""``make bench-retrain``: record bags, retrain AURA from a FRESH layer with ``aura-mem-train``,
serve it in the closed loop -> docs/results/retrain.json + retrain.md.

Per size N in ``--episodes`` (default 50 and 200): N expert-driven episodes (10% random moves,
the labels stay the expert's: no trained memory shapes the data), half on S13 and half on S11,
recorded as bags by ``--bags-from``: ``ros`` (default) records them over ROS
(``aura_mem_dev/rosbag_record.py``: ``minigrid_sim`` with its expert driving, the ``aura_mem``
node serving the base policy with ``gate: never``, ``aura-mem-record``: three processes over
DDS); ``simbag`` writes the same topics without DDS (``aura_mem_dev/simbag.py``, faster);
``aura-mem-train`` on them from a fresh layer;
then the closed-loop panel of the retrained layer (``aura`` arm) on ``--eval-episodes`` held-out
seeds of S13, S11 and S17Random (never trained on), Wilson 95% intervals.

JSON: {"runs": [{"episodes", "env", "success", "ci95", "writes_per_episode",
"train_seconds"}], "command", "targets"}. Targets (issue 17): from 200 episodes >= 0.95 on
S13 and S11 at <= 1.5 writes/episode; from 50 episodes >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tempfile
import time
from pathlib import Path

TRAIN_ENVS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")
EVAL_ENVS = (*TRAIN_ENVS, "MiniGrid-MemoryS17Random-v0")
BAG_SEED0 = 7  # simbag seeds seed * 100,000 + episode: 700,000+, below the evaluation base
# How the bags are made (--bags-from), as the rendered page says it.
BAG_SOURCES = {
    "ros": "recorded over ROS (minigrid_sim with its expert driving, 10% random moves, the "
    "aura_mem node serving the base policy with gate never, aura-mem-record: three processes "
    "over DDS)",
    "simbag": "expert-driven simulated episodes (10% random moves) written by simbag, the same "
    "topics without DDS",
}
EVAL_OFFSET = 1_100_000  # held-out seeds, >= the evaluation base


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, nargs="+", default=[50, 200])
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--max-iterations", type=int, default=3000)
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="training seeds (initialisation, batches, validation split) per size, on the "
        "same bags: the spread of the recipe",
    )
    p.add_argument(
        "--train-args",
        default="",
        help="extra aura-mem-train arguments, one string (a recipe, e.g. "
        "'--head-hidden 128 --refit'); recorded in every row and shown in the table",
    )
    p.add_argument("--work", type=Path, default=None, help="bags + layers (default: a tmp dir)")
    p.add_argument(
        "--bags-from",
        choices=sorted(BAG_SOURCES),
        default="ros",
        help="ros: record the bags over ROS (three processes); simbag: write them without DDS",
    )
    p.add_argument("--out", type=Path, default=Path("docs/results/retrain.json"))
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="no training: join the runs of these result files (e.g. one size per process, "
        "run side by side) into --out and render it",
    )


def record_bags(n: int, source: str, work: Path) -> tuple[list[str], float]:
    """N episodes, half per training env; the same seeds, (BAG_SEED0 + i) * 100,000 + episode,
    from either source. -> bag paths, seconds spent recording."""
    from aura_mem_dev.rosbag_record import record_bag_over_ros
    from aura_mem_dev.simbag import write_sim_bag

    bags = []
    t0 = time.perf_counter()
    for i, env_id in enumerate(TRAIN_ENVS):
        bag = work / f"bag_{n}_{env_id}"
        seed = BAG_SEED0 + i
        if bag.exists():  # an earlier run's, same seeds (--work): more training seeds on it
            print(json.dumps({"reused": str(bag)}), flush=True)
        elif source == "ros":
            counts = record_bag_over_ros(
                bag, env_id, n // 2, seed_offset=seed * 100_000, explore=0.1, max_steps=100
            )
            print(json.dumps({"recorded": counts}), flush=True)
        else:
            write_sim_bag(bag, episodes=n // 2, env_id=env_id, seed=seed, max_steps=100)
        bags.append(str(bag))
    return bags, time.perf_counter() - t0


def retrain_and_serve(n: int, args: argparse.Namespace, work: Path) -> list[dict]:
    bags, record_seconds = record_bags(n, args.bags_from, work)
    return [
        row
        for seed in args.seeds
        for row in train_and_serve(n, seed, bags, record_seconds, args, work)
    ]


def train_and_serve(
    n: int, seed: int, bags: list[str], record_seconds: float, args: argparse.Namespace, work: Path
) -> list[dict]:
    from aura_mem_dev.bench.closed_loop import run_panel
    from aura_mem_ros.retrain.cli import main as train

    extra = shlex.split(args.train_args)
    recipe = re.sub(r"[^A-Za-z0-9]+", "_", " ".join(extra)).strip("_")
    layer = work / (f"aura_{n}_seed{seed}" + (f"_{recipe}" if recipe else ""))
    t0 = time.perf_counter()
    argv = ["--bags", *bags, "--backbone", "mini", "--out", str(layer), "--quiet"]
    argv += ["--budget", str(args.budget), "--max-iterations", str(args.max_iterations)]
    argv += ["--feature-cache", str(work / "cache"), "--seed", str(seed), *extra]
    rc = train(argv)
    seconds = time.perf_counter() - t0
    runs = []
    for env_id in EVAL_ENVS:
        row = {
            "episodes": n,
            "seed": seed,
            "train_args": " ".join(extra),
            "env": env_id,
            "record_seconds": round(record_seconds, 1),
            "train_seconds": round(seconds, 1),
            "train_rc": rc,
        }
        if rc == 0:
            panel = run_panel(
                env_id, args.eval_episodes, EVAL_OFFSET, arms=("aura",), aura_checkpoint=str(layer)
            )
            arm = panel.arms["aura"]
            row.update(
                success=arm.success, ci95=list(arm.ci95), writes_per_episode=arm.writes_per_episode
            )
        runs.append(row)
        print(json.dumps(row), flush=True)
    return runs


def render(result: dict) -> str:
    lines = [
        "# Retraining from bags (`make bench-retrain`)",
        "",
        (
            "Commands: the numbered runs below"
            if "commands" in result
            else f"Command: `{result['command']}`"
        )
        + ". Bags: "
        + BAG_SOURCES[result.get("bags_from", "simbag")]
        + "; `aura-mem-train` from a fresh layer; closed loop on held-out seeds "
        f"{EVAL_OFFSET}.. (Wilson 95%). Targets (issue 17): {result['targets']}.",
        "",
        "Sizes run: "
        + ", ".join(str(n) for n in sorted({r["episodes"] for r in result["runs"]}))
        + " episodes (`make bench-retrain` runs 50 and 200).",
        "",
        "Training: `aura-mem-train`'s defaults (one continuous run of up to 3,000 iterations, "
        "an always-write warm-up, the counterfactual gate, the checkpoint chosen on held-out "
        "episodes by memory accuracy, patience 40 validations, weight decay 0.05, head width "
        "512) plus the row's extra arguments (`--train-args`; `--refit`: a fresh layer then "
        "trained on all episodes for the iterations validation chose, or for "
        "`--refit-iterations`; `--head-bilinear`: the residual head's product term). Wall "
        "times: this shared 2-core machine, other jobs running (see NOTES.md).",
        "",
        *_runs_list(result),
        f"| {'run | ' if 'commands' in result else ''}episodes | extra arguments | seed | env | "
        "success | 95% CI | writes / episode | record s | train s |",
        "|" + "---|" * (9 + ("commands" in result)),
    ]
    for r in result["runs"]:
        run = f"| {r['run']} " if "commands" in result else ""
        if "success" not in r:
            lines.append(
                f"{run}| {r['episodes']} | {_args_cell(r)} | {r.get('seed', 0)} | {r['env']} | "
                f"not saved (rc {r['train_rc']}) | | | "
                f"{_record_cell(r)} | {r['train_seconds']:.0f} |"
            )
            continue
        lo, hi = r["ci95"]
        lines.append(
            f"{run}| {r['episodes']} | {_args_cell(r)} | {r.get('seed', 0)} | {r['env']} | "
            f"{r['success']:.3f} | "
            f"[{lo:.3f}, {hi:.3f}] | "
            f"{r['writes_per_episode']:.2f} | {_record_cell(r)} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _runs_list(result: dict) -> list[str]:
    """A merged result's commands, numbered as its rows' ``run`` column."""
    if "commands" not in result:
        return []
    lines = ["Runs (the `run` column; each records its own bags or reuses its `--work`):", ""]
    lines += [f"{i}. `{c}`" for i, c in enumerate(result["commands"], 1)]
    return [*lines, ""]


def _args_cell(row: dict) -> str:
    return f"`{row['train_args']}`" if row.get("train_args") else "defaults"


def _record_cell(row: dict) -> str:
    seconds = row.get("record_seconds")
    return "reused" if not seconds else f"{seconds:.0f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from aura_mem_dev.bench.cli import command_line

    if args.merge:
        return _write(merge([json.loads(Path(f).read_text()) for f in args.merge]), args.out)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = [row for n in args.episodes for row in retrain_and_serve(n, args, work)]
    result = {
        "command": command_line("retrain"),
        "targets": "200 episodes: >= 0.95 on S13/S11 at <= 1.5 writes/episode; 50: >= 0.90",
        "bags_from": args.bags_from,
        "runs": runs,
    }
    return _write(result, args.out)


def merge(parts: list[dict]) -> dict:
    """Result files -> one, each row numbered with the command that produced it (``run``,
    1-based into ``commands``; a merged file's own numbering is kept, shifted): rows from
    different runs may stand on different recordings of the bags."""
    commands: list[str] = []
    runs: list[dict] = []
    for part in parts:
        first = len(commands)
        commands += part.get("commands") or [part["command"]]
        runs += [{**r, "run": first + r.get("run", 1)} for r in part["runs"]]
    return {**parts[0], "command": " && ".join(commands), "commands": commands, "runs": runs}


def _write(result: dict, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
