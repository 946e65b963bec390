"""The never-reset layer ``arm_mini`` ships (``reset_policy: never``): one memory over 16
back-to-back held-out arm episodes, in the fused runtime the node runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR, ArmMiniBackbone
from aura_mem_ros.core.checkpoint import load_aura
from aura_mem_ros.core.runtime import AuraRuntime
from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

torch.set_num_threads(1)
SEEDS = range(1_200_000, 1_200_016)  # held out (>= 1,000,000), not the benchmark's


@pytest.fixture(scope="module")
def backbone() -> ArmMiniBackbone:
    return ArmMiniBackbone(DEFAULT_MODEL_DIR)


def _run_without_resets(backbone: ArmMiniBackbone, never_reset_layer: bool) -> tuple[float, float]:
    layer = load_aura(backbone.bundled_aura_checkpoint(never_reset=never_reset_layer))
    env = ArmEnv(ArmTaskConfig(image_size=backbone.net.cfg.image_size))
    agent = ChunkAgent(backbone, AuraRuntime(layer))
    agent.reset()  # once: the run is one robot's day
    try:
        episodes = [run_episode(env, agent, seed, reset_agent=False) for seed in SEEDS]
    finally:
        env.close()
    return float(np.mean([e.success for e in episodes])), float(
        np.mean([e.writes for e in episodes])
    )


def test_the_shipped_never_reset_layer_follows_each_new_cue_without_resets(
    backbone: ArmMiniBackbone,
) -> None:
    path = backbone.bundled_aura_checkpoint(never_reset=True)
    assert path and path.endswith("aura_never_reset")
    assert load_aura(path).config.forget_by_key
    success, writes = _run_without_resets(backbone, never_reset_layer=True)
    assert success >= 0.8  # chance is about 1/3
    assert 0.8 <= writes <= 2.5  # the cue, sometimes once more
    # the per-episode layer in the same run: its gate stops writing into a full memory
    episodic_success, episodic_writes = _run_without_resets(backbone, never_reset_layer=False)
    assert episodic_success <= 0.6 and episodic_writes < 0.5
