"""openvla_oft on CPU: preprocessing, feature reduction, the OFT call sequence (against a tiny
stand-in with the same call signature) and every refusal. The real 7B weights never ran here."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aura_mem_ros.backbones import BackboneError, Observation, make_backbone
from aura_mem_ros.backbones import openvla_oft as oft

HIDDEN = oft.HIDDEN_DIM
STATS = {
    "libero_10_no_noops": {
        "action": {"q01": [-1.0] * 7, "q99": [1.0] * 7},
        "proprio": {"q01": [0.0] * 8, "q99": [2.0] * 8, "mask": [True] * 7 + [False]},
    }
}


class FakeInputs(dict):
    """Like transformers' BatchFeature: a dict with ``.to(device, dtype=...)``."""

    def to(self, device: str, dtype: Any = None) -> FakeInputs:
        self.moved = (device, dtype)
        return self


class FakeProcessor:
    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, prompt: str, image: Any) -> FakeInputs:
        self.prompts.append(prompt)
        arr = np.asarray(image)
        assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8
        pixels = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255.0
        ids = torch.tensor([[1, 2, 3]])
        return FakeInputs(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels)


class FakeVla:
    """Same keyword interface as OpenVLAForActionPrediction.predict_action (OFT)."""

    def __init__(self, image_sensitive: bool = True) -> None:
        self.image_sensitive = image_sensitive
        self.calls: list[dict[str, Any]] = []

    def predict_action(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        pixel_values: Any = None,
        unnorm_key: str | None = None,
        do_sample: bool = True,
        proprio: Any = None,
        proprio_projector: Any = None,
        action_head: Any = None,
        use_film: bool = True,
    ) -> tuple[np.ndarray, torch.Tensor]:
        self.calls.append(
            dict(
                pixel_values=pixel_values,
                unnorm_key=unnorm_key,
                do_sample=do_sample,
                proprio=proprio,
                action_head=action_head,
                use_film=use_film,
            )
        )
        level = float(pixel_values.mean()) if self.image_sensitive else 0.5
        hidden = torch.arange(56 * HIDDEN, dtype=torch.float32).reshape(1, 56, HIDDEN) * 1e-6
        hidden = (hidden + level).to(torch.bfloat16)
        actions = np.full((8, 7), level, np.float32)
        return actions, hidden


def components(vla: FakeVla | None = None) -> oft.OftComponents:
    return oft.OftComponents(
        vla or FakeVla(),
        FakeProcessor(),
        action_head="HEAD",
        proprio_projector="PROJ",
        norm_stats=STATS,
        device="cpu",
        dtype=torch.float32,
    )


def model_dir(tmp_path: Path, heads: int = 1) -> Path:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(STATS))
    for i in range(heads):
        (tmp_path / f"action_head--{150000 + i}_checkpoint.pt").write_bytes(b"x")
    (tmp_path / "proprio_projector--150000_checkpoint.pt").write_bytes(b"x")
    return tmp_path


def camera(value: int, shape: tuple[int, int] = (480, 640)) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


PROPRIO = np.array([0.0, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.7], np.float32)


def test_prepare_image_resizes_and_center_crops() -> None:
    big = camera(0)
    out = oft.prepare_image(big, center_crop=False)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    grad = np.tile(np.linspace(0, 255, 224, dtype=np.uint8)[None, :, None], (224, 1, 3))
    cropped = oft.prepare_image(grad, center_crop=True)
    # the 90%-area crop drops the darkest columns: the left edge gets brighter
    assert cropped[:, 0].mean() > grad[:, 0].mean() + 3
    # already 224 x 224: no JPEG round trip, no resize (as in OFT's own eval code)
    np.testing.assert_array_equal(oft.prepare_image(grad, center_crop=False), grad)
    with pytest.raises(BackboneError):
        oft.prepare_image(big.astype(np.float32))


def test_prompt_format() -> None:
    assert oft.build_prompt("Put the BOWL on the plate") == (
        "In: What action should the robot take to put the bowl on the plate?\nOut:"
    )


