"""Closed-loop DAgger for the AURA layer on top of the frozen ``mini`` policy.

Round 0 aggregates expert demonstrations (they show the look-back for the cue) and rollouts
of the frozen policy. Every later round rolls out the *gated* policy itself (memory, gate and
residual as at inference), relabels every visited state with the full oracle (which knows
whether the cue has been seen), aggregates and retrains on whole sequences: the action error
is measured on the states the gated policy visits, and the gate learns through time.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from aura_mem_dev.agent import Agent
from aura_mem_dev.training.memory_fit import FitConfig, fit_memory
from aura_mem_dev.training.rollout import EpisodeRecord, PolicyFn, collect, expert_policy
from aura_mem_dev.training.sequences import SeqData
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.checkpoint import init_aura, save_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import AuraRuntime
from aura_mem_ros.core.train import SequenceBatch, TrainConfig
from aura_mem_ros.core.train import train_aura as core_train
from aura_mem_ros.sim.env import SimObs
from aura_mem_ros.sim.expert import expert_action


@dataclass(frozen=True)
class AuraTrainConfig:
    env_ids: tuple[str, ...] = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")
    seed: int = 1
    demo_episodes: int = 400
    base_episodes: int = 200
    rounds: int = 4
    episodes_per_round: int = 300
    # Chance of executing the oracle's action in DAgger round r (then 0): early rounds reach
    # the fork with the cue seen even before the gate has learned to store it.
    expert_mix: tuple[float, ...] = (0.3, 0.1)
    max_steps: int = 100
    target_write_rate: float = 0.1
    # Head warm-up (core.train with the oracle schedule): the residual head and memory
    # projections first learn to decode a cue written at the first cue view; only then can
    # a write there show a measurable benefit for the gate to learn from.
    warmup_iterations: int = 300
    warmup_batch: int = 64
    # After the warm-up the gate starts closed: writes are added where they pay, instead
    # of dense writes being removed (dense writes overwrite the cue and retrain the head).
    gate_start_bias: float = -2.0
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.demo_episodes <= 0 or self.max_steps <= 0:
            raise ValueError("rounds >= 0, demo_episodes > 0 and max_steps > 0 required")
        if not 0.0 < self.target_write_rate <= 1.0:
            raise ValueError("target_write_rate must lie in (0, 1]")


def gated_policy(agent: Agent, mix: float, rng: random.Random) -> PolicyFn:
    """Act with the gated policy; with probability ``mix`` execute the oracle instead.

    The runtime is still stepped on oracle steps so the memory sees the same stream.
    """

    def act(obs: SimObs, t: int, env: gym.Env, seen: bool) -> int:
        if t == 0:  # run_episode restarts t at every reset
            agent.reset()
        step = agent.act(obs)
        return expert_action(env, seen) if rng.random() < mix else step.action

    return act


def evaluate(agent: Agent, env_ids: list[str], seeds: list[int], max_steps: int) -> dict:
    from aura_mem_dev.agent import run_agent_episode
    from aura_mem_ros.sim.env import make_env

    envs = {e: make_env(e) for e in env_ids}
    outs = [
        run_agent_episode(envs[env_ids[i % len(env_ids)]], agent, s, max_steps)
        for i, s in enumerate(seeds)
    ]
    steps = sum(o.steps for o in outs)
    return {
        "success": float(np.mean([o.success for o in outs])),
        "writes_per_step": sum(o.writes for o in outs) / max(1, steps),
        "steps_per_episode": steps / len(outs),
    }


def train_aura(
    model_dir: Path,
    tcfg: AuraTrainConfig | None = None,
) -> tuple[AuraLayer, dict, SeqData]:
    """-> trained layer, training record, the aggregated sequences (reused by the KV arm)."""
    tcfg = tcfg or AuraTrainConfig()
    torch.manual_seed(tcfg.seed)
    rng = random.Random(tcfg.seed)
    backbone = MiniBackbone(model_dir)
    net = backbone.net
    env_ids = list(tcfg.env_ids)
    config = AuraConfig.for_backbone(backbone, target_write_rate=tcfg.target_write_rate)
    layer = init_aura(config, seed=tcfg.seed)
    data = SeqData.empty()
    # AURA training seeds start above the backbone's, still below the evaluation base.
    next_seed = 500_000 + tcfg.seed * 100_000

    def seeds(n: int) -> list[int]:
        nonlocal next_seed
        out = list(range(next_seed, next_seed + n))
        next_seed += n
        return out

    t0 = time.time()
    data.add(
        net, collect(env_ids, seeds(tcfg.demo_episodes), expert_policy("true"), tcfg.max_steps)
    )
    data.add(
        net,
        collect(
            env_ids,
            seeds(tcfg.base_episodes),
            gated_policy(Agent(backbone), 0.0, rng),
            tcfg.max_steps,
        ),
    )
    _warm_up_head(layer, data, tcfg)
    history: list[dict] = []
    lam = 0.0
    for r in range(tcfg.rounds + 1):
        lam, fit_stats = fit_memory(
            layer,
            data,
            tcfg.fit,
            tcfg.target_write_rate,
            lam,
            seed=tcfg.seed + r,
            desc=f"AURA round {r}",
        )
        if r == tcfg.rounds:
            history.append({"round": r, **fit_stats})
            break
        mix = tcfg.expert_mix[r] if r < len(tcfg.expert_mix) else 0.0
        agent = Agent(backbone, AuraRuntime(layer, gate="learned"))
        eps: list[EpisodeRecord] = collect(
            env_ids, seeds(tcfg.episodes_per_round), gated_policy(agent, mix, rng), tcfg.max_steps
        )
        data.add(net, eps)
        roll = {
            "rollout_success": float(np.mean([e.success for e in eps])),
            "rollout_steps": float(np.mean([len(e) for e in eps])),
            "expert_mix": mix,
        }
        history.append({"round": r, **fit_stats, **roll})
        tqdm.write(f"round {r}: {json.dumps(history[-1])}")
    layer.eval()
    return (
        layer,
        {
            "history": history,
            "sequences": len(data),
            "train_seconds": time.time() - t0,
            "config": asdict(tcfg),
        },
        data,
    )


def _warm_up_head(layer: AuraLayer, data: SeqData, tcfg: AuraTrainConfig) -> None:
    gen = torch.Generator().manual_seed(tcfg.seed)

    def batches(_: int) -> SequenceBatch:
        idx = torch.randint(len(data), (tcfg.warmup_batch,), generator=gen).tolist()
        feats, base, targets, mask = data.batch(idx)
        return SequenceBatch(feats, base, targets, mask, data.oracle_writes(idx, mask.shape[1]))

    core_train(
        layer,
        batches,
        TrainConfig(
            iterations=tcfg.warmup_iterations,
            seed=tcfg.seed,
            progress=True,
            desc="AURA head warm-up",
        ),
        gate="oracle",
    )
    with torch.no_grad():
        layer.gate_out.bias.fill_(tcfg.gate_start_bias)


def save_trained(layer: AuraLayer, out_dir: Path, meta: dict) -> None:
    save_aura(layer, out_dir)
    (out_dir / "train_meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
