"""``aura-mem-bench synthetic``: every method on the controlled synthetic task, same data.

Per seed: AURA trains against its write budget (``--budget`` x the oracle's write rate); its
measured write rate on the test set then sets the budget of the matched methods (random and
periodic run at that rate; the reconstruction and similarity gates are calibrated to it).
Every method sees the same training batches (same generator seed) and the same test set.

The ``stream`` config (``synthetic_task.StreamConfig``) trains on short windows of one
stationary process and tests on runs of ``eval_len`` (10,000) steps, in which keys are
re-assigned and lures look like assignments; its accuracy is also split by query kind (keys
assigned more than once, keys lured since their latest assignment). A KV cache is evaluated
step by step there (the whole-sequence attention matrix of a 10,000-step run does not fit).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from aura_mem_dev.bench.synthetic_task import (
    CONFIGS,
    STREAM,
    StreamBatch,
    StreamConfig,
    SyntheticBatch,
    SyntheticConfig,
    generate,
    generate_stream,
)
from aura_mem_ros.core.baselines import METHODS
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.gates import get_gate
from aura_mem_ros.core.kv import KVMemory
from aura_mem_ros.core.train import TrainConfig, calibrate_threshold, evaluate, train_aura

QUICK = {"iterations": 60, "batch_size": 32, "eval_sequences": 128}
QUICK_STREAM = {"iterations": 40, "batch_size": 16, "eval_sequences": 4, "eval_len": 2_000}
GATE_RATES = ("write_rate_events", "write_rate_distractors", "write_rate_queries")
# stream only: the learned gate on lures, and accuracy by kind of query
STREAM_RATES = ("write_rate_lures", "accuracy_reassigned", "accuracy_after_lure", "accuracy_short")
ALL_CONFIGS: dict[str, SyntheticConfig | StreamConfig] = {**CONFIGS, "stream": STREAM}
Task = SyntheticConfig | StreamConfig


@dataclass
class MethodSummary:
    """One method over the seeds of a run (means; the per-seed values beside them)."""

    accuracy_mean: float  # on query steps
    accuracy_std: float
    writes_per_seq: float
    steps_per_seq: float
    accuracy_per_seed: list[float]
    writes_per_seq_per_seed: list[float]
    train_seconds: float
    # the learned gate only: its write rate on event, distractor and query steps
    write_rate_events: float | None = None
    write_rate_distractors: float | None = None
    write_rate_queries: float | None = None
    # stream config only
    write_rate_lures: float | None = None  # the learned gate on lures
    accuracy_reassigned: float | None = None  # queries of keys assigned more than once
    accuracy_after_lure: float | None = None  # queries of keys lured since their assignment
    # on fresh windows of the TRAINING length: can the method do the task at all, apart from
    # what the long run does to it
    accuracy_short: float | None = None


@dataclass
class SyntheticRun:
    """``aura-mem-bench synthetic`` on one config (docs/results/synthetic_<config>.json)."""

    config: str
    quick: bool
    seeds: list[int]
    complete: bool  # False while a long run is still going (written after every seed)
    budget_x_oracle: float
    command: str
    date: str
    wall_seconds: float
    task: dict[str, Any]  # the SyntheticConfig
    oracle_writes_per_seq: float  # per TEST sequence (stream: expected)
    methods: dict[str, MethodSummary]
    checks: dict[str, float]  # see ``checks``
    # ``--update`` runs that replaced some methods' entries after ``command`` (each with its
    # date); every other entry, and the wall time, are ``command``'s
    updates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["methods"] = {
            name: {k: v for k, v in m.items() if v is not None}
            for name, m in out["methods"].items()
        }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticRun:
        methods = {k: MethodSummary(**v) for k, v in data["methods"].items()}
        return cls(**{**data, "methods": methods})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", choices=sorted(ALL_CONFIGS), default="medium")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    parser.add_argument("--quick", action="store_true", help="smoke-test size (<= 2 min)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--iterations", type=int, default=None, help="override training batches")
    parser.add_argument(
        "--budget", type=float, default=1.25, help="AURA's write budget, x the oracle's rate"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun only --methods and replace their entries in the existing --out file "
        "(same config, seeds, quick); the other methods' entries are kept",
    )


def _model(name: str, task: Task, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = AuraConfig(
        d_model=task.d_model, chunk_size=1, action_dim=task.n_classes, discrete=True
    )
    return METHODS[name].build(config)


def _data(task: Task, batch: int, g: torch.Generator, test: bool = False) -> SyntheticBatch:
    """Training windows (or, ``test``, the test runs) of ``task``."""
    if isinstance(task, StreamConfig):
        return generate_stream(task, batch, g, task.eval_len if test else None)
    return generate(task, batch, g)


def oracle_writes_per_seq(task: Task) -> float:
    if isinstance(task, StreamConfig):
        return task.oracle_writes_per_eval_seq
    return task.n_events


def run_seed(
    task: Task, seed: int, methods: list[str], budget: float, progress: bool
) -> dict[str, dict[str, float]]:
    test = _data(task, task.eval_sequences, torch.Generator().manual_seed(10_000 + seed), True)
    calib = _data(task, 128, torch.Generator().manual_seed(20_000 + seed))
    short = None  # stream: also test on windows as long as the training ones
    if isinstance(task, StreamConfig):
        short = generate_stream(task, 256, torch.Generator().manual_seed(30_000 + seed))
        # Score gates write at another rate once memory has run for long (their scores
        # depend on what it holds): match their budget on long runs, as they are tested.
        calib = generate_stream(
            task, 8, torch.Generator().manual_seed(20_000 + seed), min(task.eval_len, 2_000)
        )
    results: dict[str, dict[str, float]] = {}
    aura_rate = budget * task.oracle_write_rate  # replaced by AURA's measured rate below
    # AURA first: its measured rate is the matched methods' budget.
    order = sorted(methods, key=lambda m: METHODS[m].budget != "learned")
    for name in order:
        method = METHODS[name]
        model = _model(name, task, seed)
        stream = torch.Generator().manual_seed(seed)
        target = budget * task.oracle_write_rate if method.budget == "learned" else aura_rate
        train_cfg = TrainConfig(
            iterations=task.iterations,
            target_write_rate=target if method.budget != "none" else None,
            progress=progress,
            desc=f"{task.name} seed {seed} {name}",
            seed=seed,
        )
        start = time.perf_counter()
        trained = train_aura(
            model,
            lambda i, g=stream: _data(task, task.batch_size, g),
            train_cfg,
            gate=method.gate,
        )
        threshold = trained.threshold
        if method.budget == "matched" and method.gate in ("reconstruction", "similarity"):
            threshold = calibrate_threshold(model, [calib], aura_rate, gate=method.gate)
        seconds = time.perf_counter() - start
        model.eval()
        if isinstance(test, StreamBatch):
            ev = evaluate_stream(model, test, method.gate, threshold, seed)
            assert short is not None
            ev["accuracy_short"] = evaluate_stream(model, short, method.gate, threshold, seed)[
                "accuracy"
            ]
        else:
            ev = evaluate(
                model,
                test,
                gate=method.gate,
                threshold=threshold,
                score_mask=test.query_mask,
                seed=seed,
            )
        ev["train_seconds"] = seconds
        if method.budget == "learned":
            aura_rate = ev["write_rate"]
        if method.budget == "learned" and not isinstance(test, StreamBatch):
            with torch.no_grad():
                out = model.forward_sequence(test.features, test.base_actions, gate=method.gate)
            ev["write_rate_events"] = float(out.writes[test.event_mask].mean())
            ev["write_rate_distractors"] = float(out.writes[test.distractor_mask].mean())
            ev["write_rate_queries"] = float(out.writes[test.query_mask].mean())
        results[name] = ev
        print(
            f"{task.name} seed {seed} {name}: accuracy {ev['accuracy']:.3f}, "
            f"writes/seq {ev['writes_per_seq']:.2f}, {seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return results


@torch.no_grad()
def evaluate_stream(
    model: torch.nn.Module, test: StreamBatch, gate: str, threshold: float | None, seed: int
) -> dict[str, float]:
    """Accuracy on query steps (all, re-assigned keys, lured keys) and writes, in one pass;
    the learned gate's write rate on each kind of step."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, KVMemory):  # (B, T, T) attention: step by step instead
        state, actions, writes = model.init_state(test.features.shape[0]), [], []
        for t in range(test.features.shape[1]):
            out = model.step(test.features[:, t], test.base_actions[:, t], state)
            state = out.state
            actions.append(out.action)
            writes.append(out.write)
        acts, wrote = torch.stack(actions, 1), torch.stack(writes, 1)
    else:
        out = model.forward_sequence(
            test.features,
            test.base_actions,
            gate=gate,
            threshold=threshold,
            writes=test.writes if get_gate(gate).needs_writes else None,
            generator=generator,
        )
        acts, wrote = out.actions, out.writes
    correct = (acts[:, :, 0].argmax(-1) == test.targets).float()

    def share(values: torch.Tensor, mask: torch.Tensor | None) -> float:
        return float(values[mask].mean()) if mask is not None and mask.any() else float("nan")

    ev = {
        "accuracy": share(correct, test.query_mask),
        "accuracy_reassigned": share(correct, test.reassigned_query_mask),
        "accuracy_after_lure": share(correct, test.lured_query_mask),
        "writes_per_seq": float(wrote.sum(1).mean()),
        "steps_per_seq": float(test.features.shape[1]),
        "write_rate": float(wrote.mean()),
    }
    if get_gate(gate).learned:
        ev["write_rate_events"] = share(wrote, test.event_mask)
        ev["write_rate_distractors"] = share(wrote, test.distractor_mask)
        ev["write_rate_queries"] = share(wrote, test.query_mask)
        ev["write_rate_lures"] = share(wrote, test.lure_mask)
    return ev


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, MethodSummary]:
    methods: dict[str, MethodSummary] = {}
    for name in per_seed[0]:
        runs = [r[name] for r in per_seed]
        acc = [r["accuracy"] for r in runs]
        methods[name] = MethodSummary(
            accuracy_mean=statistics.fmean(acc),
            accuracy_std=statistics.pstdev(acc) if len(acc) > 1 else 0.0,
            writes_per_seq=statistics.fmean(r["writes_per_seq"] for r in runs),
            steps_per_seq=runs[0]["steps_per_seq"],
            accuracy_per_seed=acc,
            writes_per_seq_per_seed=[r["writes_per_seq"] for r in runs],
            train_seconds=statistics.fmean(r["train_seconds"] for r in runs),
            **{
                k: statistics.fmean(r[k] for r in runs)
                for k in (*GATE_RATES, *STREAM_RATES)
                if k in runs[0]
            },
        )
    return methods


