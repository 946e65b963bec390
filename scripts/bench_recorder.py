#!/usr/bin/env python3
"""Recorder benchmark: 224x224 rgb8 at 30 Hz plus the node's other topics, into aura-mem-record.

This process publishes (with the node's real QoS) and aura-mem-record runs as a separate
process, as on a robot. Loss is counted end to end: every message carries its sequence number,
and the bag is read back (raw CDR, no decode) to find which sequence numbers are missing.
The recorder's CPU time and peak RSS come from /proc.

    nice -n 10 python scripts/bench_recorder.py --duration 600      # the issue's benchmark
    python scripts/bench_recorder.py --duration 60 --out /tmp/b.json  # a shorter run
Results of the 10-minute runs: docs/results/recorder.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from aura_mem_ros.msg import AuraAction, MemoryStats  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float32, String, UInt64  # noqa: E402

from aura_mem_ros.ros import qos  # noqa: E402

# topic -> publish rate (Hz); stamped topics carry their sequence number in header.frame_id.
TOPICS = {
    "/image": 30.0,
    "/proprio": 30.0,
    "/aura_mem/action": 30.0,
    "/aura_mem/stats": 1.0,
    "/aura_mem/write_rate": 1.0,
    "/aura_mem/writes_total": 1.0,
    "/diagnostics": 1.0,
}


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    return cpu, rss


def frame_id_of(cdr: bytes) -> str:
    """header.frame_id from raw CDR: 4 B encapsulation, stamp (8 B), then the string."""
    (n,) = struct.unpack_from("<I", cdr, 12)
    return cdr[16 : 16 + n - 1].decode()


def read_back(bag: Path) -> dict[str, list[int]]:
    """Sequence numbers per stamped topic, straight from the mcap files (no decode)."""
    from mcap.reader import make_reader

    seqs: dict[str, list[int]] = {}
    for file in sorted(bag.glob("*.mcap")):
        with file.open("rb") as f:
            for _, channel, message in make_reader(f).iter_messages():
                if channel.topic in (
                    "/image",
                    "/proprio",
                    "/aura_mem/action",
                    "/diagnostics",
                    "/aura_mem/stats",
                ):
                    seqs.setdefault(channel.topic, []).append(int(frame_id_of(message.data)))
    return seqs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    ap.add_argument("--max-bag-size", default="512M")
    ap.add_argument("--dir", default="", help="where the bag goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the bag")
    ap.add_argument(
        "--recorder-nice",
        type=int,
        default=None,
        help="niceness of the recorder process (default: inherited). Run the whole bench "
        "with `nice -n 10` and --recorder-nice 0 to load the machine politely while the "
        "recorder runs at the priority it has on a robot (lowering niceness needs root)",
    )
    ap.add_argument("--out", default="", help="also write the result JSON here")
    args = ap.parse_args()

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="aura_rec_bench_"))
    bag = workdir / "bench_bag"
    summary_path = workdir / "summary.json"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    rec = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aura_mem_ros.bags.record",
            "-o",
            str(bag),
            "--node",
            "",
            "-s",
            args.storage,
            "-b",
            args.max_bag_size,
            "--summary-json",
            str(summary_path),
            *TOPICS,
            "/instruction",
        ],
        env=env,
        cwd=REPO,
        preexec_fn=(
            None
            if args.recorder_nice is None
            else lambda: os.setpriority(os.PRIO_PROCESS, 0, args.recorder_nice)
        ),
    )

    rclpy.init()
    node = Node("recorder_bench_publisher")
    pubs = {
        "/image": node.create_publisher(Image, "/image", qos.sensor_qos()),
        "/proprio": node.create_publisher(JointState, "/proprio", qos.sensor_qos()),
        "/aura_mem/action": node.create_publisher(
            AuraAction, "/aura_mem/action", qos.reliable_qos()
        ),
        "/aura_mem/stats": node.create_publisher(
            MemoryStats, "/aura_mem/stats", qos.reliable_qos()
        ),
        "/aura_mem/write_rate": node.create_publisher(
            Float32, "/aura_mem/write_rate", qos.reliable_qos()
        ),
        "/aura_mem/writes_total": node.create_publisher(
            UInt64, "/aura_mem/writes_total", qos.reliable_qos()
        ),
        "/diagnostics": node.create_publisher(DiagnosticArray, "/diagnostics", qos.reliable_qos()),
    }
    instr = node.create_publisher(String, "/instruction", qos.instruction_qos())
    instr.publish(String(data="put the bowl on the plate"))
    exe = SingleThreadedExecutor()
    exe.add_node(node)
    deadline = time.monotonic() + 60
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        exe.spin_once(timeout_sec=0.05)
        if time.monotonic() > deadline or rec.poll() is not None:
            print("recorder did not subscribe", file=sys.stderr)
            rec.kill()
            return 1
    time.sleep(1.0)

    rng = np.random.default_rng(0)
    # Random pixels: the worst case for any compression, and a realistic byte count.
    frames = [rng.integers(0, 256, (args.size, args.size, 3), np.uint8).tobytes() for _ in range(8)]
    sent = dict.fromkeys(TOPICS, 0)
    sent["/instruction"] = 1  # latched, published once before the run
    cpu0, _ = proc_stats(rec.pid)
    rec_nice = os.getpriority(os.PRIO_PROCESS, rec.pid)
    rss_peak = 0
    late_ticks = 0
    t0 = time.monotonic()
    tick = 0
    period = 1.0 / 30.0
    last_progress = t0
    while True:
        now = time.monotonic()
        if now - t0 >= args.duration:
            break
        stamp = node.get_clock().now().to_msg()
        seq = str(tick)
        im = Image(height=args.size, width=args.size, encoding="rgb8", step=args.size * 3)
        im.header.stamp, im.header.frame_id = stamp, seq
        im.data = frames[tick % len(frames)]
        pubs["/image"].publish(im)
        js = JointState(name=[f"j{i}" for i in range(7)], position=[0.1 * tick] * 7)
        js.header.stamp, js.header.frame_id = stamp, seq
        pubs["/proprio"].publish(js)
        a = AuraAction(
            chunk_size=8,
            action_dim=7,
            wrote=tick % 7 == 0,
            write_prob=0.3,
            step=tick,
            latency_ms=12.0,
        )
        a.header.stamp, a.header.frame_id = stamp, seq
        a.action = [0.01 * tick] * 56
        pubs["/aura_mem/action"].publish(a)
        sent["/image"] += 1
        sent["/proprio"] += 1
        sent["/aura_mem/action"] += 1
        if tick % 30 == 0:
            second = str(tick // 30)
            s = MemoryStats(steps=tick, writes=tick // 7, write_rate=0.14, state_bytes=4224)
            s.header.stamp, s.header.frame_id = stamp, second
            pubs["/aura_mem/stats"].publish(s)
            pubs["/aura_mem/write_rate"].publish(Float32(data=0.14))
            pubs["/aura_mem/writes_total"].publish(UInt64(data=tick // 7))
            d = DiagnosticArray()
            d.header.stamp, d.header.frame_id = stamp, second
            d.status = [
                DiagnosticStatus(level=DiagnosticStatus.OK, name="aura_mem: memory", message="ok")
            ]
            pubs["/diagnostics"].publish(d)
            for name in (
                "/aura_mem/stats",
                "/aura_mem/write_rate",
                "/aura_mem/writes_total",
                "/diagnostics",
            ):
                sent[name] += 1
            _, rss = proc_stats(rec.pid)
            rss_peak = max(rss_peak, rss)
        if now - last_progress >= 30:
            last_progress = now
            print(
                f"[bench] {now - t0:.0f}/{args.duration:.0f} s, {tick} frames, recorder RSS "
                f"{rss_peak / 1e6:.0f} MB",
                flush=True,
            )
        tick += 1
        target = t0 + tick * period
        slack = target - time.monotonic()
        if slack < 0:
            late_ticks += 1
        exe.spin_once(timeout_sec=max(0.0, slack))
        while time.monotonic() < target:
            time.sleep(max(0.0, target - time.monotonic()))
    elapsed = time.monotonic() - t0
    time.sleep(1.0)  # let the last messages arrive before the signal
    cpu1, rss = proc_stats(rec.pid)
    rss_peak = max(rss_peak, rss)
    rec.send_signal(signal.SIGINT)
    rc = rec.wait(timeout=120)
    node.destroy_node()
    rclpy.try_shutdown()

    summary = json.loads(summary_path.read_text())
    seqs = read_back(bag)
    per_topic = {}
    for name, n in sent.items():
        recorded = summary["topics"].get(name, {}).get("written", 0)
        entry = {
            "sent": n,
            "recorded": recorded,
            "lost": n - recorded,
            "recorder_dropped": summary["topics"].get(name, {}).get("dropped", 0),
        }
        if name in seqs:
            got = seqs[name]
            entry["in_order"] = got == sorted(got)
            entry["missing_seq"] = len(set(range(n)) - set(got))
        per_topic[name] = entry
    bag_bytes = sum(f.stat().st_size for f in bag.iterdir() if f.is_file())
    result = {
        "command": " ".join(sys.argv),
        "duration_s": round(elapsed, 1),
        "image": f"{args.size}x{args.size} rgb8 (random pixels)",
        "storage": args.storage,
        "recorder_niceness": rec_nice,
        "bench_niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "recorder_exit_code": rc,
        "messages_sent": sum(sent.values()),
        "messages_recorded": summary["messages_written"],
        "lost": sum(sent.values()) - summary["messages_written"],
        "recorder_dropped": summary["dropped"],
        "throughput_MBps": round(summary["bytes_written"] / elapsed / 1e6, 2),
        "bag_bytes": bag_bytes,
        "bag_files": len(summary["files"]),
        "recorder_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "recorder_rss_peak_MB": round(rss_peak / 1e6, 1),
        "queue_peak_MB": round(summary["queue_peak_bytes"] / 1e6, 2),
        "publisher_late_ticks": late_ticks,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "topics": per_topic,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result["lost"] == 0 and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
