#!/usr/bin/env python3
"""``make bench-closed-loop``: regenerate docs/results/closed_loop.md (S13 and S11 + AIS).

    python scripts/closed_loop_report.py [--episodes 200] [--seed-offset 1000000]

Runs the in-process closed-loop panel (``aura-mem-bench closed-loop``) on MiniGrid-MemoryS13
and S11, writes their JSON next to the markdown, and instantiates the AIS value-loss bound on
S13; ``aura_mem_dev/report/closed_loop.py`` renders the report (and checks the targets).
Evaluation seeds are disjoint from all training seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aura_mem_dev.bench.closed_loop import run_panel  # noqa: E402
from aura_mem_dev.report import closed_loop as report  # noqa: E402
from aura_mem_dev.training.seeds import EVAL_SEED_BASE  # noqa: E402

ENVS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed-offset", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "closed_loop.md")
    ap.add_argument("--skip-ais", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    panels = []
    for env_id in ENVS:
        panel = run_panel(env_id, args.episodes, args.seed_offset)
        json_path = args.out.parent / report.json_name(env_id)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(panel.to_dict(), indent=2) + "\n")
        print(env_id, *report.arm_table(panel), "", sep="\n", flush=True)
        panels.append(panel)
    ais = None if args.skip_ais else _ais_bound(args.seed_offset)
    text = report.render_markdown(panels, _training_lines(), ais, EVAL_SEED_BASE, time.time() - t0)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


def _training_lines() -> list[str]:
    from aura_mem_dev.training.recipes import DaggerRecipe
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR

    path = DEFAULT_MODEL_DIR / "train_report.json"
    train_report = json.loads(path.read_text()) if path.is_file() else None
    return report.method_lines(DaggerRecipe(), train_report)


def _ais_bound(seed_offset: int):  # -> AISResult
    from aura_mem_dev.training.ais_bound import ais_bound
    from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR
    from aura_mem_ros.core.checkpoint import load_aura

    layer = load_aura(DEFAULT_MODEL_DIR / "aura")
    base = seed_offset + 100_000  # disjoint from the panel's seeds too
    return ais_bound(
        layer,
        "MiniGrid-MemoryS13-v0",
        list(range(base, base + 300)),
        list(range(base + 300, base + 400)),
    )


if __name__ == "__main__":
    sys.exit(main())