def checks(methods: dict[str, MethodSummary]) -> dict[str, float]:
    """The issue's targets, evaluated on this run (absent methods are skipped)."""
    out: dict[str, float] = {}
    if "aura" not in methods:
        return out
    aura = methods["aura"]
    o1 = [methods[m].accuracy_mean for m in ("always_fast_weight", "gru") if m in methods]
    if o1:
        out["accuracy_gap_vs_best_o1_pts"] = 100 * (aura.accuracy_mean - max(o1))
    if "always_fast_weight" in methods and aura.writes_per_seq > 0:
        out["write_reduction_vs_always"] = (
            methods["always_fast_weight"].writes_per_seq / aura.writes_per_seq
        )
    if "oracle" in methods and methods["oracle"].writes_per_seq > 0:
        out["writes_vs_oracle"] = aura.writes_per_seq / methods["oracle"].writes_per_seq
    for m in ("random", "periodic", "reconstruction", "similarity"):
        if m in methods:
            out[f"aura_minus_{m}_pts"] = 100 * (aura.accuracy_mean - methods[m].accuracy_mean)
    return out


def _command(args: argparse.Namespace) -> str:
    parts = ["aura-mem-bench synthetic", f"--config {args.config}", f"--seeds {args.seeds}"]
    if args.quick:
        parts.append("--quick")
    if args.iterations is not None:
        parts.append(f"--iterations {args.iterations}")
    if args.budget != 1.25:
        parts.append(f"--budget {args.budget}")
    if args.methods != ",".join(METHODS):
        parts.append(f"--methods {args.methods}")
    if args.out is not None:
        parts.append(f"--out {args.out}")
    if getattr(args, "update", False):
        parts.append("--update")
    return " ".join(parts)


