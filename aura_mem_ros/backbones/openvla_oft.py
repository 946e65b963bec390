"""``openvla_oft``: OpenVLA-OFT 7B (LIBERO setup) as a frozen backbone, from a LOCAL directory.

What the memory reads: the last-layer hidden states of the 56 action tokens (8 steps x 7
dims, 4096 wide), reduced to one 4096-vector (``feature_reduction``). What it corrects: the
unnormalised 8 x 7 action chunk of the L1 regression head.

Refuses to start, with a message saying what to fix, when: the directory or its files are
missing (nothing is ever downloaded), the unnormalisation key is absent, CUDA is absent,
the transformers version is not the OFT fork's 4.40.1 (newer versions silently give the same
action for every image), or the ``prismatic`` package (the OFT repo, which defines the
heads) is not importable. After loading, a self-check feeds two different images and
refuses if the actions are identical.

NEVER RUN AGAINST THE REAL WEIGHTS in this project (no GPU with the weights here): the
preprocessing, proprio normalisation, feature reduction, call sequence and every refusal
are tested on CPU with a stand-in of the same call signature. Known approximation: images are
resized with OpenCV (JPEG round trip + area/Lanczos resize), not TensorFlow's lanczos3.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aura_mem_ros.backbones.base import Backbone, BackboneError, BackboneOutput, Observation
from aura_mem_ros.backbones.registry import register_backbone

IMAGE_SIZE = 224
NUM_ACTIONS_CHUNK = 8
ACTION_DIM = 7
PROPRIO_DIM = 8
HIDDEN_DIM = 4096
CENTER_CROP_AREA = 0.9
JPEG_QUALITY = 95  # TensorFlow's encode_jpeg default, used by the OFT training pipeline
REQUIRED_TRANSFORMERS = "4.40.1"  # the moojink/transformers-openvla-oft fork reports this
FEATURE_REDUCTIONS = ("mean", "first_step")
SELF_CHECK_MIN_DIFF = 1e-4


def build_prompt(instruction: str) -> str:
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


def prepare_image(image: np.ndarray, center_crop: bool = True) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> RGB uint8 (224, 224, 3) the way OFT was trained.

    JPEG round trip (the training images were JPEG-encoded), resize to 224, then optionally
    the 90%-area center crop resized back to 224 (what the LIBERO evaluation used).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise BackboneError(
            f"openvla_oft wants RGB uint8 (H, W, 3), got {image.dtype} {image.shape}"
        )
    if image.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise BackboneError("JPEG encoding of the camera image failed")
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
        shrinking = image.shape[0] > IMAGE_SIZE or image.shape[1] > IMAGE_SIZE
        image = cv2.resize(
            image,
            (IMAGE_SIZE, IMAGE_SIZE),
            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4,
        )
    if center_crop:
        crop = round(IMAGE_SIZE * math.sqrt(CENTER_CROP_AREA))
        off = (IMAGE_SIZE - crop) // 2
        image = cv2.resize(
            image[off : off + crop, off : off + crop],
            (IMAGE_SIZE, IMAGE_SIZE),
            interpolation=cv2.INTER_LINEAR,
        )
    return np.ascontiguousarray(image, dtype=np.uint8)


def normalize_proprio(proprio: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """bounds_q99 normalisation to [-1, 1] (masked dims pass through), as in OFT's eval code."""
    low = np.asarray(stats["q01"], np.float32)
    high = np.asarray(stats["q99"], np.float32)
    mask = np.asarray(stats.get("mask", np.ones_like(low, bool)), bool)
    if proprio.shape != low.shape:
        raise BackboneError(f"proprio has shape {proprio.shape}, statistics expect {low.shape}")
    scaled = 2.0 * (proprio - low) / (high - low + 1e-8) - 1.0
    return np.clip(np.where(mask, scaled, proprio), -1.0, 1.0).astype(np.float32)


