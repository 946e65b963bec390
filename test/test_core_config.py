"""AuraConfig validation and dict round trip."""

from __future__ import annotations

import pytest

from aura_mem_ros.core.config import AuraConfig


def test_defaults_match_the_paper_state_size() -> None:
    config = AuraConfig(d_model=4096, chunk_size=8, action_dim=7)
    assert (config.d_key, config.d_val) == (32, 32)
    assert config.state_nbytes == 4224


def test_dict_round_trip() -> None:
    config = AuraConfig(d_model=64, chunk_size=1, action_dim=7, discrete=True, threshold=0.3)
    assert AuraConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 0}, "d_model"),
        ({"d_model": 3.5}, "d_model"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"d_key": True}, "d_key"),
        ({"threshold": 1.5}, "threshold"),
        ({"beta_init": 1.0}, "beta_init"),
        ({"target_write_rate": 0.0}, "target_write_rate"),
        ({"discrete": True, "chunk_size": 4}, "chunk_size 1"),
        ({"discrete": "yes"}, "discrete"),
        ({"gate_hidden": 0}, "gate_hidden"),
        ({"forget_init": 1.0}, "forget_init"),
        ({"forget_init": 0.0}, "forget_init"),
        ({"head_reads": "newest"}, "head_reads"),
        ({"head_bilinear": -1}, "head_bilinear"),
        ({"head_bilinear": 2.0}, "head_bilinear"),
        ({"forget_by_key": True}, "forget_by_key needs forget_init"),
        ({"forget_by_key": 1, "forget_init": 0.5}, "forget_by_key"),
        ({"value_from": 8}, "value_from"),
        ({"value_from": -1}, "value_from"),
        ({"value_from": 2.0}, "value_from"),
        ({"value_from": True}, "value_from"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict, match: str) -> None:
    base = {"d_model": 8, "chunk_size": 1, "action_dim": 3}
    with pytest.raises(ValueError, match=match):
        AuraConfig(**{**base, **kwargs})


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    good = AuraConfig(d_model=8, chunk_size=1, action_dim=3).to_dict()
    with pytest.raises(ValueError, match="unknown AuraConfig keys \\['d_modle'\\]"):
        AuraConfig.from_dict({**good, "d_modle": 9})
    del good["action_dim"]
    with pytest.raises(ValueError, match="missing required keys \\['action_dim'\\]"):
        AuraConfig.from_dict(good)


def test_config_is_frozen() -> None:
    config = AuraConfig(d_model=8, chunk_size=1, action_dim=3)
    with pytest.raises(AttributeError):
        config.threshold = 0.1  # type: ignore[misc]


def test_every_config_class_validates_the_same_way() -> None:
    from aura_mem_ros.backbones.mini import MiniConfig
    from aura_mem_ros.core.kv import KVConfig

    for cls, good in (
        (AuraConfig, {"d_model": 8, "chunk_size": 1, "action_dim": 3}),
        (KVConfig, {"d_model": 8, "action_dim": 3}),
        (MiniConfig, {}),
    ):
        assert cls.from_dict(good) == cls(**good)
        with pytest.raises(ValueError, match=f"{cls.__name__}.d_model must be a positive int"):
            cls(**{**good, "d_model": True})
        with pytest.raises(ValueError, match=f"unknown {cls.__name__} keys \\['bogus'\\]"):
            cls.from_dict({**good, "bogus": 1})


def test_for_backbone_takes_the_backbones_sizes() -> None:
    from aura_mem_ros.backbones import make_backbone

    toy = make_backbone("toy", d_model=12, chunk_size=3, action_dim=5)
    config = AuraConfig.for_backbone(toy, threshold=0.25)
    assert (config.d_model, config.chunk_size, config.action_dim, config.discrete) == (
        12,
        3,
        5,
        False,
    )
    assert config.threshold == 0.25
    mini = AuraConfig.for_backbone(make_backbone("mini"))
    assert (mini.chunk_size, mini.action_dim, mini.discrete) == (1, 7, True)