def updated(previous: SyntheticRun, fresh: SyntheticRun) -> SyntheticRun:
    """``previous`` with ``fresh``'s methods replaced (``--update``); checks recomputed."""
    before = (previous.config, previous.quick, previous.seeds)
    if before != (fresh.config, fresh.quick, fresh.seeds):
        raise ValueError(
            f"--update must match the file's run: config {previous.config}, quick "
            f"{previous.quick}, seeds {previous.seeds}"
        )
    if not previous.complete:
        raise ValueError("--update needs a complete run in --out")
    methods = {**previous.methods, **fresh.methods}
    return dataclasses.replace(
        previous,
        methods=methods,
        checks=checks(methods),
        updates=[*previous.updates, f"{fresh.command} ({fresh.date})"],
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    task = ALL_CONFIGS[args.config]
    quick = QUICK_STREAM if isinstance(task, StreamConfig) else QUICK
    overrides = dict(quick) if args.quick else {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if overrides:
        task = dataclasses.replace(task, **overrides)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"unknown methods {unknown}; available: {sorted(METHODS)}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print("--seeds must be >= 1", file=sys.stderr)
        return 2
    seeds = list(range(args.seeds))
    previous = None
    if args.update:
        if args.out is None or not args.out.is_file():
            print("--update needs an existing --out file", file=sys.stderr)
            return 2
        previous = SyntheticRun.from_dict(json.loads(args.out.read_text()))
        ours = (args.config, bool(args.quick), seeds)
        if (previous.config, previous.quick, previous.seeds) != ours or not previous.complete:
            print(
                f"--update: {args.out} holds config {previous.config}, quick {previous.quick}, "
                f"seeds {previous.seeds} (complete: {previous.complete}); this run is {ours}",
                file=sys.stderr,
            )
            return 2
    start = time.perf_counter()
    per_seed: list[dict[str, dict[str, float]]] = []
    for seed in seeds:
        per_seed.append(run_seed(task, seed, methods, args.budget, not args.no_progress))
        methods_out = summarise(per_seed)
        result = SyntheticRun(
            config=args.config,
            quick=bool(args.quick),
            seeds=seeds[: len(per_seed)],
            complete=len(per_seed) == len(seeds),
            budget_x_oracle=args.budget,
            command=_command(args),
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            wall_seconds=time.perf_counter() - start,
            task=dict(task.__dict__),
            oracle_writes_per_seq=oracle_writes_per_seq(task),
            methods=methods_out,
            checks=checks(methods_out),
        )
        if previous is not None:
            if not result.complete:
                continue  # the file keeps its complete run until every seed is in
            result = updated(previous, result)
        text = json.dumps(result.to_dict(), indent=2)
        if args.out is not None:  # after every seed: a long run leaves partial results
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
    print(text)
    return 0