def reduce_action_hidden_states(hidden: Any, mode: str = "mean") -> np.ndarray:
    """(1, 56, 4096) or (56, 4096) action-token hidden states -> float32 (4096,).

    mean: over all 56 tokens (the whole chunk). first_step: over the 7 tokens of the first
    action of the chunk (the one executed next).
    """
    arr = hidden.float().cpu().numpy() if hasattr(hidden, "float") else np.asarray(hidden)
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    tokens = NUM_ACTIONS_CHUNK * ACTION_DIM
    if arr.ndim != 2 or arr.shape[0] != tokens:
        raise BackboneError(
            f"action hidden states have shape {arr.shape}, expected (1, {tokens}, hidden)"
        )
    if mode == "mean":
        out = arr.mean(axis=0)
    elif mode == "first_step":
        out = arr[:ACTION_DIM].mean(axis=0)
    else:
        raise ValueError(f"feature_reduction {mode!r} not in {FEATURE_REDUCTIONS}")
    if not np.all(np.isfinite(out)):
        raise BackboneError("action hidden states contain NaN/inf")
    return out.astype(np.float32)


def _strip_ddp_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def find_one(model_dir: Path, pattern: str) -> Path:
    hits = sorted(
        p
        for p in model_dir.iterdir()
        if pattern in p.name and "checkpoint" in p.name and p.suffix == ".pt"
    )
    if len(hits) != 1:
        raise BackboneError(
            f"expected exactly one '{pattern}*checkpoint*.pt' in {model_dir}, "
            f"found {[p.name for p in hits]}"
        )
    return hits[0]


@dataclass
class OftComponents:
    """Everything ``step`` calls. ``vla.predict_action`` and ``processor`` follow OFT's API."""

    vla: Any
    processor: Any
    action_head: Any
    proprio_projector: Any
    norm_stats: dict[str, Any]
    device: str = "cuda"
    dtype: Any = None  # torch dtype of the inputs; bfloat16 for the real model


