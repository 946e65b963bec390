"""AuraRuntime: the batch-1, numpy-in/numpy-out, no-grad view of an AuraLayer.

This is what the ROS node and the closed-loop evaluators call once per control step. It owns
the only per-episode state (the 4,224-byte memory and a step counter for schedule gates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aura_mem_ros.core import memory
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.gates import GATES, get_gate

# Gates that need labels (the oracle) make no sense on a robot.
RUNTIME_GATES: tuple[str, ...] = tuple(name for name, g in GATES.items() if not g.needs_writes)


@dataclass(frozen=True)
class RuntimeStep:
    action: np.ndarray  # float32, same shape as the base action
    wrote: bool
    write_prob: float


class AuraRuntime:
    """Step an AuraLayer one observation at a time.

    gate: one of RUNTIME_GATES ("learned", "always", "never", "reconstruction", "similarity",
        "action_surprise", "random", "periodic"); threshold overrides that gate's default (for
        "learned" the config's threshold; for "random"/"periodic" it is the write rate).
    """

    def __init__(
        self, layer: AuraLayer, gate: str = "learned", threshold: float | None = None, seed: int = 0
    ):
        spec = get_gate(gate)
        if spec.needs_writes:
            raise ValueError(f"gate {gate!r} needs labelled writes and cannot run online")
        self.layer = layer.eval()
        self.config: AuraConfig = layer.config
        self.gate = gate
        self.threshold = threshold
        self.seed = seed
        self._generator = torch.Generator()
        self.reset()

    @property
    def state_nbytes(self) -> int:
        return memory.state_nbytes(self._state)

    def reset(self) -> None:
        self._state = self.layer.init_state(1)
        self._generator.manual_seed(self.seed)
        self.steps = 0
        self.writes = 0

    def select_action(self, features: np.ndarray, base_action: np.ndarray) -> RuntimeStep:
        c = self.config
        features = np.asarray(features, dtype=np.float32)
        base_action = np.asarray(base_action, dtype=np.float32)
        if features.shape != (c.d_model,):
            raise ValueError(f"features must have shape ({c.d_model},), got {features.shape}")
        if base_action.shape != (c.chunk_size, c.action_dim):
            raise ValueError(
                f"base_action must have shape ({c.chunk_size}, {c.action_dim}), "
                f"got {base_action.shape}"
            )
        if not (np.isfinite(features).all() and np.isfinite(base_action).all()):
            raise ValueError("features and base_action must be finite")
        with torch.no_grad():
            out = self.layer.step(
                torch.from_numpy(features)[None],
                torch.from_numpy(base_action)[None],
                self._state,
                gate=self.gate,
                threshold=self.threshold,
                t=self.steps,
                generator=self._generator,
            )
        self._state = out.state
        wrote = bool(out.write[0] > 0)
        self.steps += 1
        self.writes += int(wrote)
        return RuntimeStep(
            out.action[0].numpy().astype(np.float32), wrote, float(out.write_prob[0])
        )

    def state_bytes(self) -> bytes:
        return memory.state_to_bytes(self._state)

    def load_state_bytes(self, data: bytes) -> None:
        """Replace the memory with a serialised one; ValueError on wrong size / non-finite."""
        self._state = memory.state_from_bytes(bytes(data), self.config.d_key, self.config.d_val)
