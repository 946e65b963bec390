"""In-process closed loop on MiniGrid: the same backbone + runtime calls the ROS node makes,
without DDS, for the closed-loop benchmark and the training recipes.

An agent maps a ``SimObs`` to an action exactly as the ``aura_mem`` node does: build a
``backbones.Observation`` (image, instruction, proprio = [heading_rad]), run the frozen
backbone, pass features and logits through the memory runtime, take the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from aura_mem_ros.backbones.base import Backbone, Observation
from aura_mem_ros.core.runtime import MemoryRuntime
from aura_mem_ros.sim.env import SimObs, cue_visible, to_sim_obs


@dataclass(frozen=True)
class AgentStep:
    action: int
    wrote: bool
    features: np.ndarray
    base_logits: np.ndarray  # (1, n_actions)


def sim_to_observation(obs: SimObs) -> Observation:
    return Observation(
        images=(obs.image,),
        instruction=obs.instruction,
        proprio=np.array([obs.heading_rad], dtype=np.float32),
    )


class Agent:
    """Backbone alone (runtime None) or backbone + a memory runtime. ``resets`` counts
    ``reset()`` calls (a never-resetting run must show 0)."""

    def __init__(self, backbone: Backbone, runtime: MemoryRuntime | None = None) -> None:
        self.backbone = backbone
        self.runtime = runtime
        self.resets = 0

    def reset(self) -> None:
        """What the node does on a memory reset: the runtime AND the backbone forget."""
        self.resets += 1
        self.backbone.reset()
        if self.runtime is not None:
            self.runtime.reset()

    def act(self, obs: SimObs) -> AgentStep:
        out = self.backbone.step(sim_to_observation(obs))
        if self.runtime is None:
            return AgentStep(int(np.argmax(out.action)), False, out.features, out.action)
        step = self.runtime.select_action(out.features, out.action)
        return AgentStep(int(np.argmax(step.action)), bool(step.wrote), out.features, out.action)


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    steps: int
    episode_return: float
    writes: int
    write_steps: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    cue_first_seen: int | None = None


def run_agent_episode(
    env: gym.Env, agent: Agent, seed: int, max_steps: int, reset_memory: bool = True
) -> EpisodeOutcome:
    """One episode from ``env.reset(seed)``. ``reset_memory=False``: the agent is NOT reset
    (memory, KV cache and backbone carry over from the previous episode, as on a robot that
    never resets; the episode boundary exists only in the simulator)."""
    obs_dict, _ = env.reset(seed=seed)
    if reset_memory:
        agent.reset()
    out = EpisodeOutcome(seed=seed, success=False, steps=0, episode_return=0.0, writes=0)
    if cue_visible(env):
        out.cue_first_seen = 0
    for t in range(max_steps):
        step = agent.act(to_sim_obs(obs_dict))
        out.actions.append(step.action)
        if step.wrote:
            out.writes += 1
            out.write_steps.append(t)
        obs_dict, reward, terminated, truncated, _ = env.step(step.action)
        out.steps = t + 1
        out.episode_return += float(reward)
        if out.cue_first_seen is None and cue_visible(env):
            out.cue_first_seen = t + 1
        if terminated or truncated:
            out.success = reward > 0
            break
    return out
