"""A separate ROS process for the cross-process tests: echoes AuraAction and MemoryStats.

Run as ``python test/echo_node.py``; republishes ``echo_in/action`` on ``echo_out/action``
and ``echo_in/stats`` on ``echo_out/stats`` unchanged, until SIGINT.
"""

from __future__ import annotations

import rclpy
from aura_mem_ros.msg import AuraAction, MemoryStats
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

QOS = QoSProfile(
    depth=10,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.VOLATILE,
)


def main() -> None:
    rclpy.init()
    node = Node("echo")
    pubs = {
        AuraAction: node.create_publisher(AuraAction, "echo_out/action", QOS),
        MemoryStats: node.create_publisher(MemoryStats, "echo_out/stats", QOS),
    }
    node.create_subscription(AuraAction, "echo_in/action", pubs[AuraAction].publish, QOS)
    node.create_subscription(MemoryStats, "echo_in/stats", pubs[MemoryStats].publish, QOS)
    print("echo ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
