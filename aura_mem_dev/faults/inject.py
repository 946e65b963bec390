"""Malformed inputs, built field by field (``rgb_to_image`` would refuse to make most of them)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image, JointState


def raw_image(stamp: Any, width: int, height: int, encoding: str, step: int, data: bytes) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = "camera"
    msg.width, msg.height = int(width), int(height)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(step)
    msg.data = data
    return msg


def wrong_encoding(stamp: Any, size: int = 56) -> list[tuple[str, Image]]:
    """Encodings a camera may really send that the node does not take."""
    return [
        (
            "yuv422 (2 bytes/px)",
            raw_image(stamp, size, size, "yuv422", size * 2, bytes(size * size * 2)),
        ),
        (
            "32FC1 depth image",
            raw_image(stamp, size, size, "32FC1", size * 4, bytes(size * size * 4)),
        ),
        ("bayer_rggb8", raw_image(stamp, size, size, "bayer_rggb8", size, bytes(size * size))),
        (
            "empty encoding string",
            raw_image(stamp, size, size, "", size * 3, bytes(size * size * 3)),
        ),
    ]


def step_length_mismatch(stamp: Any, size: int = 56) -> list[tuple[str, Image]]:
    row = size * 3
    return [
        ("data one row short", raw_image(stamp, size, size, "rgb8", row, bytes(row * (size - 1)))),
        ("data one byte long", raw_image(stamp, size, size, "rgb8", row, bytes(row * size + 1))),
        ("step < width*3", raw_image(stamp, size, size, "rgb8", row - 3, bytes((row - 3) * size))),
        (
            "step padded but data unpadded",
            raw_image(stamp, size, size, "rgb8", row + 8, bytes(row * size)),
        ),
    ]


def zero_size(stamp: Any) -> list[tuple[str, Image]]:
    return [
        ("0x0, no data", raw_image(stamp, 0, 0, "rgb8", 0, b"")),
        ("0 wide, 56 high", raw_image(stamp, 0, 56, "rgb8", 0, b"")),
        ("56 wide, 0 high, data present", raw_image(stamp, 56, 0, "rgb8", 168, bytes(168))),
    ]


def oversized(stamp: Any, max_pixels: int) -> list[tuple[str, Image]]:
    """A genuine image just above ``max_image_pixels`` and a header that lies about its size."""
    width = int(np.ceil(np.sqrt(max_pixels + 1)))
    height = max_pixels // width + 1
    real = raw_image(stamp, width, height, "rgb8", width * 3, bytes(width * height * 3))
    liar = raw_image(stamp, 100_000, 100_000, "rgb8", 300_000, bytes(56 * 56 * 3))
    return [
        (f"real {width}x{height} rgb8 ({width * height * 3 / 1e6:.1f} MB)", real),
        ("header claims 100000x100000, 9 kB of data", liar),
    ]


def bad_proprio(stamp: Any) -> list[tuple[str, JointState]]:
    out = []
    for label, value in (("NaN", float("nan")), ("+inf", float("inf")), ("-inf", float("-inf"))):
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = ["heading"]
        msg.position = [value]
        out.append((f"heading = {label}", msg))
    return out
