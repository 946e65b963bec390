#!/usr/bin/env python3
"""``make bench-scale``: regenerate docs/results/scale.md (+ scale.json).

    python scripts/bench_scale.py [--episodes 24] [--bags 4] [--quick]

Closed-loop sweep wall time on local Ray clusters of 1 and 2 CPUs (against this process),
feature-extraction throughput with 1 and 2 actors, and a second ``aura-mem-train`` run that
reads every bag from the feature cache. ``aura_mem_dev/scale/bench.py`` measures,
``aura_mem_dev/report/scale.py`` renders. Run it on a quiet machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aura_mem_dev.scale.bench import main

if __name__ == "__main__":
    sys.exit(main())
