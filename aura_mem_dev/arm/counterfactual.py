"""The arm gate refitted by the counterfactual objective (issue 15): last step of train-arm.

    python -m aura_mem_dev.arm.counterfactual [--model-dir DIR] [--iterations 400]

Why: the straight-through trainer (``memory.train_arm_memory``) leaves the arm gate's write
probabilities within a few hundredths of 0.5 on every chunk, so whether the cue chunk
crosses the threshold decides the episode (arm.md: aura wrote while the cue was lit in 46 of
60 episodes). ``core.objectives.CounterfactualGate`` fits the gate (BCE) to the measured
utility of each write instead: benefit_t = the sequence's summed L1 chunk loss without the
write at t minus with it (exact: arm sequences are ~30 memory steps), every other decision
held, positive where it exceeds the budget controller's price.

What: OUT/aura (the straight-through layer, threshold already calibrated) is loaded; only
the gate (``gate_*`` parameters) is trained, the memory projections and the residual head
stay as they are (measured: fitting the whole layer this way broke the manipulation,
completed 0.98 -> 0.63 on the benchmark seeds). Data = the recipe's memory data, same
seeds: noisy expert demos, rollouts of the frozen policy alone and rollouts of the loaded
gated layer (expert chunk mix 0.3), every chunk relabelled by the expert (action labels
only, no simulator state, no oracle schedule). The threshold is then calibrated in closed
loop to the write budget on the validation seeds (write counts only; ``calibrate.py``).
Result: OUT/aura and ``train_report.json`` (``counterfactual_gate``,
``threshold_calibration``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class CounterfactualGateConfig:
    iterations: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    target_write_rate: float = 0.05  # writes per chunk request, as the straight-through stage
    demo_episodes: int = 300  # as ArmTrainConfig
    base_episodes: int = 150
    rollout_episodes: int = 150
    rollout_expert_mix: float = 0.3
    noise: float = 0.3
    validation_episodes: int = 40
    calibration_iterations: int = 7
    seed: int = 1


def refit_gate(model_dir: Path, cfg: CounterfactualGateConfig) -> dict:
    """Load ``model_dir``/aura, refit its gate, calibrate, save; -> the report entry."""
    from aura_mem_dev.arm.calibrate import calibrate_threshold_closed_loop, with_threshold
    from aura_mem_dev.arm.data import collect, expert_driver
    from aura_mem_dev.arm.sequences import ArmSequences
    from aura_mem_dev.arm.train import AURA_SEED_BASE, VALIDATION_SEED_BASE, agent_driver
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura, save_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.core.train import CounterfactualGate, Trainer, TrainerConfig
    from aura_mem_ros.sim.arm.env import ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent

    t0 = time.time()
    backbone = ArmMiniBackbone(model_dir)
    task = ArmTaskConfig(image_size=backbone.net.cfg.image_size)
    # the memory recipe's seeds: demos, then the frozen policy's rollouts, then the gated ones
    first = AURA_SEED_BASE + cfg.seed * 10_000
    demo = list(range(first, first + cfg.demo_episodes))
    base = list(range(demo[-1] + 1, demo[-1] + 1 + cfg.base_episodes))
    roll = list(range(base[-1] + 1, base[-1] + 1 + cfg.rollout_episodes))
    runtime = AuraRuntime(load_aura(model_dir / "aura"), gate="learned", fused=False)
    seqs = ArmSequences()
    seqs.add(
        backbone.net,
        collect(task, demo, lambda s: expert_driver(), noise=cfg.noise, progress="demos"),
    )
    seqs.add(
        backbone.net,
        collect(task, base, lambda s: agent_driver(ChunkAgent(backbone), 0.0, s), progress="base"),
    )
    seqs.add(
        backbone.net,
        collect(
            task,
            roll,
            lambda s: agent_driver(ChunkAgent(backbone, runtime), cfg.rollout_expert_mix, s),
            progress="gated rollouts",
        ),
    )
    data_seconds = time.time() - t0

    layer = load_aura(model_dir / "aura").train()
    for name, param in layer.named_parameters():
        param.requires_grad_(name.startswith("gate_"))  # the head and memory stay as trained
    objective = CounterfactualGate(horizon=None)  # exact benefit over the whole sequence
    trainer_cfg = TrainerConfig(
        iterations=cfg.iterations,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        budget=cfg.target_write_rate,
    )
    source = seqs.sampler(cfg.batch_size, cfg.seed)
    t1 = time.time()
    result = Trainer(layer, lambda size, gen: source(0), objective, trainer_cfg).train()
    train_seconds = time.time() - t1
    layer.eval()
    val = list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + cfg.validation_episodes))
    calibration = calibrate_threshold_closed_loop(
        backbone,
        layer,
        cfg.target_write_rate,
        val,
        task,
        iterations=cfg.calibration_iterations,
    )
    save_aura(with_threshold(layer, calibration["threshold"]), model_dir / "aura")
    tail = result.history[-max(1, cfg.iterations // 10) :]
    return {
        "config": asdict(cfg),
        "objective": "CounterfactualGate(horizon=None), gate_* parameters only",
        "sequences": len(seqs),
        "final_gate_bce": sum(h["gate_loss"] for h in tail) / len(tail),
        "final_price": result.price,
        "data_seconds": round(data_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "calibration": calibration,
        "seconds": round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--iterations", type=int, default=CounterfactualGateConfig.iterations)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    entry = refit_gate(args.model_dir, CounterfactualGateConfig(iterations=args.iterations))
    update_report(args.model_dir, entry)
    print(json.dumps(entry["calibration"], indent=2))
    return 0


def update_report(model_dir: Path, entry: dict) -> None:
    report_path = model_dir / "train_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["counterfactual_gate"] = entry
    report["threshold_calibration"] = entry["calibration"]  # inside total_seconds below
    report["total_seconds"] = round(report.get("total_seconds", 0.0) + entry["seconds"], 1)
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
