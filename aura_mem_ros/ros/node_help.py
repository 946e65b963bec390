"""``--help`` for the ROS node executables (``aura_mem_node``, ``minigrid_sim``, ``arm_sim``).

A ROS node takes its settings as parameters after ``--ros-args``, which argparse cannot
describe; this prints what the node is and every parameter with its default, and exits
before ROS starts. Other (non-ROS) arguments are left alone, as rclpy leaves them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rclpy.utilities import remove_ros_args


def exit_if_help(
    argv: Sequence[str], prog: str, description: str, params: Iterable[tuple[str, Any, str]]
) -> None:
    """Print usage and the ``(name, default, description)`` parameters and exit 0 when
    ``argv`` (as ``sys.argv``: program name first) asks for help outside ``--ros-args``."""
    lines = [
        "parameters (--ros-args -p NAME:=VALUE, or --ros-args --params-file FILE.yaml):",
        *(
            f"  {name} = {json.dumps(default)}" + (f"\n      {text}" if text else "")
            for name, default, text in params
        ),
    ]
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} [-h] [--ros-args [-p NAME:=VALUE ...] [--params-file FILE] ...]",
        description=description,
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_known_args(remove_ros_args(list(argv))[1:])  # exits on -h / --help
