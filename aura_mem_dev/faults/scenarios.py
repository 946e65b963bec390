"""One function per row of the fault table; each returns a ``FaultRow`` with its verdict.

Evidence, not trust: "memory untouched" is read from the outside. The node under test runs
with gate ``always`` and a state file, so every served frame rewrites the file and a rejected
input that touched memory would show up as a changed file or a skipped step number; the
step counter travels in every AuraAction. /diagnostics is read as an operator would see it.

Runs against a real node process (``harness.NodeProcess``); ``make bench-faults`` and the
``test/test_faults_*.py`` tests call the same functions (the tests with fewer repeats).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_dev.faults import crash, inject
from aura_mem_dev.faults.backbone import poison
from aura_mem_dev.faults.harness import (
    FAULT_NODE_MODULE,
    MINI_INSTRUCTION,
    NODE_MODULE,
    NodeProcess,
    Probe,
    describe_status,
    level_name,
    mini_frame,
    status_values,
)

STATE_LEN = 4224
DIAG_PERIOD_S = 0.25  # faster than the YAML's 1 s so a row's WARN shows up quickly


@dataclass
class FaultRow:
    scenario: str
    injected: str
    node_did: str
    kept_running: bool
    memory_lost: str  # starts with "no" when nothing the node should keep was lost
    diagnostics: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, condition: bool, what: str) -> bool:
        """Record ``what`` as a failure unless ``condition``; the row passes only if none fail."""
        if not condition:
            self.failures.append(what)
            self.passed = False
        return condition


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "(none)"


def _log_lines(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Session:
    """A node process (with the fault backbone and a state file) plus the probe talking to it."""

    def __init__(
        self,
        probe: Probe,
        domain_id: int,
        workdir: Path,
        overrides: dict[str, Any] | None = None,
        module: str = FAULT_NODE_MODULE,
        seed: int = 0,
    ) -> None:
        self.probe = probe
        self.domain_id = domain_id
        self.workdir = workdir
        self.rng = np.random.default_rng(seed)
        self.state_file = workdir / "state.bin"
        self.overrides: dict[str, Any] = {
            "backbone": "faulty_mini" if module == FAULT_NODE_MODULE else "mini",
            "gate": "always",
            "state_file": str(self.state_file),
            "persist_min_interval_s": 0.0,
            "diagnostics_period_s": DIAG_PERIOD_S,
            "stats_rate_hz": 20.0,
            # gate=always writes every step; without this every row would also carry the
            # (expected) write-budget WARN of the memory status.
            "write_rate_budget": 1.0,
            **(overrides or {}),
        }
        self.module = module
        # Diagnostics received before this index came from earlier node processes.
        self.diag_start = probe.n_diagnostics()
        self.node = NodeProcess(self.overrides, domain_id, module=module)

    def ready(self, timeout_s: float = 90.0) -> bool:
        return self.probe.wait_ready(self.rng, timeout_s)

    def alive(self) -> bool:
        return self.node.alive()

    def frame(self) -> np.ndarray:
        return mini_frame(self.rng)

    def good_frame(self, timeout_s: float = 5.0) -> Any | None:
        """Send a valid frame and return its action (matched by stamp), or None."""
        for _ in range(3):  # best-effort camera QoS: a frame may be lost before matching
            if not self.alive():
                return None
            sent = self.probe.send_frame(self.frame())
            stamp = (sent.header.stamp.sec, sent.header.stamp.nanosec)

            def mine(stamp: tuple[int, int] = stamp) -> Any | None:
                with self.probe._lock:
                    for r in reversed(self.probe.log.actions):
                        s = r.msg.header.stamp
                        if (s.sec, s.nanosec) == stamp:
                            return r.msg
                return None

            if self.probe.wait_for(lambda m=mine: m() is not None, timeout_s / 3):
                self.settle_file()
                return mine()
        return None

    def settle_file(self, timeout_s: float = 2.0) -> str:
        """The state file's digest once the worker has finished persisting (two equal reads)."""
        deadline = time.monotonic() + timeout_s
        last = _digest(self.state_file)
        while time.monotonic() < deadline:
            time.sleep(0.08)
            now = _digest(self.state_file)
            if now == last:
                return now
            last = now
        return last

    def fresh_stats(self, after_ns: int, timeout_s: float = 3.0) -> Any | None:
        """The first ~/stats message received after ``after_ns`` (wall clock)."""
        found: list[Any] = []

        def check() -> bool:
            with self.probe._lock:
                found[:] = [r.msg for r in self.probe.log.stats if r.t_ns > after_ns]
            return bool(found)

        self.probe.wait_for(check, timeout_s)
        return found[0] if found else None

    def rejected_total(self) -> int:
        stats = self.fresh_stats(time.time_ns())
        return int(stats.rejected_inputs) if stats is not None else -1

    def wait_rejected(self, target: int, timeout_s: float = 5.0) -> bool:
        def check() -> bool:
            stats = self.probe.latest_stats()
            return stats is not None and int(stats.rejected_inputs) >= target

        return self.probe.wait_for(check, timeout_s)

    def inputs_values(self) -> dict[str, str]:
        """Values of the newest ``inputs`` status published after now."""
        idx = self.probe.n_diagnostics()
        status = self.probe.wait_status("inputs", lambda s: True, 3.0, since=idx)
        return status_values(status) if status is not None else {}

    def memory_values(self) -> dict[str, str]:
        idx = self.probe.n_diagnostics()
        status = self.probe.wait_status("memory", lambda s: True, 3.0, since=idx)
        return status_values(status) if status is not None else {}

    def close(self) -> str:
        return self.node.stop()


