"""``make train-default``: reproduce every shipped MiniGrid weight from scratch.

    python -m aura_mem_dev.training.train_default [--out aura_mem_ros/models/mini]

1. the frozen ``mini`` policy (BC + DAgger, no memory)   -> OUT/model.safetensors, config.json
2. the AURA layer on top (closed-loop DAgger, budget)    -> OUT/aura/
3. the always-write KV-cache baseline arm               -> OUT/kv/
and OUT/train_report.json (timings, per-round statistics). Fixed seeds, one CPU thread.
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
    args = parser.parse_args(argv)
    # One thread: the machine is shared, and single-threaded float math is reproducible.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    from aura_mem_dev.training.aura_dagger import AuraTrainConfig, save_trained, train_aura
    from aura_mem_dev.training.backbone import train_backbone
    from aura_mem_dev.training.kv_train import train_kv
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.kv import save_kv

    out: Path = args.out
    report: dict = {}
    t0 = time.time()
    if not args.skip_backbone:
        report["backbone"] = train_backbone(out)
        report["backbone_seconds"] = round(time.time() - t0, 1)
    t1 = time.time()
    acfg = AuraTrainConfig()
    layer, meta, data = train_aura(out, acfg)
    save_trained(layer, out / "aura", meta)
    report["aura"] = meta["history"]
    report["aura_seconds"] = round(time.time() - t1, 1)
    t2 = time.time()
    kv, kv_meta = train_kv(MiniBackbone(out), data, list(acfg.env_ids))
    save_kv(kv, out / "kv")
    report["kv"] = kv_meta
    report["kv_seconds"] = round(time.time() - t2, 1)
    report["total_seconds"] = round(time.time() - t0, 1)
    (out / "train_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"trained in {report['total_seconds']} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
