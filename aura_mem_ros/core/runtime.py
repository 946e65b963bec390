"""AuraRuntime: the batch-1, numpy-out, no-grad view of an AuraLayer.

This is what the ROS node and the closed-loop evaluators call once per control step. It owns
the only per-episode state (the 4,224-byte memory and a step counter for schedule gates).
``MemoryRuntime`` is the part of it a closed loop relies on, which the KV-cache baselines'
``kv.KVRuntime`` offers too; the node additionally persists ``AuraRuntime``'s state bytes.
On ``device="cuda"`` the layer and the memory live on the GPU and features may arrive as
device tensors (a GPU backbone's hidden states), so no feature vector crosses to the host:
per step only the action chunk, the write flag and its probability come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from aura_mem_ros.core import memory
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.gates import FUSED_GATES, GATES, get_gate

# Gates that need labels (the oracle) make no sense on a robot.
RUNTIME_GATES: tuple[str, ...] = tuple(name for name, g in GATES.items() if not g.needs_writes)


def checked_step_inputs(features: Any, base_action: Any, c: Any) -> tuple[np.ndarray, np.ndarray]:
    """One step's inputs as contiguous float32 arrays of the configured shapes ``(d_model,)``
    and ``(chunk_size, action_dim)``; ValueError on a wrong shape or NaN/inf (every memory
    runtime checks the same way before it touches its state)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    base_action = np.ascontiguousarray(base_action, dtype=np.float32)
    if features.shape != (c.d_model,):
        raise ValueError(f"features must have shape ({c.d_model},), got {features.shape}")
    if base_action.shape != (c.chunk_size, c.action_dim):
        raise ValueError(
            f"base_action must have shape ({c.chunk_size}, {c.action_dim}), got {base_action.shape}"
        )
    if not (np.isfinite(features).all() and np.isfinite(base_action).all()):
        raise ValueError("features and base_action must be finite")
    return features, base_action


@dataclass(frozen=True)
class RuntimeStep:
    action: np.ndarray  # float32, same shape as the base action
    wrote: bool
    write_prob: float


class MemoryRuntime(Protocol):
    """What a memory offers a closed loop, one observation at a time (``AuraRuntime``,
    ``kv.KVRuntime``): features and the backbone's base action in, the corrected action and
    whether the memory was written out."""

    gate: str
    steps: int  # since the last reset
    writes: int  # since the last reset

    @property
    def state_nbytes(self) -> int:
        """Bytes of memory state held now."""
        ...

    def reset(self) -> None:
        """Forget everything (a new episode or task)."""
        ...

    def select_action(self, features: np.ndarray, base_action: np.ndarray) -> RuntimeStep: ...


