"""Per-step cost of one AURA step vs one KV-cache step at growing horizons (single thread,
d_model 4096, OpenVLA-OFT's 8 x 7 action chunk), and where a step's time goes.

AURA: ``AuraRuntime.select_action`` (what the node calls; the fused kernel of
``core/fused.py``), learned gate of an untrained layer (its initial bias writes every step:
the worst case). One continuous run to the largest horizon; the latency at horizon H is the
distribution of steps H .. H+samples-1. The KV-cache: the core's ``KVMemory`` behind
``core.kv.KVRuntime`` (the same conversions and checks as ``AuraRuntime``); at horizon H it
holds H entries, prefilled in bulk (stepping 100k steps one by one costs O(H^2), hours) with
projections of real features, since attention costs the same whatever the numbers are.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from aura_mem_dev.bench.perf.result import Stats, StepCost

D_MODEL, CHUNK, ACTION_DIM = 4096, 8, 7  # OpenVLA-OFT's feature size and action chunk


def pct(samples_us: np.ndarray, qs: Sequence[int] = (50, 99)) -> Stats:
    values = np.percentile(samples_us, qs) if samples_us.size else [float("nan")] * len(qs)
    out = Stats(**{f"p{q}": round(float(v), 2) for q, v in zip(qs, values, strict=True)})
    out["mean"] = round(float(samples_us.mean()), 2) if samples_us.size else float("nan")
    return out


def _kv_prefilled(kv: Any, horizon: int, pool: torch.Tensor) -> Any:
    """A KV state holding ``horizon`` entries, with the capacity stepping would have reached
    (doubling from 64), so an append in the timed window may pay for a doubling, as live."""
    from aura_mem_ros.core.kv import KVState

    capacity = 64
    while capacity < horizon:
        capacity *= 2
    with torch.no_grad():
        k_pool, v_pool = kv.entries(pool)
    reps = -(-horizon // len(pool))
    keys = torch.zeros(1, capacity, k_pool.shape[1])
    values = torch.zeros(1, capacity, v_pool.shape[1])
    keys[0, :horizon] = k_pool.repeat(reps, 1)[:horizon]
    values[0, :horizon] = v_pool.repeat(reps, 1)[:horizon]
    return KVState(keys, values, horizon)


def _clone_kv(state: Any) -> Any:
    return type(state)(state.keys.clone(), state.values.clone(), state.length)


def _steal_ticks() -> int:
    """CPU time the hypervisor gave to other guests (the 8th field of /proc/stat's cpu line)."""
    try:
        return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8])
    except (OSError, IndexError, ValueError):
        return -1


class AuraRound(NamedTuple):
    times_us: np.ndarray  # per step
    state_bytes: dict[str, int]  # read off the live state tensors, by horizon
    cpu_ns: int  # the thread's CPU time over the run
    steal_ticks: int  # CPU ticks the hypervisor gave other guests meanwhile (-1: unknown)


def _aura_round(
    runtime: Any,
    pool: np.ndarray,
    base: np.ndarray,
    horizons: Sequence[int],
    samples: int,
    log: Callable[[str], None],
) -> AuraRound:
    """One continuous AURA run from a fresh memory to the largest horizon."""
    runtime.reset()
    last = max(horizons) + samples
    times = np.empty(last, dtype=np.float64)
    state_bytes: dict[str, int] = {}
    wanted = set(horizons)
    perf = time.perf_counter_ns
    t_start, steal0, cpu0 = time.monotonic(), _steal_ticks(), time.thread_time_ns()
    for t in range(last):
        x = pool[t % len(pool)]
        t0 = perf()
        runtime.select_action(x, base)
        times[t] = perf() - t0
        step = t + 1
        if step in wanted:
            state_bytes[str(step)] = runtime.state_nbytes
        if step % 50_000 == 0:
            log(f"  aura: {step}/{last} steps ({time.monotonic() - t_start:.0f} s)")
    cpu_ns, steal = time.thread_time_ns() - cpu0, _steal_ticks() - steal0
    return AuraRound(times / 1e3, state_bytes, cpu_ns, steal if steal0 >= 0 else -1)


