"""``python -m aura_mem_dev.faults.node_with_faults --ros-args ...``: the real node entry point
with the fault-injection backbone (``faulty_mini``) registered. Everything else is unchanged."""

from __future__ import annotations

import sys

import aura_mem_dev.faults.backbone  # noqa: F401 - registers "faulty_mini"
from aura_mem_ros.node import main

if __name__ == "__main__":
    sys.exit(main())
