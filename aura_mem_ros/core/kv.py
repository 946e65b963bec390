"""The one KV-cache baseline and its batch-1 runtime: the always-write memory AURA is compared to.

- ``KVMemory`` (``KVConfig``): an unbounded cache of one unit ``d_key`` key and one ``d_val``
  value per step (32 + 32 fp32 = 256 bytes/step, the model card's KV baseline), read by
  softmax attention with unit queries and a learned inverse temperature (``heads`` heads over
  slices of the same key and value), optionally minus a learned ALiBi recency bias
  (``recency``: position costs no state), through the same
  zero-initialised residual head as AURA-Mem, so it starts as the base policy. Discrete
  (``chunk_size`` 1, logits) or chunked continuous actions. It speaks core's
  ``forward_sequence`` / ``step``, so the one trainer (``core.train``) trains it with
  ``gate="always"``. It serves every comparison: the MiniGrid ``always_kv`` arm
  (``models/mini/kv``), the synthetic benchmark's ``kv_cache`` method
  (``baselines.METHODS``: with recency) and the arm task's KV arm (``models/arm_mini/kv``:
  8 x 7 chunks, 4 heads).
- ``KVRuntime``: numpy in, numpy out, one step at a time; it offers a closed loop what
  ``AuraRuntime`` offers (``runtime.MemoryRuntime``), with the same input checks, so per-step
  costs compare the memories and not their wrappers.
- ``save_kv`` / ``load_kv``: ``kv.safetensors`` + ``kv_config.json`` (strict load; a config
  written before a field existed loads with that field's default, which is a no-op).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor, nn

from aura_mem_ros.core.aura import ResidualHead, SequenceOutput, StepOutput
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.memory import unit
from aura_mem_ros.core.runtime import RuntimeStep, checked_step_inputs
from aura_mem_ros.validation import from_dict, require_positive_ints

WEIGHTS_FILE = "kv.safetensors"
CONFIG_FILE = "kv_config.json"


class KVState(NamedTuple):
    keys: Tensor  # (B, capacity, d_key); rows [0, length) are live
    values: Tensor  # (B, capacity, d_val)
    length: int

    @property
    def nbytes(self) -> int:
        """Bytes of cached entries (the live rows; spare capacity is not counted)."""
        batch = self.keys.shape[0]
        row = (
            self.keys.shape[2] * self.keys.element_size()
            + self.values.shape[2] * self.values.element_size()
        )
        return batch * self.length * row

    def appended(self, key: Tensor, value: Tensor) -> KVState:
        """This state plus one (key, value) row per batch element (written in place into
        the buffers; they double when full, so appends are amortised O(1))."""
        keys, values, n = self
        if n == keys.shape[1]:
            keys = torch.cat([keys, torch.zeros_like(keys)], 1)
            values = torch.cat([values, torch.zeros_like(values)], 1)
        keys[:, n] = key
        values[:, n] = value
        return KVState(keys, values, n + 1)


def empty_kv_state(batch: int, d_key: int, d_val: int, capacity: int = 64) -> KVState:
    return KVState(torch.zeros(batch, capacity, d_key), torch.zeros(batch, capacity, d_val), 0)


@dataclass(frozen=True)
class KVConfig:
    d_model: int
    action_dim: int
    d_key: int = 32
    d_val: int = 32
    head_hidden: int = 128
    # Rows of actions per step: 1 = one row of discrete logits (MiniGrid, the synthetic
    # task); 8 = an 8 x 7 continuous chunk (the arm).
    chunk_size: int = 1
    # A learned ALiBi bias, ``-softplus(slope) * age`` on every score: a newer entry can win
    # over an older one with the same key (a re-assigned key in the synthetic stream). Off =
    # the parameter does not exist (configs written before this field load unchanged).
    recency: bool = False
    # Attention heads, each over its d_key / heads slice of the key (unit-norm per head) and
    # its d_val / heads slice of the value: the bytes per step do not change. One head must
    # read ONE past step to act on it; with several, a head can keep reading the cue while
    # another follows the task (measured on the arm: a single head split its weight ~50/50
    # between the cue and another step in the episodes it failed).
    heads: int = 1

    def __post_init__(self) -> None:
        require_positive_ints(self, ("d_model", "action_dim", "d_key", "d_val", "head_hidden"))
        require_positive_ints(self, ("chunk_size", "heads"))
        if not isinstance(self.recency, bool):
            raise ValueError(f"KVConfig.recency must be a bool, got {self.recency!r}")
        if self.d_key % self.heads or self.d_val % self.heads:
            raise ValueError(
                f"KVConfig.heads ({self.heads}) must divide d_key ({self.d_key}) and d_val "
                f"({self.d_val})"
            )

    @property
    def bytes_per_step(self) -> int:
        return (self.d_key + self.d_val) * 4

    @classmethod
    def like(cls, config: AuraConfig, **overrides: Any) -> KVConfig:
        """The KV baseline matched to an AURA layer: same features, action shape, key and
        value widths and head."""
        fields = ("d_model", "action_dim", "d_key", "d_val", "head_hidden", "chunk_size")
        return cls(**{**{f: getattr(config, f) for f in fields}, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KVConfig:
        return from_dict(cls, data)


class KVMemory(nn.Module):
    def __init__(self, config: KVConfig) -> None:
        super().__init__()
        c = self.config = config
        self.key = nn.Linear(c.d_model, c.d_key, bias=False)
        self.value = nn.Linear(c.d_model, c.d_val)
        self.query = nn.Linear(c.d_model, c.d_key)
        self.head = ResidualHead(c.d_model, c.d_val, c.head_hidden, c.chunk_size, c.action_dim)
        # Unit-norm queries/keys with a learned inverse temperature (as AURA's unit keys):
        # raw dot products of these ReLU features are large, so plain scaled attention starts
        # saturated on arbitrary steps and barely learns which step to read.
        self.log_scale = nn.Parameter(torch.tensor(math.log(8.0)))
        if c.recency:  # softplus(-2) = 0.13 per step of age to start
            self.slope_raw = nn.Parameter(torch.tensor(-2.0))

    def _recency(self, age: Tensor) -> Tensor | float:
        """What to subtract from scores ``age`` steps old (0 without ``recency``)."""
        return F.softplus(self.slope_raw) * age if self.config.recency else 0.0

    def _heads(self, t: Tensor) -> Tensor:
        """(..., H * d) -> (..., H, d)."""
        return t.unflatten(-1, (self.config.heads, -1))

    def entries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """What a step caches for features ``x`` (..., d_model): its key, unit-norm per head,
        and its value."""
        return unit(self._heads(self.key(x))).flatten(-2), self.value(x)

    def append(self, x: Tensor, state: KVState) -> KVState:
        """The write half of a step: cache ``x``'s entries (in place; inference only)."""
        return state.appended(*self.entries(x))

    def forward_sequence(self, features: Tensor, base_actions: Tensor, **_: Any) -> SequenceOutput:
        """Causal attention over all steps so far (including the current one)."""
        t_len = features.shape[1]
        k, v = (self._heads(t).transpose(1, 2) for t in self.entries(features))  # (B, H, T, d)
        q = unit(self._heads(self.query(features))).transpose(1, 2)
        pos = torch.arange(t_len, dtype=features.dtype)
        age = pos[:, None] - pos[None, :]  # (T, T): query step - key step
        scores = self.log_scale.exp() * (q @ k.transpose(-1, -2)) - self._recency(age)
        read = scores.masked_fill(age < 0, float("-inf")).softmax(-1) @ v  # (B, H, T, d_v/H)
        actions = base_actions + self.head(features, read.transpose(1, 2).flatten(-2))
        ones = torch.ones(features.shape[:2])
        return SequenceOutput(actions, ones, ones, None)

    forward = forward_sequence

    def init_state(self, batch: int = 1, capacity: int = 64) -> KVState:
        return empty_kv_state(batch, self.config.d_key, self.config.d_val, capacity)

    def step(self, x: Tensor, base_action: Tensor, state: KVState, **_: Any) -> StepOutput:
        """Inference step: cache this step's (key, value), then attend over the cache."""
        state = self.append(x, state)
        keys, values, n = state
        q, scale = unit(self._heads(self.query(x))), self.log_scale.exp()  # (B, H, d_k/H)
        bias = self._recency(torch.arange(n - 1, -1, -1, dtype=x.dtype))
        if x.shape[0] == 1 and self.config.heads == 1:
            # The batch-1 closed loop: plain (1, d) @ (d, n) products, the arithmetic the
            # shipped MiniGrid arm was evaluated with.
            scores = scale * (q[:, 0] @ keys[0, :n].T) - bias
            read = scores.softmax(-1) @ values[0, :n]
        else:
            k = self._heads(keys[:, :n]).transpose(1, 2)  # (B, H, n, d_k/H)
            v = self._heads(values[:, :n]).transpose(1, 2)
            scores = scale * (q[:, :, None] @ k.transpose(-1, -2))[:, :, 0] - bias  # (B, H, n)
            read = (scores.softmax(-1)[:, :, None] @ v)[:, :, 0].flatten(1)
        ones = torch.ones(x.shape[0], dtype=x.dtype)
        return StepOutput(base_action + self.head(x, read), ones, ones, state)


