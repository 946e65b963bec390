"""``make train-arm``: rebuild every shipped arm weight from scratch, fixed seeds.

    python -m aura_mem_dev.arm.train [--out aura_mem_ros/models/arm_mini] [--quick]
    python -m aura_mem_dev.arm.train --only-kv   # step 5 alone: rebuild OUT/kv
    python -m aura_mem_dev.arm.train --only-never-reset  # step 6 alone: OUT/aura_never_reset

1. the frozen ``arm_mini`` backbone: demos, BC, DAgger (bc.py)      -> OUT/model.safetensors
2. memory data on the memory task (cue goes dark): noisy expert demos and rollouts of the
   frozen policy, every chunk relabelled by the expert (action labels only)
3. AURA (learned gate, write budget) with ``memory.train_arm_memory``, then DAgger rounds:
   roll out the gated policy, relabel, aggregate, retrain; the gate's threshold calibrated
   in closed loop to the write budget on validation seeds (calibrate.py)  -> OUT/aura/
4. the AURA gate refitted by the counterfactual objective (gate only, exact write benefit)
   on step 2's episodes plus rollouts of the step-3 layer, threshold re-calibrated
   (counterfactual.py)                                                -> OUT/aura/
5. the always-write KV arm on step 2-3's data plus one round of its own rollouts (expert mix
   as AURA's round; ``--only-kv`` reruns this step alone)               -> OUT/kv/
6. the layer ``reset_policy: never`` serves (never_reset.py: warm-started from step 4's
   layer, streams of episodes with the memory carried, forgetting writes, the counterfactual
   gate, never-reset DAgger, selection on the worse of reset and never-reset success)
                                                                       -> OUT/aura_never_reset/
and OUT/train_report.json (timings, probes, per-round closed-loop rates) and
OUT/never_reset_train_report.json.

Every process runs one thread (reproducible weights). Step 6 runs in a second process so the
machine's second core is used: it starts after step 1, collects its own episodes, waits for
step 4's layer, then trains while step 5 runs (``NeverResetProcess``; ``--skip-never-reset``
skips it). ``total_seconds`` in the report is the wall time of all six.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR


@dataclass(frozen=True)
class ArmTrainConfig:
    seed: int = 1
    image_size: int = 64
    demo_episodes: int = 300  # flash-variant expert demos (with action noise)
    base_episodes: int = 150  # rollouts of the frozen policy alone
    rounds: int = 1  # DAgger rounds of the gated policy
    episodes_per_round: int = 150
    expert_mix: tuple[float, ...] = (0.3, 0.1)  # chance a rollout chunk is the expert's
    noise: float = 0.3
    memory: object = None  # MemoryTrainConfig; None = its defaults
    kv_round_episodes: int = 150
    # chance a KV rollout chunk is the expert's: as AURA's DAgger round (expert_mix[0]).
    # Measured (validation seeds, 4-head KV): 0.0 -> success 0.675, completed 0.675 (its own
    # rollouts, once wrong, stall between pads and teach it little); 0.3 -> 0.95, 1.0.
    kv_round_expert_mix: float = 0.3
    validation_episodes: int = 40
    # bisection steps of the closed-loop threshold calibration (calibrate.py); 0 = keep 0.5
    calibration_iterations: int = 7

    def __post_init__(self) -> None:
        if self.demo_episodes <= 0 or self.rounds < 0:
            raise ValueError("demo_episodes > 0 and rounds >= 0 required")


AURA_SEED_BASE = 300_000  # above the backbone's seeds, below validation and evaluation
VALIDATION_SEED_BASE = 900_000


def agent_driver(agent, mix: float, seed: int):
    """Act with ``agent``; with probability ``mix`` execute the expert's chunk instead.

    The agent is still stepped on expert chunks, so its memory sees the same stream.
    """
    rng = np.random.default_rng(seed)

    def drive(obs, label, index):
        if index == 0:
            agent.reset()
        chunk = agent.act(obs).chunk
        return label if rng.random() < mix else chunk

    return drive


def closed_loop(task, agent, seeds: list[int]) -> dict:
    from aura_mem_ros.sim.arm.env import ArmEnv
    from aura_mem_ros.sim.arm.loop import run_episode

    env = ArmEnv(task)
    eps = [run_episode(env, agent, s) for s in seeds]
    env.close()
    chunks = sum(e.chunks for e in eps)
    return {
        "success": float(np.mean([e.success for e in eps])),
        "completed": float(np.mean([e.completed for e in eps])),
        "writes_per_episode": float(np.mean([e.writes for e in eps])),
        "writes_per_chunk": sum(e.writes for e in eps) / max(1, chunks),
        "cue_write_fraction": float(
            np.mean([any(c in e.cue_chunks for c in e.write_chunks) for e in eps])
        ),
    }


@dataclass
class _Seeds:
    next: int

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


@dataclass
class MemoryStage:
    """What steps 2-3 leave for the refit (step 4) and the KV arm (step 5)."""

    backbone: object  # ArmMiniBackbone
    task: object  # ArmTaskConfig
    seqs: object  # ArmSequences: demos, base rollouts, gated rollouts
    unshaped: int  # the first ``unshaped`` rows: demos + base rollouts (no memory shaped them)
    seeds: _Seeds  # the next unused seed
    val: list[int]


def train_aura_layer(out: Path, cfg: ArmTrainConfig, report: dict) -> MemoryStage:
    """Steps 2-3: the memory data and the straight-through AURA layer -> OUT/aura."""
    from aura_mem_dev.arm.calibrate import calibrate_threshold_closed_loop, with_threshold
    from aura_mem_dev.arm.data import collect, expert_driver
    from aura_mem_dev.arm.memory import MemoryTrainConfig, fit_aura
    from aura_mem_dev.arm.sequences import ArmSequences, cue_probe_accuracy
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import save_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.env import ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    mcfg = cfg.memory if isinstance(cfg.memory, MemoryTrainConfig) else MemoryTrainConfig()
    task = ArmTaskConfig(image_size=cfg.image_size)
    backbone = ArmMiniBackbone(out)
    net = backbone.net
    seeds = _Seeds(AURA_SEED_BASE + cfg.seed * 10_000)
    val = list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + cfg.validation_episodes))
    t0 = time.time()
    seqs = ArmSequences()
    seqs.add(
        net,
        collect(
            task,
            seeds.take(cfg.demo_episodes),
            lambda s: expert_driver(),
            noise=cfg.noise,
            progress="memory demos",
        ),
    )
    seqs.add(
        net,
        collect(
            task,
            seeds.take(cfg.base_episodes),
            lambda s: agent_driver(ChunkAgent(backbone), 0.0, s),
            progress="base rollouts",
        ),
    )
    unshaped = len(seqs)
    report["cue_probe"] = {f"chunk_{k}": cue_probe_accuracy(seqs, step=k) for k in (0, 1, 2, 8)}
    tqdm.write(f"linear probe of the cue from backbone features: {report['cue_probe']}")
    report["memoryless_validation"] = closed_loop(task, ChunkAgent(backbone), val)
    tqdm.write(f"memoryless validation: {report['memoryless_validation']}")
    rounds = []
    layer, stats = fit_aura(seqs, mcfg, "AURA round 0")
    for r in range(cfg.rounds):
        mix, eps = aura_rollouts(task, backbone, layer, seeds, cfg, r)
        seqs.add(net, eps)
        val_stats = closed_loop(task, ChunkAgent(backbone, AuraRuntime(layer, fused=False)), val)
        rounds.append(
            {
                "round": r,
                "fit": stats,
                "expert_mix": mix,
                "rollout_success": float(np.mean([e.success for e in eps])),
                "validation": val_stats,
            }
        )
        tqdm.write(f"AURA round {r}: {json.dumps(rounds[-1])}")
        layer, stats = fit_aura(seqs, replace(mcfg, seed=mcfg.seed + r + 1), f"AURA round {r + 1}")
    if cfg.calibration_iterations:
        # the gate's threshold set to the trained write budget, measured in closed loop on
        # the validation seeds (write counts only)
        calibration = calibrate_threshold_closed_loop(
            backbone,
            layer,
            mcfg.target_write_rate,
            val,
            task,
            iterations=cfg.calibration_iterations,
        )
        layer = with_threshold(layer, calibration["threshold"])
        report["threshold_calibration"] = calibration
        tqdm.write(f"threshold calibration: {json.dumps(calibration)}")
    final = closed_loop(task, ChunkAgent(backbone, AuraRuntime(layer, fused=False)), val)
    rounds.append({"round": cfg.rounds, "fit": stats, "validation": final})
    tqdm.write(f"AURA final: {json.dumps(rounds[-1])}")
    save_aura(layer, out / "aura")
    report["aura"] = rounds
    report["aura_sequences"] = len(seqs)
    report["aura_seconds"] = round(time.time() - t0, 1)
    return MemoryStage(backbone, task, seqs, unshaped, seeds, val)


def train_kv_step(out: Path, stage: MemoryStage, cfg: ArmTrainConfig, report: dict) -> None:
    """Step 5: the always-write KV arm on the memory data -> OUT/kv."""
    from aura_mem_ros.core.kv import save_kv

    t1 = time.time()
    kv, report["kv"] = train_kv_arm(
        stage.backbone, stage.task, stage.seqs, stage.seeds, cfg, stage.val
    )
    save_kv(kv, out / "kv")
    report["kv_seconds"] = round(time.time() - t1, 1)


def aura_rollouts(task, backbone, layer, seeds: _Seeds, cfg: ArmTrainConfig, r: int):
    """DAgger round ``r``'s episodes, driven by the gated layer (expert chunks mixed in at the
    round's rate) -> (the mix, the episodes)."""
    from aura_mem_dev.arm.data import collect
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    mix = cfg.expert_mix[r] if r < len(cfg.expert_mix) else 0.0
    runtime = AuraRuntime(layer, gate="learned", fused=False)
    eps = collect(
        task,
        seeds.take(cfg.episodes_per_round),
        lambda s: agent_driver(ChunkAgent(backbone, runtime), mix, s),
        progress=f"AURA rollouts {r}",
    )
    return mix, eps


