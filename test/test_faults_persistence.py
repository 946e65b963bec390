"""Fault table, persistence and process rows: kill -9 while the state is being written, corrupt
files at start, an unwritable state directory (faults/persistence.py, faults/process.py; the
same functions as `make bench-faults`, fewer repeats), each with its named checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ros_harness import preserved_env

from aura_mem_dev.faults import crash, persistence, process
from aura_mem_dev.faults.harness import Probe
from aura_mem_dev.faults.row import FaultRow

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def probe(ros_domain_id: int) -> Iterator[Probe]:
    with preserved_env("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        p = Probe(ros_domain_id, name="fault_persistence_probe")
        try:
            yield p
        finally:
            p.close()


def _passes(row: FaultRow, checks: tuple[str, ...]) -> None:
    assert row.passed, f"{row.scenario}: {row.failures}\nnode did: {row.node_did}"
    assert tuple(row.checks) == checks


def test_sigkill_at_every_step_of_the_atomic_write(tmp_path: Path) -> None:
    row = persistence.crash_points(tmp_path, per_point=2, random_kills=8)
    _passes(row, ("file_valid_after_every_kill",))


def test_crash_child_points_expect_old_or_new_state(tmp_path: Path) -> None:
    # The contract behind the row: before the rename the old state survives, after it the new.
    before = crash.crash_at_point(tmp_path / "s.bin", "before_rename", 1, 2)
    assert before.ok and before.file_index == 2, before
    after = crash.crash_at_point(tmp_path / "s.bin", "after_rename", 10, 1)
    assert after.ok and after.file_index == 11, after


def test_kill9_node_during_persistence(probe: Probe, ros_domain_id: int, tmp_path: Path) -> None:
    row = process.kill9_node_during_persistence(probe, ros_domain_id, tmp_path, kills=2)
    checks = (
        "restart_served",
        "state_file_valid_after_kill",
        "restart_restored_state",
        "exact_bytes_restored",
    )
    _passes(row, checks)


def test_corrupt_state_file_at_start(probe: Probe, ros_domain_id: int, tmp_path: Path) -> None:
    variants = ["bit flip in the payload", persistence.NAN_PAYLOAD]
    row = persistence.corrupt_state_file(probe, ros_domain_id, tmp_path, variants)
    checks = (
        "served",
        "warn_cleared_after_write",
        "persistence_warned",
        "logged",
        "file_replaced_after_write",
        "node_alive",
    )
    _passes(row, checks)


def test_unwritable_state_directory(probe: Probe, ros_domain_id: int, tmp_path: Path) -> None:
    row = persistence.unwritable_state_dir(probe, ros_domain_id, tmp_path)
    checks = (
        "served_at_start",
        "served_while_disk_refused",
        "persistence_warned",
        "kept_serving",
        "persistence_recovered",
    )
    _passes(row, checks)
