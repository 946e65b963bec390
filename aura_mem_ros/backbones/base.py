"""The one small interface every frozen backbone speaks.

A backbone maps an observation (camera images, instruction, proprioception) to the
features the memory reads (``d_model`` floats) and the base action chunk that the AURA
layer corrects with a residual. Backbones are frozen: ``step`` never trains anything.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Observation:
    """One synchronised observation, as the node hands it to a backbone.

    images: RGB uint8 arrays (H, W, 3), primary camera first, then e.g. the wrist camera.
    instruction: the natural-language task.
    proprio: float32 1-D robot state, or None when the robot publishes none.
    """

    images: tuple[np.ndarray, ...]
    instruction: str
    proprio: np.ndarray | None = None


@dataclass(frozen=True)
class BackboneOutput:
    """features: float32 (d_model,); action: float32 (chunk_size, action_dim).

    For a discrete-action backbone ``action`` holds logits with chunk_size 1. A GPU backbone
    may return ``features`` as a torch tensor on its ``device`` (the AURA runtime is placed
    there, so the vector never crosses to the host).
    """

    features: Any
    action: np.ndarray


class BackboneError(RuntimeError):
    """A backbone could not produce an action for this observation (the node goes safe)."""


# Where a backbone's training writes its AURA layers, beside the backbone's weights.
AURA_DIR = "aura"
NEVER_RESET_AURA_DIR = "aura_never_reset"  # the layer for reset_policy: never


def bundled_layer_dir(model_dir: Path, never_reset: bool = False) -> str | None:
    """The AURA layer shipped in ``model_dir`` (the never-reset one with ``never_reset``), or
    None where it holds none."""
    aura_dir = model_dir / (NEVER_RESET_AURA_DIR if never_reset else AURA_DIR)
    return str(aura_dir) if (aura_dir / "aura_config.json").is_file() else None


class Backbone(ABC):
    """A frozen policy. Subclasses set the class attributes and implement ``step``."""

    name: str = "base"
    d_model: int
    chunk_size: int
    action_dim: int
    discrete: bool = False
    num_images: int = 1
    proprio_dim: int | None = None
    device: str = "cpu"  # where ``features`` live; the AURA runtime runs there

    def describe(self) -> str:
        """One line for the configure log: the conventions and checks that are active."""
        return f"{self.name}: device={self.device}"

    def reset(self) -> None:  # noqa: B027 - most backbones are stateless
        """Forget any per-episode state (called when memory is reset)."""

    @abstractmethod
    def step(self, obs: Observation) -> BackboneOutput:
        """Map one observation to features and the base action chunk."""

    def feature_parts(self) -> dict[str, tuple[int, int]]:
        """Named column ranges [start, stop) of ``features``, for a backbone whose features
        have parts (``mini``'s "seen_objects": what is in view, not where). The layer's
        value can read one of them only (``aura-mem-train --value-reads PART``)."""
        return {}

    def bundled_aura_checkpoint(self, never_reset: bool = False) -> str | None:
        """The AURA layer shipped for these exact weights (``aura_checkpoint: bundled``), if
        any; ``never_reset``: the one trained for ``reset_policy: never``, if any."""
        return None

    def model_id(self) -> str:
        """A stable identifier of the weights, used to refuse a state file from another model."""
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]
