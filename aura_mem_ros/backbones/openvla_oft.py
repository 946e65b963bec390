"""``openvla_oft``: OpenVLA-OFT (7B, LIBERO setup by default) as a frozen backbone, from a LOCAL
directory.

What the memory reads: the last-layer hidden states of the 56 action tokens (8 steps x 7
dims, 4096 wide), reduced to one 4096-vector (``feature_reduction``), left on the model's
device (the AURA runtime runs beside them). What it corrects: the unnormalised 8 x 7 action
chunk of the L1 regression head, after the deployment conventions below.

Loading (``load_components``), in this order, each step refusing with a message that says
what to fix: the directory and its files (nothing is ever downloaded; the hub libraries are
switched offline before transformers is imported); the device; the checkpoint's action head
and proprio projector dims against ``platform``; upstream's classes imported with a
sanitized ``sys.argv`` and the constants they bound checked against the checkpoint; the
installed transformers probed for the OFT fork's BIDIRECTIONAL attention (PyPI's 4.40.1 has
the same version string); then the model, built from the INSTALLED upstream classes (the
checkpoint's own ``*_prismatic.py`` are never executed, only compared and reported), with
``attn_implementation="sdpa"``, the path the probe tested; finally a self-check that two
different images give different actions.

Conventions are explicit constructor arguments (the node passes ``backbone_args``), with two
documented presets, and ``describe()`` says which are active:

    conventions   image_rotation  gripper (last action dim)
    libero        180             rescale [0,1]->[-1,1], binarize (sign), invert: upstream's
                                  run_libero_eval (LIBERO renders upside down; its env wants
                                  -1 = open, +1 = close)
    real_arm      0               unchanged: the model's own [0, 1], 0 = close, 1 = open

Any of ``image_rotation``, ``gripper_rescale``, ``gripper_binarize``, ``gripper_invert``
overrides the preset. The gripper conversion happens here, before the AURA layer, so the
memory, the published action and recorded bags all use the robot's convention.

Images follow upstream's TensorFlow path exactly, in numpy (``oft_preprocess.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.backbones import oft_preprocess
from aura_mem_ros.backbones import oft_runtime_check as rc
from aura_mem_ros.backbones.base import Backbone, BackboneError, BackboneOutput, Observation
from aura_mem_ros.backbones.registry import register_backbone

# No network, ever, and before anything below can import transformers: a missing file must
# fail, not start a 15 GB download. (force_offline also covers an earlier import.)
rc.force_offline()

IMAGE_SIZE = oft_preprocess.IMAGE_SIZE
NUM_ACTIONS_CHUNK = 8
ACTION_DIM = 7
PROPRIO_DIM = 8
HIDDEN_DIM = 4096
REQUIRED_TRANSFORMERS = "4.40.1"  # PyPI's and the OFT fork's: the probe tells them apart
FEATURE_REDUCTIONS = ("mean", "first_step")
SELF_CHECK_MIN_DIFF = 1e-4
ATTN_IMPLEMENTATION = "sdpa"  # the only attention the fork makes bidirectional
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Conventions:
    """How camera images and the gripper command are converted at deployment."""

    image_rotation: int = 0  # degrees counter-clockwise, applied to every camera first
    gripper_rescale: bool = False  # [0, 1] -> [-1, 1]
    gripper_binarize: bool = False  # sign() after rescaling
    gripper_invert: bool = False  # flip the sign

    def describe(self) -> str:
        grip = [
            name
            for name, on in (
                ("rescale [0,1]->[-1,1]", self.gripper_rescale),
                ("binarize", self.gripper_binarize),
                ("invert", self.gripper_invert),
            )
            if on
        ]
        return (
            f"image_rotation={self.image_rotation} deg; gripper: "
            f"{', '.join(grip) if grip else 'as the model outputs it ([0,1], 1 = open)'}"
        )


CONVENTION_PRESETS = {
    "libero": Conventions(180, True, True, True),
    "real_arm": Conventions(0, False, False, False),
}


def make_conventions(
    preset: str,
    image_rotation: int | None = None,
    gripper_rescale: bool | None = None,
    gripper_binarize: bool | None = None,
    gripper_invert: bool | None = None,
) -> Conventions:
    if preset not in CONVENTION_PRESETS:
        raise ValueError(f"openvla_oft: conventions {preset!r} not in {sorted(CONVENTION_PRESETS)}")
    base = CONVENTION_PRESETS[preset]
    c = Conventions(
        base.image_rotation if image_rotation is None else int(image_rotation),
        base.gripper_rescale if gripper_rescale is None else bool(gripper_rescale),
        base.gripper_binarize if gripper_binarize is None else bool(gripper_binarize),
        base.gripper_invert if gripper_invert is None else bool(gripper_invert),
    )
    if c.image_rotation not in oft_preprocess.ROTATIONS:
        raise ValueError(f"openvla_oft: image_rotation must be one of {oft_preprocess.ROTATIONS}")
    if c.gripper_binarize and not c.gripper_rescale:
        raise ValueError(
            "openvla_oft: gripper_binarize without gripper_rescale would take the sign of a "
            "[0, 1] value (always +1); enable gripper_rescale too"
        )
    return c


def postprocess_gripper(action: np.ndarray, c: Conventions) -> np.ndarray:
    """upstream normalize_gripper_action + invert_gripper_action on the last dimension."""
    out = action.copy()
    if c.gripper_rescale:
        out[..., -1] = 2.0 * out[..., -1] - 1.0
    if c.gripper_binarize:
        out[..., -1] = np.sign(out[..., -1])
    if c.gripper_invert:
        out[..., -1] *= -1.0
    return out


def build_prompt(instruction: str) -> str:
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


def prepare_image(image: np.ndarray, center_crop: bool = True, rotation: int = 0) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> RGB uint8 (224, 224, 3) exactly as upstream prepares it."""
    try:
        return oft_preprocess.prepare_image(image, center_crop, rotation)
    except oft_preprocess.PreprocessError as exc:
        raise BackboneError(f"openvla_oft: {exc}") from exc


