"""No command from stale inputs: the publish-time age check, the proprio age, the pairing."""

from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from test_node_support import Rig, rig_fixture, values

from aura_mem_ros.ros.freshness import NS, ProprioBuffer, SourceTimes

pytestmark = pytest.mark.timeout(60)
TOY_PROPRIO = '{"d_model": 16, "proprio_dim": 1}'


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


# --------------------------------------------------------------------------- pure parts
def test_source_times_judges_every_input_at_the_given_moment() -> None:
    t = SourceTimes(image_ns=10 * NS, wrist_ns=10 * NS, proprio_ns=10 * NS)
    assert t.stale_input(10 * NS + NS // 10, 0.5, 0.25) is None
    assert t.stale_input(10 * NS + NS // 2 + 1, 0.5, 1.0)[0] == "frame"  # image first
    assert t.stale_input(10 * NS + 3 * NS // 10, 0.5, 0.25)[0] == "proprio"
    what, age = SourceTimes(image_ns=0).stale_input(10 * NS, 0.5, 0.25)
    assert what == "frame" and age == float("inf")  # unstamped: age unknown
    assert SourceTimes(image_ns=11 * NS).stale_input(10 * NS, 0.5, 0.25)[0] == "frame"  # future


def test_pairing_takes_the_nearest_stamp_on_either_side() -> None:
    buf = ProprioBuffer()
    for i in range(5):
        buf.add(f"js{i}", (100 + 10 * i) * NS // 1000, 0)  # 100, 110, ... 140 ms
    assert buf.pair(112 * NS // 1000, wait_s=0.0).msg == "js1"
    assert buf.pair(118 * NS // 1000, wait_s=0.0).msg == "js2"
    assert buf.pair(90 * NS // 1000, wait_s=0.0).msg == "js0"
    assert buf.pair(0, wait_s=0.0).msg == "js4"  # unstamped frame: the newest
    buf.add("unstamped", 0, 5)
    assert buf.pair(112 * NS // 1000, wait_s=0.0).msg == "unstamped"  # nothing to match on
    assert ProprioBuffer().pair(1, wait_s=0.0) is None


def test_pairing_sees_a_state_that_arrived_just_before_the_wait() -> None:
    """The race of the old code: the matching joint state lands between the frame being
    handed over and the wait starting; it must be used at once, not the NEXT one."""
    buf = ProprioBuffer()
    buf.add("previous", 1 * NS, 0)
    buf.add("matching", 2 * NS, 0)  # arrived before pair() is called
    t0 = time.monotonic()
    assert buf.pair(2 * NS, wait_s=1.0).msg == "matching"
    assert time.monotonic() - t0 < 0.5  # no waiting for a state that is already here


def test_pairing_waits_for_the_matching_state_and_not_beyond() -> None:
    buf = ProprioBuffer()
    buf.add("previous", 1 * NS, 0)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(buf.pair(2 * NS, wait_s=2.0).msg))
    waiter.start()
    time.sleep(0.05)
    buf.add("matching", 2 * NS, 0)
    buf.add("next", 3 * NS, 0)  # may land before the waiter wakes: nearest still wins
    waiter.join(3.0)
    assert got == ["matching"]


# --------------------------------------------------------------------------- in the node
def test_result_older_than_max_age_at_publish_time_is_dropped(make_rig) -> None:
    """A 0.6-s inference on a frame allowed 0.4 s: fresh when inference starts, stale when
    the action would go out. Dropped, counted, reported; never published."""
    rig: Rig = make_rig(backbone_args='{"d_model": 16, "delay_s": 0.6}', max_obs_age_s=0.4)
    rig.start()
    rig.send(rig.image(1), expect_action=False)
    snap = rig.node.stats.snapshot()
    assert snap.steps == 1 and snap.stale_results == 1 and snap.stale_frames == 0
    status = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert "result(s) dropped" in status.message and values(status)["stale_results"] == "1"
    assert rig.spin_until(lambda: bool(rig.stats) and rig.stats[-1].stale_results == 1)
    # The same frame age with a limit that allows it is served: the drop was the age.
    assert rig.node.set_parameters([Parameter("max_obs_age_s", value=2.0)])[0].successful
    rig.send(rig.image(2), expect_action=True)
    assert not rig.actions[-1].is_safe_action


def _joint(rig: Rig, value: float, stamped: bool = True) -> JointState:
    msg = JointState(name=["j"], position=[value])
    if stamped:
        msg.header.stamp = rig.now()
    return msg


@pytest.mark.parametrize("stamped", [True, False])
def test_joint_states_that_stop_reject_the_step(make_rig, stamped: bool) -> None:
    rig: Rig = make_rig(use_proprio=True, backbone_args=TOY_PROPRIO, max_proprio_age_s=0.2)
    rig.start()
    rig.proprio_pub.publish(_joint(rig, 1.0, stamped))
    assert rig.spin_until(lambda: rig.node.latest_proprio is not None)
    rig.send(rig.image(1), expect_action=True)
    rig.spin_for(0.3)  # the joint-state stream has stopped for longer than 0.2 s
    for value in range(3):
        rig.send(rig.image(value), expect_action=False)
    snap = rig.node.stats.snapshot()
    assert snap.rejected_by_reason == {"stale_proprio": 3} and snap.steps == 1
    status = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert values(status)["rejected_stale_proprio"] == "3"
    rig.proprio_pub.publish(_joint(rig, 2.0, stamped))  # the stream is back: served again
    assert rig.spin_until(lambda: rig.node.latest_proprio.position[0] == 2.0)
    rig.send(rig.image(4), expect_action=True)


def test_frame_is_paired_with_its_own_joint_state_when_the_next_follows_fast(make_rig) -> None:
    rig: Rig = make_rig(use_proprio=True, backbone_args=TOY_PROPRIO)
    rig.start()
    seen: list[float] = []
    original = rig.node.pipeline.backbone.step
    rig.node.pipeline.backbone.step = lambda obs: (
        seen.append(float(obs.proprio[0])),
        original(obs),
    )[1]
    rig.proprio_pub.publish(_joint(rig, 1.0))
    assert rig.spin_until(lambda: rig.node.latest_proprio is not None)
    frame = rig.image(5)
    rig.image_pub.publish(frame)  # delivered first; its joint state and the next follow
    own = JointState(name=["j"], position=[2.0])
    own.header.stamp = frame.header.stamp
    rig.proprio_pub.publish(own)
    nxt = JointState(name=["j"], position=[3.0])
    nxt.header.stamp = rig.now()
    nxt.header.stamp.sec += 1
    rig.proprio_pub.publish(nxt)
    assert rig.spin_until(lambda: len(rig.actions) == 1)
    assert seen == [2.0]
