"""Scale-out on a local Ray cluster (2 CPUs, started once for this module).

Each Ray path is checked against its single-process twin: the closed-loop panel's JSON, the
backbone's features, a training run's result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from aura_mem_dev.bench.cli import main as bench_main  # noqa: E402
from aura_mem_dev.simbag import write_sim_bag  # noqa: E402
from aura_mem_ros.retrain.cli import build_parser, train_from_bags  # noqa: E402
from aura_mem_ros.retrain.features import load_training_data  # noqa: E402

pytestmark = pytest.mark.timeout(300)
ENV = "MiniGrid-MemoryS7-v0"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """One small local cluster for the module: 2 CPUs, no dashboard, a 100 MB object store.
    The code under test finds it already connected and reuses it (``--ray`` = auto)."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",  # never phone home from a test
        "RAY_worker_niceness": "0",  # workers not 15 nicer than the test on a shared machine
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # read by the raylet this init starts
    ray.init(
        address="local",  # always a new cluster, never one that runs on this machine
        num_cpus=2,
        include_dashboard=False,
        logging_level="warning",
        object_store_memory=100 * 1024 * 1024,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("bags")
    out = []
    for i in range(3):
        write_sim_bag(root / f"bag{i}", episodes=4, env_id=ENV, seed=i)
        out.append(str(root / f"bag{i}"))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One feature cache for the module: extraction fills it, the training sweep reads it."""
    return str(tmp_path_factory.mktemp("features"))


def _panel_json(path: Path) -> dict[str, Any]:
    """The panel without its timing fields: the run's seconds and each arm's memory-step ms
    (measured on whichever process ran the arm's first and last episodes)."""
    data = json.loads(path.read_text())
    assert data["seconds"] >= 0
    return _untimed(data)


def _untimed(panel: dict[str, Any]) -> dict[str, Any]:
    from aura_mem_dev.bench.closed_loop import without_timing

    return without_timing(panel)


def test_closed_loop_sweep_on_ray_writes_the_single_process_json(
    cluster: Any, tmp_path: Path
) -> None:
    common = ["closed-loop", "--env", ENV, "--episodes", "4", "--max-steps", "40"]
    assert bench_main([*common, "--out", str(tmp_path / "one.json")]) == 0
    # 2 episodes per shard: every arm is cut in two, random/periodic wait for aura's rate.
    ray_args = ["--ray", "--shard-episodes", "2", "--out", str(tmp_path / "ray.json")]
    assert bench_main([*common, *ray_args]) == 0
    one, sharded = _panel_json(tmp_path / "one.json"), _panel_json(tmp_path / "ray.json")
    assert sharded == one

    # Key order too: the files differ only in the timing lines.
    def lines(path: Path) -> list[str]:
        from aura_mem_dev.bench.closed_loop import ARM_TIMING_FIELDS

        timing = ("seconds", *ARM_TIMING_FIELDS)
        return [ln for ln in path.read_text().splitlines() if not any(k in ln for k in timing)]

    assert lines(tmp_path / "ray.json") == lines(tmp_path / "one.json")
    assert len(one["arms"]) == 6 and one["budget_writes_per_step"] is not None


def test_rate_matched_arms_alone_measure_aura_over_all_seeds(cluster: Any) -> None:
    """random alone: aura runs only to measure the rate, over all seeds, as in one process."""
    from aura_mem_dev.bench.closed_loop import run_panel
    from aura_mem_dev.scale.panel import run_panel_on_ray

    seeds = 1_000_100
    one = run_panel(ENV, 3, seeds, 30, ("random",)).to_dict()
    sharded = run_panel_on_ray("auto", ENV, 3, seeds, 30, ("random",), shard_episodes=1)
    assert _untimed(sharded.to_dict()) == _untimed(one)
    assert list(one["per_episode"]) == ["random"]


def test_shards_of_a_never_reset_stream_are_whole_arms() -> None:
    from aura_mem_dev.scale.panel import plan_shards

    first, second = plan_shards(("memoryless", "random"), 10, 0, 3, splittable=False)
    assert [(s.arm, s.seed_offset, s.episodes) for s in first + second] == [
        ("aura", 0, 10),
        ("memoryless", 0, 10),
        ("random", 0, 10),
    ]
    first, _ = plan_shards(("aura",), 10, 0, 3)
    assert [s.episodes for s in first] == [3, 3, 3, 1]


def test_feature_extraction_on_ray_equals_local_and_shares_the_cache(
    cluster: Any, bags: list[str], cache: str
) -> None:
    def args(*extra: str) -> Any:
        return build_parser().parse_args(
            ["--bags", *bags, "--out", "x", "--backbone", "mini", "--quiet", *extra]
        )

    local = load_training_data(args("--feature-cache", "none"))
    on_ray = load_training_data(args("--feature-cache", cache, "--ray"))
    assert on_ray.stats.runner == "ray: 2 CPU actor(s)"  # 3 bags, 2 CPUs
    assert on_ray.stats.extracted == 3 and on_ray.backbone == local.backbone
    for a, b in zip(local.bags, on_ray.bags, strict=True):
        assert a.bag == b.bag
        for field in ("features", "base", "targets", "starts"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # The cache written through Ray serves a run without Ray: the key knows no runner.
    hit = load_training_data(args("--feature-cache", cache))
    assert hit.stats.from_cache == 3 and hit.stats.frames_extracted == 0


def test_train_sweep_on_ray_writes_a_card_per_run_and_a_summary(
    cluster: Any, bags: list[str], cache: str, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    # a 25-iteration run is about the plumbing, not a better layer: saved even if not
    train = [
        *("--bags", *bags, "--backbone", "mini", "--max-iterations", "25", "--quiet"),
        "--allow-worse",
    ]
    argv = ["train-sweep", "--budgets", "0.1", "0.3", "--seeds", "0", "--out", str(out)]
    assert bench_main([*argv, "--ray", "--", *train, "--feature-cache", cache]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["budget"], r["seed"]) for r in summary["runs"]] == [(0.1, 0), (0.3, 0)]
    f = summary["features"]  # from the cache when the extraction test ran first
    assert f["bags"] == f["from_cache"] + f["extracted"] == 3
    for row in summary["runs"]:
        card = json.loads((out / row["name"] / "model_card.json").read_text())
        assert card["budget_writes_per_step"] == row["budget"]
        assert str(out / row["name"]) in card["command"]
        assert (out / row["name"] / "aura.safetensors").is_file()
        assert row["writes_per_step_val"] == card["writes_per_step_val"]
    md = (out / "summary.md").read_text()
    assert "| budget | seed |" in md and md.count("\n| 0.") >= 4
    # A run on Ray trains exactly what the same run trains here (from the cache: no backbone).
    args = build_parser().parse_args(
        [*train, "--feature-cache", cache, "--out", str(tmp_path / "here"), "--budget", "0.3"]
    )
    here = train_from_bags(args)
    on_ray = json.loads((out / "budget0.3_seed0" / "model_card.json").read_text())
    assert here["data"]["features"]["from_cache"] == 3
    assert here["validation"] == on_ray["validation"]
    assert here["threshold"] == on_ray["threshold"]
