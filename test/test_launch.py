"""The launch file, executed for real against stand-ins for ``launch``/``launch_ros`` (no wheels
of them exist here; ``faults/launch_file.py``), then its node started with exactly the
namespace and remaps it produces:
every input is remapped, the launch defaults are the topics ``aura-mem-record`` records, and a
bag recorded that way replays in ``aura-mem-eval``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import spin_for, spin_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from test_bags_support import wait_matched

from aura_mem_dev.faults.launch_file import Launched, launch_description
from aura_mem_ros.bags.record import DEFAULT_TOPICS, Recorder
from aura_mem_ros.bags.writer import SplitBagWriter
from aura_mem_ros.ros import qos, topics
from aura_mem_ros.ros.aura_node import AuraMemNode
from aura_mem_ros.ros.image_conversion import rgb_to_image

pytestmark = pytest.mark.timeout(120)
# What every ROS node has besides its own topics.
PLUMBING = {"/rosout", "/parameter_events"}


def test_launch_remaps_every_input_and_declares_its_arguments() -> None:
    launched = launch_description()
    assert (launched.package, launched.executable) == ("aura_mem_ros", "aura_mem_node")
    assert launched.name == "aura_mem" and launched.namespace == ""
    assert Path(launched.parameters[0]).name == "aura_mem.yaml"
    assert Path(launched.parameters[0]).is_file()
    assert sorted(src for src, _ in launched.remaps) == sorted(topics.input_names())
    # Defaults: each input keeps its own (relative) name.
    assert all(src == dst for src, dst in launched.remaps)
    moved = launch_description(namespace="robot1", image_topic="/camera/color/image_raw")
    remaps = dict(moved.remaps)
    assert remaps["image"] == "/camera/color/image_raw"
    assert remaps["image/compressed"] == "/camera/color/image_raw/compressed"
    assert moved.namespace == "robot1"
    with pytest.raises(ValueError, match="no such launch argument"):
        launch_description(camera_topic="/x")


def _start_like_launch(context: Any, launched: Launched, **params: Any) -> AuraMemNode:
    """The node as ``ros2 launch`` would start it: its namespace and ``-r`` remaps."""
    return AuraMemNode(
        context=context,
        cli_args=launched.ros_args(),
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
    ros_context, executor, compressed: bool
) -> None:
    node = _start_like_launch(
        ros_context, launch_description(), **TOY_ALL_INPUTS, use_compressed=compressed
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
    context: Any, executor: Any, launched: Launched, recorder: Recorder, frames: int = 12
) -> None:
    """Frames, joint states and the instruction on the topics the launch file wired."""
    params = {**TOY_ALL_INPUTS, "use_wrist_image": False}
    params["backbone_args"] = '{"d_model": 16, "proprio_dim": 1}'
    node = _start_like_launch(context, launched, **params)
    client = Node("launch_bag_client", context=context)
    image_pub = client.create_publisher(Image, launched.topic_of("image"), qos.sensor_qos())
    joint_pub = client.create_publisher(JointState, launched.topic_of("proprio"), qos.proprio_qos())
    for n in (node, client, recorder.node):
        executor.add_node(n)
    try:
        assert node.autostart(), node.configure_error
        action_topic = topics.node_path(launched.namespace) + "/action"
        wait_matched(executor, recorder, {launched.topic_of("image"), action_topic})
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


def test_record_with_launch_defaults_then_replay(ros_context, executor, tmp_path: Path) -> None:
    """What failed in the issue: the launch file's camera topic was not the recorder's, so
    the bag had no camera and aura-mem-eval found 0 observations."""
    bag = tmp_path / "bag"
    recorder = Recorder(
        SplitBagWriter(bag), DEFAULT_TOPICS, context=ros_context, log=lambda _: None
    )
    _serve_and_record(ros_context, executor, launch_description(), recorder)
    report = _eval(bag, tmp_path / "eval")
    assert report["steps"] == 12
    assert report["observations_matched"] == 12
    assert report["replay"], "no counterfactual replay ran"


def test_record_a_namespaced_remapped_launch_by_following_the_node(
    ros_context, executor, tmp_path: Path
) -> None:
    launched = launch_description(
        namespace="robot1", image_topic="/camera/image_raw", proprio_topic="joints"
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


def test_instruction_string_reaches_a_namespaced_node(ros_context, executor) -> None:
    """The latched instruction, published where the launch file wires it, is taken."""
    node = _start_like_launch(
        ros_context, launch_description(namespace="robot1"), **{**TOY_ALL_INPUTS, "instruction": ""}
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


def test_recorder_namespace_option_follows_a_namespaced_launch() -> None:
    """``aura-mem-record --namespace robot1`` records what ``namespace:=robot1`` wires."""
    from aura_mem_ros.bags.record import build_parser

    args = build_parser().parse_args(["--namespace", "robot1"])
    recorded = set(topics.node_topics(args.namespace))
    launched = launch_description(namespace="robot1")
    wired = {launched.topic_of(name) for name in topics.input_names()}
    assert wired <= recorded
    assert {"/robot1/aura_mem/action", "/robot1/aura_mem/stats", "/diagnostics"} <= recorded
    assert topics.node_path("robot1") == "/robot1/aura_mem"
    assert args.node is None  # defaults to /robot1/aura_mem in main()
