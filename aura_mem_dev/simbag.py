"""Write a training bag from the MiniGrid simulation without ROS running.

The bag has exactly the topics a robot recording for ``aura-mem-train`` has: the camera
(``/image``, 56x56 rgb8), ``/instruction``, ``/proprio`` (JointState, position = [heading
rad], the mini backbone's convention), the action that should have been taken on
``/expert/action`` (AuraAction: one-hot over the 7 MiniGrid actions, header.stamp = the
image's stamp), and ``/episode_result`` after each episode. Messages are serialised with
rosbags from the same .msg definitions, so the bag is the one ``minigrid_sim`` +
``aura-mem-record`` would give, minus DDS.

    python -m aura_mem_dev.simbag OUT_BAG --episodes 40 --env MiniGrid-MemoryS7-v0
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from aura_mem_ros.bags.types import make_typestore
from aura_mem_ros.bags.writer import SplitBagWriter, TopicSpec

EXPERT_TOPIC = "/expert/action"
START_NS = 1_800_000_000 * 10**9


def write_sim_bag(
    out: str | Path,
    episodes: int = 40,
    env_id: str = "MiniGrid-MemoryS7-v0",
    seed: int = 0,
    explore: float = 0.1,
    max_steps: int = 60,
    rate_hz: float = 10.0,
) -> dict[str, int]:
    """Expert-labelled episodes. ``explore``: fraction of steps where a random action is taken
    instead (still labelled with the expert's), so the data covers off-expert states as a
    policy's own mistakes would."""
    from aura_mem_ros.sim.env import cue_visible, make_env, to_sim_obs
    from aura_mem_ros.sim.expert import expert_action

    ts = make_typestore()
    types = {
        "/image": "sensor_msgs/msg/Image",
        "/instruction": "std_msgs/msg/String",
        "/proprio": "sensor_msgs/msg/JointState",
        EXPERT_TOPIC: "aura_mem_ros/msg/AuraAction",
        "/episode_result": "aura_mem_ros/msg/EpisodeResult",
    }
    writer = SplitBagWriter(out, flush_interval_s=10.0)
    for topic, msgtype in types.items():
        writer.add_topic(
            TopicSpec(
                topic,
                msgtype,
                ts.generate_msgdef(msgtype, ros_version=2)[0],
                ts.hash_rihs01(msgtype),
            )
        )
    types_ = ts.types
    rng = random.Random(seed)
    env = make_env(env_id)
    period_ns = int(1e9 / rate_hz)
    t_ns = START_NS
    instruction = None
    counts = {"episodes": 0, "steps": 0}

    def write(topic: str, msg: object) -> None:
        writer.write(topic, t_ns, bytes(ts.serialize_cdr(msg, types[topic])))

    for ep in range(episodes):
        obs_dict, _ = env.reset(seed=seed * 100_000 + ep)
        seen = cue_visible(env)
        success, steps, ret = False, 0, 0.0
        for _ in range(max_steps):
            obs = to_sim_obs(obs_dict)
            stamp = types_["builtin_interfaces/msg/Time"](t_ns // 10**9, t_ns % 10**9)
            header = types_["std_msgs/msg/Header"](stamp, "camera")
            if obs.instruction != instruction:
                instruction = obs.instruction
                write("/instruction", types_["std_msgs/msg/String"](instruction))
            h, w, _ = obs.image.shape
            # Robot state first, then the frame: the node pairs a frame with the newest state.
            write(
                "/proprio",
                types_["sensor_msgs/msg/JointState"](
                    header, ["heading"], np.array([obs.heading_rad]), np.zeros(0), np.zeros(0)
                ),
            )
            write(
                "/image",
                types_["sensor_msgs/msg/Image"](
                    header, h, w, "rgb8", 0, w * 3, obs.image.reshape(-1).copy()
                ),
            )
            target = expert_action(env, seen)
            onehot = np.zeros(7, np.float32)
            onehot[target] = 1.0
            write(
                EXPERT_TOPIC,
                types_["aura_mem_ros/msg/AuraAction"](
                    header, onehot, 1, 7, False, 0.0, counts["steps"], 0.0, False
                ),
            )
            action = rng.randrange(3) if rng.random() < explore else target
            obs_dict, reward, terminated, truncated, _ = env.step(action)
            seen = seen or cue_visible(env)
            steps += 1
            counts["steps"] += 1
            ret += float(reward)
            t_ns += period_ns
            if terminated or truncated:
                success = reward > 0
                break
        stamp = types_["builtin_interfaces/msg/Time"](t_ns // 10**9, t_ns % 10**9)
        write(
            "/episode_result",
            types_["aura_mem_ros/msg/EpisodeResult"](
                types_["std_msgs/msg/Header"](stamp, ""),
                ep,
                seed * 100_000 + ep,
                success,
                steps,
                ret,
                env_id,
            ),
        )
        counts["episodes"] += 1
        t_ns += 5 * period_ns
    writer.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--env", default="MiniGrid-MemoryS7-v0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explore", type=float, default=0.1)
    args = p.parse_args(argv)
    counts = write_sim_bag(args.out, args.episodes, args.env, args.seed, args.explore)
    print(f"{args.out}: {counts['episodes']} episodes, {counts['steps']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
