"""Bad input: each kind is rejected with a log line, counted, and leaves memory untouched;
the node keeps serving afterwards."""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from test_node_support import Rig, rgb, rig_fixture, values

from aura_mem_ros.backbones import BackboneError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def wrong_encoding(rig: Rig) -> Image:
    msg = rig.image(1)
    msg.encoding = "16UC1"
    return msg


def short_data(rig: Rig) -> Image:
    msg = rig.image(1)
    msg.data = bytes(msg.data)[:-7]
    return msg


def bad_step(rig: Rig) -> Image:
    msg = rig.image(1)
    msg.step = msg.width  # smaller than width * 3 for rgb8
    return msg


def zero_size(rig: Rig) -> Image:
    msg = rig.image(1)
    msg.width = msg.height = msg.step = 0
    msg.data = b""
    return msg


def oversized(rig: Rig) -> Image:
    return rig.image(1, shape=(64, 64))  # 4,096 px > max_image_pixels = 2,000 below


CASES: dict[str, tuple[Callable[[Rig], Image], str]] = {
    "wrong_encoding": (wrong_encoding, "wrong_encoding"),
    "short_data": (short_data, "bad_size"),
    "bad_step": (bad_step, "bad_size"),
    "zero_size": (zero_size, "empty_image"),
    "oversized": (oversized, "oversized_image"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_image_rejected_counted_memory_untouched(make_rig, capfd, case: str) -> None:
    build, reason = CASES[case]
    rig: Rig = make_rig(max_image_pixels=2000)
    rig.start()
    rig.send(rig.image(0), expect_action=True)  # memory now holds something
    before = rig.state()
    rig.send(build(rig), expect_action=False)
    snap = rig.node.stats.snapshot()
    assert snap.rejected_by_reason == {reason: 1}
    assert snap.steps == 1 and rig.state() == before
    assert f"input rejected ({reason})" in capfd.readouterr().err
    status = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert values(status)[f"rejected_{reason}"] == "1"
    rig.spin_until(lambda: bool(rig.stats) and rig.stats[-1].rejected_inputs == 1)
    assert rig.stats[-1].rejected_inputs == 1  # counted in MemoryStats too
    rig.send(rig.image(2), expect_action=True)  # still serving


def test_undecodable_compressed_image(make_rig) -> None:
    rig: Rig = make_rig(use_compressed=True)
    rig.start()
    good = CompressedImage(format="png")
    good.data = cv2.imencode(".png", rgb(3))[1].tobytes()
    good.header.stamp = rig.now()
    rig.send(good, expect_action=True)
    before = rig.state()
    bad = CompressedImage(format="jpeg", data=b"\x00not a jpeg")
    bad.header.stamp = rig.now()
    rig.send(bad, expect_action=False)
    assert rig.node.stats.snapshot().rejected_by_reason == {"wrong_encoding": 1}
    assert rig.state() == before


@pytest.mark.parametrize(
    "joints",
    [
        JointState(name=["a", "b"], position=[math.nan, 0.0]),
        JointState(name=["a", "b"], position=[math.inf, 0.0]),
        JointState(name=["a", "b", "c"], position=[0.0, 0.0, 0.0]),  # 3 values, 2 expected
        JointState(name=["a", "b"], position=[0.0]),  # fewer positions than names
    ],
)
def test_bad_proprio_rejected(make_rig, joints: JointState) -> None:
    rig: Rig = make_rig(use_proprio=True, backbone_args='{"d_model": 16, "proprio_dim": 2}')
    rig.start()
    rig.proprio_pub.publish(JointState(name=["a", "b"], position=[0.1, 0.2]))
    rig.spin_until(lambda: rig.node.latest_proprio is not None)
    rig.send(rig.image(0), expect_action=True)
    before = rig.state()
    rig.proprio_pub.publish(joints)
    rig.spin_until(lambda: list(rig.node.latest_proprio.position) != [0.1, 0.2])
    rig.send(rig.image(1), expect_action=False)
    assert rig.node.stats.snapshot().rejected_by_reason == {"bad_proprio": 1}
    assert rig.state() == before


def test_proprio_joint_order_mapping(make_rig) -> None:
    rig: Rig = make_rig(
        use_proprio=True,
        backbone_args='{"d_model": 16, "proprio_dim": 2}',
        proprio_joint_names=["b", "a"],
    )
    rig.start()
    seen = []
    original = rig.node.pipeline.backbone.step
    rig.node.pipeline.backbone.step = lambda obs: (seen.append(obs.proprio), original(obs))[1]
    rig.proprio_pub.publish(JointState(name=["a", "x", "b"], position=[1.0, 9.0, 2.0]))
    rig.spin_until(lambda: rig.node.latest_proprio is not None)
    rig.send(rig.image(0), expect_action=True)
    assert seen[-1].tolist() == [2.0, 1.0]


def test_missing_proprio(make_rig) -> None:
    rig: Rig = make_rig(use_proprio=True, backbone_args='{"d_model": 16, "proprio_dim": 2}')
    rig.start()
    rig.send(rig.image(0), expect_action=False)
    assert rig.node.stats.snapshot().rejected_by_reason == {"missing_proprio": 1}
    rig.proprio_pub.publish(JointState(name=["a", "b"], position=[0.1, 0.2]))
    rig.spin_until(lambda: rig.node.latest_proprio is not None)
    rig.send(rig.image(0), expect_action=True)


def test_missing_wrist_image_then_two_images(make_rig) -> None:
    rig: Rig = make_rig(use_wrist_image=True, backbone_args='{"d_model": 16, "num_images": 2}')
    rig.start()
    rig.send(rig.image(0), expect_action=False)
    assert rig.node.stats.snapshot().rejected_by_reason == {"image_count": 1}
    seen = []
    original = rig.node.pipeline.backbone.step
    rig.node.pipeline.backbone.step = lambda obs: (seen.append(obs.images), original(obs))[1]
    rig.wrist_pub.publish(rig.image(5, shape=(10, 12)))
    rig.spin_until(lambda: rig.node._latest_wrist is not None)
    rig.send(rig.image(0), expect_action=True)
    assert [im.shape for im in seen[-1]] == [(24, 32, 3), (10, 12, 3)]  # primary first


def test_wrong_image_count_config_refused(make_rig) -> None:
    rig: Rig = make_rig(use_wrist_image=True)  # toy takes 1 image
    assert rig.node.trigger_configure() != TransitionCallbackReturn.SUCCESS
    assert "use_wrist_image" in rig.node.configure_error


def test_empty_instruction_rejected_and_ignored(make_rig) -> None:
    rig: Rig = make_rig(reset_policy="instruction_change")
    rig.start()
    rig.send(rig.image(0), expect_action=True)
    before = rig.state()
    rig.instruct("   ")
    snap = rig.node.stats.snapshot()
    assert snap.rejected_by_reason == {"empty_instruction": 1}
    assert rig.node.pipeline.instruction == "pick up the cup"
    assert rig.state() == before and snap.resets == 0


def test_no_instruction_yet(make_rig) -> None:
    rig: Rig = make_rig(instruction="")
    rig.start()
    rig.send(rig.image(0), expect_action=False)
    assert rig.node.stats.snapshot().rejected_by_reason == {"no_instruction": 1}
    rig.instruct("stack the blocks")
    rig.send(rig.image(0), expect_action=True)


def test_backbone_exception_is_error_on_diagnostics_then_recovers(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    rig.send(rig.image(0), expect_action=True)
    before = rig.state()
    original = rig.node.pipeline.backbone.step

    def explode(obs):
        raise BackboneError("CUDA out of memory (simulated)")

    rig.node.pipeline.backbone.step = explode
    rig.send(rig.image(1), expect_action=False)
    assert rig.state() == before
    status = rig.latest_status("backbone", where=lambda s: s.level == DiagnosticStatus.ERROR)
    assert "out of memory" in status.message
    rig.node.pipeline.backbone.step = original
    rig.send(rig.image(2), expect_action=True)
    rig.latest_status(
        "backbone",
        where=lambda s: s.level == DiagnosticStatus.OK and values(s)["backbone_errors"] == "1",
    )


def test_oversized_instruction_rejected_and_never_echoed_whole(make_rig, capfd) -> None:
    rig: Rig = make_rig(max_instruction_bytes=1024)
    rig.start()
    huge = "move the red block " + "x" * 1_000_000  # 1 MB
    rig.instruct(huge)
    assert rig.node.pipeline.instruction == "pick up the cup"  # kept
    assert rig.node.stats.snapshot().rejected_by_reason == {"oversized_instruction": 1}
    status = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert sum(len(kv.key) + len(kv.value) for kv in status.values) < 2000
    assert len(status.message) < 300
    log = capfd.readouterr().err
    assert "oversized_instruction" in log and "1000019 bytes" in log
    assert max(len(line) for line in log.splitlines()) < 500
    # At the limit it is taken, and diagnostics still show only a prefix of it.
    long_ok = "stack the cups " + "y" * 1000
    rig.instruct(long_ok)
    assert rig.node.pipeline.instruction == long_ok
    status = rig.latest_status(
        "inputs", where=lambda s: values(s)["instruction"].startswith("stack the cups")
    )
    assert len(values(status)["instruction"]) < 120
    rig.send(rig.image(1), expect_action=True)
