"""``minigrid_sim`` over real rclpy: lock-step protocol, seeded episodes, results."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
from aura_mem_ros.msg import AuraAction, EpisodeResult
from rclpy.executors import SingleThreadedExecutor
from ros_harness import spin_until
from sensor_msgs.msg import Image, JointState

from aura_mem_ros.ros import qos
from aura_mem_ros.sim.node import RANDOM_MOVES, MiniGridSimNode, SimParams


def test_sim_runs_seeded_episodes_driven_by_its_expert_topic(
    ros_context, executor: SingleThreadedExecutor, make_node
) -> None:
    params = SimParams(
        env_id="MiniGrid-MemoryS11-v0", episodes=2, seed_offset=1_000_777, reset_service=""
    )
    sim = MiniGridSimNode(context=ros_context, defaults=params)
    executor.add_node(sim)
    policy = make_node("fake_policy")
    action_pub = policy.create_publisher(AuraAction, "aura_mem/action", qos.reliable_qos())
    results: list[EpisodeResult] = []
    headings: list[float] = []
    images: dict[tuple[int, int], Image] = {}
    expert: dict[tuple[int, int], list[float]] = {}

    def reply(key: tuple[int, int]) -> None:
        # The frame and the oracle's answer for it arrive on two topics, in either order.
        if key in images and key in expert:
            msg = AuraAction(action=expert.pop(key), chunk_size=1, action_dim=7)
            msg.header = images.pop(key).header
            action_pub.publish(msg)

    def on_image(msg: Image) -> None:
        assert msg.encoding == "rgb8" and (msg.height, msg.width) == (56, 56)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        images[key] = msg
        reply(key)

    def on_expert(msg: AuraAction) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        expert[key] = list(msg.action)
        reply(key)

    policy.create_subscription(Image, "image", on_image, qos.sensor_qos())
    policy.create_subscription(AuraAction, "expert/action", on_expert, qos.reliable_qos())
    policy.create_subscription(
        JointState, "proprio", lambda m: headings.append(m.position[0]), qos.sensor_qos()
    )
    policy.create_subscription(EpisodeResult, "episode_result", results.append, qos.reliable_qos())
    try:
        assert spin_until(executor, lambda: len(results) == 2, 30.0), sim.results
        assert [r.seed for r in results] == [1_000_777, 1_000_778]
        assert all(r.success and 0 < r.steps <= 19 for r in results)  # the oracle always wins
        assert all(r.env_id == "MiniGrid-MemoryS11-v0" for r in results)
        quarter = math.pi / 2
        assert headings and all(abs(h / quarter - round(h / quarter)) < 1e-5 for h in headings)
    finally:
        executor.remove_node(sim)
        sim.destroy_node()


def test_sim_never_executes_the_safe_action(ros_context) -> None:
    """The stop command carries zero 'logits' whose argmax is action 0 (turn left): the
    simulator must hold still on it, even stamped like the pending frame."""
    sim = MiniGridSimNode(
        context=ros_context, defaults=SimParams(episodes=1, reset_service="", proprio_lead_s=0.0)
    )
    try:
        sim._begin_episode()
        sec, nanosec = sim._pending_stamp
        heading = sim._obs.heading_rad
        safe = AuraAction(action=[0.0] * 7, chunk_size=1, action_dim=7, is_safe_action=True)
        safe.header.stamp.sec, safe.header.stamp.nanosec = sec, nanosec
        sim._on_action(safe)
        assert sim._steps == 0 and sim.safe_actions == 1
        assert sim._obs.heading_rad == heading and sim._pending_stamp == (sec, nanosec)
        turn = AuraAction(action=[1.0] + [0.0] * 6, chunk_size=1, action_dim=7)
        turn.header.stamp = safe.header.stamp
        sim._on_action(turn)  # the same zero-ish command, not marked safe: executed
        assert sim._steps == 1
    finally:
        sim.destroy_node()


def test_sim_calls_the_reset_service_only_when_told_to(ros_context, make_node) -> None:
    """reset_between_episodes false: no reset client, so no ~/reset_memory call between
    episodes (a server counts the calls); true: one call at every episode start."""
    from std_srvs.srv import Trigger

    executor = SingleThreadedExecutor(context=ros_context)
    server = make_node("fake_aura_mem")
    calls: list[int] = []

    def on_reset(request, response):
        calls.append(1)
        response.success = True
        return response

    server.create_service(Trigger, "aura_mem/reset_memory", on_reset)
    executor.add_node(server)
    for between, expected in ((False, 0), (True, 2)):
        calls.clear()
        sim = MiniGridSimNode(
            context=ros_context,
            defaults=SimParams(episodes=2, reset_between_episodes=between, proprio_lead_s=0.0),
        )
        executor.add_node(sim)
        try:
            assert (sim._reset_cli is None) is not between
            if between:
                assert spin_until(executor, sim._reset_cli.service_is_ready, 5.0)
            for _ in range(2):
                sim._begin_episode()
                done = sim._waiting_reset
                if done is not None:
                    assert spin_until(executor, done.done, 5.0)
            assert len(calls) == expected
        finally:
            executor.remove_node(sim)
            sim.destroy_node()


def test_sim_params_validate_driver_and_explore() -> None:
    assert SimParams().driver == "policy" and SimParams().explore == 0.0  # default unchanged
    SimParams(driver="expert", explore=0.1)
    for bad, match in (
        ({"driver": "teleop"}, "driver must be one of"),
        ({"driver": "expert", "explore": 1.5}, r"explore must be in \[0, 1\]"),
        ({"driver": "expert", "explore": -0.1}, r"explore must be in \[0, 1\]"),
        ({"driver": "policy", "explore": 0.1}, "requires driver 'expert'"),
    ):
        with pytest.raises(ValueError, match=match):
            SimParams(**bad)


def _drive(ros_context, params: SimParams, answer: int) -> tuple[list[dict], list[dict]]:
    """Run ``params.episodes`` episodes in process, answering every frame with ``answer``;
    return the step infos and the episode results."""
    sim = MiniGridSimNode(context=ros_context, defaults=params)
    infos: list[dict] = []
    sim._info_pub = SimpleNamespace(publish=lambda m: infos.append(json.loads(m.data)))
    try:
        sim._begin_episode()
        while not sim.done:
            msg = AuraAction(action=[0.0] * 7, chunk_size=1, action_dim=7)
            msg.action[answer] = 1.0
            msg.header.stamp.sec, msg.header.stamp.nanosec = sim._pending_stamp
            sim._on_action(msg)
        return infos, sim.results
    finally:
        sim.destroy_node()


def test_sim_driven_by_its_expert_ignores_the_policys_answer(ros_context) -> None:
    """driver expert: the policy answers 'done' (6) on every frame, which would end nothing;
    the simulator executes its expert's action instead, so every episode succeeds."""
    params = SimParams(
        env_id="MiniGrid-MemoryS7-v0",
        episodes=3,
        seed_offset=123,
        reset_service="",
        proprio_lead_s=0.0,
        driver="expert",
    )
    infos, results = _drive(ros_context, params, answer=6)
    assert [r["success"] for r in results] == [True] * 3
    assert all(i["action"] == i["expert_action"] and i["policy_action"] == 6 for i in infos)
    # The same answers with the policy driving: 'done' never ends an episode in MiniGrid-Memory.
    policy = dataclasses.replace(params, driver="policy", episodes=1, max_steps=5)
    infos, results = _drive(ros_context, policy, answer=6)
    assert not results[0]["success"] and all(i["action"] == 6 for i in infos)


def test_sim_explores_with_random_moves_seeded_per_episode(ros_context) -> None:
    params = SimParams(
        env_id="MiniGrid-MemoryS7-v0",
        episodes=4,
        seed_offset=500,
        max_steps=30,
        reset_service="",
        proprio_lead_s=0.0,
        driver="expert",
        explore=0.5,
    )
    infos, _ = _drive(ros_context, params, answer=6)
    off = [i for i in infos if i["action"] != i["expert_action"]]
    assert off and len(off) < len(infos)  # some random moves, not only
    assert {i["action"] for i in off} <= set(RANDOM_MOVES)
    again, _ = _drive(ros_context, params, answer=6)
    assert [i["action"] for i in again] == [i["action"] for i in infos]  # seeded
    # explore 1: every executed action is a random move, whatever the expert says.
    infos, _ = _drive(ros_context, dataclasses.replace(params, explore=1.0), answer=6)
    assert {i["action"] for i in infos} <= set(RANDOM_MOVES)
    assert any(i["action"] != i["expert_action"] for i in infos)
