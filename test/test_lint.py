"""ruff (configured in pyproject.toml) is clean over the whole repository."""

from __future__ import annotations

import shutil
import subprocess

from ros_harness import REPO_ROOT


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is installed by `make setup`"
    result = subprocess.run(
        [ruff, "check", "--no-cache", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
