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


def test_seen_objects_says_what_is_in_view_but_not_where(backbone: MiniBackbone) -> None:
    """The seen_objects part is the same when the one object in view moves to another tile;
    the policy's features (position-specific) are not. Nothing else changes."""
    seen = make_backbone("mini", seen_objects=True)
    tile = backbone.cfg.tile_size
    image = np.zeros((56, 56, 3), np.uint8)
    ball = np.zeros((tile, tile, 3), np.uint8)
    ball[2:6, 2:6] = (0, 200, 0)  # a green blob on one floor tile

    def with_ball_at(row: int, col: int) -> Observation:
        img = image.copy()
        img[row * tile : (row + 1) * tile, col * tile : (col + 1) * tile] = ball
        return Observation((img,), "go", np.array([0.0], np.float32))

    a, b = seen.step(with_ball_at(1, 1)), seen.step(with_ball_at(4, 5))
    start, stop = seen.feature_parts()["seen_objects"]
    assert seen.d_model == backbone.d_model + backbone.cfg.conv_channels == stop
    assert seen.feature_parts()["policy"] == (0, backbone.d_model) == (0, start)
    assert np.array_equal(a.features[start:], b.features[start:])
    assert not np.allclose(a.features[:start], b.features[:start])
    empty = seen.step(Observation((image,), "go", np.array([0.0], np.float32)))
    assert not np.allclose(a.features[start:], empty.features[start:])  # it sees the ball
    # the first part and the action are exactly the plain backbone's
    plain = backbone.step(with_ball_at(1, 1))
    assert np.array_equal(a.features[:start], plain.features)
    assert np.array_equal(a.action, plain.action)
    assert backbone.feature_parts() == {"policy": (0, backbone.d_model)}
    with pytest.raises(BackboneError, match="seen_objects"):
        make_backbone("mini", seen_objects="yes")
