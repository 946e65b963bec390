"""QoS profiles of the node's endpoints, in one place because a mismatch is silent.

Four profiles, one per kind of data:

- ``sensor_qos``: camera images. A RELIABLE subscriber never receives from a BEST_EFFORT
  camera driver, so sensors use the sensor-data profile (best effort), depth 1: only the
  newest frame is ever of interest.
- ``proprio_qos``: joint states, the same sensor-data profile at depth 10 (every one is kept
  for stamp pairing).
- ``instruction_qos``: the task, latched (transient local) so a node that starts after the
  instruction was published still receives it.
- ``reliable_qos``: actions (commands), ``~/stats`` and ``/diagnostics``: reliable, depth 10
  so a subscriber that is briefly slow loses nothing; what diagnostic_aggregator and
  rqt_robot_monitor subscribe with.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def sensor_qos() -> QoSProfile:
    """Sensor data, but depth 1: a deeper queue only delivers older frames later."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )


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


def reliable_qos() -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
