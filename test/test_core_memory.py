"""The 4,224-byte fast-weight state: constant size, exact serialisation, silent steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aura_mem_ros.core import memory
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig

# Tiny tensor ops: extra threads only contend for the shared CPU (10x slower under load).
torch.set_num_threads(1)


def _random_state(seed: int = 0) -> memory.MemoryState:
    g = torch.Generator().manual_seed(seed)
    return memory.MemoryState(torch.randn(1, 32, 32, generator=g), torch.randn(1, 32, generator=g))


def test_state_bytes_constant_over_100k_steps() -> None:
    state = memory.init_state(1, 32, 32)
    g = torch.Generator().manual_seed(0)
    keys = memory.unit(torch.randn(1000, 1, 32, generator=g))
    values = torch.randn(1000, 1, 32, generator=g)
    beta, one = torch.tensor(0.9), torch.ones(1)
    sizes = {}
    with torch.no_grad():
        for t in range(100_000):
            k, v = keys[t % 1000], values[t % 1000]
            e = memory.inner_error(state, k, v)
            state = memory.write(state, k, e, v, beta, one)
            memory.read(state, k)
            if t + 1 in (1, 10, 1_000, 100_000):
                sizes[t + 1] = (memory.state_nbytes(state), len(memory.state_to_bytes(state)))
    assert set(sizes.values()) == {(4224, 4224)}
    assert torch.isfinite(state.W).all()


def test_serialise_round_trip_is_bit_exact() -> None:
    state = _random_state()
    state.W[0, 0, 0] = -0.0  # signed zero must survive too
    data = memory.state_to_bytes(state)
    assert len(data) == 4224
    back = memory.state_from_bytes(data, 32, 32)
    assert memory.state_to_bytes(back) == data
    for a, b in zip(state, back, strict=True):
        assert np.array_equal(a.numpy().view(np.uint32), b.numpy().view(np.uint32))


@pytest.mark.parametrize("size", [0, 4220, 4228])
def test_state_from_bytes_rejects_wrong_size(size: int) -> None:
    with pytest.raises(ValueError, match="4224 bytes"):
        memory.state_from_bytes(b"\0" * size, 32, 32)


def test_state_from_bytes_rejects_non_finite() -> None:
    flat = np.zeros(1056, dtype="<f4")
    flat[7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        memory.state_from_bytes(flat.tobytes(), 32, 32)


def test_state_to_bytes_needs_batch_one() -> None:
    with pytest.raises(ValueError, match="batch 1"):
        memory.state_to_bytes(memory.init_state(2, 32, 32))


@pytest.mark.parametrize("gate", ["learned", "never"])
def test_gate_off_step_leaves_state_bit_identical(gate: str) -> None:
    layer = init_aura(AuraConfig(d_model=16, chunk_size=2, action_dim=3), seed=1)
    state = _random_state(3)
    state.W[0, 1, 1] = -0.0
    x, base = torch.randn(1, 16), torch.randn(1, 2, 3)
    with torch.no_grad():
        # threshold 1.0: the learned gate (p < 1) stays silent
        out = layer.step(x, base, state, gate=gate, threshold=1.0)
    assert float(out.write[0]) == 0.0
    assert memory.state_to_bytes(out.state) == memory.state_to_bytes(state)
    assert all(torch.equal(a, b) for a, b in zip(out.state, state, strict=True))


def test_forced_silent_step_with_grad_is_identical_too() -> None:
    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=4), seed=2)
    state = _random_state(4)
    out = layer.step(torch.randn(1, 16), torch.randn(1, 1, 4), state, write=torch.zeros(1))
    assert torch.equal(out.state.W, state.W) and torch.equal(out.state.m, state.m)


def test_write_moves_w_toward_the_pair() -> None:
    """One delta-rule write with beta=1 makes W recall v exactly from its key."""
    state = _random_state(5)
    k = memory.unit(torch.randn(1, 32))
    v = torch.randn(1, 32)
    e = memory.inner_error(state, k, v)
    new = memory.write(state, k, e, v, torch.tensor(1.0), torch.ones(1))
    torch.testing.assert_close(memory.read(new, k), v, atol=1e-5, rtol=1e-5)
    assert torch.equal(new.m, v)


def test_a_forgetting_write_erases_its_fraction_of_w_and_a_silent_step_nothing() -> None:
    """W ← (1 - gα) W + gβ k̂ eᵀ: an old entry along another key fades by (1 - α) per write,
    and only on writes (the bound on what earlier episodes leave in a never-reset memory)."""
    state = _random_state(6)
    k = memory.unit(torch.randn(1, 32))
    v = torch.randn(1, 32)
    e = memory.inner_error(state, k, v)
    beta, alpha = torch.tensor(0.5), torch.tensor(0.25)
    plain = memory.write(state, k, e, v, beta, torch.ones(1))
    faded = memory.write(state, k, e, v, beta, torch.ones(1), alpha)
    torch.testing.assert_close(faded.W, plain.W - alpha * state.W)
    silent = memory.write(state, k, e, v, beta, torch.zeros(1), alpha)
    assert torch.equal(silent.W, state.W) and torch.equal(silent.m, state.m)
    # writes add along k only, so off k the old content decays geometrically: (1 - α)ⁿ
    off_k = torch.eye(32) - k[0, :, None] * k[0, None, :]
    for _ in range(10):
        e = memory.inner_error(faded, k, v)
        faded = memory.write(faded, k, e, v, beta, torch.ones(1), alpha)
    torch.testing.assert_close(off_k @ faded.W[0], 0.75**11 * (off_k @ state.W[0]))
