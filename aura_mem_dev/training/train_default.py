"""``make train-default``: reproduce every shipped MiniGrid weight from scratch.

    python -m aura_mem_dev.training.train_default [--out aura_mem_ros/models/mini]

1. the frozen ``mini`` policy (BC + DAgger, no memory)        -> OUT/model.safetensors
2. the AURA layer on top (``recipes.train_aura_dagger``: expert action labels, closed-loop
   DAgger, counterfactual gate, NO oracle schedule)            -> OUT/aura/
3. the always-write KV-cache arm, same trainer, same data      -> OUT/kv/
4. the AURA layer ``reset_policy: never`` serves (``recipes.train_never_reset``, from
   scratch on streams of consecutive episodes, ``recipes.NEVER_RESET_RECIPE``; skip it with
   ``--skip-never-reset``, or run it alone with ``--only-never-reset``)
                                                               -> OUT/aura_never_reset/
and OUT/train_report.json (timings, DAgger rounds, validations). Fixed seeds, one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from aura_mem_ros.backbones.base import NEVER_RESET_AURA_DIR
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
    parser.add_argument("--skip-kv", action="store_true", help="skip the KV-cache arm")
    parser.add_argument(
        "--skip-never-reset", action="store_true", help="skip the never-reset layer (step 4)"
    )
    parser.add_argument(
        "--only-never-reset", action="store_true", help="run step 4 alone, on OUT's backbone"
    )
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
    if args.only_never_reset:
        return _never_reset_stage(out, report, t0, args.seed)
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
    if not args.skip_never_reset:
        return _never_reset_stage(out, report, t0, args.seed)
    return _finish(out, report, t0)


def _never_reset_stage(out: Path, report: dict, t0: float, seed: int = 0) -> int:
    """Step 4: OUT/aura_never_reset (its own record beside the weights), on OUT's backbone,
    or the shipped one when OUT holds none (``--only-never-reset --out /tmp/nr``)."""
    from aura_mem_dev.training.recipes import NEVER_RESET_RECIPE, train_never_reset
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.checkpoint import save_aura

    t3 = time.time()
    has_backbone = (out / "model.safetensors").is_file()
    recipe = dataclasses.replace(NEVER_RESET_RECIPE, seed=seed)
    layer, record = train_never_reset(
        MiniBackbone(out if has_backbone else DEFAULT_MODEL_DIR), recipe
    )
    save_aura(layer, out / NEVER_RESET_AURA_DIR)
    (out / NEVER_RESET_AURA_DIR / "train_meta.json").write_text(
        json.dumps(record, indent=1, default=str) + "\n"
    )
    report["never_reset_seconds"] = round(time.time() - t3, 1)
    return _finish(out, report, t0)


def _finish(out: Path, report: dict, t0: float) -> int:
    report["total_seconds"] = round(time.time() - t0, 1)
    name = "train_report.json" if "aura" in report else "train_report_never_reset.json"
    (out / name).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"trained in {report['total_seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
