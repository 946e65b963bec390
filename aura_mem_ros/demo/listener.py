"""The demo's observer node: episode results, per-step info and memory stats, nothing else.

It is created before the two processes start, so it never misses the first episode.
"""

from __future__ import annotations

import json
import subprocess
import time

import rclpy
from rclpy.node import Node
from std_msgs.msg import String

from aura_mem_ros.msg import EpisodeResult, MemoryStats
from aura_mem_ros.ros import qos


class DemoListener:
    def __init__(self) -> None:
        rclpy.init()
        self.node = Node("aura_demo_listener")
        self.record: dict = {"results": [], "steps": {}, "state_bytes": None}
        self.node.create_subscription(
            String, "/minigrid_sim/step_info", self._on_step, qos.reliable_qos()
        )
        self.node.create_subscription(
            EpisodeResult, "/episode_result", self._on_result, qos.reliable_qos()
        )
        self.node.create_subscription(
            MemoryStats, "/aura_mem/stats", self._on_stats, qos.reliable_qos()
        )

    def _on_step(self, msg: String) -> None:
        info = json.loads(msg.data)
        self.record["steps"].setdefault(int(info["episode"]), []).append(info)

    def _on_result(self, msg: EpisodeResult) -> None:
        steps = self.record["steps"].get(int(msg.episode), [])
        writes = [s["step"] for s in steps if s["wrote"]]
        first = next((s["step"] for s in steps if s["cue_visible"]), None)
        cue = steps[0].get("cue") if steps else None
        self.record["results"].append(
            {
                "episode": int(msg.episode),
                "seed": int(msg.seed),
                "success": bool(msg.success),
                "steps": int(msg.steps),
                "writes": len(writes),
                "cue_first_seen": first,
                "write_steps": writes,
                "cue": cue,
            }
        )
        print(
            f"episode {msg.episode:3d} seed {msg.seed}: "
            f"{'success' if msg.success else 'FAIL   '}  steps {msg.steps:3d}  "
            f"writes {len(writes):2d} at steps {writes}  (cue {cue} first seen at step {first})",
            flush=True,
        )

    def _on_stats(self, msg: MemoryStats) -> None:
        self.record["state_bytes"] = int(msg.state_bytes)

    def spin(self, episodes: int, timeout_s: float, procs: dict[str, subprocess.Popen]) -> dict:
        end = time.monotonic() + timeout_s
        results = self.record["results"]
        while len(results) < episodes and time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead and len(results) < episodes:
                # The sim exits after its last episode; give its final messages a moment.
                for _ in range(20):
                    rclpy.spin_once(self.node, timeout_sec=0.05)
                if len(results) < episodes:
                    print(f"[demo] process exited early: {dead} (see its log)", flush=True)
                break
        if len(results) < episodes and time.monotonic() >= end:
            print(f"[demo] timed out after {timeout_s:.0f} s", flush=True)
        return self.record

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown()
