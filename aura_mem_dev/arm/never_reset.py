"""The arm's never-reset AURA layer (issue 15): step 6 of ``make train-arm`` (in a second
process, ``train.NeverResetProcess``), or alone ``python -m aura_mem_dev.arm.train
--only-never-reset [--out DIR]`` -> DIR/aura_never_reset (``NEVER_RESET_AURA_DIR``), the
layer ``reset_policy: never`` + ``aura_checkpoint: bundled`` serves on ``arm_mini``.

Why a separate layer (warm-started from the per-episode one, ``init_from``; from scratch
the gate never opened, see below): the shipped per-episode layer holds the cue in
WHICH key direction was written, a delta-rule write of the next cue does not erase the
previous one, and its gate learned (correctly, for that memory) not to write into a
non-empty memory: never-reset success 0.370 (counterfactual.py's docstring has the
diagnosis). This is MiniGrid's never-reset recipe (``aura_mem_dev.training.recipes.
NEVER_RESET_RECIPE``) on the arm's data, with the same core pieces:

- the layer: the head reads [Wᵀq̂, m] (``head_reads="read_and_last"``: m, the newest value
  written, is the newest cue whatever earlier episodes left in W), acts before writing, and
  each write forgets a learned fraction of W (``forget_init``), so what earlier episodes
  leave in W fades and a long run looks like the training streams;
- the data: rows are streams of ``stream_len`` random episodes back to back with the memory
  carried across (any concatenation is a valid stream: every label is the expert's),
  cut at ``max_stream_steps``;
- the gate objective: ``CounterfactualGate`` with a truncated horizon and ``censor_tail``
  (a write whose window runs past a row's end is not taught useless), one trainer
  (``core.train.Trainer``), the budget controller;
- DAgger: at ``dagger_at`` the current layer drives ``dagger_episodes`` episodes back to
  back WITHOUT resets (expert chunks mixed in at ``expert_mix``), relabelled by the expert;
- checkpoint selection: closed loop on validation seeds (910,000..; never_reset_probe uses
  900,000.., the benchmark >= 1,000,000), the WORSE of reset-per-episode and never-reset
  success.

No privileged signal: training reads expert action chunks only, never the cue pad, the
cue's visibility or a write schedule (the recorded cue pads stay in ``ArmSequences`` for
probes and are not read here).

Measured (2026-11-30, 1 thread on the shared 2-core machine, ~15 min per run; success
reset / never reset on the 40 probe seeds 900,000.. unless said; selection on 910,000..):
- fresh layer (MiniGrid's recipe as is: forget 0.5, always-write warm-up): the gate never
  opened in 300 iterations (0 writes; selection 0.27-0.33 = chance). With forgetting, an
  always-write warm-up cannot teach the head to hold a cue for ~20 chunks, so no write is
  ever worth its price. Hence the warm start from the per-episode layer.
- warm start, [r, m], α learned from 0.3, lr 1e-3, 900 it.: 0.85 / 0.625 (0.80 / 0.725 with
  the threshold calibrated in both modes); with writes forced on the cue chunks
  (``never_reset_probe --oracle-cue-writes``) 0.85 / 0.75: W's residue of earlier cues
  still misleads the read. The head's m columns stayed small (|W_m| 0.5 vs |W_r| 5.3).
- head reads m alone ("last"): the head did not learn to read m in 150 head-only
  iterations (reset 0.40), then the gate shut (0.2 writes/episode): given up.
- [r, m], α learned from 0.5 (drifted to 0.39), streams of 2-5: 0.825 / 0.80; held out
  (60 seeds 1,000,000..) 0.733 / 0.65, completed only 0.85.
- α fixed at 0.6, the head's x columns frozen, 700 it.: 0.90 / 0.875; held out 0.783 /
  0.817 (completed 0.87 / 0.88); ``bench --never-reset 100``: 0.790 [0.700, 0.858].
- (2026-11-30, scratch runs of ``train_and_save`` with only these fields changed) head reads
  r only, warm start (x and r columns), no forgetting: after the head-only iterations on
  streams the selection read 0.30 reset / 0.325 never, and by it. 300 the gate had shut
  (0.025 writes per episode): the delta rule alone does not clear an earlier cue held
  under another key. α = 0.2, head reads r: 0.80 / 0.525 at the start, never-reset
  0.375-0.425 by it. 300. Both given up.
- the same with one α for every write (``forget_by_key=False``; 1,100 it., a third DAgger
  round; 1,324 s): 0.95 / 0.95; held out 0.833 / 0.833 (completed 0.93 / 0.95);
  ``bench --never-reset 100``: 0.760 [0.668, 0.833], 1.60 writes per episode. Its misses:
  it wrote at the cue in 97% of held-out episodes, yet each of its ~0.8 later writes per
  episode erased 60% of that cue.
- the defaults below: α per write, σ(w·k̂ + b) (``forget_by_key``, w from zero, b from
  logit 0.6, both trained; 1,100 it.): selection 0.95 / 0.925; validation (40 seeds
  900,000..) 0.975 / 0.90; held out (60 seeds 1,000,000..) 0.883 / 0.917 (completed 0.97 /
  0.95); ``bench --never-reset 100``: 0.950 [0.888, 0.978], completed 1.000, 1.37 writes
  per episode: within 5 points of the per-episode layer's reset success (0.975), issue 15's
  target. This is the layer ``models/arm_mini/aura_never_reset`` ships
  (``models/arm_mini/never_reset_train_report.json``; the run and the probes are described
  in docs/results/arm_never_reset/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

SELECT_SEED_BASE = 910_000  # checkpoint selection; never_reset_probe reads 900,000..


@dataclass(frozen=True)
class ArmNeverResetConfig:
    seed: int = 1
    demo_episodes: int = 240  # noisy expert demos
    base_episodes: int = 80  # rollouts of the frozen policy alone
    noise: float = 0.3
    iterations: int = 1100
    batch_size: int = 24
    lr: float = 1e-3
    lr_final: float = 3e-4
    budget: float = 0.075  # writes per chunk request (~2 per episode of ~27 chunks)
    warmup: int = 0  # always-write iterations before the gate is fitted (fresh layers)
    horizon: int = 32  # chunks; the cue (chunks 0-1) decides the pad ~15-30 chunks later
    dense_fraction: float = 0.2
    explore_rows: float = 0.5
    explore_rate: float = 0.1
    stream_len: tuple[int, int] = (2, 5)  # episodes per row (the first: a fresh memory)
    max_stream_steps: int = 160
    # "last": the head reads only m, the newest value written, so whatever earlier episodes
    # left in W cannot reach the action (the gate still reads W); "read_and_last": [r, m]
    head_reads: str = "read_and_last"
    forget_init: float = 0.6
    # α per write, σ(w·k̂ + b) (``AuraConfig.forget_by_key``; w starts at zero, b at
    # forget_init; both train, whatever train_forget says): a cue's write can clear the
    # last episode's cue while a later write in the same episode keeps this one
    forget_by_key: bool = True
    # iterations before the gate objective runs in which only the memory and head train under
    # the warm-started gate's own greedy schedule (the head learns to read m first: a gate
    # fitted while the head cannot read m yet would learn that no write pays)
    # False: α stays at forget_init (measured, run 3: learned, it drifted 0.50 -> 0.39 and
    # the residue of earlier cues came back)
    train_forget: bool = False
    # the head's x columns (its memoryless path, warm-started) kept as they are: only what
    # reads memory trains (measured, run 3: training them, completion fell to 0.85)
    freeze_x_path: bool = True
    head_iterations: int = 150
    head_lr: float = 1e-3
    # the threshold at the end: calibrated in closed loop to the budget on the selection
    # seeds, in both modes (write counts only; calibrate.py); 0 = keep the trained one
    calibration_iterations: int = 5
    beta_init: float = 0.9
    # None: a fresh layer; "aura": start from the per-episode layer in the same model folder
    # (its projections, gate and head; the head's m inputs start at zero, so the start acts
    # exactly as that layer with forgetting added)
    init_from: str | None = "aura"
    dagger_at: tuple[int, ...] = (250, 500, 800)
    dagger_episodes: int = 60
    expert_mix: tuple[float, ...] = (0.3, 0.1)
    eval_every: int = 100
    select_episodes: int = 40

    def __post_init__(self) -> None:
        if not 1 <= self.stream_len[0] <= self.stream_len[1]:
            raise ValueError("stream_len must be (lo, hi) episodes with 1 <= lo <= hi")
        if any(not 0 < it < self.iterations for it in self.dagger_at):
            raise ValueError("dagger_at iterations must lie inside the run")
        if not 0 < self.budget <= 1:
            raise ValueError("budget must lie in (0, 1] writes per chunk request")


def quick_config() -> ArmNeverResetConfig:
    """A smoke-test size (tests, ``--quick``)."""
    return ArmNeverResetConfig(
        demo_episodes=3,
        base_episodes=1,
        iterations=6,
        batch_size=4,
        warmup=2,
        horizon=4,
        max_stream_steps=40,
        dagger_at=(3,),
        dagger_episodes=2,
        head_iterations=2,
        calibration_iterations=1,
        eval_every=3,
        select_episodes=2,
    )


def new_layer(d_model: int, cfg: ArmNeverResetConfig):
    """The arm's AURA shape (``memory.arm_aura_config``) with the never-reset wiring."""
    from aura_mem_dev.arm.memory import arm_aura_config
    from aura_mem_ros.core.checkpoint import init_aura

    config = dataclasses.replace(
        arm_aura_config(d_model, cfg.budget),
        head_reads=cfg.head_reads,
        act_before_write=True,
        forget_init=cfg.forget_init,
        forget_by_key=cfg.forget_by_key,
        beta_init=cfg.beta_init,
        gate_init_bias=-2.0,  # closed: writes are added where they pay
        threshold=0.5,
    )
    return init_aura(config, seed=cfg.seed)


