"""Backbone -> AURA memory -> clamp, with persistence: the node's logic without rclpy.

Resets are decided here, by the node's ``reset_policy`` (``aura_mem_ros/reset_policy.py``):
an instruction change resets only under ``instruction_change``; ``~/reset_memory`` resets
unless the policy is ``never``; nothing else ever resets the memory.

Thread model: ``step`` runs on the node's single inference worker; ``set_instruction`` and
``reset`` come from executor callbacks. One lock guards the memory and the epoch counter;
the slow backbone call runs outside it, so a reset never waits for an inference. A result
computed across a reset or instruction change (epoch moved on) is discarded rather than
written into the fresh memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aura_mem_ros.backbones.base import Backbone, Observation
from aura_mem_ros.core.runtime import AuraRuntime
from aura_mem_ros.persistence import MemoryStore, RestoreResult, RestoreStatus, state_key
from aura_mem_ros.reset_policy import DEFAULT_RESET_POLICY, ResetPolicy
from aura_mem_ros.ros.stats import NodeStats
from aura_mem_ros.serving import ActionClamp


class InputRejectedError(Exception):
    """An input the node refuses (counted under ``reason``; memory untouched)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SupersededError(Exception):
    """Memory was reset or the instruction changed while this step was computing."""


SHORT_TEXT_CHARS = 80