def normalize_proprio(proprio: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """bounds_q99 normalisation to [-1, 1] (masked dims pass through), as in OFT's eval code."""
    low = np.asarray(stats["q01"], np.float32)
    high = np.asarray(stats["q99"], np.float32)
    mask = np.asarray(stats.get("mask", np.ones_like(low, bool)), bool)
    if proprio.shape != low.shape:
        raise BackboneError(f"proprio has shape {proprio.shape}, statistics expect {low.shape}")
    scaled = 2.0 * (proprio - low) / (high - low + 1e-8) - 1.0
    return np.clip(np.where(mask, scaled, proprio), -1.0, 1.0).astype(np.float32)


def reduce_action_hidden_states(
    hidden: Any, mode: str = "mean", chunk: int = NUM_ACTIONS_CHUNK, action_dim: int = ACTION_DIM
) -> Any:
    """(1, chunk*dim, hidden) or (chunk*dim, hidden) action-token states -> float32 (hidden,).

    mean: over all tokens (the whole chunk). first_step: over the ``action_dim`` tokens of
    the first action of the chunk (the one executed next). A torch tensor stays a tensor on
    its device (the AURA runtime reads it there); anything else becomes numpy.
    """
    if mode not in FEATURE_REDUCTIONS:
        raise ValueError(f"feature_reduction {mode!r} not in {FEATURE_REDUCTIONS}")
    is_tensor = hasattr(hidden, "float") and hasattr(hidden, "device")
    arr = hidden.float() if is_tensor else np.asarray(hidden, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    tokens = chunk * action_dim
    if arr.ndim != 2 or arr.shape[0] != tokens:
        raise BackboneError(
            f"action hidden states have shape {tuple(arr.shape)}, expected (1, {tokens}, hidden)"
        )
    part = arr if mode == "mean" else arr[:action_dim]
    out = part.mean(0) if is_tensor else part.mean(axis=0).astype(np.float32)
    finite = bool(out.isfinite().all()) if is_tensor else bool(np.all(np.isfinite(out)))
    if not finite:
        raise BackboneError("action hidden states contain NaN/inf")
    return out


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
    hidden_dim: int = HIDDEN_DIM
    report: dict[str, Any] = field(default_factory=dict)  # what the loader verified


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


def resolve_device(device: str, dtype: str) -> tuple[str, Any]:
    """(device, torch dtype); refuses CUDA where there is none. auto = bf16 on CUDA, fp32 on CPU."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"openvla_oft: dtype {dtype!r} not in {DTYPES}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackboneError(
            f"openvla_oft: device={device!r} but no CUDA GPU is available (the 7B model needs "
            "~16 GB in bf16). Use device='cpu' only for tiny test checkpoints, or the 'mini' "
            "backbone on CPU-only machines."
        )
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "bfloat16"
    return device, getattr(torch, dtype)


def check_runtime(allow_other_transformers: bool = False) -> None:
    """The transformers release the fork is based on (>= 4.50 gives one action for every
    image), or a clear refusal. The fork itself is recognised by behaviour, not here."""
    try:
        import transformers
    except ImportError as exc:
        raise BackboneError(
            "openvla_oft needs transformers from the OFT fork: pip install "
            "'transformers @ git+https://github.com/moojink/transformers-openvla-oft.git'"
        ) from exc
    if transformers.__version__ != REQUIRED_TRANSFORMERS and not allow_other_transformers:
        raise BackboneError(
            f"openvla_oft: transformers {transformers.__version__} is installed, the OFT fork "
            f"({REQUIRED_TRANSFORMERS}) is required: newer versions (>= 4.50) silently give the "
            "same action for every image. Set allow_other_transformers to override."
        )


def checkpoint_dims(path: Path, use_proprio: bool) -> tuple[int, int, int, int | None]:
    """(hidden, trained ACTION_DIM, head output dim, proprio dim) read from the head and
    projector files without loading them (mmap)."""
    import torch

    head = _strip_ddp_prefix(
        torch.load(find_one(path, "action_head"), map_location="cpu", weights_only=True, mmap=True)
    )
    try:
        out_dim, hidden = head["model.fc2.weight"].shape
        flat = head["model.layer_norm1.weight"].shape[0]
    except KeyError as exc:
        raise BackboneError(
            f"openvla_oft: the action head is not an L1 regression head (no {exc})"
        ) from exc
    proprio = None
    if use_proprio:
        proj = _strip_ddp_prefix(
            torch.load(
                find_one(path, "proprio_projector"),
                map_location="cpu",
                weights_only=True,
                mmap=True,
            )
        )
        proprio = int(proj["fc1.weight"].shape[1])
    return int(hidden), flat // hidden, int(out_dim), proprio


def load_components(
    model_dir: str,
    unnorm_key: str,
    num_images: int,
    use_proprio: bool,
    allow_other_transformers: bool = False,
    platform: str = "libero",
    device: str = "cuda",
    dtype: str = "auto",
    upstream_dir: str = "",
) -> OftComponents:
    """Load the real model (see the module docstring for the order of checks)."""
    rc.force_offline()
    stats = check_model_dir(model_dir, unnorm_key, use_proprio)
    path = Path(model_dir).expanduser()
    device, torch_dtype = resolve_device(device, dtype)
    expected = {p.word: p for p in rc.PLATFORMS}.get(platform)
    if expected is None:
        raise ValueError(
            f"openvla_oft: platform {platform!r} not in {[p.word for p in rc.PLATFORMS]}"
        )
    hidden, trained_dim, head_dim, proprio_dim = checkpoint_dims(path, use_proprio)
    if (trained_dim, head_dim) != (expected.action_dim,) * 2 or proprio_dim not in (
        None,
        expected.proprio_dim,
    ):
        raise BackboneError(
            f"openvla_oft: the checkpoint's action head has action dim {head_dim} (trained with "
            f"ACTION_DIM={trained_dim}) and its proprio projector proprio dim {proprio_dim}, but "
            f"platform={platform!r} means {expected.action_dim} and {expected.proprio_dim}"
        )
    check_runtime(allow_other_transformers)
    rc.add_upstream_to_path(upstream_dir)
    up = rc.import_upstream(expected)
    rc.check_constants(up, expected)
    attn = rc.check_bidirectional_attention(ATTN_IMPLEMENTATION, device)
    files = rc.compare_modeling_files(path, up)

    import torch
    from transformers import AutoTokenizer

    config = up.configuration.OpenVLAConfig.from_pretrained(path, local_files_only=True)
    vla = up.modeling.OpenVLAForActionPrediction.from_pretrained(
        path,
        config=config,
        torch_dtype=torch_dtype,
        attn_implementation=ATTN_IMPLEMENTATION,
        low_cpu_mem_usage=True,
        local_files_only=True,
        use_safetensors=True,
    )
    loaded_attn = type(vla.language_model.model.layers[0].self_attn).__name__
    if loaded_attn != attn:
        raise BackboneError(
            f"openvla_oft: the loaded language model uses {loaded_attn}, the bidirectional "
            f"probe tested {attn}; refusing to run attention that was not verified"
        )
    vla.vision_backbone.set_num_images_in_input(num_images)
    vla = vla.eval().to(device)
    vla.norm_stats = stats
    processor = up.processing.PrismaticProcessor(
        image_processor=up.processing.PrismaticImageProcessor.from_pretrained(
            path, local_files_only=True
        ),
        tokenizer=AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        ),
    )
    action_head = up.action_heads.L1RegressionActionHead(
        input_dim=hidden, hidden_dim=hidden, action_dim=expected.action_dim
    )
    # weights_only=True: a .pt file is a pickle; never let it execute code.
    action_head.load_state_dict(
        _strip_ddp_prefix(
            torch.load(find_one(path, "action_head"), map_location="cpu", weights_only=True)
        )
    )
    action_head = action_head.to(torch_dtype).to(device).eval()
    projector = None
    if use_proprio:
        projector = up.projectors.ProprioProjector(llm_dim=hidden, proprio_dim=expected.proprio_dim)
        projector.load_state_dict(
            _strip_ddp_prefix(
                torch.load(
                    find_one(path, "proprio_projector"), map_location="cpu", weights_only=True
                )
            )
        )
        projector = projector.to(torch_dtype).to(device).eval()
    report = {
        "upstream": str(Path(up.modeling.__file__).parents[3]),
        "attention": f"{attn} (bidirectional, probed)",
        "constants": f"{expected.word.upper()} (chunk {expected.chunk}, action "
        f"{expected.action_dim}, proprio {expected.proprio_dim})",
        "checkpoint_code": files,
        "offline": rc.offline_state(),
    }
    return OftComponents(
        vla, processor, action_head, projector, stats, device, torch_dtype, hidden, report
    )


@register_backbone("openvla_oft")
class OpenVlaOftBackbone(Backbone):
    """See the module docstring. Defaults are upstream's LIBERO evaluation setup."""

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
        conventions: str = "libero",
        image_rotation: int | None = None,
        gripper_rescale: bool | None = None,
        gripper_binarize: bool | None = None,
        gripper_invert: bool | None = None,
        platform: str = "libero",
        device: str = "cuda",
        dtype: str = "auto",
        upstream_dir: str = "",
        components: OftComponents | None = None,
    ) -> None:
        if num_images not in (1, 2, 3):
            raise ValueError(f"openvla_oft: num_images must be 1..3, got {num_images}")
        if feature_reduction not in FEATURE_REDUCTIONS:
            raise ValueError(
                f"openvla_oft: feature_reduction {feature_reduction!r} not in {FEATURE_REDUCTIONS}"
            )
        self.conventions = make_conventions(
            conventions, image_rotation, gripper_rescale, gripper_binarize, gripper_invert
        )
        self.conventions_preset = conventions
        self.model_dir = model_dir
        self.unnorm_key = unnorm_key
        self.num_images = num_images
        self.center_crop = center_crop
        self.feature_reduction = feature_reduction
        # ``components`` is the test seam: CPU tests inject a stand-in with the same API.
        self._c = components or load_components(
            model_dir,
            unnorm_key,
            num_images,
            use_proprio,
            allow_other_transformers,
            platform,
            device,
            dtype,
            upstream_dir,
        )
        plat = {p.word: p for p in rc.PLATFORMS}[platform]
        self.chunk_size, self.action_dim = plat.chunk, plat.action_dim
        self.proprio_dim = plat.proprio_dim if use_proprio else None
        self.d_model = self._c.hidden_dim
        self.device = str(self._c.device)
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

        rotation = self.conventions.image_rotation
        pils = [
            Image.fromarray(prepare_image(img, self.center_crop, rotation)) for img in obs.images
        ]
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
            features = reduce_action_hidden_states(
                hidden, self.feature_reduction, self.chunk_size, self.action_dim
            )
        action = np.asarray(actions, dtype=np.float32)
        if action.shape != (self.chunk_size, self.action_dim):
            raise BackboneError(
                f"openvla_oft returned actions of shape {action.shape}, expected "
                f"({self.chunk_size}, {self.action_dim})"
            )
        if not np.all(np.isfinite(action)):
            raise BackboneError("openvla_oft returned NaN/inf actions")
        if hasattr(features, "device") and self.device == "cpu":
            features = features.numpy()  # on CPU the fused numpy AURA step reads numpy
        return BackboneOutput(
            features=features, action=postprocess_gripper(action, self.conventions)
        )

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
        # the raw actions, not the binarised gripper: compare what the model computed
        diff = float(np.max(np.abs(outs[0][:, :-1] - outs[1][:, :-1])))
        if diff < SELF_CHECK_MIN_DIFF:
            raise BackboneError(
                f"openvla_oft self-check failed: two different images gave the same actions "
                f"(max difference {diff:.2e}). Known causes: transformers other than "
                f"{REQUIRED_TRANSFORMERS}, or num_images not matching the checkpoint."
            )

    def describe(self) -> str:
        r = self._c.report
        code = ", ".join(f"{k} {v}" for k, v in r.get("checkpoint_code", {}).items())
        parts = [
            f"device={self.device} dtype={str(self._c.dtype).replace('torch.', '')}",
            f"conventions={self.conventions_preset} ({self.conventions.describe()})",
            "images: upstream TF path in numpy (JPEG q95 + lanczos3 resize"
            + (", 0.9-area centre crop)" if self.center_crop else ", no crop)"),
            f"unnorm_key={self.unnorm_key} features={self.feature_reduction}",
        ]
        if r:
            parts += [
                f"constants={r['constants']}",
                f"attention={r['attention']}",
                f"upstream code={r['upstream']} (checkpoint files: {code})",
                f"offline={r['offline']}",
            ]
        return "openvla_oft: " + "; ".join(parts)

    def model_id(self) -> str:
        h = hashlib.sha256(
            f"openvla_oft:{self.unnorm_key}:{self.num_images}:"
            f"{self.feature_reduction}:{self.center_crop}:{self.conventions}".encode()
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
