"""Fault table, the rows one live node process serves in turn: bad inputs (faults/inputs.py),
a raising backbone (faults/process.py), a camera dropout and incompatible QoS
(faults/transport.py). The same functions as `make bench-faults`, fewer repeats; each test
lists the named checks its row must pass (the pass criteria of docs/results/reliability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ros_harness import preserved_env

from aura_mem_dev.bench.faults import MAX_IMAGE_PIXELS
from aura_mem_dev.faults import inputs, process, transport
from aura_mem_dev.faults.harness import Probe
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.session import Session

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

# Every rejected input: rejected under its reason, counted, on /diagnostics, no action, the
# state file and the step counter untouched, and the node still serving (and writing) after.
REJECTED_INPUT = (
    "served_before_fault",
    "each_input_rejected",
    "node_survived_each_input",
    "no_action_published",
    "diagnostics_warned",
    "rejections_counted_by_reason",
    "kept_serving",
    "state_file_unchanged",
    "no_step_consumed",
    "next_frame_updates_memory",
)


class Pool:
    """The shared node, restarted when a scenario killed it, so that one crash fails one test
    (with the node's log) instead of every later test timing out against a dead process."""

    def __init__(self, domain_id: int, workdir: Path) -> None:
        self.domain_id, self.workdir = domain_id, workdir
        self.probe = Probe(domain_id, name="fault_inputs_probe")
        self.current: Session | None = None
        self.starts = 0

    def get(self) -> Session:
        if self.current is not None and self.current.alive():
            return self.current
        if self.current is not None:
            self.current.close()
        self.starts += 1
        work = self.workdir / f"run{self.starts}"
        work.mkdir()
        s = Session(self.probe, self.domain_id, work, {"max_image_pixels": MAX_IMAGE_PIXELS})
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


def _run(pool: Pool, scenario: Callable[[Session], FaultRow], checks: tuple[str, ...]) -> None:
    s = pool.get()
    row = scenario(s)
    assert s.alive(), "node process died:\n" + s.node.log()[-3000:]
    assert row.passed, f"{row.scenario}: {row.failures}\nnode did: {row.node_did}"
    assert tuple(row.checks) == checks


def test_wrong_encoding(pool: Pool) -> None:
    _run(pool, inputs.wrong_encoding, REJECTED_INPUT)


def test_step_length_mismatch(pool: Pool) -> None:
    _run(pool, inputs.step_mismatch, REJECTED_INPUT)


def test_zero_size_image(pool: Pool) -> None:
    _run(pool, inputs.zero_size, REJECTED_INPUT)


def test_oversized_image(pool: Pool) -> None:
    _run(pool, lambda s: inputs.oversized(s, MAX_IMAGE_PIXELS), REJECTED_INPUT)


def test_nan_inf_proprio(pool: Pool) -> None:
    _run(pool, inputs.bad_proprio, REJECTED_INPUT)


def test_empty_instruction(pool: Pool) -> None:
    _run(pool, inputs.empty_instruction, (*REJECTED_INPUT, "instruction_kept", "memory_not_reset"))


def test_instruction_flood_1khz(pool: Pool) -> None:
    checks = (
        "frames_served_during_flood",
        "repeated_instruction_kept_memory",
        "ended_on_last_instruction",
        "kept_serving",
    )
    _run(pool, lambda s: inputs.instruction_flood(s, seconds=0.5), checks)


def test_backbone_that_raises(pool: Pool) -> None:
    checks = (*REJECTED_INPUT, "diagnostics_backbone_error", "diagnostics_backbone_recovered")
    _run(pool, process.backbone_raises, checks)


def test_camera_dropout_then_recovery(pool: Pool) -> None:
    checks = (
        "node_survived",
        "memory_unchanged_during_gap",
        "kept_serving",
        "memory_continued",
        "no_stale_frames_after",
        "frames_served_after",
        "diagnostics_reported_dropout",
    )
    _run(pool, lambda s: transport.camera_dropout(s, gap_s=2.0), checks)


def test_incompatible_qos_publisher(pool: Pool) -> None:
    checks = (
        "reliable_camera_served",
        "instruction_unchanged",
        "dds_reported_mismatch",
        "node_logged_mismatch",
        "diagnostics_reported_mismatch",
        "kept_serving",
    )
    _run(pool, transport.incompatible_qos, checks)
