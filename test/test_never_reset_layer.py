"""The shipped never-reset layer (issue 12) runs MiniGrid-Memory back to back, memory never
reset, the way ``reset_policy: never`` serves it; the per-episode layer cannot."""

from __future__ import annotations

import pytest
import torch

from aura_mem_dev.training.recipes import ENVS, closed_loop
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.core.checkpoint import load_aura
from aura_mem_ros.core.runtime import AuraRuntime

torch.set_num_threads(1)
SEEDS = list(range(1_300_000, 1_300_060))  # above every training and validation seed


@pytest.fixture(scope="module")
def backbone() -> MiniBackbone:
    return MiniBackbone()


def _never_reset(backbone: MiniBackbone, never_reset_layer: bool) -> dict[str, float]:
    layer = load_aura(backbone.bundled_aura_checkpoint(never_reset=never_reset_layer))
    return closed_loop(backbone, AuraRuntime(layer), ENVS, SEEDS, reset=False)


def test_the_never_reset_layer_keeps_succeeding_over_a_run_without_resets(
    backbone: MiniBackbone,
) -> None:
    path = backbone.bundled_aura_checkpoint(never_reset=True)
    assert path and path.endswith("aura_never_reset")
    never = _never_reset(backbone, never_reset_layer=True)
    # 60 back-to-back episodes (S13, S11 alternating), the fused runtime the node runs:
    # two writes per episode (the cue, and the mark at the fork the next spawn reads)
    assert never["score"] >= 0.9
    assert 1.5 <= never["writes_per_episode"] <= 2.5
    # the same episodes with the per-episode layer: its gate stops writing after one cue
    episodic = _never_reset(backbone, never_reset_layer=False)
    assert episodic["score"] <= 0.75 and episodic["writes_per_episode"] < 0.5
