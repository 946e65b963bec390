"""``arm_sim`` over real rclpy: lock-step chunks, JointState proprio, refusal of bad chunks."""

from __future__ import annotations

import json

from aura_mem_ros.msg import AuraAction, EpisodeResult
from rclpy.executors import SingleThreadedExecutor
from ros_harness import spin_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from aura_mem_ros.ros import qos
from aura_mem_ros.sim.arm.env import PROPRIO_NAMES
from aura_mem_ros.sim.arm.node import ENV_ID, ArmSimNode, ArmSimParams


def test_arm_sim_runs_chunks_from_its_expert_topic_and_refuses_bad_ones(
    ros_context, executor: SingleThreadedExecutor, make_node
) -> None:
    params = ArmSimParams(
        episodes=2,
        seed_offset=1_000_900,
        image_size=32,
        reset_between_episodes=False,  # never-reset: no reset service is waited for
        action_timeout_s=0.5,
    )
    sim = ArmSimNode(context=ros_context, defaults=params)
    executor.add_node(sim)
    policy = make_node("fake_arm_policy")
    action_pub = policy.create_publisher(AuraAction, "aura_mem/action", qos.reliable_qos())
    results: list[EpisodeResult] = []
    joints: list[JointState] = []
    infos: list[dict] = []
    images: dict[tuple[int, int], Image] = {}
    expert: dict[tuple[int, int], AuraAction] = {}
    sent_bad = []

    def reply(key: tuple[int, int]) -> None:
        if key in images and key in expert:
            header = images.pop(key).header
            if not sent_bad:  # the first frame first gets a NaN chunk: refused, re-sent
                bad = AuraAction(action=[float("nan")] * 56, chunk_size=8, action_dim=7)
                bad.header = header
                action_pub.publish(bad)
                sent_bad.append(key)
                expert.pop(key)
                return
            msg = expert.pop(key)
            msg.header = header
            msg.wrote = msg.step == 0
            action_pub.publish(msg)

    def on_image(msg: Image) -> None:
        assert msg.encoding == "rgb8" and (msg.height, msg.width) == (32, 32)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        images[key] = msg
        reply(key)

    def on_expert(msg: AuraAction) -> None:
        assert (msg.chunk_size, msg.action_dim, len(msg.action)) == (8, 7, 56)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        expert[key] = msg
        reply(key)

    policy.create_subscription(Image, "image", on_image, qos.sensor_qos())
    policy.create_subscription(AuraAction, "expert/action", on_expert, qos.reliable_qos())
    policy.create_subscription(JointState, "proprio", joints.append, qos.sensor_qos())
    policy.create_subscription(EpisodeResult, "episode_result", results.append, qos.reliable_qos())
    policy.create_subscription(
        String, "arm_sim/step_info", lambda m: infos.append(json.loads(m.data)), qos.reliable_qos()
    )
    try:
        assert spin_until(executor, lambda: len(results) == 2, 90.0), sim.results
    finally:
        executor.remove_node(sim)
        sim.env.close()
        sim.destroy_node()
    assert [r.seed for r in results] == [1_000_900, 1_000_901]
    assert all(r.success and r.episode_return == 1.0 and r.env_id == ENV_ID for r in results)
    assert all(150 <= r.steps <= 320 for r in results)  # issue 15: >= 150 control steps
    assert sim.refused == 1 and sim.retransmits >= 1  # the NaN chunk executed nothing
    assert list(joints[0].name) == list(PROPRIO_NAMES) and len(joints[0].position) == 8
    first = [i for i in infos if i["episode"] == 0]
    assert [i["chunk"] for i in first] == list(range(len(first)))
    assert first[0]["cue_visible"] and first[0]["wrote"] and not first[2]["cue_visible"]
    assert first[-1]["done"] and first[-1]["placed_pad"] == first[-1]["cue_pad"]


def test_arm_sim_never_executes_the_safe_action(ros_context) -> None:
    """A stop command stamped like the pending frame, even one holding a valid chunk, moves
    nothing; the same chunk without the mark is executed."""
    sim = ArmSimNode(
        context=ros_context,
        defaults=ArmSimParams(
            episodes=1, seed_offset=1_000_900, image_size=32, reset_between_episodes=False
        ),
    )
    try:
        sim._begin_episode()
        sec, nanosec = sim._pending_stamp
        t0, proprio = sim.env.state.t, sim.env.observe(render=False).proprio.copy()
        chunk = [0.05] * (8 * 7)  # a real move on every axis
        safe = AuraAction(action=chunk, chunk_size=8, action_dim=7, is_safe_action=True)
        safe.header.stamp.sec, safe.header.stamp.nanosec = sec, nanosec
        sim._on_action(safe)
        assert sim.safe_actions == 1 and sim.env.state.t == t0
        assert sim._pending_stamp == (sec, nanosec)
        assert (sim.env.observe(render=False).proprio == proprio).all()
        move = AuraAction(action=chunk, chunk_size=8, action_dim=7)
        move.header.stamp = safe.header.stamp
        sim._on_action(move)
        assert sim.env.state.t > t0
    finally:
        sim.env.close()
        sim.destroy_node()
