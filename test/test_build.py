"""The package also builds the way a ROS 2 workspace builds it: colcon + CMake install."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ros_harness import REPO_ROOT


@pytest.mark.slow
def test_colcon_build_installs_messages_and_executables() -> None:
    assert shutil.which("make")
    result = subprocess.run(
        ["make", "--no-print-directory", "colcon-check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "colcon build OK" in result.stdout
