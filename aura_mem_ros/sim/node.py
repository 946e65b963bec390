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

import json
import sys
from dataclasses import dataclass

import numpy as np
from rclpy.context import Context
from std_msgs.msg import String

from aura_mem_ros.msg import AuraAction, EpisodeResult
from aura_mem_ros.sim.env import (
    NUM_ACTIONS,
    SimObs,
    cue_is_key,
    cue_visible,
    make_env,
    to_sim_obs,
)
from aura_mem_ros.sim.expert import expert_action
from aura_mem_ros.sim.lockstep import LockStepParams, LockStepSim, run_sim


@dataclass(frozen=True)
class SimParams(LockStepParams):
    env_id: str = "MiniGrid-MemoryS13-v0"
    max_steps: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps <= 0:
            raise ValueError("max_steps > 0 required")


class MiniGridSimNode(LockStepSim):
    def __init__(
        self,
        name: str = "minigrid_sim",
        *,
        context: Context | None = None,
        defaults: SimParams | None = None,
    ) -> None:
        super().__init__(name, SimParams, defaults or SimParams(), context)
        self.env = make_env(self.p.env_id)
        self._obs: SimObs | None = None
        self._seen = False  # the cue has been in view this episode (the expert's memory)
        self._steps = 0
        self._return = 0.0
        self._seed = 0

    def _reset_env(self, seed: int) -> str:
        self._seed = seed
        obs_dict, _ = self.env.reset(seed=seed)
        self._obs = to_sim_obs(obs_dict)
        self._steps, self._return = 0, 0.0
        self._seen = cue_visible(self.env)
        return self._obs.instruction

    def _publish_obs(self) -> None:
        assert self._obs is not None
        stamp = self._publish_frame(self._obs.image, ["heading"], [self._obs.heading_rad])
        if self._expert_pub is not None:
            onehot = np.zeros(NUM_ACTIONS, dtype=np.float32)
            onehot[expert_action(self.env, self._seen)] = 1.0
            msg = AuraAction(
                action=onehot.tolist(), chunk_size=1, action_dim=NUM_ACTIONS, step=self._steps
            )
            self._publish_expert(msg, stamp)

    def _execute(self, msg: AuraAction) -> None:
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
        self._publish_result(
            EpisodeResult(
                episode=self.episode,
                seed=self._seed,
                success=success,
                steps=self._steps,
                episode_return=self._return,
                env_id=self.p.env_id,
            ),
            {"episode": self.episode, "seed": self._seed, "success": success, "steps": self._steps},
            f"episode {self.episode} seed {self._seed}: "
            f"{'success' if success else 'failure'} in {self._steps} steps",
        )


def main(argv: list[str] | None = None) -> int:
    return run_sim(argv, "minigrid_sim", __doc__, SimParams, MiniGridSimNode)


if __name__ == "__main__":
    sys.exit(main())
