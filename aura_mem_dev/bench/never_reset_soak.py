"""``aura-mem-bench never-reset-soak``: one closed-loop run of >= 100,000 steps, never reset.

The frozen ``mini`` policy + an AURA layer run MiniGrid-Memory episodes back to back (episode
i: ``envs[i % len(envs)]``, seed ``seed_offset + i``) through the same backbone + runtime
calls the node makes (``aura_mem_dev/agent.py``), and NOTHING is reset after the runtime is
built: not the memory, not the backbone. Every ``--window`` steps (closed at the first
episode end past the boundary, so no episode is split) it records the success of the
episodes that ended in the window (Wilson 95%), writes, the memory state's bytes and the
process's resident memory.

Resumable and time-boxed: the JSON (``--out``) is rewritten after every window and carries
the memory state (base64, 4,224 bytes) and the next episode; ``--resume`` continues from it
exactly (the learned and always gates are deterministic), and ``--max-seconds`` stops at the
first window end past the time box (``complete: false``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from aura_mem_dev.bench.closed_loop import (
    DEFAULT_MAX_STEPS,
    Models,
    stream_envs,
    wilson_interval,
)
from aura_mem_dev.training.seeds import EVAL_SEED_BASE, check_eval_seed

# Disjoint from the closed-loop panels' seeds (base + episodes) and the AIS bound's (+100,000).
SOAK_SEED_OFFSET = EVAL_SEED_BASE + 200_000
ARMS = {"aura": "learned", "always_aura": "always", "memoryless": None}


@dataclass(frozen=True)
class SoakWindow:
    index: int
    end_step: int  # steps since the start of the run when the window closed
    steps: int
    episodes: int
    successes: int
    success: float
    ci95: tuple[float, float]
    writes: int
    writes_per_step: float
    state_bytes: int  # memory state held at the window's end (0: memoryless)
    rss_mb: float  # this process's resident memory at the window's end
    seconds: float  # wall time of the window


@dataclass
class SoakResult:
    env: str
    envs: list[str]
    arm: str
    target_steps: int
    window_steps: int
    seed_offset: int
    max_steps: int
    model: str
    command: str
    date: str
    windows: list[SoakWindow] = field(default_factory=list)
    total_steps: int = 0
    total_episodes: int = 0
    resets: int = 0  # agent resets after the runtime was built: must stay 0
    wall_seconds: float = 0.0  # summed over resumed sessions
    complete: bool = False
    state_b64: str | None = None  # memory at the last window end, for --resume

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SoakResult:
        windows = [SoakWindow(**{**w, "ci95": tuple(w["ci95"])}) for w in data["windows"]]
        return cls(**{**data, "windows": windows})


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100_000, help="closed-loop steps in all")
    parser.add_argument("--window", type=int, default=10_000, help="steps per reported window")
    parser.add_argument("--env", default="MiniGrid-MemoryS13-v0", help="id, list or 'mixed'")
    parser.add_argument("--arm", choices=sorted(ARMS), default="aura")
    parser.add_argument("--seed-offset", type=int, default=SOAK_SEED_OFFSET)
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS, help="per episode")
    parser.add_argument("--model-dir", default=None, help="default: the shipped models/mini")
    parser.add_argument("--aura-checkpoint", default=None, help="default: <model-dir>/aura")
    parser.add_argument("--max-seconds", type=float, default=None, help="time box")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--out", type=Path, default=None, help="JSON (rewritten per window)")


def run_soak(
    steps: int,
    window: int,
    env: str = "MiniGrid-MemoryS13-v0",
    arm: str = "aura",
    *,
    seed_offset: int = SOAK_SEED_OFFSET,
    max_steps: int = DEFAULT_MAX_STEPS,
    model_dir: str | None = None,
    aura_checkpoint: str | None = None,
    max_seconds: float | None = None,
    on_window: Callable[[SoakResult], None] | None = None,
    resume: SoakResult | None = None,
    command: str = "",
    progress: bool = True,
) -> SoakResult:
    from aura_mem_dev.agent import Agent, run_agent_episode
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.env import make_env

    check_eval_seed(seed_offset)
    if steps <= 0 or window <= 0 or max_steps <= 0:
        raise ValueError("steps, window and max_steps must be positive")
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; known: {sorted(ARMS)}")
    torch.set_num_threads(1)
    models = Models.resolve(model_dir, aura_checkpoint)
    envs = stream_envs(env)
    gyms = {e: make_env(e) for e in envs}
    backbone = MiniBackbone(models.model_dir)
    gate = ARMS[arm]
    runtime = None if gate is None else AuraRuntime(load_aura(models.aura), gate=gate)
    result = SoakResult(
        env=env,
        envs=envs,
        arm=arm,
        target_steps=steps,
        window_steps=window,
        seed_offset=seed_offset,
        max_steps=max_steps,
        model=models.describe(),
        command=command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    if resume is not None:
        result = _resumed(resume, result, runtime)
    agent = Agent(backbone, runtime)
    started = time.perf_counter()
    session_start = result.wall_seconds
    episode, done_steps = result.total_episodes, result.total_steps
    tally = {"steps": 0, "episodes": 0, "successes": 0, "writes": 0}
    window_start = time.perf_counter()
    while done_steps < steps:
        env_id = envs[episode % len(envs)]
        outcome = run_agent_episode(
            gyms[env_id], agent, seed_offset + episode, max_steps, reset_memory=False
        )
        episode += 1
        done_steps += outcome.steps
        tally["steps"] += outcome.steps
        tally["episodes"] += 1
        tally["successes"] += int(outcome.success)
        tally["writes"] += outcome.writes
        boundary = (len(result.windows) + 1) * window
        if done_steps < boundary and done_steps < steps:
            continue
        now = time.perf_counter()
        n, k = tally["episodes"], tally["successes"]
        result.windows.append(
            SoakWindow(
                index=len(result.windows),
                end_step=done_steps,
                steps=tally["steps"],
                episodes=n,
                successes=k,
                success=k / n,
                ci95=wilson_interval(k, n),
                writes=tally["writes"],
                writes_per_step=tally["writes"] / tally["steps"],
                state_bytes=0 if runtime is None else int(runtime.state_nbytes),
                rss_mb=round(rss_mb(), 1),
                seconds=round(now - window_start, 1),
            )
        )
        window_start = now
        tally = dict.fromkeys(tally, 0)
        result.total_steps, result.total_episodes = done_steps, episode
        result.resets = agent.resets + (resume.resets if resume is not None else 0)
        result.wall_seconds = round(session_start + now - started, 1)
        result.complete = done_steps >= steps
        result.state_b64 = (
            None if runtime is None else base64.b64encode(runtime.state_bytes()).decode()
        )
        if on_window is not None:
            on_window(result)  # saves it: a run stopped from outside resumes from here
        if progress:
            w = result.windows[-1]
            print(
                f"window {w.index}: steps {w.end_step}, success {w.success:.3f} "
                f"({w.successes}/{w.episodes}), writes/step {w.writes_per_step:.4f}, "
                f"state {w.state_bytes} B, RSS {w.rss_mb:.0f} MiB, {w.seconds:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if max_seconds is not None and now - started >= max_seconds and not result.complete:
            print(f"time box of {max_seconds:.0f} s reached: stopping", file=sys.stderr)
            break
    return result


def _resumed(previous: SoakResult, fresh: SoakResult, runtime: Any) -> SoakResult:
    """``fresh`` continued from ``previous`` (same run settings), memory restored."""
    same = ("env", "arm", "window_steps", "seed_offset", "max_steps", "model")
    differ = [k for k in same if getattr(previous, k) != getattr(fresh, k)]
    if differ:
        raise ValueError(f"cannot resume: the previous run differs in {differ}")
    if runtime is not None:
        if previous.state_b64 is None:
            raise ValueError("cannot resume: the previous run saved no memory state")
        runtime.load_state_bytes(base64.b64decode(previous.state_b64))
    return dataclasses.replace(
        previous, target_steps=fresh.target_steps, command=fresh.command, complete=False
    )


def _save(result: SoakResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.bench.cli import command_line

    resume = None
    if args.resume:
        if args.out is None or not args.out.is_file():
            print("--resume needs an existing --out file", file=sys.stderr)
            return 2
        resume = SoakResult.from_dict(json.loads(args.out.read_text()))
    result = run_soak(
        args.steps,
        args.window,
        args.env,
        args.arm,
        seed_offset=args.seed_offset,
        max_steps=args.max_steps,
        model_dir=args.model_dir,
        aura_checkpoint=args.aura_checkpoint,
        max_seconds=args.max_seconds,
        on_window=None if args.out is None else lambda r: _save(r, args.out),
        resume=resume,
        command=command_line("never-reset-soak"),
    )
    print(
        f"{result.total_steps} steps, {result.total_episodes} episodes, {result.resets} resets, "
        f"{len(result.windows)} windows, {result.wall_seconds:.0f} s"
        + ("" if result.complete else " (INCOMPLETE: resume with --resume)")
    )
    return 0
