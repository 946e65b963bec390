"""The MuJoCo arm task: physics, camera, cue schedule, scripted expert, chunk loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ros_harness import REPO_ROOT

from aura_mem_ros.sim.arm.env import (
    ACTION_DIM,
    PROPRIO_DIM,
    ArmEnv,
    ArmTaskConfig,
    axis_angle_to_quat,
    quat_to_axis_angle,
)
from aura_mem_ros.sim.arm.expert import expert_action, expert_chunk
from aura_mem_ros.sim.arm.loop import ArmEpisode, ChunkStep, run_episode

SMALL = ArmTaskConfig(image_size=32)


@pytest.fixture(scope="module")
def env() -> ArmEnv:
    e = ArmEnv(SMALL)
    yield e
    e.close()


def test_reset_is_seeded_and_observation_has_the_oft_shapes(env: ArmEnv) -> None:
    a = env.reset(1_000_001)
    cue_a, block_a = env.state.cue_pad, env.block_pos
    b = env.reset(1_000_001)
    assert env.state.cue_pad == cue_a and np.allclose(env.block_pos, block_a)
    assert np.array_equal(a.image, b.image)
    assert a.image.shape == (32, 32, 3) and a.image.dtype == np.uint8
    assert a.proprio.shape == (PROPRIO_DIM,) and a.proprio.dtype == np.float32
    assert a.instruction
    # the frame is not blank: table, pads, block and gripper differ in colour
    assert len(np.unique(a.image.reshape(-1, 3), axis=0)) > 10
    cues = set()
    for s in range(30):
        env.reset(1_000_000 + s)
        cues.add(env.state.cue_pad)
    assert cues == {0, 1, 2}


def test_cue_is_lit_only_at_the_start_and_flickers_are_not_the_cue(env: ArmEnv) -> None:
    env.reset(1_000_002)
    first = env.render()
    lit = env.pad_colors()
    assert env.cue_visible() and lit.count(lit[env.state.cue_pad]) == 1
    for _ in range(SMALL.cue_steps):
        env.step(np.zeros(ACTION_DIM, np.float32))
    assert not env.cue_visible()
    dark = env.render()
    assert not np.array_equal(first, dark)  # the light went out in the picture too
    pad, start, _ = env.state.flickers[0]
    while env.state.t < start:
        env.step(np.zeros(ACTION_DIM, np.float32))
    assert env.flicker_visible() and env.pad_colors()[pad] != lit[env.state.cue_pad]


def test_actions_move_the_end_effector_and_bad_actions_are_refused(env: ArmEnv) -> None:
    env.reset(1_000_003)
    before = env.proprio().copy()
    for _ in range(5):
        env.step(np.array([1, 0, 0, 0, 0, 0, -1], np.float32))
    after = env.proprio()
    assert after[0] - before[0] == pytest.approx(5 * 0.003, abs=2e-3)  # eef x moved
    assert abs(after[1] - before[1]) < 2e-3
    with pytest.raises(ValueError):
        env.step(np.full(ACTION_DIM, np.nan, np.float32))
    with pytest.raises(ValueError):
        env.step(np.zeros(6, np.float32))


def test_axis_angle_round_trip() -> None:
    v = np.array([0.1, -0.2, 0.3])
    assert np.allclose(quat_to_axis_angle(axis_angle_to_quat(v)), v)


def test_expert_completes_on_the_cued_pad_and_chunks_restore_state(env: ArmEnv) -> None:
    env.reset(1_000_004)
    snapshot_block = env.block_pos
    chunk = expert_chunk(env, 8)
    assert chunk.shape == (8, ACTION_DIM) and env.state.t == 0
    assert np.allclose(env.block_pos, snapshot_block)
    np.testing.assert_allclose(chunk[0], expert_action(env))
    for seed in (1_000_004, 1_000_005):
        env.reset(seed)
        while not env.state.done:
            env.step(expert_action(env))
        assert env.state.placed_pad == env.state.cue_pad
        # >= 150 control steps of manipulation after the cue went dark
        assert env.state.t - SMALL.cue_steps >= 150


def test_expert_to_another_pad_ends_on_that_pad(env: ArmEnv) -> None:
    env.reset(1_000_006)
    other = (env.state.cue_pad + 1) % env.num_pads
    while not env.state.done:
        env.step(expert_action(env, target_pad=other))
    assert env.state.placed_pad == other


class _ExpertAgent:
    """A chunk agent that cheats (reads the env): exercises the loop, not a policy."""

    def __init__(self, env: ArmEnv) -> None:
        self.env = env
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def act(self, obs) -> ChunkStep:
        chunk = expert_chunk(self.env, 8)
        wrote = self.env.cue_visible()
        return ChunkStep(chunk, wrote, np.zeros(4, np.float32), chunk)


def test_chunk_loop_records_writes_cue_chunks_and_keeps_memory_when_asked(env: ArmEnv) -> None:
    agent = _ExpertAgent(env)
    ep: ArmEpisode = run_episode(env, agent, 1_000_007, keep_frames=True)
    assert ep.success and ep.completed and agent.resets == 1
    assert ep.cue_chunks == [0, 1]  # 16 cue steps, a frame every 8
    assert ep.write_chunks == [0, 1] and ep.write_steps == [0, 8]
    assert len(ep.frames) == ep.chunks and ep.steps == env.state.t
    run_episode(env, agent, 1_000_008, execute_steps=4, reset_agent=False)
    assert agent.resets == 1


def test_arm_modules_never_import_rclpy() -> None:
    code = (
        "import sys, importlib\n"
        "for name in ['aura_mem_ros.sim.arm.env', 'aura_mem_ros.sim.arm.expert',\n"
        "             'aura_mem_ros.sim.arm.loop', 'aura_mem_ros.backbones.arm_mini',\n"
        "             'aura_mem_dev.arm.data', 'aura_mem_dev.arm.memory']:\n"
        "    importlib.import_module(name)\n"
        "    bad = sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy')\n"
        "    if bad:\n"
        "        sys.exit(f'{name} pulled in {bad[:5]}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
