"""``mini``: the bundled, frozen vision-language policy for MiniGrid-Memory.

A small CNN over the 56x56 RGB agent view (one 8x8 patch per MiniGrid tile), a hashed
bag-of-words embedding of the instruction and the heading -> ``d_model`` features and 7
action logits. It was trained WITHOUT memory (behaviour cloning + DAgger, see
``aura_mem_dev/training``), so on MiniGrid-MemoryS11/S13 it cannot beat ~50%: remembering
the cue is AURA-Mem's job.

Proprio convention: ``proprio`` is a float32 array of shape (1,) holding the heading in
radians, MiniGrid direction * pi/2 (0 = east, pi/2 = south, clockwise because MiniGrid's y
axis points down); the policy rounds it to the nearest of the 4 grid headings.

Weights are loaded from ``model.safetensors`` + ``config.json`` (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aura_mem_ros.backbones.base import (
    Backbone,
    BackboneError,
    BackboneOutput,
    Observation,
    bundled_layer_dir,
)
from aura_mem_ros.backbones.registry import register_backbone
from aura_mem_ros.validation import from_dict, require_positive_ints

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "mini"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class MiniConfig:
    """Architecture of the mini policy; stored next to the weights and validated on load."""

    d_model: int = 128
    image_size: int = 56
    tile_size: int = 8
    conv_channels: int = 32
    conv2_channels: int = 64
    text_buckets: int = 256
    text_dim: int = 16
    max_tokens: int = 32
    num_headings: int = 4
    num_actions: int = 7

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        require_positive_ints(self)
        if self.image_size % self.tile_size:
            raise ValueError("image_size must be a multiple of tile_size")

    @property
    def grid(self) -> int:
        return self.image_size // self.tile_size

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MiniConfig:
        return from_dict(cls, data)


def tokenize(text: str, cfg: MiniConfig) -> list[int]:
    """Hashed word ids: stable across processes (crc32, unlike ``hash``), no vocabulary file."""
    words = text.lower().replace(",", " ").replace(".", " ").split()[: cfg.max_tokens]
    return [zlib.crc32(w.encode()) % cfg.text_buckets for w in words] or [0]


def heading_to_index(heading_rad: float, num_headings: int = 4) -> int:
    return round(heading_rad / (2 * math.pi / num_headings)) % num_headings


class MiniPolicyNet(nn.Module):
    """images (B,H,W,3) uint8, tokens (B,L) long, headings (B,) long -> features, logits."""

    def __init__(self, cfg: MiniConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Patchify at the tile size: every MiniGrid tile becomes one embedding.
        self.conv1 = nn.Conv2d(3, cfg.conv_channels, cfg.tile_size, stride=cfg.tile_size)
        self.conv2 = nn.Conv2d(cfg.conv_channels, cfg.conv2_channels, 3, padding=1)
        self.text = nn.EmbeddingBag(cfg.text_buckets, cfg.text_dim, mode="mean")
        self.heading = nn.Embedding(cfg.num_headings, cfg.text_dim)
        flat = cfg.conv2_channels * cfg.grid * cfg.grid
        self.fc = nn.Linear(flat + 2 * cfg.text_dim, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.num_actions)

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, headings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits, _ = self.forward_with_tiles(images, tokens, headings)
        return features, logits

    def forward_with_tiles(
        self, images: torch.Tensor, tokens: torch.Tensor, headings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> features (B, d_model), logits (B, actions) and the tile embeddings (B,
        conv_channels, grid, grid): what each tile looks like, before anything mixes in
        its neighbours or its place in the view."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        tiles = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(tiles)).flatten(1)
        z = torch.cat([x, self.text(tokens), self.heading(headings)], dim=1)
        features = torch.relu(self.fc(z))
        return features, self.head(features), tiles


def load_mini(model_dir: str | Path | None = None) -> tuple[MiniPolicyNet, MiniConfig, str]:
    """Build the net from ``config.json`` and load ``model.safetensors``; returns a model id."""
    from safetensors.torch import load_file  # local: safetensors is only needed to load

    directory = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise BackboneError(f"mini weights missing in {directory} (run `make train-default`)")
    cfg = MiniConfig.from_dict(json.loads(cfg_path.read_text())["backbone"])
    net = MiniPolicyNet(cfg)
    state = load_file(str(w_path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(
            f"mini weights do not match config: missing={missing} unexpected={unexpected}"
        )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    model_id = hashlib.sha256(w_path.read_bytes()).hexdigest()[:16]
    return net, cfg, model_id


class InstructionTokens:
    """The token tensor of the last instruction seen (instructions rarely change)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg  # anything with tokenize's fields (max_tokens, vocab)
        self._text: str | None = None
        self._tokens = torch.zeros(0)

    def __call__(self, instruction: str) -> torch.Tensor:
        if instruction != self._text:
            self._tokens = torch.tensor([tokenize(instruction, self.cfg)], dtype=torch.long)
            self._text = instruction
        return self._tokens


