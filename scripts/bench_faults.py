#!/usr/bin/env python3
"""`make bench-faults`: run every fault scenario against the node and regenerate
docs/results/reliability.md and reliability.json (every row and its named checks).

    python scripts/bench_faults.py                   # ~3-5 min: 20 node kills, 200 crash kills
    python scripts/bench_faults.py --quick           # few repeats
    python scripts/bench_faults.py --only kill9_node,crash_points
Exit status 1 when any row fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aura_mem_dev.bench import faults  # noqa: E402


def main(argv: list[str]) -> int:
    if "--md" not in argv:
        argv += ["--md", str(REPO / "docs" / "results" / "reliability.md")]
    if "--out" not in argv:
        argv += ["--out", str(REPO / "docs" / "results" / "reliability.json")]
    return faults.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
