"""The shipped, frozen ``mini`` backbone: loading, shapes, safety of the weight files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aura_mem_ros.backbones import BackboneError, Observation, make_backbone
from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR, MiniBackbone, MiniConfig, load_mini
from aura_mem_ros.sim.env import make_env, to_sim_obs


@pytest.fixture(scope="module")
def backbone() -> MiniBackbone:
    return make_backbone("mini")  # type: ignore[return-value]


def _obs(seed: int = 1_000_000) -> Observation:
    o = to_sim_obs(make_env("MiniGrid-MemoryS13-v0").reset(seed=seed)[0])
    return Observation((o.image,), o.instruction, np.array([o.heading_rad], np.float32))


def test_shipped_files_are_safetensors_and_json_only() -> None:
    names = {p.name for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()}
    assert "model.safetensors" in names and "config.json" in names
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".bin", ".ckpt")) for n in names)
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert total < 8 * 2**20


def test_step_gives_features_and_discrete_logits(backbone: MiniBackbone) -> None:
    out = backbone.step(_obs())
    assert backbone.discrete and backbone.chunk_size == 1 and backbone.proprio_dim == 1
    assert out.features.shape == (backbone.d_model,) and out.features.dtype == np.float32
    assert out.action.shape == (1, 7) and out.action.dtype == np.float32
    assert np.isfinite(out.features).all() and np.isfinite(out.action).all()
    again = backbone.step(_obs())
    assert np.array_equal(out.action, again.action)  # frozen, stateless, deterministic


def test_model_id_is_a_hash_of_the_weights(backbone: MiniBackbone) -> None:
    assert backbone.model_id() == load_mini()[2] and len(backbone.model_id()) == 16


def test_foreign_image_sizes_are_resized(backbone: MiniBackbone) -> None:
    obs = _obs()
    big = np.repeat(np.repeat(obs.images[0], 2, axis=0), 2, axis=1)
    out = backbone.step(Observation((big,), obs.instruction, obs.proprio))
    assert out.action.shape == (1, 7)


@pytest.mark.parametrize("proprio", [None, np.array([math.nan], np.float32)])
def test_missing_or_bad_heading_is_refused(backbone: MiniBackbone, proprio) -> None:
    obs = _obs()
    with pytest.raises(BackboneError):
        backbone.step(Observation(obs.images, obs.instruction, proprio))


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    data = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["backbone"]
    assert MiniConfig.from_dict(data).d_model == 128
    with pytest.raises(ValueError):
        MiniConfig.from_dict({**data, "surprise": 1})
    with pytest.raises(ValueError):
        MiniConfig(d_model=0)


def test_missing_weights_raise_backbone_error(tmp_path) -> None:
    with pytest.raises(BackboneError):
        MiniBackbone(model_dir=tmp_path)
