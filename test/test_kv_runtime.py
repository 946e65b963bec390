"""The closed-loop KV-cache arm: its batch-1 runtime steps exactly what training runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aura_mem_ros.core.kv import KVConfig, KVMemory, KVRuntime, load_kv, save_kv
from aura_mem_ros.core.memory import unit


def _batch(b: int = 3, t: int = 6, d: int = 16, n: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, t, d, generator=g),
        torch.randn(b, t, 1, n, generator=g),
        torch.randint(n, (b, t), generator=g),
        torch.ones(b, t),
    )


def test_kv_runtime_matches_the_sequence_forward(tmp_path) -> None:
    torch.manual_seed(0)
    model = KVMemory(KVConfig(d_model=16, action_dim=7))
    torch.nn.init.normal_(model.head.out.weight, std=0.5)  # non-zero residual to compare
    save_kv(model, tmp_path)
    model = load_kv(tmp_path)
    feats, base, _, _ = _batch(b=1)
    with torch.no_grad():
        seq = model.forward_sequence(feats, base).actions[0]
    rt = KVRuntime(model)
    for t in range(feats.shape[1]):
        step = rt.select_action(feats[0, t].numpy(), base[0, t].numpy())
        assert np.allclose(step.action, seq[t].numpy(), atol=1e-5) and step.wrote
    assert rt.state_nbytes == feats.shape[1] * 256  # grows by one K and one V per step


@pytest.mark.parametrize("heads", [1, 4])
def test_chunked_kv_with_recency_steps_like_its_sequence_and_round_trips(
    tmp_path, heads: int
) -> None:
    """The arm's shape (8 x 7 continuous chunks, 4 heads) and the synthetic task's recency."""
    torch.manual_seed(0)
    config = KVConfig(d_model=16, action_dim=7, chunk_size=8, recency=True, heads=heads)
    model = KVMemory(config)
    torch.nn.init.normal_(model.head.out.weight, std=0.5)
    with torch.no_grad():
        model.slope_raw.fill_(0.5)
    save_kv(model, tmp_path)
    loaded = load_kv(tmp_path)
    assert loaded.config == model.config
    feats = torch.randn(2, 9, 16)
    base = torch.randn(2, 9, 8, 7)
    with torch.no_grad():
        seq = loaded.forward_sequence(feats, base).actions
        state = loaded.init_state(2)  # batched stepping (the synthetic stream's evaluation)
        for t in range(9):
            out = loaded.step(feats[:, t], base[:, t], state)
            state = out.state
            torch.testing.assert_close(out.action, seq[:, t], atol=1e-5, rtol=1e-5)
    rt = KVRuntime(loaded)
    for t in range(9):
        step = rt.select_action(feats[0, t].numpy(), base[0, t].numpy())
        assert step.action.shape == (8, 7)
        assert np.allclose(step.action, seq[0, t].numpy(), atol=1e-5)


def test_recency_bias_lets_the_newest_of_two_equal_keys_win() -> None:
    """Steps 0 and 2 cache the same key with different values; step 3 queries that key."""
    x = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 1.0], [0, 0, 1.0]])
    reads = {}
    for recency in (False, True):
        model = KVMemory(KVConfig(d_model=3, action_dim=2, d_key=3, d_val=3, recency=recency))
        with torch.no_grad():
            model.key.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
            model.query.weight.copy_(torch.tensor([[0, 0, 1.0], [0, 0, 0], [0, 0, 0]]))
            model.query.bias.zero_()
            model.value.weight.copy_(torch.eye(3))
            model.value.bias.zero_()
            model.log_scale.fill_(5.0)  # sharp: the two equal keys take all the weight
            if recency:
                model.slope_raw.fill_(3.0)
            (k, v), q = model.entries(x), unit(model.query(x[3]))
            age = torch.arange(3, -1, -1, dtype=torch.float32)
            weights = (model.log_scale.exp() * (k @ q) - model._recency(age)).softmax(-1)
            reads[recency] = weights @ v
    assert torch.allclose(reads[False], torch.tensor([1.0, 0.0, 0.5]), atol=1e-3)  # a blend
    assert torch.allclose(reads[True], torch.tensor([1.0, 0.0, 1.0]), atol=1e-2)  # the newest


def test_a_config_written_before_chunks_and_recency_loads_strictly(tmp_path) -> None:
    """The shipped MiniGrid KV arm (models/mini/kv): its config has neither field; it loads
    with strict=True into a model without the recency parameter, every tensor unchanged."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    shipped = Path(__file__).resolve().parents[1] / "aura_mem_ros" / "models" / "mini" / "kv"
    config = json.loads((shipped / "kv_config.json").read_text())
    assert "chunk_size" not in config and "recency" not in config
    model = load_kv(shipped)
    assert model.config.chunk_size == 1 and not model.config.recency
    assert not hasattr(model, "slope_raw")
    stored = load_file(str(shipped / "kv.safetensors"))
    assert set(stored) == set(model.state_dict())
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    save_kv(model, tmp_path)
    assert load_file(str(tmp_path / "kv.safetensors")).keys() == stored.keys()


def test_heads_split_keys_and_values_without_changing_the_bytes_per_step() -> None:
    one, four = KVConfig(d_model=8, action_dim=2), KVConfig(d_model=8, action_dim=2, heads=4)
    assert one.bytes_per_step == four.bytes_per_step == 256
    with pytest.raises(ValueError, match=r"heads \(3\) must divide"):
        KVConfig(d_model=8, action_dim=2, heads=3)
    model = KVMemory(four)
    keys, _ = model.entries(torch.randn(5, 8))
    assert torch.allclose(keys.view(5, 4, 8).norm(dim=-1), torch.ones(5, 4))  # unit per head
