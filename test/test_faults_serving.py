"""Fault table, serving rows (issue 13): the same functions as `make bench-faults`, against real
node processes. Each row checks one of the ten problems found on the way to a real arm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ros_harness import preserved_env

from aura_mem_ros.faults import scenarios_serving as serving
from aura_mem_ros.faults.harness import Probe
from aura_mem_ros.faults.scenarios import FaultRow

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def rows(ros_domain_id: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with preserved_env("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        probe = Probe(ros_domain_id, name="fault_serving_probe")
        try:
            with serving.serving_rows(
                probe, ros_domain_id, tmp_path_factory.mktemp("serving")
            ) as r:
                yield r.rows()
        finally:
            probe.close()


def _passes(row: FaultRow) -> None:
    assert row.passed, f"{row.scenario}: {row.failures}\nnode did: {row.node_did}"


@pytest.mark.parametrize(
    "name",
    [n for n in serving.ROW_NAMES if n not in ("stop_in_flight", "package_colcon_test")],
)
def test_serving_row(rows, name: str) -> None:
    _passes(rows[name]())


@pytest.mark.slow
def test_stop_in_flight(rows) -> None:
    _passes(rows["stop_in_flight"]())


@pytest.mark.slow
def test_package_colcon_test(rows, tmp_path: Path) -> None:
    _passes(rows["package_colcon_test"]())