def check_model_dir(model_dir: str, unnorm_key: str, use_proprio: bool) -> dict[str, Any]:
    """File checks that need neither CUDA nor transformers. Returns the dataset statistics."""
    path = Path(model_dir).expanduser()
    if not model_dir or not path.is_dir():
        raise BackboneError(
            f"openvla_oft: model_dir {model_dir!r} is not a local directory. Nothing is "
            "downloaded here: fetch e.g. moojink/openvla-7b-oft-finetuned-libero-10 on a machine "
            "with internet (huggingface-cli download ... --local-dir DIR) and pass DIR."
        )
    for name in ("config.json", "dataset_statistics.json"):
        if not (path / name).is_file():
            raise BackboneError(f"openvla_oft: {path / name} is missing")
    find_one(path, "action_head")
    if use_proprio:
        find_one(path, "proprio_projector")
    try:
        stats = json.loads((path / "dataset_statistics.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackboneError(f"openvla_oft: cannot read dataset_statistics.json: {exc}") from exc
    if unnorm_key not in stats:
        raise BackboneError(
            f"openvla_oft: unnorm_key {unnorm_key!r} not in "
            f"dataset_statistics.json (has {sorted(stats)})"
        )
    if use_proprio and "proprio" not in stats[unnorm_key]:
        raise BackboneError(f"openvla_oft: no proprio statistics under {unnorm_key!r}")
    return stats


def check_runtime(allow_other_transformers: bool = False) -> None:
    """CUDA, the pinned transformers and the OFT ``prismatic`` package, or a clear refusal."""
    import torch

    if not torch.cuda.is_available():
        raise BackboneError(
            "openvla_oft needs a CUDA GPU (~16 GB in bf16); none is available. "
            "Use the 'mini' backbone on CPU-only machines."
        )
    try:
        import transformers
    except ImportError as exc:
        raise BackboneError(
            "openvla_oft needs transformers from the OFT fork: pip install "
            "'transformers @ git+https://github.com/moojink/"
            "transformers-openvla-oft.git'"
        ) from exc
    if transformers.__version__ != REQUIRED_TRANSFORMERS and not allow_other_transformers:
        raise BackboneError(
            f"openvla_oft: transformers {transformers.__version__} is installed, the OFT fork "
            f"({REQUIRED_TRANSFORMERS}) is required: newer versions (>= 4.50) silently give the "
            "same action for every image. Set allow_other_transformers to override."
        )
    try:
        import prismatic  # noqa: F401 - the OFT repo: action head and projector classes
    except ImportError as exc:
        raise BackboneError(
            "openvla_oft needs the openvla-oft repo installed (pip install -e "
            "openvla-oft) for its action head and proprio projector"
        ) from exc


def load_components(
    model_dir: str,
    unnorm_key: str,
    num_images: int,
    use_proprio: bool,
    allow_other_transformers: bool = False,
) -> OftComponents:
    """Load the real model on CUDA in bf16. Never run in this project's CI."""
    stats = check_model_dir(model_dir, unnorm_key, use_proprio)
    check_runtime(allow_other_transformers)
    # No network, ever: a missing file must fail here, not trigger a 15 GB download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from prismatic.extern.hf.configuration_prismatic import OpenVLAConfig
    from prismatic.extern.hf.modeling_prismatic import OpenVLAForActionPrediction
    from prismatic.extern.hf.processing_prismatic import (
        PrismaticImageProcessor,
        PrismaticProcessor,
    )
    from prismatic.models.action_heads import L1RegressionActionHead
    from prismatic.models.projectors import ProprioProjector
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForVision2Seq,
        AutoProcessor,
    )

    AutoConfig.register("openvla", OpenVLAConfig, exist_ok=True)
    AutoImageProcessor.register(OpenVLAConfig, PrismaticImageProcessor, exist_ok=True)
    AutoProcessor.register(OpenVLAConfig, PrismaticProcessor, exist_ok=True)
    AutoModelForVision2Seq.register(OpenVLAConfig, OpenVLAForActionPrediction, exist_ok=True)
    path = Path(model_dir).expanduser()
    vla = AutoModelForVision2Seq.from_pretrained(
        path,
        torch_dtype=torch.bfloat16,
        low_cpu_mem_usage=True,
        trust_remote_code=True,
        local_files_only=True,
    )
    vla.vision_backbone.set_num_images_in_input(num_images)
    vla = vla.eval().to("cuda")
    vla.norm_stats = stats
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True, local_files_only=True)
    action_head = L1RegressionActionHead(
        input_dim=HIDDEN_DIM, hidden_dim=HIDDEN_DIM, action_dim=ACTION_DIM
    )
    # weights_only=True: a .pt file is a pickle; never let it execute code.
    action_head.load_state_dict(
        _strip_ddp_prefix(
            torch.load(find_one(path, "action_head"), map_location="cpu", weights_only=True)
        )
    )
    action_head = action_head.to(torch.bfloat16).to("cuda").eval()
    projector = None
    if use_proprio:
        projector = ProprioProjector(llm_dim=HIDDEN_DIM, proprio_dim=PROPRIO_DIM)
        projector.load_state_dict(
            _strip_ddp_prefix(
                torch.load(
                    find_one(path, "proprio_projector"), map_location="cpu", weights_only=True
                )
            )
        )
        projector = projector.to(torch.bfloat16).to("cuda").eval()
    return OftComponents(vla, processor, action_head, projector, stats, "cuda", torch.bfloat16)


