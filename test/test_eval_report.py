"""aura-mem-eval on a bag recorded from the running node: numbers, replay fidelity, gates,
markdown and plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_bags_support import perturbed_checkpoint, record_node_bag

from aura_mem_ros.eval.cli import main

pytestmark = pytest.mark.timeout(90)
FRAMES = 40


@pytest.fixture
def node_bag(tmp_path, ros_context, executor):
    ckpt = perturbed_checkpoint(tmp_path / "ckpt", gate_bias=-1.0)
    bag, actions = record_node_bag(
        ros_context, executor, tmp_path / "bag", FRAMES, aura_checkpoint=str(ckpt)
    )
    return bag, actions


def test_eval_reports_numbers_replays_gates_and_plots(node_bag, tmp_path) -> None:
    bag, actions = node_bag
    recorded_writes = sum(a.wrote for a in actions)
    assert 0 < recorded_writes < FRAMES, "the fixture gate should write only sometimes"
    out = tmp_path / "eval"
    assert main([str(bag), "-o", str(out), "--quiet", "--thresholds", "0.2,0.8"]) == 0

    report = json.loads((out / "report.json").read_text())
    b = report["bags"][0]
    assert b["steps"] == FRAMES and b["writes"] == recorded_writes
    assert b["writes_per_step"] == pytest.approx(recorded_writes / FRAMES)
    assert b["memory_resets"] == 2  # start + the instruction change (node resets on change)
    assert b["node_counters"]["steps"] == FRAMES and b["node_counters"]["dropped"] == 0
    assert b["latency"]["p95_ms"] >= b["latency"]["p50_ms"] > 0
    assert len(b["actions"]["mean"]) == 3
    assert sum(b["write_rate_over_time"]["steps"]) == FRAMES

    # Replaying the node's own gate with the same frozen backbone reproduces the run exactly:
    # the replay is the run that happened, so the other rows are true counterfactuals.
    fid = b["replay_fidelity"]
    assert fid["faithful"], fid
    assert fid["write_decisions_equal"] == FRAMES
    rows = {r["label"]: r for r in b["replay"]}
    assert rows["always"]["writes"] == FRAMES
    assert rows["never (base policy)"]["writes"] == 0
    # Memory changes the action (the checkpoint's head is not zero): the base policy diverges.
    assert rows["never (base policy)"]["action_divergence"] > 1e-3
    budget = recorded_writes / FRAMES
    periodic = next(r for k, r in rows.items() if k.startswith("periodic@"))
    period = max(1, round(1 / budget))
    assert periodic["writes"] == sum(math.ceil(n / period) for n in (FRAMES // 2, FRAMES // 2))
    learned_matched = next(r for k, r in rows.items() if k.startswith("learned@budget"))
    assert abs(learned_matched["writes"] - recorded_writes) <= 2
    assert {"learned@0.2", "learned@0.8", "similarity@1"} <= set(rows)
    assert rows["learned@0.2"]["writes"] >= recorded_writes >= rows["learned@0.8"]["writes"]

    assert report["overall"]["steps"] == FRAMES
    for name in ("write_rate.png", "write_events.png", "writes_vs_divergence.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    md = (out / "report.md").read_text()
    assert "| gate | steps | writes |" in md and "faithful" in md
    assert "![write_events](write_events.png)" in md

    # Two bags (the same one twice): totals add up; --no-replay needs no model.
    out2 = tmp_path / "eval2"
    assert main([str(bag), str(bag), "-o", str(out2), "--quiet", "--no-replay"]) == 0
    report2 = json.loads((out2 / "report.json").read_text())
    assert report2["overall"]["steps"] == 2 * FRAMES
    assert report2["overall"]["writes"] == 2 * recorded_writes
    assert "replay" not in report2["bags"][0]
    assert np.isclose(report2["overall"]["writes_per_step"], recorded_writes / FRAMES)


def test_unreadable_bag_points_to_recover(tmp_path, capsys) -> None:
    (tmp_path / "half").mkdir()
    assert main([str(tmp_path / "half")]) == 2
    assert "aura-mem-record --recover" in capsys.readouterr().err
