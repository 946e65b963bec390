"""``python -m aura_mem_ros.demo --env arm``: ``arm_sim`` and ``aura_mem`` as two processes.

The MuJoCo arm task over DDS on localhost: the node (backbone ``arm_mini`` and its bundled
AURA layer, started from the shipped YAML) serves 8 x 7 chunks; the simulator executes them
open loop. This process only orchestrates and listens: one line per episode (success, where
the block went, writes), a summary, and ``arm_episode.png``: one episode's camera frames
with the chunks that wrote memory marked, over its write/cue/flicker timeline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR
from aura_mem_ros.demo.runner import reserve_domain, spawn_logged, stop_process
from aura_mem_ros.ros.parameters import shipped_params_file


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m aura_mem_ros.demo --env arm", description=__doc__)
    ap.add_argument("--env", default="arm", choices=["arm"])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed-offset", type=int, default=2_000_000)
    ap.add_argument("--execute-steps", type=int, default=8, help="actions run per chunk (1-8)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--gate", default="learned")
    ap.add_argument(
        "--no-reset",
        "--never-reset",
        dest="no_reset",
        action="store_true",
        help="never reset memory between episodes (reset_policy never, no reset calls)",
    )
    ap.add_argument("--out-dir", type=Path, default=Path("demo_output"))
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds for the whole run")
    args = ap.parse_args(argv)
    if args.episodes <= 0:
        ap.error("--episodes must be positive")
    return args


class ArmListener:
    """Episode results, per-chunk info and the camera frames, nothing else."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.node import Node
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from aura_mem_ros.msg import EpisodeResult, MemoryStats
        from aura_mem_ros.ros import qos

        rclpy.init()
        self._rclpy = rclpy
        self.node = Node("aura_arm_demo_listener")
        self.results: list[dict] = []
        self.steps: dict[int, list[dict]] = {}
        self.frames: dict[tuple[int, int], object] = {}
        self.state_bytes: int | None = None
        self.node.create_subscription(
            String, "/arm_sim/step_info", self._on_step, qos.reliable_qos()
        )
        self.node.create_subscription(
            EpisodeResult, "/episode_result", self._on_result, qos.reliable_qos()
        )
        self.node.create_subscription(
            MemoryStats, "/aura_mem/stats", self._on_stats, qos.reliable_qos()
        )
        # The camera is best effort (as on a robot); a deeper queue than the node's depth 1
        # keeps this slower reader from losing frames, so the picture has every chunk.
        frames_qos = qos.sensor_qos()
        frames_qos.depth = 64
        self.node.create_subscription(Image, "/image", self._on_image, frames_qos)

    def _on_image(self, msg) -> None:
        from aura_mem_ros.ros.image_conversion import image_to_rgb

        # Only the first episodes' frames are kept (one of them is drawn).
        if len(self.frames) < 400:
            self.frames[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = image_to_rgb(msg)

    def _on_step(self, msg) -> None:
        info = json.loads(msg.data)
        self.steps.setdefault(int(info["episode"]), []).append(info)

    def _on_stats(self, msg) -> None:
        self.state_bytes = int(msg.state_bytes)

    def _on_result(self, msg) -> None:
        steps = self.steps.get(int(msg.episode), [])
        last = steps[-1] if steps else {}
        writes = [s["chunk"] for s in steps if s["wrote"]]
        cue = [s["chunk"] for s in steps if s["cue_visible"]]
        rec = {
            "episode": int(msg.episode),
            "seed": int(msg.seed),
            "success": bool(msg.success),
            "completed": msg.episode_return > 0.5,
            "cue_pad": last.get("cue_pad"),
            "placed_pad": last.get("placed_pad"),
            "steps": int(msg.steps),
            "chunks": len(steps),
            "writes": len(writes),
            "write_chunks": writes,
            "cue_chunks": cue,
        }
        self.results.append(rec)
        placed = "no pad" if rec["placed_pad"] is None else f"pad {rec['placed_pad']}"
        print(
            f"episode {msg.episode:3d} seed {msg.seed}: "
            f"{'success' if msg.success else 'FAIL   '}  cue pad {rec['cue_pad']}, block on "
            f"{placed}  steps {msg.steps:3d} ({len(steps)} chunks)  writes {len(writes):2d} at "
            f"chunks {writes}  (cue shown in chunks {cue})",
            flush=True,
        )

    def spin(self, episodes: int, timeout_s: float, procs: dict[str, subprocess.Popen]) -> None:
        end = time.monotonic() + timeout_s
        while len(self.results) < episodes and time.monotonic() < end:
            self._rclpy.spin_once(self.node, timeout_sec=0.05)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead and len(self.results) < episodes:
                for _ in range(20):
                    self._rclpy.spin_once(self.node, timeout_sec=0.05)
                if len(self.results) < episodes:
                    print(f"[demo] process exited early: {dead} (see its log)", flush=True)
                break
        if len(self.results) < episodes and time.monotonic() >= end:
            print(f"[demo] timed out after {timeout_s:.0f} s", flush=True)

    def close(self) -> None:
        self.node.destroy_node()
        self._rclpy.try_shutdown()


def _commands(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from aura_mem_ros.sim.arm.env import PROPRIO_NAMES

    py = sys.executable
    names = "[" + ",".join(f'"{n}"' for n in PROPRIO_NAMES) + "]"
    node_cmd = [py, "-m", "aura_mem_ros.node", "--ros-args", "--params-file"]
    node_cmd += [str(shipped_params_file())]
    for param in (
        "backbone:=arm_mini",
        f"gate:={args.gate}",
        # service: the simulator's reset call between episodes clears memory; never: nothing.
        f"reset_policy:={'never' if args.no_reset else 'service'}",
        f"proprio_joint_names:={names}",
        "action_min:=[-1.0]",
        "action_max:=[1.0]",
    ):
        node_cmd += ["-p", param]
    if args.model_dir.resolve() != DEFAULT_MODEL_DIR.resolve():
        aura = args.model_dir / "aura"
        node_cmd += [
            "-p",
            f"backbone_args:='{json.dumps({'model_dir': str(args.model_dir)})}'",
            "-p",
            # no trained layer beside the weights: an untrained one (residual 0 = backbone)
            "aura_checkpoint:=" + (str(aura) if (aura / "aura_config.json").is_file() else "''"),
        ]
    sim_cmd = [py, "-m", "aura_mem_ros.sim.arm.node", "--ros-args"]
    for param in (
        f"episodes:={args.episodes}",
        f"seed_offset:={args.seed_offset}",
        f"execute_steps:={args.execute_steps}",
        f"image_size:={args.image_size}",
        "wait_for_observer:=true",
    ):
        sim_cmd += ["-p", param]
    if args.no_reset:
        sim_cmd += ["-p", "reset_between_episodes:=false"]
    return node_cmd, sim_cmd


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.model_dir / "model.safetensors").is_file():
        print(f"[demo] weights missing in {args.model_dir}: run `make train-arm`", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    domain = os.environ.get("AURA_DEMO_DOMAIN_ID") or str(reserve_domain())
    os.environ["ROS_DOMAIN_ID"] = domain
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node_cmd, sim_cmd = _commands(args)
    t0 = time.monotonic()
    listener = ArmListener()  # before the processes: episode 0 must not be missed
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["aura_mem"] = spawn_logged(node_cmd, env, args.out_dir / "aura_mem.log")
        procs["arm_sim"] = spawn_logged(sim_cmd, env, args.out_dir / "arm_sim.log")
        mode = "memory NEVER reset" if args.no_reset else "memory reset between episodes"
        print(
            f"[demo] arm task: {args.episodes} episodes, seeds {args.seed_offset}.., chunks of 8 "
            f"x 7 run {args.execute_steps} steps open loop, {mode}, DDS domain {domain}; logs "
            f"in {args.out_dir}/",
            flush=True,
        )
        listener.spin(args.episodes, args.timeout - (time.monotonic() - t0), procs)
    finally:
        for name, proc in procs.items():
            stop_process(proc, name)
        listener.close()
    return _report(args, listener, time.monotonic() - t0)


def _report(args: argparse.Namespace, listener: ArmListener, seconds: float) -> int:
    from aura_mem_ros.demo.arm_plot import plot_arm_episode

    results = listener.results
    n = len(results)
    print()
    if n:
        succ = sum(r["success"] for r in results)
        done = sum(r["completed"] for r in results)
        writes = sum(r["writes"] for r in results)
        chunks = sum(r["chunks"] for r in results)
        print(
            f"[demo] success {succ}/{n} = {succ / n:.2f} (block on the cued pad); manipulation "
            f"completed {done}/{n}; writes {writes} over {chunks} chunk requests = "
            f"{writes / max(1, chunks):.3f} per chunk ({writes / n:.2f} per episode)"
        )
        print(f"[demo] memory state: {listener.state_bytes or 4224} bytes, constant")
    # Draw the first episode that wrote, preferring one whose camera frames all arrived: on
    # a loaded machine the listener can miss a frame, and a picture of the frames it has
    # beats none (the title says how many are missing).
    pick = None
    for r in results:
        steps = listener.steps.get(r["episode"], [])
        got = [s for s in steps if tuple(s.get("stamp", ())) in listener.frames]
        if r["writes"] and got and (pick is None or len(got) == len(steps)):
            pick = (r, got, len(steps) - len(got))
            if len(got) == len(steps):
                break
    if pick is not None:
        r, steps, missing = pick
        png = plot_arm_episode(
            [listener.frames[tuple(s["stamp"])] for s in steps],
            steps,
            f"arm task, episode {r['episode']} (seed {r['seed']}): cue pad {r['cue_pad']}, block "
            f"on {'no pad' if r['placed_pad'] is None else 'pad ' + str(r['placed_pad'])} -> "
            f"{'success' if r['success'] else 'failure'}; {r['writes']} writes"
            + (f" ({missing} camera frames not received)" if missing else ""),
            args.out_dir / "arm_episode.png",
        )
        print(f"[demo] wrote {png}" + (f" ({missing} frames missing)" if missing else ""))
    else:
        print("[demo] no picture: no episode that wrote had a camera frame received")
    print(f"[demo] {seconds:.1f} s; all processes stopped")
    (args.out_dir / "arm_demo_summary.json").write_text(
        json.dumps({"env": "arm", "results": results, "seconds": seconds}, indent=2) + "\n"
    )
    return 0 if n == args.episodes else 1