def warm_start(layer, source_dir: Path):
    """``layer``'s parameters from the per-episode layer in ``source_dir``; the head's first
    layer gets that layer's x columns (and its r columns where ``layer`` reads r) and zeros
    for m. The threshold is the source's (calibrated in closed loop)."""
    from aura_mem_ros.core.checkpoint import load_aura

    source = load_aura(source_dir)
    if source.config.head_reads != "read":
        raise ValueError(f"{source_dir}: warm start expects a per-episode layer (head reads r)")
    d_model = layer.config.d_model
    target = layer.state_dict()
    with torch.no_grad():
        for name, value in source.state_dict().items():
            if name not in target:
                continue
            if name == "head.inp.weight":
                # (hidden, d_model + d_val): the x columns copied; "read" and "read_and_last"
                # keep the r columns ("read_and_last" starts m's at zero), "last" starts m's
                # at zero (r is not read)
                keep = value.shape[1] if layer.config.head_reads != "last" else d_model
                target[name].zero_()
                target[name][:, :keep].copy_(value[:, :keep])
            elif target[name].shape == value.shape:
                target[name].copy_(value)
            else:
                raise ValueError(f"{name}: {tuple(value.shape)} vs {tuple(target[name].shape)}")
    layer.load_state_dict(target)
    layer.config = dataclasses.replace(layer.config, threshold=source.config.threshold)
    return layer


