"""The full-state oracle: BFS over (x, y, dir), first to a pose that shows the cue, then home.

It reads the simulator's ground truth (cue cell, ``success_pos``), which is exactly what a
robot policy does not have; it exists to label states for behaviour cloning and DAgger.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np

from aura_mem_ros.sim.env import FORWARD, LEFT, RIGHT, cue_pos

# (dx, dy) for MiniGrid directions 0..3 (east, south, west, north).
_DIR_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
# Tie-break order: prefer moving, then turning left, so labels are deterministic.
_ACTION_ORDER = (FORWARD, LEFT, RIGHT)

Pose = tuple[int, int, int]

# Poses that show the cue depend only on the walls and the cue cell (keys/balls do not
# occlude), so they are cached per layout instead of recomputed on every reset.
_VISIBLE_CACHE: dict[bytes, frozenset[Pose]] = {}


def _passable(env: gym.Env, x: int, y: int) -> bool:
    cell = env.unwrapped.grid.get(x, y)
    return cell is None or cell.can_overlap()


def _next_pose(pose: Pose, action: int) -> Pose:
    x, y, d = pose
    if action == LEFT:
        return x, y, (d - 1) % 4
    if action == RIGHT:
        return x, y, (d + 1) % 4
    dx, dy = _DIR_VEC[d]
    return x + dx, y + dy, d


def _layout_key(env: gym.Env) -> bytes:
    base = env.unwrapped
    walls = base.grid.encode()[:, :, 0] == 2  # OBJECT_TO_IDX["wall"]
    return np.packbits(walls).tobytes() + bytes(cue_pos(env)) + bytes((base.width, base.height))


def cue_visible_poses(env: gym.Env) -> frozenset[Pose]:
    """All free poses from which the cue is in the occlusion-aware view."""
    key = _layout_key(env)
    cached = _VISIBLE_CACHE.get(key)
    if cached is not None:
        return cached
    base = env.unwrapped
    saved_pos, saved_dir = tuple(base.agent_pos), base.agent_dir
    cx, cy = cue_pos(env)
    poses: set[Pose] = set()
    try:
        for x in range(base.width):
            for y in range(base.height):
                if not _passable(env, x, y):
                    continue
                for d in range(4):
                    base.agent_pos, base.agent_dir = np.array((x, y)), d
                    rel = base.relative_coords(cx, cy)
                    if rel is None:
                        continue
                    _, vis = base.gen_obs_grid()
                    if vis[rel[0], rel[1]]:
                        poses.add((x, y, d))
    finally:
        base.agent_pos, base.agent_dir = np.array(saved_pos), saved_dir
    result = frozenset(poses)
    _VISIBLE_CACHE[key] = result
    return result


def _bfs_first_action(
    env: gym.Env, start: Pose, goal: set[Pose] | frozenset[Pose], forbidden: set[tuple[int, int]]
) -> int | None:
    if start in goal:
        return None
    first: dict[Pose, int] = {}
    seen = {start}
    queue: deque[Pose] = deque([start])
    while queue:
        pose = queue.popleft()
        for action in _ACTION_ORDER:
            nxt = _next_pose(pose, action)
            if nxt in seen:
                continue
            if action == FORWARD and (
                not _passable(env, nxt[0], nxt[1]) or (nxt[0], nxt[1]) in forbidden
            ):
                continue
            seen.add(nxt)
            first[nxt] = first.get(pose, action)
            if nxt in goal:
                return first[nxt]
            queue.append(nxt)
    return None


def expert_action(env: gym.Env, cue_seen: bool) -> int:
    """The oracle's next action given the full state and whether the cue was already seen."""
    base = env.unwrapped
    pose: Pose = (int(base.agent_pos[0]), int(base.agent_pos[1]), int(base.agent_dir))
    success = tuple(int(v) for v in base.success_pos)
    failure = tuple(int(v) for v in base.failure_pos)
    if not cue_seen:
        # Stepping on either goal cell ends the episode, so the look-back path avoids both.
        action = _bfs_first_action(env, pose, cue_visible_poses(env), {success, failure})
        if action is not None:
            return action
    goal = {(success[0], success[1], d) for d in range(4)}
    action = _bfs_first_action(env, pose, goal, {failure})
    # Unreachable only if already on the goal (episode over): any action is then moot.
    return FORWARD if action is None else action
