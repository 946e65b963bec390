#!/usr/bin/env python3
"""`make bench-serving-latency`: the node end to end with joint states at camera rate (224x224
and 640x480, shipped Fast DDS profile, 30 Hz for 60 s each); writes
docs/results/perf_serving.json and docs/results/perf_serving.md.

    python scripts/bench_serving_latency.py                          # ~3 min; a quiet machine
    python scripts/bench_serving_latency.py --seconds 5 --out /tmp/s.json --md /tmp/s.md  # smoke
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aura_mem_dev.bench import serving_latency  # noqa: E402


def main(argv: list[str]) -> int:
    if "--out" not in argv and "--render" not in argv:
        argv += ["--out", str(REPO / "docs" / "results" / "perf_serving.json")]
    if "--md" not in argv:
        argv += ["--md", str(REPO / "docs" / "results" / "perf_serving.md")]
    return serving_latency.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
