"""What must hold before OpenVLA-OFT weights are trusted, checked by behaviour, not by names.

- ``force_offline``: no hub access, also when transformers was imported before us.
- ``import_upstream``: OFT's ``prismatic`` classes, imported with a sanitized ``sys.argv``
  (upstream's ``prismatic/vla/constants.py`` picks LIBERO / ALOHA / BRIDGE constants from
  words on the command line), then ``check_constants``: the constants the modeling code and
  the action head actually bound must match the checkpoint's head and projector.
- ``check_bidirectional_attention``: the OFT fork of transformers 4.40.1 reports the same
  version string as PyPI's 4.40.1; only its behaviour differs (``LlamaSdpaAttention``
  attends both ways). A 2-layer Llama on the attention path the model will use must let an
  early position see a later token, or we refuse.
- ``import_torchvision``: a CPU torch beside PyPI's torchvision wheel (a CUDA build) cannot
  load torchvision's compiled ops; OFT only needs its pure-Python transforms.
- ``compare_modeling_files``: the checkpoint's own ``*_prismatic.py`` are never executed;
  this reports whether they differ from the installed upstream code that runs instead.

None of this imports rclpy; the loader in ``openvla_oft.py`` calls it in this order.
"""

from __future__ import annotations

import contextlib
import filecmp
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from aura_mem_ros.backbones.base import BackboneError

log = logging.getLogger(__name__)

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
MODELING_FILES = ("configuration_prismatic.py", "modeling_prismatic.py", "processing_prismatic.py")


@dataclass(frozen=True)
class Platform:
    """One of upstream's constant sets (``prismatic/vla/constants.py``)."""

    word: str  # the sys.argv word that selects it upstream
    chunk: int
    action_dim: int
    proprio_dim: int
    normalization: str


PLATFORMS = (
    Platform("libero", 8, 7, 8, "bounds_q99"),
    Platform("aloha", 25, 14, 14, "bounds"),
    Platform("bridge", 5, 7, 7, "bounds_q99"),
)


def platform_for(chunk: int, action_dim: int, proprio_dim: int | None) -> Platform:
    """The upstream constant set with these dims; refuse if upstream has none."""
    for p in PLATFORMS:
        if (p.chunk, p.action_dim) == (chunk, action_dim) and proprio_dim in (None, p.proprio_dim):
            return p
    raise BackboneError(
        f"openvla_oft: no upstream constant set has chunk {chunk}, action dim {action_dim}, "
        f"proprio dim {proprio_dim} (known: "
        + ", ".join(f"{p.word}={p.chunk}/{p.action_dim}/{p.proprio_dim}" for p in PLATFORMS)
        + ")"
    )


# -- offline ---------------------------------------------------------------------------------
def force_offline() -> None:
    """Set the offline switches, and flip them in modules that already read the environment.

    huggingface_hub and transformers read these variables ONCE, at import: a process that
    imported transformers first (another backbone, a tool) would otherwise stay online.
    """
    os.environ.update(OFFLINE_ENV)
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    tf_hub = sys.modules.get("transformers.utils.hub")
    if tf_hub is not None and hasattr(tf_hub, "_is_offline_mode"):
        tf_hub._is_offline_mode = True


def offline_state() -> dict[str, bool]:
    """What the libraries themselves believe (for tests and the describe() line)."""
    from huggingface_hub import constants as hub_constants
    from transformers.utils import is_offline_mode

    return {
        "huggingface_hub": bool(hub_constants.HF_HUB_OFFLINE),
        "transformers": is_offline_mode(),
    }


# -- torchvision -----------------------------------------------------------------------------
_TORCHVISION_SCHEMAS: Any = None  # keeps the torch.library fragment alive


def import_torchvision() -> ModuleType:
    """``import torchvision``, declaring ``torchvision::nms``/``qnms`` when its compiled ops
    could not load (PyPI's CUDA wheel beside a CPU torch): its fake-tensor registrations for
    those two run unguarded and would stop the import. Calling nms then raises (no kernel);
    OFT never does: it uses torchvision's transforms only. A working install is untouched."""
    global _TORCHVISION_SCHEMAS
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
    import torch

    log.warning(
        "torchvision's compiled ops did not load (its wheel does not match this torch build); "
        "declaring torchvision::nms/qnms so its pure-Python transforms import"
    )
    lib = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS = lib
    return importlib.import_module("torchvision")


# -- upstream code + constants ---------------------------------------------------------------
@contextlib.contextmanager
def sanitized_argv(word: str) -> Iterator[None]:
    """sys.argv = [program, word] while upstream's constants module reads it."""
    saved = sys.argv
    sys.argv = ["aura_mem_ros", word]
    try:
        yield
    finally:
        sys.argv = saved


def add_upstream_to_path(upstream_dir: str) -> None:
    """Put an openvla-oft checkout first on sys.path (its folders may lack __init__.py)."""
    if not upstream_dir:
        return
    path = Path(upstream_dir).expanduser().resolve()
    if not (path / "prismatic").is_dir():
        raise BackboneError(f"openvla_oft: upstream_dir {path} has no prismatic/ folder")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@dataclass
class Upstream:
    """The upstream modules the loader uses, as imported."""

    constants: ModuleType
    configuration: ModuleType
    modeling: ModuleType
    processing: ModuleType
    action_heads: ModuleType
    projectors: ModuleType


