"""Fault table, rows about the node as ROS tools meet it (issue 13): the launch file's
wiring recorded and replayed by aura-mem-eval (``launch_record_replay``), the parameter
services `ros2 param` calls (``parameter_services``), and the package as colcon builds and
tests it (``package_colcon_test``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_dev.faults.harness import (
    MINI_INSTRUCTION,
    NODE_MODULE,
    REPO_ROOT,
    NodeProcess,
    Probe,
    mini_frame,
    node_command,
    ros_env,
)
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.serving_probe import call_service, wait_until
from aura_mem_dev.faults.session import Session


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

    from aura_mem_dev.faults.launch_file import launch_description
    from aura_mem_ros.eval.cli import main as eval_main
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
    image_pub = n.create_publisher(Image, launched.topic_of("image"), qos.sensor_qos())
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
    row = FaultRow(
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
        row.check(f"{label}_bag", not error, error)
        row.check(f"{label}_observations", matched >= 10, f"{matched} observations matched")
        row.check(f"{label}_replayed", replays > 0, "no counterfactual replay")
        results.append(
            f"{label}: {steps} steps, {matched} observations matched, {replays} gates replayed"
        )
    row.node_did = "; ".join(results)
    row.memory_lost = "no: every served step is in the bag with its observation"
    row.diagnostics = "n/a (recorder + eval row)"
    return row


def parameter_services(s: Session) -> FaultRow:
    from rcl_interfaces.srv import (
        DescribeParameters,
        GetParameters,
        GetParameterTypes,
        ListParameters,
    )

    from aura_mem_ros.ros.parameters import SPECS

    row = FaultRow(
        "parameter tools (ros2 param list / dump / describe)",
        "ListParameters, then GetParameters, DescribeParameters and GetParameterTypes with "
        "every listed name in ONE request each (what ros2 param dump sends)",
    )
    probe = s.probe
    listed, _ = call_service(
        probe, ListParameters, "/aura_mem/list_parameters", ListParameters.Request()
    )
    names = list(listed.result.names) if listed is not None else []
    declared = {spec.name for spec in SPECS}
    row.check("listed", declared <= set(names), f"missing {sorted(declared - set(names))[:5]}")
    got, _ = call_service(
        probe, GetParameters, "/aura_mem/get_parameters", GetParameters.Request(names=names)
    )
    values = list(got.values) if got is not None else []
    unset = sum(v.type == 0 for v in values)
    row.check(
        "values",
        len(values) == len(names) and not unset,
        f"{len(values)} values ({unset} unset) for {len(names)} names",
    )
    described, _ = call_service(
        probe,
        DescribeParameters,
        "/aura_mem/describe_parameters",
        DescribeParameters.Request(names=names),
    )
    descriptors = list(described.descriptors) if described is not None else []
    row.check("described", len(descriptors) == len(names), f"{len(descriptors)} descriptors")
    types, _ = call_service(
        probe,
        GetParameterTypes,
        "/aura_mem/get_parameter_types",
        GetParameterTypes.Request(names=names),
    )
    type_list = list(types.types) if types is not None else []
    row.check("typed", len(type_list) == len(names) and 0 not in type_list, f"{type_list[:5]}")
    row.kept_running = s.alive()
    row.node_did = (
        f"{len(names)} names listed; {len(values)} values, {len(descriptors)} descriptors, "
        f"{len(type_list)} types returned, {unset} unset"
    )
    row.memory_lost = "n/a"
    row.diagnostics = "n/a (parameter services)"
    return row


def package_colcon_test(workdir: Path) -> FaultRow:
    """package.xml vs what the code imports, and `colcon test` really running pytest."""
    import xml.etree.ElementTree as ET

    row = FaultRow(
        "package.xml dependencies and colcon test",
        "every ROS package imported by the installed code and the launch file looked up in "
        "package.xml; a colcon workspace built with BUILD_TESTING=ON, then colcon test "
        "(PYTEST_ADDOPTS picks 4 quick tests of the suite)",
    )
    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    declared = {el.text.strip() for t in ("depend", "exec_depend") for el in root.iter(t)}
    # The installed product and the launch file (aura_mem_dev is never installed).
    sources = [*(REPO_ROOT / "aura_mem_ros").rglob("*.py"), *(REPO_ROOT / "launch").glob("*.py")]
    imported = _ros_imports(sources) | {"lifecycle_msgs", "rosidl_default_runtime"}
    missing = sorted(imported - declared)
    row.check("exec_depends", not missing, f"undeclared: {missing}")
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
    row.check("colcon_build", build.returncode == 0, build.stderr[-300:])
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
    row.check("colcon_test", test.returncode == 0, test.stderr[-300:])
    xunit = ws / "build" / "aura_mem_ros" / "test_results" / "aura_mem_ros"
    tests = failures = -1
    with contextlib.suppress(OSError, ET.ParseError, TypeError):
        suite = ET.parse(xunit / "aura_mem_pytest.xunit.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        tests = int(suite.get("tests"))
        failures = int(suite.get("failures")) + int(suite.get("errors"))
    row.check("pytest_ran", tests >= 4 and failures == 0, f"{tests} tests, {failures} failed")
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
