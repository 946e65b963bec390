"""KV-cache memories and their batch-1 runtime: the always-write baselines AURA is compared to.

- ``KVMemory``: the ``always_kv`` arm of the closed-loop panel (shipped in
  ``models/mini/kv``). Same read-out as AURA-Mem (a zero-initialised residual head on
  [x, read]), but the memory is an unbounded cache of one unit 32-d key and one 32-d value
  per step (256 bytes/step, the model card's KV baseline) read by softmax attention. It speaks
  core's ``forward_sequence``, so ``core.train.train_aura(..., gate="always")`` trains it.
- ``KVRuntime``: numpy in, numpy out, one step at a time, for ``KVMemory`` and for
  ``baselines.KVCacheMemory`` alike; it offers a closed loop what ``AuraRuntime`` offers
  (``runtime.MemoryRuntime``), with the same input checks, so per-step costs compare the
  memories and not their wrappers.

(Two KV models exist for historical reasons: ``KVCacheMemory`` is the synthetic benchmark's,
``KVMemory`` the closed-loop arm's; issue 17 makes them one.)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from aura_mem_ros.core.aura import ResidualHead, SequenceOutput, StepOutput
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

    def __post_init__(self) -> None:
        require_positive_ints(self)

    @property
    def chunk_size(self) -> int:
        """The arm serves discrete policies: one row of logits per step."""
        return 1

    @property
    def bytes_per_step(self) -> int:
        return (self.d_key + self.d_val) * 4

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
        self.head = ResidualHead(c.d_model, c.d_val, c.head_hidden, 1, c.action_dim)
        # Unit-norm queries/keys with a learned inverse temperature (as AURA's unit keys):
        # raw dot products of these ReLU features are large, so plain scaled attention starts
        # saturated on arbitrary steps and barely learns which step to read.
        self.log_scale = nn.Parameter(torch.tensor(math.log(8.0)))

    def forward_sequence(self, features: Tensor, base_actions: Tensor, **_: Any) -> SequenceOutput:
        """Causal attention over all steps so far (including the current one)."""
        _, t_len = features.shape[:2]
        k, v, q = unit(self.key(features)), self.value(features), unit(self.query(features))
        scores = self.log_scale.exp() * (q @ k.transpose(1, 2))
        causal = torch.ones(t_len, t_len, dtype=torch.bool).tril()
        read = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
        actions = base_actions + self.head(features, read)
        ones = torch.ones(features.shape[:2])
        return SequenceOutput(actions, ones, ones, None)

    forward = forward_sequence

    def init_state(self, batch: int = 1, capacity: int = 64) -> KVState:
        return empty_kv_state(batch, self.config.d_key, self.config.d_val, capacity)

    def step(self, x: Tensor, base_action: Tensor, state: KVState, **_: Any) -> StepOutput:
        """Inference step: cache this step's (unit key, value), then attend over the cache.

        Each batch row attends with a plain (1, d) @ (d, n) product: the batch-1 closed loop
        then runs exactly the arithmetic the shipped arm was evaluated with.
        """
        state = state.appended(unit(self.key(x)), self.value(x))
        keys, values, n = state
        q, scale = unit(self.query(x)), self.log_scale.exp()
        read = torch.cat(
            [
                (scale * (q[b : b + 1] @ keys[b, :n].T)).softmax(-1) @ values[b, :n]
                for b in range(x.shape[0])
            ]
        )
        ones = torch.ones(x.shape[0], dtype=x.dtype)
        return StepOutput(base_action + self.head(x, read), ones, ones, state)


class KVModel(Protocol):
    """A KV-cache memory ``KVRuntime`` can step (``KVMemory``, ``baselines.KVCacheMemory``)."""

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