def freeze(layer, cfg: ArmNeverResetConfig) -> None:
    """What stays as it starts: α (unless ``train_forget``) and, with ``freeze_x_path``, the
    head's x columns (a gradient hook zeroes their gradient; the r and m columns train)."""
    # a per-key α (forget_by_key) always trains: learning where to erase is its point
    if not cfg.train_forget and hasattr(layer, "forget_logit"):
        layer.forget_logit.requires_grad_(False)
    if cfg.freeze_x_path and cfg.init_from is not None:
        d_model = layer.config.d_model

        def only_memory_columns(grad: torch.Tensor) -> torch.Tensor:
            grad = grad.clone()
            grad[:, :d_model] = 0.0
            return grad

        layer.head.inp.weight.register_hook(only_memory_columns)
        layer.head.inp.bias.requires_grad_(False)


def train_head_first(layer, seqs, cfg: ArmNeverResetConfig) -> float:
    """The memory and head alone (gate frozen, its greedy schedule deciding every write) on
    the same stream rows, by the one trainer -> seconds."""
    from aura_mem_ros.core.objectives import CounterfactualGate
    from aura_mem_ros.core.train import Trainer, TrainerConfig, print_progress

    frozen = [p for n, p in layer.named_parameters() if n.startswith("gate_")]
    for param in frozen:
        param.requires_grad_(False)
    # benefit_rows 0: no gate row is measured (the gate does not train here)
    objective = CounterfactualGate(
        horizon=cfg.horizon,
        dense_fraction=cfg.dense_fraction,
        explore_rows=cfg.explore_rows,
        explore_rate=cfg.explore_rate,
        benefit_rows=0.0,
    )
    trainer_cfg = TrainerConfig(
        iterations=cfg.head_iterations,
        batch_size=cfg.batch_size,
        lr=cfg.head_lr,
        seed=cfg.seed + 1,
    )
    res = Trainer(
        layer, stream_source(seqs, cfg), objective, trainer_cfg, None, [print_progress(25)]
    )
    result = res.train()
    for param in frozen:
        param.requires_grad_(True)
    layer.train()
    return result.seconds