def test_proprio_bounds_q99_normalisation_with_mask() -> None:
    out = oft.normalize_proprio(PROPRIO, STATS["libero_10_no_noops"]["proprio"])
    np.testing.assert_allclose(out[:4], [-1.0, 0.0, 1.0, 1.0], atol=1e-6)  # 3.0 clipped to 1
    assert out[7] == pytest.approx(0.7)  # masked: passed through
    with pytest.raises(BackboneError):
        oft.normalize_proprio(PROPRIO[:3], STATS["libero_10_no_noops"]["proprio"])


def test_feature_reduction_modes_and_errors() -> None:
    hidden = torch.zeros(1, 56, 8)
    hidden[0, :7] = 7.0  # the first action's 7 tokens
    np.testing.assert_allclose(oft.reduce_action_hidden_states(hidden, "first_step"), 7.0)
    np.testing.assert_allclose(oft.reduce_action_hidden_states(hidden, "mean"), 49 / 56)
    # a tensor stays a (float32) tensor where it is, for the AURA runtime on that device
    assert oft.reduce_action_hidden_states(hidden.to(torch.bfloat16)).dtype == torch.float32
    assert oft.reduce_action_hidden_states(hidden.numpy()).dtype == np.float32
    with pytest.raises(BackboneError, match="shape"):
        oft.reduce_action_hidden_states(torch.zeros(1, 55, 8))
    with pytest.raises(BackboneError, match="NaN"):
        oft.reduce_action_hidden_states(torch.full((56, 8), float("nan")))
    with pytest.raises(ValueError):
        oft.reduce_action_hidden_states(hidden, "max")


def test_step_follows_the_oft_call_sequence(tmp_path: Path) -> None:
    c = components()
    b = oft.OpenVlaOftBackbone(model_dir=str(model_dir(tmp_path)), components=c)
    out = b.step(Observation((camera(1), camera(2, (128, 128))), "Open the drawer", PROPRIO))
    assert out.action.shape == (8, 7) and out.features.shape == (HIDDEN,)
    call = c.vla.calls[-1]
    assert call["pixel_values"].shape == (1, 6, 224, 224)  # two images stacked on channels
    assert call["unnorm_key"] == "libero_10_no_noops" and call["do_sample"] is False
    assert call["action_head"] == "HEAD" and call["use_film"] is False
    assert np.all(np.abs(call["proprio"]) <= 1.0)  # normalised before the projector
    assert c.processor.prompts[-1].endswith("open the drawer?\nOut:")


def test_step_refuses_wrong_image_count_and_missing_proprio(tmp_path: Path) -> None:
    b = oft.OpenVlaOftBackbone(model_dir=str(model_dir(tmp_path)), components=components())
    with pytest.raises(BackboneError, match="2 image"):
        b.step(Observation((camera(1),), "t", PROPRIO))
    with pytest.raises(BackboneError, match="proprio"):
        b.step(Observation((camera(1), camera(2)), "t", None))


def test_self_check_catches_image_blind_model(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="same actions"):
        oft.OpenVlaOftBackbone(
            model_dir=str(model_dir(tmp_path)),
            components=components(FakeVla(image_sensitive=False)),
        )
    oft.OpenVlaOftBackbone(model_dir=str(model_dir(tmp_path)), components=components())


@pytest.mark.parametrize("bad", ["", "moojink/openvla-7b-oft-finetuned-libero-10"])
def test_refuses_non_local_model_dir(bad: str) -> None:
    with pytest.raises(BackboneError, match="local directory"):
        oft.check_model_dir(bad, "libero_10_no_noops", True)


def test_refuses_missing_or_ambiguous_files(tmp_path: Path) -> None:
    d = model_dir(tmp_path, heads=2)
    with pytest.raises(BackboneError, match="exactly one"):
        oft.check_model_dir(str(d), "libero_10_no_noops", True)
    for p in d.glob("action_head*"):
        p.unlink()
    with pytest.raises(BackboneError, match="action_head"):
        oft.check_model_dir(str(d), "libero_10_no_noops", True)
    (d / "dataset_statistics.json").unlink()
    with pytest.raises(BackboneError, match="dataset_statistics"):
        oft.check_model_dir(str(d), "libero_10_no_noops", True)


def test_refuses_unknown_unnorm_key(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="libero_10_no_noops"):
        oft.check_model_dir(str(model_dir(tmp_path)), "bridge_orig", True)


