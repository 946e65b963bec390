"""Pieces of the closed-loop trainer: the KV arm and the counterfactual write utility."""

from __future__ import annotations

import numpy as np
import torch

from aura_mem_dev.training.memory_fit import sequence_losses, write_benefits
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
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


def test_write_benefit_is_the_exact_loss_difference() -> None:
    torch.manual_seed(0)
    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=7, discrete=True), 0)
    torch.nn.init.normal_(layer.head.out.weight, std=0.5)
    feats, base, targets, mask = _batch()
    schedule = torch.zeros(3, 6)
    schedule[:, 1] = 1.0
    benefit = write_benefits(layer, feats, base, targets, mask, schedule)
    for t in (1, 4):
        on, off = schedule.clone(), schedule.clone()
        on[:, t], off[:, t] = 1.0, 0.0
        with torch.no_grad():
            expected = sequence_losses(layer, feats, base, targets, mask, off) - sequence_losses(
                layer, feats, base, targets, mask, on
            )
        assert torch.allclose(benefit[:, t], expected, atol=1e-5)
