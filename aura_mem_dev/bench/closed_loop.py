"""``aura-mem-bench closed-loop``: the MiniGrid-Memory closed-loop panel, in-process.

Every arm drives the same frozen ``mini`` policy through the same backbone/runtime calls the
ROS node makes (``sim.agent``), on evaluation seeds disjoint from every training seed:

    memoryless   the frozen policy alone
    always_kv    KV-cache memory residual, appends every step (256 bytes/step)
    always_aura  the trained AURA layer with its gate forced on
    aura         the trained AURA layer, learned gate
    random       the AURA layer, Bernoulli writes at aura's measured rate (budget-matched)
    periodic     the AURA layer, every round(1/rate) steps at aura's rate

Success intervals are Wilson 95% score intervals.

Reset mode (``--reset``, the default, or ``--no-reset``): with ``--reset`` every episode
starts from empty memory (runtime and backbone reset, as the simulator's ``~/reset_memory``
call does); with ``--no-reset`` the episodes run back to back and NOTHING is reset after the
runtime is built (memory and KV cache carry over, the backbone is not reset either: a
robot never calls reset, and every backbone here is stateless anyway). The two modes run the
same seeds, so a ``--reset`` and a ``--no-reset`` panel are matched arm by arm.

``--env`` takes one MiniGrid-Memory id, a comma-separated list, or ``mixed`` (S11, S13,
S17Random): a list is a stream that alternates its envs episode by episode (episode i runs
``envs[i % len(envs)]`` with seed ``seed_offset + i``). Per arm, besides the success rate:
the success of the first and last quarter of the episodes (drift), the bytes of memory state
held at the end (a KV cache grows by 256 bytes a step without resets) and the memory's own
per-step cost on a fresh runtime and at the end of the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aura_mem_dev.scale.panel import add_ray_arguments
from aura_mem_dev.training.seeds import EVAL_SEED_BASE, check_eval_seed

ARMS: tuple[str, ...] = ("memoryless", "always_kv", "always_aura", "aura", "random", "periodic")
DEFAULT_MAX_STEPS = 100  # the oracle needs <= 19 steps; a looping policy is cut here
MIXED_ENVS = ("MiniGrid-MemoryS11-v0", "MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS17Random-v0")
COST_SAMPLES = 200  # memory steps timed at the start and at the end of a run


def stream_envs(env: str) -> list[str]:
    """``mixed`` -> S11, S13, S17Random; ``a,b`` -> [a, b]; one id -> [id]."""
    if env == "mixed":
        return list(MIXED_ENVS)
    envs = [e.strip() for e in env.split(",") if e.strip()]
    if not envs:
        raise ValueError("--env names no environment")
    return envs


@dataclass(frozen=True)
class ArmResult:
    success: float
    ci95: tuple[float, float]
    writes_per_episode: float
    steps_per_episode: float
    writes_per_step: float
    successes: int
    # Drift over the run: episodes [0, n//4) and [n - n//4, n) (Wilson 95% intervals).
    first_quarter_success: float | None = None
    first_quarter_ci95: tuple[float, float] | None = None
    last_quarter_success: float | None = None
    last_quarter_ci95: tuple[float, float] | None = None
    final_state_bytes: int | None = None  # memory state held after the last episode
    # The memory's own select_action (no backbone), median ms, on a fresh runtime and at the
    # end of the run (a KV cache attends over everything it holds: it grows with the run).
    memory_step_ms_start: float | None = None
    memory_step_ms_end: float | None = None
    resets: int | None = None  # agent resets during the run: episodes (--reset) or 0
    # episodes in which the cue came into view at all (a policy that trusts a stale memory
    # may not turn back to look; then no write can store the new cue)
    cue_seen: float | None = None
    success_by_env: dict[str, list[int]] | None = None  # env -> [successes, episodes]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("ci95", "first_quarter_ci95", "last_quarter_ci95"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmResult:
        out = dict(data)
        for key in ("ci95", "first_quarter_ci95", "last_quarter_ci95"):
            if out.get(key) is not None:
                out[key] = tuple(out[key])
        return cls(**out)


# What differs between two runs of the same panel: wall time, and each arm's memory-step
# timings (measured on whichever process ran the arm's first and last episodes).
ARM_TIMING_FIELDS = ("memory_step_ms_start", "memory_step_ms_end")


def without_timing(panel_dict: dict[str, Any]) -> dict[str, Any]:
    """A panel's JSON dict without its timing fields (what two runs must agree on)."""
    out = {k: v for k, v in panel_dict.items() if k != "seconds"}
    out["arms"] = {
        arm: {k: v for k, v in fields.items() if k not in ARM_TIMING_FIELDS}
        for arm, fields in panel_dict["arms"].items()
    }
    return out


