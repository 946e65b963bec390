#!/usr/bin/env python3
"""``make bench-never-reset``: regenerate docs/results/never_reset.md (+ never_reset.json).

    python scripts/never_reset_report.py                        # 500 episodes, 100k-step soak
    python scripts/never_reset_report.py --resume               # continue a stopped run
    python scripts/never_reset_report.py --aura-checkpoint DIR  # another AURA layer
    python scripts/never_reset_report.py --render-only          # markdown from the JSON

Runs the matched reset / never-reset closed-loop panels on S13, S11 and the mixed stream and
the never-reset soak (``aura_mem_dev/bench/never_reset.py``); the markdown is rendered only
from the JSON (``aura_mem_dev/report/never_reset.py``), so every number has a command behind it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aura_mem_dev.bench.never_reset import STREAMS, NeverResetRun, run_all  # noqa: E402
from aura_mem_dev.report.never_reset import render_markdown  # noqa: E402
from aura_mem_dev.training.seeds import EVAL_SEED_BASE  # noqa: E402
from aura_mem_ros.backbones.base import bundled_layer_dir  # noqa: E402
from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--episodes", type=int, default=500, help="per arm and panel")
    ap.add_argument("--soak-steps", type=int, default=100_000, help="0 = no soak")
    ap.add_argument("--soak-window", type=int, default=10_000)
    ap.add_argument("--soak-max-seconds", type=float, default=None, help="time box of the soak")
    ap.add_argument("--streams", default=",".join(STREAMS), help="comma-separated")
    ap.add_argument("--seed-offset", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--model-dir", default=None, help="default: the shipped models/mini")
    ap.add_argument(
        "--aura-checkpoint",
        default=None,
        help="default: the layer reset_policy: never serves, <model-dir>/aura_never_reset "
        "where it ships, else <model-dir>/aura",
    )
    ap.add_argument("--kv-checkpoint", default=None, help="default: <model-dir>/kv")
    ap.add_argument("--resume", action="store_true", help="keep finished parts of --json")
    ap.add_argument("--render-only", action="store_true")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "results" / "never_reset.json")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "never_reset.md")
    args = ap.parse_args(argv)
    if args.aura_checkpoint is None:
        model_dir = Path(args.model_dir) if args.model_dir else DEFAULT_MODEL_DIR
        args.aura_checkpoint = bundled_layer_dir(model_dir, never_reset=True)
    if args.render_only:
        run = NeverResetRun.from_dict(json.loads(args.json.read_text()))
    else:
        run = run_all(
            args.json,
            episodes=args.episodes,
            soak_steps=args.soak_steps,
            soak_window=args.soak_window,
            streams=tuple(s.strip() for s in args.streams.split(",") if s.strip()),
            seed_offset=args.seed_offset,
            model_dir=args.model_dir,
            aura_checkpoint=args.aura_checkpoint,
            kv_checkpoint=args.kv_checkpoint,
            soak_max_seconds=args.soak_max_seconds,
            resume=args.resume,
            command=" ".join(["python scripts/never_reset_report.py", *sys.argv[1:]]),
        )
    args.out.write_text(render_markdown(run))
    print(f"wrote {args.out} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
