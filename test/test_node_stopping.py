"""Stopping: the safe action goes out at once even with an inference in flight (whose result is
discarded), transitions never wait for the worker, finalized statuses say so, and names carry
the node's namespace. (The 100-ms bound itself is measured by the fault table, not here.)"""

from __future__ import annotations

import threading
import time

import pytest
from aura_mem_ros.msg import AuraAction
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.node import Node
from rclpy.parameter import Parameter
from test_node_support import BASE_PARAMS, Rig, rig_fixture

from aura_mem_ros.ros import qos
from aura_mem_ros.ros.aura_node import AuraMemNode

pytestmark = pytest.mark.timeout(60)
SLOW = '{"d_model": 16, "delay_s": 2.0}'


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def _in_flight(rig: Rig) -> None:
    """One frame whose 2-s inference is running now (inside the backbone)."""
    entered = threading.Event()
    original = rig.node.pipeline.backbone.step
    rig.node.pipeline.backbone.step = lambda obs: (entered.set(), original(obs))[1]
    rig.image_pub.publish(rig.image(7))
    assert rig.spin_until(entered.is_set), "inference never started"


@pytest.mark.parametrize("transition", ["deactivate", "shutdown"])
def test_stop_with_inference_in_flight_is_immediate_and_discards_it(make_rig, transition):
    rig: Rig = make_rig(backbone_args=SLOW, max_obs_age_s=10.0)
    rig.start()
    memory = rig.state()
    _in_flight(rig)
    t0 = time.monotonic()
    trigger = getattr(rig.node, f"trigger_{transition}")
    assert trigger() == Ret.SUCCESS
    took = time.monotonic() - t0
    assert took < 1.0, f"{transition} waited {took:.2f} s for the inference"  # it takes 2 s
    assert rig.spin_until(lambda: len(rig.actions) == 1)
    safe = rig.actions[0]
    assert safe.is_safe_action and list(safe.action) == [0.0] * 6
    rig.spin_until(lambda: rig.node._idle.is_set(), timeout_s=5.0)  # the inference ends...
    rig.spin_for(0.3)
    assert len(rig.actions) == 1  # ...and nothing computed follows the safe action
    assert rig.node.stats.snapshot().superseded == 1  # discarded before touching memory
    if transition == "deactivate":
        assert rig.state() == memory


def test_safe_action_is_the_last_action_when_stopping_between_steps(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    for value in range(3):
        rig.send(rig.image(value), expect_action=True)
    assert not any(a.is_safe_action for a in rig.actions)
    rig.node.trigger_deactivate()
    assert rig.spin_until(lambda: len(rig.actions) == 4)
    assert rig.actions[-1].is_safe_action
    assert rig.node.trigger_activate() == Ret.SUCCESS  # a new session serves again
    rig.send(rig.image(9), expect_action=True)
    assert not rig.actions[-1].is_safe_action


def test_finalized_statuses_say_so(make_rig) -> None:
    rig: Rig = make_rig()
    rig.start()
    rig.send(rig.image(1), expect_action=True)
    rig.node.trigger_shutdown()
    rig.diags.clear()
    assert rig.spin_until(lambda: len(rig.diags) >= 2)  # the broadcast and a timer tick
    for array in rig.diags:
        assert len(array.status) == 6
        for status in array.status:
            assert status.level == DiagnosticStatus.WARN, status
            assert status.message.startswith("finalized"), status


def test_status_names_and_hardware_id_follow_the_namespace(ros_context, executor) -> None:
    node = AuraMemNode(
        context=ros_context,
        namespace="robot1",
        parameter_overrides=[Parameter(k, value=v) for k, v in BASE_PARAMS.items()],
    )
    client = Node("ns_client", context=ros_context)
    arrays: list[DiagnosticArray] = []
    actions: list[AuraAction] = []
    client.create_subscription(DiagnosticArray, "/diagnostics", arrays.append, 10)
    client.create_subscription(
        AuraAction, "/robot1/aura_mem/action", actions.append, qos.reliable_qos()
    )
    for n in (node, client):
        executor.add_node(n)
    try:
        assert node.autostart()
        deadline = time.monotonic() + 5.0
        while not arrays and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        names = {s.name for s in arrays[-1].status}
        assert names == {
            f"robot1/aura_mem: {c}"
            for c in ("memory", "latency", "inputs", "transport", "backbone", "persistence")
        }
        assert {s.hardware_id for s in arrays[-1].status} == {"robot1/aura_mem/toy"}
        node.trigger_deactivate()
        deadline = time.monotonic() + 5.0
        while not actions and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert actions and actions[0].is_safe_action  # ~/action lives in the namespace
    finally:
        for n in (node, client):
            executor.remove_node(n)
            n.destroy_node()