# --------------------------------------------------------------------------- input faults
def _input_fault(
    s: Session,
    scenario: str,
    reason: str,
    items: list[tuple[str, Callable[[], None]]],
) -> FaultRow:
    """Inject ``items`` one by one; each must be rejected under ``reason`` with memory intact."""
    t0 = time.monotonic()
    row = FaultRow(scenario, "; ".join(label for label, _ in items), "", True, "", "", True)
    base = s.good_frame()
    if not row.check(base is not None, "node did not serve a valid frame before the fault"):
        row.seconds = time.monotonic() - t0
        return row
    digest0 = s.settle_file()
    counts0 = s.inputs_values()
    diag_idx = s.probe.n_diagnostics()
    n_actions0 = s.probe.n_actions()
    rejected = 0
    for label, fire in items:
        before = s.rejected_total()
        fire()
        if s.wait_rejected(before + 1):
            rejected += 1
        else:
            row.check(False, f"{label!r} was not counted as rejected")
        if not s.alive():  # no point waiting on a dead process for the remaining checks
            row.kept_running = False
            row.check(False, f"node process died on {label!r} (exit {s.node.proc.returncode})")
            row.node_did = "DIED: " + _short(
                " / ".join(_log_lines(s.node.log(), "FATAL") or ["(no FATAL line)"]), 200
            )
            row.memory_lost = "YES: the process is gone (memory since the last flush)"
            row.seconds = time.monotonic() - t0
            return row
    time.sleep(0.3)  # an action for a bad frame would have arrived by now
    row.check(s.probe.n_actions() == n_actions0, "an action was published for a bad input")
    digest1 = s.settle_file()
    warn = s.probe.wait_status(
        "inputs",
        lambda st: level_name(st) == "WARN" and "rejected" in st.message,
        3.0,
        since=diag_idx,
    )
    row.check(warn is not None, "/diagnostics inputs did not WARN")
    counts1 = s.inputs_values()
    key = f"rejected_{reason}"
    delta = int(counts1.get(key, 0)) - int(counts0.get(key, 0))
    row.check(delta == len(items), f"{key} rose by {delta}, expected {len(items)}")
    after = s.good_frame()
    row.kept_running = s.alive() and after is not None
    row.check(row.kept_running, "node stopped serving after the fault")
    steps_ok = after is not None and int(after.step) == int(base.step) + 1
    row.check(digest1 == digest0, "state file changed while inputs were rejected")
    row.check(steps_ok, "step counter moved for a rejected input")
    row.check(s.settle_file() != digest1, "the next valid frame did not update the memory")
    lines = _log_lines(s.node.log(), f"input rejected ({reason})")
    row.node_did = (
        f"rejected {rejected}/{len(items)} as `{reason}`, no action published; "
        f"{len(lines)} log line(s) (throttled 1/s per reason)"
        + (f": `{_short(lines[0].split('] ', 2)[-1], 90)}`" if lines else "")
        + (f"; next valid frame served as step {after.step}" if after is not None else "")
    )
    row.memory_lost = (
        "no: state file unchanged, no step consumed "
        f"({base.step} -> {after.step if after is not None else '?'})"
        if digest1 == digest0 and steps_ok
        else "YES: memory changed"
    )
    row.diagnostics = describe_status(warn, (key,))
    row.seconds = time.monotonic() - t0
    return row


