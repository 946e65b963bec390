"""``arm_mini``: the bundled, frozen policy of the MuJoCo arm task (an OpenVLA-OFT stand-in).

The shape of OFT on LIBERO, at CPU size: one third-person RGB image (64x64), the
instruction and 8-D proprio (end-effector xyz + axis-angle, 2 finger joints) -> an 8 x 7
chunk of normalised end-effector deltas in [-1, 1] from a continuous L1 head, and the
features AURA-Mem reads: the hidden state that head reads (OFT's action hidden states) and
the visual keypoints, ``d_model = action_hidden + 2 * keypoints``.

Why the keypoints too: OFT's action hidden states attend over every image token of a 7B
model and carry much of the scene; this small trunk keeps only what its own next chunk
needs. Measured with a linear probe on the first frame of 300 held-out demonstrations
(``aura_mem_dev/arm``): the lit cue pad is read from the head's input 58% of the time
(chance 33%), from the keypoints 100%. Which internals the memory reads is the backbone's
interface choice; nothing about training changes.

    image  -> conv 5x5/2, 3x3/2 (ReLU) -> 16x16 maps -> spatial softmax keypoints (x, y)
                                        -> conv 3x3/2 -> flatten -> linear (visual embedding)
    text   -> hashed bag of words (EmbeddingBag)                     (no vocabulary file)
    proprio-> (p - mean) / std -> linear                              (stats from the demos)
    [keypoints, vis, text, proprio] -> MLP -> action hidden -> linear -> 8 x 7 chunk
    features (what the memory reads) = [action hidden, keypoints]

Spatial-softmax keypoints (Levine et al. 2016, robomimic) give the expected image position
of each feature map: a 3-pixel block is found far more reliably than through a flattened
map alone.

It was trained by behaviour cloning WITHOUT memory (``aura_mem_dev/arm``), so it completes
the pick-and-place but cannot know which pad lit up once the cue is dark.

Weights: ``model.safetensors`` + ``config.json`` (architecture + proprio statistics), never
pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
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
from aura_mem_ros.backbones.mini import InstructionTokens, square_rgb
from aura_mem_ros.backbones.registry import register_backbone

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "arm_mini"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ArmMiniConfig:
    """Architecture (+ proprio normalisation) of arm_mini; saved beside the weights."""

    action_hidden: int = 128
    image_size: int = 64
    conv_channels: tuple[int, int, int] = (16, 32, 64)
    keypoints: int = 32
    visual_dim: int = 128
    text_buckets: int = 256
    text_dim: int = 16
    max_tokens: int = 32
    proprio_dim: int = 8
    proprio_hidden: int = 32
    trunk_hidden: int = 256
    chunk_size: int = 8
    action_dim: int = 7
    proprio_mean: tuple[float, ...] = field(default=(0.0,) * 8)
    proprio_std: tuple[float, ...] = field(default=(1.0,) * 8)

    def __post_init__(self) -> None:
        for name in (
            "action_hidden",
            "image_size",
            "keypoints",
            "visual_dim",
            "text_buckets",
            "text_dim",
            "max_tokens",
            "proprio_dim",
            "proprio_hidden",
            "trunk_hidden",
            "chunk_size",
            "action_dim",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ArmMiniConfig.{name} must be a positive int, got {value!r}")
        if self.image_size % 8:
            raise ValueError("image_size must be a multiple of 8 (three stride-2 convs)")
        if len(self.conv_channels) != 3 or min(self.conv_channels) <= 0:
            raise ValueError("conv_channels must be three positive ints")
        if len(self.proprio_mean) != self.proprio_dim or len(self.proprio_std) != self.proprio_dim:
            raise ValueError("proprio_mean and proprio_std need proprio_dim values")
        if min(self.proprio_std) <= 0:
            raise ValueError("proprio_std must be positive")

    @property
    def d_model(self) -> int:
        """Width of the features the memory reads: action hidden state + keypoints (x, y)."""
        return self.action_hidden + 2 * self.keypoints

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmMiniConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ArmMiniConfig keys: {unknown}")
        data = dict(data)
        for key in ("conv_channels", "proprio_mean", "proprio_std"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


class ArmPolicyNet(nn.Module):
    """images (B,S,S,3) uint8, tokens (B,L), proprio (B,8) raw -> features (B,D), chunk (B,8,7).

    features = [action hidden state (the head's input), keypoints]: D = cfg.d_model.
    """

    def __init__(self, cfg: ArmMiniConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c1, c2, c3 = cfg.conv_channels
        self.conv1 = nn.Conv2d(3, c1, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.keypoint_maps = nn.Conv2d(c2, cfg.keypoints, 1)
        self.keypoint_log_temp = nn.Parameter(torch.zeros(()))
        side = cfg.image_size // 4
        grid = torch.linspace(-1.0, 1.0, side)
        self.register_buffer("grid_x", grid.repeat(side), persistent=False)  # (side*side,)
        self.register_buffer("grid_y", grid.repeat_interleave(side), persistent=False)
        cells = (cfg.image_size // 8) ** 2
        self.visual = nn.Linear(c3 * cells, cfg.visual_dim)
        self.text = nn.EmbeddingBag(cfg.text_buckets, cfg.text_dim, mode="mean")
        self.proprio = nn.Linear(cfg.proprio_dim, cfg.proprio_hidden)
        z_dim = 2 * cfg.keypoints + cfg.visual_dim + cfg.text_dim + cfg.proprio_hidden
        self.trunk1 = nn.Linear(z_dim, cfg.trunk_hidden)
        self.trunk2 = nn.Linear(cfg.trunk_hidden, cfg.action_hidden)
        self.head = nn.Linear(cfg.action_hidden, cfg.chunk_size * cfg.action_dim)
        self.register_buffer("proprio_mean", torch.tensor(cfg.proprio_mean, dtype=torch.float32))
        self.register_buffer("proprio_std", torch.tensor(cfg.proprio_std, dtype=torch.float32))

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, proprio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))  # (B, c2, S/4, S/4)
        # softmax over each map's positions -> its expected (x, y) in [-1, 1]
        attn = torch.softmax(
            self.keypoint_maps(x).flatten(2) / self.keypoint_log_temp.exp(), dim=-1
        )  # (B, K, S/4 * S/4)
        keypoints = torch.cat([attn @ self.grid_x, attn @ self.grid_y], dim=1)  # (B, 2K)
        vis = torch.relu(self.visual(torch.relu(self.conv3(x)).flatten(1)))
        prop = torch.relu(self.proprio((proprio - self.proprio_mean) / self.proprio_std))
        z = torch.cat([keypoints, vis, self.text(tokens), prop], dim=1)
        hidden = torch.relu(self.trunk2(torch.relu(self.trunk1(z))))
        chunk = self.head(hidden).unflatten(-1, (self.cfg.chunk_size, self.cfg.action_dim))
        return torch.cat([hidden, keypoints], dim=1), chunk


def load_arm_mini(
    model_dir: str | Path | None = None,
) -> tuple[ArmPolicyNet, ArmMiniConfig, str]:
    """Build the net from ``config.json`` and load ``model.safetensors``; returns a model id."""
    from safetensors.torch import load_file

    directory = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise BackboneError(f"arm_mini weights missing in {directory} (run `make train-arm`)")
    cfg = ArmMiniConfig.from_dict(json.loads(cfg_path.read_text())["backbone"])
    net = ArmPolicyNet(cfg)
    state = load_file(str(w_path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BackboneError(
            f"arm_mini weights do not match config: missing={missing} unexpected={unexpected}"
        )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    model_id = hashlib.sha256(w_path.read_bytes()).hexdigest()[:16]
    return net, cfg, model_id


@register_backbone("arm_mini")
class ArmMiniBackbone(Backbone):
    """The frozen arm policy; stateless (all memory lives in AURA-Mem)."""

    discrete = False
    num_images = 1

    def __init__(self, model_dir: str | Path | None = None, **_: Any) -> None:
        self._model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        self.net, self.cfg, self._model_id = load_arm_mini(model_dir)
        self.d_model = self.cfg.d_model
        self.chunk_size = self.cfg.chunk_size
        self.action_dim = self.cfg.action_dim
        self.proprio_dim = self.cfg.proprio_dim
        self._tokens = InstructionTokens(self.cfg)

    def _proprio(self, obs: Observation) -> np.ndarray:
        if obs.proprio is None:
            raise BackboneError("arm_mini needs 8-D proprio (eef xyz, eef axis-angle, 2 fingers)")
        proprio = np.asarray(obs.proprio, dtype=np.float32).reshape(-1)
        if proprio.shape != (self.cfg.proprio_dim,):
            raise BackboneError(
                f"arm_mini needs {self.cfg.proprio_dim} proprio values, got {proprio.shape[0]}"
            )
        if not all(math.isfinite(float(v)) for v in proprio):
            raise BackboneError("non-finite proprio")
        return proprio

    def step(self, obs: Observation) -> BackboneOutput:
        image = square_rgb(obs, self.cfg.image_size, "arm_mini")
        proprio = self._proprio(obs)
        with torch.no_grad():
            feats, chunk = self.net(
                torch.from_numpy(np.array(image, copy=True))[None],
                self._tokens(obs.instruction),
                torch.from_numpy(proprio)[None],
            )
        return BackboneOutput(
            features=feats[0].numpy().astype(np.float32),
            action=chunk[0].numpy().astype(np.float32),
        )

    def bundled_aura_checkpoint(self, never_reset: bool = False) -> str | None:
        """``make train-arm`` writes the AURA layers for these weights beside them."""
        return bundled_layer_dir(self._model_dir, never_reset)

    def model_id(self) -> str:
        return self._model_id
