"""The layering the architecture promises (docs/ARCHITECTURE.md):

- the product (aura_mem_ros) never imports the development package (aura_mem_dev), which is
  not installed on a robot: checked statically over every product module, and by running
  the main entry points' imports;
- core, backbones, persistence and the serving spec work without ROS (never pull in rclpy).
"""

from __future__ import annotations

import ast
import subprocess
import sys

from ros_harness import REPO_ROOT

PRODUCT = REPO_ROOT / "aura_mem_ros"
DEV = "aura_mem_dev"

ROS_FREE = [
    *(f"aura_mem_ros.core.{p.stem}" for p in sorted((PRODUCT / "core").glob("[a-z]*.py"))),
    "aura_mem_ros.backbones",
    "aura_mem_ros.backbones.mini",
    "aura_mem_ros.backbones.toy",
    "aura_mem_ros.backbones.openvla_oft",
    "aura_mem_ros.persistence",
    # the node's rules, kept apart from its wiring (ros/aura_node.py)
    "aura_mem_ros.ros.pipeline",
    "aura_mem_ros.ros.stats",
    "aura_mem_ros.ros.freshness",
    "aura_mem_ros.ros.frame_rate",
    "aura_mem_ros.ros.worker",
    "aura_mem_ros.ros.topics",
    "aura_mem_ros.reset_policy",
    "aura_mem_ros.serving",
    "aura_mem_ros.validation",
    "aura_mem_dev.bench.synthetic_task",
    "aura_mem_dev.training.recipes",
]

# What users run (console scripts, the demo) and what they load by name.
ENTRY_POINTS = [
    "aura_mem_ros.node",
    "aura_mem_ros.ros.aura_node",
    "aura_mem_ros.sim.node",
    "aura_mem_ros.bags.record",
    "aura_mem_ros.eval.cli",
    "aura_mem_ros.eval.replay",
    "aura_mem_ros.retrain.cli",
    "aura_mem_ros.demo.runner",
    "aura_mem_ros.serving",
]


def _names_of_dev(tree: ast.AST) -> list[str]:
    """Imports of aura_mem_dev, and any string naming it (importlib, ``python -m``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == DEV]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == DEV:
            found.append(node.module or "")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [w for w in node.value.split() if w.startswith(DEV + ".")]
    return found


def test_no_product_module_imports_the_development_package() -> None:
    modules = sorted(PRODUCT.rglob("*.py"))
    assert len(modules) > 40  # the walk really covers the package
    offenders = {
        str(p.relative_to(REPO_ROOT)): names
        for p in modules
        if (names := _names_of_dev(ast.parse(p.read_text(), str(p))))
    }
    assert not offenders, offenders


def _fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )


def test_entry_points_run_without_the_development_package() -> None:
    # Every entry point imported, and a backbone built by name the way the node does it.
    code = (
        "import sys, importlib\n"
        f"for name in {ENTRY_POINTS!r}:\n"
        "    importlib.import_module(name)\n"
        "from aura_mem_ros.serving import ServingSpec\n"
        "spec = ServingSpec('mini', aura_checkpoint='bundled')\n"
        "spec.build_runtime(spec.build_backbone())\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] == {DEV!r})\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    result = _fresh_interpreter(code)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


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
    result = _fresh_interpreter(code)
    assert result.returncode == 0, result.stderr[-2000:]