def _image_items(s: Session, pairs: list[tuple[str, Any]]) -> list[tuple[str, Callable[[], None]]]:
    """Fire functions for bad images: each is re-stamped at send time (an old stamp would be
    rejected as stale instead) and preceded by a valid joint state (mini needs the heading)."""

    def fire_with(msg: Any) -> Callable[[], None]:
        def fire() -> None:
            msg.header.stamp = s.probe.now_msg()
            s.probe.image_pub.publish(msg)

        return fire

    return [(label, fire_with(msg)) for label, msg in pairs]


def wrong_encoding(s: Session) -> FaultRow:
    pairs = inject.wrong_encoding(s.probe.now_msg())
    return _input_fault(s, "image with a wrong encoding", "wrong_encoding", _image_items(s, pairs))


def step_mismatch(s: Session) -> FaultRow:
    pairs = inject.step_length_mismatch(s.probe.now_msg())
    return _input_fault(s, "image step / data length mismatch", "bad_size", _image_items(s, pairs))


def zero_size(s: Session) -> FaultRow:
    pairs = inject.zero_size(s.probe.now_msg())
    return _input_fault(s, "zero-size image", "empty_image", _image_items(s, pairs))


def oversized(s: Session, max_pixels: int) -> FaultRow:
    pairs = inject.oversized(s.probe.now_msg(), max_pixels)
    return _input_fault(s, "oversized image", "oversized_image", _image_items(s, pairs))


def bad_proprio(s: Session) -> FaultRow:
    def fire_with(joint: Any) -> Callable[[], None]:
        def fire() -> None:
            # The bad joint state must be the newest one when the frame is handled.
            with s.probe.proprio_paused():
                joint.header.stamp = s.probe.now_msg()
                s.probe.proprio_pub.publish(joint)
                time.sleep(0.05)
                s.probe.image_pub.publish(s.probe.image_msg(s.frame()))
                time.sleep(0.3)

        return fire

    items = [(label, fire_with(msg)) for label, msg in inject.bad_proprio(s.probe.now_msg())]
    return _input_fault(s, "NaN/inf proprio", "bad_proprio", items)


def empty_instruction(s: Session) -> FaultRow:
    t0 = time.monotonic()
    mem0 = s.memory_values()
    items = [
        ("'' (empty)", lambda: s.probe.instruct("")),
        ("'   ' (whitespace)", lambda: s.probe.instruct("   ")),
    ]
    row = _input_fault(s, "empty instruction", "empty_instruction", items)
    if not s.alive():
        return row
    mem1 = s.memory_values()
    inputs = s.inputs_values()
    row.check(
        inputs.get("instruction") == MINI_INSTRUCTION,
        f"instruction changed to {inputs.get('instruction')!r}",
    )
    row.check(mem0.get("memory_resets") == mem1.get("memory_resets"), "memory was reset")
    row.node_did += f"; instruction kept ({inputs.get('instruction')!r}), no memory reset"
    # Leave the latched instruction topic holding the real task for later rows and restarts.
    s.probe.instruct(MINI_INSTRUCTION)
    row.seconds = time.monotonic() - t0
    return row


