"""The arm task end to end at toy size: train (demos, BC, AURA, KV), benchmark, ROS demo.

``make train-arm`` and ``make bench-arm`` run the same code at full size; here a quick
recipe (32x32 images, a handful of episodes, a few iterations) checks that every stage runs,
writes what the next stage reads, and reports numbers of the right shape. The behaviour
targets are checked by the benchmark report, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ros_harness import REPO_ROOT, subprocess_env

from aura_mem_ros.backbones import make_backbone
from aura_mem_ros.backbones.base import BackboneError, Observation
from aura_mem_ros.sim.arm.env import INSTRUCTION

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aura_mem_dev.arm.train import main

    out = tmp_path_factory.mktemp("arm_quick")
    log = out.parent / "never_reset.log"
    assert main(["--out", str(out), "--quick", "--never-reset-log", str(log)]) == 0
    return out


def test_quick_recipe_writes_every_shipped_file(quick_weights: Path) -> None:
    for name in ("model.safetensors", "config.json", "train_report.json"):
        assert (quick_weights / name).is_file(), name
    assert (quick_weights / "aura" / "aura_config.json").is_file()
    assert (quick_weights / "kv" / "kv_config.json").is_file()
    # step 6, in its own process: the never-reset layer and its report
    assert (quick_weights / "aura_never_reset" / "aura_config.json").is_file()
    never = json.loads((quick_weights / "never_reset_train_report.json").read_text())
    report = json.loads((quick_weights / "train_report.json").read_text())
    assert report["never_reset"]["seconds"] == never["seconds"]
    # the total is the wall time of every step: it covers the second process's run
    assert report["total_seconds"] >= report["backbone_seconds"] + never["seconds"] - 1.0
    # the refit reused step 2's demos and base rollouts (same seeds), ran only its gated ones
    assert report["counterfactual_gate"]["reused_step2_episodes"] is True
    assert report["total_seconds"] > 0 and "cue_probe" in report
    assert report["aura"][-1]["validation"]["completed"] >= 0.0
    calibration = report["threshold_calibration"]  # bisection on write counts only
    rates = [p["writes_per_chunk"] for p in calibration["probes"]]
    assert len(rates) == 2 and calibration["target_writes_per_chunk"] == 0.05
    aura_config = json.loads((quick_weights / "aura" / "aura_config.json").read_text())
    assert aura_config["threshold"] == pytest.approx(calibration["threshold"])
    # the kept threshold meets the budget, or none probed did and the gate is shut (0.95)
    kept = [p for p in calibration["probes"] if p["threshold"] == calibration["threshold"]]
    assert (kept and kept[0]["writes_per_chunk"] <= 0.05) or calibration["threshold"] == 0.95


def test_arm_mini_is_registered_and_checks_its_inputs(quick_weights: Path) -> None:
    bb = make_backbone("arm_mini", model_dir=str(quick_weights))
    assert (bb.chunk_size, bb.action_dim, bb.proprio_dim, bb.discrete) == (8, 7, 8, False)
    assert bb.bundled_aura_checkpoint() == str(quick_weights / "aura")
    image = np.zeros((64, 64, 3), np.uint8)  # a foreign size is resized to the model's
    out = bb.step(Observation((image,), INSTRUCTION, np.zeros(8, np.float32)))
    assert out.features.shape == (bb.d_model,) and out.action.shape == (8, 7)
    other = bb.step(Observation((image + 200,), INSTRUCTION, np.zeros(8, np.float32)))
    assert not np.allclose(out.features, other.features)  # the image matters
    with pytest.raises(BackboneError, match="proprio"):
        bb.step(Observation((image,), INSTRUCTION, np.zeros(3, np.float32)))
    with pytest.raises(BackboneError, match="proprio"):
        bb.step(Observation((image,), INSTRUCTION, np.full(8, np.nan, np.float32)))
    with pytest.raises(BackboneError, match="RGB"):
        bb.step(Observation((np.zeros((4, 4), np.uint8),), INSTRUCTION, np.zeros(8, np.float32)))
    with pytest.raises(BackboneError, match="missing"):
        make_backbone("arm_mini", model_dir=str(quick_weights / "nowhere"))


def test_bench_panel_and_never_reset_have_the_closed_loop_shape(quick_weights: Path) -> None:
    from aura_mem_dev.arm.bench import ARMS, run_never_reset, run_panel

    panel = run_panel(2, 1_000_000, ARMS, quick_weights, image_size=32)
    assert set(panel["arms"]) == set(ARMS) and panel["episodes"] == 2
    for arm, r in panel["arms"].items():
        lo, hi = r["ci95"]
        assert 0.0 <= lo <= r["success"] <= hi <= 1.0, arm
        assert len(panel["per_episode"][arm]) == 2
    assert panel["arms"]["memoryless"]["writes_per_episode"] == 0
    always = panel["arms"]["always_aura"]
    assert always["writes_per_episode"] == always["chunks_per_episode"]
    assert panel["arms"]["always_kv"]["writes_per_step"] == 1.0
    with pytest.raises(ValueError):
        run_panel(1, 10, ("aura",), quick_weights)  # a training seed
    never = run_never_reset(2, 1_100_000, quick_weights)
    assert never["result"]["state_bytes"] == 4224
    assert never["result"]["memory_steps"] == sum(e["chunks"] for e in never["per_episode"])

    from aura_mem_dev.report.arm import cue_split, render_markdown

    panel["never_reset"] = never
    panel["rates"] = {  # rates are measured by make bench-arm only; any numbers render
        "control_steps_per_s": 1.0,
        "physics_steps_per_s": 10.0,
        "expert_ms_per_action": 0.1,
        "render_frames_per_s": {"32": 1.0},
        "backbone_ms": 1.0,
    }
    md = render_markdown(panel, {"total_seconds": 4000.0, "backbone_seconds": 900.0}, None)
    assert all(f"| {arm} | " in md for arm in ARMS)
    row = "| `make train-arm` (every shipped arm weight, from scratch) <= 60 min on this 2-core"
    assert f"{row} machine | 66.7 min | **no** |" in md
    # the quick run trained the never-reset layer too (second process): one wall time
    train = json.loads((quick_weights / "train_report.json").read_text())
    never_report = json.loads((quick_weights / "never_reset_train_report.json").read_text())
    md = render_markdown(panel, train, None, never_report)
    assert "one run of `make train-arm`" in md and "make train-arm-never-reset" not in md
    assert f"{row} machine | {train['total_seconds'] / 60:.1f} min | yes |" in md
    # a never-reset layer from a separate run counts towards "every weight in 60 min"
    train = {"total_seconds": 2400.0, "backbone_seconds": 900.0}
    md = render_markdown(panel, train, None, {"seconds": 600.0})
    assert "| every shipped arm weight rebuilt from scratch <= 60 min" in md
    assert "50.0 min (`make train-arm` 40.0 + `make train-arm-never-reset` 10.0) | yes |" in md
    hit_s, hit_n, miss_s, miss_n = cue_split(panel["per_episode"]["aura"])
    assert hit_n + miss_n == 2 and hit_s + miss_s == panel["arms"]["aura"]["successes"]

    # --update: one arm re-run replaces only that arm, and the page says which
    from aura_mem_dev.arm.bench import merged_panel

    kv_again = run_panel(2, 1_000_000, ("always_kv",), quick_weights, image_size=32)
    kv_again["arms"]["always_kv"]["marker"] = True
    merged = merged_panel(panel, kv_again, ("always_kv",))
    assert list(merged["arms"]) == [a for a in ARMS if a in merged["arms"]]
    assert merged["arms"]["always_kv"]["marker"] and "marker" not in merged["arms"]["aura"]
    assert merged["never_reset"] is never and merged["updated_arms"] == ["always_kv"]
    assert "`--update` after their weights changed" in render_markdown(merged, None, None)
    with pytest.raises(ValueError, match="same --episodes"):
        merged_panel(panel, {**kv_again, "episodes": 3}, ("always_kv",))


@pytest.mark.multiprocess
@pytest.mark.timeout(150)
def test_ros_demo_runs_sim_and_node_as_two_processes(
    quick_weights: Path, tmp_path: Path, ros_domain_id: int
) -> None:
    out = tmp_path / "demo"
    env = subprocess_env(ros_domain_id)
    env["AURA_DEMO_DOMAIN_ID"] = str(ros_domain_id)
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "aura_mem_ros.demo",
            "--env",
            "arm",
            "--episodes",
            "1",
            "--model-dir",
            str(quick_weights),
            "--image-size",
            "32",
            "--gate",
            "always",
            "--out-dir",
            str(out),
            "--timeout",
            "120",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
    )
    text = demo.stdout + demo.stderr
    assert demo.returncode == 0, text[-3000:]
    summary = json.loads((out / "arm_demo_summary.json").read_text())
    (result,) = summary["results"]
    assert result["chunks"] > 0 and result["writes"] == result["chunks"]  # gate "always"
    assert "episode   0 seed 2000000" in text
    assert (out / "arm_episode.png").exists(), text[-2000:]
    assert (out / "arm_episode.png").stat().st_size > 10_000


def test_only_kv_rebuilds_the_kv_arm_alone(quick_weights: Path, tmp_path: Path) -> None:
    """``--only-kv``: step 4 on the memory data; the backbone and the AURA layer untouched."""
    import shutil

    from aura_mem_dev.arm.train import main
    from aura_mem_ros.core.kv import KVRuntime, load_kv

    out = tmp_path / "weights"
    shutil.copytree(quick_weights, out)
    before = {p: (out / p).read_bytes() for p in ("model.safetensors", "aura/aura.safetensors")}
    (out / "kv" / "kv.safetensors").unlink()
    assert main(["--out", str(out), "--quick", "--only-kv"]) == 0
    assert all((out / p).read_bytes() == data for p, data in before.items())
    kv = load_kv(out / "kv")
    assert (kv.config.chunk_size, kv.config.action_dim) == (8, 7)
    report = json.loads((out / "train_report.json").read_text())
    assert "--only-kv" in report["kv"]["note"] and report["kv_seconds"] > 0
    assert 0.0 <= report["kv"]["validation"]["completed"] <= 1.0
    step = KVRuntime(kv).select_action(np.zeros(kv.config.d_model), np.zeros((8, 7)))
    assert step.action.shape == (8, 7) and step.wrote


def test_cue_blind_chance_is_the_chance_of_an_arm_that_cannot_see_the_cue() -> None:
    from aura_mem_dev.report.arm import cue_blind_chance

    def eps(cues: list[int], placed: list[int | None]) -> list[dict]:
        return [{"cue_pad": c, "placed_pad": p} for c, p in zip(cues, placed, strict=True)]

    # cues drawn unevenly; an arm that always places on pad 0 scores pad 0's share, not 1/3
    cues = [0] * 10 + [1] * 25 + [2] * 25
    expected, p = cue_blind_chance(eps(cues, [0] * 60))
    assert expected == pytest.approx(10 / 60) and p == 1.0
    # an arm that always finds the cued pad is far from cue-blind
    expected, p = cue_blind_chance(eps(cues, cues))
    assert p < 0.001
    # one that never does (it avoids the cue: it saw it) is far from cue-blind too
    expected, p = cue_blind_chance(eps(cues, [(c + 1) % 3 for c in cues]))
    assert expected > 0.2 and p < 0.001
    # episodes that place nothing count as misses
    expected, _ = cue_blind_chance(eps([0, 1], [None, None]))
    assert expected == 0.0
