"""The toy backbone: deterministic, any size, sensitive to every input, strict about shapes."""

from __future__ import annotations

import numpy as np
import pytest

from aura_mem_ros.backbones import BackboneError, Observation, make_backbone


def img(value: int) -> np.ndarray:
    out = np.zeros((20, 30, 3), np.uint8)
    out[:10, :, value % 3] = 200
    return out


@pytest.mark.parametrize("d_model", [1, 16, 4096])
def test_shapes_follow_configuration(d_model: int) -> None:
    b = make_backbone("toy", d_model=d_model, chunk_size=8, action_dim=7)
    out = b.step(Observation((img(0),), "task"))
    assert out.features.shape == (d_model,) and out.features.dtype == np.float32
    assert out.action.shape == (8, 7) and out.action.dtype == np.float32


def test_deterministic_and_input_sensitive() -> None:
    a, b = make_backbone("toy"), make_backbone("toy")
    obs = Observation((img(0),), "task")
    np.testing.assert_array_equal(a.step(obs).action, b.step(obs).action)
    assert a.model_id() == b.model_id()
    assert not np.allclose(a.step(obs).action, a.step(Observation((img(1),), "task")).action)
    assert not np.allclose(a.step(obs).features, a.step(Observation((img(0),), "other")).features)
    assert make_backbone("toy", seed=1).model_id() != a.model_id()


def test_two_images_and_proprio() -> None:
    b = make_backbone("toy", num_images=2, proprio_dim=3)
    p = np.array([0.1, 0.2, 0.3], np.float32)
    out = b.step(Observation((img(0), img(1)), "t", p))
    assert out.features.shape == (16,)
    with pytest.raises(BackboneError, match="2 image"):
        b.step(Observation((img(0),), "t", p))
    with pytest.raises(BackboneError, match="proprio"):
        b.step(Observation((img(0), img(1)), "t", None))


def test_discrete_gives_logits_of_chunk_one() -> None:
    b = make_backbone("toy", discrete=True, chunk_size=1, action_dim=4)
    assert b.discrete and b.step(Observation((img(0),), "t")).action.shape == (1, 4)
    with pytest.raises(ValueError):
        make_backbone("toy", discrete=True, chunk_size=2)


def test_rejects_non_rgb_images() -> None:
    b = make_backbone("toy")
    with pytest.raises(BackboneError):
        b.step(Observation((np.zeros((4, 4), np.uint8),), "t"))
