"""QoS profiles of the node's endpoints, in one place because a mismatch is silent.

A RELIABLE subscriber never receives from a BEST_EFFORT camera driver, so camera inputs use
the sensor-data profile (best effort, depth 1: only the newest frame is ever of interest).
Actions are commands: reliable. The instruction is latched (transient local) so a node that
starts after the instruction was published still receives it.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def camera_qos() -> QoSProfile:
    """Sensor data, but depth 1: a deeper queue only delivers older frames later."""
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )
    return profile


def proprio_qos() -> QoSProfile:
    """Sensor data, depth 10: joint states are small and every one is kept (a frame is paired
    with the one nearest its stamp, which need not be the newest when they come in bursts)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )


def instruction_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def action_qos() -> QoSProfile:
    # Depth > 1 so a subscriber that is briefly slow does not lose a command.
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def stats_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
    )


def diagnostics_qos() -> QoSProfile:
    # What diagnostic_aggregator and rqt_robot_monitor subscribe with.
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
    )
