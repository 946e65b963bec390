"""``make train-default``: reproduce every shipped MiniGrid weight from scratch.

    python -m aura_mem_dev.training.train_default [--out aura_mem_ros/models/mini]

1. the frozen ``mini`` policy (BC + DAgger, no memory)        -> OUT/model.safetensors
2. the AURA layer on top (``recipes.train_aura_dagger``: expert action labels, closed-loop
   DAgger, counterfactual gate, NO oracle schedule)            -> OUT/aura/
3. the always-write KV-cache arm, same trainer, same data      -> OUT/kv/
and OUT/train_report.json (timings, DAgger rounds, validations). Fixed seeds, one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument(
        "--skip-backbone",
        action="store_true",
        help="keep OUT's backbone, retrain only the memory layers",
    )
    parser.add_argument("--skip-kv", action="store_true", help="train the AURA layer only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # One thread: the machine is shared, and single-threaded float math is reproducible.
    torch.set_num_threads(1)

    from aura_mem_dev.training.backbone import train_backbone
    from aura_mem_dev.training.recipes import DaggerRecipe, train_aura_dagger, train_kv_dagger
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.checkpoint import save_aura
    from aura_mem_ros.core.kv import save_kv

    out: Path = args.out
    report: dict = {
        "command": "python -m aura_mem_dev.training.train_default "
        + " ".join(sys.argv[1:] if argv is None else argv)
    }
    t0 = time.time()
    if not args.skip_backbone:
        report["backbone"] = train_backbone(out)
        report["backbone_seconds"] = round(time.time() - t0, 1)
    recipe = DaggerRecipe(seed=args.seed)
    backbone = MiniBackbone(out)
    t1 = time.time()
    layer, aura_record, data = train_aura_dagger(backbone, recipe)
    save_aura(layer, out / "aura")
    (out / "aura" / "train_meta.json").write_text(
        json.dumps(aura_record, indent=1, default=str) + "\n"
    )
    report["aura"] = aura_record
    report["aura_seconds"] = round(time.time() - t1, 1)
    if not args.skip_kv:
        t2 = time.time()
        kv, kv_record = train_kv_dagger(backbone, data, recipe)
        save_kv(kv, out / "kv")
        report["kv"] = kv_record
        report["kv_seconds"] = round(time.time() - t2, 1)
    report["total_seconds"] = round(time.time() - t0, 1)
    (out / "train_report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"trained in {report['total_seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