def stream_source(seqs, cfg: ArmNeverResetConfig):
    """The trainer's source: ``batch_size`` rows, each ``stream_len`` random episodes played
    back to back (memory carried), cut at ``max_stream_steps``."""
    from aura_mem_ros.core.batch import SequenceBatch

    lo, hi = cfg.stream_len

    def sample(batch_size: int, gen: torch.Generator) -> SequenceBatch:
        rows = []
        for _ in range(batch_size):
            k = int(torch.randint(lo, hi + 1, (1,), generator=gen))
            rows.append(tuple(torch.randint(len(seqs), (k,), generator=gen).tolist()))
        b = seqs.batch(rows)
        cut = cfg.max_stream_steps
        return SequenceBatch(
            b.features[:, :cut], b.base_actions[:, :cut], b.targets[:, :cut], b.mask[:, :cut]
        )

    return sample


def closed_loop_modes(backbone, layer, seeds: list[int], task) -> dict[str, dict]:
    """The same seeds played with the memory reset per episode and never reset."""
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.env import ArmEnv
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    env = ArmEnv(task)
    out = {}
    for mode in ("reset", "never_reset"):
        agent = ChunkAgent(backbone, AuraRuntime(layer, gate="learned", fused=False))
        agent.reset()
        eps = [run_episode(env, agent, s, reset_agent=mode == "reset") for s in seeds]
        chunks = sum(e.chunks for e in eps)
        out[mode] = {
            "success": float(np.mean([e.success for e in eps])),
            "completed": float(np.mean([e.completed for e in eps])),
            "writes_per_episode": float(np.mean([e.writes for e in eps])),
            "write_rate": sum(e.writes for e in eps) / max(1, chunks),
        }
    env.close()
    return out


def selector(backbone, task, cfg: ArmNeverResetConfig):
    """Checkpoint criterion: the worse of reset and never-reset closed-loop success."""
    seeds = list(range(SELECT_SEED_BASE, SELECT_SEED_BASE + cfg.select_episodes))

    def select(model) -> dict[str, float]:
        was = model.training
        model.eval()
        modes = closed_loop_modes(backbone, model, seeds, task)
        model.train(was)
        r, n = modes["reset"], modes["never_reset"]
        result = {f"reset_{k}": v for k, v in r.items()} | {f"never_{k}": v for k, v in n.items()}
        result["score"] = min(r["success"], n["success"])
        result["write_rate"] = max(r["write_rate"], n["write_rate"])
        print(f"  select: {json.dumps(result)}", flush=True)
        return result

    return select


