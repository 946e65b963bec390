"""Fault table, stopping rows (issue 13): the safe action, promptly and marked.

``stop_in_flight``: the safe action <= 100 ms after deactivate / shutdown / SIGTERM / SIGINT
with an inference in flight, transitions <= 100 ms of executor time, every status
'finalized', SIGTERM at any moment of start-up exits cleanly. Times come from the node's
own log stamps, not from sleeps here. ``safe_action_marked``: the stop command says
is_safe_action and minigrid_sim holds still on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from aura_mem_dev.faults.harness import (
    NodeProcess,
    Probe,
    Received,
    describe_status,
    level_name,
)
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.serving_probe import (
    ACTIVATE,
    CLEANUP,
    CONFIGURE,
    DEACTIVATE,
    SHUTDOWN_FROM,
    SLOW_STEP_S,
    STOP_BOUND_MS,
    TOY,
    actions_since,
    node_session,
    transition,
    wait_until,
)
from aura_mem_dev.faults.session import Session


def _first_safe_after(probe: Probe, index: int, t0_ns: int, timeout_s: float) -> float | None:
    """ms from ``t0_ns`` to the first safe action received after action ``index``."""
    found: list[Received] = []

    def got() -> bool:
        found[:] = [r for r in actions_since(probe, index) if r.msg.is_safe_action]
        return bool(found)

    wait_until(got, timeout_s)
    return (found[0].t_ns - t0_ns) / 1e6 if found else None


def _start_inference(s: Session) -> bool:
    """Send one frame and give the worker time to be inside the (slow) backbone step."""
    s.probe.send_frame(s.frame())
    time.sleep(0.4)
    return s.alive()


def _computed_after_safe(probe: Probe, index: int) -> int:
    got = actions_since(probe, index)
    first_safe = next((i for i, r in enumerate(got) if r.msg.is_safe_action), None)
    if first_safe is None:
        return 0
    return sum(not r.msg.is_safe_action for r in got[first_safe:])


def _stop_by_signal(
    probe: Probe, domain: int, workdir: Path, sig: signal.Signals
) -> tuple[tuple[float | None, float | None], int, str, list[Any]]:
    """A slow node with an inference in flight gets ``sig``: ((ms from the signal to the safe
    action's publication by the node, to its reception here), exit code, log, statuses
    published after the signal)."""
    s = node_session(probe, domain, workdir, f"stop_{sig.name}", _slow_overrides())
    try:
        if not s.ready(120.0):
            return (None, None), -999, s.node.log(), []
        _start_inference(s)
        index, idx = probe.n_actions(), probe.n_diagnostics()
        t0 = time.time_ns()
        os.kill(s.node.pid, sig)
        received_ms = _first_safe_after(probe, index, t0, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.node.proc.wait(timeout=20)
        time.sleep(0.2)
        after = [st for name in _STATUS_NAMES for st in probe.statuses(name, idx)]
        code = s.node.proc.returncode if s.node.proc.returncode is not None else -999
        log = s.node.log()
        published = [t for t, _ in _log_times(log, "published safe action") if t >= t0]
        published_ms = (published[0] - t0) / 1e6 if published else None
        return (published_ms, received_ms), code, log, after
    finally:
        s.close()


_STATUS_NAMES = ("memory", "latency", "inputs", "transport", "backbone", "persistence")
_LOG_LINE = re.compile(r"\[(\d+)\.(\d+)\] \[[^\]]*\]: (.*)$")


def _log_times(log: str, needle: str) -> list[tuple[int, str]]:
    """(wall-clock ns, message) of the node's log lines containing ``needle``."""
    out = []
    for line in log.splitlines():
        m = _LOG_LINE.search(line.strip())
        if m and needle in m[3]:
            out.append((int(m[1]) * 1_000_000_000 + int(m[2].ljust(9, "0")[:9]), m[3]))
    return out


def _safe_latencies_in_transitions(log: str) -> list[tuple[str, float]]:
    """For each transition that published the safe action: ms from the transition's start
    (its 'took' line's time minus its duration) to the 'published safe action' line."""
    safe = [t for t, _ in _log_times(log, "published safe action")]
    out = []
    for t_done, text in _log_times(log, "transition "):
        m = re.match(r"transition (\w+) took ([\d.]+) ms", text)
        if not m:
            continue
        start = t_done - int(float(m[2]) * 1e6)
        inside = [t for t in safe if start <= t <= t_done]
        if inside:
            out.append((m[1], (inside[0] - start) / 1e6))
    return out


def _slow_overrides() -> dict[str, Any]:
    return {
        **TOY,
        "backbone_args": json.dumps({"d_model": 16, "delay_s": SLOW_STEP_S}),
        "max_obs_age_s": 10.0,
    }


def _startup_phase(log: str) -> str:
    """How far start-up got, from the node's own log lines."""
    if "Traceback" in log:
        return "TRACEBACK"
    phase = "interpreter start (before our handler)" if not log.strip() else "starting"
    for marker, label in (
        ("(no node yet)", "imports / rclpy init"),
        ("configured:", "configured"),
        ("active: serving", "active"),
    ):
        if marker in log:
            phase = label
    if "configure started" in log and "configured:" not in log:
        phase = "configuring"
    if "during start-up" in log and phase != "imports / rclpy init":
        phase += ", stopped mid-transition"
    return phase


def _startup_kills(domain: int, fractions: tuple[float, ...]) -> list[tuple[float, int, str]]:
    """SIGTERM the plain node (mini, the shipped YAML) at fractions of the time it takes to
    reach 'active' (measured first), so every phase of start-up is hit."""
    node = NodeProcess({}, domain)
    wait_until(lambda: "active: serving" in node.log() or not node.alive(), 120.0)
    to_active = time.monotonic() - node.started
    node.proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        node.proc.wait(timeout=30)
    out = [(to_active, node.proc.returncode, _startup_phase(node.stop()))]
    # Inside configure for sure: a backbone that takes 3 s to load, signalled 0.5 s after
    # the node said configure started.
    slow = NodeProcess(
        {**TOY, "backbone_args": json.dumps({"d_model": 16, "load_delay_s": 3.0})}, domain
    )
    wait_until(lambda: "configure started" in slow.log() or not slow.alive(), 120.0)
    time.sleep(0.5)
    t_kill = time.monotonic() - slow.started
    slow.proc.send_signal(signal.SIGTERM)
    try:
        slow.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        slow.kill9()
    out.append((t_kill, slow.proc.returncode, "in configure: " + _startup_phase(slow.stop())))
    for fraction in fractions:
        node = NodeProcess({}, domain)
        time.sleep(max(0.0, fraction * to_active - (time.monotonic() - node.started)))
        if node.alive():
            node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill9()
        out.append((fraction * to_active, node.proc.returncode, _startup_phase(node.stop())))
    return out


def stop_in_flight(probe: Probe, domain: int, workdir: Path) -> FaultRow:
    row = FaultRow(
        "stop with an inference in flight; SIGTERM during start-up",
        f"toy backbone with a {SLOW_STEP_S:.0f}-s step; a frame in inference, then: lifecycle "
        "deactivate; shutdown; SIGTERM; SIGINT. Times: the node's own log stamps (executor "
        "time per transition, stop -> safe action published) and receipt here. SIGTERM "
        "to the mini node at 8 moments of its start-up (1-90 % of its time to 'active')",
    )
    notes = []
    s = node_session(probe, domain, workdir, "stop_lifecycle", _slow_overrides())
    try:
        if not row.check("node_serves", s.ready(120.0), "never answered a frame"):
            return row
        timings: dict[str, float] = {}
        _start_inference(s)
        index = probe.n_actions()
        t0 = time.time_ns()
        ok, timings["deactivate"] = transition(probe, DEACTIVATE)
        deactivate_safe = _first_safe_after(probe, index, t0, 5.0)
        time.sleep(SLOW_STEP_S + 0.5)  # the abandoned inference ends now
        after_deactivate = _computed_after_safe(probe, index)
        ok = bool(ok)
        for name, tid in (
            ("activate", ACTIVATE),
            ("deactivate_idle", DEACTIVATE),
            ("cleanup", CLEANUP),
        ):
            accepted, timings[name] = transition(probe, tid)
            ok = ok and accepted
        ok_conf, configure_s = transition(probe, CONFIGURE)  # loads the model: not bounded
        ok_act, timings["activate_again"] = transition(probe, ACTIVATE)
        row.check("transitions_accepted", ok and ok_conf and ok_act, "a transition was refused")
        s.good_frame(timeout_s=8.0)
        _start_inference(s)
        index2 = probe.n_actions()
        idx2 = probe.n_diagnostics()
        t1 = time.time_ns()
        ok_shutdown, timings["shutdown"] = transition(probe, SHUTDOWN_FROM["active"])
        row.check("shutdown_accepted", ok_shutdown, "shutdown refused")
        shutdown_safe = _first_safe_after(probe, index2, t1, 5.0)
        time.sleep(SLOW_STEP_S + 0.5)
        after_shutdown = _computed_after_safe(probe, index2)
        finals = [st for name in _STATUS_NAMES for st in probe.statuses(name, idx2)]
        finals = finals[-len(_STATUS_NAMES) :]
        finalized = len(finals) == len(_STATUS_NAMES) and all(
            level_name(st) == "WARN" and st.message.startswith("finalized") for st in finals
        )
        round_trips = {k: v * 1e3 for k, v in timings.items()}
        for label, ms in (("deactivate", deactivate_safe), ("shutdown", shutdown_safe)):
            row.check(f"safe_received_{label}", ms is not None, f"no safe action on {label}")
        row.check(
            "nothing_after_safe",
            after_deactivate + after_shutdown == 0,
            f"{after_deactivate + after_shutdown} computed action(s) after a safe action",
        )
        row.check(
            "finalized_statuses",
            finalized,
            "statuses after shutdown: " + "; ".join(describe_status(st) for st in finals[:2]),
        )
        notes.append(
            f"safe action received here {_ms(deactivate_safe)} after the deactivate request "
            f"(inference in flight; both DDS hops included), {_ms(shutdown_safe)} after "
            "shutdown, 0 computed actions after it; service round trips "
            + ", ".join(f"{k} {v:.0f} ms" for k, v in round_trips.items())
            + f" (configure {configure_s * 1e3:.0f} ms); statuses after shutdown: "
            f"{len(finals)} x {level_name(finals[0]) if finals else '?'} 'finalized'"
        )
    finally:
        log = s.close()
    row.check("no_traceback", "Traceback" not in log, "a traceback in the node log")
    # What each transition held the executor for, as the node itself measured it.
    held = [(m[1], float(m[2])) for m in re.finditer(r"transition (\w+) took ([\d.]+) ms", log)]
    slow = [f"{n} {ms:.0f} ms" for n, ms in held if n != "configure" and ms > STOP_BOUND_MS]
    row.check("transitions_fast", bool(held) and not slow, f"held the executor: {slow}")
    safe_in = _safe_latencies_in_transitions(log)
    late = [f"{n} {ms:.0f} ms" for n, ms in safe_in if ms > STOP_BOUND_MS]
    row.check(
        "safe_within_bound",
        len(safe_in) >= 2 and not late,
        f"safe action published late in {late} ({len(safe_in)} stops seen)",
    )
    notes.append(
        "executor held per transition (node-side): "
        + ", ".join(f"{n} {ms:.1f} ms" for n, ms in held)
        + " (configure loads the model: not bounded); safe action published "
        + ", ".join(f"{ms:.1f} ms into {n}" for n, ms in safe_in)
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        (published, received), code, log, after = _stop_by_signal(probe, domain, workdir, sig)
        row.check(
            f"{sig.name}_safe",
            published is not None and published <= STOP_BOUND_MS and received is not None,
            f"safe action published {_ms(published)}, received {_ms(received)} after {sig.name}",
        )
        row.check(f"{sig.name}_exit", code == 0, f"exit code {code}")
        row.check(f"{sig.name}_clean", "Traceback" not in log, "traceback: " + log[-300:])
        finalized = [st for st in after if st.message.startswith("finalized")]
        row.check(f"{sig.name}_finalized", bool(finalized), "no 'finalized' status")
        notes.append(
            f"{sig.name}: safe action published {_ms(published)} after the signal (received "
            f"here after {_ms(received)}), exit {code}"
        )
    kills = _startup_kills(domain, (0.01, 0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9))
    # Exit 0 without a traceback; killed by the signal itself only before the interpreter
    # reached our handler (nothing of ours exists then).
    bad = [
        (d, c, p)
        for d, c, p in kills
        if "TRACEBACK" in p
        or not (c == 0 or (c == -signal.SIGTERM and p.startswith("interpreter start")))
    ]
    row.check("startup_clean", not bad, f"unclean start-up exits: {bad}")
    in_configure = [p for _, c, p in kills if p.startswith("in configure") and c == 0]
    row.check(
        "stopped_in_configure",
        any("configuring, stopped mid-transition" in p for p in in_configure),
        f"the signal during configure: {[p for _, _, p in kills if 'in configure' in p]}",
    )
    notes.append(
        f"SIGTERM during start-up (mini reaches 'active' after {kills[0][0]:.1f} s here): "
        + ", ".join(f"{d:.1f} s -> exit {c} ({p})" for d, c, p in kills[1:])
        + f"; once active: exit {kills[0][1]}"
    )
    row.node_did = "; ".join(notes)
    row.memory_lost = "no: the in-flight step is superseded before it writes memory"
    row.diagnostics = "after shutdown every status: WARN 'finalized: the node was shut down ...'"
    return row


def _ms(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f} ms"


def safe_action_marked(s: Session) -> FaultRow:
    from aura_mem_ros.msg import AuraAction

    from aura_mem_ros.sim.node import MiniGridSimNode, SimParams

    row = FaultRow(
        "the safe action is marked, and the simulator holds still on it",
        "5 served frames, then lifecycle deactivate (mini: the safe action is all-zero "
        "logits, whose argmax is action 0); the safe action handed to minigrid_sim with the "
        "stamp of its pending frame",
    )
    probe = s.probe
    n0 = probe.n_actions()
    served = [s.good_frame() for _ in range(5)]
    ok, _ = transition(probe, DEACTIVATE)
    row.check("deactivated", ok, "deactivate refused")
    wait_until(lambda: any(r.msg.is_safe_action for r in actions_since(probe, n0)), 5.0)
    got = actions_since(probe, n0)
    safe = [r.msg for r in got if r.msg.is_safe_action]
    regular = [r.msg for r in got if not r.msg.is_safe_action]
    row.check("safe_marked", len(safe) == 1, f"{len(safe)} marked safe actions")
    row.check(
        "regular_unmarked",
        len(regular) >= sum(a is not None for a in served),
        f"{len(regular)} unmarked actions for {sum(a is not None for a in served)} frames",
    )
    # The simulator, given that very message for the frame it waits on, must not step.
    sim = MiniGridSimNode(
        name="minigrid_sim_check",
        context=probe.context,
        defaults=SimParams(episodes=1, reset_service="", proprio_lead_s=0.0, expert_topic=""),
    )
    try:
        sim._begin_episode()
        pending = sim._pending_stamp
        msg = safe[0] if safe else AuraAction(is_safe_action=True, chunk_size=1, action_dim=7)
        msg.header.stamp.sec, msg.header.stamp.nanosec = pending
        sim._on_action(msg)
        row.check(
            "sim_holds_still",
            sim._steps == 0 and sim.safe_actions == 1,
            f"simulator stepped {sim._steps} time(s) on the safe action",
        )
    finally:
        sim.destroy_node()
    ok, _ = transition(probe, ACTIVATE)
    row.kept_running = ok and s.good_frame() is not None
    row.check("serves_again", row.kept_running, "no action after re-activation")
    row.node_did = (
        f"{len(regular)} served actions with is_safe_action=false, then 1 safe action with "
        f"is_safe_action=true (action {list(safe[0].action)[:3] if safe else '?'}...); "
        "minigrid_sim counted it and did not step"
    )
    row.memory_lost = "no"
    row.diagnostics = "n/a (message contract)"
    return row