def square_rgb(obs: Observation, size: int, name: str) -> np.ndarray:
    """The observation's first image as RGB uint8 size x size (resized only for a foreign
    camera size; the simulators render at ``size``). Refuses anything else, naming ``name``."""
    if len(obs.images) < 1:
        raise BackboneError(f"{name} needs one RGB image")
    image = obs.images[0]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BackboneError(
            f"{name} needs an RGB uint8 HxWx3 image, got {image.shape} {image.dtype}"
        )
    if image.shape[:2] != (size, size):
        import cv2  # only for foreign camera sizes

        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


@register_backbone("mini")
class MiniBackbone(Backbone):
    """The frozen embedded policy; stateless (all memory lives in AURA-Mem).

    ``seen_objects`` (backbone_args ``{"seen_objects": true}``): the features end with the
    tile embeddings max-pooled over the view (``conv_channels`` numbers, the part
    ``seen_objects`` of ``feature_parts``): which kinds of tile are in sight, wherever they
    are. The policy's own features pass through a position-specific layer, so a key seen
    from two places gives two unrelated vectors; a memory written from them means "a key
    there", and a layer learns what that implies only for the views its bags showed. Same
    frozen weights, nothing retrained; a layer trained with it needs it when served.
    """

    chunk_size = 1
    action_dim = 7
    discrete = True
    num_images = 1
    proprio_dim = 1

    def __init__(
        self, model_dir: str | Path | None = None, seen_objects: bool = False, **_: Any
    ) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.net, self.cfg, self._model_id = load_mini(model_dir)
        if not isinstance(seen_objects, bool):
            raise BackboneError(f"mini: seen_objects must be true or false, got {seen_objects!r}")
        self.seen_objects = seen_objects
        self.d_model = self.cfg.d_model + (self.cfg.conv_channels if seen_objects else 0)
        self.action_dim = self.cfg.num_actions
        self._tokens = InstructionTokens(self.cfg)

    def step(self, obs: Observation) -> BackboneOutput:
        image = square_rgb(obs, self.cfg.image_size, "mini")
        if obs.proprio is None or np.asarray(obs.proprio).size < 1:
            raise BackboneError("mini needs proprio = [heading_rad]")
        heading_rad = float(np.asarray(obs.proprio, dtype=np.float32).reshape(-1)[0])
        if not math.isfinite(heading_rad):
            raise BackboneError("non-finite heading")
        heading = heading_to_index(heading_rad, self.cfg.num_headings)
        with torch.no_grad():
            feats, logits, tiles = self.net.forward_with_tiles(
                torch.from_numpy(np.array(image, copy=True))[None],
                self._tokens(obs.instruction),
                torch.tensor([heading], dtype=torch.long),
            )
            if self.seen_objects:
                feats = torch.cat([feats, tiles.amax(dim=(2, 3))], dim=1)
        return BackboneOutput(
            features=feats[0].numpy().astype(np.float32),
            action=logits.numpy().astype(np.float32).reshape(1, -1),
        )

    def feature_parts(self) -> dict[str, tuple[int, int]]:
        parts = {"policy": (0, self.cfg.d_model)}
        if self.seen_objects:
            parts["seen_objects"] = (self.cfg.d_model, self.d_model)
        return parts

    def bundled_aura_checkpoint(self, never_reset: bool = False) -> str | None:
        """``make train-default`` writes the AURA layers for these weights beside them."""
        return bundled_layer_dir(self._model_dir, never_reset)

    def model_id(self) -> str:
        return self._model_id
