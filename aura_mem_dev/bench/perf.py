"""``aura-mem-bench perf``: per-step cost of AURA vs a KV-cache, the node end to end, and the
node's resident memory over a long run, all in ONE run so that ratios are fair.

Per step (single CPU thread, d_model 4096, OpenVLA-OFT's 8 x 7 action chunk):
  * AURA: ``AuraRuntime.select_action`` (gate + update + read, numpy in/out, what the node
    calls; the fused kernel of ``core/fused.py``), learned gate of an untrained layer (its
    initial bias writes every step: the worst case, an update on every step). One continuous
    run to the largest horizon; the latency at horizon H is the distribution of steps
    H .. H+samples-1. The reference path (``AuraLayer.step``, what training runs) is timed
    behind the same wrapper for comparison.
  * KV-cache: the core's ``KVCacheMemory`` behind the same numpy wrapper (same conversions
    and checks), every step appends and attends. At horizon H the cache holds H entries: it is
    prefilled in bulk (stepping 100k steps one by one costs O(H^2), hours) with projections
    of real features, since attention costs the same whatever the cached numbers are.
  * The KV-cache also bare (``kv.step`` on tensors), so wrapper overhead can be told apart.
Node (the CPU default ``mini``, ``config/aura_mem.yaml``, a separate process, DDS on
localhost): image stamp -> action received by a subscriber at 10 and 30 Hz, the highest rate
at which >= 99% of frames are answered within one period, dropped frames, and RSS of the node
over ``--soak-steps`` served frames (``make bench-soak``: 100k).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from aura_mem_dev.bench.cli import command_line

D_MODEL, CHUNK, ACTION_DIM = 4096, 8, 7  # OpenVLA-OFT's feature size and action chunk
DEFAULT_HORIZONS = (1, 1_000, 10_000, 100_000)
DEFAULT_RATES = (10.0, 30.0)
RAMP_RATES = (30.0, 60.0, 100.0, 150.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--md", type=Path, default=None, help="markdown report")
    parser.add_argument("--horizons", default=",".join(str(h) for h in DEFAULT_HORIZONS))
    parser.add_argument("--samples", type=int, default=2000, help="timed steps per horizon")
    parser.add_argument(
        "--rounds", type=int, default=3, help="repeats of the per-step comparison (pooled)"
    )
    parser.add_argument("--rates", default="10,30", help="node rates (Hz) for latency")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="per latency rate")
    parser.add_argument("--ramp-seconds", type=float, default=4.0, help="per max-rate step")
    parser.add_argument("--soak-steps", type=int, default=20_000, help="node steps for RSS")
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=0.0,
        help="soak frame rate (0: 80%% of the measured max rate, <= 250 Hz)",
    )
    parser.add_argument("--no-node", action="store_true", help="skip every node measurement")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: re-render --md from a saved results JSON",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny everything (a smoke run; numbers mean nothing)"
    )


# --------------------------------------------------------------------------- per-step cost
def _pct(samples_us: np.ndarray, qs: Sequence[int] = (50, 99)) -> dict[str, float]:
    values = np.percentile(samples_us, qs) if samples_us.size else [float("nan")] * len(qs)
    out = {f"p{q}": round(float(v), 2) for q, v in zip(qs, values, strict=True)}
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
        k_pool, v_pool = kv.key(pool), kv.value(pool)
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
) -> dict[str, Any]:
    """Per-step latency and state bytes of AURA and the KV-cache at each horizon.

    The whole comparison is repeated ``rounds`` times (each round: AURA from a fresh memory
    to the largest horizon, then the KV-cache at every horizon) and the latencies of all
    rounds are pooled. On a shared machine the memory bandwidth a step gets comes and goes
    for seconds at a time; rounds spread both methods over the same spells, and the
    per-round p50s are kept so the spread can be seen.
    """
    from aura_mem_ros.core.baselines import KVCacheMemory
    from aura_mem_ros.core.checkpoint import init_aura
    from aura_mem_ros.core.config import AuraConfig
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
    kv = KVCacheMemory(cfg).eval()

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
    aura_us = {str(h): _pct(np.concatenate([window(t, h) for t in aura_runs])) for h in horizons}
    kv_us = {h: _pct(np.concatenate([r[h] for r in kv_runs])) for h in hs}
    kv_bare = {h: _pct(np.concatenate([r[h] for r in kv_bare_runs])) for h in hs}
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
    return {
        "aura_step_us": aura_us,
        "kv_step_us": kv_us,
        "aura_state_bytes": aura_bytes,
        "kv_state_bytes": kv_bytes,
        "aura_step_p50_us_by_round": {
            str(h): [round(float(np.median(window(t, h))), 1) for t in aura_runs] for h in horizons
        },
        "kv_step_p50_us_by_round": {
            h: [round(float(np.median(r[h])), 1) for r in kv_runs] for h in hs
        },
        "rounds": rounds,
        "aura_round_cpu": contention,
        "aura_reference_step_us": _pct(ref_times),
        "kv_layer_step_us": kv_bare,
        "aura_p50_us_by_block": {"block_steps": block, "p50_by_round": aura_blocks},
        "aura_writes": int(runtime.writes),
        "aura_steps": int(last),
        "aura_run_seconds": round(time.monotonic() - t_start, 1),
    }


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
        out[name] = _pct(times[50:])
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
    return _pct(t)


# --------------------------------------------------------------------------- node
def _stream(
    probe: Any,
    rng: np.random.Generator,
    rate_hz: float,
    duration_s: float,
    max_frames: int | None = None,
    until: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Publish frames at ``rate_hz`` (until ``duration_s`` or ``until()``); match actions by
    stamp; count drops from ~/stats."""
    from aura_mem_dev.faults.harness import mini_frame

    frames = [mini_frame(rng) for _ in range(16)]
    sent: dict[tuple[int, int], int] = {}
    stats0 = probe.latest_stats()
    start_idx = probe.n_actions()
    period = 1.0 / rate_hz
    t_next = t_start = time.monotonic()
    t_end = t_next + duration_s
    i = 0
    while time.monotonic() < t_end and (max_frames is None or i < max_frames):
        if until is not None and i % 32 == 0 and until():
            break
        msg = probe.image_msg(frames[i % len(frames)])
        probe.image_pub.publish(msg)
        sent[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = i
        i += 1
        t_next += period
        delay = t_next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:  # the publisher itself cannot keep up: do not burst to catch up
            t_next = time.monotonic()
    time.sleep(max(0.5, 3 * period))
    with probe._lock:
        got = list(probe.log.actions[start_idx:])
    e2e, inference = [], []
    for r in got:
        st = r.msg.header.stamp
        if (st.sec, st.nanosec) in sent:
            e2e.append((r.t_ns - (st.sec * 1_000_000_000 + st.nanosec)) / 1e6)
            inference.append(float(r.msg.latency_ms))
    stats1 = probe.latest_stats()
    dropped = (
        int(stats1.dropped_frames) - int(stats0.dropped_frames)
        if stats0 is not None and stats1 is not None
        else -1
    )
    e2e_a, inf_a = np.asarray(e2e), np.asarray(inference)
    return {
        "rate_hz": rate_hz,
        "frames_sent": len(sent),
        "actions": len(e2e),
        "served_fraction": round(len(e2e) / max(len(sent), 1), 4),
        "dropped_frames": dropped,
        "e2e_ms": _pct(e2e_a, (50, 95, 99)) if e2e else {},
        "inference_ms": _pct(inf_a, (50, 95)) if inference else {},
        "achieved_rate_hz": round(
            len(sent) / max(min(duration_s, time.monotonic() - t_start), 1e-9), 1
        ),
    }


@contextlib.contextmanager
def _node_session(
    overrides: dict[str, Any] | None = None,
) -> Iterator[tuple[Any, Any, np.random.Generator]]:
    from aura_mem_dev.faults.harness import NodeProcess, Probe, reserved_domain

    with reserved_domain() as domain:
        probe = Probe(domain, name="perf_probe")
        node = NodeProcess({"stats_rate_hz": 5.0, **(overrides or {})}, domain)
        rng = np.random.default_rng(0)
        try:
            if not probe.wait_ready(rng, 120.0):
                raise RuntimeError("node never answered:\n" + node.log()[-3000:])
            yield node, probe, rng
        finally:
            log = node.stop()
            probe.close()
            if node.proc.returncode not in (0, -2, 130):
                print(log[-2000:], file=sys.stderr)


def py_spy_profile(pid: int, seconds: float, out_dir: Path) -> dict[str, Any] | None:
    """Sample the node process with py-spy (if installed) for ``seconds``; aggregate frames."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    raw = out_dir / "node_pyspy.txt"
    proc = subprocess.run(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if proc.returncode != 0 or not raw.exists():
        return {"error": (proc.stderr or proc.stdout)[-500:]}
    return summarise_raw_profile(raw.read_text())


# Where a node sample belongs: the first group whose marker appears in its stack.
NODE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backbone: mini CNN (MiniBackbone.step)", ("MiniBackbone.step",)),
    ("AURA memory step (AuraRuntime.select_action)", ("AuraRuntime.select_action",)),
    ("image message -> numpy (message_to_rgb)", ("message_to_rgb",)),
    ("proprio conversion", ("joint_state_to_proprio",)),
    ("publish ~/action", ("_publish_action",)),
    ("persist state file", ("AuraPipeline.persist",)),
    ("~/stats + /diagnostics timers", ("_on_stats_timer", "_on_diagnostics_timer")),
    ("rest of the worker (pipeline bookkeeping, stats)", ("_infer (",)),
    ("executor thread: take, deserialize, dispatch", ("executors.py",)),
)
_GENERIC = (
    "<module>",
    "run (",
    "_bootstrap",
    "main (",
    "thread (",
    "Thread.",
    "_worker (",
    "_WorkItem.run",
    "Module._call_impl",
    "Module._wrapped_call_impl",
    "process ",
)


def summarise_raw_profile(text: str, top: int = 14) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks -> where the busy samples go, by group and by function.

    Idle samples (a thread waiting in the executor, a sleep, a lock) are split off: what is
    left is where the CPU goes.
    """
    import re
    from collections import Counter

    idle_markers = (
        "wait (threading.py",
        "_worker (concurrent/futures/thread.py",
        "_wait_for_ready_callbacks",
        "select (",
        "sleep",
    )
    inclusive: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    busy = idle = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
        leaf = frames[-1] if frames else ""
        if any(m in leaf for m in idle_markers) or leaf.startswith("process "):
            idle += n
            continue
        busy += n
        for f in set(frames):
            inclusive[f] += n
        label = next((g for g, marks in NODE_GROUPS if any(m in stack for m in marks)), "other")
        groups[label] += n
    rows = [
        {"function": f, "share_of_busy": round(n / max(busy, 1), 3)}
        for f, n in inclusive.most_common(80)
        if not f.startswith(_GENERIC)
    ][:top]
    by_group = [
        {"group": g, "share_of_busy": round(groups[g] / max(busy, 1), 3)}
        for g in [*(g for g, _ in NODE_GROUPS), "other"]
        if groups[g]
    ]
    return {"busy_samples": busy, "idle_samples": idle, "by_group": by_group, "top_inclusive": rows}


def measure_node(
    rates: Sequence[float],
    rate_seconds: float,
    ramp_seconds: float,
    soak_steps: int,
    soak_rate: float,
    profile: bool,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _node_session() as (node, probe, rng), tempfile.TemporaryDirectory() as tmp:
        out["node_command"] = " ".join(
            Path(c).name if i == 0 else c for i, c in enumerate(node.command)
        )
        _stream(probe, rng, 30.0, 2.0)  # warm-up, not measured
        out["rss_mb_after_warmup"] = round(node.rss_mb(), 1)
        latency: dict[str, dict[str, float]] = {}
        phases: dict[str, Any] = {}
        for rate in rates:
            r = _stream(probe, rng, rate, rate_seconds)
            key = f"{rate:g}"
            latency[key] = {
                "p50": r["e2e_ms"].get("p50", float("nan")),
                "p95": r["e2e_ms"].get("p95", float("nan")),
            }
            phases[key] = r
            log(
                f"  node at {rate:g} Hz: e2e p50 {latency[key]['p50']} ms, p95 "
                f"{latency[key]['p95']} ms, {r['actions']}/{r['frames_sent']} answered, "
                f"{r['dropped_frames']} dropped"
            )
        out["node_latency_ms"] = latency
        out["node_rate_runs"] = phases
        ramp: list[dict[str, Any]] = []
        best = 0.0
        for rate in RAMP_RATES:
            r = _stream(probe, rng, rate, ramp_seconds)
            p95 = r["e2e_ms"].get("p95", float("inf"))
            ok = (
                r["served_fraction"] >= 0.99
                and p95 <= 1000.0 / rate
                and r["achieved_rate_hz"] >= 0.95 * rate
            )
            r["sustained"] = ok
            ramp.append(r)
            log(
                f"  ramp {rate:g} Hz: {r['actions']}/{r['frames_sent']} answered, p95 "
                f"{p95} ms, sent at {r['achieved_rate_hz']} Hz -> "
                f"{'ok' if ok else 'not sustained'}"
            )
            if not ok:
                break
            best = rate
        out["node_max_rate_hz"] = best
        out["node_ramp"] = ramp
        # Soak: a fast camera until the node has SERVED soak_steps (frames it drops while busy
        # do not count), RSS sampled once a second.
        rate = soak_rate or 150.0
        series: list[tuple[float, int, float]] = []
        stop = threading.Event()
        t0 = time.monotonic()

        def sampler() -> None:
            next_log = 10_000
            while not stop.is_set():
                stats = probe.latest_stats()
                steps = int(stats.steps) if stats is not None else -1
                series.append((round(time.monotonic() - t0, 1), steps, round(node.rss_mb(), 2)))
                if steps - steps0 >= next_log:
                    log(f"  soak: {steps - steps0} steps, RSS {series[-1][2]} MB")
                    next_log += 10_000
                stop.wait(1.0)

        stats0 = probe.latest_stats()
        steps0 = int(stats0.steps) if stats0 is not None else 0
        out["rss_mb_start"] = round(node.rss_mb(), 2)
        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        prof: dict[str, Any] | None = None
        if profile:
            # Profile the first part of the soak (the node busy at a steady rate).
            holder: dict[str, Any] = {}
            pt = threading.Thread(
                target=lambda: holder.update(p=py_spy_profile(node.pid, 15.0, Path(tmp))),
                daemon=True,
            )
            pt.start()

        def served() -> bool:
            stats = probe.latest_stats()
            return stats is not None and int(stats.steps) - steps0 >= soak_steps

        # Capped at 20 steps/s on average: a node slower than that fails the run visibly.
        soak = _stream(probe, rng, rate, soak_steps / 20.0 + 5.0, until=served)
        if profile:
            pt.join(120)
            prof = holder.get("p")
        stop.set()
        thread.join(3)
        time.sleep(1.5)
        stats1 = probe.latest_stats()
        out["rss_mb_end"] = round(node.rss_mb(), 2)
        out["soak"] = {
            "rate_hz": rate,
            "steps": (int(stats1.steps) - steps0) if stats1 is not None else -1,
            "frames_sent": soak["frames_sent"],
            "dropped_frames": soak["dropped_frames"],
            "e2e_ms": soak["e2e_ms"],
            "seconds": round(time.monotonic() - t0, 1),
            "rss_series": series,
        }
        out["rss_growth_pct"] = round(
            100.0 * (out["rss_mb_end"] - out["rss_mb_start"]) / out["rss_mb_start"], 2
        )
        out["node_profile"] = prof
        log(
            f"  soak: {out['soak']['steps']} steps at {rate:g} Hz, RSS {out['rss_mb_start']} -> "
            f"{out['rss_mb_end']} MB ({out['rss_growth_pct']:+.2f}%)"
        )
    return out


# --------------------------------------------------------------------------- report
def render_markdown(r: dict[str, Any]) -> str:
    meta = r["meta"]
    hs = list(r["aura_step_us"])
    lines = [
        "# Performance",
        "",
        f"Generated by `{meta['command']}` on {meta['date_utc']}; {meta['cpu']}, "
        f"{meta['cpus']} CPUs shared with other jobs: load average {meta['loadavg_before']} "
        f"before, {meta['loadavg_after']} after (1/5/15 min). torch {meta['torch']}, "
        f"{meta['torch_threads']} thread for the per-step numbers. {meta['seconds']} s in all."
        + (" **Quick smoke run: the numbers mean nothing.**" if meta.get("quick") else ""),
        "",
        "## Per step: AURA vs a KV-cache (d_model 4096, action chunk 8 x 7, one thread)",
        "",
        "`aura_step_us` / `kv_step_us`: `AuraRuntime.select_action` and the core's "
        "`KVCacheMemory` behind the same numpy wrapper; latency of the steps at and after "
        f"horizon H ({meta['samples']} steps each, pooled over {r.get('rounds', 1)} rounds "
        "of the whole comparison). AURA runs continuously from step 1; the KV-cache is "
        "prefilled to H entries (see the module docstring for why).",
        "",
        "| horizon | AURA p50 (us) | AURA p99 | KV p50 (us) | KV p99 | KV/AURA p50 | "
        "AURA state (B) | KV state (B) | KV/AURA bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in hs:
        a, k = r["aura_step_us"][h], r["kv_step_us"][h]
        ab, kb = r["aura_state_bytes"][h], r["kv_state_bytes"][h]
        lines.append(
            f"| {int(h):,} | {a['p50']:.0f} | {a['p99']:.0f} | {k['p50']:.0f} | {k['p99']:.0f} "
            f"| {k['p50'] / a['p50']:.2f} | {ab:,} | {kb:,} | {kb / ab:,.2f} |"
        )
    a1, a_last = r["aura_step_us"][hs[0]]["p50"], r["aura_step_us"][hs[-1]]["p50"]
    a_worst, h_worst = max((r["aura_step_us"][h]["p50"], h) for h in hs)
    if "aura_step_p50_us_by_round" in r:
        lines += [
            "",
            "p50 of each round (us), by horizon: AURA "
            + "; ".join(f"{int(h):,}: {v}" for h, v in r["aura_step_p50_us_by_round"].items())
            + ". KV-cache "
            + "; ".join(f"{int(h):,}: {v}" for h, v in r["kv_step_p50_us_by_round"].items())
            + ".",
        ]
    if "aura_round_cpu" in r:
        lines += [
            "",
            "This VM shares its host, and in spells of seconds to minutes every code path runs "
            "slower (the KV-cache and the reference path alike). Per AURA round, mean wall "
            "time per step, the thread's own CPU time per step, and the CPU ticks the "
            "hypervisor gave to other guests (steal): "
            + "; ".join(
                f"{c['wall_us_per_step']} / {c['thread_cpu_us_per_step']} us, "
                f"{c['steal_ticks']} ticks"
                for c in r["aura_round_cpu"]
            )
            + ". CPU time rising with wall time and no steal means the core itself ran "
            "slower (another guest on the same physical core or cache), not that the "
            "benchmark was descheduled.",
        ]
    blocks = r["aura_p50_us_by_block"]
    lines += [
        "",
        f"AURA's reference path (`AuraLayer.step`, the training code, behind the same "
        f"wrapper; what a step cost before the fused kernel): p50 "
        f"{r['aura_reference_step_us']['p50']:.0f} us, p99 "
        f"{r['aura_reference_step_us']['p99']:.0f} us. Bare KV-cache step (tensors in, no "
        "wrapper) p50 "
        + ", ".join(f"{int(h):,}: {v['p50']:.0f} us" for h, v in r["kv_layer_step_us"].items())
        + f". One 4096 x 288 fp32 GEMV in torch (`torch.mv`, all of a step's 4096-wide "
        f"projections) p50 {r['matvec_floor_us']['p50']:.0f} us. AURA median per block of "
        f"{blocks['block_steps']:,} steps over each whole run: "
        + "; ".join(str(b) for b in blocks.get("p50_by_round", [blocks.get("p50")]))
        + f". AURA wrote on {r['aura_writes']:,} of "
        f"{r['aura_steps']:,} steps of a run (the untrained gate writes every step: worst "
        "case).",
        "",
    ]
    node = "node_latency_ms" in r
    floor = r.get("matvec_floor_us", {}).get("p50")
    by_round = r.get("aura_step_p50_us_by_round")
    step_target = (
        "AURA step p50 <= 100 us (one thread), at every horizon",
        f"{a_worst:.0f} us pooled (slowest horizon, {int(h_worst):,})"
        + (f"; fastest round {max(min(v) for v in by_round.values()):.0f} us" if by_round else "")
        + (f"; the bare GEMV alone (`torch.mv`) took {floor:.0f} us in this run" if floor else ""),
        a_worst <= 100.0,
    )
    targets = [
        step_target,
        (
            "AURA flat: p50 at the largest horizon within 1.5x of p50 at 1",
            f"{a_last / a1:.2f}x",
            a_last <= 1.5 * a1,
        ),
    ]
    if node:
        p95_30 = r["node_latency_ms"].get("30", {}).get("p95", float("nan"))
        targets += [
            ("node p95 <= 25 ms at 30 Hz (CPU default)", f"{p95_30:.1f} ms", p95_30 <= 25.0),
            (
                "RSS growth < 5 %",
                f"{r['rss_growth_pct']:+.2f} % over {r['soak']['steps']:,} steps",
                abs(r["rss_growth_pct"]) < 5.0,
            ),
        ]
    bd = r.get("aura_breakdown_p50_us")
    if bd:
        lines += [
            "Where a fused AURA step's time goes (p50 of each nested part, measured "
            f"interleaved): runtime `select_action` {bd['runtime_select_action']} us = numpy "
            f"wrapper (conversions, shape/finite checks) {bd['numpy_wrapper']} us + weight-version "
            f"check and kernel dispatch {bd['version_check_and_dispatch']} us + the compiled "
            f"kernel {bd['kernel']} us; the kernel = one GEMV over all 4096-wide projections "
            f"(4096 x 288 fp32, 4.7 MB of weights read per step) {bd['gemv_4096']} us + memory "
            f"read/write, gate and residual head {bd['memory_gate_head']} us. The GEMV streams "
            f"its weights at {D_MODEL * 288 * 4 / bd['gemv_4096'] / 1e3:.0f} GB/s: it is bound "
            "by memory bandwidth, and torch's own GEMV (above) is no faster.",
            "",
        ]
    gc = r.get("gemv_cache_us")
    if gc:
        lines += [
            f"So a step's cost is set by where its 4.7 MB of weights come from. The same GEMV "
            f"with its weights in cache: p50 {gc['cached']['p50']:.0f} us; cycling through "
            f"{gc['copies']} weight copies ({gc['copies'] * gc['bytes_each'] / 1e6:.0f} MB, "
            f"more than the last-level cache) so that every product reads DRAM: p50 "
            f"{gc['from_dram']['p50']:.0f} us. On a robot CPU whose last-level cache holds "
            "less than 4.7 MB (or that other processes share), expect the DRAM figure.",
            "",
        ]
    rss = r.get("fused_rss_mb")
    if rss:
        lines += [
            f"The price of the kernel is memory: a fresh process after 100 steps holds "
            f"{rss['fused_after_mb']} MB with the fused step and {rss['reference_after_mb']} MB "
            f"with the reference path (**+{rss['fused_extra_mb']} MB**: numba and LLVM). The "
            "node's `fused_step` parameter chooses.",
            "",
        ]
    lines += ["## Targets", "", "| target | measured | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else '**no**'} |" for t, m, ok in targets]
    lines += [
        "",
        "## Why the reference path is slow (torch.profiler, self CPU time per op)",
        "",
        "The profile that led to the fused kernel: the reference step "
        "(`AuraRuntime(..., fused=False)`) spends its time in operator dispatch, not "
        "arithmetic.",
        "",
        "| op | calls/step | self us/step | share |",
        "|---|---:|---:|---:|",
    ]
    for row in r.get("aura_profile", []):
        lines.append(
            f"| `{row['op']}` | {row['calls_per_step']} | {row['self_us_per_step']} | "
            f"{100 * row['share_of_op_time']:.0f} % |"
        )
    prof_total = (r.get("aura_profile") or [{}])[-1]
    if "unprofiled_wall_us_per_step" in prof_total:
        lines += [
            "",
            f"One reference step issues **{prof_total['calls_per_step']} torch operator calls** "
            f"(including views: as_strided, unsqueeze, t, select); without the profiler a "
            f"step takes {prof_total['unprofiled_wall_us_per_step']} us. The profiler inflates "
            "each call, so read the shares, not the absolute microseconds.",
        ]
    if node:
        lines += [
            "",
            "## The node end to end (mini, CPU default, separate process, DDS on localhost)",
            "",
            f"`{r['node_command']}`. Latency = action received by a subscriber minus the "
            "image's header stamp (the action carries it), so it includes DDS both ways; "
            "inference = the node's own `latency_ms` (frame taken -> action computed).",
            "",
            "| rate | frames | answered | dropped (node) | e2e p50 (ms) | e2e p95 | e2e p99 | "
            "inference p50 (ms) | inference p95 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        runs = [*r["node_rate_runs"].values(), *r["node_ramp"]]
        for run_ in runs:
            e, inf = run_["e2e_ms"], run_["inference_ms"]
            lines.append(
                f"| {run_['rate_hz']:g} Hz{' (ramp)' if 'sustained' in run_ else ''} | "
                f"{run_['frames_sent']} | {run_['actions']} | {run_['dropped_frames']} | "
                f"{e.get('p50', float('nan')):.1f} | {e.get('p95', float('nan')):.1f} | "
                f"{e.get('p99', float('nan')):.1f} | {inf.get('p50', float('nan')):.2f} | "
                f"{inf.get('p95', float('nan')):.2f} |"
            )
        soak = r["soak"]
        lines += [
            "",
            f"Highest sustainable rate (>= 99 % of frames answered, e2e p95 within one period, "
            f"publisher on time): **{r['node_max_rate_hz']:g} Hz** (ramp "
            f"{', '.join(f'{x:g}' for x in RAMP_RATES)} Hz, {meta['ramp_seconds']} s each).",
            "",
            f"Resident memory of the node process: {r['rss_mb_after_warmup']} MB after warm-up; "
            f"soak of {soak['steps']:,} served steps at {soak['rate_hz']:g} Hz "
            f"({soak['seconds']} s, {soak['dropped_frames']} dropped): **{r['rss_mb_start']} -> "
            f"{r['rss_mb_end']} MB ({r['rss_growth_pct']:+.2f} %)**. Series (s, steps, MB), "
            f"every 10th sample: {[list(x) for x in soak['rss_series'][::10]]}.",
        ]
        if soak["steps"] < 100_000:
            lines += [
                "",
                "A longer soak (100k served steps) is `make bench-soak` -> "
                "[perf_soak.md](perf_soak.md).",
            ]
        prof = r.get("node_profile")
        if prof and "top_inclusive" in prof:
            lines += [
                "",
                "### Where the node's time goes (py-spy, during the soak)",
                "",
                f"{prof['busy_samples']} busy samples ({prof['idle_samples']} idle "
                "samples of waiting threads left out); inclusive share of busy time:",
                "",
                "| group | share |",
                "|---|---:|",
            ]
            lines += [
                f"| {row['group']} | {100 * row['share_of_busy']:.0f} % |"
                for row in prof.get("by_group", [])
            ]
            lines += ["", "By function (inclusive):", "", "| function | share |", "|---|---:|"]
            lines += [
                f"| `{row['function']}` | {100 * row['share_of_busy']:.0f} % |"
                for row in prof["top_inclusive"]
            ]
        elif prof:
            lines += ["", f"py-spy profile failed: {prof.get('error', '?')}"]
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry
def run(args: argparse.Namespace) -> int:
    if args.render is not None:
        if args.md is None:
            raise SystemExit("--render needs --md")
        args.md.write_text(render_markdown(json.loads(args.render.read_text())))
        return 0
    if args.quick:
        args.horizons, args.samples, args.rounds = "1,100", 50, 2
        args.rate_seconds, args.ramp_seconds, args.soak_steps = 1.0, 0.5, 100
    horizons = [int(h) for h in str(args.horizons).split(",") if h.strip()]
    rates = [float(x) for x in str(args.rates).split(",") if x.strip()]
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    log = lambda text: print(text, flush=True)  # noqa: E731
    log(f"per-step cost at horizons {horizons} ({args.samples} samples each)")
    result: dict[str, Any] = measure_steps(horizons, args.samples, args.rounds, log=log)
    result["matvec_floor_us"] = matvec_floor_us(min(args.samples, 2000))
    result["aura_breakdown_p50_us"] = aura_breakdown_us(min(args.samples, 2000))
    result["fused_rss_mb"] = fused_rss_cost_mb()
    result["gemv_cache_us"] = gemv_from_dram_us(min(args.samples, 2000))
    if not args.no_profile:
        result["aura_profile"] = profile_aura_ops(200 if args.quick else 2000)
    if not args.no_node:
        log("node end to end")
        result.update(
            measure_node(
                rates,
                args.rate_seconds,
                args.ramp_seconds,
                args.soak_steps,
                args.soak_rate,
                profile=not args.no_profile and not args.quick,
                log=log,
            )
        )
    result["meta"] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command_line("perf"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "samples": args.samples,
        "ramp_seconds": args.ramp_seconds,
        "seconds": round(time.monotonic() - t0, 1),
        "quick": bool(args.quick),
        "nice": os.nice(0),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                result["meta"]["cpu"] = line.split(":", 1)[1].strip()
                break
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(render_markdown(result))
    if not args.out and not args.md:
        print(json.dumps({k: result[k] for k in result if k in REQUIRED_KEYS}, indent=1))
    return 0


REQUIRED_KEYS = (
    "aura_step_us",
    "kv_step_us",
    "aura_state_bytes",
    "kv_state_bytes",
    "node_latency_ms",
    "node_max_rate_hz",
    "rss_mb_start",
    "rss_mb_end",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aura-mem-bench perf", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
