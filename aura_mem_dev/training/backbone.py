"""Train the frozen ``mini`` policy: behaviour cloning + DAgger, no memory.

The backbone is trained with an auxiliary scene-description loss (which object class is in
each of the 7x7 view cells), standing in for a VLA's vision-language pretraining: a frozen
VLA's features describe the scene, not only the action it takes. Without it the features of
a memoryless policy have no reason to tell a key from a ball in the start room (that never
changes its own action), and no memory on top could recover the cue.

DAgger relabels the learner's own states with the goal-directed expert: a memoryless
learner cannot condition on whether the cue was seen, and the look-back expert would label
the same view both "turn back" and "go on", which teaches it to loop.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from aura_mem_dev.training.rollout import (
    NUM_SCENE_CLASSES,
    EpisodeRecord,
    PolicyFn,
    collect,
    expert_policy,
)
from aura_mem_ros.backbones.mini import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    MiniConfig,
    MiniPolicyNet,
    tokenize,
)
from aura_mem_ros.sim.env import SimObs


@dataclass(frozen=True)
class BackboneTrainConfig:
    env_ids: tuple[str, ...] = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")
    seed: int = 0
    demo_episodes: int = 1200
    dagger_rounds: int = 2
    dagger_episodes: int = 600
    dagger_beta: float = 0.3  # chance of executing the expert's action during DAgger rollouts
    epochs_first: int = 6
    epochs_round: int = 3
    batch_size: int = 256
    lr: float = 2e-3
    scene_weight: float = 0.5
    max_steps: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.dagger_beta <= 1.0:
            raise ValueError("dagger_beta must be in [0, 1]")
        if min(self.demo_episodes, self.batch_size, self.max_steps) <= 0:
            raise ValueError("episode, batch and step counts must be positive")


class Dataset:
    """Flat arrays of (image, heading, scene, label), grown by aggregation."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.dirs: list[int] = []
        self.scenes: list[np.ndarray] = []
        self.labels: list[int] = []

    def add(self, episodes: list[EpisodeRecord], label: str) -> None:
        for ep in episodes:
            self.images.extend(ep.images)
            self.dirs.extend(ep.directions)
            self.scenes.extend(ep.scenes)
            self.labels.extend(ep.label_true if label == "true" else ep.label_goal)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (
            torch.from_numpy(np.stack(self.images)),
            torch.tensor(self.dirs),
            torch.from_numpy(np.stack(self.scenes)).long(),
            torch.tensor(self.labels),
        )


def learner_policy(
    net: MiniPolicyNet, cfg: MiniConfig, beta: float, rng: random.Random
) -> PolicyFn:
    from aura_mem_ros.sim.expert import expert_action

    tokens_cache: dict[str, torch.Tensor] = {}

    def act(obs: SimObs, t: int, env: gym.Env, seen: bool) -> int:
        if rng.random() < beta:
            return expert_action(env, True)
        tok = tokens_cache.setdefault(
            obs.instruction, torch.tensor([tokenize(obs.instruction, cfg)])
        )
        with torch.no_grad():
            _, logits = net(torch.from_numpy(obs.image)[None], tok, torch.tensor([obs.direction]))
        return int(logits.argmax(-1))

    return act


def fit(
    net: MiniPolicyNet,
    scene_head: nn.Linear,
    data: Dataset,
    tcfg: BackboneTrainConfig,
    epochs: int,
    gen: torch.Generator,
    desc: str,
) -> float:
    images, dirs, scenes, labels = data.tensors()
    tokens = torch.tensor(
        [tokenize("go to the matching object at the end of the hallway", net.cfg)]
    )
    params = list(net.parameters()) + list(scene_head.parameters())
    opt = torch.optim.Adam(params, lr=tcfg.lr)
    n = len(labels)
    acc = 0.0
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch"):
        perm = torch.randperm(n, generator=gen)
        correct = 0
        for i in range(0, n, tcfg.batch_size):
            idx = perm[i : i + tcfg.batch_size]
            feats, logits = net(images[idx], tokens.expand(len(idx), -1), dirs[idx])
            scene_logits = scene_head(feats).view(len(idx), NUM_SCENE_CLASSES, 7, 7)
            loss = nn.functional.cross_entropy(
                logits, labels[idx]
            ) + tcfg.scene_weight * nn.functional.cross_entropy(scene_logits, scenes[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            correct += int((logits.argmax(-1) == labels[idx]).sum())
        acc = correct / n
        if epoch == epochs - 1:
            tqdm.write(f"{desc}: {n} samples, train action acc {acc:.3f}")
    return acc


def success_rate(episodes: list[EpisodeRecord]) -> float:
    return sum(e.success for e in episodes) / max(1, len(episodes))


def train_backbone(
    out_dir: Path, tcfg: BackboneTrainConfig | None = None, cfg: MiniConfig | None = None
) -> dict:
    tcfg = tcfg or BackboneTrainConfig()
    cfg = cfg or MiniConfig()
    torch.manual_seed(tcfg.seed)
    gen = torch.Generator().manual_seed(tcfg.seed)
    rng = random.Random(tcfg.seed)
    env_ids = list(tcfg.env_ids)
    net = MiniPolicyNet(cfg)
    scene_head = nn.Linear(cfg.d_model, NUM_SCENE_CLASSES * 49)
    data = Dataset()
    # Training seeds: [seed*100_000, ...) stays far below the evaluation base (1,000,000).
    next_seed = tcfg.seed * 100_000
    demos = collect(
        env_ids,
        list(range(next_seed, next_seed + tcfg.demo_episodes)),
        expert_policy("true"),
        tcfg.max_steps,
        record_scene=True,
    )
    next_seed += tcfg.demo_episodes
    data.add(demos, "true")
    fit(net, scene_head, data, tcfg, tcfg.epochs_first, gen, "mini BC")
    history = []
    for r in range(tcfg.dagger_rounds):
        net.eval()
        eps = collect(
            env_ids,
            list(range(next_seed, next_seed + tcfg.dagger_episodes)),
            learner_policy(net, cfg, tcfg.dagger_beta, rng),
            tcfg.max_steps,
            record_scene=True,
        )
        next_seed += tcfg.dagger_episodes
        history.append(
            {
                "round": r,
                "rollout_success": success_rate(eps),
                "rollout_steps": float(np.mean([len(e) for e in eps])),
            }
        )
        tqdm.write(f"DAgger round {r}: rollout success {history[-1]['rollout_success']:.3f}")
        data.add(eps, "goal")
        net.train()
        fit(net, scene_head, data, tcfg, tcfg.epochs_round, gen, f"mini DAgger {r}")
    net.eval()
    save_backbone(
        net, cfg, out_dir, {"train": tcfg.__dict__ | {"env_ids": env_ids}, "dagger": history}
    )
    return {"dagger": history, "samples": len(data.labels)}


def save_backbone(net: MiniPolicyNet, cfg: MiniConfig, out_dir: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(
        json.dumps({"backbone": cfg.to_dict(), "meta": meta}, indent=2, default=str) + "\n"
    )
