"""The closed-loop panel: Wilson intervals, seed hygiene, JSON shape, in-process == ROS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aura_mem_dev.bench.closed_loop import ARMS, Panel, run_panel, wilson_interval
from aura_mem_dev.training.seeds import EVAL_SEED_BASE

REPO = Path(__file__).resolve().parents[1]


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(30, 60)
    assert lo == pytest.approx(0.3773, abs=1e-3) and hi == pytest.approx(0.6227, abs=1e-3)
    assert wilson_interval(0, 60)[0] == 0.0 and wilson_interval(60, 60)[1] == 1.0
    lo, hi = wilson_interval(60, 60)
    assert 0.93 < lo < 0.95


def test_training_seeds_are_refused() -> None:
    with pytest.raises(ValueError, match="training"):
        run_panel("MiniGrid-MemoryS13-v0", 2, EVAL_SEED_BASE - 1)


def test_small_panel_has_the_documented_shape() -> None:
    panel = run_panel("MiniGrid-MemoryS11-v0", 3, EVAL_SEED_BASE + 500, max_steps=40)
    assert panel.env == "MiniGrid-MemoryS11-v0" and panel.episodes == 3
    assert set(panel.arms) == set(ARMS)
    for arm, r in panel.arms.items():
        lo, hi = r.ci95
        assert 0.0 <= lo <= r.success <= hi <= 1.0, arm
        assert r.steps_per_episode > 0
    assert panel.arms["memoryless"].writes_per_episode == 0.0
    always = panel.arms["always_aura"]
    assert always.writes_per_episode == pytest.approx(always.steps_per_episode)
    # the --out file: JSON, read back into the same result
    data = json.loads(json.dumps(panel.to_dict()))
    assert Panel.from_dict(data) == panel


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ros_loop_takes_the_same_actions_as_the_in_process_loop(tmp_path, ros_domain_id) -> None:
    from aura_mem_dev.agent import Agent, run_agent_episode
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR, MiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.env import make_env

    seed0, episodes = EVAL_SEED_BASE + 4242, 3
    env = dict(
        os.environ,
        AURA_DEMO_DOMAIN_ID=str(ros_domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
    )
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aura_mem_ros.demo",
            "--episodes",
            str(episodes),
            "--seed-offset",
            str(seed0),
            "--out-dir",
            str(out),
            "--timeout",
            "90",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ros_actions = json.loads((out / "demo_summary.json").read_text())["actions"]
    agent = Agent(MiniBackbone(), AuraRuntime(load_aura(DEFAULT_MODEL_DIR / "aura")))
    sim = make_env("MiniGrid-MemoryS13-v0")
    for ep in range(episodes):
        local = run_agent_episode(sim, agent, seed0 + ep, 100).actions
        assert ros_actions[str(ep)] == local, f"episode {ep}"
