"""``aura-mem-bench train-sweep``: many ``aura-mem-train`` runs (budgets x seeds), on Ray.

    aura-mem-bench train-sweep --budgets 0.1 0.2 --seeds 0 1 2 --out sweep --ray \\
        -- --bags fleet/bag1 fleet/bag2 --backbone mini --max-iterations 300

Everything after ``--`` is ``aura-mem-train``'s own arguments (without ``--out``, ``--budget``
and ``--seed``, which the sweep sets per run). The backbone runs over the bags once, through
the feature cache (``aura_mem_ros/retrain/features.py``; on the cluster with ``--ray``); the
result goes into Ray's object store once and every run trains on it, one run per task (one
CPU each). Each run writes what ``aura-mem-train`` writes, into ``OUT/budget<B>_seed<S>/``
(model_card.json with this command line in it, aura.safetensors, aura_config.json,
training_curve.png); the runs' files travel back to the driver, so only the driver's disk
needs OUT. ``OUT/summary.json`` and ``OUT/summary.md`` hold one row per run and, per budget,
the mean and spread over seeds. A run that fails (say no evaluation met a tight budget) is a
row with its error; the other runs go on.

Without ``--ray`` the same runs go one after the other in this process.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aura_mem_dev.scale.panel import add_ray_arguments


def train_one(train_argv: list[str], data: Any) -> dict[str, Any]:
    """THE trainer call: ``aura-mem-train`` arguments + the precomputed features -> the model
    card (the run's files are in its ``--out``). The only place the sweep knows the trainer;
    point it at another training function with the same contract to sweep that one."""
    from aura_mem_ros.retrain.cli import build_parser, train_from_bags

    return train_from_bags(build_parser().parse_args(train_argv), data=data)


@dataclass(frozen=True)
class Run:
    budget: float
    seed: int

    @property
    def name(self) -> str:
        return f"budget{self.budget:g}_seed{self.seed}"


@dataclass
class RunResult:
    run: Run
    seconds: float
    card: dict[str, Any] | None  # None when the run failed
    error: str | None
    files: dict[str, bytes]


def run_training(run: Run, train_argv: list[str], data: Any) -> RunResult:
    """One run (in a Ray task, or here): trains into a scratch directory, returns its files."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aura_sweep_") as tmp:
        argv = [*train_argv, "--out", tmp, "--budget", str(run.budget), "--seed", str(run.seed)]
        try:
            card, error = train_one(argv, data), None
        except ValueError as exc:  # aura-mem-train's "clear error" class: a result, not a crash
            card, error = None, str(exc)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    return RunResult(run, round(time.perf_counter() - t0, 2), card, error, files)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budgets", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for all runs")
    add_ray_arguments(parser)
    parser.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="-- then aura-mem-train's arguments (--bags ... --backbone ...)",
    )


def _train_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.train_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    for own in ("--out", "--budget", "--seed"):
        if own in argv:
            raise ValueError(f"{own} is set by the sweep per run; leave it out after --")
    return argv


def sweep(args: argparse.Namespace) -> dict[str, Any]:
    from aura_mem_ros.retrain.cli import build_parser
    from aura_mem_ros.retrain.features import load_training_data

    train_argv = _train_argv(args)
    runs = [Run(b, s) for b in args.budgets for s in args.seeds]
    extract_args = build_parser().parse_args([*train_argv, "--out", str(args.out)])
    extract_args.ray = args.ray
    extract_args.ray_workers = args.ray_workers
    t0 = time.perf_counter()
    if args.ray:
        from aura_mem_ros.retrain.cluster import cluster_slots, ray_session

        with ray_session(args.ray) as ray:
            data = load_training_data(extract_args)  # joins this session's cluster
            t_data = time.perf_counter() - t0
            _, cpus = cluster_slots()
            task = ray.remote(num_cpus=1)(run_training)
            ref = ray.put(data)  # once; every run reads it from the object store
            results = _bounded(ray, task, runs, train_argv, ref, args.ray_workers or cpus)
    else:
        data = load_training_data(extract_args)
        t_data = time.perf_counter() - t0
        results = [run_training(r, train_argv, data) for r in runs]
    summary = {
        "command": "aura-mem-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "train_args": train_argv,
        "ray": args.ray,
        "features": data.stats.to_dict(),
        "seconds_features": round(t_data, 2),
        "seconds_total": round(time.perf_counter() - t0, 2),
        "runs": [_write_run(args.out, r, train_argv) for r in results],
    }
    summary["by_budget"] = _by_budget(summary["runs"])
    return summary


def _bounded(
    ray: Any, task: Any, runs: list[Run], train_argv: list[str], data_ref: Any, slots: int
) -> list[RunResult]:
    """Every run, at most ``slots`` at once, results in the order of ``runs``."""
    pending = list(enumerate(runs))
    in_flight: dict[Any, int] = {}
    out: dict[int, RunResult] = {}
    while pending or in_flight:
        while pending and len(in_flight) < slots:
            i, run = pending.pop(0)
            in_flight[task.remote(run, train_argv, data_ref)] = i
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        out[in_flight.pop(ready[0])] = ray.get(ready[0])
    return [out[i] for i in range(len(runs))]


def _write_run(out: Path, result: RunResult, train_argv: list[str]) -> dict[str, Any]:
    """The run's files under OUT/<run>/ (its card told where it really is); its summary row."""
    run_dir = out / result.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, data in result.files.items():
        (run_dir / name).write_bytes(data)
    row: dict[str, Any] = {**asdict(result.run), "name": result.run.name}
    row["seconds"] = result.seconds
    if result.card is None:
        row["error"] = result.error
        return row
    card = result.card
    argv = [*train_argv, "--out", str(run_dir), "--budget", f"{result.run.budget:g}"]
    card["command"] = "aura-mem-train " + " ".join(shlex.quote(a) for a in argv)
    card["command"] += f" --seed {result.run.seed}"
    card["load_in_node"] = (
        f"-p aura_checkpoint:={run_dir.resolve()} -p backbone:={card['backbone']['name']}"
    )
    (run_dir / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    before, after = card["validation"]["before"], card["validation"]["after"]
    key = "accuracy" if "accuracy" in after else "l1"
    row.update(
        metric=key,
        val_loss_before=before["loss"],
        val_loss_after=after["loss"],
        metric_before=before[key],
        metric_after=after[key],
        writes_per_step_val=card["writes_per_step_val"],
        meets_budget=bool(card["meets_budget"]),
        best_iteration=card["training"]["best_iteration"],
        iterations=card["training"]["iterations"],
    )
    return row


def _by_budget(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for budget in sorted({r["budget"] for r in rows}):
        ok = [r for r in rows if r["budget"] == budget and "error" not in r]
        entry: dict[str, Any] = {
            "budget": budget,
            "runs": sum(r["budget"] == budget for r in rows),
            "failed": sum(r["budget"] == budget and "error" in r for r in rows),
            "meets_budget": sum(r["meets_budget"] for r in ok),
        }
        for field in ("val_loss_after", "metric_after", "writes_per_step_val"):
            values = np.array([r[field] for r in ok], float)
            entry[field] = {
                "mean": round(float(values.mean()), 6) if len(values) else None,
                "sd": round(float(values.std(ddof=1)), 6) if len(values) > 1 else None,
            }
        out.append(entry)
    return out


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.report.scale import sweep_markdown

    try:
        summary = sweep(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"aura-mem-bench train-sweep: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = sweep_markdown(summary)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0 if all("error" not in r for r in summary["runs"]) else 1
