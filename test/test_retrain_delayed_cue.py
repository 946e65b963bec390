"""aura-mem-train on a task whose targets NEED memory: a delayed cue decides a later action.

Each episode (toy backbone, continuous chunks) shows a RED or BLUE cue on one of its first two
frames, grey noise frames, then a GREEN query frame. The teleoperator's action equals the base
action everywhere except at the query: base + OFFSET for red, base - OFFSET for blue. At the
query nothing in view tells which, so a memoryless policy is right half the time at best; a
layer that writes the cue and reads it at the query is right every time. The layer is trained
from the recorded action labels only (no write schedule, no cue flag) and then SERVED step by
step through ``AuraRuntime``, as the node runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aura_mem_ros.retrain.cli import main

pytestmark = pytest.mark.timeout(180)

STEPS = 6
OFFSET = np.array([[0.5, -0.5, 0.5], [0.5, -0.5, 0.5]], np.float32)  # (chunk 2, dim 3)
INSTRUCTION = "remember the colour"
RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 230, 20)


def episode_frames(rng: np.random.Generator) -> tuple[list[np.ndarray], int]:
    """-> frames (H, W, 3) uint8, sign (+1 red cue, -1 blue cue)."""
    sign = 1 if rng.random() < 0.5 else -1
    cue_at = int(rng.integers(0, 2))
    frames = []
    for t in range(STEPS):
        img = np.clip(128 + rng.normal(0, 25, (24, 32, 3)), 0, 255).astype(np.uint8)
        if t == cue_at:
            img[:] = RED if sign > 0 else BLUE
        elif t == STEPS - 1:
            img[:] = GREEN
        frames.append(img)
    return frames, sign


def target_action(base: np.ndarray, t: int, sign: int) -> np.ndarray:
    return base + sign * OFFSET if t == STEPS - 1 else base


def write_cue_bag(path: Path, episodes: int, seed: int, learnable: bool = True) -> None:
    """Frames on /image, the operator's action on /teleop/action (same stamp); 3 s gaps
    separate episodes. ``learnable=False``: the operator copies the base action."""
    from aura_mem_ros.backbones import Observation, make_backbone
    from aura_mem_ros.bags.types import make_typestore
    from aura_mem_ros.bags.writer import SplitBagWriter, TopicSpec

    ts = make_typestore()
    types = {
        "/image": "sensor_msgs/msg/Image",
        "/instruction": "std_msgs/msg/String",
        "/teleop/action": "aura_mem_ros/msg/AuraAction",
    }
    writer = SplitBagWriter(path)
    for topic, t in types.items():
        writer.add_topic(
            TopicSpec(topic, t, ts.generate_msgdef(t, ros_version=2)[0], ts.hash_rihs01(t))
        )
    backbone = make_backbone("toy", d_model=16)
    rng = np.random.default_rng(seed)
    t_ns = 1_800_000_000 * 10**9

    def write(topic: str, msg: object) -> None:
        writer.write(topic, t_ns, bytes(ts.serialize_cdr(msg, types[topic])))

    write("/instruction", ts.types["std_msgs/msg/String"](INSTRUCTION))
    for _ in range(episodes):
        frames, sign = episode_frames(rng)
        for t, img in enumerate(frames):
            stamp = ts.types["builtin_interfaces/msg/Time"](t_ns // 10**9, t_ns % 10**9)
            header = ts.types["std_msgs/msg/Header"](stamp, "cam")
            msg = ts.types["sensor_msgs/msg/Image"](header, 24, 32, "rgb8", 0, 96, img.reshape(-1))
            write("/image", msg)
            base = backbone.step(Observation((img,), INSTRUCTION)).action
            target = target_action(base, t, sign) if learnable else base
            action = ts.types["aura_mem_ros/msg/AuraAction"](
                header, target.astype(np.float32).reshape(-1), 2, 3, False, 0.0, 0, 0.0, False
            )
            write("/teleop/action", action)
            t_ns += 100_000_000
        t_ns += 3 * 10**9
    writer.close()


def serve(checkpoint: Path, episodes: int, seed: int) -> tuple[float, float]:
    """Closed loop through the node's runtime: -> success rate at the query, writes/episode."""
    from aura_mem_ros.backbones import Observation, make_backbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime

    backbone = make_backbone("toy", d_model=16)
    runtime = AuraRuntime(load_aura(checkpoint), gate="learned")
    rng = np.random.default_rng(seed)
    successes = writes = 0
    for _ in range(episodes):
        runtime.reset()
        frames, sign = episode_frames(rng)
        for img in frames:
            out = backbone.step(Observation((img,), INSTRUCTION))
            step = runtime.select_action(out.features, out.action)
            writes += int(step.wrote)
        residual = np.asarray(step.action) - out.action  # at the query
        successes += int(np.sign((residual * OFFSET).sum()) == sign)
    return successes / episodes, writes / episodes


def _train(bag: Path, out: Path, *extra: str) -> int:
    toy = ["--backbone", "toy", "--backbone-args", '{"d_model": 16}']
    return main(["--bags", str(bag), "--out", str(out), *toy, "--budget", "0.2", "--quiet", *extra])


def test_retrained_layer_stores_the_cue_and_acts_on_it_when_served(tmp_path: Path) -> None:
    bag = tmp_path / "cue_bag"
    write_cue_bag(bag, episodes=60, seed=0)
    out = tmp_path / "layer"
    rc = _train(bag, out, "--max-iterations", "300", "--warmup", "50")
    assert rc == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["improved_on_start"]
    before, after = card["validation"]["before"], card["validation"]["after"]
    assert after["loss"] < before["loss"] - 0.05, (before, after)
    # fresh episodes (other seeds), served one step at a time as the node serves them
    success, writes_per_episode = serve(out, episodes=100, seed=12345)
    assert success >= 0.9, (success, writes_per_episode)
    # it writes (one bit: the cue, or only one of its colours), never every frame
    assert 0.3 <= writes_per_episode <= 1.5, writes_per_episode


def test_a_layer_no_better_than_its_start_is_not_saved_unless_allowed(tmp_path: Path, capsys):
    bag = tmp_path / "copy_bag"
    write_cue_bag(bag, episodes=10, seed=1, learnable=False)  # nothing to learn: base = target
    out = tmp_path / "refused"
    assert _train(bag, out, "--max-iterations", "20", "--eval-every", "10") == 3
    assert "NOTHING was saved" in capsys.readouterr().err
    assert not (out / "aura.safetensors").exists()

    allowed = tmp_path / "allowed"
    assert (
        _train(bag, allowed, "--max-iterations", "20", "--eval-every", "10", "--allow-worse") == 0
    )
    assert "--allow-worse" in capsys.readouterr().err
    card = json.loads((allowed / "model_card.json").read_text())
    assert card["training"]["improved_on_start"] is False and card["training"]["allow_worse"]
    assert (allowed / "aura.safetensors").is_file()