@register_backbone("openvla_oft")
class OpenVlaOftBackbone(Backbone):
    d_model = HIDDEN_DIM
    chunk_size = NUM_ACTIONS_CHUNK
    action_dim = ACTION_DIM
    discrete = False

    def __init__(
        self,
        model_dir: str = "",
        unnorm_key: str = "libero_10_no_noops",
        num_images: int = 2,
        use_proprio: bool = True,
        center_crop: bool = True,
        feature_reduction: str = "mean",
        self_check: bool = True,
        allow_other_transformers: bool = False,
        components: OftComponents | None = None,
    ) -> None:
        if num_images not in (1, 2, 3):
            raise ValueError(f"openvla_oft: num_images must be 1..3, got {num_images}")
        if feature_reduction not in FEATURE_REDUCTIONS:
            raise ValueError(
                f"openvla_oft: feature_reduction {feature_reduction!r} not in {FEATURE_REDUCTIONS}"
            )
        self.model_dir = model_dir
        self.unnorm_key = unnorm_key
        self.num_images = num_images
        self.proprio_dim = PROPRIO_DIM if use_proprio else None
        self.center_crop = center_crop
        self.feature_reduction = feature_reduction
        # ``components`` is the test seam: CPU tests inject a stand-in with the same API.
        self._c = components or load_components(
            model_dir, unnorm_key, num_images, use_proprio, allow_other_transformers
        )
        if unnorm_key not in self._c.norm_stats:
            raise BackboneError(f"openvla_oft: unnorm_key {unnorm_key!r} has no statistics")
        if self_check:
            self.check_images_matter()

    def step(self, obs: Observation) -> BackboneOutput:
        import torch

        if len(obs.images) != self.num_images:
            raise BackboneError(
                f"openvla_oft was configured for {self.num_images} image(s) "
                f"(third-person first, then wrist), got {len(obs.images)}"
            )
        proprio = None
        if self.proprio_dim is not None:
            if obs.proprio is None or obs.proprio.shape != (self.proprio_dim,):
                raise BackboneError(
                    f"openvla_oft needs proprio of shape ({self.proprio_dim},) (eef xyz, "
                    f"axis-angle, 2 gripper joints), got "
                    f"{None if obs.proprio is None else obs.proprio.shape}"
                )
            proprio = normalize_proprio(
                obs.proprio.astype(np.float32), self._c.norm_stats[self.unnorm_key]["proprio"]
            )
        from PIL import Image

        pils = [Image.fromarray(prepare_image(img, self.center_crop)) for img in obs.images]
        prompt = build_prompt(obs.instruction)
        c = self._c
        inputs = c.processor(prompt, pils[0]).to(c.device, dtype=c.dtype)
        if len(pils) > 1:
            extra = [
                c.processor(prompt, im).to(c.device, dtype=c.dtype)["pixel_values"]
                for im in pils[1:]
            ]
            inputs["pixel_values"] = torch.cat([inputs["pixel_values"], *extra], dim=1)
        with torch.inference_mode():
            actions, hidden = c.vla.predict_action(
                **inputs,
                unnorm_key=self.unnorm_key,
                do_sample=False,
                proprio=proprio,
                proprio_projector=c.proprio_projector,
                action_head=c.action_head,
                use_film=False,
            )
        action = np.asarray(actions, dtype=np.float32)
        if action.shape != (self.chunk_size, self.action_dim):
            raise BackboneError(
                f"openvla_oft returned actions of shape {action.shape}, expected "
                f"({self.chunk_size}, {self.action_dim})"
            )
        if not np.all(np.isfinite(action)):
            raise BackboneError("openvla_oft returned NaN/inf actions")
        features = reduce_action_hidden_states(hidden, self.feature_reduction)
        return BackboneOutput(features=features, action=action)

    def check_images_matter(self) -> None:
        """Refuse to serve if two clearly different images give the same action chunk.

        The known silent failure (wrong transformers, wrong image count) returns one action
        for every image; a robot driven by it would look alive and ignore its cameras.
        """
        rng = np.random.default_rng(0)
        proprio = None
        if self.proprio_dim is not None:
            stats = self._c.norm_stats[self.unnorm_key]["proprio"]
            proprio = ((np.asarray(stats["q01"]) + np.asarray(stats["q99"])) / 2).astype(np.float32)
        outs = []
        for _ in range(2):
            images = tuple(
                rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
                for _ in range(self.num_images)
            )
            outs.append(self.step(Observation(images, "pick up the object", proprio)).action)
        diff = float(np.max(np.abs(outs[0] - outs[1])))
        if diff < SELF_CHECK_MIN_DIFF:
            raise BackboneError(
                f"openvla_oft self-check failed: two different images gave the same actions "
                f"(max difference {diff:.2e}). Known causes: transformers other than "
                f"{REQUIRED_TRANSFORMERS}, or num_images not matching the checkpoint."
            )

    def model_id(self) -> str:
        h = hashlib.sha256(
            f"openvla_oft:{self.unnorm_key}:{self.num_images}:"
            f"{self.feature_reduction}:{self.center_crop}".encode()
        )
        path = Path(self.model_dir).expanduser()
        # Config and statistics content plus weight file names and sizes: cheap (no hashing
        # of 15 GB) yet different for every released checkpoint.
        for name in ("config.json", "dataset_statistics.json"):
            if (path / name).is_file():
                h.update((path / name).read_bytes())
        if path.is_dir():
            for p in sorted(path.iterdir()):
                if p.suffix in (".pt", ".safetensors"):
                    h.update(f"{p.name}:{p.stat().st_size}".encode())
        return h.hexdigest()[:16]