def backbone_raises(s: Session) -> FaultRow:
    t0 = time.monotonic()
    diag_idx = s.probe.n_diagnostics()

    def fire() -> None:
        s.probe.image_pub.publish(s.probe.image_msg(poison(s.frame())))

    items = [(f"poisoned frame {i + 1} -> RuntimeError in backbone.step", fire) for i in range(3)]
    row = _input_fault(s, "backbone raises", "backbone_error", items)
    if not s.alive():
        return row
    row.injected = "3 frames on which the backbone raises RuntimeError (faulty_mini)"
    err = s.probe.wait_status("backbone", lambda st: level_name(st) == "ERROR", 3.0, since=diag_idx)
    row.check(err is not None, "/diagnostics backbone never went ERROR")
    idx = s.probe.n_diagnostics()
    s.good_frame()
    ok = s.probe.wait_status("backbone", lambda st: level_name(st) == "OK", 3.0, since=idx)
    row.check(ok is not None, "/diagnostics backbone did not return to OK after a good frame")
    row.diagnostics = (
        f"backbone: {describe_status(err, ('backbone_errors',))}; "
        f"then {describe_status(ok)} after the next good frame; inputs: {row.diagnostics}"
    )
    row.seconds = time.monotonic() - t0
    return row


# --------------------------------------------------------------------------- load / timing
def _stream(
    s: Session, rate_hz: float, duration_s: float, during: Callable[[], None] | None = None
) -> tuple[int, list[float]]:
    """Frames at ``rate_hz`` for ``duration_s``; return (frames sent, e2e latencies in ms)."""
    import threading

    stamps: dict[tuple[int, int], int] = {}
    stop = threading.Event()

    def camera() -> None:
        period = 1.0 / rate_hz
        next_t = time.monotonic()
        end = next_t + duration_s
        while not stop.is_set() and next_t < end:
            msg = s.probe.send_frame(s.frame())
            stamps[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    start_idx = s.probe.n_actions()
    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    if during is not None:
        during()
    thread.join(duration_s + 5)
    stop.set()
    time.sleep(0.3)
    lat = []
    with s.probe._lock:
        got = list(s.probe.log.actions[start_idx:])
    for r in got:
        st = r.msg.header.stamp
        if (st.sec, st.nanosec) in stamps:
            lat.append((r.t_ns - (st.sec * 1_000_000_000 + st.nanosec)) / 1e6)
    return len(stamps), lat


def instruction_flood(s: Session, seconds: float = 1.0, rate_hz: float = 1000.0) -> FaultRow:
    t0 = time.monotonic()
    row = FaultRow("instruction flood (1 kHz)", "", "", True, "", "", True)
    base = s.good_frame()
    mem0 = s.memory_values()
    n_same = int(seconds * rate_hz)

    def flood_same() -> None:
        period = 1.0 / rate_hz
        nxt = time.monotonic()
        for _ in range(n_same):
            s.probe.instruct(MINI_INSTRUCTION)
            nxt += period
            time.sleep(max(0.0, nxt - time.monotonic()))

    sent, lat = _stream(s, 30.0, seconds + 0.2, during=flood_same)
    mem1 = s.memory_values()
    served = len(lat) / max(sent, 1)
    p95 = float(np.percentile(lat, 95)) if lat else float("nan")
    row.check(served >= 0.8, f"only {served:.0%} of 30 Hz frames served during the flood")
    row.check(
        mem0.get("memory_resets") == mem1.get("memory_resets"),
        "a repeated identical instruction reset memory",
    )
    # Then a flood of alternating instructions: each change resets memory by design
    # (on_instruction_change=reset); the node must survive it and end on the last one.
    n_alt = 200
    diag_idx = s.probe.n_diagnostics()
    log_before = len(s.node.log().splitlines())
    for i in range(n_alt):
        s.probe.instruct(f"alternate task {i % 2}")
        time.sleep(1.0 / rate_hz)
    last = f"alternate task {(n_alt - 1) % 2}"
    final = s.probe.wait_status(
        "inputs", lambda st: status_values(st).get("instruction") == last, 5.0, since=diag_idx
    )
    row.check(final is not None, "node did not end on the last instruction of the flood")
    log_added = len(s.node.log().splitlines()) - log_before
    mem2 = s.memory_values()
    s.probe.instruct(MINI_INSTRUCTION)
    s.probe.wait_status(
        "inputs",
        lambda st: status_values(st).get("instruction") == MINI_INSTRUCTION,
        5.0,
        since=s.probe.n_diagnostics(),
    )
    after = s.good_frame()
    row.kept_running = s.alive() and after is not None
    row.check(row.kept_running, "node stopped serving after the flood")
    resets = int(mem2.get("memory_resets", 0)) - int(mem1.get("memory_resets", 0))
    row.injected = (
        f"{n_same} identical instructions at {rate_hz:.0f} Hz while the camera "
        f"streams at 30 Hz; then {n_alt} alternating instructions at {rate_hz:.0f} Hz"
    )
    row.node_did = (
        f"identical: ignored (no reset), {len(lat)}/{sent} frames served, e2e p95 "
        f"{p95:.1f} ms; alternating: {resets} memory resets (one per change, by design), "
        f"ended on {last!r}, {log_added} log lines"
    )
    row.memory_lost = (
        "no for the repeated instruction; alternating changes reset memory "
        "as configured (on_instruction_change=reset)"
    )
    row.diagnostics = describe_status(final, ("instruction",)) if final else "(none)"
    del base
    row.seconds = time.monotonic() - t0
    return row


def camera_dropout(s: Session, gap_s: float = 3.0) -> FaultRow:
    t0 = time.monotonic()
    row = FaultRow(
        "camera dropout then recovery",
        f"30 Hz camera, then no frames for {gap_s:.0f} s, then 30 Hz again",
        "",
        True,
        "",
        "",
        True,
    )
    sent0, lat0 = _stream(s, 30.0, 1.0)
    base = s.good_frame()
    digest0 = s.settle_file()
    stale0 = int(s.inputs_values().get("stale_frames", 0))
    idx = s.probe.n_diagnostics()
    time.sleep(gap_s)
    during = [
        st
        for name in ("inputs", "latency", "backbone", "memory")
        for st in s.probe.statuses(name, idx)
    ]
    # Only a status about the camera counts (gate=always keeps other rows' WARNs out anyway).
    flagged = [
        st
        for st in during
        if level_name(st) != "OK"
        and (
            st.name.endswith(": inputs")
            or any(w in st.message.lower() for w in ("frame", "camera", "image"))
        )
    ]
    row.check(s.alive(), "node died during the dropout")
    row.check(s.settle_file() == digest0, "memory changed while no frames arrived")
    t_resume = time.monotonic()
    first = s.good_frame()
    recovery_ms = (time.monotonic() - t_resume) * 1e3
    sent1, lat1 = _stream(s, 30.0, 1.0)
    stale1 = int(s.inputs_values().get("stale_frames", 0))
    row.kept_running = s.alive() and first is not None
    row.check(row.kept_running, "no action after the camera came back")
    row.check(
        first is not None and int(first.step) == int(base.step) + 1,
        "memory did not continue where it stopped",
    )
    row.check(stale1 == stale0, f"{stale1 - stale0} stale frames after recovery")
    row.check(len(lat1) >= 0.8 * sent1, f"only {len(lat1)}/{sent1} frames served after recovery")
    row.check(bool(flagged), "/diagnostics stayed OK for the whole dropout (no 'no frames' WARN)")
    row.node_did = (
        f"before: {len(lat0)}/{sent0} served; during the gap: nothing to do; first frame after "
        f"it answered in {recovery_ms:.0f} ms as step {first.step if first else '?'}; "
        f"after: {len(lat1)}/{sent1} served, {stale1 - stale0} stale"
    )
    row.memory_lost = "no: memory unchanged during the gap and continued after it"
    row.diagnostics = "during the gap: " + (
        describe_status(flagged[-1])
        if flagged
        else f"all {len(during)} statuses OK (dropout not reported)"
    )
    row.seconds = time.monotonic() - t0
    return row


def incompatible_qos(s: Session) -> FaultRow:
    """A publisher whose QoS cannot match the node's subscription, and a 'strict' camera.

    The node's camera subscription is best effort / volatile / no deadline, which every
    publisher satisfies: a camera cannot be incompatible with it (a RELIABLE camera is
    accepted). The instruction subscription (reliable + transient local) can be: a best-effort
    instruction publisher never delivers. The node must say so.
    """
    from rclpy.event_handler import PublisherEventCallbacks
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    t0 = time.monotonic()
    row = FaultRow(
        "camera / instruction publisher with incompatible QoS", "", "", True, "", "", True
    )
    probe_events: list[str] = []
    # Before the publishers exist: the node may report them the moment discovery matches.
    log_before = len(s.node.log())
    diag_idx = s.probe.n_diagnostics()
    # A RELIABLE camera (many drivers publish reliable): compatible with the node's best-effort
    # subscription. (A TRANSIENT_LOCAL camera is compatible too, but Fast DDS here loses ~15 %
    # of a transient-local best-effort writer's samples even between two plain rclpy
    # processes, which would blur this row.)
    strict_cam = s.probe.node.create_publisher(
        Image,
        "/image",
        QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=5,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        ),
    )
    bad_instr = s.probe.node.create_publisher(
        String,
        "/instruction",
        QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        ),
        event_callbacks=PublisherEventCallbacks(
            incompatible_qos=lambda ev: probe_events.append(f"policy {ev.last_policy_kind}")
        ),
    )
    try:
        # Frames published before discovery matched it to the node would be lost: wait.
        s.probe.wait_for(lambda: strict_cam.get_subscription_count() >= 1, 5.0)
        time.sleep(0.3)
        served = 0
        for _ in range(5):
            n0 = s.probe.n_actions()
            strict_cam.publish(s.probe.image_msg(s.frame()))
            if s.probe.wait_for(lambda n0=n0: s.probe.n_actions() > n0, 1.5):
                served += 1
        # Compatibility is all-or-nothing (an incompatible pair delivers 0 frames); the odd
        # lost frame is DDS best-effort delivery, not this row's subject.
        row.check(served >= 3, f"reliable camera publisher served {served}/5 frames")
        for _ in range(10):
            bad_instr.publish(String(data="a task sent best effort"))
            time.sleep(0.05)
        s.probe.wait_for(lambda: bool(probe_events), 3.0)

        def node_warned() -> list[str]:
            return [
                ln
                for ln in s.node.log()[log_before:].splitlines()
                if "incompatible" in ln.lower() or "qos" in ln.lower()
            ]

        s.probe.wait_for(lambda: bool(node_warned()), 5.0)
        time.sleep(2 * DIAG_PERIOD_S + 0.3)
        node_log = s.node.log()[log_before:]
        warned = [
            ln
            for ln in node_log.splitlines()
            if "incompatible" in ln.lower() or "qos" in ln.lower()
        ]
        statuses = [
            st
            for a in (
                s.probe.statuses(n, diag_idx) for n in ("inputs", "qos", "backbone", "memory")
            )
            for st in a
        ]
        diag_hits = [
            st
            for st in statuses
            if "qos" in (st.message + str([kv.key + kv.value for kv in st.values])).lower()
            and level_name(st) != "OK"
        ]
        inputs = s.inputs_values()
        row.check(
            inputs.get("instruction") == MINI_INSTRUCTION,
            "instruction changed through an incompatible publisher",
        )
        row.check(bool(probe_events), "DDS did not report the instruction QoS mismatch at all")
        row.check(
            bool(warned),
            "node did not log the incompatible instruction publisher; its log since: "
            + _short(s.node.log()[log_before:][-600:], 600),
        )
        row.check(bool(diag_hits), "/diagnostics did not report the QoS mismatch")
        after = s.good_frame()
        row.kept_running = s.alive() and after is not None
        row.check(row.kept_running, "node stopped serving")
        row.injected = (
            "camera publisher RELIABLE (depth 5); instruction "
            "publisher BEST_EFFORT + VOLATILE (node requires RELIABLE + "
            "TRANSIENT_LOCAL)"
        )
        row.node_did = (
            f"camera: {served}/5 frames served (compatible by design: sensor-data QoS accepts "
            f"any camera); instruction: never delivered (publisher saw "
            f"{len(probe_events)} incompatible-QoS event(s): {probe_events[:1]}); node log: "
            + (f"`{_short(warned[0].split('] ', 2)[-1], 90)}`" if warned else "nothing")
        )
        row.memory_lost = "no: the task and memory stay as they were"
        row.diagnostics = (
            describe_status(diag_hits[-1])
            if diag_hits
            else "nothing about QoS (all statuses silent on it)"
        )
    finally:
        s.probe.node.destroy_publisher(strict_cam)
        s.probe.node.destroy_publisher(bad_instr)
    row.seconds = time.monotonic() - t0
    return row


