"""``make bench-scale``: what Ray buys on a local cluster -> docs/results/scale.md (+ .json).

Three measurements, each against its single-process run:

1. Closed-loop sweep (``aura-mem-bench closed-loop --ray``): wall time of the same panel in
   this process, then on a local Ray cluster of 1 and of 2 CPUs (one task per CPU), each
   cluster started and its workers warmed (torch imported, models loaded once; this process
   too, by a one-episode panel) before the clock starts; start-up and warm-up are reported
   apart. The three JSONs must be equal.
2. Feature extraction (``aura-mem-train --ray``): frames per second of the mini backbone over
   the same simulated bags, in this process and with 1 and 2 Ray actors (actors built before
   the clock starts); the features must be equal.
3. The cache: two ``aura-mem-train`` runs on the same bags into one fresh cache; the first
   extracts, the second must read every bag from the cache (and train the same layer).

A 2-core machine shared with other jobs gives noisy figures: the report records the load
average before and after, and the speed-up target is only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_dev.training.seeds import EVAL_SEED_BASE

SPEEDUP_TARGET = 1.7  # 2 workers vs 1 on the closed-loop sweep (the target)
RAY_INIT = {
    "include_dashboard": False,
    "logging_level": "warning",
    "object_store_memory": 200 * 1024 * 1024,
}


@dataclass
class SweepTiming:
    env: str
    arms: list[str]
    episodes: int
    max_steps: int
    shards: int
    single_process_s: float
    ray_s: dict[str, float]  # workers -> wall seconds of the sweep
    cluster_start_s: dict[str, float]
    warmup_s: dict[str, float]
    json_identical: bool


@dataclass
class ExtractionTiming:
    bags: int
    frames: int
    local_s: float
    ray_s: dict[str, float]  # actors -> wall seconds over all bags
    actor_start_s: dict[str, float]
    features_identical: bool

    def fps(self, seconds: float) -> float:
        return self.frames / seconds if seconds > 0 else float("nan")


@dataclass
class CacheTiming:
    frames: int
    bags: int
    first_total_s: float
    first_extract_s: float
    second_total_s: float
    second_extract_s: float
    second_from_cache: int
    same_layer: bool  # the two runs' validation figures and thresholds are equal
    max_iterations: int


@dataclass
class ScaleResult:
    command: str
    date_utc: str
    cpus: int
    loadavg_before: list[float]
    loadavg_after: list[float]
    seconds: float
    quick: bool
    closed_loop: SweepTiming
    extraction: ExtractionTiming
    cache: CacheTiming
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _start_cluster(cpus: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, **RAY_INIT)
    return time.perf_counter() - t0


def _warm(env_id: str, max_steps: int) -> int:
    """One tiny shard: the worker imports torch/gymnasium, loads the models, loads numba's
    cached kernel. Sleeps a little so that each warm-up task lands on its own worker."""
    from aura_mem_dev.scale.panel import Shard, _run_shard

    _run_shard(Shard("aura", EVAL_SEED_BASE, 1), env_id, max_steps, None, None, {})
    time.sleep(1.0)
    return os.getpid()


def sweep_timing(
    env_id: str, episodes: int, max_steps: int, arms: tuple[str, ...], workers: tuple[int, ...]
) -> SweepTiming:
    import ray

    from aura_mem_dev.bench.closed_loop import run_panel, without_timing
    from aura_mem_dev.scale.panel import plan_shards, run_panel_on_ray

    run_panel(env_id, 1, EVAL_SEED_BASE, max_steps, ("aura",))  # warm, as the workers are
    t0 = time.perf_counter()
    reference = run_panel(env_id, episodes, EVAL_SEED_BASE, max_steps, arms).to_dict()
    single = time.perf_counter() - t0
    ray_s, start_s, warm_s, identical = {}, {}, {}, True
    shard_episodes = max(1, -(-episodes // (2 * max(workers))))  # the same shards for all
    first, second = plan_shards(arms, episodes, EVAL_SEED_BASE, shard_episodes)
    for n in workers:
        start_s[str(n)] = round(_start_cluster(n), 2)
        try:
            t0 = time.perf_counter()
            warm = ray.remote(num_cpus=1)(_warm)
            ray.get([warm.remote(env_id, max_steps) for _ in range(n)])
            warm_s[str(n)] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            panel = run_panel_on_ray(
                "auto",
                env_id,
                episodes,
                EVAL_SEED_BASE,
                max_steps,
                arms,
                shard_episodes=shard_episodes,
            )
            ray_s[str(n)] = round(time.perf_counter() - t0, 2)
        finally:
            ray.shutdown()
        identical &= without_timing(panel.to_dict()) == without_timing(reference)
    return SweepTiming(
        env_id,
        list(arms),
        episodes,
        max_steps,
        len(first) + len(second),
        round(single, 2),
        ray_s,
        start_s,
        warm_s,
        identical,
    )


def _train_args(bags: list[str], extra: list[str]) -> argparse.Namespace:
    from aura_mem_ros.retrain.cli import build_parser

    return build_parser().parse_args(["--bags", *bags, "--backbone", "mini", "--quiet", *extra])


def extraction_timing(bags: list[str], actors: tuple[int, ...]) -> ExtractionTiming:
    import ray

    from aura_mem_ros.retrain.features import (
        BagExtractor,
        extract_local,
        extraction_settings,
    )
    from aura_mem_ros.retrain.ray_features import RayExtraction

    args = _train_args(bags, ["--out", "unused", "--feature-cache", "none"])
    settings = extraction_settings(args, {}, "/expert/action")
    missing = list(enumerate(bags))
    extractor = BagExtractor("mini", {})
    t0 = time.perf_counter()
    local = extract_local(extractor, missing, settings, lambda *_: None, False)
    local_s = time.perf_counter() - t0
    frames = sum(len(f) for f in local.values())
    ray_s, start_s, identical = {}, {}, True
    for n in actors:
        _start_cluster(n)
        try:
            with RayExtraction("auto", "mini", {}, workers=n) as pool:
                t0 = time.perf_counter()
                pool.start(n)
                start_s[str(n)] = round(time.perf_counter() - t0, 2)
                t0 = time.perf_counter()
                out = pool.extract(missing, settings, lambda *_: None)
                ray_s[str(n)] = round(time.perf_counter() - t0, 3)
        finally:
            ray.shutdown()
        for i in local:
            a, b = local[i], out[i]
            identical &= all(
                np.array_equal(getattr(a, k), getattr(b, k))
                for k in ("features", "base", "targets", "starts")
            )
    return ExtractionTiming(len(bags), frames, round(local_s, 3), ray_s, start_s, identical)


def cache_timing(bags: list[str], max_iterations: int) -> CacheTiming:
    from aura_mem_ros.retrain.cli import train_from_bags

    with tempfile.TemporaryDirectory(prefix="aura_scale_cache_") as tmp:
        cards, totals = [], []
        for run in range(2):
            args = _train_args(
                bags,
                [
                    "--out",
                    f"{tmp}/run{run}",
                    "--feature-cache",
                    f"{tmp}/cache",
                    "--max-iterations",
                    str(max_iterations),
                    "--eval-every",
                    "25",
                    # timing the backbone pass, not judging the layer: 100 iterations may not
                    # beat the start, and the refusal would stop the measurement
                    "--allow-worse",
                ],
            )
            t0 = time.perf_counter()
            cards.append(train_from_bags(args))
            totals.append(time.perf_counter() - t0)
    f1, f2 = (c["data"]["features"] for c in cards)
    return CacheTiming(
        frames=f1["frames_total"],
        bags=len(bags),
        first_total_s=round(totals[0], 2),
        first_extract_s=f1["seconds_extracting"],
        second_total_s=round(totals[1], 2),
        second_extract_s=f2["seconds_extracting"],
        second_from_cache=f2["from_cache"],
        same_layer=all(cards[0][k] == cards[1][k] for k in ("validation", "threshold")),
        max_iterations=max_iterations,
    )


def main(argv: list[str] | None = None) -> int:
    import torch

    from aura_mem_dev.report.scale import render_markdown
    from aura_mem_dev.simbag import write_sim_bag

    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="MiniGrid-MemoryS13-v0")
    ap.add_argument("--episodes", type=int, default=100, help="closed-loop episodes per arm")
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--bags", type=int, default=4, help="simulated bags for extraction")
    ap.add_argument("--bag-episodes", type=int, default=60)
    ap.add_argument("--max-iterations", type=int, default=100, help="cache runs' training")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks it runs")
    ap.add_argument("--out", type=Path, default=repo / "docs" / "results" / "scale.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.episodes, args.bags, args.bag_episodes, args.max_iterations = 4, 2, 6, 25
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers 15 steps nicer than the driver; the single-process runs here
    # would then get more CPU than the Ray runs whenever anything else runs on the machine.
    os.environ.setdefault("RAY_worker_niceness", "0")
    t_start = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    from aura_mem_ros.backbones import make_backbone  # noqa: F401 - registers the backbones

    with tempfile.TemporaryDirectory(prefix="aura_scale_bags_") as tmp:
        bags = []
        for i in range(args.bags):
            bag = f"{tmp}/bag{i}"
            write_sim_bag(bag, episodes=args.bag_episodes, env_id="MiniGrid-MemoryS9-v0", seed=i)
            bags.append(bag)
        print(f"{len(bags)} bags written; feature extraction ...", flush=True)
        extraction = extraction_timing(bags, (1, 2))
        print(f"extraction: {extraction}", flush=True)
        cache = cache_timing(bags, args.max_iterations)
        print(f"cache: {cache}", flush=True)
    from aura_mem_dev.bench.closed_loop import ARMS

    sweep = sweep_timing(args.env, args.episodes, args.max_steps, ARMS, (1, 2))
    print(f"closed loop: {sweep}", flush=True)
    result = ScaleResult(
        command="python scripts/bench_scale.py" + (" --quick" if args.quick else ""),
        date_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        cpus=os.cpu_count() or 0,
        loadavg_before=load_before,
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        seconds=round(time.perf_counter() - t_start, 1),
        quick=args.quick,
        closed_loop=sweep,
        extraction=extraction,
        cache=cache,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    args.out.write_text(render_markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0
