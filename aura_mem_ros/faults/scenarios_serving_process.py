"""Fault-table rows about the node as a process in a ROS install (issue 13, items 4, 8, 10):
the launch file's wiring recorded and replayed, stopping (lifecycle and signals) with an
inference in flight and at every moment of start-up, and the package as colcon builds and
tests it. The rows are registered in ``scenarios_serving.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.faults.harness import (
    MINI_INSTRUCTION,
    NODE_MODULE,
    REPO_ROOT,
    NodeProcess,
    Probe,
    Received,
    describe_status,
    level_name,
    mini_frame,
    node_command,
    ros_env,
)
from aura_mem_ros.faults.scenarios import FaultRow, Session
from aura_mem_ros.faults.serving_probe import (
    ACTIVATE,
    CLEANUP,
    CONFIGURE,
    DEACTIVATE,
    SHUTDOWN_FROM,
    SLOW_STEP_S,
    STOP_BOUND_MS,
    TOY,
    actions_since,
    check,
    new_row,
    node_session,
    transition,
    wait_until,
)


# --------------------------------------------------------------------------- item 4
class LaunchedNode(NodeProcess):
    """The node process as ``ros2 launch aura_mem_ros aura_mem.launch.py ARGS`` starts it:
    the launch file's parameter file, namespace and remaps, plus the harness overrides."""

    def __init__(self, launched: Any, overrides: dict[str, Any], domain_id: int) -> None:
        self.overrides = overrides
        self.command = node_command(overrides, Path(launched.parameters[0]), NODE_MODULE)
        self.command += launched.ros_args()[1:]  # node_command already opened --ros-args
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            mode="w+", prefix="aura_mem_launched_", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO_ROOT,
            env=ros_env(domain_id),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _record_launch(
    probe: Probe,
    domain: int,
    workdir: Path,
    label: str,
    launch_args: dict[str, str],
    record_args: list[str],
    frames: int = 30,
) -> tuple[dict[str, Any], str]:
    """Launch (as the launch file wires it), record with ``record_args``, evaluate the bag."""
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from aura_mem_ros.eval.cli import main as eval_main
    from aura_mem_ros.faults.launch_file import launch_description
    from aura_mem_ros.ros import qos, topics

    launched = launch_description(**launch_args)
    bag = workdir / f"bag_{label}"
    overrides = {"instruction": MINI_INSTRUCTION, "use_proprio": True, "stats_rate_hz": 5.0}
    node = LaunchedNode(launched, overrides, domain)
    recorder = subprocess.Popen(
        [sys.executable, "-m", "aura_mem_ros.bags.record", "-o", str(bag), *record_args],
        cwd=REPO_ROOT,
        env=ros_env(domain),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    n = probe.node
    image_pub = n.create_publisher(Image, launched.topic_of("image"), qos.camera_qos())
    joint_pub = n.create_publisher(JointState, launched.topic_of("proprio"), qos.proprio_qos())
    instr_pub = n.create_publisher(String, launched.topic_of("instruction"), qos.instruction_qos())
    action_topic = topics.node_path(launched.namespace) + "/action"
    try:
        # Up when the node's action publisher and the recorder's camera subscription exist.
        wait_until(
            lambda: (
                n.count_publishers(action_topic) > 0 and image_pub.get_subscription_count() >= 2
            ),
            90.0,
        )
        time.sleep(1.0)  # the recorder subscribes the node's topics as they appear
        instr_pub.publish(String(data=MINI_INSTRUCTION))
        rng = np.random.default_rng(0)
        for _ in range(frames):
            stamp = probe.now_msg()
            joint = JointState(name=["heading"], position=[0.0])
            joint.header.stamp = stamp
            joint_pub.publish(joint)
            time.sleep(0.02)
            image_pub.publish(probe.image_msg(mini_frame(rng), stamp))
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        recorder.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            recorder.wait(timeout=30)
        node.stop()
        for pub in (image_pub, joint_pub, instr_pub):
            n.destroy_publisher(pub)
    ns = launched.namespace
    eval_args = [
        str(bag),
        "-o",
        str(workdir / f"eval_{label}"),
        "--quiet",
        "--image-topic",
        launched.topic_of("image"),
        "--proprio-topic",
        launched.topic_of("proprio"),
        "--instruction-topic",
        launched.topic_of("instruction"),
        "--action-topic",
        action_topic,
        "--stats-topic",
        topics.node_path(ns) + "/stats",
    ]
    if not (bag / "metadata.yaml").is_file():
        return {}, "no bag written"
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        rc = eval_main(eval_args)
    if rc != 0:
        return {}, f"aura-mem-eval exited {rc}"
    report = json.loads((workdir / f"eval_{label}" / "report.json").read_text())
    return report["bags"][0], ""


def launch_record_replay(probe: Probe, domain: int, workdir: Path) -> FaultRow:
    row = new_row(
        "record next to the launch file, replay with aura-mem-eval",
        "node started as launch/aura_mem.launch.py wires it (1: defaults, recorder defaults; "
        "2: namespace:=robot1 image_topic:=/camera/image_raw, recorder --follow-node), "
        "30 frames, bag replayed by aura-mem-eval",
    )
    results = []
    for label, launch_args, record_args in (
        ("defaults", {}, []),
        (
            "namespaced",
            {"namespace": "robot1", "image_topic": "/camera/image_raw"},
            ["--follow-node", "/robot1/aura_mem"],
        ),
    ):
        report, error = _record_launch(
            probe, domain, workdir / "launch", label, launch_args, record_args
        )
        steps = report.get("steps", 0)
        matched = report.get("observations_matched") or 0
        replays = len(report.get("replay", []) or [])
        check(row, f"{label}_bag", not error, error)
        check(row, f"{label}_observations", matched >= 10, f"{matched} observations matched")
        check(row, f"{label}_replayed", replays > 0, "no counterfactual replay")
        results.append(
            f"{label}: {steps} steps, {matched} observations matched, {replays} gates replayed"
        )
    row.node_did = "; ".join(results)
    row.memory_lost = "no: every served step is in the bag with its observation"
    row.diagnostics = "n/a (recorder + eval row)"
    return row


# --------------------------------------------------------------------------- item 8
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
    row = new_row(
        "stop with an inference in flight; SIGTERM during start-up",
        f"toy backbone with a {SLOW_STEP_S:.0f}-s step; a frame in inference, then: lifecycle "
        "deactivate; shutdown; SIGTERM; SIGINT. Times: the node's own log stamps (executor "
        "time per transition, stop -> safe action published) and receipt here. SIGTERM "
        "to the mini node at 8 moments of its start-up (1-90 % of its time to 'active')",
    )
    notes = []
    s = node_session(probe, domain, workdir, "stop_lifecycle", _slow_overrides())
    try:
        if not check(row, "node_serves", s.ready(120.0), "never answered a frame"):
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
        check(row, "transitions_accepted", ok and ok_conf and ok_act, "a transition was refused")
        s.good_frame(timeout_s=8.0)
        _start_inference(s)
        index2 = probe.n_actions()
        idx2 = probe.n_diagnostics()
        t1 = time.time_ns()
        ok_shutdown, timings["shutdown"] = transition(probe, SHUTDOWN_FROM["active"])
        check(row, "shutdown_accepted", ok_shutdown, "shutdown refused")
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
            check(row, f"safe_received_{label}", ms is not None, f"no safe action on {label}")
        check(
            row,
            "nothing_after_safe",
            after_deactivate + after_shutdown == 0,
            f"{after_deactivate + after_shutdown} computed action(s) after a safe action",
        )
        check(
            row,
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
    check(row, "no_traceback", "Traceback" not in log, "a traceback in the node log")
    # What each transition held the executor for, as the node itself measured it.
    held = [(m[1], float(m[2])) for m in re.finditer(r"transition (\w+) took ([\d.]+) ms", log)]
    slow = [f"{n} {ms:.0f} ms" for n, ms in held if n != "configure" and ms > STOP_BOUND_MS]
    check(row, "transitions_fast", bool(held) and not slow, f"held the executor: {slow}")
    safe_in = _safe_latencies_in_transitions(log)
    late = [f"{n} {ms:.0f} ms" for n, ms in safe_in if ms > STOP_BOUND_MS]
    check(
        row,
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
        check(
            row,
            f"{sig.name}_safe",
            published is not None and published <= STOP_BOUND_MS and received is not None,
            f"safe action published {_ms(published)}, received {_ms(received)} after {sig.name}",
        )
        check(row, f"{sig.name}_exit", code == 0, f"exit code {code}")
        check(row, f"{sig.name}_clean", "Traceback" not in log, "traceback: " + log[-300:])
        finalized = [st for st in after if st.message.startswith("finalized")]
        check(row, f"{sig.name}_finalized", bool(finalized), "no 'finalized' status")
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
    check(row, "startup_clean", not bad, f"unclean start-up exits: {bad}")
    in_configure = [p for _, c, p in kills if p.startswith("in configure") and c == 0]
    check(
        row,
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


# --------------------------------------------------------------------------- item 10
def package_colcon_test(workdir: Path) -> FaultRow:
    """package.xml vs what the code imports, and `colcon test` really running pytest."""
    import xml.etree.ElementTree as ET

    row = new_row(
        "package.xml dependencies and colcon test",
        "every ROS package imported by the installed code and the launch file looked up in "
        "package.xml; a colcon workspace built with BUILD_TESTING=ON, then colcon test "
        "(PYTEST_ADDOPTS picks 4 quick tests of the suite)",
    )
    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    declared = {el.text.strip() for t in ("depend", "exec_depend") for el in root.iter(t)}
    sources = [
        p
        for p in (REPO_ROOT / "aura_mem_ros").rglob("*.py")
        if p.relative_to(REPO_ROOT / "aura_mem_ros").parts[0] not in ("bench", "faults")
    ] + list((REPO_ROOT / "launch").glob("*.py"))
    imported = _ros_imports(sources) | {"lifecycle_msgs", "rosidl_default_runtime"}
    missing = sorted(imported - declared)
    check(row, "exec_depends", not missing, f"undeclared: {missing}")
    colcon = Path(sys.executable).with_name("colcon")
    ws = workdir / "colcon_ws"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "aura_mem_ros").symlink_to(REPO_ROOT)
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix, "CMAKE_PREFIX_PATH": sys.prefix}
    build = subprocess.run(
        [
            str(colcon),
            "build",
            "--base-paths",
            "src",
            "--cmake-args",
            "-DBUILD_TESTING=ON",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    check(row, "colcon_build", build.returncode == 0, build.stderr[-300:])
    env["PYTEST_ADDOPTS"] = (
        "-p no:cacheprovider -k 'cdr_serialisation or documented_fields or "
        "every_ros_package or registers_the_pytest'"
    )
    test = subprocess.run(
        [str(colcon), "test", "--base-paths", "src"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    check(row, "colcon_test", test.returncode == 0, test.stderr[-300:])
    xunit = ws / "build" / "aura_mem_ros" / "test_results" / "aura_mem_ros"
    tests = failures = -1
    with contextlib.suppress(OSError, ET.ParseError, TypeError):
        suite = ET.parse(xunit / "aura_mem_pytest.xunit.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests = int(suite.get("tests"))
        failures = int(suite.get("failures")) + int(suite.get("errors"))
    check(row, "pytest_ran", tests >= 4 and failures == 0, f"{tests} tests, {failures} failed")
    row.kept_running = True
    row.node_did = (
        f"{len(imported)} ROS packages imported, all declared"
        if not missing
        else f"undeclared: {missing}"
    ) + f"; colcon test ran the pytest suite through ctest: {tests} tests, {failures} failed"
    row.memory_lost = "n/a"
    row.diagnostics = "n/a (build)"
    return row


def _ros_imports(paths: list[Path]) -> set[str]:
    """Top-level modules ``paths`` import that are ROS packages (share/<pkg>/package.xml in
    this prefix), plus the launch packages the launch file imports (no wheels here)."""
    import ast

    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    share = Path(sys.prefix) / "share"
    ros = {n for n in names if (share / n / "package.xml").is_file()}
    launch = names & {"launch", "launch_ros", "ament_index_python"}
    return (ros | launch) - {"aura_mem_ros"}
