"""GPU check of the openvla_oft path: the tiny real-architecture checkpoint in bf16 on CUDA,
through the node's own rclpy-free path, with per-step latency of backbone and AURA layer.

What it does (see README.md beside this file for the command and the wheels it needs):
1. rebuilds the OFT fork of transformers from the installed 4.40.1 + the fork's patch (a
   scratch copy first on sys.path; ``--installed-transformers`` uses the installed one as is,
   e.g. on a robot that has the fork), before anything imports transformers;
2. builds the tiny checkpoint (aura_mem_dev/oft/tiny_checkpoint.py), or takes ``--model-dir``;
3. loads it with ``make_backbone("openvla_oft", device=..., dtype=...)`` and the node's
   ``build_runtime`` + ``AuraPipeline`` (learned gate, untrained layer), exactly what the
   node's configure builds, minus rclpy;
4. serves ``--warmup`` + ``--steps`` observations (4 different camera pairs, cycled),
   timing ``backbone.step`` and ``runtime.select_action`` inside ``pipeline.step``;
5. checks: actions finite and of shape (8, 7); different images give different actions;
   the backbone's features are a tensor on the device; every AURA parameter, buffer and
   memory tensor is on the device (no host round trip per step); then prints one JSON object.

Exit code 0 only if every check passed. Runs on CPU too (``--device cpu``), which is how the
test suite keeps it working.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_third_party(arg: str) -> Path:
    for c in (arg, os.environ.get("AURA_OFT_THIRD_PARTY", ""), REPO_ROOT / "shared" / "third_party",
              REPO_ROOT.parent / "shared" / "third_party"):  # fmt: skip
        if c and (Path(c) / "openvla-oft" / "prismatic").is_dir():
            return Path(c)
    sys.exit("no third_party/openvla-oft found: pass --third-party DIR (see README.md)")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "mean": round(float(a.mean()), 3),
        "n": int(a.size),
    }


def camera(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((*shape, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3, dtype=np.uint8)
    y, x = shape[0] // 4, shape[1] // 4
    img[y : 3 * y, x : 3 * x] = rng.integers(0, 256, (2 * y, 2 * x, 3), dtype=np.uint8)
    return img


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="auto", help="auto = bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--third-party", default="", help="folder with openvla-oft/ and the patch")
    p.add_argument("--model-dir", default="", help="an existing tiny checkpoint (else built)")
    p.add_argument("--workdir", default="", help="for the fork copy and the checkpoint")
    p.add_argument("--installed-transformers", action="store_true")
    p.add_argument("--out", default="", help="also write the JSON here")
    args = p.parse_args()

    tp = find_third_party(args.third_party)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="oft_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO_ROOT))
    if not args.installed_transformers:
        from aura_mem_dev.oft.fork import make_fork

        fork = make_fork(
            tp / "transformers-openvla-oft" / "bidirectional-attention.patch", work / "fork"
        )
        sys.path.insert(0, str(fork))  # before anything imports transformers

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    from aura_mem_dev.oft import tiny_checkpoint
    from aura_mem_ros.backbones import make_backbone
    from aura_mem_ros.ros.pipeline import AuraPipeline
    from aura_mem_ros.ros.stats import NodeStats
    from aura_mem_ros.serving import ActionClamp, ServingSpec

    upstream = str(tp / "openvla-oft")
    model_dir = Path(args.model_dir) if args.model_dir else work / "tiny-openvla-oft"
    t0 = time.perf_counter()
    if not args.model_dir:
        tiny_checkpoint.build(model_dir, upstream_dir=upstream)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with tiny_checkpoint.tiny_vision_towers():
        backbone = make_backbone(
            "openvla_oft",
            model_dir=str(model_dir),
            upstream_dir=upstream,
            device=args.device,
            dtype=args.dtype,
        )
    spec = ServingSpec("openvla_oft", aura_checkpoint="", gate="learned", seed=0, fused=True)
    runtime, model_id = spec.build_runtime(backbone)
    stats = NodeStats(window=max(args.steps, 1), warmup_steps=args.warmup)
    pipeline = AuraPipeline(
        backbone, runtime, model_id, stats, ActionClamp([], [], 7), log=lambda s: None
    )
    pipeline.set_instruction("put the black bowl in the bottom drawer")
    load_s = time.perf_counter() - t0

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    timings: dict[str, list[float]] = {"backbone": [], "aura": []}
    seen: dict[str, object] = {}

    def timed(name: str, fn):
        def call(*a, **k):
            sync()
            t = time.perf_counter()
            out = fn(*a, **k)
            sync()
            timings[name].append((time.perf_counter() - t) * 1e3)
            if name == "backbone":
                seen["features"] = out.features
            return out

        return call

    backbone.step = timed("backbone", backbone.step)
    runtime.select_action = timed("aura", runtime.select_action)
    frames = [(camera(s, (256, 256)), camera(50 + s, (256, 256))) for s in range(4)]
    proprio = np.linspace(-0.2, 0.2, 8).astype(np.float32)
    actions = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            timings = {"backbone": [], "aura": []}
        result = pipeline.step(frames[i % 4], proprio)
        actions.append(result.action)

    acts = np.stack(actions)
    feats = seen.get("features")
    dev = torch.device(args.device)
    aura_tensors = [*runtime.layer.parameters(), *runtime.layer.buffers(), *runtime._state]
    checks = {
        "actions_finite": bool(np.isfinite(acts).all()),
        "action_shape_8x7": acts.shape[1:] == (8, 7),
        "images_matter": bool(np.abs(acts[0, :, :-1] - acts[1, :, :-1]).max() > 1e-4)
        if len(acts) > 1
        else None,
        "features_on_device": dev.type == "cpu"
        or (isinstance(feats, torch.Tensor) and feats.device.type == dev.type),
        "aura_tensors_on_device": all(t.device.type == dev.type for t in aura_tensors),
    }
    import transformers

    report = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
        "dtype": str(backbone._c.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "transformers": f"{transformers.__version__} ({transformers.__file__})",
        "aura_step": runtime.step_path,
        "backbone_ms": percentiles(timings["backbone"]),
        "aura_ms": percentiles(timings["aura"]),
        "build_s": round(build_s, 1),
        "load_s": round(load_s, 1),
        "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if dev.type == "cuda"
        else None,
        "checks": checks,
        "describe": backbone.describe(),
        "steps": args.steps,
        "warmup": args.warmup,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    failed = [k for k, v in checks.items() if v is False]
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
