"""Always-write baselines with their own state, behind the AuraLayer interface.

Both speak ``init_state`` / ``step`` / ``forward_sequence`` like AuraLayer (the gate
arguments are accepted and ignored: they write every step) and use the same zero-initialised
residual head, so every method starts as the base policy.

- KVCacheMemory: attention over every past (k, v), 32 + 32 fp32 = 256 bytes per step, with a
  learned ALiBi recency bias (position information costs no state); stepped one observation
  at a time by ``kv.KVRuntime``.
- GRUMemory: an always-write GRU whose hidden state is the whole memory.

The gated fast-weight baselines (always-write, reconstruction, similarity, random, periodic,
oracle) are the AuraLayer itself with another gate; ``METHODS`` names them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor, nn

from aura_mem_ros.core.aura import AuraLayer, ResidualHead, SequenceOutput, StepOutput
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.kv import KVState, empty_kv_state


def _always(features: Tensor) -> tuple[Tensor, Tensor]:
    ones = torch.ones(features.shape[:2], dtype=features.dtype)
    return ones, ones


class KVCacheMemory(nn.Module):
    def __init__(self, config: AuraConfig):
        super().__init__()
        c = self.config = config
        self.key = nn.Linear(c.d_model, c.d_key)
        self.value = nn.Linear(c.d_model, c.d_val)
        self.query = nn.Linear(c.d_model, c.d_key)
        self.slope_raw = nn.Parameter(torch.tensor(-2.0))  # softplus -> ALiBi slope per step
        self.head = ResidualHead(c.d_model, c.d_val, c.head_hidden, c.chunk_size, c.action_dim)

    def init_state(self, batch: int = 1, capacity: int = 64) -> KVState:
        return empty_kv_state(batch, self.config.d_key, self.config.d_val, capacity)

    def _attend(
        self, q: Tensor, keys: Tensor, values: Tensor, age: Tensor, allowed: Tensor | None
    ) -> Tensor:
        scores = (
            q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1]) - F.softplus(self.slope_raw) * age
        )
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1) @ values

    def append(self, x: Tensor, state: KVState) -> KVState:
        """The write half of a step: cache this step's (k, v) (in place; inference only)."""
        return state.appended(self.key(x), self.value(x))

    def step(
        self,
        x: Tensor,
        base_action: Tensor,
        state: KVState,
        write: Tensor | None = None,
        **_: object,
    ) -> StepOutput:
        keys, values, n = self.append(x, state)
        age = torch.arange(n - 1, -1, -1, dtype=x.dtype)
        read = self._attend(self.query(x)[:, None], keys[:, :n], values[:, :n], age, None)[:, 0]
        ones = torch.ones(x.shape[0], dtype=x.dtype)
        return StepOutput(base_action + self.head(x, read), ones, ones, KVState(keys, values, n))

    def forward_sequence(
        self, features: Tensor, base_actions: Tensor, **_: object
    ) -> SequenceOutput:
        pos = torch.arange(features.shape[1], dtype=features.dtype)
        age = pos[:, None] - pos[None, :]
        read = self._attend(
            self.query(features), self.key(features), self.value(features), age, age >= 0
        )
        writes, probs = _always(features)
        return SequenceOutput(base_actions + self.head(features, read), writes, probs, None)


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
    "kv_cache": Method(KVCacheMemory),
    "reconstruction": Method(AuraLayer, "reconstruction", "matched"),
    "similarity": Method(AuraLayer, "similarity", "matched"),
    "random": Method(AuraLayer, "random", "matched"),
    "periodic": Method(AuraLayer, "periodic", "matched"),
    "oracle": Method(AuraLayer, "oracle"),
}
