"""Make the reference frames for ``test/test_backbone_openvla_oft_preprocess.py`` with REAL
TensorFlow, running upstream OpenVLA-OFT's own preprocessing calls.

Run once, in a TensorFlow venv that is NOT the project's (TensorFlow's pins clash with it):

    python3 -m venv /work/venvs/tf && /work/venvs/tf/bin/pip install tensorflow-cpu
    /work/venvs/tf/bin/python aura_mem_dev/oft/make_tf_fixture.py test/fixtures/oft/tf_frames.npz

Inputs are synthetic but hard on a resampler: sharp edges, smooth gradients, fine stripes
near the Nyquist limit (aliasing shows if antialiasing is wrong), text-like strokes and
a patch of sensor noise. Sizes: 256 x 256 (LIBERO's render size), 240 x 320 (a 4:3 arm camera,
shrinking with different row/column factors), 160 x 120 (enlarged) and 224 x 224 (upstream
skips the JPEG round trip and resize, and only crops). Everything below the ``tf`` calls is
copied from upstream ``experiments/robot/openvla_utils.py`` (resize_image_for_policy,
crop_and_resize, center_crop_image), unchanged in arithmetic. Each frame is stored as a
lossless PNG (RGB) in the npz; ``load_fixture`` in the test decodes them.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import tensorflow as tf

OPENVLA_IMAGE_SIZE = 224
SIZES = ((256, 256), (240, 320), (160, 120), (224, 224))


def make_input(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [
            255 * xx / width,
            255 * yy / height,
            127 + 100 * np.sin(xx / 19.0 + yy / 29.0),
        ],
        -1,
    )
    img[height // 5 : height // 2, width // 4 : (3 * width) // 5] = (220, 40, 30)  # a red block
    cy, cx, r = int(height * 0.65), int(width * 0.3), min(height, width) // 7
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (20, 160, 230)  # a blue disc
    stripes = ((xx // 2) % 2 == 0) & (yy > height * 0.8)  # 2-px stripes: near Nyquist
    img[stripes] = 250
    for k in range(6):  # thin dark strokes, like text or cables
        x0 = int(width * (0.55 + 0.06 * k))
        img[int(height * 0.1) : int(height * 0.45), x0 : x0 + 1 + (k % 2)] = 15
    patch = (slice(height - 48, height - 8), slice(8, 56))  # sensor noise, in one patch only
    img[patch] += rng.normal(0.0, 6.0, img[patch].shape)  # (keeps the fixture small)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def resize_image_for_policy(img: np.ndarray, resize_size: int) -> tuple[np.ndarray, np.ndarray]:
    """upstream resize_image_for_policy; also returns the JPEG round trip on its own."""
    img = tf.image.encode_jpeg(img)
    img = tf.io.decode_image(img, expand_animations=False, dtype=tf.uint8)
    decoded = img.numpy()
    img = tf.image.resize(img, (resize_size, resize_size), method="lanczos3", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    return decoded, img.numpy()


def center_crop_image(image: np.ndarray) -> np.ndarray:
    """upstream center_crop_image + crop_and_resize, batch 1, crop_scale 0.9."""
    batch_size, crop_scale = 1, 0.9
    image = tf.convert_to_tensor(image)
    orig_dtype = image.dtype
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.expand_dims(image, axis=0)
    new_heights = tf.reshape(tf.clip_by_value(tf.sqrt(crop_scale), 0, 1), shape=(batch_size,))
    new_widths = tf.reshape(tf.clip_by_value(tf.sqrt(crop_scale), 0, 1), shape=(batch_size,))
    height_offsets = (1 - new_heights) / 2
    width_offsets = (1 - new_widths) / 2
    boxes = tf.stack(
        [height_offsets, width_offsets, height_offsets + new_heights, width_offsets + new_widths],
        axis=1,
    )
    image = tf.image.crop_and_resize(
        image, boxes, tf.range(batch_size), (OPENVLA_IMAGE_SIZE, OPENVLA_IMAGE_SIZE)
    )[0]
    image = tf.clip_by_value(image, 0, 1)
    return tf.image.convert_image_dtype(image, orig_dtype, saturate=True).numpy()


def main(out: str) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, (h, w) in enumerate(SIZES):
        img = make_input(h, w, seed=i)
        arrays[f"input_{i}"] = img
        if img.shape[:2] != (OPENVLA_IMAGE_SIZE, OPENVLA_IMAGE_SIZE):
            decoded, resized = resize_image_for_policy(img, OPENVLA_IMAGE_SIZE)
            arrays[f"jpeg_{i}"] = decoded
            arrays[f"resized_{i}"] = resized
        else:
            resized = img
        arrays[f"cropped_{i}"] = center_crop_image(resized)
    # PNG inside the npz: its row filters shrink smooth images ~3x more than zlib alone
    stored = {
        k: np.frombuffer(cv2.imencode(".png", v[:, :, ::-1])[1], np.uint8)
        for k, v in arrays.items()
    }
    stored["tensorflow_version"] = np.array(tf.__version__)
    np.savez(out, **stored)
    print(f"wrote {out}: {len(SIZES)} frames, TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/oft/tf_frames.npz")
