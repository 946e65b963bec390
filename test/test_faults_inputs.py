"""Fault table, input rows: one real node process, each bad input must be rejected, counted,
reported on /diagnostics and leave memory untouched (the same functions as `make bench-faults`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ros_harness import preserved_env

from aura_mem_dev.bench.faults import MAX_IMAGE_PIXELS
from aura_mem_dev.faults import scenarios as sc
from aura_mem_dev.faults.harness import Probe

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


class Pool:
    """The shared node, restarted when a scenario killed it, so that one crash fails one test
    (with the node's log) instead of every later test timing out against a dead process."""

    def __init__(self, domain_id: int, workdir: Path) -> None:
        self.domain_id, self.workdir = domain_id, workdir
        self.probe = Probe(domain_id, name="fault_inputs_probe")
        self.current: sc.Session | None = None
        self.starts = 0

    def get(self) -> sc.Session:
        if self.current is not None and self.current.alive():
            return self.current
        if self.current is not None:
            self.current.close()
        self.starts += 1
        work = self.workdir / f"run{self.starts}"
        work.mkdir()
        s = sc.Session(self.probe, self.domain_id, work, {"max_image_pixels": MAX_IMAGE_PIXELS})
        assert s.ready(60.0), s.node.log()[-3000:]
        self.current = s
        return s

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
        self.probe.close()


@pytest.fixture(scope="module")
def pool(ros_domain_id: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    with preserved_env("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        p = Pool(ros_domain_id, tmp_path_factory.mktemp("faults"))
        try:
            yield p
        finally:
            p.close()


def _run(pool: Pool, scenario: Callable[[sc.Session], sc.FaultRow]) -> None:
    s = pool.get()
    row = scenario(s)
    assert s.alive(), "node process died:\n" + s.node.log()[-3000:]
    assert row.passed, f"{row.scenario}: {row.failures}\nnode did: {row.node_did}"


def test_wrong_encoding(pool: Pool) -> None:
    _run(pool, sc.wrong_encoding)


def test_step_length_mismatch(pool: Pool) -> None:
    _run(pool, sc.step_mismatch)


def test_zero_size_image(pool: Pool) -> None:
    _run(pool, sc.zero_size)


def test_oversized_image(pool: Pool) -> None:
    _run(pool, lambda s: sc.oversized(s, MAX_IMAGE_PIXELS))


def test_nan_inf_proprio(pool: Pool) -> None:
    _run(pool, sc.bad_proprio)


def test_empty_instruction(pool: Pool) -> None:
    _run(pool, sc.empty_instruction)


def test_instruction_flood_1khz(pool: Pool) -> None:
    _run(pool, lambda s: sc.instruction_flood(s, seconds=0.5))


def test_backbone_that_raises(pool: Pool) -> None:
    _run(pool, sc.backbone_raises)


def test_camera_dropout_then_recovery(pool: Pool) -> None:
    _run(pool, lambda s: sc.camera_dropout(s, gap_s=2.0))


def test_incompatible_qos_publisher(pool: Pool) -> None:
    _run(pool, sc.incompatible_qos)
