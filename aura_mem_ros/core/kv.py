"""The ``always_kv`` arm: a KV-cache memory residual that writes (appends) at every step.

Same read-out as AURA-Mem (a zero-initialised residual head on [x, read]), but the memory is
an unbounded cache of one 32-d key and one 32-d value per step (256 bytes/step, the model
card's KV baseline) read by softmax attention. It speaks core's ``forward_sequence`` so
``core.train.train_aura(..., gate="always")`` trains it, and offers an AuraRuntime-like
``select_action`` for closed loops.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aura_mem_ros.core.aura import ResidualHead, SequenceOutput
from aura_mem_ros.core.memory import unit
from aura_mem_ros.core.runtime import RuntimeStep

WEIGHTS_FILE = "kv.safetensors"
CONFIG_FILE = "kv_config.json"


@dataclass(frozen=True)
class KVConfig:
    d_model: int
    action_dim: int
    d_key: int = 32
    d_val: int = 32
    head_hidden: int = 128

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"KVConfig.{f.name} must be a positive int, got {value!r}")

    @property
    def bytes_per_step(self) -> int:
        return (self.d_key + self.d_val) * 4

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KVConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown KVConfig keys: {unknown}")
        return cls(**data)


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


class KVRuntime:
    """Batch-1 closed-loop view; the cache grows by ``bytes_per_step`` every step."""

    gate = "always"

    def __init__(self, model: KVMemory) -> None:
        self.model = model.eval()
        self.config = model.config
        self.reset()

    def reset(self) -> None:
        self._keys: list[Tensor] = []
        self._values: list[Tensor] = []
        self.steps = 0
        self.writes = 0

    @property
    def state_nbytes(self) -> int:
        return self.steps * self.config.bytes_per_step

    def select_action(self, features: np.ndarray, base_action: np.ndarray) -> RuntimeStep:
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
            self._keys.append(unit(self.model.key(x)))
            self._values.append(self.model.value(x))
            keys, values = torch.cat(self._keys), torch.cat(self._values)
            scores = self.model.log_scale.exp() * (unit(self.model.query(x)) @ keys.T)
            read = scores.softmax(-1) @ values
            base = torch.from_numpy(np.asarray(base_action, dtype=np.float32))[None]
            action = base + self.model.head(x, read)
        self.steps += 1
        self.writes += 1
        return RuntimeStep(action[0].numpy().astype(np.float32), True, 1.0)


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
