"""``faulty_mini``: the embedded ``mini`` policy, except that it raises on a poisoned frame.

A real backbone fails for reasons a test cannot provoke on demand (CUDA out of memory, a
driver reset, a bug on a rare input). The poison is a frame whose first row is pure magenta,
a colour MiniGrid never draws, so normal frames behave exactly like ``mini`` and the harness
decides, frame by frame, when the backbone fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aura_mem_ros.backbones.base import Backbone, BackboneOutput, Observation
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.backbones.registry import register_backbone

POISON_RGB = (255, 0, 255)


class InjectedBackboneError(RuntimeError):
    """Raised on purpose (a plain RuntimeError, not BackboneError: the node must catch any)."""


def poison(rgb: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` that ``faulty_mini`` refuses."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    out[0, :, :] = POISON_RGB
    return out


def is_poisoned(rgb: np.ndarray) -> bool:
    return bool(rgb.ndim == 3 and rgb.shape[2] == 3 and np.all(rgb[0] == POISON_RGB))


@register_backbone("faulty_mini")
class FaultyMiniBackbone(Backbone):
    def __init__(self, **kwargs: Any) -> None:
        self._inner = MiniBackbone(**kwargs)
        self.d_model = self._inner.d_model
        self.chunk_size = self._inner.chunk_size
        self.action_dim = self._inner.action_dim
        self.discrete = self._inner.discrete
        self.num_images = self._inner.num_images
        self.proprio_dim = self._inner.proprio_dim
        self.faults_raised = 0

    def reset(self) -> None:
        self._inner.reset()

    def step(self, obs: Observation) -> BackboneOutput:
        if obs.images and is_poisoned(obs.images[0]):
            self.faults_raised += 1
            raise InjectedBackboneError(f"injected backbone fault #{self.faults_raised}")
        return self._inner.step(obs)

    def model_id(self) -> str:
        # Same weights as mini: a state file written by one is valid for the other.
        return self._inner.model_id()
