"""Turning incoming messages into backbone inputs, or a reasoned ``InputRejectedError``.

Proprio mapping (sensor_msgs/JointState -> float32 vector):
  * joint order: ``proprio_joint_names`` if given (names looked up in ``msg.name``; a
    missing name is a rejection), else the message's own order;
  * fields: ``proprio_fields`` = position | position_velocity | position_velocity_effort,
    concatenated field by field: [pos_0..pos_n, vel_0..vel_n, eff_0..eff_n];
  * every selected field must have one value per joint, all finite.
For OpenVLA-OFT (LIBERO) publish 8 "joints": eef x, y, z, axis-angle x, y, z and the two
gripper finger positions, in that order, as positions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from sensor_msgs.msg import CompressedImage, Image, JointState

from aura_mem_ros.ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
)
from aura_mem_ros.ros.pipeline import InputRejectedError, short_text

_FIELDS = {
    "position": ("position",),
    "position_velocity": ("position", "velocity"),
    "position_velocity_effort": ("position", "velocity", "effort"),
}


def message_to_rgb(msg: Image | CompressedImage, max_pixels: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) or InputRejectedError with the precise reason."""
    if isinstance(msg, CompressedImage):
        try:
            return compressed_to_rgb(msg, max_pixels=max_pixels)
        except ImageConversionError as exc:
            reason = "oversized_image" if "max_image_pixels" in str(exc) else "wrong_encoding"
            raise InputRejectedError(reason, f"compressed image rejected: {exc}") from exc
    width, height = int(msg.width), int(msg.height)
    # Checked here, in this order, so each failure is counted under its own reason; what
    # image_to_rgb can still refuse afterwards is a step/data-length inconsistency.
    if width == 0 or height == 0:
        raise InputRejectedError("empty_image", f"image is {width}x{height}")
    if width * height > max_pixels:
        raise InputRejectedError(
            "oversized_image",
            f"image {width}x{height} has more than max_image_pixels={max_pixels} pixels",
        )
    if msg.encoding.lower() not in SUPPORTED_ENCODINGS:
        raise InputRejectedError(
            "wrong_encoding", f"encoding {msg.encoding!r} is not one of {list(SUPPORTED_ENCODINGS)}"
        )
    try:
        return image_to_rgb(msg, max_pixels=max_pixels)
    except ImageConversionError as exc:
        raise InputRejectedError("bad_size", str(exc)) from exc


def joint_state_to_proprio(
    msg: JointState, joint_names: Sequence[str], fields: str, expected_dim: int | None
) -> np.ndarray:
    """The proprio vector of the module docstring, or InputRejectedError('bad_proprio')."""
    if fields not in _FIELDS:
        raise ValueError(f"proprio_fields {fields!r} not in {list(_FIELDS)}")
    names = list(msg.name)
    if joint_names:
        missing = [n for n in joint_names if n not in names]
        if missing:
            raise InputRejectedError("bad_proprio", f"JointState lacks joints {missing}")
        index = [names.index(n) for n in joint_names]
    else:
        count = len(msg.position) if not names else len(names)
        index = list(range(count))
    parts = []
    for field in _FIELDS[fields]:
        values = np.asarray(getattr(msg, field), dtype=np.float64)
        if values.size != (len(names) if names else len(index)):
            raise InputRejectedError(
                "bad_proprio",
                f"JointState.{field} has {values.size} values "
                f"for {len(names) if names else len(index)} joints",
            )
        parts.append(values[index])
    vec = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if not np.all(np.isfinite(vec)):
        raise InputRejectedError("bad_proprio", "proprio contains NaN or inf")
    if expected_dim is not None and vec.size != expected_dim:
        raise InputRejectedError(
            "bad_proprio", f"proprio has {vec.size} values, the backbone expects {expected_dim}"
        )
    return vec


def stamp_age_s(stamp: TimeMsg, now_ns: int) -> float:
    """Seconds since ``stamp``; inf for an unset (zero) stamp, which cannot be trusted."""
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    if stamp_ns == 0:
        return math.inf
    return (now_ns - stamp_ns) / 1e9


def check_instruction(text: str, max_bytes: int) -> None:
    """InputRejectedError('oversized_instruction') for an instruction over ``max_bytes``
    (UTF-8); the message quotes a short prefix only."""
    size = len(text.encode("utf-8", "replace"))
    if size > max_bytes:
        raise InputRejectedError(
            "oversized_instruction",
            f"instruction of {size} bytes exceeds max_instruction_bytes={max_bytes}; keeping "
            f"the current one (received: {short_text(text, 40)!r})",
        )
