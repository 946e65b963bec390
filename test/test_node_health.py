"""Input health on /diagnostics: camera dropout, incompatible QoS, log-call robustness."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import String
from test_node_support import Rig, rig_fixture

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def test_camera_dropout_warns_then_recovers(make_rig) -> None:
    rig: Rig = make_rig(camera_timeout_s=0.4)
    rig.start()
    rig.send(rig.image(1), expect_action=True)
    assert rig.latest_status("inputs").level == DiagnosticStatus.OK
    silent = rig.latest_status(
        "inputs", where=lambda s: "no camera frame" in s.message, timeout_s=5.0
    )
    assert silent.level == DiagnosticStatus.WARN
    assert "camera dropout" in silent.message
    rig.diags.clear()
    rig.send(rig.image(2), expect_action=True)
    recovered = rig.latest_status("inputs", where=lambda s: s.level == DiagnosticStatus.OK)
    assert "no camera frame" not in recovered.message


def test_incompatible_qos_publisher_is_reported(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    # The node asks for a RELIABLE instruction; a BEST_EFFORT publisher can never reach it.
    best_effort = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.BEST_EFFORT)
    rig.client.create_publisher(String, "/instruction", best_effort)
    status = rig.latest_status(
        "inputs", where=lambda s: "incompatible QoS" in s.message, timeout_s=5.0
    )
    assert status.level == DiagnosticStatus.WARN
    assert "instruction: RELIABILITY" in status.message


def test_empty_instruction_after_a_change_keeps_the_node_alive(make_rig) -> None:
    # Regression: one log call site used two severities, which rclpy refuses at run time.
    rig: Rig = make_rig()
    rig.start()
    for text in ("open the drawer", "", "close the drawer", ""):
        rig.instruct(text)
    assert rig.node.pipeline.instruction == "close the drawer"
    assert rig.node.stats.snapshot().rejected_by_reason["empty_instruction"] == 2
    rig.send(rig.image(3), expect_action=True)
