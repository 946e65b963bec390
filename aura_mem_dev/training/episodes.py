"""MiniGrid episodes -> backbone features -> training sequences for the one trainer.

What is kept per step is exactly what a robot bag holds after the frozen backbone ran: the
features, the base action logits and the expert's ACTION label. The simulator's hidden state
(cue position, "cue seen" flags, an oracle write schedule) is NOT stored, so no training
code can use it by accident; evaluation reads it from the simulator directly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from aura_mem_dev.agent import Agent
from aura_mem_dev.training.rollout import EpisodeRecord, PolicyFn, collect
from aura_mem_ros.backbones.mini import MiniBackbone, tokenize
from aura_mem_ros.core.batch import SequenceBatch
from aura_mem_ros.sim.env import SimObs
from aura_mem_ros.sim.expert import expert_action

INSTRUCTION = "go to the matching object at the end of the hallway"


@dataclass
class Episode:
    """One episode as a bag holds it after the backbone: features, base logits, labels."""

    features: torch.Tensor  # (T, d_model)
    base: torch.Tensor  # (T, 1, n_actions)
    targets: torch.Tensor  # (T,) expert action ids
    env_id: str
    seed: int
    success: bool = False

    def __len__(self) -> int:
        return len(self.targets)


def featurize(backbone: MiniBackbone, records: Sequence[EpisodeRecord]) -> list[Episode]:
    net = backbone.net
    tokens = torch.tensor([tokenize(INSTRUCTION, net.cfg)])
    out = []
    with torch.no_grad():
        for rec in records:
            if not rec.images:
                continue
            images = torch.from_numpy(np.stack(rec.images))
            directions = torch.tensor(rec.directions)
            feats, logits = net(images, tokens.expand(len(images), -1), directions)
            out.append(
                Episode(
                    feats,
                    logits[:, None, :],
                    torch.tensor(rec.label_true),
                    rec.env_id,
                    rec.seed,
                    rec.success,
                )
            )
    return out


# -- who drives data collection (the labels are always the expert's) ------------------------
def expert_driver(noise: float, rng: random.Random) -> PolicyFn:
    """The expert drives; with probability ``noise`` a random move is executed instead (the
    label stays the expert's), as ``aura_mem_dev/simbag.py`` records bags."""

    def act(obs: SimObs, t: int, env: gym.Env, seen: bool) -> int:
        if noise > 0 and rng.random() < noise:
            return rng.choice((0, 1, 2))
        return expert_action(env, seen)

    return act


def agent_driver(agent: Agent, mix: float, rng: random.Random, reset: bool = True) -> PolicyFn:
    """The agent drives (memory reset per episode, or with ``reset`` False never: the
    episodes are one never-reset run); ``mix``: chance of executing the expert's action
    instead (early DAgger rounds reach the fork with the cue seen)."""

    def act(obs: SimObs, t: int, env: gym.Env, seen: bool) -> int:
        if t == 0 and reset:
            agent.reset()
        step = agent.act(obs)  # stepped on expert steps too: memory sees the same stream
        return expert_action(env, seen) if mix > 0 and rng.random() < mix else step.action

    return act


def collect_episodes(
    backbone: MiniBackbone,
    env_ids: Sequence[str],
    seeds: Sequence[int],
    policy: PolicyFn,
    max_steps: int = 100,
) -> list[Episode]:
    """One episode per seed (env ids cycled), featurized."""
    return featurize(backbone, collect(list(env_ids), list(seeds), policy, max_steps))


@dataclass
class EpisodeSource:
    """Training data: episodes, sampled as single episodes (memory reset per episode) or as
    streams of K consecutive episodes with the memory carried across (a robot that is never
    reset; K drawn from ``stream_len``). Expert and base-policy episodes do not depend on
    memory, so any concatenation of them is a valid stream.

    max_len: a single episode is cut here (an on-policy episode that loops repeats itself);
    max_stream_steps: a stream is cut here."""

    episodes: list[Episode] = field(default_factory=list)
    stream_len: tuple[int, int] = (1, 1)
    max_len: int = 30
    max_stream_steps: int = 160

    def add(self, episodes: Sequence[Episode]) -> None:
        self.episodes.extend(episodes)

    def __len__(self) -> int:
        return len(self.episodes)

    def _stream(self, gen: torch.Generator) -> list[Episode]:
        lo, hi = self.stream_len
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        picks = [int(torch.randint(len(self.episodes), (1,), generator=gen)) for _ in range(k)]
        return [self.episodes[i] for i in picks]

    def sample(self, batch_size: int, gen: torch.Generator) -> SequenceBatch:
        streams = [self._stream(gen) for _ in range(batch_size)]
        return to_batch(streams, self.max_len, self.max_stream_steps)


def to_batch(
    streams: Sequence[Sequence[Episode]], max_len: int = 30, max_stream_steps: int = 160
) -> SequenceBatch:
    """Concatenate each stream's episodes (memory carried), pad; mask marks real steps.
    ``writes`` stays None: a training batch carries no write schedule (no oracle)."""
    parts = []
    for eps in streams:
        cut = max_len if len(eps) == 1 else None
        parts.append(
            tuple(torch.cat([getattr(e, k)[:cut] for e in eps])[:max_stream_steps] for k in KEYS)
        )
    t_max = max(len(p[2]) for p in parts)
    n, d, n_act = len(parts), parts[0][0].shape[-1], parts[0][1].shape[-1]
    feats = torch.zeros(n, t_max, d)
    base = torch.zeros(n, t_max, 1, n_act)
    targets = torch.zeros(n, t_max, dtype=torch.long)
    mask = torch.zeros(n, t_max)
    for j, (f, b, t) in enumerate(parts):
        feats[j, : len(t)], base[j, : len(t)], targets[j, : len(t)] = f, b, t
        mask[j, : len(t)] = 1.0
    return SequenceBatch(feats, base, targets, mask)


KEYS = ("features", "base", "targets")


def fixed_batches(episodes: Sequence[Episode], batch_size: int = 64) -> list[SequenceBatch]:
    """Validation: every episode once, in fixed batches."""
    return [
        to_batch([[e] for e in episodes[i : i + batch_size]])
        for i in range(0, len(episodes), batch_size)
    ]