class AuraRuntime:
    """Step an AuraLayer one observation at a time.

    gate: one of RUNTIME_GATES ("learned", "always", "never", "reconstruction", "similarity",
        "action_surprise", "random", "periodic"); threshold overrides that gate's default (for
        "learned" the config's threshold; for "random"/"periodic" it is the write rate).
    fused: evaluate the learned/always/never gates with ``core/fused.py``'s compiled kernel
        (~6x faster at batch 1, but numba and LLVM add ~130 MB of resident memory) rather
        than the reference ``AuraLayer.step``; both compute the same function. The other
        gates always take the reference path. The kernel is CPU-only: on CUDA the reference
        step runs on device tensors (``step_path`` says which path runs).
    device: where the layer, the memory and the step run ("cpu", "cuda", "cuda:1", ...).
    """

    def __init__(
        self,
        layer: AuraLayer,
        gate: str = "learned",
        threshold: float | None = None,
        seed: int = 0,
        fused: bool = True,
        device: str | torch.device = "cpu",
    ):
        spec = get_gate(gate)
        if spec.needs_writes:
            raise ValueError(f"gate {gate!r} needs labelled writes and cannot run online")
        self.device = torch.device(device)
        self.layer = layer.eval().to(self.device)
        self.config: AuraConfig = layer.config
        self.gate = gate
        self.threshold = threshold
        self.seed = seed
        self._generator = torch.Generator(device=self.device)
        self._fused = None
        if fused and gate in FUSED_GATES and self.device.type == "cpu":
            from aura_mem_ros.core.fused import FusedStep  # loads numba: only when used

            self._fused = FusedStep(layer, gate)
        self.reset()

    @property
    def state_nbytes(self) -> int:
        return memory.state_nbytes(self._state)

    @property
    def step_path(self) -> str:
        """Which implementation runs: "fused" (numba, CPU) or "torch-<device type>"."""
        return "fused" if self._fused is not None else f"torch-{self.device.type}"

    def _set_state(self, state: memory.MemoryState) -> None:
        self._state = state
        if self._fused is not None:
            # numpy views of the batch-1 state tensors, which the fused step writes in place
            self._w_view, self._m_view = state.W[0].numpy(), state.m[0].numpy()

    def reset(self) -> None:
        self._set_state(self.layer.init_state(1))
        self._generator.manual_seed(self.seed)
        self.steps = 0
        self.writes = 0

    def select_action(
        self, features: np.ndarray | torch.Tensor, base_action: np.ndarray
    ) -> RuntimeStep:
        """features: (d_model,) numpy, or a torch tensor (on this runtime's device, ideally);
        base_action: (chunk, action_dim). Raises ValueError on wrong shapes or NaN/inf."""
        if isinstance(features, torch.Tensor) or self.device.type != "cpu":
            return self._device_step(features, base_action)
        c = self.config
        features, base_action = checked_step_inputs(features, base_action, c)
        if self._fused is not None:
            threshold = c.threshold if self.threshold is None else self.threshold
            action, wrote, prob = self._fused(
                features, base_action, self._w_view, self._m_view, threshold
            )
        else:
            action, wrote, prob = self._reference_step(features, base_action)
        self.steps += 1
        self.writes += int(wrote)
        return RuntimeStep(action, wrote, prob)

    def _device_step(
        self, features: np.ndarray | torch.Tensor, base_action: np.ndarray
    ) -> RuntimeStep:
        """The reference step on ``self.device``; one device-to-host copy per step."""
        c = self.config
        x = torch.as_tensor(features, dtype=torch.float32, device=self.device)
        base = torch.as_tensor(np.asarray(base_action, np.float32), device=self.device)
        if tuple(x.shape) != (c.d_model,):
            raise ValueError(f"features must have shape ({c.d_model},), got {tuple(x.shape)}")
        if tuple(base.shape) != (c.chunk_size, c.action_dim):
            raise ValueError(
                f"base_action must have shape ({c.chunk_size}, {c.action_dim}), "
                f"got {tuple(base.shape)}"
            )
        with torch.no_grad():
            out = self.layer.step(
                x[None],
                base[None],
                self._state,
                gate=self.gate,
                threshold=self.threshold,
                t=self.steps,
                generator=self._generator,
            )
            finite = torch.isfinite(x).all() & torch.isfinite(base).all()
            # action, write, probability and the input check in ONE transfer (one sync)
            packed = (
                torch.cat(
                    [
                        out.action[0].reshape(-1),
                        out.write[:1],
                        out.write_prob[:1],
                        finite[None].float(),
                    ]
                )
                .cpu()
                .numpy()
            )
        if packed[-1] != 1.0:  # the new state is dropped: memory untouched
            raise ValueError("features and base_action must be finite")
        self._set_state(out.state)
        wrote = bool(packed[-3] > 0)
        self.steps += 1
        self.writes += int(wrote)
        action = packed[: c.chunk_size * c.action_dim].reshape(c.chunk_size, c.action_dim)
        return RuntimeStep(action.astype(np.float32), wrote, float(packed[-2]))

    def _reference_step(
        self, features: np.ndarray, base_action: np.ndarray
    ) -> tuple[np.ndarray, bool, float]:
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
        self._set_state(out.state)
        action = out.action[0].numpy().astype(np.float32)
        return action, bool(out.write[0] > 0), float(out.write_prob[0])

    def state_bytes(self) -> bytes:
        return memory.state_to_bytes(self._state)

    def load_state_bytes(self, data: bytes) -> None:
        """Replace the memory with a serialised one; ValueError on wrong size / non-finite."""
        c = self.config
        state = memory.state_from_bytes(bytes(data), c.d_key, c.d_val)
        self._set_state(memory.MemoryState(*(t.to(self.device) for t in state)))
