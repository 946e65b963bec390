"""The node as users start it: ``python -m aura_mem_ros.node --ros-args --params-file ...``."""

from __future__ import annotations

import time

import pytest
from aura_mem_ros.msg import AuraAction
from rclpy.node import Node
from ros_harness import start_python, stop_process
from sensor_msgs.msg import Image, JointState
from test_node_support import rgb

from aura_mem_ros.ros import qos
from aura_mem_ros.ros.image_conversion import rgb_to_image

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


def test_node_process_with_yaml_serves_and_stops_safely(ros_context, executor, ros_domain_id):
    proc = start_python(
        # The shipped YAML as is (backbone mini, proprio = heading); only the task is given.
        [
            "-m",
            "aura_mem_ros.node",
            "--ros-args",
            "--params-file",
            "config/aura_mem.yaml",
            "-p",
            "instruction:=go to the object you saw at the start",
        ],
        ros_domain_id,
    )
    client = Node("subprocess_client", context=ros_context)
    executor.add_node(client)
    actions: list[AuraAction] = []
    client.create_subscription(AuraAction, "/aura_mem/action", actions.append, qos.reliable_qos())
    pub = client.create_publisher(Image, "/image", qos.sensor_qos())
    proprio = client.create_publisher(JointState, "/proprio", qos.sensor_qos())
    try:
        deadline = time.monotonic() + 45.0  # process start + torch import + DDS discovery
        while not actions and time.monotonic() < deadline and proc.poll() is None:
            proprio.publish(JointState(name=["heading"], position=[0.0]))
            now = client.get_clock().now().to_msg()
            pub.publish(rgb_to_image(rgb(1, shape=(56, 56)), stamp=now))
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
    finally:
        output = stop_process(proc)
        executor.remove_node(client)
        client.destroy_node()
    assert actions, f"no action from the node process:\n{output}"
    assert (actions[0].chunk_size, actions[0].action_dim) == (1, 7)  # mini: 7 logits
    assert proc.returncode == 0, output
    assert "configured: backbone=mini" in output
    assert "published safe action (zero)" in output, output
