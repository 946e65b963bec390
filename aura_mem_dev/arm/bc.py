"""Behaviour cloning of the frozen ``arm_mini`` backbone (no memory): L1 on 8 x 7 chunks.

Data (expert action labels only; the simulator's state is never an input or a target):

- demonstrations of the memory task (``flash``: the cue goes dark) and of its memoryless
  variant (``persistent``: the target pad stays lit), half each, with action noise on the
  executed chunks so the data shows recoveries. The persistent half stands in for a VLA's
  pre-training: the backbone learns that "the lit pad" is the target, so its features say
  which pad is lit whenever one is, including at the cue; it cannot remember it.
- DAgger rounds on both variants: the learner's own states, relabelled by the expert.
  On the memory task the expert's label points to a pad the learner cannot know; the L1
  median of the three labels is the middle route (see ``sim/arm/expert.py``: every route
  leaves the staging point downwards, so the median descends instead of hovering, and off
  the middle route two of three labels lead back to it). The memoryless policy so learns to
  complete the task on the middle pad: it hits the cued pad by chance (1/3).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aura_mem_dev.arm.data import ArmRecord, Driver, collect, expert_driver
from aura_mem_ros.backbones.arm_mini import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ArmMiniConfig,
    ArmPolicyNet,
)
from aura_mem_ros.backbones.mini import tokenize
from aura_mem_ros.sim.arm.env import INSTRUCTION, ArmObs, ArmTaskConfig


@dataclass(frozen=True)
class BCConfig:
    seed: int = 0
    image_size: int = 64
    demo_episodes: int = 500  # half flash, half persistent
    noise: float = 0.3  # std of the executed xyz action noise in demonstrations
    dagger_rounds: int = 3
    dagger_episodes: int = 150  # per round, half each variant
    dagger_beta: float = 0.3  # chance a DAgger chunk is the expert's
    epochs_first: int = 16
    epochs_round: int = 3
    batch_size: int = 128
    lr: float = 1e-3
    shift_pixels: int = 3  # random-shift augmentation
    eval_episodes: int = 30

    def __post_init__(self) -> None:
        if min(self.demo_episodes, self.batch_size, self.epochs_first) <= 0:
            raise ValueError("demo_episodes, batch_size and epochs_first must be positive")
        if not 0.0 <= self.dagger_beta <= 1.0:
            raise ValueError("dagger_beta must lie in [0, 1]")


# Training seeds: the backbone's below 200_000, AURA's from 300_000, validation 900_000;
# evaluation (benchmark, demo, tests) from 1_000_000 (aura_mem_dev.training.seeds).
BC_SEED_BASE = 0
VALIDATION_SEED_BASE = 900_000


def stack(records: list[ArmRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.concatenate([r.images for r in records]))
    proprio = torch.from_numpy(np.concatenate([r.proprio for r in records]))
    labels = torch.from_numpy(np.concatenate([r.labels for r in records]))
    return images, proprio, labels


def random_shift(images: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each uint8 image (B,S,S,3) by up to ``pixels`` in x and y (edges repeated).

    The standard augmentation of image-based BC (DrQ, robomimic): it keeps a small CNN
    from keying on exact pixel positions it saw in a few hundred demonstrations.
    """
    if pixels <= 0:
        return images
    b, size = images.shape[0], images.shape[1]
    x = images.permute(0, 3, 1, 2).float()
    shift = torch.randint(-pixels, pixels + 1, (b, 2), generator=gen).float() * 2 / size
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(
        x, grid, mode="nearest", padding_mode="border", align_corners=False
    )
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def fit(
    net: ArmPolicyNet, records: list[ArmRecord], epochs: int, cfg: BCConfig, seed: int, desc: str
) -> float:
    images, proprio, labels = stack(records)
    tokens = torch.tensor([tokenize(INSTRUCTION, net.cfg)])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n = len(labels)
    net.train()
    loss_sum = 0.0
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", leave=False):
        perm = torch.randperm(n, generator=gen)
        loss_sum, batches = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            batch = random_shift(images[idx], cfg.shift_pixels, gen)
            _, chunk = net(batch, tokens.expand(len(idx), -1), proprio[idx])
            loss = (chunk - labels[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            batches += 1
        sched.step()
        loss_sum /= max(1, batches)
    net.eval()
    tqdm.write(f"{desc}: {n} samples, final L1 {loss_sum:.4f}")
    return loss_sum


def learner_driver(net: ArmPolicyNet, beta: float, seed: int) -> Driver:
    rng = np.random.default_rng(seed)
    tokens = torch.tensor([tokenize(INSTRUCTION, net.cfg)])

    def drive(obs: ArmObs, label: np.ndarray, index: int) -> np.ndarray:
        if rng.random() < beta:
            return label
        with torch.no_grad():
            _, chunk = net(
                torch.from_numpy(obs.image)[None], tokens, torch.from_numpy(obs.proprio)[None]
            )
        return chunk[0].numpy()

    return drive


def proprio_stats(records: list[ArmRecord]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    p = np.concatenate([r.proprio for r in records]).astype(np.float64)
    std = np.maximum(p.std(0), 1e-3)
    return tuple(float(v) for v in p.mean(0)), tuple(float(v) for v in std)


def closed_loop_rates(net: ArmPolicyNet, task: ArmTaskConfig, seeds: list[int]) -> dict:
    """Memoryless closed loop: completion and success (diagnostic during training)."""
    eps = collect(task, seeds, lambda s: learner_driver(net, 0.0, s))
    return {
        "completed": float(np.mean([e.completed for e in eps])),
        "success": float(np.mean([e.success for e in eps])),
        "steps": float(np.mean([e.steps for e in eps])),
    }


def train_backbone(out_dir: Path, cfg: BCConfig | None = None) -> dict:
    """Demos -> BC -> DAgger (persistent variant) -> ``out_dir``; returns a report."""
    cfg = cfg or BCConfig()
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    flash = ArmTaskConfig(image_size=cfg.image_size)
    persistent = replace(flash, cue_mode="persistent")
    half = cfg.demo_episodes // 2
    base = BC_SEED_BASE + cfg.seed * 100_000
    records = collect(
        flash,
        list(range(base, base + half)),
        lambda s: expert_driver(),
        noise=cfg.noise,
        progress="demos (flash)",
    )
    records += collect(
        persistent,
        list(range(base + half, base + 2 * half)),
        lambda s: expert_driver(),
        noise=cfg.noise,
        progress="demos (persistent)",
    )
    demo_seconds = time.time() - t0
    mean, std = proprio_stats(records)
    arch = ArmMiniConfig(image_size=cfg.image_size, proprio_mean=mean, proprio_std=std)
    net = ArmPolicyNet(arch)
    history: list[dict] = []
    fit(net, records, cfg.epochs_first, cfg, cfg.seed, "arm_mini BC")
    next_seed = base + 2 * half
    for r in range(cfg.dagger_rounds):
        seeds = list(range(next_seed, next_seed + cfg.dagger_episodes))
        next_seed += cfg.dagger_episodes
        half_round = len(seeds) // 2
        eps = collect(
            flash,
            seeds[:half_round],
            lambda s: learner_driver(net, cfg.dagger_beta, s),
            progress=f"DAgger {r} (flash)",
        )
        eps += collect(
            persistent,
            seeds[half_round:],
            lambda s: learner_driver(net, cfg.dagger_beta, s),
            progress=f"DAgger {r} (persistent)",
        )
        records += eps
        history.append(
            {
                "round": r,
                "rollout_completed": float(np.mean([e.completed for e in eps])),
                "rollout_success": float(np.mean([e.success for e in eps])),
            }
        )
        tqdm.write(f"backbone DAgger round {r}: {history[-1]}")
        fit(net, records, cfg.epochs_round, cfg, cfg.seed + r + 1, f"arm_mini DAgger {r}")
    val = list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + cfg.eval_episodes))
    report = {
        "config": asdict(cfg),
        "samples": int(sum(len(r) for r in records)),
        "demo_seconds": round(demo_seconds, 1),
        "dagger": history,
        "validation_flash": closed_loop_rates(net, flash, val),
        "validation_persistent": closed_loop_rates(net, persistent, val),
        "seconds": round(time.time() - t0, 1),
    }
    tqdm.write(
        f"arm_mini validation: {report['validation_flash']} (flash), "
        f"{report['validation_persistent']} (persistent)"
    )
    save_backbone(net, out_dir, report)
    return report


def save_backbone(net: ArmPolicyNet, out_dir: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(
        json.dumps({"backbone": net.cfg.to_dict(), "meta": meta}, indent=2, default=str) + "\n"
    )