def train_kv_arm(backbone, task, seqs, seeds: _Seeds, cfg: ArmTrainConfig, val: list[int]):
    """Step 4: the always-write KV arm on ``seqs`` (the memory data), then one round of its
    own rollouts (``cfg.kv_round_episodes`` seeds from ``seeds``) and a refit on everything;
    -> (model, report entry with the fit and the closed-loop validation)."""
    from aura_mem_dev.arm.data import collect
    from aura_mem_dev.arm.memory import MemoryTrainConfig, fit_kv
    from aura_mem_ros.core.kv import KVRuntime
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    mcfg = cfg.memory if isinstance(cfg.memory, MemoryTrainConfig) else MemoryTrainConfig()
    kv, _ = fit_kv(seqs, mcfg, "KV round 0")
    eps = collect(
        task,
        seeds.take(cfg.kv_round_episodes),
        lambda s: agent_driver(ChunkAgent(backbone, KVRuntime(kv)), cfg.kv_round_expert_mix, s),
        progress="KV rollouts",
    )
    seqs.add(backbone.net, eps)
    kv, kv_stats = fit_kv(seqs, replace(mcfg, seed=mcfg.seed + 100), "KV round 1")
    kv_val = closed_loop(task, ChunkAgent(backbone, KVRuntime(kv)), val)
    tqdm.write(f"KV final: {kv_val}")
    return kv, {"fit": kv_stats, "validation": kv_val}


