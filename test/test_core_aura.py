"""AuraLayer: silent memory == base policy, straight-through gradients, step == sequence."""

from __future__ import annotations

import tempfile

import pytest
import torch

from aura_mem_ros.core.baselines import METHODS, GRUMemory, kv_cache
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.gates import GATES
from aura_mem_ros.core.memory import MemoryState
from aura_mem_ros.core.train import SequenceBatch, action_loss

# Tiny tensor ops: extra threads only contend for the shared CPU (10x slower under load).
torch.set_num_threads(1)


@pytest.mark.parametrize("discrete", [False, True])
def test_zero_initialised_residual_gives_exactly_the_base_action(discrete: bool) -> None:
    chunk, dim = (1, 7) if discrete else (8, 7)
    layer = init_aura(AuraConfig(d_model=32, chunk_size=chunk, action_dim=dim, discrete=discrete))
    x, base = torch.randn(3, 20, 32), torch.randn(3, 20, chunk, dim)
    out = layer.forward_sequence(x, base)  # the initial gate writes: memory is non-empty
    assert out.writes.sum() > 0
    assert torch.equal(out.actions, base)
    step = layer.step(x[:, 0], base[:, 0], layer.init_state(3))
    assert torch.equal(step.action, base[:, 0])


def test_gradients_reach_the_gate_through_the_estimator() -> None:
    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=5, discrete=True), seed=3)
    torch.nn.init.normal_(layer.head.out.weight, std=0.1)  # a head that reads memory
    x, base = torch.randn(4, 12, 16), torch.zeros(4, 12, 1, 5)
    targets = torch.randint(0, 5, (4, 12))
    out = layer.forward_sequence(x, base)
    assert set(out.writes.detach().unique().tolist()) <= {0.0, 1.0}  # hard forward values
    action_loss(out.actions, SequenceBatch(x, base, targets)).backward()
    for p in (layer.gate_out.weight, layer.gate_out.bias, layer.gate_in.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_gate_gets_a_signal_even_where_it_did_not_write() -> None:
    """dL/dg is defined at g = 0: the estimator asks 'would a write here have helped?'."""
    layer = init_aura(
        AuraConfig(d_model=16, chunk_size=1, action_dim=5, discrete=True, gate_init_bias=-5.0)
    )
    torch.nn.init.normal_(layer.head.out.weight, std=0.1)
    x, base = torch.randn(2, 10, 16), torch.zeros(2, 10, 1, 5)
    out = layer.forward_sequence(x, base)
    assert out.writes.sum() == 0
    action_loss(out.actions, SequenceBatch(x, base, torch.randint(0, 5, (2, 10)))).backward()
    assert layer.gate_out.bias.grad is not None and layer.gate_out.bias.grad.abs() > 0


@pytest.mark.parametrize("gate", sorted(set(GATES) - {"oracle"}))
def test_step_by_step_equals_sequence(gate: str) -> None:
    layer = init_aura(AuraConfig(d_model=16, chunk_size=2, action_dim=3), seed=1)
    torch.nn.init.normal_(layer.head.out.weight, std=0.1)
    x, base = torch.randn(2, 9, 16), torch.randn(2, 9, 2, 3)
    with torch.no_grad():
        seq = layer.forward_sequence(x, base, gate=gate, generator=torch.Generator().manual_seed(0))
        state, gen = layer.init_state(2), torch.Generator().manual_seed(0)
        for t in range(9):
            out = layer.step(x[:, t], base[:, t], state, gate=gate, t=t, generator=gen)
            state = out.state
            torch.testing.assert_close(out.action, seq.actions[:, t])
            assert torch.equal(out.write, seq.writes[:, t])


def test_oracle_gate_needs_writes_and_follows_them() -> None:
    layer = init_aura(AuraConfig(d_model=8, chunk_size=1, action_dim=3))
    x, base = torch.randn(1, 5, 8), torch.zeros(1, 5, 1, 3)
    with pytest.raises(ValueError, match="oracle"):
        layer.forward_sequence(x, base, gate="oracle")
    writes = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]])
    assert torch.equal(layer.forward_sequence(x, base, gate="oracle", writes=writes).writes, writes)


def test_unknown_gate_is_rejected() -> None:
    layer = init_aura(AuraConfig(d_model=8, chunk_size=1, action_dim=3))
    with pytest.raises(ValueError, match="unknown gate"):
        layer.forward_sequence(torch.randn(1, 2, 8), torch.zeros(1, 2, 1, 3), gate="sometimes")


@pytest.mark.parametrize("cls", [GRUMemory, kv_cache])
def test_baselines_start_at_the_base_and_step_like_their_sequence(cls: type) -> None:
    torch.manual_seed(0)
    model = cls(AuraConfig(d_model=16, chunk_size=1, action_dim=4, discrete=True))
    x, base = torch.randn(2, 7, 16), torch.randn(2, 7, 1, 4)
    with torch.no_grad():
        assert torch.equal(model.forward_sequence(x, base).actions, base)
        torch.nn.init.normal_(model.head.out.weight, std=0.1)
        seq = model.forward_sequence(x, base)
        state = model.init_state(2)
        for t in range(7):
            out = model.step(x[:, t], base[:, t], state)
            state = out.state
            torch.testing.assert_close(out.action, seq.actions[:, t], atol=1e-5, rtol=1e-5)
    assert seq.writes.sum() == 2 * 7


def test_every_benchmark_method_is_registered() -> None:
    assert set(METHODS) == {
        "aura", "always_fast_weight", "gru", "kv_cache", "reconstruction",
        "similarity", "random", "periodic", "oracle",
    }  # fmt: skip


