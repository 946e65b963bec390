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
@pytest.mark.parametrize("no_reset", [False, True])
def test_ros_loop_takes_the_same_actions_as_the_in_process_loop(
    tmp_path, ros_domain_id, no_reset: bool
) -> None:
    """The demo (sim + node over DDS) and the in-process loop take the same actions; with
    --no-reset the in-process loop never resets, so equal actions mean the node did not
    either (memory carried across the episodes in both)."""
    from aura_mem_dev.agent import Agent, run_agent_episode
    from aura_mem_ros.backbones.mini import MiniBackbone
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
            *(["--no-reset"] if no_reset else []),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ros_actions = json.loads((out / "demo_summary.json").read_text())["actions"]
    # the layer the node serves: under --no-reset (reset_policy never) the never-reset one
    backbone = MiniBackbone()
    agent = Agent(backbone, AuraRuntime(load_aura(backbone.bundled_aura_checkpoint(no_reset))))
    sim = make_env("MiniGrid-MemoryS13-v0")
    for ep in range(episodes):
        local = run_agent_episode(sim, agent, seed0 + ep, 100, reset_memory=not no_reset)
        assert ros_actions[str(ep)] == local.actions, f"episode {ep}"
    if no_reset:
        assert agent.resets == 0
        summary = json.loads((out / "demo_summary.json").read_text())
        assert summary["reset_between_episodes"] is False
        assert set(summary["cue_writes"]) == {
            "episodes_with_cue_write",
            "new_cue_episodes",
            "new_cue_episodes_seen",
            "new_cue_episodes_with_write",
        }


def _count_resets(monkeypatch) -> dict[str, int]:
    """Count reset() calls of every memory runtime and of the backbone, except the one each
    runtime makes while it is built (a robot boots with empty memory)."""
    import inspect

    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.kv import KVRuntime
    from aura_mem_ros.core.runtime import AuraRuntime

    counts = {"AuraRuntime": 0, "KVRuntime": 0, "MiniBackbone": 0}
    for cls in (AuraRuntime, KVRuntime, MiniBackbone):
        original = cls.reset

        def counting(self, _original=original, _name=cls.__name__) -> None:
            if inspect.stack()[1].function != "__init__":
                counts[_name] += 1
            _original(self)

        monkeypatch.setattr(cls, "reset", counting)
    return counts


def test_no_reset_panel_never_resets_and_reports_drift_and_state(monkeypatch) -> None:
    counts = _count_resets(monkeypatch)
    episodes = 4
    arms = ("memoryless", "always_kv", "always_aura", "aura")
    never = run_panel(
        "MiniGrid-MemoryS11-v0", episodes, EVAL_SEED_BASE + 700, 40, arms, reset=False
    )
    assert counts == {"AuraRuntime": 0, "KVRuntime": 0, "MiniBackbone": 0}
    assert never.reset_mode == "never"
    for arm, r in never.arms.items():
        assert r.resets == 0, arm
        for key in ("first_quarter_success", "last_quarter_success", "final_state_bytes"):
            assert key in r.to_dict() and getattr(r, key) is not None, (arm, key)
        assert r.first_quarter_ci95[0] <= r.first_quarter_success <= r.first_quarter_ci95[1]
    steps = sum(e["steps"] for e in never.per_episode["always_kv"])
    # the KV cache kept every step of every episode (+ the steps its end cost was timed on)
    assert never.arms["always_kv"].final_state_bytes >= 256 * steps
    assert never.arms["always_aura"].final_state_bytes == 4224
    assert never.arms["memoryless"].final_state_bytes == 0
    kv = never.arms["always_kv"]
    assert kv.memory_step_ms_start is not None and kv.memory_step_ms_end is not None

    # The matched reset-mode panel: same seeds, one reset per episode and arm with memory.
    reset = run_panel("MiniGrid-MemoryS11-v0", episodes, EVAL_SEED_BASE + 700, 40, arms)
    assert counts["AuraRuntime"] == 2 * episodes and counts["KVRuntime"] == episodes
    assert reset.arms["always_kv"].resets == episodes
    assert [e["seed"] for e in reset.per_episode["aura"]] == [
        e["seed"] for e in never.per_episode["aura"]
    ]
    # the first episode starts from empty memory in both modes: it is the same episode
    assert reset.per_episode["aura"][0] == never.per_episode["aura"][0]
    assert Panel.from_dict(json.loads(json.dumps(never.to_dict()))) == never


def test_mixed_stream_alternates_envs() -> None:
    panel = run_panel("mixed", 3, EVAL_SEED_BASE + 800, 30, ("memoryless",), reset=False)
    envs = [e["env"] for e in panel.per_episode["memoryless"]]
    assert envs == [
        "MiniGrid-MemoryS11-v0",
        "MiniGrid-MemoryS13-v0",
        "MiniGrid-MemoryS17Random-v0",
    ]
    by_env = panel.arms["memoryless"].success_by_env
    assert by_env is not None and {e: n for e, (_, n) in by_env.items()} == dict.fromkeys(envs, 1)


def test_a_layer_trained_on_the_seen_objects_runs_on_them(tmp_path) -> None:
    """A layer aura-mem-train wrote with --backbone-args '{"seen_objects": true}' is run on
    the backbone its model card names (the shipped layer, without a card, on the plain one)."""
    from aura_mem_dev.bench.closed_loop import trained_backbone_args
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.checkpoint import init_aura, save_aura
    from aura_mem_ros.core.config import AuraConfig

    backbone = MiniBackbone(seen_objects=True)
    layer_dir = tmp_path / "aura_seen"
    save_aura(init_aura(AuraConfig.for_backbone(backbone, value_from=128)), layer_dir)
    card = {"backbone": {"name": "mini", "args": {"seen_objects": True}}}
    (layer_dir / "model_card.json").write_text(json.dumps(card))
    assert trained_backbone_args(layer_dir) == {"seen_objects": True}
    assert trained_backbone_args(tmp_path) == {}
    panel = run_panel(
        "MiniGrid-MemoryS11-v0",
        2,
        EVAL_SEED_BASE + 900,
        40,
        ("aura",),
        aura_checkpoint=str(layer_dir),
    )
    assert panel.arms["aura"].steps_per_episode > 0
