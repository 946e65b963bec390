"""Never-reset diagnostics for an arm AURA layer, on validation seeds (900,000..).

    python -m aura_mem_dev.arm.never_reset_probe [--model-dir DIR] [--episodes 40]
        [--oracle-cue-writes] [--out FILE.json] [--layer aura|aura_never_reset]
        [--seed-offset N]

Plays the same seeds twice with the shipped gate: once with the memory cleared before every
episode (reset), once back to back with one memory cleared only before the first (never
reset), and reports success, completion, writes per episode and the share of episodes that
wrote while the cue was lit. Used to choose between refits without touching the benchmark's
seeds (>= 1,000,000).

``--oracle-cue-writes`` is an EVALUATION-ONLY diagnostic, never a training signal: the
writes are forced on exactly the chunks whose frame shows the cue (simulator state) and off
elsewhere. It measures what the memory itself can do when the gate is perfect: whether,
with the layer's projections, one memory that already holds a previous episode's cue lets
the read follow the newest cue. If even this fails in never-reset mode, no gate (refit or
not) can fix never-reset; the memory projections must change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

VALIDATION_SEED_BASE = 900_000  # as aura_mem_dev.arm.train's validation


class OracleCueAgent:
    """Backbone + AURA layer whose writes are forced on the cue-lit chunks (diagnostic)."""

    def __init__(self, backbone, layer, env) -> None:
        self.backbone, self.layer, self.env = backbone, layer, env
        self.state = layer.init_state(1)

    def reset(self) -> None:
        self.backbone.reset()
        self.state = self.layer.init_state(1)

    @torch.no_grad()
    def act(self, obs):
        from aura_mem_ros.sim.arm.loop import ChunkStep, to_observation

        out = self.backbone.step(to_observation(obs))
        x = torch.as_tensor(out.features, dtype=torch.float32)[None]
        base = torch.as_tensor(out.action, dtype=torch.float32)[None]
        write = torch.tensor([1.0 if self.env.cue_visible() else 0.0])
        step = self.layer.step(x, base, self.state, write=write)
        self.state = step.state
        chunk = step.action[0].numpy().astype(np.float32)
        return ChunkStep(chunk, bool(write[0]), out.features, out.action)


def probe(
    model_dir: Path,
    episodes: int,
    oracle: bool = False,
    layer_dir: str = "aura",
    seed_offset: int = VALIDATION_SEED_BASE,
) -> dict:
    from aura_mem_dev.bench.closed_loop import wilson_interval
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    backbone = ArmMiniBackbone(model_dir)
    layer = load_aura(model_dir / layer_dir)
    env = ArmEnv(ArmTaskConfig(image_size=backbone.net.cfg.image_size))
    seeds = [seed_offset + i for i in range(episodes)]
    out: dict = {"model_dir": str(model_dir), "layer": layer_dir, "episodes": episodes}
    out |= {"seed_offset": seed_offset, "oracle_cue_writes": oracle}
    for mode in ("reset", "never_reset"):
        agent = (
            OracleCueAgent(backbone, layer, env)
            if oracle
            else ChunkAgent(backbone, AuraRuntime(layer, fused=False))
        )
        agent.reset()
        eps = [run_episode(env, agent, s, reset_agent=mode == "reset") for s in seeds]
        successes = sum(e.success for e in eps)
        out[mode] = {
            "success": successes / len(eps),
            "successes": successes,
            "ci95": list(wilson_interval(successes, len(eps))),
            "completed": float(np.mean([e.completed for e in eps])),
            "writes_per_episode": float(np.mean([e.writes for e in eps])),
            "cue_write_fraction": float(
                np.mean([any(c in e.cue_chunks for c in e.write_chunks) for e in eps])
            ),
        }
    env.close()
    return out


def main(argv: list[str] | None = None) -> int:
    from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--oracle-cue-writes", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--layer",
        default="aura",
        help="the layer folder in --model-dir (aura_never_reset: the reset_policy: never one)",
    )
    ap.add_argument(
        "--seed-offset",
        type=int,
        default=VALIDATION_SEED_BASE,
        help="first seed (validation: 900,000..; the benchmark's held-out seeds: >= 1,000,000)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = probe(
        args.model_dir, args.episodes, args.oracle_cue_writes, args.layer, args.seed_offset
    )
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
