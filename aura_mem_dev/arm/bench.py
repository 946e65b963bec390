"""``make bench-arm``: the arm task's closed-loop panel, a never-reset run, sim/render rates.

    python -m aura_mem_dev.arm.bench [--episodes 120] [--never-reset 100] [--model-dir DIR]
    python -m aura_mem_dev.arm.bench --render-only   # arm.md from arm.json (report/arm.py)

Every arm drives the same frozen ``arm_mini`` through the in-process chunk loop (the calls
the ROS node makes, without DDS) on held-out seeds (>= 1,000,000; training used less):

    memoryless   the frozen backbone alone
    always_kv    core.kv.KVMemory (the one KV baseline), appends every chunk request (256 B)
    always_aura  the trained AURA layer with its gate forced on
    aura         the trained AURA layer, learned gate
    random       the AURA layer, Bernoulli writes at aura's measured rate
    periodic     the AURA layer, every round(1/rate) chunk requests at aura's rate

One memory step = one chunk request (every ``execute_steps`` = 8 control steps). Success =
the block ends on the cued pad; completed = on any pad. Wilson 95% intervals. The
never-reset run plays back-to-back episodes with the aura arm and never clears its memory.
Output: docs/results/arm.json (the MiniGrid closed-loop panel's shape plus arm fields) and
docs/results/arm.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aura_mem_dev.bench.closed_loop import wilson_interval
from aura_mem_dev.training.seeds import EVAL_SEED_BASE, check_eval_seed

ARMS: tuple[str, ...] = ("memoryless", "always_kv", "always_aura", "aura", "random", "periodic")
NEVER_RESET_SEED_OFFSET = 1_100_000  # disjoint from the panel's seeds


def arm_result(eps: list, n: int) -> dict:
    succ = sum(e.success for e in eps)
    done = sum(e.completed for e in eps)
    chunks = sum(e.chunks for e in eps)
    steps = sum(e.steps for e in eps)
    writes = sum(e.writes for e in eps)
    return {
        "success": succ / n,
        "ci95": list(wilson_interval(succ, n)),
        "successes": succ,
        "completed": done / n,
        "completed_ci95": list(wilson_interval(done, n)),
        "writes_per_episode": writes / n,
        "steps_per_episode": steps / n,
        "chunks_per_episode": chunks / n,
        "writes_per_step": writes / max(1, chunks),  # per memory step (chunk request)
        "cue_write_fraction": float(
            np.mean([any(c in e.cue_chunks for c in e.write_chunks) for e in eps])
        ),
    }


def per_episode(eps: list) -> list[dict]:
    return [
        {
            "seed": e.seed,
            "success": e.success,
            "completed": e.completed,
            "cue_pad": e.cue_pad,
            "placed_pad": e.placed_pad,
            "steps": e.steps,
            "chunks": e.chunks,
            "writes": e.writes,
            "write_chunks": e.write_chunks,
            "cue_chunks": e.cue_chunks,
            "flicker_chunks": e.flicker_chunks,
        }
        for e in eps
    ]


def make_runtime(arm: str, root: Path, layer, rate: float | None, seed: int):
    from aura_mem_ros.core.kv import KVRuntime, load_kv
    from aura_mem_ros.core.runtime import AuraRuntime

    if arm == "memoryless":
        return None
    if arm == "always_kv":
        return KVRuntime(load_kv(root / "kv"))
    if arm in ("random", "periodic"):
        return AuraRuntime(layer, gate=arm, threshold=max(rate or 0.0, 1e-6), seed=seed)
    return AuraRuntime(layer, gate="always" if arm == "always_aura" else "learned")


def run_panel(
    episodes: int,
    seed_offset: int,
    arms: tuple[str, ...],
    model_dir: Path,
    execute_steps: int = 8,
    image_size: int = 64,
) -> dict:
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    check_eval_seed(seed_offset)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {list(ARMS)}")
    backbone = ArmMiniBackbone(model_dir)
    layer = load_aura(model_dir / "aura")
    task = ArmTaskConfig(image_size=image_size)
    env = ArmEnv(task)
    seeds = [seed_offset + i for i in range(episodes)]
    results: dict[str, dict] = {}
    episodes_by_arm: dict[str, list[dict]] = {}
    rate: float | None = None
    # aura runs first: random/periodic are matched to its measured writes per chunk request.
    for arm in sorted(arms, key=lambda a: 0 if a == "aura" else 1):
        if arm in ("random", "periodic") and rate is None:
            probe = make_runtime("aura", model_dir, layer, None, 0)
            eps = [run_episode(env, ChunkAgent(backbone, probe), s, execute_steps) for s in seeds]
            rate = sum(e.writes for e in eps) / max(1, sum(e.chunks for e in eps))
        eps = []
        t0 = time.time()
        runtime = make_runtime(arm, model_dir, layer, rate, 0)
        agent = ChunkAgent(backbone, runtime)
        for seed in seeds:
            if hasattr(runtime, "seed"):
                runtime.seed = seed  # a fresh random write pattern per episode, reproducibly
            eps.append(run_episode(env, agent, seed, execute_steps))
        results[arm] = arm_result(eps, episodes) | {"seconds": round(time.time() - t0, 1)}
        episodes_by_arm[arm] = per_episode(eps)
        print(f"{arm:12s} {json.dumps({k: v for k, v in results[arm].items()})}", flush=True)
        if arm == "aura":
            rate = results[arm]["writes_per_step"]
    env.close()
    return {
        "env": "AuraArmPads-v0",
        "episodes": episodes,
        "seed_offset": seed_offset,
        "max_steps": task.max_steps,
        "execute_steps": execute_steps,
        "image_size": image_size,
        "budget_writes_per_step": rate,
        "aura_threshold": float(layer.config.threshold),  # the learned gate's, as shipped
        "arms": {a: results[a] for a in arms},
        "per_episode": episodes_by_arm,
    }


def never_reset_layer(model_dir: Path) -> str:
    """The layer folder the node serves under ``reset_policy: never`` with ``aura_checkpoint:
    bundled``: the never-reset layer where ``model_dir`` holds one, else the per-episode one."""
    from aura_mem_ros.backbones.base import AURA_DIR, NEVER_RESET_AURA_DIR, bundled_layer_dir

    return NEVER_RESET_AURA_DIR if bundled_layer_dir(model_dir, True) else AURA_DIR


def run_never_reset(
    episodes: int, seed_offset: int, model_dir: Path, layer_dir: str | None = None
) -> dict:
    """Back-to-back episodes, one AURA memory that is never cleared (a robot's day);
    ``layer_dir`` None: the layer ``reset_policy: never`` would serve (``never_reset_layer``)."""
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    check_eval_seed(seed_offset)
    layer_dir = layer_dir or never_reset_layer(model_dir)
    runtime = AuraRuntime(load_aura(model_dir / layer_dir), gate="learned")
    agent = ChunkAgent(ArmMiniBackbone(model_dir), runtime)
    env = ArmEnv(ArmTaskConfig())
    agent.reset()  # once, before the first episode only
    eps = [run_episode(env, agent, seed_offset + i, reset_agent=False) for i in range(episodes)]
    env.close()
    out = arm_result(eps, episodes)
    out["state_bytes"] = runtime.state_nbytes
    out["memory_steps"] = runtime.steps
    return {
        "episodes": episodes,
        "seed_offset": seed_offset,
        "layer": layer_dir,
        "result": out,
        "per_episode": per_episode(eps),
    }


def measure_rates(sizes: tuple[int, ...] = (32, 64, 96, 128), seeds: int = 3) -> dict:
    """Physics (control steps/s, no camera), camera frames/s per size, backbone ms/chunk."""
    from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
    from aura_mem_ros.sim.arm.expert import expert_action

    env = ArmEnv(ArmTaskConfig(image_size=64))
    steps, t0 = 0, time.perf_counter()
    sim_seconds = 0.0
    for s in range(seeds):
        env.reset(EVAL_SEED_BASE + s)
        while not env.state.done:
            action = expert_action(env)
            t1 = time.perf_counter()
            env.step(action)
            sim_seconds += time.perf_counter() - t1
            steps += 1
    expert_seconds = time.perf_counter() - t0 - sim_seconds
    physics = env.physics_steps
    env.close()
    render = {}
    for size in sizes:
        e = ArmEnv(ArmTaskConfig(image_size=size))
        e.reset(EVAL_SEED_BASE)
        e.render()  # context creation is not part of the per-frame cost
        n, spent = 100, 0.0
        for _ in range(n):
            e.step(np.zeros(7, dtype=np.float32))  # a new scene each frame, not timed
            t0 = time.perf_counter()
            e.render()
            spent += time.perf_counter() - t0
        render[str(size)] = round(n / spent, 1)
        e.close()
    return {
        "control_steps_per_s": round(steps / sim_seconds, 1),
        "physics_steps_per_s": round(physics / sim_seconds, 1),
        "expert_ms_per_action": round(1e3 * expert_seconds / max(1, steps), 3),
        "render_frames_per_s": render,
    }


def backbone_ms(model_dir: Path, n: int = 200) -> float:
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.backbones.base import Observation
    from aura_mem_ros.sim.arm.env import INSTRUCTION

    bb = ArmMiniBackbone(model_dir)
    obs = Observation(
        (np.zeros((64, 64, 3), np.uint8),), INSTRUCTION, np.zeros(8, dtype=np.float32)
    )
    bb.step(obs)
    t0 = time.perf_counter()
    for _ in range(n):
        bb.step(obs)
    return round(1e3 * (time.perf_counter() - t0) / n, 3)


def episode_picture(panel: dict, model_dir: Path, path: Path) -> Path | None:
    """Re-run one aura episode of the panel (a side pad, success, wrote) and draw it."""
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.core.runtime import AuraRuntime
    from aura_mem_ros.demo.arm_plot import plot_arm_episode
    from aura_mem_ros.sim.arm.env import ArmEnv, ArmTaskConfig
    from aura_mem_ros.sim.arm.loop import ChunkAgent, run_episode

    eps = panel["per_episode"].get("aura", [])
    pick = next((e for e in eps if e["success"] and e["writes"] and e["cue_pad"] != 1), None)
    pick = pick or next((e for e in eps if e["writes"]), None)
    if pick is None:
        return None
    execute = panel["execute_steps"]
    agent = ChunkAgent(ArmMiniBackbone(model_dir), AuraRuntime(load_aura(model_dir / "aura")))
    env = ArmEnv(ArmTaskConfig(image_size=panel["image_size"]))
    ep = run_episode(env, agent, pick["seed"], execute, keep_frames=True)
    env.close()
    steps = [
        {
            "step": i * execute,
            "wrote": i in ep.write_chunks,
            "cue_visible": i in ep.cue_chunks,
            "flicker_visible": i in ep.flicker_chunks,
        }
        for i in range(ep.chunks)
    ]
    placed = "no pad" if ep.placed_pad is None else f"pad {ep.placed_pad}"
    title = (
        f"aura, seed {ep.seed}: cue pad {ep.cue_pad}, block on {placed} -> "
        f"{'success' if ep.success else 'failure'}; {ep.writes} writes in {ep.chunks} chunks"
    )
    return plot_arm_episode(ep.frames, steps, title, path)


def main(argv: list[str] | None = None) -> int:
    from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--episodes", type=int, default=120)
    ap.add_argument("--seed-offset", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--never-reset", type=int, default=100, help="0 = skip")
    ap.add_argument(
        "--never-reset-layer",
        default=None,
        help="the never-reset run's layer folder (default: what reset_policy: never serves, "
        "aura_never_reset where --model-dir holds one, else aura)",
    )
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--out", type=Path, default=Path("docs/results/arm.json"))
    ap.add_argument("--md", type=Path, default=Path("docs/results/arm.md"))
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite the markdown from --out's JSON"
    )
    ap.add_argument(
        "--update",
        action="store_true",
        help="re-run only --arms (and the never-reset run unless --never-reset 0) and keep "
        "--out's other entries (after retraining one arm's weights); the page names them",
    )
    args = ap.parse_args(argv)
    if args.render_only:
        write_md(json.loads(args.out.read_text()), args.model_dir, args.md)
        return 0
    torch.set_num_threads(1)
    t0 = time.time()
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    panel = run_panel(args.episodes, args.seed_offset, arms, args.model_dir)
    never = None
    if args.never_reset:
        never = run_never_reset(
            args.never_reset, NEVER_RESET_SEED_OFFSET, args.model_dir, args.never_reset_layer
        )
        print(f"never-reset: {json.dumps(never['result'])}", flush=True)
    rates = measure_rates()
    rates["backbone_ms"] = backbone_ms(args.model_dir)
    train, backbone_meta, _ = training_records(args.model_dir)
    panel["never_reset"] = never
    if args.update and args.out.is_file():
        panel = merged_panel(json.loads(args.out.read_text()), panel, arms)
    panel["rates"] = rates
    panel["train_seconds"] = train.get("total_seconds") if train else None
    panel["backbone_train_seconds"] = backbone_meta.get("seconds") if backbone_meta else None
    panel["seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(panel, indent=2) + "\n")
    if "aura" in arms or not args.update:
        png = episode_picture(panel, args.model_dir, args.out.with_name("arm_episode.png"))
        panel["picture"] = None if png is None else png.name
    args.out.write_text(json.dumps(panel, indent=2) + "\n")
    write_md(panel, args.model_dir, args.md)
    return 0


def merged_panel(old: dict, new: dict, arms: tuple[str, ...]) -> dict:
    """``old`` with ``new``'s arms (and never-reset run, if it has one) put in; the arms
    re-run are listed under ``updated_arms`` (with the earlier updates)."""
    if (old["episodes"], old["seed_offset"]) != (new["episodes"], new["seed_offset"]):
        raise ValueError("--update needs the same --episodes and --seed-offset as --out's run")
    merged = dict(old)
    merged["arms"] = {**old["arms"], **new["arms"]}
    merged["arms"] = {a: merged["arms"][a] for a in ARMS if a in merged["arms"]}
    merged["per_episode"] = {**old["per_episode"], **new["per_episode"]}
    if new.get("never_reset") is not None:
        merged["never_reset"] = new["never_reset"]
    merged["updated_arms"] = sorted({*old.get("updated_arms", []), *arms})
    return merged


def training_records(model_dir: Path) -> tuple[dict | None, dict | None, dict | None]:
    """The memory layers' train_report.json, the backbone's config.json meta and the
    never-reset layer's never_reset_train_report.json, each if there is one."""
    report, config = model_dir / "train_report.json", model_dir / "config.json"
    never = model_dir / "never_reset_train_report.json"
    train = json.loads(report.read_text()) if report.is_file() else None
    meta = json.loads(config.read_text()).get("meta") if config.is_file() else None
    never_train = json.loads(never.read_text()) if never.is_file() else None
    return train, meta, never_train


def write_md(panel: dict, model_dir: Path, md_path: Path) -> None:
    from aura_mem_dev.report.arm import render_markdown

    md = render_markdown(panel, *training_records(model_dir))
    if panel.get("picture"):
        md += f"\n![one aura episode, write chunks framed red]({panel['picture']})\n"
    md_path.write_text(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
