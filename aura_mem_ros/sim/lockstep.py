"""What every simulator bridge shares: the lock-step protocol a robot driver would speak.

Per control step the bridge publishes a joint state and a camera frame with one stamp S,
then waits for the ``AuraAction`` stamped S and executes it. Around that:

- start only once the policy listens (frames sent earlier would be lost);
- at the start of each episode call the memory-reset service, unless never-reset;
- re-send a frame (new stamp) that got no answer within ``action_timeout_s``;
- never execute an action marked ``is_safe_action`` (the policy stopped: hold still);
- publish ``EpisodeResult`` at each episode end, then begin the next seed.

A simulator subclasses ``LockStepSim`` and says only what is its own: how an episode starts
(``_reset_env``), what a frame shows (``_publish_obs`` through ``_publish_frame``), how an
action is executed (``_execute``). Its parameter dataclass extends ``LockStepParams``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.context import Context
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from aura_mem_ros.msg import AuraAction, EpisodeResult
from aura_mem_ros.ros import qos
from aura_mem_ros.ros.image_conversion import rgb_to_image
from aura_mem_ros.ros.node_help import exit_if_help


@dataclass(frozen=True)
class LockStepParams:
    episodes: int = 20  # 0 = run until shut down
    seed_offset: int = 1_000_000
    action_topic: str = "aura_mem/action"
    reset_service: str = "aura_mem/reset_memory"  # empty: memory is never reset
    # false: never call reset_service (memory carries over from episode to episode)
    reset_between_episodes: bool = True
    action_timeout_s: float = 2.0
    proprio_lead_s: float = 0.02
    startup_timeout_s: float = 60.0
    # The expert's action for each frame (AuraAction, stamp = the frame's), for bag recording
    # and offline evaluation; empty = not published. The policy never reads it.
    expert_topic: str = "expert/action"
    # Also wait for a subscriber on ~/step_info and episode_result before the first
    # episode (the demo's observer), so no step of episode 0 goes unrecorded.
    wait_for_observer: bool = False

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError("episodes >= 0 required")
        if self.action_timeout_s <= 0 or self.proprio_lead_s < 0:
            raise ValueError("action_timeout_s > 0 and proprio_lead_s >= 0 required")


class LockStepSim(Node):
    """The protocol; subclasses implement ``_reset_env``, ``_publish_obs`` and ``_execute``."""

    def __init__(
        self, name: str, params_type: type, defaults: Any, context: Context | None
    ) -> None:
        super().__init__(name, context=context)
        values = {
            f.name: self.declare_parameter(f.name, getattr(defaults, f.name)).value
            for f in dataclasses.fields(params_type)
        }
        self.p = params_type(**values)
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
        self.retransmits = 0
        self.safe_actions = 0  # stop commands received (never executed)
        self._pending_stamp: tuple[int, int] | None = None
        self._deadline = 0.0
        self._started = time.monotonic()
        self._waiting_reset = None
        self._timer = self.create_timer(0.01, self._on_timer)

    # ------------------------------------------------------------ what a simulator says
    def _reset_env(self, seed: int) -> str:
        """Start the episode with ``seed``; return the task instruction."""
        raise NotImplementedError

    def _publish_obs(self) -> None:
        """Publish the current frame (``_publish_frame``) and, if wanted, the expert's action."""
        raise NotImplementedError

    def _execute(self, msg: AuraAction) -> None:
        """Execute the action answering the pending frame, then ``_publish_obs`` or
        ``_finish_episode``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the protocol
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
        instruction = self._reset_env(self.p.seed_offset + self.episode)
        if self.episode == 0:
            self._instr_pub.publish(String(data=instruction))
        if self._reset_cli is not None:
            self._waiting_reset = self._reset_cli.call_async(Trigger.Request())
            self._deadline = time.monotonic() + self.p.action_timeout_s
        else:
            self._publish_obs()

    def _publish_frame(
        self, image: np.ndarray, joint_names: Sequence[str], positions: Sequence[float]
    ) -> Time:
        """Joint state first, then the frame, with one stamp (the node pairs each frame with
        the joint state of its stamp, or the newest it holds); the frame becomes pending."""
        stamp = self.get_clock().now().to_msg()
        js = JointState(name=list(joint_names), position=[float(x) for x in positions])
        js.header.stamp = stamp
        self._proprio_pub.publish(js)
        if self.p.proprio_lead_s:
            time.sleep(self.p.proprio_lead_s)
        self._image_pub.publish(rgb_to_image(image, stamp=stamp, frame_id="camera"))
        self._pending_stamp = (stamp.sec, stamp.nanosec)
        self._deadline = time.monotonic() + self.p.action_timeout_s
        return stamp

    def _publish_expert(self, msg: AuraAction, stamp: Time) -> None:
        if self._expert_pub is not None:
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
            # The policy stopped: hold still and execute nothing of the message, whatever its
            # values (the frame is re-sent after the timeout if the node resumes).
            self.safe_actions += 1
            self.get_logger().info("safe action received: the policy stopped; holding still")
            return
        if self._pending_stamp != (msg.header.stamp.sec, msg.header.stamp.nanosec):
            return  # an answer to a frame we re-sent or to another episode
        self._execute(msg)

    def _publish_result(self, msg: EpisodeResult, record: dict[str, Any], line: str) -> None:
        """Publish one episode's result, keep its record, log it, begin the next episode."""
        msg.header.stamp = self.get_clock().now().to_msg()
        self._result_pub.publish(msg)
        self.results.append(record)
        self.get_logger().info(line)
        self._begin_episode()


def run_sim(
    argv: list[str] | None,
    name: str,
    doc: str,
    params_type: type,
    make_node: Callable[[], LockStepSim],
    close: Callable[[LockStepSim], None] = lambda node: None,
) -> int:
    """A simulator's ``main``: ``--help``, spin until its episodes are done, let the last
    EpisodeResult leave, shut down."""
    exit_if_help(
        sys.argv if argv is None else argv,
        name,
        doc.split("\n\n")[0].replace("`", ""),
        ((f.name, f.default, "") for f in dataclasses.fields(params_type)),
    )
    rclpy.init(args=argv)
    node = make_node()
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
        close(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
