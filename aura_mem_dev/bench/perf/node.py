"""The ``aura_mem`` node end to end (the CPU default ``mini``, ``config/aura_mem.yaml``, a
separate process, DDS on localhost): image stamp -> action received by a subscriber at fixed
rates, the highest rate at which >= 99% of frames are answered within one period, dropped
frames, and the node's resident memory over ``soak_steps`` served frames.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_dev.bench.perf.pyspy import py_spy_profile
from aura_mem_dev.bench.perf.result import RAMP_RATES, NodeResult
from aura_mem_dev.bench.perf.steps import pct


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
        "e2e_ms": pct(e2e_a, (50, 95, 99)) if e2e else {},
        "inference_ms": pct(inf_a, (50, 95)) if inference else {},
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


def measure_node(
    rates: Sequence[float],
    rate_seconds: float,
    ramp_seconds: float,
    soak_steps: int,
    soak_rate: float,
    profile: bool,
    log: Callable[[str], None] = print,
) -> NodeResult:
    """Latency at ``rates``, the highest sustainable rate, and RSS over a soak, one node."""
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
    return NodeResult(**out)