# --------------------------------------------------------------------------- persistence
def _state_key_from_log(log: str) -> bytes | None:
    """The key the node binds its state file to: sha256(model id, instruction)."""
    from aura_mem_ros.persistence import state_key

    for line in log.splitlines():
        if "configured:" in line and "model_id=" in line:
            model_id = line.split("model_id=", 1)[1].split()[0]
            return state_key(model_id, MINI_INSTRUCTION)
    return None


def _restore_value(s: Session, timeout_s: float = 5.0) -> str:
    status = s.probe.wait_status(
        "persistence",
        lambda st: "last_restore" in status_values(st),
        timeout_s,
        since=s.diag_start,
    )
    return status_values(status).get("last_restore", "") if status is not None else ""


def kill9_node_during_persistence(
    probe: Probe, domain_id: int, workdir: Path, kills: int = 3, seed: int = 0
) -> FaultRow:
    """SIGKILL the node while it is inside write_atomic (temp file present), ``kills`` times;
    after each kill the file must decode, and the restarted node must restore it."""
    from aura_mem_ros.persistence import read_state

    t0 = time.monotonic()
    row = FaultRow(
        f"kill -9 of the node during state persistence (x{kills})", "", "", True, "", "", True
    )
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
            if not row.check(s.ready(), f"restart {i} never served"):
                break
            key = key or _state_key_from_log(s.node.log())
            restore = _restore_value(s)
            if i > 0:
                ok = restore.startswith("restored")
                restored += int(ok)
                row.check(ok, f"restart {i} did not restore the state file: {restore!r}")
            tmp_glob = f".{state.name}.tmp.{s.node.pid}"
            import threading

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
                row.check(good, f"kill {i + 1}: state file {result.status.value}: {result.message}")
                last_payload = result.payload
        finally:
            s.node.stop()
    orphans = len(list(state.parent.glob(f".{state.name}.tmp.*")))
    # The restart after the last kill is in-process, so its memory can be compared byte for
    # byte with the file the kill left behind (nothing has touched the file since).
    exact = _exact_restore(probe, state, last_payload)
    restored += int(exact.startswith("yes"))
    row.check(exact.startswith("yes"), f"in-process restore differs: {exact}")
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
        True,
        "no: never a torn or mixed state; at most the write in flight is lost",
        "n/a (no node: persistence layer only)",
        True,
    )
    for r in bad[:3]:
        row.check(False, f"{r.point}: {r.detail}")
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
    row = FaultRow("corrupt state file at start", ", ".join(names), "", True, "", "", True)
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
            row.check(up, f"{name}: node never served")
            key = _state_key_from_log(s.node.log())
            s.good_frame()
            idx = s.probe.n_diagnostics()
            ok = s.probe.wait_status(
                "persistence", lambda st: level_name(st) == "OK", 3.0, since=idx
            )
            row.check(ok is not None, f"{name}: persistence WARN did not clear after a write")
            replaced = (
                key is not None and read_state(state, key, STATE_LEN).status.value == "restored"
            )
            logged = [ln for ln in s.node.log().splitlines() if "state file not used" in ln]
            row.check(
                warn is not None and level_name(warn) == "WARN", f"{name}: no persistence WARN"
            )
            row.check(bool(logged), f"{name}: not logged")
            row.check(replaced, f"{name}: file not replaced by a valid state after a write")
            row.check(s.alive(), f"{name}: node died")
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
    row.kept_running = not any("died" in f or "never served" in f for f in row.failures)
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
    row = FaultRow("unwritable state directory", "", "", True, "", "", True)
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
            row.check(up, "node never served with an unwritable state dir")
            actions = [s.good_frame() for _ in range(5)]
            served = sum(a is not None for a in actions)
            warn = s.probe.wait_status(
                "persistence", lambda st: level_name(st) == "WARN" and "cannot" in st.message, 5.0
            )
            row.check(served == 5, f"served {served}/5 frames while the disk refused writes")
            row.check(warn is not None, "/diagnostics persistence did not WARN")
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
    key = _state_key_from_log(s.node.log())
    ok = probe.wait_status("persistence", lambda st: level_name(st) == "OK", 5.0, since=idx)
    recovered = key is not None and read_state(state, key, STATE_LEN).status.value == "restored"
    row.check(after is not None and s.alive(), "node stopped serving")
    row.check(ok is not None and recovered, "persistence did not recover once writable")
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


