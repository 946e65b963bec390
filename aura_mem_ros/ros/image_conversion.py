"""sensor_msgs/Image and CompressedImage <-> numpy RGB, without cv_bridge.

Backbones take RGB uint8 (H, W, 3). Only the encodings a camera driver commonly publishes
for a policy are accepted; anything else raises ``ImageConversionError`` with the reason,
so the node can reject the frame, count it and keep running.
"""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class ImageConversionError(ValueError):
    """The message cannot be turned into an RGB image (encoding, size or data length)."""


def image_to_rgb(msg: Image, max_pixels: int | None = None) -> np.ndarray:
    """Decode an Image message into a contiguous RGB uint8 array (H, W, 3).

    Respects ``step`` (row padding). ``is_bigendian`` is irrelevant for 8-bit encodings and is
    therefore accepted either way. Raises ImageConversionError on anything it cannot trust.
    """
    encoding = msg.encoding.lower()
    if encoding not in _CHANNELS:
        raise ImageConversionError(
            f"unsupported encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} is above max_image_pixels={max_pixels}")
    channels = _CHANNELS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than width*channels = {row_bytes}")
    if len(msg.data) != height * step:
        raise ImageConversionError(
            f"data has {len(msg.data)} bytes, expected height*step = {height}*{step}"
        )
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(height, step)
    pixels = rows[:, :row_bytes].reshape(height, width, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return np.repeat(pixels, 3, axis=2)


def rgb_to_image(
    rgb: np.ndarray, encoding: str = "rgb8", stamp: Time | None = None, frame_id: str = ""
) -> Image:
    """Encode an RGB uint8 (H, W, 3) array (or (H, W) for mono8) as an Image message."""
    if encoding not in _CHANNELS:
        raise ImageConversionError(f"cannot encode {encoding!r}")
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        raise ImageConversionError(f"expected uint8 pixels, got {arr.dtype}")
    if encoding == "mono8":
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
        channels = 1
    else:
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageConversionError(f"expected (H, W, 3) RGB, got shape {arr.shape}")
        if encoding == "bgr8":
            arr = arr[:, :, ::-1]
        channels = 3
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    # Assigning bytes is ~30x faster than assigning an ndarray to a uint8[] field.
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def compressed_to_rgb(msg: CompressedImage, max_pixels: int | None = None) -> np.ndarray:
    """Decode a CompressedImage (jpeg/png, via OpenCV) into RGB uint8 (H, W, 3)."""
    if len(msg.data) == 0:
        raise ImageConversionError("compressed image has no data")
    decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ImageConversionError(f"OpenCV could not decode format {msg.format!r}")
    height, width = decoded.shape[:2]
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"image {width}x{height} is above max_image_pixels={max_pixels}")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_compressed(
    rgb: np.ndarray, fmt: str = "png", stamp: Time | None = None
) -> CompressedImage:
    """Encode RGB uint8 as a CompressedImage (``fmt`` is 'png' or 'jpeg')."""
    ok, buf = cv2.imencode("." + fmt, cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode {fmt!r}")
    msg = CompressedImage()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg
