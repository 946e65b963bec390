"""Fault table, serving rows (issue 13): the same functions as `make bench-faults`, against real
node processes. Each row checks one of the problems found on the way to a real arm; each test
lists the named checks its row must pass (the pass criteria of docs/results/reliability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ros_harness import preserved_env

from aura_mem_dev.bench.faults import SERVING_ROW_NAMES, ServingRows
from aura_mem_dev.faults.harness import Probe

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]

CHECKS: dict[str, tuple[str, ...]] = {
    "stale_result_at_publish": (
        "node_serves",
        "limit_lowered",
        "nothing_published",
        "counted",
        "reported",
        "restored_limit",
        "still_serving",
    ),
    "proprio_stream_stops": ("no_action_on_old_joints", "counted", "reported", "recovers"),
    "proprio_pairing": ("node_serves", "enough_answered", "own_joint_state"),
    "launch_record_replay": tuple(
        f"{label}_{what}"
        for label in ("defaults", "namespaced")
        for what in ("bag", "observations", "replayed")
    ),
    "oversized_instruction": (
        "rejected",
        "task_kept",
        "diagnostics_small",
        "log_small",
        "still_serving",
    ),
    "transport_loss": (
        "rate_configured",
        "warned",
        "points_at_profile",
        "counted",
        "clears",
        "rate_unset",
        "advertised_rate",
        "still_serving",
    ),
    "parameter_services": ("listed", "values", "described", "typed"),
    "stop_in_flight": (
        "node_serves",
        "transitions_accepted",
        "shutdown_accepted",
        "safe_received_deactivate",
        "safe_received_shutdown",
        "nothing_after_safe",
        "finalized_statuses",
        "no_traceback",
        "transitions_fast",
        "safe_within_bound",
        *(
            f"{sig}_{what}"
            for sig in ("SIGTERM", "SIGINT")
            for what in ("safe", "exit", "clean", "finalized")
        ),
        "startup_clean",
        "stopped_in_configure",
    ),
    "safe_action_marked": (
        "deactivated",
        "safe_marked",
        "regular_unmarked",
        "sim_holds_still",
        "serves_again",
    ),
    "package_colcon_test": ("exec_depends", "colcon_build", "colcon_test", "pytest_ran"),
}
# The full table (make bench-faults) runs every row; the suite leaves out the two that take
# minutes (stop_in_flight starts ~12 node processes; package_colcon_test builds a colcon
# workspace). test_node_stopping.py and test_build.py cover their behaviour in-process.
SLOW_ROWS = ("stop_in_flight", "package_colcon_test")


@pytest.fixture(scope="module")
def rows(
    ros_domain_id: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Callable]]:
    with preserved_env("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        probe = Probe(ros_domain_id, name="fault_serving_probe")
        serving = ServingRows(probe, ros_domain_id, tmp_path_factory.mktemp("serving"))
        try:
            yield serving.rows()
        finally:
            serving.close()
            probe.close()


def test_every_serving_row_lists_its_checks() -> None:
    assert tuple(CHECKS) == SERVING_ROW_NAMES


@pytest.mark.parametrize("name", [n for n in SERVING_ROW_NAMES if n not in SLOW_ROWS])
def test_serving_row(rows, name: str) -> None:
    row = rows[name]()
    assert row.passed, f"{row.scenario}: {row.failures}\nnode did: {row.node_did}"
    assert tuple(row.checks) == CHECKS[name]