def short_text(text: str, limit: int = SHORT_TEXT_CHARS) -> str:
    """What logs and /diagnostics show of text from outside (an instruction can be megabytes):
    at most ``limit`` characters, and its full size when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text.encode('utf-8', 'replace'))} bytes)"


@dataclass(frozen=True)
class StepResult:
    action: np.ndarray  # float32 (chunk_size, action_dim), clamped
    wrote: bool
    write_prob: float
    latency_ms: float
    clipped: bool
    step: int  # 1-based index of this step since start-up
    epoch: int
    state: bytes | None  # the memory state after a write (for persistence), else None


def _features_array(features: Any) -> Any:
    """numpy float32, except a torch tensor, which stays where the backbone left it (a GPU
    backbone's features go to the AURA runtime on the same device, not via the host)."""
    if hasattr(features, "device") and hasattr(features, "isfinite"):
        return features
    return np.asarray(features, np.float32)


def _all_finite(x: Any) -> bool:
    return bool(x.isfinite().all()) if hasattr(x, "isfinite") else bool(np.all(np.isfinite(x)))


class AuraPipeline:
    """One served step: backbone, AURA memory, clamp; resets, restores and persists memory.

    Built from a ``serving.ServingSpec`` (``runtime`` and ``model_id`` come from its
    ``build_runtime``); ``store`` is None when memory is not persisted; ``reset_policy``
    says which events clear memory (fixed for the pipeline's life: it also decides what the
    state file is bound to).
    """

    def __init__(
        self,
        backbone: Backbone,
        runtime: AuraRuntime,
        model_id: str,
        stats: NodeStats,
        clamp: ActionClamp,
        store: MemoryStore | None = None,
        log: Callable[[str], None] = print,
        reset_policy: ResetPolicy | str = DEFAULT_RESET_POLICY,
    ) -> None:
        self.backbone = backbone
        self.reset_policy = ResetPolicy(reset_policy)
        self.runtime = runtime
        self.model_id = model_id
        self.stats = stats
        self.clamp = clamp
        self.store = store
        self._log = log
        self._lock = threading.Lock()
        self._epoch = 0
        self._steps = 0
        self._instruction: str | None = None
        self.restore_result: RestoreResult | None = None
        self.last_action: np.ndarray | None = None

    @property
    def kv_bytes_per_step(self) -> int:
        """What a KV-cache over the same keys and values would add per step (fp32 K and V)."""
        cfg = self.runtime.config
        return (cfg.d_key + cfg.d_val) * 4

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def memory_key(self, instruction: str) -> bytes:
        """What the state file is bound to: the model and, when memory follows the
        instruction, the instruction too (see ``reset_policy``)."""
        bound = instruction if self.reset_policy.memory_follows_instruction else ""
        return state_key(self.model_id, bound)

    def set_instruction(self, text: str) -> str:
        """Apply a new instruction; returns what happened (first | unchanged | reset | kept)."""
        if not text.strip():
            raise InputRejectedError(
                "empty_instruction",
                "instruction is empty; keeping the current one "
                f"({short_text(self._instruction or '')!r})",
            )
        with self._lock:
            if text == self._instruction:
                return "unchanged"
            first = self._instruction is None
            old_key = None if first else self.memory_key(self._instruction or "")
            self._instruction = text
            self._epoch += 1
            key = self.memory_key(text)
            if first:
                self._restore(key)
                return "first"
            if self.store is not None and key != old_key:
                self.store.set_key(key)
            if not self.reset_policy.resets_on_instruction:
                return "kept"
            self._reset_locked()
            return "reset"

    def discard_in_flight(self) -> None:
        """Make a step that is computing now end in SupersededError instead of writing memory
        (serving stopped under it: its action will never be executed)."""
        with self._lock:
            self._epoch += 1

    def request_reset(self) -> bool:
        """The ``~/reset_memory`` service: clear memory unless the policy is ``never``.
        Returns whether memory was cleared."""
        if not self.reset_policy.resets_on_request:
            return False
        self.reset()
        return True

    def reset(self) -> None:
        """Clear memory now, whatever the policy. The state file is removed too."""
        with self._lock:
            self._epoch += 1
            self._reset_locked()
            if self.store is not None:
                self.store.discard()

    def _reset_locked(self) -> None:
        self.runtime.reset()
        self.backbone.reset()
        self.stats.record_reset()

    def _restore(self, key: bytes) -> None:
        """Resume memory from the state file when it is valid for this model and instruction."""
        if self.store is None:
            return
        result = self.store.restore(key)
        if result.status is RestoreStatus.RESTORED and result.payload is not None:
            try:
                self.runtime.load_state_bytes(result.payload)
            except ValueError as exc:
                self.runtime.reset()
                result = RestoreResult(
                    RestoreStatus.CORRUPT, f"{result.message} but the memory refused it: {exc}"
                )
        self.restore_result = result
        ok = result.status in (RestoreStatus.RESTORED, RestoreStatus.ABSENT)
        self._log(
            ("" if ok else "state file not used, starting with fresh memory: ") + result.message
        )

    @property
    def epoch(self) -> int:
        """Changes on every reset, instruction change and ``discard_in_flight``."""
        with self._lock:
            return self._epoch

    def step(
        self,
        images: Sequence[np.ndarray],
        proprio: np.ndarray | None,
        started: float | None = None,
        epoch: int | None = None,
    ) -> StepResult:
        """One inference on the newest frame. Raises InputRejectedError / SupersededError.

        ``epoch``: the epoch when the frame was accepted; a frame from an older one (memory
        reset, task changed or serving stopped since) is superseded before any work.
        """
        t0 = time.perf_counter() if started is None else started
        with self._lock:
            instruction = self._instruction
            if epoch is None:
                epoch = self._epoch
            elif epoch != self._epoch:
                self.stats.record_superseded()
                raise SupersededError()
        if instruction is None:
            raise InputRejectedError(
                "no_instruction",
                "no instruction received yet (publish on "
                "'instruction' or set the 'instruction' parameter)",
            )
        obs = Observation(tuple(images), instruction, proprio)
        try:
            out = self.backbone.step(obs)
            features = _features_array(out.features)
            base = np.asarray(out.action, np.float32)
        except Exception as exc:  # any backbone failure must leave the node serving
            raise InputRejectedError("backbone_error", f"{type(exc).__name__}: {exc}") from exc
        b = self.backbone
        if tuple(features.shape) != (b.d_model,) or base.shape != (b.chunk_size, b.action_dim):
            raise InputRejectedError(
                "backbone_error",
                f"backbone returned features {tuple(features.shape)} "
                f"and action {base.shape}, expected ({b.d_model},) and "
                f"({b.chunk_size}, {b.action_dim})",
            )
        if not (_all_finite(features) and np.all(np.isfinite(base))):
            raise InputRejectedError("backbone_error", "backbone returned NaN/inf")
        with self._lock:
            if epoch != self._epoch:
                self.stats.record_superseded()
                raise SupersededError()
            try:
                rs = self.runtime.select_action(features, base)
                state = self.runtime.state_bytes() if rs.wrote else None
            except Exception as exc:
                raise InputRejectedError("memory_error", f"{type(exc).__name__}: {exc}") from exc
            self._steps += 1
            step = self._steps
        action = np.asarray(rs.action, np.float32).reshape(b.chunk_size, b.action_dim)
        clipped = False
        if not b.discrete:  # clamping logits would change which action wins: never
            action, clipped = self.clamp.apply(action)
        latency_ms = (time.perf_counter() - t0) * 1e3
        self.stats.record_step(bool(rs.wrote), latency_ms, clipped)
        self.last_action = action
        return StepResult(
            action, bool(rs.wrote), float(rs.write_prob), latency_ms, clipped, step, epoch, state
        )

    def persist(self, result: StepResult) -> None:
        """Save the state written by ``result`` (call after publishing: the disk can wait)."""
        if self.store is None or result.state is None:
            return
        with self._lock:
            # A reset after the step must not be undone by saving the pre-reset memory.
            if result.epoch == self._epoch:
                self.store.record_write(result.state)
