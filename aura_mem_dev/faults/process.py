"""Fault table, process rows: a backbone that raises, and kill -9 of the node while it
persists its state (the restarted node must resume the last fully written state)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from aura_mem_dev.faults.backbone import poison
from aura_mem_dev.faults.harness import (
    MINI_INSTRUCTION,
    NODE_MODULE,
    Probe,
    describe_status,
    level_name,
)
from aura_mem_dev.faults.inputs import rejected_inputs_row
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.session import STATE_LEN, Session, restore_value, state_key_from_log


def backbone_raises(s: Session) -> FaultRow:
    t0 = time.monotonic()
    diag_idx = s.probe.n_diagnostics()

    def fire() -> None:
        s.probe.image_pub.publish(s.probe.image_msg(poison(s.frame())))

    items = [(f"poisoned frame {i + 1} -> RuntimeError in backbone.step", fire) for i in range(3)]
    row = rejected_inputs_row(s, "backbone raises", "backbone_error", items)
    if not s.alive():
        return row
    row.injected = "3 frames on which the backbone raises RuntimeError (faulty_mini)"
    err = s.probe.wait_status("backbone", lambda st: level_name(st) == "ERROR", 3.0, since=diag_idx)
    row.check(
        "diagnostics_backbone_error", err is not None, "/diagnostics backbone never went ERROR"
    )
    idx = s.probe.n_diagnostics()
    s.good_frame()
    ok = s.probe.wait_status("backbone", lambda st: level_name(st) == "OK", 3.0, since=idx)
    row.check(
        "diagnostics_backbone_recovered",
        ok is not None,
        "/diagnostics backbone did not return to OK after a good frame",
    )
    row.diagnostics = (
        f"backbone: {describe_status(err, ('backbone_errors',))}; "
        f"then {describe_status(ok)} after the next good frame; inputs: {row.diagnostics}"
    )
    row.seconds = time.monotonic() - t0
    return row


def kill9_node_during_persistence(
    probe: Probe, domain_id: int, workdir: Path, kills: int = 3, seed: int = 0
) -> FaultRow:
    """SIGKILL the node while it is inside write_atomic (temp file present), ``kills`` times;
    after each kill the file must decode, and the restarted node must restore it."""
    from aura_mem_ros.persistence import read_state

    t0 = time.monotonic()
    row = FaultRow(f"kill -9 of the node during state persistence (x{kills})")
    state = workdir / "kill9" / "state.bin"
    state.parent.mkdir(parents=True, exist_ok=True)
    mid_write = 0
    restored = 0
    valid = 0
    key: bytes | None = None
    last_payload: bytes | None = None
    rng = random.Random(seed)
    for i in range(kills):
        s = Session(
            probe,
            domain_id,
            state.parent,
            module=NODE_MODULE,
            seed=seed + i,
            overrides={"state_file": str(state)},
        )
        try:
            if not row.check("restart_served", s.ready(), f"restart {i} never served"):
                break
            key = key or state_key_from_log(s.node.log())
            restore = restore_value(s)
            if i > 0:
                ok = restore.startswith("restored")
                restored += int(ok)
                row.check(
                    "restart_restored_state",
                    ok,
                    f"restart {i} did not restore the state file: {restore!r}",
                )
            tmp_glob = f".{state.name}.tmp.{s.node.pid}"
            stop = threading.Event()

            def camera(s: Session = s, stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    s.probe.send_frame(s.frame())
                    time.sleep(0.004)

            thread = threading.Thread(target=camera, daemon=True)
            thread.start()
            # Poll for the node's temp file: a kill while it exists lands inside write_atomic.
            time.sleep(rng.uniform(0.2, 0.6))
            deadline = time.monotonic() + 5.0
            caught = False
            tmp = state.parent / tmp_glob
            while time.monotonic() < deadline:
                if tmp.exists():
                    caught = True
                    break
            s.node.kill9()
            stop.set()
            thread.join(2.0)
            mid_write += int(caught)
            if key is not None:
                result = read_state(state, key, STATE_LEN)
                good = result.status.value == "restored"
                valid += int(good)
                row.check(
                    "state_file_valid_after_kill",
                    good,
                    f"kill {i + 1}: state file {result.status.value}: {result.message}",
                )
                last_payload = result.payload
        finally:
            s.node.stop()
    orphans = len(list(state.parent.glob(f".{state.name}.tmp.*")))
    # The restart after the last kill is in-process, so its memory can be compared byte for
    # byte with the file the kill left behind (nothing has touched the file since).
    exact = _exact_restore(probe, state, last_payload)
    restored += int(exact.startswith("yes"))
    row.check(
        "exact_bytes_restored", exact.startswith("yes"), f"in-process restore differs: {exact}"
    )
    row.injected = (
        f"node streaming at ~200 Hz with gate=always (a persist per step); SIGKILL "
        f"when its temp file exists, {kills} times; restart after each (the last restart "
        f"in-process, to compare memory bytes)"
    )
    row.node_did = (
        f"{mid_write}/{kills} kills landed mid-write (temp file present); state file valid "
        f"after {valid}/{kills} kills; {restored}/{kills} restarts restored it; "
        f"{orphans} orphan temp file(s) left in the directory"
    )
    row.kept_running = restored == kills
    row.memory_lost = (
        "no: each restart resumed the last fully written state (at most the "
        f"in-flight step is lost); exact bytes: {exact}"
    )
    row.diagnostics = "persistence: OK, last_restore = 'restored: restored 4224 bytes from ...'"
    row.seconds = time.monotonic() - t0
    return row


def _exact_restore(probe: Probe, state: Path, payload: bytes | None) -> str:
    """Configure an in-process node on the file and compare its memory with the file's bytes."""
    if payload is None:
        return "n/a (no valid file)"
    from rclpy.parameter import Parameter

    from aura_mem_ros.ros.aura_node import AuraMemNode

    params = {
        "backbone": "mini",
        "use_proprio": True,
        "instruction": MINI_INSTRUCTION,
        "gate": "always",
        "state_file": str(state),
        "autostart": False,
    }
    before = state.read_bytes()
    node = AuraMemNode(
        context=probe.context,
        node_name="aura_mem_restore_check",
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    try:
        node.trigger_configure()
        if node.pipeline is None:
            return f"no: configure failed ({node.configure_error})"
        got = node.pipeline.runtime.state_bytes()
    finally:
        node.destroy_node()
    if state.read_bytes() != before:
        return "no: the check rewrote the file"
    return "yes (4224/4224 bytes equal)" if got == payload else "no: memory != file payload"
