"""Run ``launch/aura_mem.launch.py`` without ROS's ``launch`` packages (no wheels of them here).

``launch_description(**arguments)`` executes the real file's ``generate_launch_description()``
against small stand-ins for ``launch`` / ``launch_ros`` that only record their arguments, then
resolves the ``LaunchConfiguration`` substitutions the way ``ros2 launch`` would for those
arguments: what comes back is the node's package, executable, name, namespace, parameter
files and remaps. ``ros_args(...)`` turns that into the command-line a launch would give the
node, so tests and the fault table start the node exactly as the launch file wires it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO_ROOT / "launch" / "aura_mem.launch.py"


class _Recorded:
    """Stand-in for a launch action or substitution: keeps its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorded):
    pass


class DeclareLaunchArgument(_Recorded):
    pass


class LaunchNode(_Recorded):
    pass


class LaunchDescription(_Recorded):
    pass


@dataclass(frozen=True)
class Launched:
    package: str
    executable: str
    name: str
    namespace: str
    parameters: list[str]
    remaps: list[tuple[str, str]]
    arguments: dict[str, str]  # every declared argument with the value used

    def ros_args(self) -> list[str]:
        """``--ros-args -r __ns:=... -r src:=dst ...`` as ``ros2 launch`` passes them."""
        out = ["--ros-args"]
        if self.namespace:
            out += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for src, dst in self.remaps:
            out += ["-r", f"{src}:={dst}"]
        return out

    def absolute(self, name: str) -> str:
        """Where a remap target ends up (relative names resolve in the namespace)."""
        if name.startswith("/"):
            return name
        ns = self.namespace.strip("/")
        return f"/{ns}/{name}" if ns else f"/{name}"

    def topic_of(self, input_name: str) -> str:
        return self.absolute(dict(self.remaps)[input_name])


@contextlib.contextmanager
def _stubbed_launch_modules() -> Iterator[None]:
    modules = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].Node = LaunchNode
    saved = {name: sys.modules.get(name) for name in modules}
    saved_prefix = os.environ.get("AMENT_PREFIX_PATH")
    sys.modules.update(modules)
    if not saved_prefix:
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix  # the venv is the install prefix here
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if not saved_prefix:
            os.environ.pop("AMENT_PREFIX_PATH", None)


def launch_description(launch_file: Path = LAUNCH_FILE, **arguments: str) -> Launched:
    with _stubbed_launch_modules():
        spec = importlib.util.spec_from_file_location("aura_mem_launch", launch_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
    actions = description.args[0]
    declared = {
        a.args[0]: a.kwargs["default_value"]
        for a in actions
        if isinstance(a, DeclareLaunchArgument)
    }
    unknown = set(arguments) - set(declared)
    if unknown:
        raise ValueError(f"no such launch argument: {sorted(unknown)}")
    values = {**declared, **arguments}

    def resolve(value: Any) -> str:
        if isinstance(value, LaunchConfiguration):
            return values[value.args[0]]
        if isinstance(value, list):
            return "".join(resolve(v) for v in value)
        return str(value)

    nodes = [a for a in actions if isinstance(a, LaunchNode)]
    if len(nodes) != 1:
        raise ValueError(f"expected one Node in the launch file, found {len(nodes)}")
    kw = nodes[0].kwargs
    return Launched(
        package=kw["package"],
        executable=kw["executable"],
        name=kw["name"],
        namespace=resolve(kw.get("namespace", "")),
        parameters=[resolve(p) for p in kw.get("parameters", [])],
        remaps=[(resolve(a), resolve(b)) for a, b in kw.get("remappings", [])],
        arguments=values,
    )