def frame_delivery(
    s: Session,
    sizes: tuple[tuple[int, int], ...] = ((56, 56), (224, 224), (640, 480), (1280, 720)),
    per_size: int = 8,
) -> list[dict[str, Any]]:
    """How many camera frames of each size reach the node at all (best-effort camera QoS,
    default DDS transports). Not a fault of the node, but a limit every deployment meets.

    A frame "arrived" if it was answered or rejected (the shared node's small
    max_image_pixels rejects the large ones, which proves they were delivered); one at a time,
    so nothing is dropped for being busy.
    """
    out = []
    for w, h in sizes:
        rgb = np.zeros((h, w, 3), np.uint8)
        arrived = 0
        for _ in range(per_size):
            n0, r0 = s.probe.n_actions(), s.rejected_total()
            s.probe.image_pub.publish(s.probe.image_msg(rgb))

            def got(n0: int = n0, r0: int = r0) -> bool:
                stats = s.probe.latest_stats()
                rejected = int(stats.rejected_inputs) if stats is not None else r0
                return s.probe.n_actions() > n0 or rejected > r0

            arrived += int(s.probe.wait_for(got, 1.0))
        out.append(
            {
                "width": w,
                "height": h,
                "mb": round(w * h * 3 / 1e6, 2),
                "sent": per_size,
                "arrived": arrived,
            }
        )
    return out
