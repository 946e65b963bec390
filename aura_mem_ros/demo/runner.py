"""The demo: ``minigrid_sim`` and ``aura_mem`` as two processes over DDS on localhost.

This process only orchestrates and listens (episode results, per-step info, memory stats);
the control loop is sim <-> node over topics. It prints one line per episode and a summary,
writes a PNG of the memory's writes in one episode, and stops both processes before exiting.

``--no-reset``: the simulator never calls ``~/reset_memory`` (``reset_between_episodes:
false``) and the node runs with ``reset_policy: never``, so the episodes are one long run for
the memory, as on a robot that never resets. The summary then says whether the memory wrote
when the cue changed from one episode to the next (a layer must overwrite the stale cue).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from domain_coordinator import domain_id as reserve_domain_id

from aura_mem_ros.backbones.base import AURA_DIR, NEVER_RESET_AURA_DIR
from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR
from aura_mem_ros.ros.parameters import shipped_params_file

KV_BYTES_PER_STEP = 256  # one 32-d fp32 key + one 32-d fp32 value per step (model card)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m aura_mem_ros.demo", description=__doc__)
    ap.add_argument("--env", default="MiniGrid-MemoryS13-v0", help="a MiniGrid-Memory id, or arm")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed-offset", type=int, default=2_000_000)
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--gate", default="learned")
    ap.add_argument(
        "--no-reset",
        action="store_true",
        help="never reset memory between episodes (reset_policy never, no reset calls)",
    )
    ap.add_argument("--out-dir", type=Path, default=Path("demo_output"))
    ap.add_argument("--timeout", type=float, default=110.0, help="seconds for the whole run")
    args = ap.parse_args(argv)
    if args.episodes <= 0:
        ap.error("--episodes must be positive")
    return args


def reserve_domain() -> int:
    """A DDS domain id no other process on this host holds (released when we exit)."""
    reservation = reserve_domain_id()
    domain = reservation.__enter__()
    _RESERVATIONS.append(reservation)  # keep the socket bound until the process ends
    return domain


_RESERVATIONS: list = []


def spawn_logged(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Own process group: a Ctrl-C in the terminal must not hit the children before we
    # stop them in order.
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(proc: subprocess.Popen, name: str) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            print(f"[demo] {name} ignored {sig.name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    # `--env arm`: the MuJoCo arm task has its own runner (demo/arm.py) and options.
    env_only = argparse.ArgumentParser(add_help=False)
    env_only.add_argument("--env")
    if env_only.parse_known_args(argv)[0].env == "arm":
        from aura_mem_ros.demo.arm import main as arm_main

        return arm_main(argv)
    args = parse_args(argv)
    aura_dir = args.model_dir / AURA_DIR
    if args.no_reset and (args.model_dir / NEVER_RESET_AURA_DIR).is_dir():
        aura_dir = args.model_dir / NEVER_RESET_AURA_DIR  # what `bundled` serves under `never`
    if not (args.model_dir / "model.safetensors").is_file() or not aura_dir.is_dir():
        print(
            f"[demo] weights missing in {args.model_dir}: run `make train-default`", file=sys.stderr
        )
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # A private DDS domain, reserved for as long as this process lives: two demos (or a test
    # run) on one host must not cross-talk. AURA_DEMO_DOMAIN_ID pins it (e.g. to record a bag).
    domain = os.environ.get("AURA_DEMO_DOMAIN_ID") or str(reserve_domain())
    os.environ["ROS_DOMAIN_ID"] = domain
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    py = sys.executable
    # The node runs exactly as a user would start it: the shipped YAML (backbone mini, its
    # bundled AURA layer), plus only what this demo changes.
    params_file = shipped_params_file()
    node_cmd = [py, "-m", "aura_mem_ros.node", "--ros-args", "--params-file", str(params_file)]
    # service: the simulator's reset call between episodes clears memory; never: nothing does.
    policy = "never" if args.no_reset else "service"
    node_cmd += ["-p", f"gate:={args.gate}", "-p", f"reset_policy:={policy}"]
    if args.model_dir.resolve() != DEFAULT_MODEL_DIR.resolve():
        node_cmd += [
            # YAML single quotes: otherwise ROS parses the JSON text as a mapping.
            "-p",
            f"backbone_args:='{json.dumps({'model_dir': str(args.model_dir)})}'",
            "-p",
            f"aura_checkpoint:={aura_dir}",
        ]
    sim_cmd = [
        py,
        "-m",
        "aura_mem_ros.sim.node",
        "--ros-args",
        "-p",
        f"env_id:={args.env}",
        "-p",
        f"episodes:={args.episodes}",
        "-p",
        f"seed_offset:={args.seed_offset}",
        "-p",
        f"max_steps:={args.max_steps}",
        "-p",
        "wait_for_observer:=true",
        "-p",
        f"reset_between_episodes:={'false' if args.no_reset else 'true'}",
    ]
    from aura_mem_ros.demo.listener import DemoListener

    t0 = time.monotonic()
    listener = DemoListener()  # before the processes: episode 0 must not be missed
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["aura_mem"] = spawn_logged(node_cmd, env, args.out_dir / "aura_mem.log")
        procs["minigrid_sim"] = spawn_logged(sim_cmd, env, args.out_dir / "minigrid_sim.log")
        mode = "memory NEVER reset" if args.no_reset else "memory reset between episodes"
        print(
            f"[demo] {args.env}: {args.episodes} episodes, seeds {args.seed_offset}.., {mode}, "
            f"DDS domain {domain}; logs in {args.out_dir}/",
            flush=True,
        )
        record = listener.spin(args.episodes, args.timeout - (time.monotonic() - t0), procs)
    finally:
        for name, proc in procs.items():
            stop_process(proc, name)
        listener.close()
    return _report(args, record, time.monotonic() - t0)


def cue_writes(results: list[dict]) -> dict[str, int]:
    """Did memory write at each cue? Per episode: a write at or after the step the cue was
    first seen. Among episodes whose cue differs from the previous episode's (what a memory
    that is never reset must overwrite): in how many the policy looked at the cue at all (a
    policy that trusts a stale memory may not turn back to look), and wrote after it."""
    ordered = sorted(results, key=lambda r: r["episode"])

    def wrote_on_cue(r: dict) -> bool:
        seen = r.get("cue_first_seen")
        return seen is not None and any(w >= seen for w in r["write_steps"])

    new = [
        r
        for prev, r in itertools.pairwise(ordered)
        if r.get("cue") is not None and r.get("cue") != prev.get("cue")
    ]
    return {
        "episodes_with_cue_write": sum(wrote_on_cue(r) for r in ordered),
        "new_cue_episodes": len(new),
        "new_cue_episodes_seen": sum(r.get("cue_first_seen") is not None for r in new),
        "new_cue_episodes_with_write": sum(wrote_on_cue(r) for r in new),
    }


def _report(args: argparse.Namespace, record: dict, seconds: float) -> int:
    from aura_mem_ros.demo.plot import plot_writes

    results = record["results"]
    steps_by_ep: dict[int, list[dict]] = record["steps"]
    total_steps = sum(r["steps"] for r in results)
    total_writes = sum(r["writes"] for r in results)
    n = len(results)
    state_bytes = record.get("state_bytes") or 4224
    print()
    if n:
        succ = sum(r["success"] for r in results)
        longest = max(r["steps"] for r in results)
        print(
            f"[demo] success {succ}/{n} = {succ / n:.2f}; writes {total_writes} over "
            f"{total_steps} steps = {total_writes / max(1, total_steps):.3f} writes/step "
            f"({total_writes / n:.2f} per episode)"
        )
        print(
            f"[demo] memory state: {state_bytes} bytes, constant; a KV-cache would hold "
            f"{KV_BYTES_PER_STEP * longest} bytes after the longest episode and "
            f"{KV_BYTES_PER_STEP * total_steps} bytes over this whole run without resets "
            f"(break-even at {state_bytes // KV_BYTES_PER_STEP + 1} steps)"
        )
        cues = cue_writes(results)
        print(
            f"[demo] {'memory never reset' if args.no_reset else 'memory reset every episode'}: "
            f"a write at or after the cue was first seen in {cues['episodes_with_cue_write']}"
            f"/{n} episodes; the cue changed from the previous episode in "
            f"{cues['new_cue_episodes']} episodes: the policy looked at the new cue in "
            f"{cues['new_cue_episodes_seen']} of them and memory wrote after seeing it in "
            f"{cues['new_cue_episodes_with_write']}"
        )
    # Plot the episode whose cue came latest (among those that wrote): it shows best that
    # the write lands on the cue, several steps before the cue-dependent choice.
    candidates = [
        (next(x["step"] for x in s if x["cue_visible"]), -e)
        for e, s in steps_by_ep.items()
        if any(x["wrote"] for x in s) and any(x["cue_visible"] for x in s)
    ]
    pick = -max(candidates)[1] if candidates else (min(steps_by_ep) if steps_by_ep else None)
    if pick is not None:
        ep = next((r for r in results if r["episode"] == pick), None)
        outcome = "" if ep is None else (" success" if ep["success"] else " failure")
        png = plot_writes(
            steps_by_ep[pick],
            f"{args.env} episode {pick}{outcome}: AURA-Mem writes vs the cue",
            args.out_dir / "memory_writes.png",
        )
        print(f"[demo] wrote {png}")
    print(f"[demo] {seconds:.1f} s; all processes stopped")
    (args.out_dir / "demo_summary.json").write_text(
        json.dumps(
            {
                "env": args.env,
                "reset_between_episodes": not args.no_reset,
                "cue_writes": cue_writes(results) if results else None,
                "results": results,
                "seconds": seconds,
                "actions": {
                    str(e): [x["action"] for x in s] for e, s in sorted(steps_by_ep.items())
                },
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if n == args.episodes else 1