class KVModel(Protocol):
    """What ``KVRuntime`` steps (``KVMemory``; a protocol so tests can step a stand-in)."""

    config: Any  # has d_model, chunk_size, action_dim

    def eval(self) -> Any: ...

    def init_state(self, batch: int = 1) -> KVState: ...

    def step(self, x: Tensor, base_action: Tensor, state: KVState) -> StepOutput: ...


class KVRuntime:
    """Batch-1 closed-loop view of a KV-cache memory: appends (writes) at every step, so its
    state grows by ``(d_key + d_val) * 4`` bytes a step. ``state`` starts it from a filled
    cache (benchmarks at a long horizon) instead of an empty one."""

    gate = "always"

    def __init__(self, model: KVModel, state: KVState | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.reset()
        if state is not None:
            self._state = state

    def reset(self) -> None:
        self._state = self.model.init_state(1)
        self.steps = 0
        self.writes = 0

    @property
    def state_nbytes(self) -> int:
        return self._state.nbytes

    def select_action(self, features: np.ndarray, base_action: np.ndarray) -> RuntimeStep:
        c = self.config
        features, base_action = checked_step_inputs(features, base_action, c)
        with torch.no_grad():
            out = self.model.step(
                torch.from_numpy(features)[None], torch.from_numpy(base_action)[None], self._state
            )
        self._state = out.state
        self.steps += 1
        self.writes += 1
        return RuntimeStep(out.action[0].numpy().astype(np.float32), True, 1.0)


def save_kv(model: KVMemory, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()},
        str(directory / WEIGHTS_FILE),
    )
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(model.config), indent=2) + "\n")


def load_kv(directory: str | Path) -> KVMemory:
    from safetensors.torch import load_file

    directory = Path(directory)
    model = KVMemory(KVConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text())))
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
    return model.eval()
