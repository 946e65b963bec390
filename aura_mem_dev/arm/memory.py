"""Memory layers for the arm: AURA (learned gate, write budget) and the always-write KV arm.

``core_train`` is the arm's ONE call into the core trainer (``aura_mem_ros.core.train.
train_aura``); issue 17's "one trainer" swaps what is behind it and nothing else.
``train_arm_memory`` trains the AURA layer through it twice: first with every step written
(``gate="always"``: keys, values and the residual head learn to keep and read what matters),
then with ``gate="learned"`` (straight-through estimator through hard writes, PI budget
controller) from a gate that starts closed and must add the writes that pay. ``fit_kv``
trains the KV arm through it once. No oracle write schedule, no privileged signal: only
expert action labels through the L1 chunk loss.

The KV arm is the one KV baseline, ``core.kv.KVMemory`` (4-head attention over every past
step's unit key and value, 256 bytes per step, learned temperature) with 8 x 7 chunks; it is
trained by the same trainer with ``gate="always"`` on the same sequences and stepped by the
one KV runtime, ``core.kv.KVRuntime``; ``core.kv.save_kv`` / ``load_kv`` store it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from aura_mem_dev.arm.sequences import ArmSequences
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.kv import KVConfig, KVMemory
from aura_mem_ros.core.train import (
    SequenceBatch,
    SequenceModel,
    TrainConfig,
    TrainResult,
    train_aura,
)


@dataclass(frozen=True)
class MemoryTrainConfig:
    iterations: int = 500  # learned gate under the write budget
    batch_size: int = 32
    lr: float = 3e-3
    target_write_rate: float = 0.05  # writes per chunk request
    # Dense stage before the learned gate: every step written (gate "always", no budget;
    # nothing aimed at the cue, no simulator state), so keys, values and the residual head
    # first learn to keep and read what matters; the learned stage then removes the writes
    # that do not pay. 0 iterations = the trainer alone (measured: the gate shuts for good).
    explore_iterations: int = 600
    explore_gate: str = "always"
    explore_write_rate: float = 0.15  # only for explore_gate "random"
    # The gate's initial logit when the learned stage begins: closed, so writes are added
    # where they pay. Measured here: started open (+2), the price shut every write at once
    # and the gate re-opened late, on the wrong chunks (5-9, never the cue at 0-1).
    gate_start_bias: float = -2.0
    # core.train's default gate learning rate is 10x the rest. Measured here: with Adam, the
    # write price's uniform gradient then moves every step's gate logit by several units per
    # batch, all writes stop within ~10 batches of the price starting, and the bounded logit
    # saturates there for good. The same rate as the rest avoids that cliff.
    gate_lr_scale: float = 1.0
    # Share of training rows that are two episodes back to back without a reset (the gate
    # would also learn to overwrite the previous task's cue). Off: at 0.3 the dense stage
    # learned too little to start the gate from (always-write L1 no better than the base).
    pair_fraction: float = 0.0
    seed: int = 1


def arm_aura_config(d_model: int, target_write_rate: float | None) -> AuraConfig:
    return AuraConfig(
        d_model=d_model,
        chunk_size=8,
        action_dim=7,
        discrete=False,
        target_write_rate=target_write_rate,
    )


def arm_kv_config(d_model: int) -> KVConfig:
    """The KV arm matched to ``arm_aura_config``: same features, chunks, key/value widths
    (256 bytes per step), with 4 attention heads. Measured on the validation seeds (same
    data, same trainer): one head split its weight between the cue and another step in the
    episodes it failed, and the arm stalled between two pads (success 0.275, completed 0.85
    after step 4); 4 heads: 0.95, 1.0. No recency bias: it cost completion here (first fit,
    seeds 1 / 101: completed 0.725 / 0.825 with it, 1.0 / 0.975 without), the cue being the
    OLDEST step."""
    return KVConfig.like(arm_aura_config(d_model, None), heads=4)


def core_train(
    model: SequenceModel,
    batches: Callable[[int], SequenceBatch],
    cfg: TrainConfig,
    gate: str,
) -> TrainResult:
    """The arm's one call into the core trainer (AURA's two stages and the KV arm)."""
    return train_aura(model, batches, cfg, gate=gate)


def train_arm_memory(
    layer: AuraLayer, seqs: ArmSequences, cfg: MemoryTrainConfig, desc: str = "AURA"
) -> TrainResult:
    """Train ``layer`` on ``seqs`` (expert chunk labels only) under the write budget."""
    if cfg.explore_iterations:
        core_train(
            layer,
            seqs.sampler(cfg.batch_size, cfg.seed + 7919, cfg.pair_fraction),
            TrainConfig(
                iterations=cfg.explore_iterations,
                lr=cfg.lr,
                target_write_rate=cfg.explore_write_rate,
                seed=cfg.seed + 7919,
                progress=True,
                desc=f"{desc} ({cfg.explore_gate} writes)",
            ),
            gate=cfg.explore_gate,
        )
        with torch.no_grad():
            layer.gate_out.bias.fill_(cfg.gate_start_bias)
    return core_train(
        layer,
        seqs.sampler(cfg.batch_size, cfg.seed, cfg.pair_fraction),
        TrainConfig(
            iterations=cfg.iterations,
            lr=cfg.lr,
            gate_lr_scale=cfg.gate_lr_scale,
            target_write_rate=cfg.target_write_rate,
            seed=cfg.seed,
            progress=True,
            desc=desc,
        ),
        gate="learned",
    )


def fit_aura(seqs: ArmSequences, cfg: MemoryTrainConfig, desc: str) -> tuple[AuraLayer, dict]:
    """A fresh layer (residual zero = the base policy) trained on all of ``seqs``."""
    d_model = seqs.features[0].shape[-1]
    layer = init_aura(arm_aura_config(d_model, cfg.target_write_rate), seed=cfg.seed)
    result = train_arm_memory(layer, seqs, cfg, desc)
    tail = result.history[-max(1, cfg.iterations // 10) :]
    stats = {
        "final_l1": float(np.mean([h["loss"] for h in tail])),
        "final_write_rate": float(np.mean([h["write_rate"] for h in tail])),
        "lagrange_multiplier": result.lagrange_multiplier,
    }
    return layer.eval(), stats


# ---------------------------------------------------------------------- KV arm
def fit_kv(seqs: ArmSequences, cfg: MemoryTrainConfig, desc: str) -> tuple[KVMemory, dict]:
    d_model = seqs.features[0].shape[-1]
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed)
        model = KVMemory(arm_kv_config(d_model))
    finally:
        torch.random.set_rng_state(generator_state)
    # As many batches as AURA's two stages together: the same data and the same effort.
    iterations = cfg.explore_iterations + cfg.iterations
    result = core_train(
        model,
        seqs.sampler(cfg.batch_size, cfg.seed),
        TrainConfig(iterations=iterations, lr=cfg.lr, seed=cfg.seed, progress=True, desc=desc),
        gate="always",
    )
    tail = result.history[-max(1, iterations // 10) :]
    return model.eval(), {"final_l1": float(np.mean([h["loss"] for h in tail]))}
