"""Helpers shared by the bag, eval and retrain tests (no tests here).

``record_node_bag`` runs the real aura_mem node (toy backbone) in-process with the recorder
beside it, serves a sequence of frames with an instruction change halfway, and returns the bag.
``drive_sim_through_node`` closes the loop MiniGrid -> node (mini backbone) -> MiniGrid the way
the ``minigrid_sim`` bridge does, recording it, expert actions included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from aura_mem_ros.msg import AuraAction
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_harness import spin_for, spin_until
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from aura_mem_ros.bags.record import DEFAULT_TOPICS, Recorder
from aura_mem_ros.bags.writer import SplitBagWriter
from aura_mem_ros.core.checkpoint import init_aura, save_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.ros import qos
from aura_mem_ros.ros.image_conversion import rgb_to_image

TOY_ARGS = '{"d_model": 16}'


def wait_matched(
    executor: Any, recorder: Recorder, topics: set[str], timeout_s: float = 10.0
) -> None:
    """Until the recorder subscribed ``topics`` AND each subscription is matched with its
    publishers: a best-effort or volatile message sent before the match is never delivered,
    and under load matching can take longer than any fixed sleep."""

    def ready() -> bool:
        subs = recorder._subscriptions
        return topics <= set(subs) and all(subs[t].get_publisher_count() > 0 for t in topics)

    assert spin_until(executor, ready, timeout_s), sorted(recorder._subscriptions)
    spin_for(executor, 0.1)


def perturbed_checkpoint(
    directory: Path, gate_bias: float = 0.0, seed: int = 1, config: AuraConfig | None = None
) -> Path:
    """An AURA layer (toy-sized by default) whose residual head and gate are NOT at their
    initial values, so memory changes actions and the learned gate writes only sometimes."""
    layer = init_aura(config or AuraConfig(d_model=16, chunk_size=2, action_dim=3), seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith(("head", "gate")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        layer.gate_out.bias.fill_(gate_bias)
    return save_aura(layer, directory)


def _start_node(
    context: Any, executor: Any, params: dict[str, Any], client_name: str
) -> tuple[Any, Node, list[AuraAction]]:
    """The aura_mem node (walked to active) and a client node collecting its actions."""
    from aura_mem_ros.ros.aura_node import AuraMemNode

    node = AuraMemNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    client = Node(client_name, context=context)
    actions: list[AuraAction] = []
    client.create_subscription(AuraAction, "/aura_mem/action", actions.append, qos.reliable_qos())
    for n in (node, client):
        executor.add_node(n)
    assert node.autostart(), node.configure_error
    return node, client, actions


def _start_recorder(context: Any, executor: Any, out: Path) -> Recorder:
    recorder = Recorder(SplitBagWriter(out), DEFAULT_TOPICS, context=context, log=lambda _: None)
    executor.add_node(recorder.node)
    return recorder


def _stop_all(executor: Any, recorder: Recorder, *nodes: Node) -> None:
    executor.remove_node(recorder.node)
    recorder.stop()
    for n in nodes:
        executor.remove_node(n)
        n.destroy_node()


def record_node_bag(
    context: Any, executor: Any, out: Path, frames: int = 40, **node_params: Any
) -> tuple[Path, list[AuraAction]]:
    """Serve ``frames`` random frames through the node while recording; returns the bag and the
    actions a plain subscriber received."""

    params = {
        "backbone": "toy",
        "backbone_args": TOY_ARGS,
        "gate": "learned",
        "use_proprio": False,
        "stats_rate_hz": 20.0,
        "diagnostics_period_s": 0.2,
        "instruction": "pick up the cup",
        "max_obs_age_s": 5.0,
        **node_params,
    }
    node, client, actions = _start_node(context, executor, params, "bag_fixture_client")
    image_pub = client.create_publisher(Image, "/image", qos.sensor_qos())
    instr_pub = client.create_publisher(String, "/instruction", qos.instruction_qos())
    recorder = _start_recorder(context, executor, out)
    try:
        wait_matched(executor, recorder, {"/image", "/aura_mem/action", "/aura_mem/stats"})
        assert spin_until(executor, lambda: recorder.node_parameters is not None, 5.0)
        rng = np.random.default_rng(0)
        for i in range(frames):
            if i == frames // 2:
                instr_pub.publish(String(data="put the cup in the sink"))
                spin_for(executor, 0.1)
            arr = rng.integers(0, 256, (24, 32, 3)).astype(np.uint8)
            image_pub.publish(
                rgb_to_image(arr, stamp=client.get_clock().now().to_msg(), frame_id=str(i))
            )
            assert spin_until(executor, lambda i=i: len(actions) > i, 5.0), f"no action {i}"
        assert spin_until(
            executor, lambda: recorder.counters["/aura_mem/action"].received == frames, 5.0
        )
        spin_for(executor, 0.2)
    finally:
        _stop_all(executor, recorder, node, client)
    return out, actions


def drive_sim_through_node(
    context: Any,
    executor: Any,
    out: Path,
    episodes: int,
    env_id: str = "MiniGrid-MemoryS7-v0",
    max_steps: int = 30,
    first_seed: int = 0,
    **node_params: Any,
) -> tuple[Path, int]:
    """Closed loop through the real node with the mini backbone, recorded: MiniGrid frames and
    heading -> /image + /proprio, the node's action (argmax) -> env.step. Memory is reset with
    ~/reset_memory at each episode start and /episode_result is published at each end, as the
    simulator bridge does. Returns the bag and the number of served steps."""
    from aura_mem_ros.msg import EpisodeResult
    from std_srvs.srv import Trigger

    from aura_mem_ros.sim.env import cue_visible, make_env, to_sim_obs
    from aura_mem_ros.sim.expert import expert_action

    params = {
        "backbone": "mini",
        "use_proprio": True,
        "gate": "learned",
        "stats_rate_hz": 5.0,
        "diagnostics_period_s": 0.5,
        "max_obs_age_s": 5.0,
        **node_params,
    }
    node, client, actions = _start_node(context, executor, params, "sim_driver")
    image_pub = client.create_publisher(Image, "/image", qos.sensor_qos())
    proprio_pub = client.create_publisher(JointState, "/proprio", qos.sensor_qos())
    instr_pub = client.create_publisher(String, "/instruction", qos.instruction_qos())
    result_pub = client.create_publisher(EpisodeResult, "/episode_result", 10)
    expert_pub = client.create_publisher(AuraAction, "/expert/action", qos.reliable_qos())
    reset = client.create_client(Trigger, "/aura_mem/reset_memory")
    recorder = _start_recorder(context, executor, out)
    env = make_env(env_id)
    served = 0
    try:
        obs = to_sim_obs(env.reset(seed=0)[0])
        instr_pub.publish(String(data=obs.instruction))
        wait_matched(
            executor,
            recorder,
            {
                "/image",
                "/proprio",
                "/instruction",
                "/aura_mem/action",
                "/episode_result",
                "/expert/action",
            },
        )
        assert spin_until(executor, lambda: recorder.node_parameters is not None, 5.0)
        for ep in range(episodes):
            obs = to_sim_obs(env.reset(seed=first_seed + ep)[0])
            seen = cue_visible(env)
            future = reset.call_async(Trigger.Request())
            assert spin_until(executor, future.done, 5.0)
            steps, success, ret = 0, False, 0.0
            for _ in range(max_steps):
                stamp = client.get_clock().now().to_msg()
                js = JointState(name=["heading"], position=[obs.heading_rad])
                js.header.stamp = stamp
                proprio_pub.publish(js)
                spin_for(executor, 0.005)  # the node must hold this state before the frame
                image_pub.publish(rgb_to_image(obs.image, stamp=stamp, frame_id="camera"))
                # What the simulator's expert would do here: the target for eval / training.
                expert = AuraAction(chunk_size=1, action_dim=7)
                expert.header.stamp = stamp
                expert.action = [float(i == expert_action(env, seen)) for i in range(7)]
                expert_pub.publish(expert)
                assert spin_until(executor, lambda n=served: len(actions) > n, 5.0)
                served += 1
                action = int(np.argmax(np.asarray(actions[-1].action)))
                obs_dict, reward, terminated, truncated, _ = env.step(action)
                obs = to_sim_obs(obs_dict)
                seen = seen or cue_visible(env)
                steps, ret = steps + 1, ret + float(reward)
                if terminated or truncated:
                    success = reward > 0
                    break
            result_pub.publish(
                EpisodeResult(
                    episode=ep,
                    seed=first_seed + ep,
                    success=success,
                    steps=steps,
                    episode_return=ret,
                    env_id=env_id,
                )
            )
            spin_for(executor, 0.02)
        assert spin_until(
            executor, lambda: recorder.counters["/aura_mem/action"].received == served, 5.0
        )
        spin_for(executor, 0.2)
    finally:
        _stop_all(executor, recorder, node, client)
    return out, served