def test_refuses_without_cuda_via_registry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackboneError, match="CUDA"):
        make_backbone("openvla_oft", model_dir=str(model_dir(tmp_path)))


def test_refuses_wrong_transformers_version(monkeypatch) -> None:
    fake = types.ModuleType("transformers")
    fake.__version__ = "4.57.1"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    with pytest.raises(BackboneError, match=r"4\.40\.1"):
        oft.check_runtime()
    oft.check_runtime(allow_other_transformers=True)
    fake.__version__ = "4.40.1"  # PyPI's and the fork's: the attention probe decides
    oft.check_runtime()


def test_refuses_without_upstream_prismatic(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "prismatic" or m.startswith("prismatic.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prismatic", None)  # import fails
    with pytest.raises(BackboneError, match="openvla-oft repo"):
        oft.rc.import_upstream(oft.rc.PLATFORMS[0])


def test_model_id_depends_on_statistics(tmp_path: Path) -> None:
    d = model_dir(tmp_path)
    b = oft.OpenVlaOftBackbone(model_dir=str(d), components=components(), self_check=False)
    first = b.model_id()
    stats = json.loads((d / "dataset_statistics.json").read_text())
    stats["extra"] = {}
    (d / "dataset_statistics.json").write_text(json.dumps(stats))
    assert b.model_id() != first


class RecordingProcessor(FakeProcessor):
    """Keeps the prepared images it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[np.ndarray] = []

    def __call__(self, prompt: str, image: Any) -> FakeInputs:
        self.images.append(np.asarray(image).copy())
        return super().__call__(prompt, image)


def test_libero_conventions_rotate_images_and_convert_the_gripper(tmp_path: Path) -> None:
    c = components(FakeVla())
    c.processor = RecordingProcessor()
    b = oft.OpenVlaOftBackbone(
        model_dir=str(model_dir(tmp_path)), components=c, self_check=False, center_crop=False
    )
    assert b.conventions == oft.Conventions(180, True, True, True)
    img = camera(3, (224, 224))  # 224 x 224: no resize, so the rotation is visible exactly
    out = b.step(Observation((img, img), "t", PROPRIO))
    np.testing.assert_array_equal(c.processor.images[-1], img[::-1, ::-1])  # upstream's flip
    level = float(c.vla.calls[-1]["pixel_values"].mean())  # the stand-in's raw action value
    np.testing.assert_allclose(out.action[:, :6], level, atol=1e-6)
    # gripper: 2 * level - 1, sign, then flipped (upstream normalize + invert_gripper_action)
    np.testing.assert_array_equal(out.action[:, 6], -np.sign(2 * np.float32(level) - 1))
    assert "conventions=libero" in b.describe() and "image_rotation=180" in b.describe()


def test_real_arm_conventions_change_nothing_and_overrides_apply(tmp_path: Path) -> None:
    c = components(FakeVla())
    c.processor = RecordingProcessor()
    b = oft.OpenVlaOftBackbone(
        model_dir=str(model_dir(tmp_path)),
        components=c,
        self_check=False,
        center_crop=False,
        conventions="real_arm",
    )
    img = camera(4, (224, 224))
    out = b.step(Observation((img, img), "t", PROPRIO))
    np.testing.assert_array_equal(c.processor.images[-1], img)
    np.testing.assert_allclose(out.action, float(c.vla.calls[-1]["pixel_values"].mean()))
    assert "as the model outputs it" in b.describe()
    over = oft.make_conventions("real_arm", image_rotation=90, gripper_invert=True)
    assert over == oft.Conventions(90, False, False, True)
    np.testing.assert_array_equal(
        oft.postprocess_gripper(np.array([[0.2, 0.9]], np.float32), over),
        np.array([[0.2, -0.9]], np.float32),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"conventions": "aloha"},
        {"image_rotation": 45},
        {"conventions": "real_arm", "gripper_binarize": True},
    ],
)
def test_bad_conventions_are_refused(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="openvla_oft"):
        oft.OpenVlaOftBackbone(
            model_dir=str(model_dir(tmp_path)), components=components(), **kwargs
        )


def test_bad_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype"):
        oft.resolve_device("cpu", "int8")
    assert oft.resolve_device("cpu", "auto") == ("cpu", torch.float32)
