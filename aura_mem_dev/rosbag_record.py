"""Record a training bag OVER ROS: ``minigrid_sim``, ``aura_mem`` and ``aura-mem-record`` as
three processes on a private DDS domain, the simulator's expert driving.

What a robot team does to collect retraining data, with the simulator standing in for the
robot: the simulator executes its expert's action (``driver: expert``, a uniformly random
move with probability ``explore``) and publishes it on ``/expert/action``; the ``aura_mem``
node serves the BASE policy (``gate: never``: the memory is never written, so no trained
memory shapes the data) and paces the lock step, its actions recorded beside the expert's;
``aura-mem-record`` records the node's default topics and its parameters, and is closed by
SIGINT. ``aura_mem_dev/simbag.py`` writes the same topics without DDS.

This process only orchestrates: the simulator starts its first episode only once the
recorder has subscribed to every topic training needs (it waits for an observer on
``/minigrid_sim/step_info``, which this process opens only then), so episode 0 is recorded
whole. ``step_info`` (the simulator's bookkeeping, never recorded) gives the counts returned.

    python -m aura_mem_dev.rosbag_record OUT_BAG --env MiniGrid-MemoryS13-v0 --episodes 50
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import aura_mem_ros
from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR
from aura_mem_ros.demo.runner import spawn_logged as spawn
from aura_mem_ros.demo.runner import stop_process as stop
from aura_mem_ros.ros.parameters import shipped_params_file

RECORDER_NODE = "aura_mem_recorder"  # aura-mem-record's node name
# What must be recorded from the first frame on: training pairs each camera frame with the
# expert's action of its stamp, the newest instruction and joint state, and cuts episodes at
# the results; the node's actions are kept for evaluation.
NEEDED_TOPICS = (
    "/image",
    "/proprio",
    "/instruction",
    "/expert/action",
    "/episode_result",
    "/aura_mem/action",
)
STEP_INFO = "/minigrid_sim/step_info"


@contextlib.contextmanager
def _private_domain(domain_id: int | None) -> Iterator[int]:
    """``domain_id``, or one reserved on this host for as long as the recording runs."""
    if domain_id is not None:
        yield domain_id
        return
    from domain_coordinator import domain_id as reserve_domain_id

    with reserve_domain_id() as domain:
        yield domain


def _commands(
    out: Path,
    env_id: str,
    episodes: int,
    seed_offset: int,
    explore: float,
    max_steps: int,
    model_dir: Path,
) -> dict[str, list[str]]:
    py = sys.executable
    node = [
        py,
        "-m",
        "aura_mem_ros.node",
        "--ros-args",
        "--params-file",
        str(shipped_params_file()),
    ]
    # The base policy: the memory is never written. service: the simulator's reset call at
    # each episode start clears it (nothing to clear, but the episodes are delimited alike).
    node += ["-p", "gate:=never", "-p", "reset_policy:=service"]
    if model_dir.resolve() != DEFAULT_MODEL_DIR.resolve():
        aura = model_dir / "aura"
        node += [
            # YAML single quotes: otherwise ROS parses the JSON text as a mapping.
            "-p",
            f"backbone_args:='{json.dumps({'model_dir': str(model_dir)})}'",
            "-p",
            f"aura_checkpoint:={aura if aura.is_dir() else ''}",
        ]
    sim = [py, "-m", "aura_mem_ros.sim.node", "--ros-args"]
    for name, value in (
        ("env_id", env_id),
        ("episodes", episodes),
        ("seed_offset", seed_offset),
        ("max_steps", max_steps),
        ("driver", "expert"),
        ("explore", float(explore)),
        ("wait_for_observer", "true"),
    ):
        sim += ["-p", f"{name}:={value}"]
    summary = out.with_name(out.name + ".record.json")
    recorder = [py, "-m", "aura_mem_ros.bags.record", "-o", str(out)]
    recorder += ["--summary-json", str(summary)]
    return {"aura_mem_recorder": recorder, "minigrid_sim": sim, "aura_mem": node}


class _Observer:
    """This process's ROS node: watches the graph and counts the simulator's steps."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = Context()  # its own: the caller may use rclpy's default context
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("aura_bag_observer", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.results: list[dict[str, Any]] = []
        self.steps = 0
        self.off_expert = 0  # executed a random move, not the expert's action
        self.policy_agrees = 0  # the base policy's answer was the expert's action
        self._listening = False

    def recorder_ready(self) -> bool:
        """The recorder subscribes to each topic once its publisher appears."""
        return all(
            any(i.node_name == RECORDER_NODE for i in self.node.get_subscriptions_info_by_topic(t))
            for t in NEEDED_TOPICS
        )

    def listen(self) -> None:
        """Subscribe to the simulator's step info and results: its cue to start."""
        from aura_mem_ros.msg import EpisodeResult
        from std_msgs.msg import String

        from aura_mem_ros.ros import qos

        self.node.create_subscription(String, STEP_INFO, self._on_step, qos.reliable_qos())
        self.node.create_subscription(
            EpisodeResult, "/episode_result", self._on_result, qos.reliable_qos()
        )
        self._listening = True

    def _on_step(self, msg: Any) -> None:
        info = json.loads(msg.data)
        self.steps += 1
        self.off_expert += info["action"] != info["expert_action"]
        self.policy_agrees += info["policy_action"] == info["expert_action"]

    def _on_result(self, msg: Any) -> None:
        self.results.append(
            {"episode": int(msg.episode), "seed": int(msg.seed), "success": bool(msg.success)}
        )

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def record_bag_over_ros(
    out: str | Path,
    env_id: str = "MiniGrid-MemoryS13-v0",
    episodes: int = 50,
    seed_offset: int = 700_000,
    explore: float = 0.1,
    max_steps: int = 100,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    domain_id: int | None = None,
    timeout_s: float | None = None,
    log_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Record ``episodes`` expert-driven episodes (seeds ``seed_offset``..) into bag ``out``.

    Returns {"bag", "env_id", "episodes", "successes", "steps", "off_expert_steps",
    "policy_agrees", "seconds", "recorded": {topic: messages written}, "dropped",
    "node_parameters"}. Raises RuntimeError (with the processes' log tails) when a process
    fails or the episodes do not finish within ``timeout_s`` (default 120 s + 10 s/episode).
    Logs: ``log_dir`` (default ``OUT_logs`` beside the bag).
    """
    if episodes <= 0:
        raise ValueError("episodes > 0 required")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: the recorder never overwrites a bag")
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = Path(log_dir) if log_dir is not None else out.with_name(out.name + "_logs")
    logs.mkdir(parents=True, exist_ok=True)
    timeout_s = 120.0 + 10.0 * episodes if timeout_s is None else timeout_s
    commands = _commands(out, env_id, episodes, seed_offset, explore, max_steps, Path(model_dir))
    procs: dict[str, subprocess.Popen] = {}

    def failure(why: str) -> RuntimeError:
        tails = "\n".join(f"--- {n}.log:\n{_tail(logs / f'{n}.log')}" for n in commands)
        return RuntimeError(f"recording {out} over ROS: {why}\n{tails}")

    t0 = time.monotonic()
    with _private_domain(domain_id) as domain:
        env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_DOMAIN_ID=str(domain))
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        # The children run the same aura_mem_ros sources as this process.
        source_root = str(Path(aura_mem_ros.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
        # read by rclpy.init; restored afterwards
        with mock.patch.dict(os.environ, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}):
            observer = _Observer(domain)
        deadline = t0 + timeout_s
        try:
            for name, cmd in commands.items():  # recorder first: it must see everything
                procs[name] = spawn(cmd, env, logs / f"{name}.log")

            def check_alive(allow_sim_exit: bool) -> None:
                for name, proc in procs.items():
                    if proc.poll() is not None and not (allow_sim_exit and name == "minigrid_sim"):
                        raise failure(f"{name} exited early (rc {proc.returncode})")
                if time.monotonic() > deadline:
                    raise failure(f"timed out after {timeout_s:.0f} s")

            while not observer.recorder_ready():
                check_alive(False)
                observer.spin(0.1)
            observer.listen()  # the simulator starts now
            while len(observer.results) < episodes:
                check_alive(True)
                if procs["minigrid_sim"].poll() is not None:
                    observer.spin(1.0)  # its last messages may still be in flight
                    if len(observer.results) < episodes:
                        raise failure(
                            f"minigrid_sim exited after {len(observer.results)}/{episodes} episodes"
                        )
                observer.spin(0.1)
            # The recorder's subscriptions are reliable; give the last result a moment.
            observer.spin(0.5)
            stop(procs["aura_mem_recorder"], "aura_mem_recorder")
            recorder_rc = procs["aura_mem_recorder"].returncode
        finally:
            for name, proc in procs.items():
                stop(proc, name)
            observer.close()
    seconds = time.monotonic() - t0
    if recorder_rc != 0:
        raise failure(f"aura_mem_recorder exited with rc {recorder_rc}")
    summary = json.loads(out.with_name(out.name + ".record.json").read_text())
    from aura_mem_ros.bags.read import node_parameters

    return {
        "bag": str(out),
        "env_id": env_id,
        "episodes": len(observer.results),
        "successes": sum(r["success"] for r in observer.results),
        "steps": observer.steps,
        "off_expert_steps": observer.off_expert,
        "policy_agrees": observer.policy_agrees,
        "seconds": round(seconds, 1),
        "recorded": {t: s["written"] for t, s in summary["topics"].items()},
        "dropped": summary["dropped"],
        "node_parameters": node_parameters(out) is not None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--env", default="MiniGrid-MemoryS13-v0")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed-offset", type=int, default=700_000)
    p.add_argument("--explore", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    args = p.parse_args(argv)
    counts = record_bag_over_ros(
        args.out,
        args.env,
        args.episodes,
        args.seed_offset,
        args.explore,
        args.max_steps,
        args.model_dir,
    )
    print(json.dumps(counts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
