"""From the node's parameters to what serves: the backbone, the AURA runtime, the action bounds.

The node (``ros/aura_node.py`` configure), the evaluator (``eval/replay.py``, from the
parameters a bag stores) and the trainer (``retrain/cli.py``) must turn the same parameters
into the same model, so those decisions live here once, without rclpy:

- ``backbone_args`` is a JSON object of the backbone's keyword arguments;
- ``gate_threshold < 0`` means "the checkpoint's own threshold";
- ``aura_checkpoint: bundled`` is the AURA layer shipped with the backbone (an untrained one
  when it ships none), ``""`` an untrained layer (residual zero: the backbone's actions);
  with ``reset_policy: never`` it is the backbone's never-reset layer where one is shipped
  (a layer trained per episode cannot tell a new episode from the one it just saw);
- a checkpoint must have been trained for the backbone's feature size and action chunk;
- the memory's identity (which weights wrote a state file) is derived from all of that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.backbones import Backbone, make_backbone
from aura_mem_ros.core.checkpoint import init_aura, load_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import AuraRuntime

BUNDLED = "bundled"  # aura_checkpoint value: the AURA layer shipped with the backbone, if any


def parse_backbone_args(text: str) -> dict[str, Any]:
    """``backbone_args`` parsed; ValueError with the offending text when it is not an object."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"backbone_args is not valid JSON ({exc}): {text!r}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"backbone_args must be a JSON object, got {text!r}")
    return value


def gate_threshold(value: float | None) -> float | None:
    """The ``gate_threshold`` parameter as the runtime takes it: negative = the default."""
    return None if value is None or float(value) < 0 else float(value)


class ActionClamp:
    """Per-dimension bounds; one value broadcasts to all dims; empty = no clamping."""

    def __init__(self, low: Sequence[float], high: Sequence[float], action_dim: int) -> None:
        if (len(low) == 0) != (len(high) == 0):
            raise ValueError("action_min and action_max must both be set or both be empty")
        self.enabled = len(low) > 0
        if not self.enabled:
            self.low = self.high = np.zeros(0, np.float32)
            return
        for label, seq in (("action_min", low), ("action_max", high)):
            if len(seq) not in (1, action_dim):
                raise ValueError(
                    f"{label} has {len(seq)} values; give 1 or action_dim={action_dim}"
                )
        self.low = np.broadcast_to(np.asarray(low, np.float32), (action_dim,)).copy()
        self.high = np.broadcast_to(np.asarray(high, np.float32), (action_dim,)).copy()
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError("action bounds must be finite")
        if np.any(self.low > self.high):
            raise ValueError(
                f"action_min {self.low.tolist()} exceeds action_max {self.high.tolist()}"
            )

    def apply(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        if not self.enabled:
            return action, False
        clamped = np.clip(action, self.low, self.high)
        return clamped, bool(np.any(clamped != action))


def memory_identity(checkpoint: str, config: dict[str, Any], seed: int) -> str:
    """Identifies the AURA weights: a state only makes sense for the layer that wrote it."""
    h = hashlib.sha256()
    directory = Path(checkpoint) if checkpoint else None
    if directory is not None and directory.is_dir():
        for name in ("aura.safetensors", "aura_config.json"):
            if (directory / name).is_file():
                h.update((directory / name).read_bytes())
    else:
        h.update(f"init:{seed}:{json.dumps(config, sort_keys=True)}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ServingSpec:
    """Which backbone serves, with which AURA layer and gate, within which action bounds."""

    backbone: str
    backbone_args: dict[str, Any] = field(default_factory=dict)
    aura_checkpoint: str = ""  # a directory, "bundled", or "" (untrained)
    gate: str = "learned"
    threshold: float | None = None  # None: the checkpoint's own
    seed: int = 0
    fused: bool = True  # the compiled step (core/fused.py) where the gate allows it
    never_reset: bool = False  # reset_policy never: "bundled" means the never-reset layer
    action_min: tuple[float, ...] = ()
    action_max: tuple[float, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides: Any) -> ServingSpec:
        """The spec from parameter values by node parameter name (the node's parameters, or
        those a bag stores); an override that is not None replaces the parameter of that name.

        A parameter that is absent takes the value that needs nothing shipped: no
        ``backbone_args``, an untrained layer, the learned gate at its own threshold, seed 0.
        """
        values = {**params, **{k: v for k, v in overrides.items() if v is not None}}
        name = values.get("backbone")
        if not name:
            raise ValueError("no backbone given (parameter 'backbone')")
        args = values.get("backbone_args") or "{}"
        return cls(
            backbone=str(name),
            backbone_args=dict(args) if isinstance(args, Mapping) else parse_backbone_args(args),
            aura_checkpoint=str(values.get("aura_checkpoint") or ""),
            gate=str(values.get("gate") or "learned"),
            threshold=gate_threshold(values.get("gate_threshold")),
            seed=int(values.get("seed") or 0),
            fused=bool(values.get("fused_step", True)),
            never_reset=str(values.get("reset_policy") or "") == "never",
            action_min=tuple(float(v) for v in values.get("action_min") or ()),
            action_max=tuple(float(v) for v in values.get("action_max") or ()),
        )

    def build_backbone(self) -> Backbone:
        return make_backbone(self.backbone, **self.backbone_args)

    def resolve_checkpoint(self, backbone: Backbone) -> str:
        """The checkpoint directory this spec serves on ``backbone`` ("" = untrained)."""
        if self.aura_checkpoint == BUNDLED:
            if self.never_reset and backbone.bundled_aura_checkpoint(never_reset=True):
                return backbone.bundled_aura_checkpoint(never_reset=True) or ""
            return backbone.bundled_aura_checkpoint() or ""
        return self.aura_checkpoint

    def never_reset_fallback(self, backbone: Backbone) -> bool:
        """True when ``reset_policy: never`` serves ``bundled`` but ``backbone`` ships no
        never-reset layer: the per-episode layer then runs a run it was not trained for (on
        MiniGrid-Memory it falls to chance once it holds one cue; the node warns)."""
        return (
            self.never_reset
            and self.aura_checkpoint == BUNDLED
            and not backbone.bundled_aura_checkpoint(never_reset=True)
        )

    def build_runtime(self, backbone: Backbone) -> tuple[AuraRuntime, str]:
        """The AuraRuntime for ``backbone`` and the memory's identity string (state files
        are bound to it). ValueError when the checkpoint was trained for another backbone."""
        checkpoint = self.resolve_checkpoint(backbone)
        if checkpoint:
            layer = load_aura(checkpoint)
            cfg = layer.config
            want = (backbone.d_model, backbone.chunk_size, backbone.action_dim, backbone.discrete)
            have = (cfg.d_model, cfg.chunk_size, cfg.action_dim, cfg.discrete)
            if want != have:
                raise ValueError(
                    f"aura_checkpoint {checkpoint} was trained for (d_model, chunk, "
                    f"action_dim, discrete)={have}, backbone {backbone.name} gives {want}"
                )
        else:
            cfg = AuraConfig.for_backbone(backbone)
            layer = init_aura(cfg, seed=self.seed)
        runtime = AuraRuntime(
            layer,
            gate=self.gate,
            threshold=self.threshold,
            seed=self.seed,
            fused=self.fused,
            device=backbone.device,
        )
        ident = f"{backbone.model_id()}:{memory_identity(checkpoint, cfg.to_dict(), self.seed)}"
        return runtime, ident

    def clamp(self, backbone: Backbone) -> ActionClamp:
        return ActionClamp(self.action_min, self.action_max, backbone.action_dim)
