"""``aura-mem-bench perf``: per-step cost of AURA vs a KV-cache, the node end to end, and the
node's resident memory over a long run, all in ONE run so that ratios are fair.

Per step (single CPU thread, d_model 4096, OpenVLA-OFT's 8 x 7 action chunk):
  * AURA: ``AuraRuntime.select_action`` (gate + update + read, numpy in/out, what the node
    calls; the fused kernel of ``core/fused.py``), learned gate of an untrained layer (its
    initial bias writes every step: the worst case, an update on every step). One continuous
    run to the largest horizon; the latency at horizon H is the distribution of steps
    H .. H+samples-1. The reference path (``AuraLayer.step``, what training runs) is timed
    behind the same wrapper for comparison.
  * KV-cache: the core's ``KVMemory`` behind ``core.kv.KVRuntime`` (the same
    conversions and checks as ``AuraRuntime``), every step appends and attends. At horizon H
    the cache holds H entries: it is prefilled in bulk (stepping 100k steps one by one costs
    O(H^2), hours) with projections of real features, since attention costs the same
    whatever the cached numbers are.
  * The KV-cache also bare (``kv.step`` on tensors), so wrapper overhead can be told apart.
Node (the CPU default ``mini``, ``config/aura_mem.yaml``, a separate process, DDS on
localhost): image stamp -> action received by a subscriber at 10 and 30 Hz, the highest rate
at which >= 99% of frames are answered within one period, dropped frames, and RSS of the node
over ``--soak-steps`` served frames (``make bench-soak``: 100k).

Modules: ``steps`` (per-step cost and where it goes), ``node`` (the node process), ``pyspy``
(the node's profile), ``result`` (the typed result); ``aura_mem_dev.report.perf`` renders it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from aura_mem_dev.bench.cli import command_line
from aura_mem_dev.bench.perf.result import PerfMeta, PerfResult

DEFAULT_HORIZONS = (1, 1_000, 10_000, 100_000)


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


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.report.perf import render_markdown

    if args.render is not None:
        if args.md is None:
            raise SystemExit("--render needs --md")
        result = PerfResult.from_dict(json.loads(args.render.read_text()))
        args.md.write_text(render_markdown(result))
        return 0
    if args.quick:
        args.horizons, args.samples, args.rounds = "1,100", 50, 2
        args.rate_seconds, args.ramp_seconds, args.soak_steps = 1.0, 0.5, 100
    result = measure(args)
    data = result.to_dict()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(render_markdown(result))
    if not args.out and not args.md:
        print(json.dumps({k: data[k] for k in data if k in REQUIRED_KEYS}, indent=1))
    return 0


def measure(args: argparse.Namespace) -> PerfResult:
    """Everything the arguments ask for, in one process (so that ratios are fair)."""
    from aura_mem_dev.bench.perf import steps
    from aura_mem_dev.bench.perf.node import measure_node

    horizons = [int(h) for h in str(args.horizons).split(",") if h.strip()]
    rates = [float(x) for x in str(args.rates).split(",") if x.strip()]
    t0 = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    log = lambda text: print(text, flush=True)  # noqa: E731
    log(f"per-step cost at horizons {horizons} ({args.samples} samples each)")
    samples = min(args.samples, 2000)
    step_cost = steps.measure_steps(horizons, args.samples, args.rounds, log=log)
    extras = {
        "matvec_floor_us": steps.matvec_floor_us(samples),
        "aura_breakdown_p50_us": steps.aura_breakdown_us(samples),
        "fused_rss_mb": steps.fused_rss_cost_mb(),
        "gemv_cache_us": steps.gemv_from_dram_us(samples),
        "aura_profile": (
            None if args.no_profile else steps.profile_aura_ops(200 if args.quick else 2000)
        ),
    }
    node = None
    if not args.no_node:
        log("node end to end")
        node = measure_node(
            rates,
            args.rate_seconds,
            args.ramp_seconds,
            args.soak_steps,
            args.soak_rate,
            profile=not args.no_profile and not args.quick,
            log=log,
        )
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    meta = PerfMeta(
        date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        command=command_line("perf"),
        host=platform.node(),
        cpu=cpu,
        cpus=os.cpu_count() or 0,
        loadavg_before=load_before,
        loadavg_after=[round(x, 2) for x in os.getloadavg()],
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        samples=args.samples,
        ramp_seconds=args.ramp_seconds,
        seconds=round(time.monotonic() - t0, 1),
        quick=bool(args.quick),
        nice=os.nice(0),
    )
    return PerfResult(steps=step_cost, meta=meta, node=node, **extras)


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
