"""Always-write baselines with their own state, behind the AuraLayer interface.

Both speak ``init_state`` / ``step`` / ``forward_sequence`` like AuraLayer (the gate
arguments are accepted and ignored: they write every step) and use the same zero-initialised
residual head, so every method starts as the base policy.

- ``kv_cache``: the one KV-cache baseline, ``kv.KVMemory`` (attention over every past unit
  key and value, 32 + 32 fp32 = 256 bytes per step, learned temperature and ALiBi recency),
  built from the same ``AuraConfig``; stepped one observation at a time by ``kv.KVRuntime``.
- GRUMemory: an always-write GRU whose hidden state is the whole memory.

The gated fast-weight baselines (always-write, reconstruction, similarity, random, periodic,
oracle) are the AuraLayer itself with another gate; ``METHODS`` names them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aura_mem_ros.core.aura import AuraLayer, ResidualHead, SequenceOutput, StepOutput
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.kv import KVConfig, KVMemory


def _always(features: Tensor) -> tuple[Tensor, Tensor]:
    ones = torch.ones(features.shape[:2], dtype=features.dtype)
    return ones, ones


def kv_cache(config: AuraConfig) -> KVMemory:
    """The one KV baseline (``kv.KVMemory``) matched to ``config``, with its learned recency
    bias: the stream config re-assigns keys and the newest assignment must win (measured,
    stream seed 0: accuracy 0.811 with it, 0.199 without; 0.966 vs 0.788 on training-length
    windows)."""
    return KVMemory(KVConfig.like(config, recency=True))


class GRUMemory(nn.Module):
    """hidden = GRU(x, hidden) every step; action = base + head([x, hidden])."""

    def __init__(self, config: AuraConfig, hidden: int = 256):
        super().__init__()
        c = self.config = config
        self.hidden = hidden
        self.gru = nn.GRU(c.d_model, hidden, batch_first=True)
        self.head = ResidualHead(c.d_model, hidden, c.head_hidden, c.chunk_size, c.action_dim)

    def init_state(self, batch: int = 1) -> Tensor:
        return torch.zeros(1, batch, self.hidden)

    def step(
        self,
        x: Tensor,
        base_action: Tensor,
        state: Tensor,
        write: Tensor | None = None,
        **_: object,
    ) -> StepOutput:
        out, state = self.gru(x[:, None], state)
        ones = torch.ones(x.shape[0], dtype=x.dtype)
        return StepOutput(base_action + self.head(x, out[:, 0]), ones, ones, state)

    def forward_sequence(
        self, features: Tensor, base_actions: Tensor, **_: object
    ) -> SequenceOutput:
        out, state = self.gru(features)
        writes, probs = _always(features)
        return SequenceOutput(base_actions + self.head(features, out), writes, probs, state)


@dataclass(frozen=True)
class Method:
    """A benchmark method: how to build it and which gate decides its writes.

    budget: "learned" trains against the write budget; "matched" runs at the learned
    method's measured write rate (random, periodic) or is calibrated to it (score gates).
    """

    build: Callable[[AuraConfig], nn.Module]
    gate: str = "always"
    budget: str = "none"  # "none" | "learned" | "matched"


METHODS: dict[str, Method] = {
    "aura": Method(AuraLayer, "learned", "learned"),
    "always_fast_weight": Method(AuraLayer, "always"),
    "gru": Method(GRUMemory),
    "kv_cache": Method(kv_cache),
    "reconstruction": Method(AuraLayer, "reconstruction", "matched"),
    "similarity": Method(AuraLayer, "similarity", "matched"),
    "random": Method(AuraLayer, "random", "matched"),
    "periodic": Method(AuraLayer, "periodic", "matched"),
    "oracle": Method(AuraLayer, "oracle"),
}