def never_reset_driver(agent, mix: float, seed: int):
    """Act with ``agent`` and NEVER reset it (a robot's day); with probability ``mix``
    execute the expert's chunk instead (the agent still sees every frame)."""
    rng = np.random.default_rng(seed)

    def drive(obs, label, index):
        chunk = agent.act(obs).chunk
        return label if rng.random() < mix else chunk

    return drive


def dagger_rounds(backbone, task, seqs, cfg: ArmNeverResetConfig, seeds, log: list):
    """A trainer callback: after iteration ``dagger_at[r]`` the current layer drives
    ``dagger_episodes`` episodes back to back, never reset; every chunk relabelled by the
    expert and added to ``seqs``."""
    from aura_mem_dev.arm.data import collect
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    def callback(event: str, trainer, info: dict[str, Any]) -> None:
        if event != "iteration" or info["it"] + 1 not in cfg.dagger_at:
            return
        r = list(cfg.dagger_at).index(info["it"] + 1)
        mix = cfg.expert_mix[r] if r < len(cfg.expert_mix) else 0.0
        model = trainer.model
        model.eval()
        t0 = time.time()
        agent = ChunkAgent(backbone, AuraRuntime(model, gate="learned", fused=False))
        agent.reset()  # once: the round is one never-reset run
        eps = collect(
            task,
            seeds.take(cfg.dagger_episodes),
            lambda s: never_reset_driver(agent, mix, s),
        )
        seqs.add(backbone.net, eps)
        model.train()
        entry = {
            "it": info["it"],
            "round": r,
            "expert_mix": mix,
            "rollout_success": float(np.mean([e.success for e in eps])),
            "sequences": len(seqs),
            "seconds": round(time.time() - t0, 1),
        }
        log.append(entry)
        print(f"  dagger: {json.dumps(entry)}", flush=True)

    return callback


def gate_progress(every: int = 25):
    """A trainer callback: the gate objective's statistics (share of steps whose write pays)
    and the layer's forgetting fraction, every ``every`` iterations."""

    def callback(event: str, trainer, info: dict[str, Any]) -> None:
        if event != "iteration" or info["it"] % every:
            return
        forget = trainer.model.forget
        stats = {k: round(v, 4) for k, v in trainer.objective.stats.items()}
        alpha = None if forget is None else round(float(forget.detach()), 4)
        print(f"  gate: it={info['it']} {stats} forget={alpha}", flush=True)

    return callback


def base_data(backbone, task, cfg: ArmNeverResetConfig, seeds, cache: Path | None = None):
    """Noisy expert demos + the frozen policy's rollouts, expert labels (no memory shaped
    them); ``cache``: a torch file of the sequences, reused when its config matches."""
    from aura_mem_dev.arm.counterfactual import demos_and_base_rollouts
    from aura_mem_dev.arm.sequences import ArmSequences

    demo, base = seeds.take(cfg.demo_episodes), seeds.take(cfg.base_episodes)
    key = {"demo": demo[:1] + demo[-1:], "base": base[:1] + base[-1:], "noise": cfg.noise}
    key["model_id"] = backbone.model_id()
    if cache is not None and cache.is_file():
        stored = torch.load(cache, weights_only=False)
        if stored["key"] == key:
            return ArmSequences(**stored["seqs"])
    seqs = demos_and_base_rollouts(backbone, task, demo, base, cfg.noise)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "seqs": dataclasses.asdict(seqs)}, cache)
    return seqs


