"""The never-reset training stage (issue 12): streams, never-reset DAgger, two-mode selection."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from aura_mem_dev.agent import Agent
from aura_mem_dev.training.episodes import agent_driver, collect_episodes
from aura_mem_dev.training.recipes import NEVER_RESET_RECIPE, DaggerRecipe, train_never_reset
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.core.checkpoint import load_aura
from aura_mem_ros.core.runtime import AuraRuntime

torch.set_num_threads(1)
ENV = ("MiniGrid-MemoryS11-v0",)


@pytest.fixture(scope="module")
def backbone() -> MiniBackbone:
    return MiniBackbone()


def test_a_never_reset_driver_carries_memory_across_episodes(backbone: MiniBackbone) -> None:
    layer = load_aura(backbone.bundled_aura_checkpoint())
    for reset, want in ((True, 3), (False, 0)):
        agent = Agent(backbone, AuraRuntime(layer, fused=False))
        driver = agent_driver(agent, 0.0, random.Random(0), reset=reset)
        collect_episodes(backbone, ENV, [940_000, 940_001, 940_002], driver, max_steps=20)
        assert agent.resets == want


def test_stream_lengths_are_validated() -> None:
    with pytest.raises(ValueError, match="stream_len"):
        DaggerRecipe(stream_len=(0, 2))
    with pytest.raises(ValueError, match="stream_len"):
        DaggerRecipe(stream_len=(3, 2))


def test_the_never_reset_stage_trains_a_layer_that_reads_the_newest_write(
    backbone: MiniBackbone,
) -> None:
    tiny = dataclasses.replace(
        NEVER_RESET_RECIPE,
        env_ids=ENV,
        iterations=12,
        warmup=4,
        batch_size=4,
        demo_episodes=6,
        base_episodes=2,
        dagger_at=(8,),
        dagger_episodes=3,
        select_episodes=3,
        eval_every=6,
        max_steps=30,
    )
    layer, record = train_never_reset(backbone, tiny)
    cfg = layer.config
    assert cfg.head_reads == "read_and_last" and cfg.act_before_write
    assert cfg.forget_init == NEVER_RESET_RECIPE.forget_init and 0 < float(layer.forget) < 1
    assert cfg.state_nbytes == 4224  # same state as the per-episode layer
    assert record["dagger"][0]["data_episodes"] == 6 + 2 + 3
    # checkpoints were chosen on both modes: the selector ran never-reset episodes too
    metrics = record["validations"][0]["metrics"]
    assert {"selector_reset_score", "selector_never_score"} <= set(metrics)
    assert metrics["selector_score"] == min(
        metrics["selector_reset_score"], metrics["selector_never_score"]
    )
