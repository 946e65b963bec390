"""The split the architecture promises: core, backbones, persistence and training work
without ROS (importing them never pulls in rclpy)."""

from __future__ import annotations

import subprocess
import sys

from ros_harness import REPO_ROOT

ROS_FREE = [
    "aura_mem_ros.core.memory",
    "aura_mem_ros.core.aura",
    "aura_mem_ros.core.train",
    "aura_mem_ros.core.runtime",
    "aura_mem_ros.core.checkpoint",
    "aura_mem_ros.core.baselines",
    "aura_mem_dev.bench.synthetic_task",
    "aura_mem_ros.backbones.mini",
    "aura_mem_ros.backbones.toy",
    "aura_mem_ros.persistence",
    "aura_mem_dev.training.memory_fit",
]


def test_ros_free_modules_do_not_import_rclpy() -> None:
    # One fresh interpreter; after each import, check whether ROS came in and name the culprit.
    code = (
        "import sys, importlib\n"
        f"for name in {ROS_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    bad = sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy')\n"
        "    if bad:\n"
        "        sys.exit(f'{name} pulled in {bad[:5]}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
