"""The chunked closed loop, in-process: one frame per chunk, the chunk executed open loop.

This is exactly what the ``arm_sim`` bridge and the ``aura_mem`` node do over topics
(render, proprio, backbone + memory -> an 8 x 7 chunk, execute its first ``execute_steps``
actions, repeat) without DDS, for benchmarks and training rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from aura_mem_ros.backbones.base import Backbone, Observation
from aura_mem_ros.sim.arm.env import ArmEnv, ArmObs

CHUNK_SIZE = 8  # OpenVLA-OFT's LIBERO chunk


@dataclass(frozen=True)
class ChunkStep:
    chunk: np.ndarray  # float32 (chunk_size, 7)
    wrote: bool
    features: np.ndarray
    base_chunk: np.ndarray


class MemoryRuntime(Protocol):
    """What AuraRuntime (and the KV-cache baseline) offer to a closed loop."""

    def reset(self) -> None: ...

    def select_action(self, features: np.ndarray, base_action: np.ndarray): ...


def to_observation(obs: ArmObs) -> Observation:
    if obs.image is None:
        raise ValueError("a chunk request needs a rendered frame")
    return Observation(images=(obs.image,), instruction=obs.instruction, proprio=obs.proprio)


class ChunkAgent:
    """Backbone alone (runtime None) or backbone + a memory runtime, one call per chunk."""

    def __init__(self, backbone: Backbone, runtime: MemoryRuntime | None = None) -> None:
        self.backbone = backbone
        self.runtime = runtime

    def reset(self) -> None:
        self.backbone.reset()
        if self.runtime is not None:
            self.runtime.reset()

    def act(self, obs: ArmObs) -> ChunkStep:
        out = self.backbone.step(to_observation(obs))
        if self.runtime is None:
            return ChunkStep(out.action, False, out.features, out.action)
        step = self.runtime.select_action(out.features, out.action)
        chunk = np.asarray(step.action, dtype=np.float32).reshape(out.action.shape)
        return ChunkStep(chunk, bool(step.wrote), out.features, out.action)


@dataclass
class ArmEpisode:
    seed: int
    cue_pad: int
    placed_pad: int | None
    steps: int
    chunks: int = 0
    writes: int = 0
    write_chunks: list[int] = field(default_factory=list)  # chunk indices that wrote
    write_steps: list[int] = field(default_factory=list)  # control step of each such chunk
    cue_chunks: list[int] = field(default_factory=list)  # chunks whose frame showed the cue
    flicker_chunks: list[int] = field(default_factory=list)  # ... a distractor flicker
    frames: list[np.ndarray] = field(default_factory=list)  # only with keep_frames

    @property
    def completed(self) -> bool:
        """The manipulation finished: the block was put on some pad and released."""
        return self.placed_pad is not None

    @property
    def success(self) -> bool:
        """... on the pad the cue lit."""
        return self.placed_pad == self.cue_pad


def run_episode(
    env: ArmEnv,
    agent: ChunkAgent,
    seed: int,
    execute_steps: int = CHUNK_SIZE,
    keep_frames: bool = False,
    reset_agent: bool = True,
) -> ArmEpisode:
    """One episode; ``reset_agent=False`` keeps the memory across episodes (never-reset runs)."""
    if execute_steps < 1:
        raise ValueError("execute_steps must be >= 1")
    obs = env.reset(seed)
    if reset_agent:
        agent.reset()
    ep = ArmEpisode(seed=seed, cue_pad=env.state.cue_pad, placed_pad=None, steps=0)
    while not env.state.done:
        if env.cue_visible():
            ep.cue_chunks.append(ep.chunks)
        if env.flicker_visible():
            ep.flicker_chunks.append(ep.chunks)
        if keep_frames:
            ep.frames.append(obs.image)
        step = agent.act(obs)
        if step.wrote:
            ep.writes += 1
            ep.write_chunks.append(ep.chunks)
            ep.write_steps.append(env.state.t)
        ep.chunks += 1
        for action in step.chunk[: min(execute_steps, len(step.chunk))]:
            env.step(action)
            if env.state.done:
                break
        obs = env.observe(render=not env.state.done)
    ep.steps = env.state.t
    ep.placed_pad = env.state.placed_pad
    return ep
