"""``minigrid_sim``: MiniGrid-Memory behind ROS topics, the CPU stand-in for a robot.

It talks to the policy only through what a robot driver offers (camera, joint state, task
string, a memory-reset call at the start of a task), so the ``aura_mem`` node cannot tell it
from a robot. Lock-step protocol per control step:

    publish  proprio     sensor_msgs/JointState, one joint "heading" (rad), stamped
    publish  image       sensor_msgs/Image rgb8 56x56, stamp S (a few ms after proprio, so
                         the node pairs the frame with this step's heading)
    receive  action      AuraAction whose header.stamp == S; the action is argmax(logits)
                         (an AuraAction with is_safe_action = the policy stopped: never
                         executed, the robot holds still; counted in ``safe_actions``)
    step the env; on episode end publish EpisodeResult on ``episode_result``, reset with the
    next seed (seed_offset + episode), call the reset service, continue.

With ``reset_between_episodes: false`` the reset service is never called: the episodes are
one long run for the policy, as a robot that never resets sees its tasks (the episode
boundary exists only in the simulator).

A frame that gets no action within ``action_timeout_s`` is re-sent with a new stamp (best
effort camera QoS may drop it). ``~/step_info`` (std_msgs/String, JSON) carries per-step
ground truth (cue visibility) for the demo's plot; the policy never subscribes to it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from aura_mem_ros.msg import AuraAction, EpisodeResult
from aura_mem_ros.ros import qos
from aura_mem_ros.ros.image_conversion import rgb_to_image
from aura_mem_ros.ros.node_help import exit_if_help
from aura_mem_ros.sim.env import (
    NUM_ACTIONS,
    SimObs,
    cue_is_key,
    cue_visible,
    make_env,
    to_sim_obs,
)
from aura_mem_ros.sim.expert import expert_action


@dataclass(frozen=True)
class SimParams:
    env_id: str = "MiniGrid-MemoryS13-v0"
    episodes: int = 20  # 0 = run until shut down
    seed_offset: int = 1_000_000
    max_steps: int = 100
    action_topic: str = "aura_mem/action"
    reset_service: str = "aura_mem/reset_memory"  # empty: no memory reset between episodes
    # false: never call reset_service (memory carries over from episode to episode)
    reset_between_episodes: bool = True
    action_timeout_s: float = 2.0
    proprio_lead_s: float = 0.02
    startup_timeout_s: float = 60.0
    # The oracle's action for each frame (one-hot AuraAction, stamp = the frame's), for bag
    # recording / offline evaluation; empty = not published. The policy never reads it.
    expert_topic: str = "expert/action"
    # Also wait for a subscriber on ~/step_info and episode_result before the first
    # episode (the demo's observer), so no step of episode 0 goes unrecorded.
    wait_for_observer: bool = False

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.max_steps <= 0:
            raise ValueError("episodes >= 0 and max_steps > 0 required")
        if self.action_timeout_s <= 0 or self.proprio_lead_s < 0:
            raise ValueError("action_timeout_s > 0 and proprio_lead_s >= 0 required")


class MiniGridSimNode(Node):
    def __init__(
        self,
        name: str = "minigrid_sim",
        *,
        context: Context | None = None,
        defaults: SimParams | None = None,
    ) -> None:
        super().__init__(name, context=context)
        defaults = defaults or SimParams()
        values = {}
        for field_name in SimParams.__dataclass_fields__:
            default = getattr(defaults, field_name)
            values[field_name] = self.declare_parameter(field_name, default).value
        self.p = SimParams(**values)
        self.env = make_env(self.p.env_id)
        self._image_pub = self.create_publisher(Image, "image", qos.sensor_qos())
        self._proprio_pub = self.create_publisher(JointState, "proprio", qos.sensor_qos())
        self._instr_pub = self.create_publisher(String, "instruction", qos.instruction_qos())
        self._result_pub = self.create_publisher(
            EpisodeResult, "episode_result", qos.reliable_qos()
        )
        self._info_pub = self.create_publisher(String, "~/step_info", qos.reliable_qos())
        self._expert_pub = (
            self.create_publisher(AuraAction, self.p.expert_topic, qos.reliable_qos())
            if self.p.expert_topic
            else None
        )
        self._seen = False
        self.create_subscription(
            AuraAction, self.p.action_topic, self._on_action, qos.reliable_qos()
        )
        self._reset_cli = (
            self.create_client(Trigger, self.p.reset_service)
            if self.p.reset_service and self.p.reset_between_episodes
            else None
        )
        self.episode = -1
        self.done = False
        self.results: list[dict] = []
        self._obs: SimObs | None = None
        self._pending_stamp: tuple[int, int] | None = None
        self._deadline = 0.0
        self._steps = 0
        self._return = 0.0
        self._seed = 0
        self._started = time.monotonic()
        self._waiting_reset = None
        self.retransmits = 0
        self.safe_actions = 0
        self._timer = self.create_timer(0.01, self._on_timer)

    # ---------------------------------------------------------------- episode flow
    def _ready(self) -> bool:
        """Start only once the policy listens: frames sent earlier would be lost."""
        if self._image_pub.get_subscription_count() == 0:
            return False
        if self.count_publishers(self.p.action_topic) == 0:
            return False
        if self.p.wait_for_observer and (
            self._info_pub.get_subscription_count() == 0
            or self._result_pub.get_subscription_count() == 0
        ):
            return False
        return self._reset_cli is None or self._reset_cli.service_is_ready()

    def _begin_episode(self) -> None:
        self.episode += 1
        if self.p.episodes and self.episode >= self.p.episodes:
            self.done = True
            return
        self._seed = self.p.seed_offset + self.episode
        obs_dict, _ = self.env.reset(seed=self._seed)
        self._obs = to_sim_obs(obs_dict)
        self._steps, self._return = 0, 0.0
        self._seen = cue_visible(self.env)
        if self.episode == 0:
            self._instr_pub.publish(String(data=self._obs.instruction))
        if self._reset_cli is not None:
            self._waiting_reset = self._reset_cli.call_async(Trigger.Request())
            self._deadline = time.monotonic() + self.p.action_timeout_s
        else:
            self._publish_obs()

    def _publish_obs(self) -> None:
        assert self._obs is not None
        # Joint state and frame carry the same stamp (a node may pair them by it); the joint
        # state goes first because the node pairs each frame with the newest one it holds.
        stamp = self.get_clock().now().to_msg()
        js = JointState(name=["heading"], position=[self._obs.heading_rad])
        js.header.stamp = stamp
        self._proprio_pub.publish(js)
        if self.p.proprio_lead_s:
            time.sleep(self.p.proprio_lead_s)
        self._image_pub.publish(rgb_to_image(self._obs.image, stamp=stamp, frame_id="camera"))
        self._pending_stamp = (stamp.sec, stamp.nanosec)
        self._deadline = time.monotonic() + self.p.action_timeout_s
        if self._expert_pub is not None:
            onehot = np.zeros(NUM_ACTIONS, dtype=np.float32)
            onehot[expert_action(self.env, self._seen)] = 1.0
            msg = AuraAction(
                action=onehot.tolist(), chunk_size=1, action_dim=NUM_ACTIONS, step=self._steps
            )
            msg.header.stamp = stamp
            self._expert_pub.publish(msg)

    def _on_timer(self) -> None:
        if self.done:
            return
        if self.episode < 0:
            if self._ready():
                self._begin_episode()
            elif time.monotonic() - self._started > self.p.startup_timeout_s:
                self.get_logger().error("no policy listening; giving up")
                self.done = True
            return
        if self._waiting_reset is not None:
            if self._waiting_reset.done() or time.monotonic() > self._deadline:
                if not self._waiting_reset.done():
                    self.get_logger().warning("memory reset call timed out; continuing")
                self._waiting_reset = None
                self._publish_obs()
            return
        if self._pending_stamp is not None and time.monotonic() > self._deadline:
            self.retransmits += 1
            self._publish_obs()

    def _on_action(self, msg: AuraAction) -> None:
        if msg.is_safe_action:
            # A stop command: its zero "logits" name no action (argmax would say action 0).
            self.safe_actions += 1
            self.get_logger().info("safe action received: the policy stopped; holding still")
            return
        if self._pending_stamp != (msg.header.stamp.sec, msg.header.stamp.nanosec):
            return  # an answer to a frame we re-sent or to another episode
        self._pending_stamp = None
        action = int(np.argmax(np.asarray(msg.action, dtype=np.float32)))
        visible = cue_visible(self.env)  # ground truth for the frame the action answers
        obs_dict, reward, terminated, truncated, _ = self.env.step(action)
        self._return += float(reward)
        info = {
            "episode": self.episode,
            "seed": self._seed,
            "step": self._steps,
            "action": action,
            "wrote": bool(msg.wrote),
            "cue_visible": visible,
            "cue": "key" if cue_is_key(self.env) else "ball",  # what this episode's cue is
        }
        self._info_pub.publish(String(data=json.dumps(info)))
        self._steps += 1
        if terminated or truncated or self._steps >= self.p.max_steps:
            self._finish_episode(success=bool(terminated and reward > 0))
        else:
            self._obs = to_sim_obs(obs_dict)
            self._seen = self._seen or cue_visible(self.env)
            self._publish_obs()

    def _finish_episode(self, success: bool) -> None:
        msg = EpisodeResult(
            episode=self.episode,
            seed=self._seed,
            success=success,
            steps=self._steps,
            episode_return=self._return,
            env_id=self.p.env_id,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._result_pub.publish(msg)
        self.results.append(
            {"episode": self.episode, "seed": self._seed, "success": success, "steps": self._steps}
        )
        self.get_logger().info(
            f"episode {self.episode} seed {self._seed}: "
            f"{'success' if success else 'failure'} in {self._steps} steps"
        )
        self._begin_episode()


def main(argv: list[str] | None = None) -> int:
    exit_if_help(
        sys.argv if argv is None else argv,
        "minigrid_sim",
        __doc__.split("\n\n")[0].replace("`", ""),
        ((f.name, f.default, "") for f in dataclasses.fields(SimParams)),
    )
    rclpy.init(args=argv)
    node = MiniGridSimNode()
    try:
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.05)
        # Let the last EpisodeResult leave before the process goes away.
        end = time.monotonic() + 0.5
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
