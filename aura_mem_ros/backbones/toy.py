"""``toy``: a small deterministic backbone for tests and smoke runs (no weights, no GPU).

Features are a fixed random projection of a coarse image summary, a hash of the instruction
and the proprio vector, so different images, tasks or robot states give different features
and actions, and the same inputs always give the same outputs. ``delay_s`` simulates a slow
model (to exercise frame dropping), ``load_delay_s`` a slow load (configure, start-up
signals); nothing here is a policy.
"""

from __future__ import annotations

import hashlib
import time

import cv2
import numpy as np

from aura_mem_ros.backbones.base import Backbone, BackboneError, BackboneOutput, Observation
from aura_mem_ros.backbones.registry import register_backbone

_GRID = 4  # images are summarised as a GRID x GRID x 3 thumbnail
_TEXT_DIMS = 8


@register_backbone("toy")
class ToyBackbone(Backbone):
    def __init__(
        self,
        d_model: int = 16,
        chunk_size: int = 2,
        action_dim: int = 3,
        num_images: int = 1,
        proprio_dim: int | None = None,
        discrete: bool = False,
        delay_s: float = 0.0,
        seed: int = 0,
        load_delay_s: float = 0.0,
    ) -> None:
        for label, value in (
            ("d_model", d_model),
            ("chunk_size", chunk_size),
            ("action_dim", action_dim),
            ("num_images", num_images),
        ):
            if int(value) < 1:
                raise ValueError(f"toy backbone: {label} must be >= 1, got {value}")
        if discrete and chunk_size != 1:
            raise ValueError("toy backbone: a discrete backbone has chunk_size 1 (logits)")
        if proprio_dim is not None and proprio_dim < 1:
            raise ValueError("toy backbone: proprio_dim must be >= 1 or None")
        if delay_s < 0 or load_delay_s < 0:
            raise ValueError("toy backbone: delay_s and load_delay_s must be >= 0")
        if load_delay_s:
            time.sleep(load_delay_s)  # a big model's load (what configure waits for)
        self.d_model = int(d_model)
        self.chunk_size = int(chunk_size)
        self.action_dim = int(action_dim)
        self.num_images = int(num_images)
        self.proprio_dim = None if proprio_dim is None else int(proprio_dim)
        self.discrete = bool(discrete)
        self.delay_s = float(delay_s)
        self.seed = int(seed)
        in_dim = self.num_images * _GRID * _GRID * 3 + _TEXT_DIMS + (self.proprio_dim or 0)
        rng = np.random.default_rng(seed)
        self._w_in = rng.standard_normal((in_dim, self.d_model)).astype(np.float32)
        self._w_in /= np.sqrt(in_dim)
        self._w_out = rng.standard_normal((self.d_model, self.chunk_size * self.action_dim))
        self._w_out = (self._w_out / np.sqrt(self.d_model)).astype(np.float32)

    def step(self, obs: Observation) -> BackboneOutput:
        if len(obs.images) != self.num_images:
            raise BackboneError(
                f"toy backbone needs {self.num_images} image(s), got {len(obs.images)}"
            )
        if (obs.proprio is None) != (self.proprio_dim is None):
            raise BackboneError(
                f"toy backbone expects proprio_dim={self.proprio_dim}, got "
                f"{None if obs.proprio is None else obs.proprio.shape}"
            )
        if obs.proprio is not None and obs.proprio.shape != (self.proprio_dim,):
            raise BackboneError(
                f"toy backbone: proprio shape {obs.proprio.shape}, expected ({self.proprio_dim},)"
            )
        if self.delay_s:
            time.sleep(self.delay_s)
        parts = [_thumbnail(img) for img in obs.images]
        parts.append(_text_code(obs.instruction))
        if obs.proprio is not None:
            parts.append(obs.proprio.astype(np.float32))
        x = np.concatenate(parts)
        features = np.tanh(x @ self._w_in).astype(np.float32)
        action = np.tanh(features @ self._w_out).reshape(self.chunk_size, self.action_dim)
        return BackboneOutput(features=features, action=action.astype(np.float32))

    def model_id(self) -> str:
        spec = (
            f"toy:{self.d_model}:{self.chunk_size}:{self.action_dim}:{self.num_images}:"
            f"{self.proprio_dim}:{self.discrete}:{self.seed}"
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _thumbnail(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BackboneError(
            f"toy backbone wants RGB uint8 (H, W, 3), got {image.dtype} {image.shape}"
        )
    small = cv2.resize(image, (_GRID, _GRID), interpolation=cv2.INTER_AREA)
    return small.reshape(-1).astype(np.float32) / 127.5 - 1.0


def _text_code(text: str) -> np.ndarray:
    digest = hashlib.sha256(text.encode()).digest()[:_TEXT_DIMS]
    return np.frombuffer(digest, np.uint8).astype(np.float32) / 127.5 - 1.0