@dataclass
class Panel:
    """Every arm on the same seeds of one environment (docs/results/closed_loop_<env>.json)."""

    env: str
    episodes: int
    seed_offset: int
    max_steps: int
    budget_writes_per_step: float | None  # aura's measured rate (random/periodic run at it)
    arms: dict[str, ArmResult]
    per_episode: dict[str, list[dict[str, Any]]]  # seed, success, steps, writes, ...
    seconds: float | None = None
    reset_mode: str = "episode"  # "episode" (--reset) | "never" (--no-reset)
    envs: list[str] | None = None  # the stream's envs, episode i runs envs[i % len(envs)]
    model: str | None = None  # which backbone / AURA layer / KV arm ran (paths)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "env": self.env,
            "envs": self.envs if self.envs is not None else [self.env],
            "reset_mode": self.reset_mode,
            "episodes": self.episodes,
            "seed_offset": self.seed_offset,
            "max_steps": self.max_steps,
            "budget_writes_per_step": self.budget_writes_per_step,
            "model": self.model,
            "arms": {a: r.to_dict() for a, r in self.arms.items()},
            "per_episode": self.per_episode,
        }
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Panel:
        arms = {a: ArmResult.from_dict(r) for a, r in data["arms"].items()}
        return cls(**{**data, "arms": arms})


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval: well-behaved at 0/n and n/n, unlike the normal approximation."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default="MiniGrid-MemoryS13-v0",
        help="an env id, a comma-separated list (alternated episode by episode) or 'mixed' "
        f"({', '.join(MIXED_ENVS)})",
    )
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=EVAL_SEED_BASE,
        help=f"first evaluation seed (>= {EVAL_SEED_BASE}: training uses less)",
    )
    parser.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset")
    parser.add_argument(
        "--reset",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reset memory (and the KV cache) before every episode (default); --no-reset: "
        "one run, nothing reset between episodes",
    )
    parser.add_argument("--model-dir", default=None, help="default: the shipped models/mini")
    parser.add_argument(
        "--aura-checkpoint", default=None, help="AURA layer directory; default: <model-dir>/aura"
    )
    parser.add_argument(
        "--kv-checkpoint", default=None, help="KV arm directory; default: <model-dir>/kv"
    )
    parser.add_argument(
        "--no-episodes", action="store_true", help="leave the per-episode records out of --out"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output file")
    add_ray_arguments(parser)  # --ray [auto|ADDRESS|local]: shard episodes (scale/panel.py)


@dataclass(frozen=True)
class Models:
    """Where the frozen backbone, the AURA layer and the KV arm come from."""

    model_dir: Path
    aura: Path
    kv: Path

    @classmethod
    def resolve(
        cls, model_dir: str | None, aura: str | None = None, kv: str | None = None
    ) -> Models:
        from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR

        root = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        return cls(root, Path(aura) if aura else root / "aura", Path(kv) if kv else root / "kv")

    def describe(self) -> str:
        """Paths, with the shipped model dir written as ``models/mini`` (no machine paths)."""
        from aura_mem_ros.backbones.mini import DEFAULT_MODEL_DIR

        def name(path: Path) -> str:
            shipped = DEFAULT_MODEL_DIR.resolve()
            path = path.resolve()
            if path == shipped or shipped in path.parents:
                return str(Path("models/mini") / path.relative_to(shipped))
            return str(path)

        return f"backbone {name(self.model_dir)}, aura {name(self.aura)}, kv {name(self.kv)}"


def trained_backbone_args(layer_dir: Path) -> dict[str, Any]:
    """The backbone arguments ``aura-mem-train`` trained the layer in ``layer_dir`` under
    (its model_card.json; {} for a layer without a card, e.g. the shipped one)."""
    card = layer_dir / "model_card.json"
    if not card.is_file():
        return {}
    return dict(json.loads(card.read_text()).get("backbone", {}).get("args") or {})


def run_panel(
    env_id: str,
    episodes: int,
    seed_offset: int,
    max_steps: int = DEFAULT_MAX_STEPS,
    arms: tuple[str, ...] = ARMS,
    model_dir: str | None = None,
    *,
    reset: bool = True,
    aura_checkpoint: str | None = None,
    kv_checkpoint: str | None = None,
    aura_rate: float | None = None,
) -> Panel:
    """Every arm on the same seeds (and the same env sequence) of ``env_id``."""
    from aura_mem_ros.backbones.mini import MiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura
    from aura_mem_ros.sim.env import make_env

    check_panel_args(seed_offset, arms, episodes, max_steps)
    torch.set_num_threads(1)
    models = Models.resolve(model_dir, aura_checkpoint, kv_checkpoint)
    envs = stream_envs(env_id)
    gyms = {e: make_env(e) for e in envs}
    stream = _Stream(
        backbone=MiniBackbone(models.model_dir, **trained_backbone_args(models.aura)),
        layer=load_aura(models.aura),
        kv_dir=models.kv,
        episodes=[(envs[i % len(envs)], seed_offset + i) for i in range(episodes)],
        gyms=gyms,
        max_steps=max_steps,
        reset=reset,
        seed_offset=seed_offset,
    )
    results: dict[str, ArmResult] = {}
    per_episode: dict[str, list[dict]] = {}
    # aura runs first: random/periodic are matched to its measured writes/step in the same
    # mode (or to ``aura_rate`` when given: a shard of a sharded run gets the rate over all seeds).
    order = sorted(arms, key=lambda a: 0 if a == "aura" else 1)
    for arm in order:
        if arm in ("random", "periodic") and aura_rate is None:
            aura_rate = stream.run("aura", None).arm.writes_per_step
        run = stream.run(arm, aura_rate)
        results[arm] = run.arm
        per_episode[arm] = run.records(len(envs) > 1)
        if arm == "aura":
            aura_rate = run.arm.writes_per_step
    return Panel(
        env=env_id,
        episodes=episodes,
        seed_offset=seed_offset,
        max_steps=max_steps,
        budget_writes_per_step=aura_rate,
        arms={a: results[a] for a in arms},
        per_episode=per_episode,
        reset_mode="episode" if reset else "never",
        envs=envs,
        model=models.describe(),
    )


def episode_records(outcomes: list[Any], envs: list[str], with_env: bool) -> list[dict[str, Any]]:
    """One JSON row per episode (``Panel.per_episode``), in episode order."""
    return [
        {
            **({"env": env} if with_env else {}),
            "seed": o.seed,
            "success": o.success,
            "steps": o.steps,
            "writes": o.writes,
            "cue_first_seen": o.cue_first_seen,
            "write_steps": o.write_steps,
        }
        for o, env in zip(outcomes, envs, strict=True)
    ]


@dataclass
class _ArmRun:
    arm: ArmResult
    outcomes: list[Any]  # agent.EpisodeOutcome
    envs: list[str]

    def records(self, with_env: bool) -> list[dict[str, Any]]:
        return episode_records(self.outcomes, self.envs, with_env)


@dataclass
class _Stream:
    """One sequence of (env, seed) episodes, run arm by arm with or without resets."""

    backbone: Any
    layer: Any
    kv_dir: Path
    episodes: list[tuple[str, int]]
    gyms: dict[str, Any]
    max_steps: int
    reset: bool
    seed_offset: int

    def runtime(self, arm: str, rate: float | None) -> Any:
        """A fresh runtime: empty memory, as a robot boots (built once per arm)."""
        from aura_mem_ros.core.kv import KVRuntime, load_kv
        from aura_mem_ros.core.runtime import AuraRuntime

        if arm == "memoryless":
            return None
        if arm == "always_kv":
            return KVRuntime(load_kv(self.kv_dir))
        gate = {"always_aura": "always", "aura": "learned"}.get(arm, arm)
        threshold = max(rate or 0.0, 1e-6) if arm in ("random", "periodic") else None
        return AuraRuntime(self.layer, gate=gate, threshold=threshold, seed=self.seed_offset)

    def run(self, arm: str, rate: float | None) -> _ArmRun:
        from aura_mem_dev.agent import Agent, run_agent_episode
        from aura_mem_ros.core.runtime import AuraRuntime

        runtime = self.runtime(arm, rate)
        start_ms = _memory_step_ms(self.runtime(arm, rate), self.backbone, self._probe())
        agent = Agent(self.backbone, runtime)
        outs = []
        for env_id, seed in self.episodes:
            if self.reset and isinstance(runtime, AuraRuntime):
                runtime.seed = seed  # a fresh random write pattern per episode, reproducibly
            outs.append(
                run_agent_episode(self.gyms[env_id], agent, seed, self.max_steps, self.reset)
            )
        final_bytes = 0 if runtime is None else int(runtime.state_nbytes)
        end_ms = _memory_step_ms(runtime, self.backbone, self._probe())
        envs = [e for e, _ in self.episodes]
        rows = episode_records(outs, envs, with_env=True)
        arm = summarise_rows(rows, final_bytes, start_ms, end_ms, agent.resets)
        return _ArmRun(arm, outs, envs)

    def _probe(self) -> Any:
        """An observation to time memory steps on (the first episode's first frame)."""
        from aura_mem_dev.agent import sim_to_observation
        from aura_mem_ros.sim.env import to_sim_obs

        env_id, seed = self.episodes[0]
        obs, _ = self.gyms[env_id].reset(seed=seed)
        return sim_to_observation(to_sim_obs(obs))


def _memory_step_ms(runtime: Any, backbone: Any, obs: Any) -> float | None:
    """Median ms of ``runtime.select_action`` alone over COST_SAMPLES steps (it writes into
    the runtime: call it on a fresh one, or after the run)."""
    if runtime is None:
        return None
    out = backbone.step(obs)
    times = []
    for _ in range(COST_SAMPLES):
        t0 = time.perf_counter()
        runtime.select_action(out.features, out.action)
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 4)


