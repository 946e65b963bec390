"""``aura-mem-bench spawn-recurrence``: why a one-write gate cannot run MiniGrid-Memory never-reset.

In MiniGrid-Memory the agent spawns facing the corridor with the cue behind it; the expert
turns to look at the cue, turns back and leaves. Turning back puts it in the SPAWN pose again,
so the camera frame (and the heading) it saw at spawn recurs after the cue was seen. A policy
must look back at the first of these two identical frames and walk on at the second; only
memory can tell them apart. With a reset before every episode, "memory empty" says "look
back". Never reset, the memory at a new spawn still holds the previous episode's cue write:
the state it holds after this episode's look-back when the cue is the same object, and a cue
write as the newest entry either way (nothing in it says which episode wrote it). Unless
something is written AFTER the cue in every episode (e.g. at the fork: two writes per
episode), the two frames map to the same memory state and the same action. The
never-reset panel shows the consequence (docs/results/never_reset.md: the cue is seen in
1.00 of episodes with resets, 0.09 without).

This script counts, with the simulator's expert driving (it reads the simulator's state: an
analysis, not a policy), the episodes in which the spawn frame recurs pixel-identical (same
pose and heading) after the cue came into view. -> docs/results/spawn_recurrence.json + .md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ENVS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0", "MiniGrid-MemoryS17Random-v0")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed-offset", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=Path("docs/results/spawn_recurrence.json"))


def count_recurrences(env_id: str, episodes: int, seed_offset: int) -> dict[str, float]:
    """Expert-driven episodes: how often the spawn frame and pose come back after the cue."""
    from aura_mem_ros.sim.env import cue_visible, make_env, to_sim_obs
    from aura_mem_ros.sim.expert import expert_action

    env = make_env(env_id)
    frame_again = pose_again = 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed_offset + ep)
        spawn_frame = np.asarray(to_sim_obs(obs).image).copy()
        base = env.unwrapped
        spawn_pose = (*map(int, base.agent_pos), int(base.agent_dir))
        seen = frame_hit = pose_hit = False
        for _ in range(100):
            seen = seen or cue_visible(env)
            obs, _, terminated, truncated, _ = env.step(expert_action(env, seen))
            if seen:
                frame_hit |= np.array_equal(np.asarray(to_sim_obs(obs).image), spawn_frame)
                pose_hit |= (*map(int, base.agent_pos), int(base.agent_dir)) == spawn_pose
            if terminated or truncated:
                break
        frame_again += frame_hit
        pose_again += pose_hit
    return {
        "env": env_id,
        "episodes": episodes,
        "spawn_frame_recurs_after_cue": frame_again / episodes,
        "spawn_pose_recurs_after_cue": pose_again / episodes,
    }


def render(result: dict) -> str:
    lines = [
        "# Spawn-frame recurrence (issue 12: why one write per episode cannot work never-reset)",
        "",
        f"Command: `{result['command']}`. Expert-driven episodes (the simulator's state drives "
        "the expert: an analysis, not a policy), seeds from "
        f"{result['seed_offset']}. Share of episodes in which the camera frame of the spawn "
        "(pixel-identical) and the spawn pose come back AFTER the cue was in view:",
        "",
        "| env | episodes | spawn frame recurs | spawn pose recurs |",
        "|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['env']} | {r['episodes']} | {r['spawn_frame_recurs_after_cue']:.2f} | "
            f"{r['spawn_pose_recurs_after_cue']:.2f} |"
        )
    lines += ["", (__doc__ or "").split("\n\n")[1].replace("\n", " "), ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.bench.cli import command_line

    rows = [count_recurrences(e, args.episodes, args.seed_offset) for e in ENVS]
    result = {"command": command_line("spawn-recurrence"), "seed_offset": args.seed_offset}
    result["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    for r in rows:
        print(json.dumps(r))
    return 0
