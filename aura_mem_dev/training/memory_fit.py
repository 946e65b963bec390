"""Fit the AURA layer on aggregated closed-loop sequences: action error + write budget.

Why not only the straight-through estimator of ``core.train``: on MiniGrid-Memory the single
write that matters (the cue view) pays off 6-10 steps later, at the fork, while a write at
almost any step pays off at once as a "cue was seen" marker (it stops the look-back). The
first-order straight-through signal prefers the marker; measured here, it converged to a
write one step after the cue view and a 50% fork. This fitter therefore trains the gate on
the *exact* closed-loop utility of each write decision:

    benefit_t = L(schedule with g_t = 0) - L(schedule with g_t = 1)

where L is the summed action cross-entropy of the whole sequence against the oracle labels,
re-run through the memory for every flipped step (cheap: episodes are ~10-20 steps). The
gate is then fitted (binary cross-entropy) to write exactly where benefit_t > lambda, the
Lagrange price of a write, which dual ascent moves until the write rate meets the budget.
The memory projections and the residual head are trained by the same action cross-entropy
on the schedule actually written, plus sparse exploratory writes so the head learns to read
memories the gate does not write yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from aura_mem_dev.training.sequences import SeqData
from aura_mem_ros.core.aura import AuraLayer


@dataclass(frozen=True)
class FitConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    lambda_lr: float = 0.05
    explore_rate: float = 0.1  # extra random writes/step while training the head
    gate_weight: float = 1.0
    max_len: int = 30  # long (looping) on-policy episodes are cut: the loop repeats itself
    # Floor of the write price (summed cross-entropy per episode): a write whose measured
    # benefit is within noise of zero is not worth a flash write even under budget.
    min_price: float = 0.05
    # Share of sequences whose head-training schedule also holds the oracle write (the first
    # cue view). Only the residual head and memory projections see it: without it the head
    # never learns to decode a cue the gate does not write yet, so no write ever shows a
    # benefit (chicken and egg). The gate's own targets are always measured utilities.
    oracle_mix: float = 0.5
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0 or self.lr <= 0 or self.max_len <= 0:
            raise ValueError("steps, batch_size, lr and max_len must be positive")
        if not 0.0 <= self.explore_rate < 1.0 or not 0.0 <= self.oracle_mix <= 1.0:
            raise ValueError("explore_rate must lie in [0, 1) and oracle_mix in [0, 1]")


def sequence_losses(
    layer: AuraLayer, feats: Tensor, base: Tensor, targets: Tensor, mask: Tensor, writes: Tensor
) -> Tensor:
    """Summed masked cross-entropy per sequence under a forced write schedule -> (B,)."""
    out = layer.forward_sequence(feats, base, gate="learned", writes=writes)
    ce = nn.functional.cross_entropy(
        out.actions[:, :, 0].flatten(0, 1), targets.flatten(), reduction="none"
    ).view_as(mask)
    return (ce * mask).sum(1)


@torch.no_grad()
def write_benefits(
    layer: AuraLayer, feats: Tensor, base: Tensor, targets: Tensor, mask: Tensor, writes: Tensor
) -> Tensor:
    """benefit[b, t] = L(g_t = 0) - L(g_t = 1), all other decisions as in ``writes``."""
    b, t_len = writes.shape
    eye = torch.eye(t_len)
    on = (writes[:, None, :] + eye[None]).clamp(max=1.0)  # (B, T, T): step t forced on
    off = writes[:, None, :] * (1 - eye[None])

    def rep(x: Tensor) -> Tensor:
        return x[:, None].expand(b, t_len, *x.shape[1:]).reshape(b * t_len, *x.shape[1:])

    args = (rep(feats), rep(base), rep(targets), rep(mask))
    loss_on = sequence_losses(layer, *args, on.reshape(b * t_len, t_len)).view(b, t_len)
    loss_off = sequence_losses(layer, *args, off.reshape(b * t_len, t_len)).view(b, t_len)
    return (loss_off - loss_on) * mask


def fit_memory(
    layer: AuraLayer,
    data: SeqData,
    cfg: FitConfig,
    target_rate: float,
    lam: float,
    seed: int,
    desc: str,
) -> tuple[float, dict]:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(layer.parameters(), lr=cfg.lr)
    stats: dict[str, float] = {}
    bar = tqdm(range(cfg.steps), desc=desc, unit="step")
    for step in bar:
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen).tolist()
        feats, base, targets, mask = (x[:, : cfg.max_len] for x in data.batch(idx))
        layer.eval()
        with torch.no_grad():
            greedy = layer.forward_sequence(feats, base).writes * mask
        explore = (torch.rand(mask.shape, generator=gen) < cfg.explore_rate).float() * mask
        use_oracle = (torch.rand(len(idx), 1, generator=gen) < cfg.oracle_mix).float()
        oracle = data.oracle_writes(idx, mask.shape[1]) * use_oracle
        schedule = torch.maximum(torch.maximum(greedy, explore), oracle)
        benefit = write_benefits(layer, feats, base, targets, mask, schedule)
        want = (benefit > max(lam, cfg.min_price)).float()
        layer.train()
        out = layer.forward_sequence(feats, base, gate="learned", writes=schedule)
        n = mask.sum()
        ce = nn.functional.cross_entropy(
            out.actions[:, :, 0].flatten(0, 1), targets.flatten(), reduction="none"
        ).view_as(mask)
        action_loss = (ce * mask).sum() / n
        gate_loss = (
            nn.functional.binary_cross_entropy(
                out.write_probs.clamp(1e-6, 1 - 1e-6), want, reduction="none"
            )
            * mask
        ).sum() / n
        loss = action_loss + cfg.gate_weight * gate_loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(layer.parameters(), cfg.grad_clip)
        opt.step()
        rate = float(greedy.sum() / n)
        # Relative, clipped error: the price moves at a steady pace whatever the budget.
        lam = max(
            0.0, lam + cfg.lambda_lr * max(-1.0, min(1.0, (rate - target_rate) / target_rate))
        )
        acc = float(((out.actions[:, :, 0].argmax(-1) == targets).float() * mask).sum() / n)
        stats = {
            "loss": float(action_loss.detach()),
            "gate_loss": float(gate_loss.detach()),
            "acc": acc,
            "write_rate": rate,
            "lambda": lam,
        }
        if step % 10 == 0:
            bar.set_postfix(
                ce=f"{stats['loss']:.3f}", acc=f"{acc:.3f}", wr=f"{rate:.3f}", lam=f"{lam:.2f}"
            )
    layer.eval()
    return lam, stats
