"""AuraRuntime (numpy, batch 1) and the safetensors checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aura_mem_ros.core.checkpoint import CONFIG_FILE, WEIGHTS_FILE, init_aura, load_aura, save_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import RUNTIME_GATES, AuraRuntime

# Tiny tensor ops: extra threads only contend for the shared CPU (10x slower under load).
torch.set_num_threads(1)

CONFIG = AuraConfig(d_model=24, chunk_size=4, action_dim=7)


def _trained_looking(seed: int = 0) -> torch.nn.Module:
    layer = init_aura(CONFIG, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a non-zero head, so the memory changes the action
        layer.head.out.weight.copy_(0.1 * torch.randn(layer.head.out.weight.shape, generator=g))
    return layer


def _inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, 24)).astype(np.float32),
        rng.standard_normal((n, 4, 7)).astype(np.float32),
    )


def test_untrained_runtime_returns_the_base_action() -> None:
    runtime = AuraRuntime(init_aura(CONFIG))
    feats, bases = _inputs(5)
    for f, b in zip(feats, bases, strict=True):
        step = runtime.select_action(f, b)
        assert step.action.dtype == np.float32 and step.action.shape == (4, 7)
        assert np.array_equal(step.action, b)
        assert 0.0 <= step.write_prob <= 1.0
    assert runtime.state_nbytes == 4224 and runtime.steps == 5


@pytest.mark.parametrize("gate", RUNTIME_GATES)
def test_every_runtime_gate_runs(gate: str) -> None:
    runtime = AuraRuntime(_trained_looking(), gate=gate)
    feats, bases = _inputs(12)
    steps = [runtime.select_action(f, b) for f, b in zip(feats, bases, strict=True)]
    assert runtime.writes == sum(s.wrote for s in steps)
    if gate == "always":
        assert runtime.writes == 12
    if gate == "never":
        assert runtime.writes == 0 and runtime.state_bytes() == bytes(4224)


def test_oracle_is_not_a_runtime_gate() -> None:
    with pytest.raises(ValueError, match="cannot run online"):
        AuraRuntime(init_aura(CONFIG), gate="oracle")


def test_state_bytes_round_trip_resumes_identically() -> None:
    feats, bases = _inputs(20, seed=1)
    a = AuraRuntime(_trained_looking(), gate="always")
    for f, b in zip(feats[:10], bases[:10], strict=True):
        a.select_action(f, b)
    saved = a.state_bytes()
    assert len(saved) == a.state_nbytes == 4224
    b_rt = AuraRuntime(_trained_looking(), gate="always")
    b_rt.load_state_bytes(saved)
    assert b_rt.state_bytes() == saved
    for f, b in zip(feats[10:], bases[10:], strict=True):
        assert np.array_equal(a.select_action(f, b).action, b_rt.select_action(f, b).action)


def test_runtime_rejects_bad_inputs() -> None:
    runtime = AuraRuntime(init_aura(CONFIG))
    f, b = _inputs(1)
    with pytest.raises(ValueError, match="features"):
        runtime.select_action(f[0, :10], b[0])
    with pytest.raises(ValueError, match="base_action"):
        runtime.select_action(f[0], b[0, :2])
    bad = f[0].copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match="finite"):
        runtime.select_action(bad, b[0])
    with pytest.raises(ValueError, match="4224 bytes"):
        runtime.load_state_bytes(b"\0" * 100)
    assert runtime.steps == 0


def test_reset_clears_memory_and_counters() -> None:
    runtime = AuraRuntime(_trained_looking(), gate="always")
    f, b = _inputs(3)
    for i in range(3):
        runtime.select_action(f[i], b[i])
    runtime.reset()
    assert runtime.state_bytes() == bytes(4224) and runtime.steps == 0 and runtime.writes == 0


def test_checkpoint_round_trip(tmp_path) -> None:
    layer = _trained_looking(seed=4)
    save_aura(layer, tmp_path)
    assert (tmp_path / WEIGHTS_FILE).is_file() and (tmp_path / CONFIG_FILE).is_file()
    loaded = load_aura(tmp_path)
    assert loaded.config == layer.config
    for (n1, t1), (n2, t2) in zip(
        layer.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert n1 == n2 and torch.equal(t1, t2)
    feats, bases = _inputs(6)
    r1, r2 = AuraRuntime(layer), AuraRuntime(loaded)
    for f, b in zip(feats, bases, strict=True):
        s1, s2 = r1.select_action(f, b), r2.select_action(f, b)
        assert np.array_equal(s1.action, s2.action) and s1.wrote == s2.wrote


def test_checkpoint_rejects_bad_config_and_mismatched_weights(tmp_path) -> None:
    save_aura(init_aura(CONFIG), tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "bogus": 1}))
    with pytest.raises(ValueError, match="unknown AuraConfig keys"):
        load_aura(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "d_model": 25}))
    with pytest.raises(ValueError, match="does not match"):
        load_aura(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_aura(tmp_path / "nowhere")


def test_init_aura_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = init_aura(CONFIG, seed=7), init_aura(CONFIG, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_kv_runtime_steps_the_core_kv_cache_like_aura_runtime() -> None:
    """The one KV model (chunked, with recency) behind its runtime; what a closed loop needs
    (MemoryRuntime)."""
    from aura_mem_ros.core.kv import KVConfig, KVMemory, KVRuntime
    from aura_mem_ros.core.runtime import MemoryRuntime

    torch.manual_seed(0)
    kv = KVMemory(KVConfig.like(CONFIG, recency=True))
    torch.nn.init.normal_(kv.head.out.weight, std=0.5)
    runtime: MemoryRuntime = KVRuntime(kv)
    feats, bases = _inputs(70)  # past the 64-row initial capacity: the cache doubles
    state = kv.init_state(1)
    for f, b in zip(feats, bases, strict=True):
        step = runtime.select_action(f, b)
        with torch.no_grad():
            out = kv.step(torch.from_numpy(f)[None], torch.from_numpy(b)[None], state)
        state = out.state
        assert step.wrote and np.array_equal(step.action, out.action[0].numpy())
    assert runtime.state_nbytes == 70 * 256 and runtime.steps == runtime.writes == 70
    runtime.reset()
    assert runtime.state_nbytes == 0 and runtime.steps == 0
    with pytest.raises(ValueError, match="features must have shape"):
        runtime.select_action(np.zeros(3, np.float32), bases[0])
    with pytest.raises(ValueError, match="finite"):
        runtime.select_action(np.full(CONFIG.d_model, np.nan, np.float32), bases[0])
    aura: MemoryRuntime = AuraRuntime(init_aura(CONFIG))
    assert aura.gate == "learned" and runtime.gate == "always"
