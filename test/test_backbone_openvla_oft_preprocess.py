"""openvla_oft's images against REAL TensorFlow: frames that upstream's own preprocessing
calls made (test/fixtures/oft/tf_frames.npz, from aura_mem_dev/oft/make_tf_fixture.py),
compared stage by stage with the numpy reproduction that runs on the robot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aura_mem_ros.backbones import oft_preprocess as pp

FIXTURE = Path(__file__).parent / "fixtures" / "oft" / "tf_frames.npz"
MEAN_LIMIT, MAX_LIMIT = 0.5, 4  # levels (0..255), issue 14's target


def load_fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return {
            k: cv2.imdecode(f[k], cv2.IMREAD_COLOR)[:, :, ::-1]  # PNG, stored as RGB
            for k in f.files
            if k != "tensorflow_version"
        }


FRAMES = load_fixture()
INDICES = sorted(int(k.split("_")[1]) for k in FRAMES if k.startswith("input_"))


def diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(d.mean()), int(d.max())


@pytest.mark.parametrize("i", INDICES)
def test_whole_pipeline_matches_tensorflow(i: int) -> None:
    mean, worst = diff(pp.prepare_image(FRAMES[f"input_{i}"]), FRAMES[f"cropped_{i}"])
    print(f"frame {i} {FRAMES[f'input_{i}'].shape}: mean {mean:.4f} max {worst}")
    assert mean <= MEAN_LIMIT and worst <= MAX_LIMIT


@pytest.mark.parametrize("i", [i for i in INDICES if f"jpeg_{i}" in FRAMES])
def test_each_stage_matches_tensorflow(i: int) -> None:
    # JPEG: bit for bit (same encoder scan, TensorFlow's fast IDCT on decoding)
    np.testing.assert_array_equal(pp.jpeg_roundtrip(FRAMES[f"input_{i}"]), FRAMES[f"jpeg_{i}"])
    # lanczos3 with antialias and crop_and_resize: float32 summation order only
    assert diff(pp.resize_lanczos3(FRAMES[f"jpeg_{i}"]), FRAMES[f"resized_{i}"])[1] <= 1
    assert diff(pp.center_crop_resize(FRAMES[f"resized_{i}"]), FRAMES[f"cropped_{i}"])[1] <= 1


def test_the_old_opencv_approximation_would_fail_the_target() -> None:
    """The check can fail: OpenCV area resize + integer crop is far from TensorFlow."""
    img, want = FRAMES["input_0"], FRAMES["cropped_0"]
    small = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
    side = round(224 * np.sqrt(0.9))
    off = (224 - side) // 2
    approx = cv2.resize(small[off : off + side, off : off + side], (224, 224))
    assert diff(approx, want)[1] > MAX_LIMIT


def test_rotation_comes_before_the_resize() -> None:
    img = FRAMES["input_1"]  # 240 x 320: a rotation by 90 changes the resize factors
    np.testing.assert_array_equal(
        pp.prepare_image(img, rotation=180), pp.prepare_image(img[::-1, ::-1].copy())
    )
    assert pp.prepare_image(img, rotation=90).shape == (224, 224, 3)
    with pytest.raises(pp.PreprocessError):
        pp.prepare_image(img, rotation=45)
    with pytest.raises(pp.PreprocessError):
        pp.prepare_image(img.astype(np.float32))
