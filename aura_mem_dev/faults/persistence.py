"""Fault table, persistence rows: SIGKILL inside the atomic write, a corrupt state file at
start, an unwritable state directory. Never a torn file, never a silent load, never a crash."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from aura_mem_dev.faults import crash
from aura_mem_dev.faults.harness import (
    MINI_INSTRUCTION,
    NODE_MODULE,
    Probe,
    describe_status,
    level_name,
    status_values,
)
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.session import STATE_LEN, Session, state_key_from_log


def crash_points(
    workdir: Path, per_point: int = 5, random_kills: int = 20, seed: int = 0
) -> FaultRow:
    t0 = time.monotonic()
    path = workdir / "crash" / "state.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    results: list[crash.CrashResult] = []
    first = 1
    for point in crash.CRASH_POINTS:
        for _ in range(per_point):
            r = crash.crash_at_point(path, point, first, rng.randint(1, 3))
            results.append(r)
            first = max(first, r.last_done) + 5
    for _ in range(random_kills):
        r = crash.crash_random(path, first, rng.uniform(0.0, 0.03))
        results.append(r)
        first = max(first, r.last_done) + 5
    bad = [r for r in results if not r.ok]
    n = len(results)
    row = FaultRow(
        f"SIGKILL inside the atomic write (x{n})",
        f"a child persisting with the node's MemoryStore is SIGKILLed at each step of "
        f"write_atomic ({', '.join(crash.CRASH_POINTS)}; {per_point} each) and at "
        f"{random_kills} random moments",
        f"file valid after {n - len(bad)}/{n} kills, holding the last completed state (or, "
        f"after the rename, the new one); {results[-1].orphan_tmp} orphan temp file(s) left",
        memory_lost="no: never a torn or mixed state; at most the write in flight is lost",
        diagnostics="n/a (no node: persistence layer only)",
    )
    row.check(
        "file_valid_after_every_kill",
        not bad,
        "; ".join(f"{r.point}: {r.detail}" for r in bad[:3]),
    )
    row.seconds = time.monotonic() - t0
    return row


NAN_PAYLOAD = "valid checksum and key, NaN payload"


MISMATCH = "valid file of another model/instruction"


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "bit flip in the payload": lambda b: b[:-100] + bytes([b[-100] ^ 0x01]) + b[-99:],
    "truncated to half": lambda b: b[: len(b) // 2],
    "random garbage": lambda b: os.urandom(len(b)),
    "empty file": lambda b: b"",
    "header of another format version": lambda b: b[:8] + (99).to_bytes(4, "little") + b[12:],
    MISMATCH: lambda b: b,  # written specially: valid, but bound to another model/task
    NAN_PAYLOAD: lambda b: b,  # written specially: a valid file the memory must refuse
}


def _node_state_key() -> bytes:
    """The key the harness's node binds its state to (mini, its bundled layer, seed 0), built
    in-process the way the node builds it, so a corrupted file differs ONLY by the fault."""
    from aura_mem_ros.persistence import state_key
    from aura_mem_ros.serving import BUNDLED, ServingSpec

    spec = ServingSpec("mini", aura_checkpoint=BUNDLED, gate="always")
    _, model_id = spec.build_runtime(spec.build_backbone())
    return state_key(model_id, MINI_INSTRUCTION)


def corrupt_state_file(
    probe: Probe, domain_id: int, workdir: Path, variants: list[str] | None = None, seed: int = 0
) -> FaultRow:
    """Start the node on a corrupt file: logged, WARN on /diagnostics, fresh memory, and the
    file replaced by a valid one on the first gate write. Never a crash, never a silent load."""
    from aura_mem_ros.persistence import encode_state, read_state

    t0 = time.monotonic()
    names = variants or list(CORRUPTIONS)
    row = FaultRow("corrupt state file at start", injected=", ".join(names))
    outcomes, diags = [], []
    for i, name in enumerate(names):
        d = workdir / f"corrupt{i}"
        d.mkdir(parents=True, exist_ok=True)
        state = d / "state.bin"
        if name == MISMATCH:
            state.write_bytes(encode_state(os.urandom(STATE_LEN), bytes(32)))
        elif name == NAN_PAYLOAD:
            nan = np.full(STATE_LEN // 4, np.nan, dtype="<f4").tobytes()
            state.write_bytes(encode_state(nan, _node_state_key()))
        else:
            valid = encode_state(os.urandom(STATE_LEN), _node_state_key())
            state.write_bytes(CORRUPTIONS[name](valid))
        s = Session(
            probe,
            domain_id,
            d,
            module=NODE_MODULE,
            seed=seed + i,
            overrides={"state_file": str(state)},
        )
        try:
            # Read the report before sending any frame: the first gate write replaces the
            # file, and the WARN (rightly) clears then.
            warn = s.probe.wait_status(
                "persistence",
                lambda st: "not used" in st.message or level_name(st) == "WARN",
                90.0,
                since=s.diag_start,
            )
            restore = status_values(warn).get("last_restore", "") if warn else ""
            up = s.ready()
            row.check("served", up, f"{name}: node never served")
            key = state_key_from_log(s.node.log())
            s.good_frame()
            idx = s.probe.n_diagnostics()
            ok = s.probe.wait_status(
                "persistence", lambda st: level_name(st) == "OK", 3.0, since=idx
            )
            row.check(
                "warn_cleared_after_write",
                ok is not None,
                f"{name}: persistence WARN did not clear after a write",
            )
            replaced = (
                key is not None and read_state(state, key, STATE_LEN).status.value == "restored"
            )
            logged = [ln for ln in s.node.log().splitlines() if "state file not used" in ln]
            row.check(
                "persistence_warned",
                warn is not None and level_name(warn) == "WARN",
                f"{name}: no persistence WARN",
            )
            row.check("logged", bool(logged), f"{name}: not logged")
            row.check(
                "file_replaced_after_write",
                replaced,
                f"{name}: file not replaced by a valid state after a write",
            )
            row.check("node_alive", s.alive(), f"{name}: node died")
            outcomes.append(
                f"{name}: {restore.split(':', 1)[0] or '?'}{', replaced' if replaced else ''}"
            )
            if warn is not None and not diags:
                diags.append(describe_status(warn))
        finally:
            s.close()
    row.node_did = (
        "logged 'state file not used, starting with fresh memory', served with "
        "fresh memory, wrote a valid file at the first gate write: " + "; ".join(outcomes)
    )
    row.kept_running = row.checks["served"].passed and row.checks["node_alive"].passed
    row.memory_lost = "the unreadable state only (nothing to recover); never loaded silently"
    row.diagnostics = diags[0] if diags else "(none)"
    row.seconds = time.monotonic() - t0
    return row


@contextlib.contextmanager
def unwritable_dir(path: Path) -> Iterator[str]:
    """Make ``path`` a directory this process cannot create files in; yields how.

    Root ignores permission bits (CAP_DAC_OVERRIDE), so as root the immutable attribute is
    used; where chattr is unavailable, the directory is replaced by a regular file (ENOTDIR).
    """
    path.mkdir(parents=True, exist_ok=True)
    probe_file = path / ".probe"

    def writable() -> bool:
        try:
            probe_file.write_bytes(b"x")
            probe_file.unlink()
            return True
        except OSError:
            return False

    os.chmod(path, 0o555)
    if not writable():
        try:
            yield "chmod 0555 (EACCES)"
        finally:
            os.chmod(path, 0o755)
        return
    os.chmod(path, 0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        if not writable():
            try:
                yield "chattr +i (EPERM; root ignores chmod)"
            finally:
                subprocess.run([chattr, "-i", str(path)], capture_output=True)
            return
        subprocess.run([chattr, "-i", str(path)], capture_output=True)
    shutil.rmtree(path)
    path.write_bytes(b"not a directory")
    try:
        yield "parent path is a regular file (ENOTDIR)"
    finally:
        path.unlink()
        path.mkdir()


def unwritable_state_dir(probe: Probe, domain_id: int, workdir: Path, seed: int = 0) -> FaultRow:
    from aura_mem_ros.persistence import read_state

    t0 = time.monotonic()
    row = FaultRow("unwritable state directory")
    d = workdir / "readonly"
    state = d / "state.bin"
    with unwritable_dir(d) as how:
        s = Session(
            probe,
            domain_id,
            workdir,
            module=NODE_MODULE,
            seed=seed,
            overrides={"state_file": str(state)},
        )
        try:
            up = s.ready()
            row.check("served_at_start", up, "node never served with an unwritable state dir")
            actions = [s.good_frame() for _ in range(5)]
            served = sum(a is not None for a in actions)
            warn = s.probe.wait_status(
                "persistence", lambda st: level_name(st) == "WARN" and "cannot" in st.message, 5.0
            )
            row.check(
                "served_while_disk_refused",
                served == 5,
                f"served {served}/5 frames while the disk refused writes",
            )
            row.check(
                "persistence_warned", warn is not None, "/diagnostics persistence did not WARN"
            )
            errors = status_values(warn).get("write_errors", "?") if warn else "?"
            row.injected = f"state_file in a directory nobody can write: {how}"
            row.diagnostics = describe_status(warn, ("write_errors",))
            steps = [int(a.step) for a in actions if a is not None]
        except BaseException:
            s.close()
            raise
    # Writable again: the pending state must be flushed on the next gate write.
    idx = probe.n_diagnostics()
    after = s.good_frame()
    key = state_key_from_log(s.node.log())
    ok = probe.wait_status("persistence", lambda st: level_name(st) == "OK", 5.0, since=idx)
    recovered = key is not None and read_state(state, key, STATE_LEN).status.value == "restored"
    row.check("kept_serving", after is not None and s.alive(), "node stopped serving")
    row.check(
        "persistence_recovered",
        ok is not None and recovered,
        "persistence did not recover once writable",
    )
    row.kept_running = s.alive() and after is not None
    row.node_did = (
        f"served {served}/5 frames (steps {steps[:1]}..{steps[-1:]}), memory kept in RAM, "
        f"{errors} failed writes counted; once writable the next gate "
        f"write saved the state ({'ok' if recovered else 'NOT saved'})"
    )
    row.memory_lost = "no in RAM; only restart-resume was unavailable while the disk refused writes"
    s.close()
    row.seconds = time.monotonic() - t0
    return row