def summarise_rows(
    rows: list[dict[str, Any]],
    final_bytes: int | None = None,
    start_ms: float | None = None,
    end_ms: float | None = None,
    resets: int | None = None,
) -> ArmResult:
    """An arm's figures from its per-episode records in episode order (``_ArmRun.records``);
    the arguments are what records do not hold: the memory after the last episode, the
    memory-step timings and the agent's reset count. The Ray merge calls it over all shards."""
    n = len(rows)
    n_succ = sum(bool(r["success"]) for r in rows)
    steps = sum(int(r["steps"]) for r in rows)
    writes = sum(int(r["writes"]) for r in rows)
    q = max(1, n // 4)
    first = sum(bool(r["success"]) for r in rows[:q])
    last = sum(bool(r["success"]) for r in rows[-q:])
    by_env: dict[str, list[int]] = {}
    for r in rows:
        tally = by_env.setdefault(r.get("env", ""), [0, 0])
        tally[0] += int(bool(r["success"]))
        tally[1] += 1
    return ArmResult(
        success=n_succ / n,
        ci95=wilson_interval(n_succ, n),
        writes_per_episode=writes / n,
        steps_per_episode=steps / n,
        writes_per_step=writes / max(1, steps),
        successes=n_succ,
        first_quarter_success=first / q,
        first_quarter_ci95=wilson_interval(first, q),
        last_quarter_success=last / q,
        last_quarter_ci95=wilson_interval(last, q),
        final_state_bytes=final_bytes,
        memory_step_ms_start=start_ms,
        memory_step_ms_end=end_ms,
        resets=resets,
        cue_seen=sum(r.get("cue_first_seen") is not None for r in rows) / n,
        success_by_env=by_env if len(by_env) > 1 else None,
    )


def check_panel_args(
    seed_offset: int, arms: tuple[str, ...], episodes: int, max_steps: int
) -> None:
    """Refuse training seeds, unknown arms and empty panels (single-process and Ray alike)."""
    check_eval_seed(seed_offset)
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arms {unknown}; known: {list(ARMS)}")
    if episodes <= 0 or max_steps <= 0:
        raise ValueError("episodes and max_steps must be positive")


def run(args: argparse.Namespace) -> int:
    from aura_mem_dev.report.closed_loop import arm_table

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if args.ray:
        from aura_mem_dev.scale import panel as sharded

        panel = sharded.run(args, arms)  # the same Panel, episodes sharded over Ray
    else:
        t0 = time.time()
        panel = run_panel(
            args.env,
            args.episodes,
            args.seed_offset,
            args.max_steps,
            arms,
            args.model_dir,
            reset=args.reset,
            aura_checkpoint=args.aura_checkpoint,
            kv_checkpoint=args.kv_checkpoint,
        )
        panel.seconds = round(time.time() - t0, 2)
    mode = "memory reset every episode" if args.reset else "memory NEVER reset"
    print(
        f"{args.env}: {args.episodes} episodes/arm, seeds {args.seed_offset}.."
        f"{args.seed_offset + args.episodes - 1}, {mode}, {panel.seconds} s"
    )
    print("\n".join(arm_table(panel)))
    if args.out is not None:
        if args.no_episodes:
            panel.per_episode = {}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(panel.to_dict(), indent=2) + "\n")
    return 0