def import_upstream(platform: Platform) -> Upstream:
    """Import OFT's classes with ``sys.argv`` holding only the platform word, so the
    constants follow the checkpoint, not the command line; ``check_constants`` verifies
    (a module imported earlier by someone else keeps whatever it bound then)."""
    import_torchvision()
    names = {
        "constants": "prismatic.vla.constants",
        "configuration": "prismatic.extern.hf.configuration_prismatic",
        "modeling": "prismatic.extern.hf.modeling_prismatic",
        "processing": "prismatic.extern.hf.processing_prismatic",
        "action_heads": "prismatic.models.action_heads",
        "projectors": "prismatic.models.projectors",
    }
    try:
        with sanitized_argv(platform.word), contextlib.redirect_stdout(sys.stderr):
            mods = {key: importlib.import_module(name) for key, name in names.items()}
    except ImportError as exc:
        raise BackboneError(
            "openvla_oft needs the openvla-oft repo (its prismatic package: pip install -e "
            f"openvla-oft, or pass upstream_dir): {exc}"
        ) from exc
    return Upstream(**mods)


def _argv_culprit(word: str) -> str:
    """Why upstream picked ``word``'s constants, as far as the current argv tells."""
    word = word.lower()
    if word in " ".join(sys.argv).lower():
        return f"{word!r} in sys.argv switched constants ({' '.join(sys.argv)!r})"
    return (
        f"the prismatic constants were imported before this loader ran, from a command line "
        f"that selected {word.upper()} (or constants.py was edited)"
    )


def check_constants(up: Upstream, expected: Platform) -> None:
    """The constants the code bound at import must be the checkpoint's; refuse otherwise."""
    got = {
        "NUM_ACTIONS_CHUNK (modeling)": up.modeling.NUM_ACTIONS_CHUNK,
        "ACTION_DIM (modeling)": up.modeling.ACTION_DIM,
        "NUM_ACTIONS_CHUNK (action head)": up.action_heads.NUM_ACTIONS_CHUNK,
        "ACTION_DIM (action head)": up.action_heads.ACTION_DIM,
        "PROPRIO_DIM": up.constants.PROPRIO_DIM,
        "normalization (modeling)": str(
            getattr(up.modeling.ACTION_PROPRIO_NORMALIZATION_TYPE, "value", "")
        ),
    }
    want = {
        "NUM_ACTIONS_CHUNK (modeling)": expected.chunk,
        "ACTION_DIM (modeling)": expected.action_dim,
        "NUM_ACTIONS_CHUNK (action head)": expected.chunk,
        "ACTION_DIM (action head)": expected.action_dim,
        "PROPRIO_DIM": expected.proprio_dim,
        "normalization (modeling)": expected.normalization,
    }
    wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    if wrong:
        chosen = str(getattr(up.constants, "ROBOT_PLATFORM", "?"))
        detail = ", ".join(f"{k}={g} (checkpoint needs {w})" for k, (g, w) in wrong.items())
        raise BackboneError(
            f"openvla_oft: upstream constants are {chosen}'s, the checkpoint is "
            f"{expected.word.upper()}'s: {detail}. Cause: {_argv_culprit(chosen)}. Refusing: "
            "the action head would read the wrong tokens. Start the node in a fresh process."
        )


# -- the fork, by behaviour --------------------------------------------------------------------
PROBE_MIN_DIFF = 1e-4


def attention_probe(attn_implementation: str = "sdpa", device: str = "cpu") -> tuple[str, float]:
    """(attention class, max change of position 0's last hidden state when only the LAST
    token changes) for a 2-layer random Llama on ``attn_implementation``.

    Causal attention: exactly 0 (position 0 sees only itself). The OFT fork: clearly > 0.
    Called the way OFT calls its LLM: inputs_embeds + an all-ones attention mask.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=16,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32,
    )
    cfg._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval().to(device)
        embeds = torch.randn(1, 6, cfg.hidden_size).to(device)
    other = embeds.clone()
    other[:, -1] += 1.0
    mask = torch.ones(1, 6, dtype=torch.long, device=device)
    with torch.no_grad():
        outs = [
            model(inputs_embeds=e, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            for e in (embeds, other)
        ]
    attn = type(model.model.layers[0].self_attn).__name__
    return attn, float((outs[0][0, 0] - outs[1][0, 0]).abs().max())


def check_bidirectional_attention(attn_implementation: str = "sdpa", device: str = "cpu") -> str:
    """Refuse unless the installed transformers attends bidirectionally (on ``device``, in
    float32); returns the attention class that was probed."""
    import transformers

    attn, diff = attention_probe(attn_implementation, device)
    if diff < PROBE_MIN_DIFF:
        raise BackboneError(
            f"openvla_oft: the installed transformers {transformers.__version__} "
            f"({Path(transformers.__file__).parent}) runs CAUSAL attention in {attn} "
            f"(attn_implementation={attn_implementation!r}): the first position ignored a change "
            f"of the last token (max difference {diff:.1e}). OpenVLA-OFT was trained with the "
            "bidirectional attention of the moojink/transformers-openvla-oft fork, which reports "
            "the same version string; with this one its actions are silently wrong. Install the "
            "fork: pip install 'transformers @ git+https://github.com/moojink/"
            "transformers-openvla-oft.git'"
        )
    return attn


# -- the checkpoint's own modeling files -------------------------------------------------------
def compare_modeling_files(model_dir: Path, up: Upstream) -> dict[str, str]:
    """name -> 'absent' | 'same as installed' | 'differs (not executed)' for each file the
    checkpoint ships beside its weights. Nothing from the checkpoint directory is imported."""
    installed = {
        "configuration_prismatic.py": up.configuration.__file__,
        "modeling_prismatic.py": up.modeling.__file__,
        "processing_prismatic.py": up.processing.__file__,
    }
    report = {}
    for name in MODELING_FILES:
        shipped = model_dir / name
        if not shipped.is_file():
            report[name] = "absent"
        elif filecmp.cmp(shipped, installed[name], shallow=False):
            report[name] = "same as installed"
        else:
            report[name] = "differs (not executed)"
    return report