def retrain_kv_only(out: Path, cfg: ArmTrainConfig) -> dict:
    """``--only-kv``: rebuild OUT/kv alone, keeping the backbone and OUT/aura.

    The memory data is step 2-3's, same seeds: noisy expert demos, rollouts of the frozen
    policy, then ``cfg.rounds`` rounds of gated rollouts (expert mix as the recipe); those
    are driven by the SHIPPED AURA layer (the full recipe drives them with its round-r layer,
    which is not kept). Then step 4 unchanged. -> the report entry (also written into
    OUT/train_report.json's ``kv``)."""
    from aura_mem_dev.arm.data import collect, expert_driver
    from aura_mem_dev.arm.sequences import ArmSequences
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.kv import save_kv
    from aura_mem_ros.sim.arm.env import ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    t0 = time.time()
    task = ArmTaskConfig(image_size=cfg.image_size)
    backbone = ArmMiniBackbone(out)
    seeds = _Seeds(AURA_SEED_BASE + cfg.seed * 10_000)
    val = list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + cfg.validation_episodes))
    seqs = ArmSequences()
    demos = seeds.take(cfg.demo_episodes)
    seqs.add(
        backbone.net,
        collect(task, demos, lambda s: expert_driver(), noise=cfg.noise, progress="demos"),
    )
    base = seeds.take(cfg.base_episodes)
    seqs.add(
        backbone.net,
        collect(task, base, lambda s: agent_driver(ChunkAgent(backbone), 0.0, s), progress="base"),
    )
    layer = load_aura(out / "aura")
    for r in range(cfg.rounds):
        _, eps = aura_rollouts(task, backbone, layer, seeds, cfg, r)
        seqs.add(backbone.net, eps)
    kv, entry = train_kv_arm(backbone, task, seqs, seeds, cfg, val)
    save_kv(kv, out / "kv")
    entry["note"] = (
        "produced by `python -m aura_mem_dev.arm.train --only-kv` (core.kv.KVMemory); the "
        "gated rollouts of its data were driven by the shipped AURA layer"
    )
    report_path = out / "train_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["kv"] = entry
    report["kv_seconds"] = round(time.time() - t0, 1)
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return entry


