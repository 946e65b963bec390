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

import json
import sys
from dataclasses import dataclass

import numpy as np
from rclpy.context import Context
from std_msgs.msg import String

from aura_mem_ros.msg import AuraAction, EpisodeResult
from aura_mem_ros.sim.arm.env import ACTION_DIM, PROPRIO_NAMES, ArmEnv, ArmObs, ArmTaskConfig
from aura_mem_ros.sim.arm.expert import expert_chunk
from aura_mem_ros.sim.arm.loop import CHUNK_SIZE
from aura_mem_ros.sim.lockstep import LockStepParams, LockStepSim, run_sim

ENV_ID = "AuraArmPads-v0"


@dataclass(frozen=True)
class ArmSimParams(LockStepParams):
    episodes: int = 10  # 0 = run until shut down
    image_size: int = 64
    max_steps: int = 400
    execute_steps: int = CHUNK_SIZE  # actions of each chunk executed before the next frame
    cue_mode: str = "flash"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps <= 0 or self.image_size <= 0:
            raise ValueError("max_steps > 0 and image_size > 0 required")
        if not 1 <= self.execute_steps <= CHUNK_SIZE:
            raise ValueError(f"execute_steps must lie in [1, {CHUNK_SIZE}]")

    def task(self) -> ArmTaskConfig:
        return ArmTaskConfig(
            image_size=self.image_size, max_steps=self.max_steps, cue_mode=self.cue_mode
        )


class ArmSimNode(LockStepSim):
    def __init__(
        self,
        name: str = "arm_sim",
        *,
        context: Context | None = None,
        defaults: ArmSimParams | None = None,
    ) -> None:
        super().__init__(name, ArmSimParams, defaults or ArmSimParams(), context)
        self.env = ArmEnv(self.p.task())
        self.refused = 0
        self._obs: ArmObs | None = None
        self._chunk_index = 0

    def _reset_env(self, seed: int) -> str:
        self._obs = self.env.reset(seed)
        self._chunk_index = 0
        return self._obs.instruction

    def _publish_obs(self) -> None:
        assert self._obs is not None and self._obs.image is not None
        stamp = self._publish_frame(self._obs.image, PROPRIO_NAMES, self._obs.proprio.tolist())
        if self._expert_pub is not None:
            chunk = expert_chunk(self.env, CHUNK_SIZE)
            msg = AuraAction(
                action=chunk.reshape(-1).tolist(),
                chunk_size=CHUNK_SIZE,
                action_dim=ACTION_DIM,
                step=self._chunk_index,
            )
            self._publish_expert(msg, stamp)

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

    def _execute(self, msg: AuraAction) -> None:
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
        self._publish_result(
            EpisodeResult(
                episode=self.episode,
                seed=s.seed,
                success=success,
                steps=s.t,
                episode_return=1.0 if completed else 0.0,
                env_id=ENV_ID,
            ),
            {
                "episode": self.episode,
                "seed": s.seed,
                "success": success,
                "completed": completed,
                "cue_pad": s.cue_pad,
                "placed_pad": s.placed_pad,
                "steps": s.t,
            },
            f"episode {self.episode} seed {s.seed}: cue pad {s.cue_pad}, block on "
            f"{'no pad' if s.placed_pad is None else f'pad {s.placed_pad}'} after {s.t} steps "
            f"-> {'success' if success else 'failure'}",
        )


def main(argv: list[str] | None = None) -> int:
    return run_sim(
        argv, "arm_sim", __doc__, ArmSimParams, ArmSimNode, close=lambda node: node.env.close()
    )


if __name__ == "__main__":
    sys.exit(main())
