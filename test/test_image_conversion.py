"""Image <-> numpy conversion without cv_bridge."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from aura_mem_ros.ros.image_conversion import (
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_compressed,
    rgb_to_image,
)

RNG = np.random.default_rng(0)


def random_rgb(h: int = 5, w: int = 7) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_color_round_trip(encoding: str) -> None:
    rgb = random_rgb()
    msg = rgb_to_image(rgb, encoding=encoding)
    assert msg.encoding == encoding and msg.step == 7 * 3
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bgr8_really_swaps_channels() -> None:
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[0, 0] = (10, 20, 30)
    msg = rgb_to_image(rgb, encoding="bgr8")
    assert bytes(msg.data) == bytes([30, 20, 10])


def test_mono8_expands_to_rgb() -> None:
    gray = RNG.integers(0, 256, size=(4, 6), dtype=np.uint8)
    msg = rgb_to_image(gray, encoding="mono8")
    out = image_to_rgb(msg)
    assert out.shape == (4, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_step_padding_is_cropped() -> None:
    rgb = random_rgb(3, 4)
    padded = np.zeros((3, 4 * 3 + 5), np.uint8)
    padded[:, : 4 * 3] = rgb.reshape(3, -1)
    padded[:, 4 * 3 :] = 255  # garbage in the padding must not leak into the pixels
    msg = Image(height=3, width=4, encoding="rgb8", step=17, data=padded.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_big_endian_flag_is_harmless_for_8bit() -> None:
    rgb = random_rgb()
    msg = rgb_to_image(rgb)
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: setattr(m, "encoding", "16UC1"), "unsupported encoding"),
        (lambda m: setattr(m, "encoding", "yuv422"), "unsupported encoding"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "expected height\\*step"),
        (lambda m: setattr(m, "step", 5), "step 5 is smaller"),
        (lambda m: (setattr(m, "width", 0), setattr(m, "data", b"")), "zero-size"),
    ],
)
def test_bad_images_raise_clear_errors(mutate, reason: str) -> None:
    msg = rgb_to_image(random_rgb())
    mutate(msg)
    with pytest.raises(ImageConversionError, match=reason):
        image_to_rgb(msg)


def test_oversized_image_rejected() -> None:
    msg = rgb_to_image(random_rgb(10, 10))
    with pytest.raises(ImageConversionError, match="max_image_pixels"):
        image_to_rgb(msg, max_pixels=99)
    assert image_to_rgb(msg, max_pixels=100).shape == (10, 10, 3)


def test_compressed_png_round_trip_is_lossless() -> None:
    rgb = random_rgb(8, 9)
    msg = rgb_to_compressed(rgb, "png")
    assert msg.format == "png"
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


def test_compressed_jpeg_decodes_close() -> None:
    rgb = np.full((16, 16, 3), (200, 50, 20), np.uint8)
    out = compressed_to_rgb(rgb_to_compressed(rgb, "jpeg"))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).max() < 12


def test_corrupt_compressed_raises() -> None:
    with pytest.raises(ImageConversionError, match="could not decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"\x00notajpeg" * 4))
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"))
