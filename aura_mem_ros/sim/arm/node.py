"""``arm_sim``: the MuJoCo arm memory task behind ROS topics, a stand-in for a LIBERO robot.

It offers what a robot driver offers (camera, joint state, task string, a memory-reset call
at the start of a task), so the ``aura_mem`` node cannot tell it from a robot. Lock-step
protocol per chunk request:

    publish  proprio     sensor_msgs/JointState, 8 joints (eef xyz, eef axis-angle, fingers)
    publish  image       sensor_msgs/Image rgb8 SxS (third-person camera), stamp S
    receive  action      AuraAction with header.stamp == S: an 8 x 7 chunk of end-effector
                         deltas; its first ``execute_steps`` actions run open loop
    on episode end publish EpisodeResult (success = block on the cued pad; episode_return =
    1.0 when the block ended on ANY pad, i.e. the manipulation was completed), reset with
    the next seed, call the reset service (unless ``reset_between_episodes`` is false or
    ``reset_service`` empty: never-reset, the episodes are one long run for the memory).

A chunk of the wrong shape or with NaN/inf is refused (logged, nothing executed) and the
frame is re-sent after ``action_timeout_s``, as is a frame that got no answer (best-effort
camera QoS may drop it). ``~/step_info`` (std_msgs/String, JSON, one per chunk) carries
ground truth (cue / flicker visible) for the demo's picture; the policy never reads it.
``expert_topic`` carries the scripted expert's chunk for each frame (for bags and offline
evaluation), never read by the policy either.
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
from aura_mem_ros.sim.arm.env import ACTION_DIM, PROPRIO_NAMES, ArmEnv, ArmObs, ArmTaskConfig
from aura_mem_ros.sim.arm.expert import expert_chunk
from aura_mem_ros.sim.arm.loop import CHUNK_SIZE

ENV_ID = "AuraArmPads-v0"


@dataclass(frozen=True)
class ArmSimParams:
    episodes: int = 10  # 0 = run until shut down
    seed_offset: int = 1_000_000
    image_size: int = 64
    max_steps: int = 400
    execute_steps: int = CHUNK_SIZE  # actions of each chunk executed before the next frame
    cue_mode: str = "flash"
    action_topic: str = "aura_mem/action"
    reset_service: str = "aura_mem/reset_memory"  # empty: memory is never reset
    # false: never call reset_service (memory carries over from episode to episode)
    reset_between_episodes: bool = True
    action_timeout_s: float = 2.0
    proprio_lead_s: float = 0.02
    startup_timeout_s: float = 60.0
    expert_topic: str = "expert/action"  # empty: not published
    wait_for_observer: bool = False  # also wait for ~/step_info and episode_result readers

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.max_steps <= 0 or self.image_size <= 0:
            raise ValueError("episodes >= 0, max_steps > 0 and image_size > 0 required")
        if not 1 <= self.execute_steps <= CHUNK_SIZE:
            raise ValueError(f"execute_steps must lie in [1, {CHUNK_SIZE}]")
        if self.action_timeout_s <= 0 or self.proprio_lead_s < 0:
            raise ValueError("action_timeout_s > 0 and proprio_lead_s >= 0 required")

    def task(self) -> ArmTaskConfig:
        return ArmTaskConfig(
            image_size=self.image_size, max_steps=self.max_steps, cue_mode=self.cue_mode
        )


class ArmSimNode(Node):
    def __init__(
        self,
        name: str = "arm_sim",
        *,
        context: Context | None = None,
        defaults: ArmSimParams | None = None,
    ) -> None:
        super().__init__(name, context=context)
        defaults = defaults or ArmSimParams()
        values = {
            f: self.declare_parameter(f, getattr(defaults, f)).value
            for f in ArmSimParams.__dataclass_fields__
        }
        self.p = ArmSimParams(**values)
        self.env = ArmEnv(self.p.task())
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
        self.refused = 0
        self.safe_actions = 0  # stop commands received (never executed)
        self.retransmits = 0
        self._obs: ArmObs | None = None
        self._chunk_index = 0
        self._pending_stamp: tuple[int, int] | None = None
        self._deadline = 0.0
        self._started = time.monotonic()
        self._waiting_reset = None
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
        self._obs = self.env.reset(self.p.seed_offset + self.episode)
        self._chunk_index = 0
        if self.episode == 0:
            self._instr_pub.publish(String(data=self._obs.instruction))
        if self._reset_cli is not None:
            self._waiting_reset = self._reset_cli.call_async(Trigger.Request())
            self._deadline = time.monotonic() + self.p.action_timeout_s
        else:
            self._publish_obs()

    def _publish_obs(self) -> None:
        assert self._obs is not None and self._obs.image is not None
        # Joint state first, same stamp: the node pairs each frame with the newest joint
        # state it holds (or the one whose stamp matches).
        stamp = self.get_clock().now().to_msg()
        js = JointState(name=list(PROPRIO_NAMES), position=self._obs.proprio.tolist())
        js.header.stamp = stamp
        self._proprio_pub.publish(js)
        if self.p.proprio_lead_s:
            time.sleep(self.p.proprio_lead_s)
        self._image_pub.publish(rgb_to_image(self._obs.image, stamp=stamp, frame_id="camera"))
        self._pending_stamp = (stamp.sec, stamp.nanosec)
        self._deadline = time.monotonic() + self.p.action_timeout_s
        if self._expert_pub is not None:
            chunk = expert_chunk(self.env, CHUNK_SIZE)
            msg = AuraAction(
                action=chunk.reshape(-1).tolist(),
                chunk_size=CHUNK_SIZE,
                action_dim=ACTION_DIM,
                step=self._chunk_index,
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

    def _chunk_of(self, msg: AuraAction) -> np.ndarray | None:
        values = np.asarray(msg.action, dtype=np.float32)
        rows = int(msg.chunk_size)
        if (
            int(msg.action_dim) != ACTION_DIM
            or rows < 1
            or values.size != rows * ACTION_DIM
            or not np.all(np.isfinite(values))
        ):
            self.refused += 1
            self.get_logger().error(
                f"refused action: need a finite chunk of N x {ACTION_DIM}, got "
                f"{values.size} values as {msg.chunk_size} x {msg.action_dim}; nothing executed"
            )
            return None
        return values.reshape(rows, ACTION_DIM)

    def _on_action(self, msg: AuraAction) -> None:
        if msg.is_safe_action:
            # The policy stopped: hold the arm where it is and execute nothing of the message,
            # whatever its values (the frame is re-sent after the timeout if the node resumes).
            self.safe_actions += 1
            self.get_logger().info("safe action received: the policy stopped; holding still")
            return
        if self._pending_stamp != (msg.header.stamp.sec, msg.header.stamp.nanosec):
            return  # an answer to a frame we re-sent or to another episode
        chunk = self._chunk_of(msg)
        if chunk is None:
            return  # the frame is re-sent after the timeout
        self._pending_stamp = None
        env = self.env
        info = {
            "episode": self.episode,
            "seed": env.state.seed,
            "chunk": self._chunk_index,
            "step": env.state.t,
            "wrote": bool(msg.wrote),
            "write_prob": float(msg.write_prob),
            "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],  # the frame answered
            "cue_visible": env.cue_visible(),
            "flicker_visible": env.flicker_visible(),
            "cue_pad": env.state.cue_pad,
        }
        for action in chunk[: self.p.execute_steps]:
            env.step(action)
            if env.state.done:
                break
        self._chunk_index += 1
        info["done"] = env.state.done
        info["placed_pad"] = env.state.placed_pad
        self._info_pub.publish(String(data=json.dumps(info)))
        if env.state.done:
            self._finish_episode()
        else:
            self._obs = env.observe(render=True)
            self._publish_obs()

    def _finish_episode(self) -> None:
        s = self.env.state
        success = s.placed_pad == s.cue_pad
        completed = s.placed_pad is not None
        msg = EpisodeResult(
            episode=self.episode,
            seed=s.seed,
            success=success,
            steps=s.t,
            episode_return=1.0 if completed else 0.0,
            env_id=ENV_ID,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._result_pub.publish(msg)
        self.results.append(
            {
                "episode": self.episode,
                "seed": s.seed,
                "success": success,
                "completed": completed,
                "cue_pad": s.cue_pad,
                "placed_pad": s.placed_pad,
                "steps": s.t,
            }
        )
        self.get_logger().info(
            f"episode {self.episode} seed {s.seed}: cue pad {s.cue_pad}, block on "
            f"{'no pad' if s.placed_pad is None else f'pad {s.placed_pad}'} after {s.t} steps "
            f"-> {'success' if success else 'failure'}"
        )
        self._begin_episode()


def main(argv: list[str] | None = None) -> int:
    exit_if_help(
        sys.argv if argv is None else argv,
        "arm_sim",
        __doc__.split("\n\n")[0].replace("`", ""),
        ((f.name, f.default, "") for f in dataclasses.fields(ArmSimParams)),
    )
    rclpy.init(args=argv)
    node = ArmSimNode()
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
        node.env.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
