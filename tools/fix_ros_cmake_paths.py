"""Point the ros-* wheels' exported CMake files at this venv's Python and numpy headers.

The wheels were built in a manylinux image and their rosidl_generator_py exports still name
that image's paths (/opt/python/cp311-cp311/...); CMake generation of any package with
msg/ fails until they are rewritten. Idempotent: a second run changes nothing.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

WHEEL_PYTHON_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
WHEEL_NUMPY_INCLUDE = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def main(prefix: str) -> int:
    replacements = {
        WHEEL_NUMPY_INCLUDE: numpy.get_include(),
        WHEEL_PYTHON_INCLUDE: sysconfig.get_paths()["include"],
    }
    changed = 0
    for cmake_file in Path(prefix, "share").glob("*/cmake/*.cmake"):
        text = cmake_file.read_text()
        new_text = text
        # numpy's path contains the python prefix, so replace the longer one first.
        for old, new in replacements.items():
            new_text = new_text.replace(old, new)
        if new_text != text:
            cmake_file.write_text(new_text)
            changed += 1
    print(f"fix_ros_cmake_paths: rewrote {changed} CMake file(s) under {prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix))
