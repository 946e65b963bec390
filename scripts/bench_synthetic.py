#!/usr/bin/env python3
"""Regenerate docs/results/synthetic.md: run the synthetic benchmark per config, then render.

    python scripts/bench_synthetic.py                  # 3 configs x 3 seeds, then render
    python scripts/bench_synthetic.py --render-only    # re-render from the JSON files
    python scripts/bench_synthetic.py --configs easy --seeds 1 --quick
    python scripts/bench_synthetic.py --configs stream --seeds 1   # the never-reset config

Each config's JSON lands in docs/results/synthetic_<config>.json (what
``aura-mem-bench synthetic --config <config> --seeds N --out ...`` writes); the markdown is
rendered only from those files (``aura_mem_dev/report/synthetic.py``), every config whose
file exists, so every number in it has a command behind it and running one config keeps the
others' sections.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "docs" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="easy,medium,hard")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        from aura_mem_dev.bench.cli import main as bench

        for config in configs:
            out = args.out_dir / f"synthetic_{config}.json"
            cmd = ["synthetic", "--config", config, "--seeds", str(args.seeds), "--out", str(out)]
            if args.quick:
                cmd.append("--quick")
            if bench(cmd) != 0:
                return 1
    from aura_mem_dev.bench.synthetic import ALL_CONFIGS, SyntheticRun
    from aura_mem_dev.report.synthetic import render_markdown

    runs = []
    for config in ALL_CONFIGS:
        path = args.out_dir / f"synthetic_{config}.json"
        if path.is_file():
            runs.append(SyntheticRun.from_dict(json.loads(path.read_text())))
        elif config in configs:
            print(f"missing {path}: run without --render-only first", file=sys.stderr)
    if not runs:
        return 1
    (args.out_dir / "synthetic.md").write_text(render_markdown(runs) + "\n")
    print(f"wrote {args.out_dir / 'synthetic.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
