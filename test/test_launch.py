"""The launch file, executed for real against stand-ins for ``launch``/``launch_ros`` (no wheels
of them exist here), then its node started with exactly the namespace and remaps it produces:
every input is remapped, the launch defaults are the topics ``aura-mem-record`` records, and a
bag recorded that way replays in ``aura-mem-eval``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import REPO_ROOT, spin_for, spin_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from test_bags_support import wait_matched

from aura_mem_ros.bags.record import DEFAULT_TOPICS, Recorder
from aura_mem_ros.bags.writer import SplitBagWriter
from aura_mem_ros.ros import qos, topics
from aura_mem_ros.ros.aura_node import AuraMemNode
from aura_mem_ros.ros.image_conversion import rgb_to_image

pytestmark = pytest.mark.timeout(120)
LAUNCH_FILE = REPO_ROOT / "launch" / "aura_mem.launch.py"
# What every ROS node has besides its own topics.
PLUMBING = {"/rosout", "/parameter_events"}


class _Recorded:
    """Stand-in for a launch action/substitution: keeps its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorded):
    pass


class DeclareLaunchArgument(_Recorded):
    pass


class LaunchNode(_Recorded):
    pass


class LaunchDescription(_Recorded):
    pass


@pytest.fixture
def launch_file(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """launch/aura_mem.launch.py imported with the launch API stubbed."""
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = LaunchNode
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)  # the venv is the install prefix
    spec = importlib.util.spec_from_file_location("aura_mem_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_launch(launch_file: types.ModuleType, **arguments: str) -> dict[str, Any]:
    """generate_launch_description() with ``arguments`` (``name:=value``), substitutions
    resolved: the node's name, namespace, parameter files and remaps."""
    description = launch_file.generate_launch_description()
    actions = description.args[0]
    defaults = {
        a.args[0]: a.kwargs["default_value"]
        for a in actions
        if isinstance(a, DeclareLaunchArgument)
    }
    unknown = set(arguments) - set(defaults)
    assert not unknown, f"no such launch argument: {unknown}"
    values = {**defaults, **arguments}

    def resolve(value: Any) -> str:
        if isinstance(value, LaunchConfiguration):
            return values[value.args[0]]
        if isinstance(value, list):
            return "".join(resolve(v) for v in value)
        return str(value)

    (node,) = [a for a in actions if isinstance(a, LaunchNode)]
    kw = node.kwargs
    return {
        "package": kw["package"],
        "executable": kw["executable"],
        "name": kw["name"],
        "namespace": resolve(kw["namespace"]),
        "parameters": [resolve(p) for p in kw["parameters"]],
        "remaps": [(resolve(a), resolve(b)) for a, b in kw["remappings"]],
    }


def test_launch_remaps_every_input_and_declares_its_arguments(launch_file) -> None:
    launched = run_launch(launch_file)
    assert (launched["package"], launched["executable"]) == ("aura_mem_ros", "aura_mem_node")
    assert launched["name"] == "aura_mem" and launched["namespace"] == ""
    assert Path(launched["parameters"][0]).name == "aura_mem.yaml"
    assert Path(launched["parameters"][0]).is_file()
    assert sorted(src for src, _ in launched["remaps"]) == sorted(topics.input_names())
    # Defaults: each input keeps its own (relative) name.
    assert all(src == dst for src, dst in launched["remaps"])
    moved = run_launch(launch_file, namespace="robot1", image_topic="/camera/color/image_raw")
    remaps = dict(moved["remaps"])
    assert remaps["image"] == "/camera/color/image_raw"
    assert remaps["image/compressed"] == "/camera/color/image_raw/compressed"
    assert moved["namespace"] == "robot1"


def _start_like_launch(context: Any, launched: dict[str, Any], **params: Any) -> AuraMemNode:
    """The node as ``ros2 launch`` would start it: its namespace and ``-r`` remaps."""
    cli = ["--ros-args"]
    for src, dst in launched["remaps"]:
        cli += ["-r", f"{src}:={dst}"]
    return AuraMemNode(
        context=context,
        namespace=launched["namespace"],
        cli_args=cli,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )


TOY_ALL_INPUTS = {
    "backbone": "toy",
    "backbone_args": '{"d_model": 16, "num_images": 2, "proprio_dim": 1}',
    "use_wrist_image": True,
    "use_proprio": True,
    "instruction": "pick up the cup",
    "gate": "always",
    "stats_rate_hz": 20.0,
    "max_obs_age_s": 5.0,
    "max_proprio_age_s": 5.0,
}


@pytest.mark.parametrize("compressed", [False, True])
def test_launch_defaults_are_the_topics_the_recorder_records(
    launch_file, ros_context, executor, compressed: bool
) -> None:
    node = _start_like_launch(
        ros_context, run_launch(launch_file), **TOY_ALL_INPUTS, use_compressed=compressed
    )
    executor.add_node(node)
    try:
        assert node.autostart(), node.configure_error
        spin_for(executor, 0.2)
        used = {
            t
            for t, _ in node.get_subscriber_names_and_types_by_node("aura_mem", "/")
            + node.get_publisher_names_and_types_by_node("aura_mem", "/")
        } - PLUMBING
        lifecycle = {t for t in used if t.endswith("/transition_event")}
        missing = used - lifecycle - set(DEFAULT_TOPICS)
        assert not missing, f"the node uses topics the recorder does not record: {missing}"
    finally:
        executor.remove_node(node)
        node.destroy_node()


def _serve_and_record(
    context: Any, executor: Any, launched: dict[str, Any], recorder: Recorder, frames: int = 12
) -> None:
    """Frames, joint states and the instruction on the topics the launch file wired."""
    node = _start_like_launch(
        context,
        launched,
        **{
            **TOY_ALL_INPUTS,
            "use_wrist_image": False,
            "backbone_args": '{"d_model": 16, "proprio_dim": 1}',
        },
    )
    ns = launched["namespace"]
    remaps = dict(launched["remaps"])

    def absolute(name: str) -> str:
        return name if name.startswith("/") else f"/{ns}/{name}".replace("//", "/")

    client = Node("launch_bag_client", context=context)
    image_pub = client.create_publisher(Image, absolute(remaps["image"]), qos.camera_qos())
    joint_pub = client.create_publisher(JointState, absolute(remaps["proprio"]), qos.proprio_qos())
    for n in (node, client, recorder.node):
        executor.add_node(n)
    try:
        assert node.autostart(), node.configure_error
        action_topic = topics.node_path(ns) + "/action"
        wait_matched(executor, recorder, {absolute(remaps["image"]), action_topic})
        assert spin_until(executor, lambda: recorder.node_parameters is not None, 5.0)
        rng = np.random.default_rng(0)
        for i in range(frames):
            stamp = client.get_clock().now().to_msg()
            joint = JointState(name=["heading"], position=[float(i)])
            joint.header.stamp = stamp
            joint_pub.publish(joint)
            spin_for(executor, 0.03)  # recorded before its frame: eval pairs by arrival
            rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            image_pub.publish(rgb_to_image(rgb, stamp=stamp, frame_id="camera"))
            steps = node.stats.snapshot().steps
            assert spin_until(executor, lambda s=steps: node.stats.snapshot().steps > s, 5.0)
        spin_for(executor, 0.3)
    finally:
        for n in (node, client, recorder.node):
            executor.remove_node(n)
        recorder.stop()
        node.destroy_node()
        client.destroy_node()


def _eval(bag: Path, out: Path, *extra: str) -> dict[str, Any]:
    from aura_mem_ros.eval.cli import main as eval_main

    assert eval_main([str(bag), "-o", str(out), "--quiet", *extra]) == 0
    return json.loads((out / "report.json").read_text())["bags"][0]


def test_record_with_launch_defaults_then_replay(
    launch_file, ros_context, executor, tmp_path: Path
) -> None:
    """What failed in the issue: the launch file's camera topic was not the recorder's, so
    the bag had no camera and aura-mem-eval found 0 observations."""
    bag = tmp_path / "bag"
    recorder = Recorder(
        SplitBagWriter(bag), DEFAULT_TOPICS, context=ros_context, log=lambda _: None
    )
    _serve_and_record(ros_context, executor, run_launch(launch_file), recorder)
    report = _eval(bag, tmp_path / "eval")
    assert report["steps"] == 12
    assert report["observations_matched"] == 12
    assert report["replay"], "no counterfactual replay ran"


def test_record_a_namespaced_remapped_launch_by_following_the_node(
    launch_file, ros_context, executor, tmp_path: Path
) -> None:
    launched = run_launch(
        launch_file, namespace="robot1", image_topic="/camera/image_raw", proprio_topic="joints"
    )
    bag = tmp_path / "bag"
    recorder = Recorder(
        SplitBagWriter(bag),
        [],
        follow_node="/robot1/aura_mem",
        params_of="/robot1/aura_mem",
        context=ros_context,
        log=lambda _: None,
    )
    _serve_and_record(ros_context, executor, launched, recorder)
    report = _eval(
        bag,
        tmp_path / "eval",
        "--image-topic",
        "/camera/image_raw",
        "--proprio-topic",
        "/robot1/joints",
        "--action-topic",
        "/robot1/aura_mem/action",
        "--stats-topic",
        "/robot1/aura_mem/stats",
        "--instruction-topic",
        "/robot1/instruction",
    )
    assert report["steps"] == 12 and report["observations_matched"] == 12


def test_instruction_string_reaches_a_namespaced_node(launch_file, ros_context, executor) -> None:
    """The latched instruction, published where the launch file wires it, is taken."""
    node = _start_like_launch(
        ros_context,
        run_launch(launch_file, namespace="robot1"),
        **{**TOY_ALL_INPUTS, "instruction": ""},
    )
    client = Node("launch_instruction_client", context=ros_context)
    pub = client.create_publisher(String, "/robot1/instruction", qos.instruction_qos())
    for n in (node, client):
        executor.add_node(n)
    try:
        assert node.autostart()
        pub.publish(String(data="open the drawer"))
        assert spin_until(executor, lambda: node.pipeline.instruction == "open the drawer", 5.0)
    finally:
        for n in (node, client):
            executor.remove_node(n)
            n.destroy_node()
