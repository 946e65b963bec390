"""The package also builds the way a ROS 2 workspace builds it (colcon + CMake install), declares
every ROS package it imports, and `colcon test` runs this suite."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ros_harness import REPO_ROOT

# Inside `colcon test` this suite must not start another colcon build of itself.
UNDER_COLCON = os.environ.get("AURA_MEM_COLCON_TEST") == "1"
# Imported by the launch file, which only runs on full ROS installs (no wheels here).
LAUNCH_PACKAGES = {"launch", "launch_ros", "ament_index_python"}


def _declared(*tags: str) -> set[str]:
    root = ET.parse(REPO_ROOT / "package.xml").getroot()
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


def _ros_imports(paths: list[Path]) -> set[str]:
    """Top-level modules imported by ``paths`` that are ROS packages (share/<pkg>/package.xml
    in this install prefix), plus the launch file's launch packages."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    share = Path(sys.prefix) / "share"
    ros = {n for n in names if (share / n / "package.xml").is_file()}
    return (ros | (names & LAUNCH_PACKAGES)) - {"aura_mem_ros"}


def test_package_xml_declares_every_ros_package_the_product_imports() -> None:
    product = [
        p
        for p in (REPO_ROOT / "aura_mem_ros").rglob("*.py")
        if p.relative_to(REPO_ROOT / "aura_mem_ros").parts[0] not in ("bench", "faults")
    ]
    product += list((REPO_ROOT / "launch").glob("*.py"))
    imported = _ros_imports(product)
    # rclpy.lifecycle loads lifecycle_msgs; messages need their runtime.
    imported |= {"lifecycle_msgs", "rosidl_default_runtime"}
    assert {"rclpy", "launch", "launch_ros", "rcl_interfaces", "builtin_interfaces"} <= imported
    missing = imported - _declared("depend", "exec_depend")
    assert not missing, f"package.xml lacks exec_depend for {sorted(missing)}"
    tests = _ros_imports(list((REPO_ROOT / "test").glob("*.py")))
    missing_test = tests - _declared("depend", "exec_depend", "test_depend")
    assert not missing_test, f"package.xml lacks test_depend for {sorted(missing_test)}"
    assert "ament_cmake_pytest" in _declared("test_depend")


def test_cmake_registers_the_pytest_suite_for_colcon_test() -> None:
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert "find_package(ament_cmake_pytest REQUIRED)" in cmake
    assert "ament_add_pytest_test(aura_mem_pytest test" in cmake


@pytest.mark.slow
@pytest.mark.skipif(UNDER_COLCON, reason="running inside `colcon test` already")
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


@pytest.mark.slow
@pytest.mark.skipif(UNDER_COLCON, reason="running inside `colcon test` already")
def test_colcon_test_runs_the_pytest_suite(tmp_path: Path) -> None:
    """colcon build with BUILD_TESTING=ON, then `colcon test`: ctest runs pytest over test/
    (a small subset here via PYTEST_ADDOPTS; the registration is what is being checked)."""
    colcon = Path(sys.executable).with_name("colcon")
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "aura_mem_ros").symlink_to(REPO_ROOT)
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix, "CMAKE_PREFIX_PATH": sys.prefix}
    build = subprocess.run(
        [
            str(colcon),
            "build",
            "--base-paths",
            "src",
            "--cmake-args",
            "-DBUILD_TESTING=ON",
            f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    env["PYTEST_ADDOPTS"] = "-k 'cdr_serialisation or documented_fields' -p no:cacheprovider"
    test = subprocess.run(
        [str(colcon), "test", "--base-paths", "src"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    results = ws / "build" / "aura_mem_ros" / "test_results" / "aura_mem_ros"
    xunit = ET.parse(results / "aura_mem_pytest.xunit.xml").getroot()
    suite = xunit if xunit.tag == "testsuite" else xunit.find("testsuite")
    assert int(suite.get("tests")) >= 2, ET.tostring(suite)[:500]
    assert int(suite.get("failures")) == 0 and int(suite.get("errors")) == 0
