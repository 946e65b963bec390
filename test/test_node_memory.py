"""Memory lifecycle through the node: reset service, instruction changes, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger
from test_node_support import Rig, rig_fixture, values

from aura_mem_ros.persistence import RestoreStatus, read_state, state_key
from aura_mem_ros.ros import qos

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_rig(ros_context, executor):
    yield from rig_fixture(ros_context, executor)


def test_reset_memory_service(make_rig, tmp_path: Path) -> None:
    state_file = tmp_path / "state.bin"
    rig: Rig = make_rig(state_file=str(state_file))
    rig.start()
    fresh = rig.state()
    rig.send(rig.image(0), expect_action=True)
    assert rig.state() != fresh and state_file.exists()
    assert rig.reset_client.wait_for_service(timeout_sec=3.0)
    future = rig.reset_client.call_async(Trigger.Request())
    assert rig.spin_until(future.done)
    assert future.result().success
    assert rig.state() == fresh
    assert not state_file.exists()  # a restart must not resume the cleared memory
    assert rig.node.stats.snapshot().resets == 1


@pytest.mark.parametrize(
    ("policy", "instruction_resets", "service_resets"),
    [("instruction_change", True, True), ("service", False, True), ("never", False, False)],
)
def test_reset_policy(
    make_rig, tmp_path: Path, policy: str, instruction_resets: bool, service_resets: bool
) -> None:
    state_file = tmp_path / "state.bin"
    rig: Rig = make_rig(reset_policy=policy, state_file=str(state_file))
    rig.start()
    fresh = rig.state()
    rig.send(rig.image(0), expect_action=True)
    written = rig.state()
    assert written != fresh
    rig.instruct("open the drawer")
    assert rig.node.pipeline.instruction == "open the drawer"
    assert rig.state() == (fresh if instruction_resets else written)
    rig.send(rig.image(1), expect_action=True)
    before_call = rig.state()
    assert rig.reset_client.wait_for_service(timeout_sec=3.0)
    future = rig.reset_client.call_async(Trigger.Request())
    assert rig.spin_until(future.done)
    assert future.result().success is service_resets
    assert rig.state() == (fresh if service_resets else before_call)
    assert state_file.exists() is not service_resets  # a refused reset keeps the file too
    expected_resets = int(instruction_resets) + int(service_resets)
    assert rig.node.stats.snapshot().resets == expected_resets


def test_never_reset_memory_survives_a_restart_under_another_instruction(
    make_rig, tmp_path: Path
) -> None:
    """reset_policy=never: serve, write, stop; a new node on the same state file resumes
    that memory (even for another instruction: memory outlives tasks) and never resets."""
    state_file = tmp_path / "state.bin"
    first: Rig = make_rig(reset_policy="never", state_file=str(state_file))
    first.start()
    for value in range(3):
        first.send(first.image(value), expect_action=True)
    first.instruct("open the drawer")  # kept, and the file stays bound to the model only
    first.send(first.image(3), expect_action=True)
    saved = first.state()
    assert first.node.stats.snapshot().resets == 0
    first.close()

    second: Rig = make_rig(
        reset_policy="never", state_file=str(state_file), instruction="stack the blocks"
    )
    second.start()
    assert second.node.pipeline.restore_result.status is RestoreStatus.RESTORED
    assert second.state() == saved
    second.send(second.image(4), expect_action=True)  # serving goes on from that memory
    assert second.state() != saved
    assert second.node.stats.snapshot().resets == 0

    # The same file under instruction_change is bound to nothing it can match: fresh memory.
    second.close()
    third: Rig = make_rig(reset_policy="instruction_change", state_file=str(state_file))
    third.start()
    assert third.node.pipeline.restore_result.status is RestoreStatus.MISMATCH


def test_state_persists_only_on_writes_and_restores_after_restart(make_rig, tmp_path) -> None:
    state_file = tmp_path / "state.bin"
    silent: Rig = make_rig(state_file=str(state_file), gate="never")
    silent.start()
    for value in range(3):
        silent.send(silent.image(value), expect_action=True)
    assert not state_file.exists()  # the gate never wrote: the flash was never touched
    silent.close()

    first: Rig = make_rig(state_file=str(state_file))
    first.start()
    for value in range(3):
        first.send(first.image(value), expect_action=True)
    saved = first.state()
    store = first.node.pipeline.store
    assert store.flushes == 3 and store.persisted_bytes == 3 * store.file_bytes
    assert first.spin_until(  # reported in MemoryStats too
        lambda: bool(first.stats) and first.stats[-1].persisted_bytes == store.persisted_bytes
    )
    first.close()

    second: Rig = make_rig(state_file=str(state_file))
    second.start()
    assert second.node.pipeline.restore_result.status is RestoreStatus.RESTORED
    assert second.state() == saved


def test_coalesced_state_is_flushed_on_shutdown(make_rig, tmp_path) -> None:
    state_file = tmp_path / "state.bin"
    rig: Rig = make_rig(state_file=str(state_file), persist_min_interval_s=3600.0)
    rig.start()
    for value in range(3):
        rig.send(rig.image(value), expect_action=True)
    assert rig.node.pipeline.store.flushes == 1  # later writes coalesced
    last = rig.state()
    rig.node.trigger_deactivate()
    assert rig.node.pipeline.store.flushes == 2
    key = state_key(rig.node.pipeline.model_id, "pick up the cup")
    assert read_state(state_file, key, 4224).payload == last


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"\x00" * 100, RestoreStatus.CORRUPT), (None, RestoreStatus.MISMATCH)],
)
def test_bad_state_file_means_fresh_memory_and_a_warning(make_rig, tmp_path, content, status):
    state_file = tmp_path / "state.bin"
    if content is None:  # a valid file, written for another instruction
        other: Rig = make_rig(state_file=str(state_file), instruction="another task")
        other.start()
        other.send(other.image(0), expect_action=True)
        other.close()
    else:
        state_file.write_bytes(content)
    rig: Rig = make_rig(state_file=str(state_file))
    rig.start()
    assert rig.node.pipeline.restore_result.status is status
    fresh_rig_state = rig.state()
    rig.node.pipeline.runtime.reset()
    assert fresh_rig_state == rig.state()  # nothing was loaded
    warn = rig.latest_status("persistence", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert status.value in values(warn)["last_restore"]
    rig.send(rig.image(1), expect_action=True)  # a gate write replaces the bad file
    rig.latest_status("persistence", where=lambda s: s.level == DiagnosticStatus.OK)


def test_unwritable_state_file_warns_but_serves(make_rig, tmp_path) -> None:
    rig: Rig = make_rig(state_file=str(tmp_path / "no_such_dir" / "state.bin"))
    rig.start()
    rig.send(rig.image(0), expect_action=True)
    warn = rig.latest_status("persistence", where=lambda s: s.level == DiagnosticStatus.WARN)
    assert "cannot write" in warn.message
    rig.send(rig.image(1), expect_action=True)


def test_failed_configure_reports_error_and_node_stays_up(make_rig) -> None:
    rig: Rig = make_rig(backbone="no_such_backbone")
    assert not rig.node.autostart()
    status = rig.latest_status("backbone", where=lambda s: s.level == DiagnosticStatus.ERROR)
    assert "no_such_backbone" in status.message
    rig.image_pub.publish(rig.image(0))
    rig.spin_for(0.2)
    assert rig.actions == []


def test_openvla_oft_refusal_surfaces_on_diagnostics(make_rig) -> None:
    rig: Rig = make_rig(backbone="openvla_oft", backbone_args='{"model_dir": "/nonexistent"}')
    assert not rig.node.autostart()
    status = rig.latest_status("backbone", where=lambda s: s.level == DiagnosticStatus.ERROR)
    assert "local directory" in status.message


def test_late_node_receives_latched_instruction(make_rig, ros_context, executor) -> None:
    early = Node("instruction_publisher", context=ros_context)
    executor.add_node(early)
    try:
        pub = early.create_publisher(String, "/instruction", qos.instruction_qos())
        pub.publish(String(data="put the bowl on the plate"))  # before the node exists
        rig: Rig = make_rig(instruction="")
        rig.start()
        assert rig.spin_until(lambda: rig.node.pipeline.instruction == "put the bowl on the plate")
        rig.send(rig.image(0), expect_action=True)
    finally:
        executor.remove_node(early)
        early.destroy_node()
