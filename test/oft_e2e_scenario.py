"""The OFT end-to-end scenario, run by test_backbone_openvla_oft_real.py in a fresh process
(that process must import the OFT fork of transformers, not the installed one).

The aura_mem node configures ``openvla_oft`` on the tiny real-architecture checkpoint through
its real path (parameters -> make_backbone -> load_components -> build_runtime), in-process
with a client node (discovery off), on CPU in float32. The client publishes wrist image,
JointState proprio (8 joints) and the primary image; the node must answer each frame with
an AuraAction. Results go to a JSON file for the test to judge.

usage: python test/oft_e2e_scenario.py MODEL_DIR UPSTREAM_DIR OUT_JSON
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import Header
from test_node_support import Rig

from aura_mem_dev.oft.tiny_checkpoint import tiny_vision_towers
from aura_mem_ros.backbones import Observation
from aura_mem_ros.ros.image_conversion import rgb_to_image

STEP_TIMEOUT_S = 120.0  # one CPU step of the tiny 4096-wide model takes ~5 s on a busy core
INSTRUCTION = "put the black bowl in the bottom drawer"


def camera(seed: int, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((*shape, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)  # a flat colour ...
    y, x = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
    img[y : y + shape[0] // 3, x : x + shape[1] // 3] = rng.integers(0, 256, 3)  # ... a block
    return img


def main(model_dir: str, upstream_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    result: dict = {}
    backbone_args = {
        "model_dir": model_dir,
        "upstream_dir": upstream_dir,
        "device": "cpu",
        "conventions": "libero",
    }
    with tiny_vision_towers():
        rig = Rig(
            context,
            executor,
            backbone="openvla_oft",
            backbone_args=json.dumps(backbone_args),
            instruction=INSTRUCTION,
            use_wrist_image=True,
            use_proprio=True,
            aura_checkpoint="",  # untrained AURA layer: the action is the backbone's
            # CPU float32 inference takes seconds: every input age is checked again at
            # publish time, so both limits are the step timeout here.
            max_obs_age_s=STEP_TIMEOUT_S,
            max_proprio_age_s=STEP_TIMEOUT_S,
        )
        t0 = time.perf_counter()
        rig.start()
        result["configure_s"] = time.perf_counter() - t0
    backbone = rig.node.pipeline.backbone
    result["describe"] = backbone.describe()
    result["aura_step"] = rig.node.pipeline.runtime.step_path
    frames = []
    for seed in range(3):
        image, wrist = camera(seed), camera(100 + seed, (128, 128))
        proprio = np.linspace(-0.2, 0.2, 8).astype(np.float32) + 0.01 * seed
        stamp = rig.now()
        rig.wrist_pub.publish(rgb_to_image(wrist, stamp=stamp, frame_id="wrist"))
        rig.proprio_pub.publish(
            JointState(
                header=Header(stamp=stamp, frame_id="base"),
                name=[f"j{i}" for i in range(8)],
                position=proprio.astype(float).tolist(),
            )
        )
        rig.spin_for(0.2)
        before = len(rig.actions)
        t = time.perf_counter()
        # One stamp for the three inputs of a control tick, as a robot driver stamps them: the
        # node pairs the frame with the joint state of the same stamp.
        rig.image_pub.publish(rgb_to_image(image, stamp=stamp, frame_id="cam"))
        got = rig.spin_until(lambda b=before: len(rig.actions) > b, timeout_s=STEP_TIMEOUT_S)
        wall = time.perf_counter() - t
        if not got:
            result["error"] = f"no action for frame {seed}: {rig.node.stats.snapshot()}"
            break
        msg = rig.actions[-1]
        frames.append(
            {
                "wall_s": wall,
                "latency_ms": msg.latency_ms,
                "shape": [msg.chunk_size, msg.action_dim],
                "action": list(msg.action),
                "images": (image, wrist, proprio),
            }
        )
    if frames:
        # the published action must be exactly what the backbone computes for these inputs
        image, wrist, proprio = frames[0]["images"]
        direct = backbone.step(Observation((image, wrist), INSTRUCTION, proprio)).action
        result["direct_vs_published_max"] = float(
            np.max(np.abs(direct.reshape(-1) - np.asarray(frames[0]["action"])))
        )
    for f in frames:
        del f["images"]
    result["frames"] = frames
    result["stats"] = str(rig.node.stats.snapshot())
    rig.close()
    executor.shutdown()
    rclpy.shutdown(context=context)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:4])
