"""AuraRuntime's device path (the one a CUDA robot runs, exercised here on CPU): torch
tensors in, the reference step on the runtime's device, the same function as the numpy paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import AuraRuntime

torch.set_num_threads(1)
CONFIG = AuraConfig(d_model=24, chunk_size=4, action_dim=7)


def _layer(seed: int = 0) -> torch.nn.Module:
    layer = init_aura(CONFIG, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a non-zero head and a gate that writes sometimes
        layer.head.out.weight.copy_(0.1 * torch.randn(layer.head.out.weight.shape, generator=g))
        layer.gate_out.weight.copy_(torch.randn(layer.gate_out.weight.shape, generator=g))
    return layer


def _inputs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return (
        rng.standard_normal((n, 24)).astype(np.float32),
        rng.standard_normal((n, 4, 7)).astype(np.float32),
    )


@pytest.mark.parametrize("gate", ["learned", "always", "random"])
def test_tensor_features_give_the_same_steps_as_numpy(gate: str) -> None:
    feats, bases = _inputs(20)
    numpy_rt = AuraRuntime(_layer(), gate=gate, fused=gate != "random")
    device_rt = AuraRuntime(_layer(), gate=gate, device="cpu")
    assert device_rt.step_path == ("fused" if gate != "random" else "torch-cpu")
    for f, b in zip(feats, bases, strict=True):
        a = numpy_rt.select_action(f, b)
        d = device_rt.select_action(torch.from_numpy(f), b)  # a tensor takes the device path
        np.testing.assert_allclose(d.action, a.action, atol=1e-5)
        assert (d.wrote, d.action.dtype) == (a.wrote, np.float32)
        assert d.write_prob == pytest.approx(a.write_prob, abs=1e-5)
    assert 0 < device_rt.writes == numpy_rt.writes
    np.testing.assert_allclose(
        np.frombuffer(device_rt.state_bytes(), "<f4"),
        np.frombuffer(numpy_rt.state_bytes(), "<f4"),
        atol=1e-5,
    )


def test_device_path_refuses_bad_input_and_keeps_memory() -> None:
    rt = AuraRuntime(_layer(), gate="always", device="cpu")
    feats, bases = _inputs(2)
    rt.select_action(torch.from_numpy(feats[0]), bases[0])
    before = rt.state_bytes()
    bad = torch.from_numpy(feats[1]).clone()
    bad[3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        rt.select_action(bad, bases[1])
    with pytest.raises(ValueError, match="shape"):
        rt.select_action(torch.zeros(23), bases[1])
    assert rt.state_bytes() == before and rt.steps == 1


def test_state_bytes_round_trip_on_the_device_path() -> None:
    rt = AuraRuntime(_layer(), gate="always", device="cpu", fused=False)
    feats, bases = _inputs(3)
    for f, b in zip(feats, bases, strict=True):
        rt.select_action(torch.from_numpy(f), b)
    saved = rt.state_bytes()
    assert len(saved) == 4224
    rt.reset()
    rt.load_state_bytes(saved)
    assert rt.state_bytes() == saved and rt._state.W.device == rt.device
