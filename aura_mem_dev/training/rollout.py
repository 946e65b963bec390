"""Roll out any policy on MiniGrid-Memory and record what training needs at every step.

Each step stores the agent's inputs (RGB view, heading), a symbolic scene label (for the
backbone's auxiliary perception loss) and two expert labels: ``label_true`` (the full oracle,
which looks back for the cue until it has been seen) and ``label_goal`` (the oracle that
heads straight for the goal, i.e. the best a memoryless learner can imitate without label
contradictions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from aura_mem_ros.sim.env import SimObs, cue_visible, make_env, to_sim_obs
from aura_mem_ros.sim.expert import expert_action

# Symbolic object id -> scene class (unseen, empty, wall, key, ball); the rest count as empty.
_SCENE_CLASSES = np.zeros(16, dtype=np.uint8)
_SCENE_CLASSES[[1, 2, 5, 6]] = [1, 2, 3, 4]
NUM_SCENE_CLASSES = 5

# policy(obs, t, env, cue_seen) -> action; env/cue_seen are only used by expert mixtures.
PolicyFn = Callable[[SimObs, int, gym.Env, bool], int]


@dataclass
class EpisodeRecord:
    seed: int
    env_id: str
    images: list[np.ndarray] = field(default_factory=list)
    directions: list[int] = field(default_factory=list)
    scenes: list[np.ndarray] = field(default_factory=list)
    label_true: list[int] = field(default_factory=list)
    label_goal: list[int] = field(default_factory=list)
    cue_seen: list[bool] = field(default_factory=list)  # seen up to and including this view
    actions: list[int] = field(default_factory=list)
    success: bool = False
    cue_first_seen: int | None = None

    def __len__(self) -> int:
        return len(self.actions)


def scene_label(env: gym.Env) -> np.ndarray:
    """7x7 scene classes of the agent's current view (occluded cells are 'unseen')."""
    grid, vis = env.unwrapped.gen_obs_grid()
    sym = grid.encode(vis)[:, :, 0]
    return _SCENE_CLASSES[np.clip(sym, 0, 15)].T.copy()  # (row=y, col=x) like the image


def run_episode(
    env: gym.Env,
    env_id: str,
    seed: int,
    policy: PolicyFn,
    max_steps: int,
    record_scene: bool = False,
) -> EpisodeRecord:
    obs_dict, _ = env.reset(seed=seed)
    rec = EpisodeRecord(seed=seed, env_id=env_id)
    seen = cue_visible(env)
    if seen:
        rec.cue_first_seen = 0
    for t in range(max_steps):
        obs = to_sim_obs(obs_dict)
        rec.images.append(obs.image)
        rec.directions.append(obs.direction)
        if record_scene:
            rec.scenes.append(scene_label(env))
        rec.label_true.append(expert_action(env, seen))
        rec.label_goal.append(expert_action(env, True))
        rec.cue_seen.append(seen)
        action = int(policy(obs, t, env, seen))
        rec.actions.append(action)
        obs_dict, reward, terminated, truncated, _ = env.step(action)
        if not seen and cue_visible(env):
            seen = True
            rec.cue_first_seen = t + 1
        if terminated or truncated:
            rec.success = reward > 0
            break
    return rec


def expert_policy(which: str = "true") -> PolicyFn:
    def act(obs: SimObs, t: int, env: gym.Env, seen: bool) -> int:
        return expert_action(env, seen if which == "true" else True)

    return act


def collect(
    env_ids: list[str],
    seeds: list[int],
    policy: PolicyFn,
    max_steps: int,
    record_scene: bool = False,
) -> list[EpisodeRecord]:
    envs = {e: make_env(e) for e in env_ids}
    out = []
    for i, seed in enumerate(seeds):
        env_id = env_ids[i % len(env_ids)]
        out.append(run_episode(envs[env_id], env_id, seed, policy, max_steps, record_scene))
    return out
