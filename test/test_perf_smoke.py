"""Smoke test of `aura-mem-bench perf` / scripts/bench_perf.py: it runs and writes the keys
scripts rely on. No timing is asserted (timings belong in docs/results/perf.md, not in CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aura_mem_dev.bench import perf
from aura_mem_dev.bench.perf.pyspy import summarise_raw_profile
from aura_mem_dev.bench.perf.result import PerfResult
from aura_mem_dev.report.perf import render_markdown

pytestmark = pytest.mark.timeout(120)


def test_quick_run_writes_every_per_step_key(tmp_path: Path) -> None:
    out, md = tmp_path / "perf.json", tmp_path / "perf.md"
    assert perf.main(["--quick", "--no-node", "--out", str(out), "--md", str(md)]) == 0
    result = json.loads(out.read_text())
    for key in ("aura_step_us", "kv_step_us"):
        assert set(result[key]) == {"1", "100"}
        for stats in result[key].values():
            assert stats["p50"] > 0 and stats["p99"] >= stats["p50"]
    # State bytes are read off live objects: AURA constant, the KV-cache 256 B per entry.
    assert result["aura_state_bytes"] == {"1": 4224, "100": 4224}
    assert result["kv_state_bytes"] == {"1": 256, "100": 25600}
    assert result["aura_profile"] and result["meta"]["torch_threads"] == 1
    # the quick run repeats the comparison twice and pools both rounds
    assert all(len(v) == 2 for v in result["aura_step_p50_us_by_round"].values())
    assert result["fused_rss_mb"]["fused_after_mb"] > 0
    assert result["gemv_cache_us"]["from_dram"]["p50"] > 0
    text = md.read_text()
    assert "| 100 |" in text and "## Targets" in text
    # the report can be re-rendered from the JSON alone, identically
    again = tmp_path / "again.md"
    assert perf.main(["--render", str(out), "--md", str(again)]) == 0
    assert again.read_text() == text


def test_markdown_includes_the_node_section() -> None:
    step = {"p50": 200.0, "p99": 400.0, "mean": 210.0}
    run = {
        "rate_hz": 30.0,
        "frames_sent": 600,
        "actions": 600,
        "served_fraction": 1.0,
        "dropped_frames": 0,
        "e2e_ms": {"p50": 4.0, "p95": 9.0, "p99": 12.0},
        "inference_ms": {"p50": 2.0, "p95": 3.0},
        "achieved_rate_hz": 30.0,
    }
    result = {
        "meta": {
            "command": "x",
            "host": "h",
            "date_utc": "d",
            "cpu": "c",
            "cpus": 2,
            "loadavg_before": [1],
            "loadavg_after": [1],
            "torch": "t",
            "torch_threads": 1,
            "samples": 10,
            "ramp_seconds": 1,
            "seconds": 1,
        },
        "aura_step_us": {"1": step},
        "kv_step_us": {"1": step},
        "aura_step_p50_us_by_round": {"1": [200.0]},
        "kv_step_p50_us_by_round": {"1": [200.0]},
        "rounds": 1,
        "aura_run_seconds": 1.0,
        "aura_state_bytes": {"1": 4224},
        "kv_state_bytes": {"1": 256},
        "aura_reference_step_us": step,
        "kv_layer_step_us": {"1": step},
        "matvec_floor_us": step,
        "aura_p50_us_by_block": {"block_steps": 1, "p50_by_round": [[1.0]]},
        "aura_writes": 1,
        "aura_steps": 1,
        "node_command": "python -m aura_mem_ros.node",
        "node_latency_ms": {"30": {"p50": 4.0, "p95": 9.0}},
        "node_rate_runs": {"30": run},
        "node_ramp": [{**run, "sustained": True}],
        "node_max_rate_hz": 30.0,
        "rss_mb_after_warmup": 300.0,
        "rss_mb_start": 300.0,
        "rss_mb_end": 301.0,
        "rss_growth_pct": 0.33,
        "soak": {
            "rate_hz": 30.0,
            "steps": 100,
            "frames_sent": 100,
            "dropped_frames": 0,
            "e2e_ms": {},
            "seconds": 3.0,
            "rss_series": [(0.0, 1, 300.0)],
        },
        "node_profile": summarise_raw_profile(
            "thread (1);_infer (aura_mem_ros/ros/aura_node.py:385);step (x.py:3) 30\n"
            "thread (1);wait (threading.py:320) 70\n"
        ),
    }
    text = render_markdown(PerfResult.from_dict(result))
    assert "node p95 <= 25 ms at 30 Hz" in text and "| yes |" in text
    assert "_infer (aura_mem_ros/ros/aura_node.py)" in text


def test_raw_profile_separates_idle_from_busy_samples() -> None:
    summary = summarise_raw_profile(
        "a (m.py:1);b (m.py:2) 3\na (m.py:1);wait (threading.py:320) 5\nbad line\n"
    )
    assert summary["busy_samples"] == 3 and summary["idle_samples"] == 5
    assert {r["function"] for r in summary["top_inclusive"]} == {"a (m.py)", "b (m.py)"}


def test_saved_results_read_back_unchanged() -> None:
    """The committed JSON is what the typed result writes: --render works on it."""
    from ros_harness import REPO_ROOT

    for name in ("perf.json", "perf_soak.json"):
        data = json.loads((REPO_ROOT / "docs" / "results" / name).read_text())
        assert PerfResult.from_dict(data).to_dict() == data


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_serving_latency_runs_and_renders(tmp_path: Path) -> None:
    """`aura-mem-bench serving-latency` (joint states at camera rate) on a 1-s stream: the JSON
    reads back as the typed result, and --render rewrites the same report from it."""
    from aura_mem_dev.bench import serving_latency
    from aura_mem_dev.bench.serving_latency import ServingLatencyResult

    out, md = tmp_path / "perf_serving.json", tmp_path / "perf_serving.md"
    args = ["--sizes", "224x224", "--seconds", "1", "--warmup-seconds", "0.5"]
    assert serving_latency.main([*args, "--out", str(out), "--md", str(md)]) == 0
    data = json.loads(out.read_text())
    result = ServingLatencyResult.from_dict(data)
    assert result.to_dict() == data
    (row,) = result.sizes
    assert row.size == "224x224" and row.frames_sent >= 20
    assert row.actions > 0 and row.e2e_ms["p95"] >= row.e2e_ms["p50"] > 0
    assert result.meta.profile is True
    text = md.read_text()
    assert "| 224x224 |" in text and "e2e p95 <= 25 ms" in text
    again = tmp_path / "again.md"
    assert serving_latency.main(["--render", str(out), "--md", str(again)]) == 0
    assert again.read_text() == text
