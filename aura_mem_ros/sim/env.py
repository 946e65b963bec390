"""MiniGrid-Memory as the project's CPU stand-in for a robot camera.

The agent sees a 56x56 RGB egocentric view (7x7 tiles of 8 px), the mission string and its
heading; the full state (cue, goal cells) is only read by the expert and the evaluators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

try:  # the simulator is for trying the node without a robot: a robot install may lack it
    import gymnasium as gym
    import minigrid  # noqa: F401 - registers the MiniGrid-* ids with gymnasium
    from minigrid.wrappers import RGBImgPartialObsWrapper
except ImportError as exc:
    raise ImportError(
        f"the MiniGrid simulator (minigrid_sim, the demo) needs minigrid and gymnasium, "
        f"which requirements-robot.txt leaves out ({exc}): "
        f"pip install minigrid==3.2.0 gymnasium==1.4.0"
    ) from exc

TILE_SIZE = 8
VIEW_PIXELS = 7 * TILE_SIZE  # 56
NUM_ACTIONS = 7
# MiniGrid's own action ids; only these three move the agent in the Memory envs.
LEFT, RIGHT, FORWARD = 0, 1, 2


@dataclass(frozen=True)
class SimObs:
    """What the robot-side gets: RGB view, instruction, heading (MiniGrid dir 0..3, 0 = east)."""

    image: np.ndarray  # uint8 (56, 56, 3)
    instruction: str
    direction: int

    @property
    def heading_rad(self) -> float:
        # MiniGrid's y axis points down, so dir 1 (south) is +pi/2: a clockwise heading.
        return self.direction * math.pi / 2.0


def heading_to_direction(heading_rad: float) -> int:
    """Inverse of ``SimObs.heading_rad`` (robust to wrap-around and small float noise)."""
    return round(heading_rad / (math.pi / 2.0)) % 4


def is_memory_env(env_id: str) -> bool:
    return env_id.startswith("MiniGrid-Memory")


def make_env(env_id: str = "MiniGrid-MemoryS13-v0") -> gym.Env:
    """The wrapped env: ``reset(seed=...)`` / ``step(a)`` return dict obs with a 56x56 image."""
    if not is_memory_env(env_id):
        raise ValueError(f"only MiniGrid-Memory envs are supported, got {env_id!r}")
    return RGBImgPartialObsWrapper(gym.make(env_id), tile_size=TILE_SIZE)


def to_sim_obs(obs: dict) -> SimObs:
    image = np.ascontiguousarray(obs["image"], dtype=np.uint8)
    if image.shape != (VIEW_PIXELS, VIEW_PIXELS, 3):
        raise ValueError(f"unexpected view shape {image.shape}")
    return SimObs(image=image, instruction=str(obs["mission"]), direction=int(obs["direction"]))


def cue_pos(env: gym.Env) -> tuple[int, int]:
    """The start-room cue cell (``minigrid/envs/memory.py`` puts it at (1, H//2 - 1))."""
    return 1, env.unwrapped.height // 2 - 1


def cue_visible(env: gym.Env) -> bool:
    """Is the cue inside the agent's current (occlusion-aware) 7x7 view?"""
    base = env.unwrapped
    rel = base.relative_coords(*cue_pos(env))
    if rel is None:
        return False
    _, vis_mask = base.gen_obs_grid()
    return bool(vis_mask[rel[0], rel[1]])


def cue_is_key(env: gym.Env) -> bool:
    obj = env.unwrapped.grid.get(*cue_pos(env))
    return obj is not None and obj.type == "key"
