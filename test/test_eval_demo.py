"""aura-mem-eval on a bag recorded from the real demo (``python -m aura_mem_ros.demo``: the
minigrid_sim and aura_mem processes over DDS), with aura-mem-record as a third process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ros_harness import REPO_ROOT, start_python, stop_process, subprocess_env

from aura_mem_ros.backbones.base import BackboneError, Observation
from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR, MiniBackbone
from aura_mem_ros.eval.cli import main
from aura_mem_ros.eval.extract import extract

pytestmark = [pytest.mark.timeout(150), pytest.mark.multiprocess]


@pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "aura").is_dir(), reason="demo weights missing: make train-default"
)
def test_eval_on_a_recorded_demo_bag(tmp_path, ros_domain_id) -> None:
    env = subprocess_env(ros_domain_id)
    env["AURA_DEMO_DOMAIN_ID"] = str(ros_domain_id)
    bag = tmp_path / "demo_bag"
    recorder = start_python(["-m", "aura_mem_ros.bags.record", "-o", str(bag)], ros_domain_id)
    try:
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "aura_mem_ros.demo",
                "--episodes",
                "2",
                "--env",
                "MiniGrid-MemoryS7-v0",
                "--out-dir",
                str(tmp_path / "demo_out"),
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    finally:
        record_log = stop_process(recorder, timeout_s=30)  # SIGINT: the bag is closed
    assert recorder.returncode == 0, record_log

    out = tmp_path / "eval"
    assert main([str(bag), "-o", str(out), "--quiet", "--thresholds", "0.5"]) == 0
    report = json.loads((out / "report.json").read_text())
    b = report["bags"][0]
    assert b["node_parameters"]["backbone"] == "mini"  # fetched from the running node
    assert b["steps"] > 0 and b["episodes"] == 2, (b["steps"], b["episodes"])
    assert b["actions"]["kind"] == "discrete"
    # A recorder joining a running node may miss the first actions; what it has must replay
    # exactly, with the simulator's expert actions as targets.
    summary = {
        k: b[k]
        for k in (
            "steps",
            "episodes",
            "memory_resets",
            "replay_fidelity",
            "steps_before_first_reset_skipped",
            "observations_matched",
        )
    }
    assert b["replay_fidelity"]["of"] > 0 and b["replay_fidelity"]["faithful"], summary
    assert b["target_steps"] > 0
    for name in (
        "report.md",
        "write_rate.png",
        "write_events.png",
        "writes_vs_divergence.png",
        "writes_vs_target_error.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert os.path.getsize(out / "report.json") > 0

    # A frame the backbone refuses (e.g. the recorder had no joint state for it yet) leaves
    # that one step unmatched; the rest of the bag is still extracted.
    backbone = MiniBackbone()

    def step_refusing(nth: int | None):
        calls = [0]

        def step(obs):
            calls[0] += 1
            if calls[0] == nth:
                raise BackboneError("mini needs proprio = [heading_rad]")
            out = backbone.step(Observation(obs.images[:1], obs.instruction, obs.proprio))
            return out.features, out.action

        return step

    kept = extract(bag, step_fn=step_refusing(None), reset_fn=backbone.reset, progress=False)
    one_less = extract(bag, step_fn=step_refusing(2), reset_fn=backbone.reset, progress=False)
    assert one_less.n == kept.n
    assert int(one_less.matched.sum()) == int(kept.matched.sum()) - 1
