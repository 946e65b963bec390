"""AuraAction and MemoryStats round trips: in-process and between two processes."""

from __future__ import annotations

import math

import pytest
from aura_mem_ros.msg import AuraAction, EpisodeResult, MemoryStats
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from ros_harness import spin_until, start_python, stop_process

QOS = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


def sample_action(step: int = 42) -> AuraAction:
    msg = AuraAction()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1234, 5678
    msg.header.frame_id = "camera"
    msg.action = [float(i) * 0.5 - 3.0 for i in range(8 * 7)]
    msg.chunk_size, msg.action_dim = 8, 7
    msg.wrote, msg.write_prob, msg.step, msg.latency_ms = True, 0.75, step, 12.5
    return msg


def sample_stats() -> MemoryStats:
    msg = MemoryStats()
    msg.steps, msg.writes, msg.write_rate, msg.writes_per_1k_steps = 100_000, 1_234, 0.125, 12.34
    msg.state_bytes, msg.kv_equivalent_bytes, msg.persisted_bytes = 4224, 25_600_000, 5_212_416
    msg.latency_p50_ms, msg.latency_p95_ms = 3.5, 9.25
    msg.stale_frames, msg.dropped_frames, msg.rejected_inputs = 1, 2, 3
    return msg


def assert_action_equal(got: AuraAction, want: AuraAction) -> None:
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1234, 5678)
    assert got.header.frame_id == want.header.frame_id
    assert list(got.action) == pytest.approx(list(want.action))
    assert (got.chunk_size, got.action_dim, got.wrote, got.step) == (8, 7, True, want.step)
    assert math.isclose(got.write_prob, 0.75) and math.isclose(got.latency_ms, 12.5)


def assert_stats_equal(got: MemoryStats, want: MemoryStats) -> None:
    for field in MemoryStats.get_fields_and_field_types():
        if field == "header":
            continue
        assert getattr(got, field) == pytest.approx(getattr(want, field)), field


def test_messages_have_the_documented_fields() -> None:
    assert AuraAction.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "action": "sequence<float>",
        "chunk_size": "uint32",
        "action_dim": "uint32",
        "wrote": "boolean",
        "write_prob": "float",
        "step": "uint64",
        "latency_ms": "float",
        "is_safe_action": "boolean",
    }
    stats_fields = MemoryStats.get_fields_and_field_types()
    assert stats_fields["kv_equivalent_bytes"] == "uint64"
    assert stats_fields["state_bytes"] == "uint32"
    assert "success" in EpisodeResult.get_fields_and_field_types()


def test_cdr_serialisation_round_trip() -> None:
    for msg, check in (
        (sample_action(), assert_action_equal),
        (sample_stats(), assert_stats_equal),
    ):
        data = serialize_message(msg)
        check(deserialize_message(bytes(data), type(msg)), msg)


def test_round_trip_in_process(make_node, executor) -> None:
    node = make_node("roundtrip")
    received: dict[type, object] = {}
    pub_a = node.create_publisher(AuraAction, "rt/action", QOS)
    pub_s = node.create_publisher(MemoryStats, "rt/stats", QOS)
    node.create_subscription(
        AuraAction, "rt/action", lambda m: received.setdefault(AuraAction, m), QOS
    )
    node.create_subscription(
        MemoryStats, "rt/stats", lambda m: received.setdefault(MemoryStats, m), QOS
    )

    def publish_and_check() -> bool:
        pub_a.publish(sample_action())
        pub_s.publish(sample_stats())
        return len(received) == 2

    assert spin_until(executor, publish_and_check, timeout_s=10.0)
    assert_action_equal(received[AuraAction], sample_action())  # type: ignore[arg-type]
    assert_stats_equal(received[MemoryStats], sample_stats())  # type: ignore[arg-type]


@pytest.mark.multiprocess
def test_round_trip_across_processes(make_node, executor, ros_domain_id: int) -> None:
    echo = start_python(["test/echo_node.py"], ros_domain_id)
    try:
        node = make_node("roundtrip_client")
        got: dict[type, object] = {}
        pub_a = node.create_publisher(AuraAction, "echo_in/action", QOS)
        pub_s = node.create_publisher(MemoryStats, "echo_in/stats", QOS)
        node.create_subscription(
            AuraAction, "echo_out/action", lambda m: got.setdefault(AuraAction, m), QOS
        )
        node.create_subscription(
            MemoryStats, "echo_out/stats", lambda m: got.setdefault(MemoryStats, m), QOS
        )

        def publish_and_check() -> bool:
            if echo.poll() is not None:
                raise AssertionError("echo process died")
            if pub_a.get_subscription_count() and pub_s.get_subscription_count():
                pub_a.publish(sample_action(step=7))
                pub_s.publish(sample_stats())
            return len(got) == 2

        assert spin_until(executor, publish_and_check, timeout_s=30.0), (
            "no echo from the other process"
        )
        assert_action_equal(got[AuraAction], sample_action(step=7))  # type: ignore[arg-type]
        assert_stats_equal(got[MemoryStats], sample_stats())  # type: ignore[arg-type]
    finally:
        output = stop_process(echo)
    assert "echo ready" in output