@dataclass(frozen=True)
class Recipe:
    """Everything ``make train-arm`` runs; ``--quick`` shrinks it for a smoke test."""

    backbone: object = None  # BCConfig
    memory: ArmTrainConfig = field(default_factory=ArmTrainConfig)
    gate: object = None  # counterfactual.CounterfactualGateConfig; None = its defaults
    never_reset: object = None  # never_reset.ArmNeverResetConfig; None = its defaults


def quick_recipe() -> Recipe:
    from aura_mem_dev.arm.bc import BCConfig
    from aura_mem_dev.arm.counterfactual import CounterfactualGateConfig
    from aura_mem_dev.arm.memory import MemoryTrainConfig
    from aura_mem_dev.arm.never_reset import quick_config as never_reset_quick

    return Recipe(
        backbone=BCConfig(
            demo_episodes=8,
            dagger_rounds=1,
            dagger_episodes=2,
            epochs_first=1,
            epochs_round=1,
            eval_episodes=2,
            image_size=32,
        ),
        memory=ArmTrainConfig(
            image_size=32,
            demo_episodes=4,
            base_episodes=2,
            rounds=1,
            episodes_per_round=2,
            kv_round_episodes=2,
            validation_episodes=2,
            calibration_iterations=2,
            memory=MemoryTrainConfig(iterations=4, explore_iterations=4, batch_size=4),
        ),
        gate=CounterfactualGateConfig(
            iterations=2,
            batch_size=4,
            demo_episodes=4,  # as the memory recipe: its episodes are reused
            base_episodes=2,
            rollout_episodes=2,
            validation_episodes=2,
            calibration_iterations=2,
            # the never-reset options (off in the full recipe) run here too
            stream_fraction=0.5,
            calibrate_never_reset=True,
            follow_budget_every=1,
        ),
        never_reset=never_reset_quick(),
    )


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
    parser.add_argument("--quick", action="store_true", help="a tiny smoke-test recipe")
    parser.add_argument(
        "--only-kv",
        action="store_true",
        help="retrain only OUT/kv (step 4 on step 2-3's data and seeds); keep the rest",
    )
    parser.add_argument(
        "--only-never-reset",
        action="store_true",
        help="train only OUT/aura_never_reset (the reset_policy: never layer) on OUT's backbone",
    )
    parser.add_argument(
        "--skip-never-reset",
        action="store_true",
        help="skip step 6 (OUT/aura_never_reset, the reset_policy: never layer)",
    )
    parser.add_argument(
        "--never-reset-log",
        type=Path,
        default=Path("build/train-arm-never-reset.log"),
        help="where step 6's process writes its progress",
    )
    parser.add_argument(
        "--data-cache",
        type=Path,
        default=None,
        help="--only-never-reset: a torch file keeping its demo/base sequences between runs",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the machine is shared; one thread is also reproducible
    if args.only_never_reset:
        from aura_mem_dev.arm.never_reset import ArmNeverResetConfig, quick_config, train_and_save

        cfg = quick_config() if args.quick else ArmNeverResetConfig()
        record = train_and_save(args.out, args.out, cfg, args.data_cache)
        print(f"never-reset layer -> {args.out}: best {json.dumps(record['best_validation'])}")
        return 0
    if args.only_kv:
        recipe = quick_recipe() if args.quick else Recipe()
        entry = retrain_kv_only(args.out, recipe.memory)
        print(f"KV arm -> {args.out / 'kv'}: {json.dumps(entry)}")
        return 0
    from aura_mem_dev.arm.bc import BCConfig, train_backbone
    from aura_mem_dev.arm.never_reset import ArmNeverResetConfig

    recipe = quick_recipe() if args.quick else Recipe(BCConfig(), never_reset=ArmNeverResetConfig())
    out: Path = args.out
    report: dict = {"recipe": json.loads(json.dumps(asdict(recipe), default=str))}
    t0 = time.time()
    if not args.skip_backbone:
        report["backbone"] = train_backbone(out, recipe.backbone)
        report["backbone_seconds"] = round(time.time() - t0, 1)
    never_reset = None
    if not args.skip_never_reset:
        never_reset = NeverResetProcess(out, recipe.never_reset, args.never_reset_log)
    try:
        train_memory_layers(out, recipe, report, never_reset)
        if never_reset is not None:
            report["never_reset"] = never_reset.join()
    finally:
        if never_reset is not None:
            never_reset.stop()
    report["total_seconds"] = round(time.time() - t0, 1)
    (out / "train_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"trained in {report['total_seconds']} s -> {out}")
    return 0


def train_memory_layers(out: Path, recipe: Recipe, report: dict, never_reset=None) -> None:
    """Steps 2-5 on OUT's backbone; ``never_reset`` (a ``NeverResetProcess``) is released
    once OUT/aura is final (after the refit) and trains while the KV arm does."""
    from aura_mem_dev.arm.counterfactual import CounterfactualGateConfig, refit_gate

    stage = train_aura_layer(out, recipe.memory, report)
    # the straight-through gate's probabilities hug its threshold; refit the gate alone, on
    # the same episodes (its demos and base rollouts are step 2's seeds: reused, not re-run)
    gate_cfg = recipe.gate if recipe.gate is not None else CounterfactualGateConfig()
    mem = recipe.memory
    same_episodes = (gate_cfg.seed, gate_cfg.demo_episodes, gate_cfg.base_episodes) == (
        mem.seed,
        mem.demo_episodes,
        mem.base_episodes,
    ) and gate_cfg.noise == mem.noise
    unshaped = stage.seqs.head(stage.unshaped) if same_episodes else None
    entry = refit_gate(out, gate_cfg, unshaped=unshaped)
    entry["reused_step2_episodes"] = same_episodes
    report["counterfactual_gate"] = entry
    report["threshold_calibration"] = entry["calibration"]
    if never_reset is not None:
        never_reset.release()
    train_kv_step(out, stage, recipe.memory, report)


class NeverResetProcess:
    """Step 6 (never_reset.py) in a second process, one thread, so that it uses the second
    core: it starts after the backbone, collects its own episodes, waits until OUT/aura is
    final (``release``), then trains OUT/aura_never_reset while the main process trains the
    KV arm. Its output goes to ``log`` (its progress would interleave with this one's)."""

    def __init__(self, out: Path, cfg, log: Path) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # a fresh interpreter: no forked MuJoCo/GL state
        self.ready = ctx.Event()
        self.out, self.log = out, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.process = ctx.Process(
            target=_never_reset_main,
            args=(str(out), cfg, self.ready, str(log), os.getpid()),
            name="train-arm-never-reset",
            daemon=True,
        )
        self.process.start()
        tqdm.write(f"never-reset layer: training in process {self.process.pid}, log {log}")

    def release(self) -> None:
        self.ready.set()

    def join(self) -> dict:
        """Wait for it -> its report's summary; raises if it failed."""
        self.process.join()
        if self.process.exitcode != 0:
            raise RuntimeError(
                f"never-reset training exited with {self.process.exitcode}; see {self.log}"
            )
        record = json.loads((self.out / "never_reset_train_report.json").read_text())
        keys = ("seconds", "data_seconds", "waited_seconds", "train_seconds", "best_validation")
        return {k: record.get(k) for k in keys} | {"log": str(self.log)}

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def _never_reset_main(out: str, cfg, ready, log: str, parent: int) -> None:
    """The second process: never_reset.train_and_save, waiting for ``ready`` before it reads
    OUT/aura (it gives up if the parent process is gone)."""
    with open(log, "w", buffering=1) as stream:
        sys.stdout = sys.stderr = stream
        torch.set_num_threads(1)
        from aura_mem_dev.arm.never_reset import train_and_save

        def wait_for_source() -> None:
            while not ready.wait(5.0):
                if os.getppid() != parent:
                    raise SystemExit("make train-arm exited before OUT/aura was final")

        train_and_save(Path(out), Path(out), cfg, wait_for_source=wait_for_source)


if __name__ == "__main__":
    sys.exit(main())
