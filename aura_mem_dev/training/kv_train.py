"""Train the ``always_kv`` arm with core's trainer on the same closed-loop data as AURA.

It starts from the sequences AURA's DAgger aggregated (expert demonstrations + gated
rollouts, oracle-relabelled), then runs its own DAgger rounds: roll out the KV policy,
relabel, aggregate, retrain, so it is also trained on the states it visits itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from tqdm import tqdm

from aura_mem_dev.agent import Agent
from aura_mem_dev.training.rollout import collect
from aura_mem_dev.training.sequences import SeqData
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.core.kv import KVConfig, KVMemory, KVRuntime
from aura_mem_ros.core.train import SequenceBatch, TrainConfig, train_aura


@dataclass(frozen=True)
class KVTrainConfig:
    seed: int = 2
    iterations: int = 400
    rounds: int = 2
    episodes_per_round: int = 200
    batch_size: int = 64
    max_steps: int = 100

    def __post_init__(self) -> None:
        if self.iterations <= 0 or self.batch_size <= 0:
            raise ValueError("iterations and batch_size must be positive")


def _fit(model: KVMemory, data: SeqData, cfg: KVTrainConfig, seed: int, desc: str) -> float:
    gen = torch.Generator().manual_seed(seed)

    def batches(_: int) -> SequenceBatch:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen).tolist()
        feats, base, targets, mask = data.batch(idx)
        return SequenceBatch(feats, base, targets, mask)

    result = train_aura(
        model,
        batches,
        TrainConfig(iterations=cfg.iterations, seed=seed, progress=True, desc=desc),
        gate="always",
    )
    return result.history[-1]["loss"]


def train_kv(
    backbone: MiniBackbone, data: SeqData, env_ids: list[str], cfg: KVTrainConfig | None = None
) -> tuple[KVMemory, dict]:
    from aura_mem_dev.training.aura_dagger import gated_policy

    cfg = cfg or KVTrainConfig()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = KVMemory(KVConfig(d_model=backbone.d_model, action_dim=backbone.action_dim))
    history = []
    next_seed = 800_000 + cfg.seed * 10_000
    for r in range(cfg.rounds + 1):
        loss = _fit(model, data, cfg, cfg.seed + r, f"KV round {r}")
        if r == cfg.rounds:
            history.append({"round": r, "loss": loss})
            break
        seeds = list(range(next_seed, next_seed + cfg.episodes_per_round))
        next_seed += cfg.episodes_per_round
        eps = collect(
            env_ids, seeds, gated_policy(Agent(backbone, KVRuntime(model)), 0.0, rng), cfg.max_steps
        )
        data.add(backbone.net, eps)
        history.append(
            {"round": r, "loss": loss, "rollout_success": sum(e.success for e in eps) / len(eps)}
        )
        tqdm.write(f"KV round {r}: {history[-1]}")
    return model.eval(), {"history": history}