def _kv_round(
    kv: Any, pool: np.ndarray, base: np.ndarray, horizon: int, samples: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """KV-cache steps at one horizon: wrapped us, bare us (tensors in), and the cache's bytes."""
    from aura_mem_ros.core.kv import KVRuntime

    perf = time.perf_counter_ns
    x_t, b_t = torch.from_numpy(pool), torch.from_numpy(base)[None]
    prefilled = _kv_prefilled(kv, horizon, x_t)
    warm = KVRuntime(kv, state=_clone_kv(prefilled))
    for i in range(20):
        warm.select_action(pool[i], base)
    wrapped = KVRuntime(kv, state=_clone_kv(prefilled))
    wrapped_us = np.empty(samples)
    for i in range(samples):
        x = pool[i % len(pool)]
        t0 = perf()
        wrapped.select_action(x, base)
        wrapped_us[i] = (perf() - t0) / 1e3
    state = _clone_kv(prefilled)
    bare_us = np.empty(min(samples, 500))
    with torch.no_grad():
        for i in range(len(bare_us)):
            t0 = perf()
            state = kv.step(x_t[i % len(x_t)][None], b_t, state).state
            bare_us[i] = (perf() - t0) / 1e3
    return wrapped_us, bare_us, int(prefilled.nbytes)  # live rows of the cache object


def measure_steps(
    horizons: Sequence[int],
    samples: int,
    rounds: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> StepCost:
    """Per-step latency and state bytes of AURA and the KV-cache at each horizon.

    The whole comparison is repeated ``rounds`` times (each round: AURA from a fresh memory
    to the largest horizon, then the KV-cache at every horizon) and the latencies of all
    rounds are pooled. On a shared machine the memory bandwidth a step gets comes and goes
    for seconds at a time; rounds spread both methods over the same spells, and the
    per-round p50s are kept so the spread can be seen.
    """
    from aura_mem_ros.core.checkpoint import init_aura
    from aura_mem_ros.core.config import AuraConfig
    from aura_mem_ros.core.kv import KVConfig, KVMemory
    from aura_mem_ros.core.runtime import AuraRuntime

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = AuraConfig(d_model=D_MODEL, chunk_size=CHUNK, action_dim=ACTION_DIM)
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((256, D_MODEL)).astype(np.float32)
    base = (0.1 * rng.standard_normal((CHUNK, ACTION_DIM))).astype(np.float32)
    layer = init_aura(cfg, seed)
    runtime = AuraRuntime(layer, gate="learned")
    for t in range(300):  # warm-up: allocator, dispatcher caches, branch predictors
        runtime.select_action(pool[t % len(pool)], base)
    kv = KVMemory(KVConfig.like(cfg, recency=True)).eval()

    t_start = time.monotonic()
    aura_runs, kv_runs, kv_bare_runs = [], [], []
    contention = []
    for rnd in range(rounds):
        run = _aura_round(runtime, pool, base, horizons, samples, log)
        times_us, aura_bytes = run.times_us, run.state_bytes
        aura_runs.append(times_us)
        contention.append(
            {
                "wall_us_per_step": round(float(times_us.mean()), 1),
                "thread_cpu_us_per_step": round(run.cpu_ns / len(times_us) / 1e3, 1),
                "steal_ticks": run.steal_ticks,
            }
        )
        kv_runs.append({})
        kv_bare_runs.append({})
        kv_bytes: dict[str, int] = {}
        for h in horizons:
            wrapped, bare, kv_bytes[str(h)] = _kv_round(kv, pool, base, h, samples)
            kv_runs[-1][str(h)], kv_bare_runs[-1][str(h)] = wrapped, bare
        log(
            f"  round {rnd + 1}/{rounds}: aura p50 "
            f"{np.median(times_us[:samples]):.0f} us at 1, kv p50 "
            + ", ".join(f"{np.median(v):.0f}" for v in kv_runs[-1].values())
            + " us by horizon"
        )

    def window(times_us: np.ndarray, h: int) -> np.ndarray:
        return times_us[h - 1 : h - 1 + samples]

    hs = [str(h) for h in horizons]
    aura_us = {str(h): pct(np.concatenate([window(t, h) for t in aura_runs])) for h in horizons}
    kv_us = {h: pct(np.concatenate([r[h] for r in kv_runs])) for h in hs}
    kv_bare = {h: pct(np.concatenate([r[h] for r in kv_bare_runs])) for h in hs}
    last = len(aura_runs[0])
    block = max(1, last // 20)
    aura_blocks = [
        [round(float(np.median(t[i : i + block])), 1) for i in range(0, last, block)]
        for t in aura_runs
    ]

    # The reference path behind the same wrapper: what a step cost before the fused kernel.
    reference = AuraRuntime(layer, gate="learned", fused=False)
    perf = time.perf_counter_ns
    ref_times = np.empty(samples)
    for i in range(samples + 100):
        t0 = perf()
        reference.select_action(pool[i % len(pool)], base)
        if i >= 100:  # the first 100 are warm-up
            ref_times[i - 100] = (perf() - t0) / 1e3
    return StepCost(
        aura_step_us=aura_us,
        kv_step_us=kv_us,
        aura_state_bytes=aura_bytes,
        kv_state_bytes=kv_bytes,
        aura_step_p50_us_by_round={
            str(h): [round(float(np.median(window(t, h))), 1) for t in aura_runs] for h in horizons
        },
        kv_step_p50_us_by_round={
            h: [round(float(np.median(r[h])), 1) for r in kv_runs] for h in hs
        },
        rounds=rounds,
        aura_round_cpu=contention,
        aura_reference_step_us=pct(ref_times),
        kv_layer_step_us=kv_bare,
        aura_p50_us_by_block={"block_steps": block, "p50_by_round": aura_blocks},
        aura_writes=int(runtime.writes),
        aura_steps=int(last),
        aura_run_seconds=round(time.monotonic() - t_start, 1),
    )


def profile_aura_ops(steps: int = 2000, top: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Where a reference-path AURA step's time goes, by torch operator (self CPU time), one
    thread: the profile that led to the fused kernel (which issues no torch ops at all)."""
    from torch.profiler import ProfilerActivity, profile

    from aura_mem_ros.core.checkpoint import init_aura
    from aura_mem_ros.core.config import AuraConfig
    from aura_mem_ros.core.runtime import AuraRuntime

    torch.set_num_threads(1)
    cfg = AuraConfig(d_model=D_MODEL, chunk_size=CHUNK, action_dim=ACTION_DIM)
    runtime = AuraRuntime(init_aura(cfg, seed), gate="learned", fused=False)
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((64, D_MODEL)).astype(np.float32)
    base = np.zeros((CHUNK, ACTION_DIM), np.float32)
    for i in range(200):
        runtime.select_action(pool[i % 64], base)
    # Wall time without the profiler (it adds ~tens of us per op): the number to compare.
    t0 = time.perf_counter()
    for i in range(steps):
        runtime.select_action(pool[i % 64], base)
    wall_us = (time.perf_counter() - t0) / steps * 1e6
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            runtime.select_action(pool[i % 64], base)
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    out = [
        {
            "op": e.key,
            "calls_per_step": round(e.count / steps, 2),
            "self_us_per_step": round(e.self_cpu_time_total / steps, 2),
            "share_of_op_time": round(e.self_cpu_time_total / max(total_self, 1), 3),
        }
        for e in rows
    ]
    out.append(
        {
            "op": "(all torch ops, self time)",
            "calls_per_step": round(sum(e.count for e in events) / steps, 1),
            "self_us_per_step": round(total_self / steps, 2),
            "share_of_op_time": 1.0,
            "unprofiled_wall_us_per_step": round(wall_us, 2),
        }
    )
    return out


def aura_breakdown_us(samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """p50 of the nested parts of one (fused) AURA step, measured interleaved in one process:
    the runtime (what the node calls), the ``FusedStep`` call (no numpy wrapper),
    the compiled kernel alone, and the kernel's GEMV over all 4096-wide projections alone.
    Differences give the wrapper, the weight-version check and dispatch, and the memory, gate
    and head arithmetic."""
    from aura_mem_ros.core import fused
    from aura_mem_ros.core.checkpoint import init_aura
    from aura_mem_ros.core.config import AuraConfig
    from aura_mem_ros.core.runtime import AuraRuntime

    torch.set_num_threads(1)
    cfg = AuraConfig(d_model=D_MODEL, chunk_size=CHUNK, action_dim=ACTION_DIM)
    layer = init_aura(cfg, seed)
    runtime = AuraRuntime(layer, gate="learned")
    step = runtime._fused  # the same weight arrays for every part: one 4.7 MB working set
    assert isinstance(step, fused.FusedStep)
    weights = tuple(step.weights)
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((64, D_MODEL)).astype(np.float32)
    base = np.zeros((CHUNK, ACTION_DIM), np.float32)
    w_mem = np.zeros((cfg.d_key, cfg.d_val), np.float32)
    m_mem = np.zeros(cfg.d_val, np.float32)
    perf = time.perf_counter_ns

    parts: list[Callable[[int], object]] = [
        lambda i: runtime.select_action(pool[i % 64], base),
        lambda i: step(pool[i % 64], base, w_mem, m_mem, 0.5),
        lambda i: fused._fused_step(pool[i % 64], base, w_mem, m_mem, weights, 0, 0.5),
        lambda i: fused._vec_mat(pool[i % 64], weights[0], weights[1]),
    ]
    # interleaved, one sample of every part per iteration: a spell of slow memory on a
    # shared host then hits all parts alike instead of one of them
    times = np.empty((samples + 100, len(parts)))
    for i in range(samples + 100):
        for j, part in enumerate(parts):
            t0 = perf()
            part(i)
            times[i, j] = (perf() - t0) / 1e3
    full, call, kernel, gemv = (float(v) for v in np.median(times[100:], axis=0))
    return {
        "runtime_select_action": round(full, 1),
        "numpy_wrapper": round(full - call, 1),
        "fused_call": round(call, 1),
        "version_check_and_dispatch": round(call - kernel, 1),
        "kernel": round(kernel, 1),
        "gemv_4096": round(gemv, 1),
        "memory_gate_head": round(kernel - gemv, 1),
    }


_RSS_PROBE = """
import sys
import numpy as np
import torch
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import AuraRuntime

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

before = rss_mb()
cfg = AuraConfig(d_model=4096, chunk_size=8, action_dim=7)
runtime = AuraRuntime(init_aura(cfg), fused=sys.argv[1] == "fused")
for _ in range(100):
    runtime.select_action(np.zeros(4096, np.float32), np.zeros((8, 7), np.float32))
print(before, rss_mb())
"""


def fused_rss_cost_mb() -> dict[str, float]:
    """Resident memory of a fresh process after 100 AURA steps, fused vs reference path: what
    the compiled kernel costs in memory (numba and LLVM are loaded only for the fused one)."""
    out: dict[str, float] = {}
    for path in ("reference", "fused"):
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_PROBE, path],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        before, after = (float(v) for v in proc.stdout.split())
        out[f"{path}_before_mb"], out[f"{path}_after_mb"] = round(before, 1), round(after, 1)
    out["fused_extra_mb"] = round(out["fused_after_mb"] - out["reference_after_mb"], 1)
    return out


def gemv_from_dram_us(samples: int = 2000, copies: int = 12, seed: int = 0) -> dict[str, Any]:
    """The kernel's 4096 x 288 GEMV with its weights in cache vs read from DRAM.

    Cycling through ``copies`` different weight matrices (12 x 4.7 MB, more than a 32 MB
    last-level cache) makes every product fetch its weights from DRAM: what a step costs when
    other processes evict the weights, or on a CPU whose last-level cache is under 4.7 MB."""
    from aura_mem_ros.core import fused

    rng = np.random.default_rng(seed)
    mats = [rng.standard_normal((D_MODEL, 288)).astype(np.float32) for _ in range(copies)]
    bias, x = np.zeros(288, np.float32), rng.standard_normal(D_MODEL).astype(np.float32)
    out: dict[str, Any] = {"copies": copies, "bytes_each": int(mats[0].nbytes)}
    for name, pick in (("cached", lambda i: 0), ("from_dram", lambda i: i % copies)):
        times = np.empty(samples + 50)
        for i in range(len(times)):
            m = mats[pick(i)]
            t0 = time.perf_counter_ns()
            fused._vec_mat(x, m, bias)
            times[i] = (time.perf_counter_ns() - t0) / 1e3
        out[name] = pct(times[50:])
    return out


def matvec_floor_us(samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """The arithmetic floor: one fused (4096 x 288) fp32 GEMV, all the 4096-wide projections
    of a step (key, value, query, head and gate input) in one call, single thread."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(288, D_MODEL, generator=g)
    x = torch.randn(D_MODEL, generator=g)
    for _ in range(100):
        torch.mv(w, x)
    t = np.empty(samples)
    for i in range(samples):
        t0 = time.perf_counter_ns()
        torch.mv(w, x)
        t[i] = (time.perf_counter_ns() - t0) / 1e3
    return pct(t)
