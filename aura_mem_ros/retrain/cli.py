"""``aura-mem-train --bags ... --out DIR``: fit the AURA layer for a backbone from recorded bags.

Data: camera frames + the action that should have been taken, on ``/teleop/action`` (or
``/expert/action``; AuraAction with header.stamp = the camera image's stamp). The frozen
backbone runs once per frame and its output is cached per bag (``retrain/features.py``: a
second run on the same bags skips it; ``--ray`` spreads the bags over a Ray cluster's GPUs or
CPUs). The AURA layer (memory, gate, residual head) is trained through time by the one
trainer (``core/train.py``) in ONE continuous run: an always-write warm-up, then the gate
fitted to the counterfactual action benefit of each write under the write budget. Whole
episodes are held out for validation (every ``--eval-every`` iterations, the gate deciding as
in the node, scored by ``--criterion``: by default the accuracy on the steps memory decides);
training stops after ``--patience`` validations without improvement and the
best checkpoint is restored. A layer that is not better than its start on validation is NOT
saved (warning, exit status 3) unless ``--allow-worse``. ``--refit`` then trains a fresh layer
on every episode, held-out ones included, for the iterations validation chose, and saves that
one (a few dozen episodes: the held-out fifth is a quarter more examples of each memory
decision; measured in docs/results/retrain.md).

Output (what the node loads with ``-p aura_checkpoint:=DIR``): aura.safetensors,
aura_config.json, model_card.json (validation loss and write rate before/after, budget,
command, the validation curve), training_curve.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import random
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aura_mem_ros.core.config import HEAD_READS
from aura_mem_ros.eval.extract import Topics
from aura_mem_ros.retrain import features
from aura_mem_ros.retrain.data import Episode, to_batch, windows
from aura_mem_ros.retrain.features import TrainingData, load_training_data

CRITERIA = ("memory_accuracy", "accuracy", "loss")  # core.train.CRITERIA, without importing torch
# --refit: how much worse (criterion units: 0.05 = 5 points of accuracy) the refit layer may
# fit the first run's training episodes than the first run's layer and still be used. A
# refit stuck before the head learned to read memory is tens of points worse; one that
# merely spread its fit over a quarter more episodes is within a point or two.
REFIT_TOLERANCE = 0.05


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
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-iterations", type=int, default=3000)
    p.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="always-write iterations first (the head learns to read memory; at most half)",
    )
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument(
        "--patience",
        type=int,
        default=40,
        help="validations without improvement (after the warm-up) before stopping (the head "
        "learns to read a delayed cue after a plateau of several hundred iterations: a short "
        "patience stops on the plateau)",
    )
    p.add_argument(
        "--criterion",
        choices=CRITERIA,
        default="memory_accuracy",
        help="what selects the checkpoint on held-out episodes: memory_accuracy = accuracy on "
        "the steps memory decides (the memoryless backbone misses the label, or the layer "
        "overrode it; discrete actions; falls back to the loss for continuous ones), "
        "accuracy, or the action loss. A layer is saved only if "
        "it beats its start on the criterion without a worse held-out accuracy on every step "
        "(memory_accuracy) or loss (accuracy)",
    )
    p.add_argument("--lr", type=float, default=1e-2, help="cosine-decayed to lr/5")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=0.05,
        help="AdamW's decoupled weight decay (a few dozen episodes: a wide head memorises "
        "them; without it, 40 MiniGrid training episodes reached a train loss of 0.02-0.04 "
        "against 0.25-0.44 held out)",
    )
    p.add_argument(
        "--horizon",
        type=int,
        help="steps over which a write's benefit is measured (default: the whole window, "
        "exact; a horizon H costs O(T H) instead of O(T^2) per window of T steps)",
    )
    p.add_argument(
        "--dense-fraction",
        type=float,
        default=0.3,
        help="share of training windows written at random densely (teaches the head to read)",
    )
    p.add_argument(
        "--head-hidden",
        type=int,
        default=512,
        help="residual head width (fresh); with a few dozen episodes see the README on "
        "--head-hidden 128 --refit",
    )
    p.add_argument(
        "--head-reads",
        choices=HEAD_READS,
        default="read",
        help="what of the memory the residual head reads (fresh layer): r = Wᵀq̂ (read), the "
        "last value written m (last; no key/query match to learn: with one write per "
        "episode m IS the cue), or both (read_and_last)",
    )
    p.add_argument(
        "--head-bilinear",
        type=int,
        default=0,
        help="width of the residual head's product term (U x) * (V r) (fresh layer; 0: none). "
        "It compares what is seen with what memory holds in one layer; with a few dozen "
        "episodes see the README on --head-hidden 128 --head-bilinear 64 --refit",
    )
    p.add_argument(
        "--value-reads",
        metavar="PART",
        help="the memory's value reads only this part of the backbone's features (fresh "
        "layer; default: all of them). For mini with --backbone-args "
        "'{\"seen_objects\": true}': seen_objects (what is in view, not where; see the "
        "README on 50 episodes)",
    )
    p.add_argument(
        "--rate-slack",
        type=float,
        default=1.25,
        help="a checkpoint writing more than budget x slack on validation is not kept",
    )
    p.add_argument(
        "--allow-worse",
        action="store_true",
        help="save the layer even when it is not better than its start on validation "
        "(otherwise nothing is saved and the exit status is 3)",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        help="after the run, train a fresh layer on ALL episodes (held-out ones included) "
        "for the iterations validation chose, and save that one: with a few dozen episodes "
        "the held-out fifth is a quarter more examples of each memory decision (the "
        "validation figures in the card are then the first run's; the write rate is "
        "re-measured in-sample)",
    )
    p.add_argument(
        "--refit-iterations",
        type=int,
        help="the refit trains this many iterations instead of the count validation chose. "
        "With a few dozen episodes the held-out fifth holds ~20 memory decisions: the best "
        "of ~50 noisy validations lands on a spike, often a few hundred iterations in, "
        "where closed-loop success is far below its level after ~1,000 (README)",
    )
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


class WorseThanStartError(ValueError):
    """Training did not beat the starting layer on held-out episodes: nothing was saved."""


def _batches(episodes: Sequence[Episode], discrete: bool, size: int = 64) -> list[Any]:
    return [to_batch(episodes[i : i + size], discrete) for i in range(0, len(episodes), size)]


def _rounded(metrics: dict[str, Any] | None) -> dict[str, float]:
    keys = ("loss", "write_rate", "accuracy", "memory_accuracy", "l1")
    return {
        k: round(float(metrics[k]), 6)
        for k in keys
        if metrics and k in metrics and math.isfinite(metrics[k])
    }


def new_layer_config(backbone: Any, args: argparse.Namespace) -> Any:
    """A fresh layer as the one trainer's recipe wants it: the gate starts closed (writes
    are added where they pay), a small write strength (a dense memory keeps an early cue,
    so the head learns to read during the always-write warm-up), a wide residual head; the
    budget, head and value options from ``args``."""
    from aura_mem_ros.core.config import AuraConfig

    return AuraConfig.for_backbone(
        backbone,
        target_write_rate=args.budget,
        beta_init=0.3,
        head_hidden=args.head_hidden,
        gate_init_bias=-2.0,
        head_reads=args.head_reads,
        head_bilinear=args.head_bilinear,
        value_from=value_from_part(backbone, args.value_reads),
    )


def value_from_part(backbone: Any, part: str | None) -> int:
    """``AuraConfig.value_from`` for ``--value-reads PART``: where the backbone's feature part
    ``part`` starts (0 for None). ValueError naming the parts there are, or when the part
    does not run to the end of the features (the value reads features[value_from:])."""
    if part is None:
        return 0
    parts = dict(backbone.feature_parts)
    if part not in parts:
        raise ValueError(
            f"--value-reads {part}: backbone {backbone.name} with args {backbone.args} has "
            f"no feature part {part!r} (parts: {sorted(parts) or 'none'})"
        )
    start, stop = parts[part]
    if stop != backbone.d_model:
        raise ValueError(
            f"--value-reads {part}: the value reads features[start:], but {part} is "
            f"[{start}, {stop}) of {backbone.d_model}"
        )
    return start


def train_from_bags(args: argparse.Namespace, data: TrainingData | None = None) -> dict[str, Any]:
    """One continuous run of ``core.train.Trainer`` (counterfactual gate) on the bags'
    episodes; validation on held-out episodes, early stopping, best checkpoint restored.
    -> the model card. Raises ``WorseThanStartError`` (nothing saved) when the result is not
    better than the start on validation, unless ``args.allow_worse``."""
    import torch

    from aura_mem_ros.core.aura import AuraLayer
    from aura_mem_ros.core.checkpoint import init_aura, load_aura, save_aura
    from aura_mem_ros.core.objectives import CounterfactualGate
    from aura_mem_ros.core.train import Trainer, TrainerConfig, print_progress, validate

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
    val_batches = _batches(windows(val_eps, args.window), backbone.discrete)

    if args.init:
        layer = load_aura(args.init)
    else:
        config = new_layer_config(backbone, args)
        layer = init_aura(config, seed=args.seed)

    def source(batch_size: int, gen: torch.Generator) -> Any:
        idx = torch.randint(len(train_w), (min(batch_size, len(train_w)),), generator=gen)
        return to_batch([train_w[i] for i in idx.tolist()], backbone.discrete)

    warmup = min(args.warmup, args.max_iterations // 2)
    config = TrainerConfig(
        iterations=args.max_iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr / 5,
        weight_decay=args.weight_decay,
        budget=args.budget,
        warmup=warmup,
        eval_every=args.eval_every,
        patience=args.patience,
        criterion=args.criterion,
        rate_slack=args.rate_slack,
        restore_start=not args.allow_worse,
        seed=args.seed,
    )
    objective = CounterfactualGate(horizon=args.horizon, dense_fraction=args.dense_fraction)
    callbacks = [] if args.quiet else [print_progress(args.eval_every)]
    result = Trainer(layer, source, objective, config, val_batches, callbacks).train()
    refit = None
    if args.refit and result.improved and result.best_it >= 0:
        refit_layer, refit = _refit(
            args,
            episodes,
            train_w,
            layer,
            backbone,
            config,
            args.refit_iterations or result.best_it + 1,
            callbacks,
        )
        layer = refit_layer if refit["used"] else layer
    config_out = dataclasses.replace(layer.config, target_write_rate=args.budget)
    final = AuraLayer(config_out)
    final.load_state_dict(layer.state_dict())
    final.eval()
    after = validate(final, val_batches, "learned", None)  # as the node runs it
    if refit and refit["used"]:  # the refit trained on the held-out episodes too
        after = result.best_val
    before = result.start_val
    losses = {h["it"]: h["loss"] for h in result.history}
    curve = [
        {
            "iteration": v["it"] + 1,
            "train_loss": round(losses[v["it"]], 6),
            "val_loss": round(v["metrics"]["loss"], 6),
            "val_write_rate": round(v["metrics"]["write_rate"], 6),
            **{
                f"val_{k}": round(v["metrics"][k], 6)
                for k in ("accuracy", "memory_accuracy")
                if math.isfinite(v["metrics"].get(k, math.nan))
            },
            "price": round(v["metrics"]["price"], 6),
        }
        for v in result.validations
    ]
    out = Path(args.out)
    card = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": getattr(args, "command_line", None)
        or shlex.join(["aura-mem-train", *sys.argv[1:]]),
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
        "threshold": round(float(config_out.threshold), 6),
        "validation": {
            "before": _rounded(before),
            "after": _rounded(after),
            **(
                {"after_of": "the first run's best checkpoint; the saved layer is the refit"}
                if refit and refit["used"]
                else {}
            ),
        },
        "writes_per_step_val": round(after["write_rate"], 6),
        "meets_budget": after["write_rate"] <= args.budget * args.rate_slack + 1e-9,
        "training": {
            "trainer": "aura_mem_ros.core.train.Trainer + CounterfactualGate",
            "iterations": len(result.history),
            "best_iteration": result.best_it + 1,  # 0: the start was kept
            "improved_on_start": result.improved,
            "allow_worse": bool(args.allow_worse),
            "stopped_early": result.stopped_early,
            "seconds": round(result.seconds, 1),
            "price": round(result.price, 6),
            "warmup": warmup,
            "horizon": args.horizon,
            "eval_every": args.eval_every,
            "patience": args.patience,
            "criterion": args.criterion,
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "init": args.init,
            "refit": refit,
            "curve": curve,
        },
        "load_in_node": f"-p aura_checkpoint:={out.resolve()} -p backbone:={name}"
        + (f" -p backbone_args:={shlex.quote(json.dumps(bb_args))}" if bb_args else ""),
    }
    if not result.improved and not args.allow_worse:
        raise WorseThanStartError(
            f"the trained layer is not better than its start on {len(val_eps)} held-out "
            f"episodes (validation loss {_rounded(before).get('loss')} at the start, best "
            f"{_rounded(result.best_val).get('loss')}): NOTHING was saved to {out}. Record more "
            "episodes, train longer (--max-iterations, --patience), or pass --allow-worse "
            "to save it anyway"
        )
    save_aura(final, out)
    (out / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    _plot_curve(curve, card["validation"]["before"], args.budget, out / "training_curve.png")
    return card


def _refit(
    args: argparse.Namespace,
    episodes: list[Episode],
    train_w: list[Episode],
    first: Any,
    backbone: Any,
    config: Any,
    iterations: int,
    callbacks: list[Any],
) -> tuple[Any, dict[str, Any]]:
    """A fresh layer trained on every episode for the ``iterations`` validation chose for
    ``first`` (the run's restored best checkpoint), with no validation left to stop it.

    The iteration count is a guess carried over from another run (other data, other batch
    draws): a refit that has not reached the first layer's fit of the first run's OWN
    training episodes (on the criterion, within ``REFIT_TOLERANCE``; both layers trained on
    them) is not used, and the first layer is kept. -> (the refit layer, the card's refit
    entry; "used": whether it is the one saved)."""
    import torch

    from aura_mem_ros.core.checkpoint import init_aura
    from aura_mem_ros.core.objectives import CounterfactualGate
    from aura_mem_ros.core.train import Trainer, criterion_of, validate

    torch.manual_seed(args.seed)
    discrete = backbone.discrete
    all_w = windows(episodes, args.window)

    def source(batch_size: int, gen: torch.Generator) -> Any:
        idx = torch.randint(len(all_w), (min(batch_size, len(all_w)),), generator=gen)
        return to_batch([all_w[i] for i in idx.tolist()], discrete)

    fresh_config = new_layer_config(backbone, args)
    layer = init_aura(fresh_config, seed=args.seed)
    refit_config = dataclasses.replace(
        config, iterations=iterations, warmup=min(config.warmup, iterations // 2), patience=None
    )
    objective = CounterfactualGate(horizon=args.horizon, dense_fraction=args.dense_fraction)
    refit = Trainer(layer, source, objective, refit_config, None, callbacks).train()
    layer.eval()
    seen = _batches(train_w, discrete)
    fit_first = validate(first, seen, "learned", None)
    fit_refit = validate(layer, seen, "learned", None)
    gap = criterion_of(fit_refit, args.criterion) - criterion_of(fit_first, args.criterion)
    used = gap <= REFIT_TOLERANCE
    if not used:
        print(
            "aura-mem-train: WARNING: the --refit layer fits the training episodes worse than "
            f"the first run's ({_rounded(fit_refit)} vs {_rounded(fit_first)}): the first "
            "run's layer is kept",
            file=sys.stderr,
        )
    entry = {
        "episodes": len(episodes),
        "iterations": iterations,
        "seconds": round(refit.seconds, 1),
        "used": bool(used),
        # both layers trained on these episodes: in-sample figures, NOT held-out ones
        "train_episodes_fit": {"first": _rounded(fit_first), "refit": _rounded(fit_refit)},
        "in_sample": _rounded(validate(layer, _batches(all_w, discrete), "learned", None)),
    }
    return layer, entry


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
    parser = build_parser()
    args = parser.parse_args(argv)
    # as typed, also when another program calls main(argv) (its sys.argv is not ours)
    args.command_line = shlex.join(["aura-mem-train", *(sys.argv[1:] if argv is None else argv)])
    if args.refit_iterations is not None and (not args.refit or args.refit_iterations < 1):
        parser.error("--refit-iterations N needs --refit and N >= 1")
    import torch

    torch.set_num_threads(1)  # small batches: thread sync costs more than it saves here
    try:
        card = train_from_bags(args)
    except WorseThanStartError as exc:
        print(f"\naura-mem-train: WARNING: {exc}\n", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as exc:
        print(f"aura-mem-train: {exc}", file=sys.stderr)
        return 2
    v = card["validation"]
    key = "accuracy" if "accuracy" in v["after"] else "l1"
    if not card["training"]["improved_on_start"]:
        print(
            "aura-mem-train: WARNING: saved WITH --allow-worse: the layer is not better than "
            "its start on validation",
            file=sys.stderr,
        )
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
