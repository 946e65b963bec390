"""Declares a few parameters (with descriptors), prints their values as JSON, and exits.

Used to check that ``--ros-args --params-file FILE`` loads YAML without the ros2 CLI.
"""

from __future__ import annotations

import json

import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node


def main() -> None:
    rclpy.init()
    node = Node("param_dump")
    node.declare_parameter("backbone", "toy", ParameterDescriptor(description="backbone name"))
    node.declare_parameter(
        "write_budget",
        0.1,
        ParameterDescriptor(
            description="target writes per step",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0, step=0.0)],
        ),
    )
    node.declare_parameter("action_low", [-1.0, -1.0])
    values = {
        name: node.get_parameter(name).value for name in ("backbone", "write_budget", "action_low")
    }
    print("PARAMS " + json.dumps(values), flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