def test_a_head_that_reads_the_last_value_tells_apart_states_with_the_same_read() -> None:
    """head_reads: two memories whose read Wᵀq̂ is the same but whose newest write differs
    give different actions, unless the head reads r alone."""
    torch.manual_seed(0)
    x, base = torch.randn(1, 16), torch.zeros(1, 2, 3)
    state_a = MemoryState(torch.zeros(1, 32, 32), torch.randn(1, 32))
    state_b = MemoryState(torch.zeros(1, 32, 32), torch.randn(1, 32))
    never = torch.zeros(1)
    for reads in ("read", "read_and_last", "last"):
        config = AuraConfig(d_model=16, chunk_size=2, action_dim=3, head_reads=reads)
        layer = init_aura(config, seed=1)
        torch.nn.init.normal_(layer.head.out.weight, std=0.1)
        with torch.no_grad():
            a = layer.step(x, base, state_a, write=never).action
            b = layer.step(x, base, state_b, write=never).action
        assert torch.equal(a, b) is (reads == "read")


def test_the_heads_product_term_answers_a_comparison_of_view_and_memory() -> None:
    """head_bilinear: (U x) ⊙ (V r) is a product, so the residual it adds flips sign when
    either the view or the memory does: "does what I see match what I stored" in one layer.
    It starts at zero (an untrained term leaves the action alone) and round-trips through a
    checkpoint; a config saved before the option existed loads without it."""
    from aura_mem_ros.core.checkpoint import load_aura, save_aura

    config = AuraConfig(d_model=16, chunk_size=2, action_dim=3, head_bilinear=8)
    layer = init_aura(config, seed=2)
    x, r = torch.randn(1, 16), torch.randn(1, 32)
    plain = AuraConfig(d_model=16, chunk_size=2, action_dim=3)
    assert torch.equal(layer.head(x, r), torch.zeros(1, 2, 3))  # both outputs start at zero
    with torch.no_grad():
        torch.nn.init.normal_(layer.head.bil_out.weight, std=0.1)
        layer.head.bil_x.bias.zero_()

        def product(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            # head.out is still zero: all of the residual is the product term
            return layer.head(x, r) - layer.head(x, torch.zeros_like(r))

        torch.testing.assert_close(product(-x, r), -product(x, r))
        torch.testing.assert_close(product(x, -r), -product(x, r))
        torch.testing.assert_close(product(-x, -r), product(x, r))
        assert product(x, r).abs().max() > 1e-3
    with tempfile.TemporaryDirectory() as tmp:
        save_aura(layer, tmp)
        again = load_aura(tmp)
        torch.testing.assert_close(again.head(x, r), layer.head(x, r))
    legacy = {k: v for k, v in plain.to_dict().items() if k != "head_bilinear"}
    assert AuraConfig.from_dict(legacy).head_bilinear == 0


def test_a_layer_that_acts_before_writing_keeps_a_writes_effect_for_later_steps() -> None:
    config = AuraConfig(d_model=16, chunk_size=2, action_dim=3, act_before_write=True)
    layer = init_aura(config, seed=1)
    torch.nn.init.normal_(layer.head.out.weight, std=0.1)
    x, base = torch.randn(1, 3, 16), torch.zeros(1, 3, 2, 3)
    with torch.no_grad():
        silent = layer.forward_sequence(x, base, writes=torch.zeros(1, 3))
        first = layer.forward_sequence(x, base, writes=torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(first.actions[:, 0], silent.actions[:, 0])  # not this step
    assert not torch.allclose(first.actions[:, 1:], silent.actions[:, 1:])  # later ones


def test_forgetting_by_key_starts_as_the_scalar_alpha_and_then_depends_on_the_key() -> None:
    from aura_mem_ros.core import memory
    from aura_mem_ros.core.checkpoint import load_aura, save_aura

    base = dict(d_model=6, chunk_size=2, action_dim=3, forget_init=0.6)
    keyed = init_aura(AuraConfig(**base, forget_by_key=True), seed=0)
    xs = torch.randn(3, 6)
    with torch.no_grad():
        k_hat = memory.unit(keyed.key(xs))  # (3, d_key)
        # w starts at zero: every write erases 0.6 of W, as the scalar layer's
        assert torch.allclose(keyed.forget_at(k_hat), torch.full((3,), 0.6))
        assert abs(keyed.forget.item() - 0.6) < 1e-6
        keyed.forget_key.weight.copy_(4.0 * k_hat[1:2])  # erase most under x1's key
        alpha = keyed.forget_at(k_hat)
        assert alpha[1] > 0.95 and alpha[2] < alpha[1]
        act = torch.zeros(1, 2, 3)
        held = keyed.step(xs[:1], act, keyed.init_state(1), write=torch.ones(1)).state
        for i in (1, 2):  # a write through the layer's step keeps (1 - α of its key) of W
            after = keyed.step(xs[i : i + 1], act, held, write=torch.ones(1)).state
            e = keyed.value(xs[i]) - held.W[0].t() @ k_hat[i]
            expected = (1 - alpha[i]) * held.W[0] + keyed.beta * k_hat[i][:, None] * e[None, :]
            assert torch.allclose(after.W[0], expected, atol=1e-6)
    with tempfile.TemporaryDirectory() as d:
        save_aura(keyed, d)
        again = load_aura(d)
    assert again.config.forget_by_key
    assert torch.equal(again.forget_key.weight, keyed.forget_key.weight)
    legacy = {k: v for k, v in keyed.config.to_dict().items() if k != "forget_by_key"}
    assert not AuraConfig.from_dict(legacy).forget_by_key  # configs saved before it still load
