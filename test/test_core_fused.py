"""The fused inference kernel computes the same step as the reference AuraLayer.step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.fused import FusedStep
from aura_mem_ros.core.gates import FUSED_GATES
from aura_mem_ros.core.runtime import AuraRuntime

torch.set_num_threads(1)


def _layer(
    d_model: int,
    seed: int,
    head_reads: str = "read",
    forget: float | None = None,
    bilinear: int = 0,
    by_key: bool = False,
    value_from: int = 0,
) -> torch.nn.Module:
    """A layer whose head changes the action and whose gate writes on some steps only
    (a head that reads m also acts before writing, as a never-reset layer does; a product
    term, when there is one, adds to the action too; a per-key α varies from write to write)."""
    config = AuraConfig(
        d_model=d_model,
        chunk_size=4,
        action_dim=7,
        head_reads=head_reads,
        act_before_write=head_reads != "read",
        forget_init=forget,
        head_bilinear=bilinear,
        forget_by_key=by_key,
        value_from=value_from,
    )
    layer = init_aura(config, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.head.out.weight.copy_(0.2 * torch.randn(layer.head.out.weight.shape, generator=g))
        layer.head.out.bias.copy_(0.05 * torch.randn(layer.head.out.bias.shape, generator=g))
        layer.gate_out.weight.copy_(torch.randn(layer.gate_out.weight.shape, generator=g))
        layer.gate_out.bias.zero_()
        layer.gate_offset.fill_(0.3)
        if bilinear:
            out = layer.head.bil_out
            out.weight.copy_(0.2 * torch.randn(out.weight.shape, generator=g))
            out.bias.copy_(0.05 * torch.randn(out.bias.shape, generator=g))
        if by_key:
            layer.forget_key.weight.copy_(
                2.0 * torch.randn(layer.forget_key.weight.shape, generator=g)
            )
    return layer


def _inputs(n: int, d_model: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, d_model)).astype(np.float32),
        rng.standard_normal((n, 4, 7)).astype(np.float32),
    )


def _run(runtime: AuraRuntime, feats: np.ndarray, bases: np.ndarray) -> tuple[list, ...]:
    actions, writes, probs = [], [], []
    for f, b in zip(feats, bases, strict=True):
        step = runtime.select_action(f, b)
        actions.append(step.action)
        writes.append(step.wrote)
        probs.append(step.write_prob)
    return np.stack(actions), np.array(writes), np.array(probs)


@pytest.mark.parametrize(
    ("d_model", "seed", "head_reads", "forget", "bilinear", "by_key"),
    [
        (24, 0, "read", None, 0, False),
        (512, 1, "read", None, 0, False),
        (4096, 2, "read", None, 0, False),
        (24, 4, "read_and_last", None, 0, False),
        (512, 5, "read_and_last", None, 0, False),
        (24, 7, "last", None, 0, False),
        (24, 8, "read", 0.3, 0, False),
        (512, 9, "read_and_last", 0.6, 0, False),
        (24, 10, "read", None, 16, False),
        (512, 11, "read_and_last", 0.4, 64, False),
        (24, 12, "read", 0.5, 0, True),
        (512, 13, "read_and_last", 0.6, 64, True),
    ],
)
def test_fused_learned_gate_matches_the_reference_step(
    d_model: int, seed: int, head_reads: str, forget: float | None, bilinear: int, by_key: bool
) -> None:
    layer = _layer(d_model, seed, head_reads, forget, bilinear, by_key)
    feats, bases = _inputs(300, d_model, seed)
    fused, reference = AuraRuntime(layer), AuraRuntime(layer, fused=False)
    assert fused._fused is not None and reference._fused is None
    a_ref, w_ref, p_ref = _run(reference, feats, bases)
    # the comparison means something only if the gate both writes and stays silent, and no
    # probability sits so close to the threshold that float32 rounding could flip it
    assert 0.1 < w_ref.mean() < 0.9
    assert np.abs(p_ref - layer.config.threshold).min() > 1e-5
    a_fused, w_fused, p_fused = _run(fused, feats, bases)
    np.testing.assert_array_equal(w_fused, w_ref)
    np.testing.assert_allclose(p_fused, p_ref, atol=1e-5)
    np.testing.assert_allclose(a_fused, a_ref, rtol=1e-4, atol=1e-5)
    assert a_fused.dtype == np.float32
    state_ref = np.frombuffer(reference.state_bytes(), "<f4")
    np.testing.assert_allclose(np.frombuffer(fused.state_bytes(), "<f4"), state_ref, atol=1e-5)
    assert fused.writes == reference.writes == int(w_ref.sum())


def test_a_value_that_reads_part_of_the_features_is_fused_the_same() -> None:
    """AuraConfig.value_from: the value ignores features[:value_from] (key, query, head and
    gate still read them), in the reference step and in the fused kernel alike."""
    layer = _layer(24, 14, bilinear=16, value_from=16)
    assert layer.value.in_features == 8
    x = torch.randn(3, 24)
    moved = x.clone()
    moved[:, :16] += 1.0
    (k1, v1, *_), (k2, v2, *_) = layer._precompute(x), layer._precompute(moved)
    assert torch.equal(v1, v2) and not torch.allclose(k1, k2)
    moved[:, 16:] += 1.0
    assert not torch.allclose(layer._precompute(moved)[1], v1)
    feats, bases = _inputs(300, 24, 14)
    a_ref, w_ref, _ = _run(AuraRuntime(layer, fused=False), feats, bases)
    assert 0.1 < w_ref.mean() < 0.9
    a_fused, w_fused, _ = _run(AuraRuntime(layer), feats, bases)
    np.testing.assert_array_equal(w_fused, w_ref)
    np.testing.assert_allclose(a_fused, a_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gate", ["always", "never"])
def test_fused_constant_gates_match_the_reference_step(gate: str) -> None:
    layer = _layer(24, 3)
    feats, bases = _inputs(50, 24, 3)
    a_fused, w_fused, _ = _run(AuraRuntime(layer, gate=gate), feats, bases)
    a_ref, w_ref, _ = _run(AuraRuntime(layer, gate=gate, fused=False), feats, bases)
    np.testing.assert_array_equal(w_fused, w_ref)
    assert w_fused.all() if gate == "always" else not w_fused.any()
    np.testing.assert_allclose(a_fused, a_ref, rtol=1e-4, atol=1e-5)


def test_a_silent_fused_step_leaves_the_memory_bit_identical() -> None:
    layer = _layer(24, 4)
    runtime = AuraRuntime(layer, gate="always")
    feats, bases = _inputs(6, 24, 4)
    _run(runtime, feats[:3], bases[:3])
    before = runtime.state_bytes()
    silent = AuraRuntime(layer, threshold=1.0)  # p > 1 never holds: every step is silent
    silent.load_state_bytes(before)
    _run(silent, feats[3:], bases[3:])
    assert silent.writes == 0 and silent.state_bytes() == before


def test_fused_step_follows_changes_to_the_layer_weights() -> None:
    layer = _layer(24, 5)
    feats, bases = _inputs(1, 24, 5)
    fused = AuraRuntime(layer, gate="never")
    first = fused.select_action(feats[0], bases[0]).action
    with torch.no_grad():  # what an optimiser step or load_state_dict does: in place
        layer.head.out.bias.add_(1.0)
    fused.reset()
    second = fused.select_action(feats[0], bases[0]).action
    reference = AuraRuntime(layer, gate="never", fused=False).select_action(feats[0], bases[0])
    np.testing.assert_allclose(second, first + 1.0, atol=1e-5)
    np.testing.assert_allclose(second, reference.action, atol=1e-5)


def test_fused_step_accepts_strided_and_float64_inputs() -> None:
    layer = _layer(24, 6)
    feats, bases = _inputs(4, 48, 6)
    strided = feats[:, ::2]  # a view with stride 2
    assert not strided[0].flags.c_contiguous
    a = AuraRuntime(layer).select_action(strided[0], bases[0].astype(np.float64))
    b = AuraRuntime(layer, fused=False).select_action(np.ascontiguousarray(strided[0]), bases[0])
    np.testing.assert_allclose(a.action, b.action, rtol=1e-4, atol=1e-5)
    assert a.wrote == b.wrote


def test_only_the_layer_only_gates_are_fused() -> None:
    assert set(FUSED_GATES) == {"learned", "always", "never"}
    with pytest.raises(ValueError, match="not fused"):
        FusedStep(_layer(24, 0), "random")
    assert AuraRuntime(_layer(24, 0), gate="random")._fused is None
