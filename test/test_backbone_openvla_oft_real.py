"""openvla_oft against the REAL upstream architecture: a tiny random-weight checkpoint in the
real file layout (aura_mem_dev/oft/tiny_checkpoint.py), upstream's classes from
../shared/third_party/openvla-oft, and PyPI's transformers 4.40.1 beside a scratch copy
patched into the OFT fork. Every case runs in a fresh interpreter: which transformers,
which sys.argv and which environment a process starts with is exactly what is tested."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from oft_support import FORK_PATCH, HAVE_UPSTREAM, REPO_ROOT, SKIP_REASON, UPSTREAM_DIR, run_python

pytestmark = [pytest.mark.skipif(not HAVE_UPSTREAM, reason=SKIP_REASON), pytest.mark.timeout(600)]

LOAD = """
import sys, torch
torch.set_num_threads(1)
from aura_mem_dev.oft.tiny_checkpoint import tiny_vision_towers
from aura_mem_ros.backbones import BackboneError, make_backbone
with tiny_vision_towers():
    try:
        b = make_backbone("openvla_oft", model_dir=MODEL_DIR, device="cpu", upstream_dir=UPSTREAM)
        print("LOADED", b.describe())
    except BackboneError as exc:
        print("REFUSED", exc)
"""


def load_script(model_dir: Path, prelude: str = "") -> str:
    head = f"MODEL_DIR = {str(model_dir)!r}\nUPSTREAM = {UPSTREAM_DIR!r}\n"
    return head + textwrap.dedent(prelude) + LOAD


def refusal(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("REFUSED", "LOADED"))]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oft") / "tiny-openvla-oft"
    args = ["-m", "aura_mem_dev.oft.tiny_checkpoint", str(out), "--upstream-dir", UPSTREAM_DIR]
    proc = run_python(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def fork_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    if FORK_PATCH is None or not FORK_PATCH.is_file():
        pytest.skip("the fork's bidirectional-attention.patch is not in shared/third_party")
    from aura_mem_dev.oft.fork import make_fork

    return str(make_fork(FORK_PATCH, tmp_path_factory.mktemp("fork")))


def test_checkpoint_has_the_real_file_layout(tiny_checkpoint: Path) -> None:
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {
        "config.json",
        "model.safetensors.index.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "dataset_statistics.json",
        "modeling_prismatic.py",
        "action_head--150000_checkpoint.pt",
        "proprio_projector--150000_checkpoint.pt",
    } <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["vision_backbone_id"] == "dinosiglip-vit-so-224px"
    # serialised as a diff against LlamaConfig, whose default hidden size is 4096
    assert config["text_config"].get("hidden_size", 4096) == 4096 and "auto_map" in config


def test_pypi_transformers_is_refused_as_causal(tiny_checkpoint: Path) -> None:
    line = refusal(run_python(load_script(tiny_checkpoint)))
    assert line.startswith("REFUSED") and "runs CAUSAL attention in LlamaSdpaAttention" in line


def test_the_fork_is_recognised_by_its_behaviour(fork_dir: str) -> None:
    code = """
import transformers
from aura_mem_ros.backbones.oft_runtime_check import attention_probe, check_bidirectional_attention
print(transformers.__version__, transformers.__file__)
print("PROBE", check_bidirectional_attention("sdpa"), attention_probe("sdpa")[1])
"""
    fork = run_python(code, [fork_dir])
    assert fork.returncode == 0, fork.stderr[-2000:]
    assert fork.stdout.startswith("4.40.1 " + fork_dir)  # same version string as PyPI's
    attn, diff = fork.stdout.split("PROBE ")[1].split()
    assert attn == "LlamaSdpaAttention" and float(diff) > 1e-3


def test_constants_import_is_deterministic_whatever_argv_says(fork_dir: str) -> None:
    code = """
import sys
sys.argv += ["--params", "/robots/aloha_bridge/oft.yaml"]  # words upstream would obey
from aura_mem_ros.backbones import oft_runtime_check as rc
rc.add_upstream_to_path(UPSTREAM)
up = rc.import_upstream(rc.PLATFORMS[0])
rc.check_constants(up, rc.PLATFORMS[0])
print("CONSTANTS", up.modeling.NUM_ACTIONS_CHUNK, up.action_heads.ACTION_DIM,
      up.constants.PROPRIO_DIM)
