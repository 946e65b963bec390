"""The closed-loop KV-cache arm: its batch-1 runtime steps exactly what training runs."""

from __future__ import annotations

import numpy as np
import torch

from aura_mem_ros.core.kv import KVConfig, KVMemory, KVRuntime, load_kv, save_kv


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