def train_never_reset_layer(
    model_dir: Path,
    cfg: ArmNeverResetConfig,
    cache: Path | None = None,
    wait_for_source: Callable[[], None] | None = None,
) -> tuple[Any, dict]:
    """A fresh never-reset layer on ``model_dir``'s frozen backbone -> (layer, record).

    ``wait_for_source``: called after the data is collected and before the warm start reads
    ``model_dir``/``init_from`` (``make train-arm`` collects while that layer still trains)."""
    from aura_mem_dev.arm.train import AURA_SEED_BASE, _Seeds
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.objectives import CounterfactualGate
    from aura_mem_ros.core.train import Trainer, TrainerConfig, print_progress
    from aura_mem_ros.sim.arm.env import ArmTaskConfig

    t0 = time.time()
    backbone = ArmMiniBackbone(model_dir)
    task = ArmTaskConfig(image_size=backbone.net.cfg.image_size)
    # seeds of their own, above the per-episode recipe's (AURA_SEED_BASE + seed * 10,000 + ...)
    seeds = _Seeds(AURA_SEED_BASE + cfg.seed * 10_000 + 5_000)
    seqs = base_data(backbone, task, cfg, seeds, cache)
    data_seconds = time.time() - t0
    waited = 0.0
    if wait_for_source is not None:
        wait_for_source()
        waited = time.time() - t0 - data_seconds
    layer = new_layer(seqs.features[0].shape[-1], cfg)
    if cfg.init_from is not None:
        layer = warm_start(layer, model_dir / cfg.init_from)
    freeze(layer, cfg)
    log: list[dict] = []
    head_seconds = 0.0
    if cfg.init_from is not None and cfg.head_iterations:
        head_seconds = train_head_first(layer, seqs, cfg)
    objective = CounterfactualGate(
        horizon=cfg.horizon,
        dense_fraction=cfg.dense_fraction,
        explore_rows=cfg.explore_rows,
        explore_rate=cfg.explore_rate,
        censor_tail=True,
    )
    trainer_cfg = TrainerConfig(
        iterations=cfg.iterations,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        lr_final=cfg.lr_final,
        budget=cfg.budget,
        warmup=cfg.warmup,
        eval_every=cfg.eval_every,
        seed=cfg.seed,
    )
    trainer = Trainer(
        layer,
        stream_source(seqs, cfg),
        objective,
        trainer_cfg,
        None,
        [
            print_progress(25),
            gate_progress(25),
            dagger_rounds(backbone, task, seqs, cfg, seeds, log),
        ],
        selector(backbone, task, cfg),
    )
    res = trainer.train()
    layer.eval()
    calibration = None
    if cfg.calibration_iterations:
        from aura_mem_dev.arm.calibrate import calibrate_threshold_closed_loop, with_threshold

        calibration = calibrate_threshold_closed_loop(
            backbone,
            layer,
            cfg.budget,
            list(range(SELECT_SEED_BASE, SELECT_SEED_BASE + cfg.select_episodes)),
            task,
            iterations=cfg.calibration_iterations,
            never_reset=True,
        )
        print(f"  calibration: {json.dumps(calibration)}", flush=True)
        layer = with_threshold(layer, calibration["threshold"])
    forget = layer.forget
    record = {
        "config": asdict(cfg),
        "objective": (
            f"CounterfactualGate(horizon={cfg.horizon}, censor_tail=True) on streams of "
            f"{cfg.stream_len[0]}-{cfg.stream_len[1]} episodes (memory carried)"
        ),
        "sequences": len(seqs),
        "data_seconds": round(data_seconds, 1),
        "waited_seconds": round(waited, 1),  # for the per-episode layer (make train-arm)
        "head_seconds": round(head_seconds, 1),
        "train_seconds": round(res.seconds, 1),
        "calibration": calibration,
        "seconds": round(time.time() - t0, 1),
        "best_iteration": res.best_it,
        "improved": res.improved,
        "price": res.price,
        "start_validation": res.start_val,
        "best_validation": res.best_val,
        "validations": res.validations,
        "dagger": log,
        "forget": None if forget is None else float(forget.detach()),
    }
    return layer, record


def train_and_save(
    model_dir: Path,
    out: Path,
    cfg: ArmNeverResetConfig,
    cache=None,
    wait_for_source: Callable[[], None] | None = None,
) -> dict:
    """Train, save OUT/aura_never_reset and OUT/never_reset_train_report.json."""
    from aura_mem_ros.backbones.base import NEVER_RESET_AURA_DIR
    from aura_mem_ros.core.checkpoint import save_aura

    layer, record = train_never_reset_layer(model_dir, cfg, cache, wait_for_source)
    save_aura(layer, out / NEVER_RESET_AURA_DIR)
    (out / "never_reset_train_report.json").write_text(
        json.dumps(record, indent=2, default=str) + "\n"
    )
    return record
