"""Every installed tool works from a plain shell, outside the source tree: after `make setup`,
`source .venv/setup.sh` (the README's one line) is all the environment they need, and their
shebangs name the venv's python, so even a tool run by path without it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VENV = Path(sys.prefix)
TOOLS = (
    "aura_mem_node",
    "minigrid_sim",
    "arm_sim",
    "aura-mem-record",
    "aura-mem-eval",
    "aura-mem-train",
    "aura-mem-bench",  # the development command (make setup writes it; CMake does not)
)

pytestmark = pytest.mark.skipif(
    not (VENV / "setup.sh").is_file(), reason="not running from the .venv that make setup built"
)


def _clean_shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` in sh with an empty environment (env -i) but HOME, from ``cwd``."""
    return subprocess.run(
        ["env", "-i", f"HOME={cwd}", "/bin/sh", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_help_after_sourcing_the_setup_file(tool: str, tmp_path: Path) -> None:
    result = _clean_shell(f'. "{VENV}/setup.sh" && command -v {tool} && {tool} --help', tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    path, _, text = result.stdout.partition("\n")
    assert Path(path) == VENV / "bin" / tool
    assert text.startswith("usage:"), text[:500]


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_shebang_is_the_venvs_python(tool: str, tmp_path: Path) -> None:
    script = VENV / "bin" / tool
    assert script.read_text().splitlines()[0] == f"#!{VENV}/bin/python"
    result = _clean_shell(f'"{script}" --help', tmp_path)  # no setup.sh, bare PATH
    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_harness_finds_the_shipped_params_outside_the_tree(tmp_path: Path) -> None:
    """The node the benchmarks start reads config/aura_mem.yaml wherever they run from."""
    code = (
        "from aura_mem_dev.faults.harness import DEFAULT_PARAMS_FILE as p; "
        "assert p.name == 'aura_mem.yaml' and p.is_file(), p; print(p)"
    )
    result = _clean_shell(f'. "{VENV}/setup.sh" && python -c "{code}"', tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