print("ARGV", sys.argv[1:])
"""
    proc = run_python(f"UPSTREAM = {UPSTREAM_DIR!r}\n" + code, [fork_dir])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CONSTANTS 8 7 8" in proc.stdout  # LIBERO, as the checkpoint
    assert "'/robots/aloha_bridge/oft.yaml'" in proc.stdout  # argv restored afterwards


@pytest.mark.parametrize("word", ["aloha", "bridge"])
def test_constants_switched_by_argv_are_refused(
    tiny_checkpoint: Path, fork_dir: str, word: str
) -> None:
    prelude = f"""
import sys
sys.argv.append("{word}")
sys.path.insert(0, UPSTREAM)
import prismatic.vla.constants  # imported before the loader, as a careless tool would
"""
    line = refusal(run_python(load_script(tiny_checkpoint, prelude), [fork_dir]))
    assert line.startswith("REFUSED") and f"'{word}' in sys.argv switched constants" in line


def test_offline_flags_are_set_before_transformers_is_imported() -> None:
    code = """
import os
import aura_mem_ros.backbones.openvla_oft  # noqa: F401 - sets the flags on import
assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
from aura_mem_ros.backbones.oft_runtime_check import offline_state
print("OFFLINE", offline_state())
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OFFLINE {'huggingface_hub': True, 'transformers': True}" in proc.stdout


def test_offline_even_when_transformers_was_imported_first() -> None:
    code = """
import transformers, huggingface_hub.constants as hc
from transformers.utils import is_offline_mode
print("BEFORE", hc.HF_HUB_OFFLINE, is_offline_mode())
from aura_mem_ros.backbones.oft_runtime_check import force_offline, offline_state
force_offline()  # what load_components does first
print("AFTER", offline_state())
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BEFORE False False" in proc.stdout  # imported online: the variables came too late
    assert "AFTER {'huggingface_hub': True, 'transformers': True}" in proc.stdout


def test_node_serves_actions_from_the_real_architecture(
    tiny_checkpoint: Path, fork_dir: str, ros_domain_id: int, tmp_path: Path
) -> None:
    out = tmp_path / "e2e.json"
    proc = run_python(
        [
            str(REPO_ROOT / "test" / "oft_e2e_scenario.py"),
            str(tiny_checkpoint),
            UPSTREAM_DIR,
            str(out),
        ],
        [fork_dir],
        timeout=540,
        env_extra={"ROS_DOMAIN_ID": str(ros_domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in r.items() if k != "frames"}, indent=1))
    print([(round(f["wall_s"], 1), round(f["latency_ms"])) for f in r["frames"]])
    assert "error" not in r, r["error"]
    assert len(r["frames"]) == 3
    actions = np.array([f["action"] for f in r["frames"]])
    assert all(f["shape"] == [8, 7] for f in r["frames"]) and np.all(np.isfinite(actions))
    assert np.ptp(actions[:, :-1], axis=0).max() > 1e-4  # different cameras, different actions
    assert set(np.unique(actions.reshape(3, 8, 7)[:, :, -1])) <= {-1.0, 0.0, 1.0}  # libero gripper
    assert r["direct_vs_published_max"] < 1e-5
    assert "LlamaSdpaAttention (bidirectional, probed)" in r["describe"]
    assert "conventions=libero" in r["describe"] and r["aura_step"] == "fused"


def test_gpu_check_script_runs_on_cpu(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """aura_mem_dev/oft/gpu_check.py is what runs on a borrowed GPU; here on CPU, 2 steps."""
    out = tmp_path / "gpu_check.json"
    args = [
        str(REPO_ROOT / "aura_mem_dev" / "oft" / "gpu_check.py"),
        "--device", "cpu", "--steps", "2", "--warmup", "1",
        "--third-party", str(Path(UPSTREAM_DIR).parent),
        "--model-dir", str(tiny_checkpoint), "--workdir", str(tmp_path), "--out", str(out),
    ]  # fmt: skip
    proc = run_python(args, timeout=540)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert all(r["checks"].values()), r["checks"]
    assert r["backbone_ms"]["n"] == 2 and r["aura_ms"]["n"] == 2
    assert r["aura_ms"]["p50"] < r["backbone_ms"]["p50"]
    assert str(tmp_path / "fork") in r["transformers"]  # ran on the patched copy
