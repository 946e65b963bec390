"""``aura-mem-bench footprint``: bytes of AURA's state vs a KV-cache, measured after stepping.

Both memories are really stepped ``--steps`` times on random features; the bytes reported
are read off the live state objects afterwards (AURA: the runtime's state tensors and its
serialised state; KV: the cached key/value rows). AURA runs its full per-step path with the
gate forced on, so every step writes. The KV-cache appends (k, v) every step; it attends
(the read) every ``--kv-read-every`` steps only, because attention over 100k entries each
step costs minutes and the read does not change what is stored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass

import numpy as np
import torch

from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.kv import KVConfig, KVMemory
from aura_mem_ros.core.runtime import AuraRuntime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--d-model", type=int, default=64, help="backbone feature size")
    parser.add_argument("--kv-read-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)


@dataclass(frozen=True)
class Footprint:
    """Bytes read off the live state objects after ``steps`` steps of each memory."""

    steps: int
    aura_state_bytes: int
    aura_state_bytes_at_step_1: int
    aura_serialised_bytes: int
    aura_writes: int
    kv_cache_bytes: int
    kv_bytes_per_step: float
    ratio: float  # KV-cache bytes / AURA bytes
    d_model: int
    kv_read_every: int
    seconds: dict[str, float]  # wall time of each run ("aura", "kv_cache")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def measure(steps: int, d_model: int = 64, kv_read_every: int = 100, seed: int = 0) -> Footprint:
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    config = AuraConfig(d_model=d_model, chunk_size=1, action_dim=7)
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((min(steps, 4096), d_model)).astype(np.float32)
    base = np.zeros((1, 7), dtype=np.float32)

    runtime = AuraRuntime(init_aura(config, seed), gate="always")
    start = time.perf_counter()
    for t in range(steps):
        runtime.select_action(features[t % len(features)], base)
        if t == 0:
            first_bytes = runtime.state_nbytes
    aura_seconds = time.perf_counter() - start
    aura_bytes = runtime.state_nbytes
    serialised = len(runtime.state_bytes())

    kv = KVMemory(KVConfig.like(config, recency=True)).eval()
    x = torch.from_numpy(features)
    state = kv.init_state(1)
    start = time.perf_counter()
    with torch.no_grad():
        for t in range(steps):
            xt = x[t % len(x)][None]
            if t % kv_read_every == 0:
                state = kv.step(xt, torch.from_numpy(base)[None], state).state
            else:
                state = kv.append(xt, state)
    kv_seconds = time.perf_counter() - start
    return Footprint(
        steps=steps,
        aura_state_bytes=aura_bytes,
        aura_state_bytes_at_step_1=first_bytes,
        aura_serialised_bytes=serialised,
        aura_writes=runtime.writes,
        kv_cache_bytes=state.nbytes,
        kv_bytes_per_step=state.nbytes / steps,
        ratio=round(state.nbytes / aura_bytes, 1),
        d_model=d_model,
        kv_read_every=kv_read_every,
        seconds={"aura": round(aura_seconds, 2), "kv_cache": round(kv_seconds, 2)},
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    result = measure(args.steps, args.d_model, args.kv_read_every, args.seed)
    print(json.dumps(result.to_dict(), indent=2))
    return 0
