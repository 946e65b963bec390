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

``driver`` says whose action the simulator executes: ``policy`` (default) the answer's
argmax; ``expert`` the simulator's own expert (the action it publishes on ``expert/action``
for that frame) or, with probability ``explore``, a uniformly random move (turn left, turn
right, forward) from an RNG seeded by the episode's seed. The lock step is unchanged (each
frame still waits for the policy's answer, which is then only recorded), and the
``expert/action`` label stays the expert's action: this records training bags whose data no
trained memory shaped (a base policy alone rarely turns back to look at the cue), with
``explore`` covering off-expert states as a policy's own mistakes would.

A frame that gets no action within ``action_timeout_s`` is re-sent with a new stamp (best
effort camera QoS may drop it). ``~/step_info`` (std_msgs/String, JSON) carries per-step
ground truth (cue visibility, the expert's action) for the demo's plot and the bag recorder's
bookkeeping; the policy never subscribes to it.
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
    FORWARD,
    LEFT,
    NUM_ACTIONS,
    RIGHT,
    SimObs,
    cue_is_key,
    cue_visible,
    make_env,
    to_sim_obs,
)
from aura_mem_ros.sim.expert import expert_action
from aura_mem_ros.sim.lockstep import LockStepParams, LockStepSim, run_sim

DRIVERS = ("policy", "expert")
RANDOM_MOVES = (LEFT, RIGHT, FORWARD)  # explore's choices (pickup/drop/toggle/done: no-ops)


@dataclass(frozen=True)
class SimParams(LockStepParams):
    env_id: str = "MiniGrid-MemoryS13-v0"
    max_steps: int = 100
    # Whose action is executed: "policy" (the answer on action_topic) or "expert" (the
    # simulator's expert; the policy's answer still paces the lock step and is recorded).
    driver: str = "policy"
    # driver "expert" only: probability of a uniformly random move instead of the expert's
    # (the expert/action label stays the expert's). RNG seeded by the episode's seed.
    explore: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps <= 0:
            raise ValueError("max_steps > 0 required")
        if self.driver not in DRIVERS:
            raise ValueError(f"driver must be one of {DRIVERS}, got {self.driver!r}")
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore must be in [0, 1], got {self.explore}")
        if self.explore > 0 and self.driver != "expert":
            raise ValueError("explore > 0 requires driver 'expert' (the policy drives itself)")


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
        self._explore_rng = np.random.default_rng(0)

    def _reset_env(self, seed: int) -> str:
        self._seed = seed
        # Per episode, so an episode's random moves depend on its seed alone.
        self._explore_rng = np.random.default_rng(seed)
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
        policy_action = int(np.argmax(np.asarray(msg.action, dtype=np.float32)))
        expert = expert_action(self.env, self._seen)  # the frame's expert/action label
        action = self._driven_action(policy_action, expert)
        visible = cue_visible(self.env)  # ground truth for the frame the action answers
        obs_dict, reward, terminated, truncated, _ = self.env.step(action)
        self._return += float(reward)
        info = {
            "episode": self.episode,
            "seed": self._seed,
            "step": self._steps,
            "action": action,  # executed
            "policy_action": policy_action,
            "expert_action": expert,
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

    def _driven_action(self, policy_action: int, expert: int) -> int:
        """The action executed for this step, by ``driver`` (one RNG draw per step)."""
        if self.p.driver == "policy":
            return policy_action
        if self.p.explore > 0 and self._explore_rng.random() < self.p.explore:
            return int(self._explore_rng.choice(RANDOM_MOVES))
        return expert

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
