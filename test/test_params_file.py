"""Parameters load from a YAML file with --ros-args --params-file (no ros2 CLI needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ros_harness import REPO_ROOT, subprocess_env

YAML = """\
param_dump:
  ros__parameters:
    backbone: mini
    write_budget: 0.25
    action_low: [-0.5, -2.0]
"""


def run_dump(tmp_path: Path, ros_domain_id: int, *extra: str) -> subprocess.CompletedProcess[str]:
    params = tmp_path / "params.yaml"
    params.write_text(YAML)
    cmd = [sys.executable, "test/param_dump_node.py", "--ros-args", "--params-file", str(params)]
    return subprocess.run(
        [*cmd, *extra],
        cwd=REPO_ROOT,
        env=subprocess_env(ros_domain_id),
        capture_output=True,
        text=True,
        timeout=60,
    )


def parse(out: str) -> dict:
    line = next(line for line in out.splitlines() if line.startswith("PARAMS "))
    return json.loads(line.removeprefix("PARAMS "))


def test_params_file_is_loaded(tmp_path: Path, ros_domain_id: int) -> None:
    result = run_dump(tmp_path, ros_domain_id)
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout) == {
        "backbone": "mini",
        "write_budget": 0.25,
        "action_low": [-0.5, -2.0],
    }


def test_command_line_overrides_file(tmp_path: Path, ros_domain_id: int) -> None:
    result = run_dump(tmp_path, ros_domain_id, "-p", "write_budget:=0.5")
    assert result.returncode == 0, result.stderr
    assert parse(result.stdout)["write_budget"] == 0.5


def test_out_of_range_value_is_refused(tmp_path: Path, ros_domain_id: int) -> None:
    result = run_dump(tmp_path, ros_domain_id, "-p", "write_budget:=2.0")
    assert result.returncode != 0
    assert "write_budget" in result.stderr + result.stdout
