"""A training bag recorded over ROS (``aura_mem_dev/rosbag_record.py``): minigrid_sim with its
expert driving, the aura_mem node serving the base policy, aura-mem-record, three processes
over DDS; aura-mem-train's data path must find the episodes and the expert's targets."""

from __future__ import annotations

import numpy as np
import pytest

from aura_mem_dev.rosbag_record import record_bag_over_ros
from aura_mem_ros.bags.read import node_parameters
from aura_mem_ros.retrain.cli import build_parser
from aura_mem_ros.retrain.features import load_training_data

pytestmark = [pytest.mark.timeout(120), pytest.mark.multiprocess]


def test_expert_driven_bag_recorded_over_ros_trains(tmp_path, ros_domain_id) -> None:
    bag = tmp_path / "bag"
    counts = record_bag_over_ros(
        bag,
        "MiniGrid-MemoryS7-v0",
        episodes=3,
        seed_offset=700_000,
        explore=0.0,
        domain_id=ros_domain_id,
        timeout_s=100,
    )
    # The expert drove every step (no exploration asked), so every episode succeeds.
    assert counts["episodes"] == 3 and counts["successes"] == 3, counts
    assert counts["off_expert_steps"] == 0 and counts["steps"] > 0, counts
    recorded = counts["recorded"]
    # Each step's frame and the expert's label, recorded from the first step on, and the
    # node's answers (the base policy's, which paced the lock step).
    assert recorded["/image"] >= counts["steps"], counts
    assert recorded["/expert/action"] >= counts["steps"], counts
    assert recorded["/aura_mem/action"] >= counts["steps"], counts
    assert recorded["/episode_result"] == 3, counts
    params = node_parameters(bag)
    assert params is not None and params["gate"] == "never" and params["backbone"] == "mini"

    # aura-mem-train's data path, backbone from the bag's node parameters.
    args = build_parser().parse_args(
        ["--bags", str(bag), "--out", str(tmp_path / "unused"), "--quiet"]
    )
    args.feature_cache = "none"
    data = load_training_data(args)
    episodes = data.episodes()
    assert data.target_topic == "/expert/action"
    assert len(episodes) == 3
    assert sum(len(e) for e in episodes) == counts["steps"]
    for e in episodes:  # one-hot targets, as the simulator's expert publishes them
        targets = np.stack(e.targets).reshape(len(e), -1)
        assert targets.shape[1] == 7 and np.all(targets.sum(axis=1) == 1.0)
