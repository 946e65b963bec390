"""``aura-mem-train --bags ... --out DIR``: fit the AURA layer for a backbone from recorded bags.

Data: camera frames + the action that should have been taken, on ``/teleop/action`` (or
``/expert/action``; AuraAction with header.stamp = the camera image's stamp). The frozen
backbone runs once per frame and its output is cached per bag (``retrain/features.py``: a
second run on the same bags skips it; ``--ray`` spreads the bags over a Ray cluster's GPUs or
CPUs). The AURA layer (memory, gate, residual head) is trained through time with core's
trainer under a write budget, validated on held-out episodes at the threshold that meets the
budget, and early-stopped on that validation error.

Output (what the node loads with ``-p aura_checkpoint:=DIR``): aura.safetensors,
aura_config.json (threshold calibrated to the budget), model_card.json, training_curve.png.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aura_mem_ros.eval.extract import Topics
from aura_mem_ros.retrain import features
from aura_mem_ros.retrain.data import Episode, to_batch, windows
from aura_mem_ros.retrain.features import TrainingData, load_training_data


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aura-mem-train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--bags", nargs="+", required=True)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--backbone", help="backbone name (default: the bag's node parameter)")
    p.add_argument("--backbone-args", help="JSON kwargs (default: the bag's backbone_args)")
    p.add_argument(
        "--target-topic",
        default="auto",
        help="AuraAction topic with the actions to learn (default: auto = "
        "/teleop/action, else /expert/action)",
    )
    p.add_argument("--image-topic", default=Topics.image)
    p.add_argument("--wrist-topic", default=Topics.wrist)
    p.add_argument("--instruction-topic", default=Topics.instruction)
    p.add_argument("--proprio-topic", default=Topics.proprio)
    p.add_argument("--episode-topic", default=Topics.episode)
    p.add_argument("--instruction", help="instruction before the first /instruction message")
    p.add_argument("--budget", type=float, default=0.1, help="write budget, writes/step")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--window", type=int, default=64, help="max steps per training sequence")
    p.add_argument(
        "--episode-gap", type=float, default=2.0, help="seconds without frames that end an episode"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-iterations", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--patience", type=int, default=4, help="evaluations without improvement")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--init", help="start from this checkpoint (fine-tune) instead of fresh")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    features.add_arguments(p)  # --feature-cache, --ray, --ray-workers
    return p


def _split(
    episodes: list[Episode], fraction: float, seed: int
) -> tuple[list[Episode], list[Episode]]:
    """Hold out whole episodes (a robot meets new episodes, not new steps of old ones)."""
    if len(episodes) < 2:
        raise ValueError(
            "need at least 2 episodes (EpisodeResult, instruction changes or gaps "
            "separate them) for a validation split"
        )
    order = list(range(len(episodes)))
    random.Random(seed).shuffle(order)
    n_val = min(len(episodes) - 1, max(1, round(fraction * len(episodes))))
    val = [episodes[i] for i in sorted(order[:n_val])]
    train = [episodes[i] for i in sorted(order[n_val:])]
    return train, val


def _metrics(layer: Any, batch: Any, threshold: float | None) -> dict[str, float]:
    from aura_mem_ros.core.train import evaluate

    m = evaluate(layer, batch, gate="learned", threshold=threshold)
    return {k: round(float(v), 6) for k, v in m.items()}


def train_from_bags(args: argparse.Namespace, data: TrainingData | None = None) -> dict[str, Any]:
    import torch

    from aura_mem_ros.core.aura import AuraLayer
    from aura_mem_ros.core.checkpoint import init_aura, load_aura, save_aura
    from aura_mem_ros.core.config import AuraConfig
    from aura_mem_ros.core.train import TrainConfig, calibrate_threshold, train_aura

    # The frozen backbone's output per frame, from the feature cache or computed (on Ray with
    # --ray); a training sweep passes it in, computed once for all its runs.
    if data is None:
        data = load_training_data(args)
    # Seeded after the data: whether (and where) the backbone was built must not change the run.
    torch.manual_seed(args.seed)
    backbone, target_topic = data.backbone, data.target_topic
    name, bb_args = backbone.name, backbone.args
    episodes = data.episodes()
    train_eps, val_eps = _split(episodes, args.val_fraction, args.seed)
    train_w = windows(train_eps, args.window)
    val_batch = to_batch(windows(val_eps, args.window), backbone.discrete)
    calib_batch = to_batch(train_w[:64], backbone.discrete)
    val_steps = sum(len(e) for e in val_eps)

    if args.init:
        layer = load_aura(args.init)
    else:
        layer = init_aura(
            AuraConfig.for_backbone(backbone, target_write_rate=args.budget), seed=args.seed
        )
    before = _metrics(layer, val_batch, None)
    rng = random.Random(args.seed)

    def batch_fn(_: int) -> Any:
        return to_batch(rng.sample(train_w, min(args.batch_size, len(train_w))), backbone.discrete)

    curve: list[dict[str, float]] = []
    best: tuple[float, dict[str, Any], float, int] | None = None
    # The starting layer at a threshold that meets the budget is the first candidate, so the
    # result is never worse on validation than what it started from (for a fresh layer: the
    # base policy, whose residual is zero whatever it writes).
    threshold0 = calibrate_threshold(layer, [calib_batch], args.budget, gate="learned")
    start = _metrics(layer, val_batch, threshold0)
    if start["write_rate"] <= args.budget + 1.0 / max(1, val_steps):
        best = (start["loss"], copy.deepcopy(layer.state_dict()), threshold0, 0)
    lam, since_best, done = 0.0, 0, 0
    # Phases as core's trainer defines them, over the whole run: no write price during the
    # first quarter, Bernoulli-explored writes for the first 70%, thresholded after.
    warmup_end, explore_end = 0.25 * args.max_iterations, 0.7 * args.max_iterations
    from tqdm import tqdm

    bar = tqdm(total=args.max_iterations, desc="train", disable=args.quiet)
    stopped_early = False
    while done < args.max_iterations:
        n = min(args.eval_every, args.max_iterations - done)
        cfg = TrainConfig(
            iterations=n,
            lr=args.lr,
            target_write_rate=args.budget,
            lambda_init=lam,
            budget_warmup=1.0 if done < warmup_end else 0.0,
            explore_fraction=1.0 if done < explore_end else 0.0,
            seed=args.seed + done,
        )
        result = train_aura(layer, batch_fn, cfg, gate="learned")
        lam = result.lagrange_multiplier
        done += n
        threshold = calibrate_threshold(layer, [calib_batch], args.budget, gate="learned")
        val = _metrics(layer, val_batch, threshold)
        curve.append(
            {
                "iteration": done,
                "train_loss": round(result.history[-1]["loss"], 6),
                "val_loss": val["loss"],
                "val_write_rate": val["write_rate"],
                "threshold": round(threshold, 6),
                "lambda": round(lam, 6),
            }
        )
        bar.update(n)
        bar.set_postfix(val_loss=f"{val['loss']:.4f}", writes=f"{val['write_rate']:.3f}")
        # Only a round that meets the budget on held-out episodes can be the result (one
        # write of slack: a threshold calibrated on training data transfers only roughly).
        meets = val["write_rate"] <= args.budget + 1.0 / max(1, val_steps)
        if meets and (best is None or val["loss"] < best[0] - 1e-5):
            best = (val["loss"], copy.deepcopy(layer.state_dict()), threshold, done)
            since_best = 0
        elif best is not None and done >= explore_end:
            # Patience only counts once training runs the deployed (thresholded) rollout.
            since_best += 1
            if since_best >= args.patience:
                stopped_early = True
                break
    bar.close()
    if best is None:
        raise ValueError(
            f"no evaluation met the budget of {args.budget} writes/step on the "
            f"validation episodes; train longer (--max-iterations) or raise it"
        )
    _, state, threshold, best_iteration = best
    config = dataclasses.replace(
        layer.config, threshold=float(threshold), target_write_rate=args.budget
    )
    final = AuraLayer(config)
    final.load_state_dict(state)
    final.eval()
    after = _metrics(final, val_batch, None)  # at the saved threshold, as the node runs it
    out = Path(args.out)
    save_aura(final, out)
    card = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "aura-mem-train " + " ".join(sys.argv[1:]),
        "backbone": {
            "name": name,
            "args": bb_args,
            "model_id": backbone.model_id(),
            "d_model": backbone.d_model,
            "chunk_size": backbone.chunk_size,
            "action_dim": backbone.action_dim,
            "discrete": backbone.discrete,
        },
        "data": {
            "bags": [str(b) for b in args.bags],
            "target_topic": target_topic,
            "image_topic": args.image_topic,
            "episodes": len(episodes),
            "train_episodes": len(train_eps),
            "val_episodes": len(val_eps),
            "train_steps": sum(len(e) for e in train_eps),
            "val_steps": sum(len(e) for e in val_eps),
            "window": args.window,
            "features": data.stats.to_dict(),
        },
        "budget_writes_per_step": args.budget,
        "threshold": round(float(threshold), 6),
        "validation": {"before": before, "after": after},
        "writes_per_step_val": after["write_rate"],
        "meets_budget": after["write_rate"] <= args.budget * 1.1 + 1e-9,
        "training": {
            "iterations": done,
            "best_iteration": best_iteration,
            # 0: no evaluation beat the starting layer at the budget; it was kept as is.
            "improved_on_start": best_iteration > 0,
            "stopped_early": stopped_early,
            "eval_every": args.eval_every,
            "patience": args.patience,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "init": args.init,
            "curve": curve,
        },
        "load_in_node": f"-p aura_checkpoint:={out.resolve()} -p backbone:={name}",
    }
    (out / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    _plot_curve(curve, before, args.budget, out / "training_curve.png")
    return card


def _plot_curve(
    curve: Sequence[dict[str, float]], before: dict[str, float], budget: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [c["iteration"] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(it, [c["val_loss"] for c in curve], marker=".", label="validation loss")
    ax.plot(it, [c["train_loss"] for c in curve], marker=".", alpha=0.6, label="train loss")
    ax.axhline(before["loss"], color="grey", ls=":", label="validation loss before")
    ax.set(xlabel="iteration", ylabel="action loss")
    ax2 = ax.twinx()
    ax2.plot(
        it, [c["val_write_rate"] for c in curve], color="tab:red", ls="--", label="val writes/step"
    )
    ax2.axhline(budget, color="tab:red", lw=0.7, ls=":")
    ax2.set_ylabel("writes / step", color="tab:red")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)  # small batches: thread sync costs more than it saves here
    try:
        card = train_from_bags(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"aura-mem-train: {exc}", file=sys.stderr)
        return 2
    v = card["validation"]
    key = "accuracy" if "accuracy" in v["after"] else "l1"
    print(
        f"{card['data']['train_steps']} train / {card['data']['val_steps']} val steps; "
        f"validation loss {v['before']['loss']:.4f} -> {v['after']['loss']:.4f}, {key} "
        f"{v['before'][key]:.4f} -> {v['after'][key]:.4f}; writes/step "
        f"{card['writes_per_step_val']:.4f} (budget {card['budget_writes_per_step']}) -> "
        f"{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
