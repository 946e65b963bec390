"""``aura-mem-bench closed-loop ... --ray``: the closed-loop panel sharded over a Ray cluster.

A shard is one arm on a contiguous range of evaluation seeds; each runs the unchanged
single-process ``run_panel`` on its range, in a Ray task (one CPU each), and the driver
concatenates the per-episode rows in seed order and recomputes every arm's figures from them
with the same formulas, so the JSON equals the single-process run's except ``seconds``
(``test/test_scale_ray.py`` checks it). Why that holds: every episode starts from
``env.reset(seed)`` and a reset agent, the random gate is reseeded per episode, and torch runs
one thread, so an episode's outcome does not depend on which process ran it or what ran
before it there.

Dependencies: ``random`` and ``periodic`` write at ``aura``'s measured rate over ALL seeds, so
``aura``'s shards go first (also when only those two arms are asked for: then aura runs to
measure the rate and is left out of the output, as the single-process run measures it) and
the two rate-matched arms are queued when the last aura shard is back. Other arms fill the
workers meanwhile.

Never-reset streams: a stream that never resets cannot be cut by episode (episode k's memory
is what episodes 0..k-1 left). ``plan_shards(..., splittable=False)`` then makes one shard per
(env, arm) holding all its seeds in order: the parallelism is arms x envs instead of seeds.
``run`` passes ``splittable=False`` for ``--no-reset`` (the namespace's ``reset`` is false).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

RATE_ARMS = ("random", "periodic")  # run at aura's measured writes/step


@dataclass(frozen=True)
class Shard:
    arm: str
    seed_offset: int
    episodes: int


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="auto|ADDRESS|local",
        help="shard episodes over a Ray cluster (auto = $RAY_ADDRESS or the cluster on this "
        "machine, else a local one); the JSON equals the single-process run's",
    )
    parser.add_argument(
        "--ray-workers", type=int, default=None, help="tasks at once (default: cluster CPUs)"
    )
    parser.add_argument(
        "--shard-episodes",
        type=int,
        default=None,
        help="episodes per shard (default: about 2 shards per worker per arm)",
    )


def plan_shards(
    arms: tuple[str, ...],
    episodes: int,
    seed_offset: int,
    shard_episodes: int,
    splittable: bool = True,
) -> tuple[list[Shard], list[Shard]]:
    """(first wave, rate-matched wave). The first wave lists aura's shards first; ``aura``
    is in it whenever a rate-matched arm is asked for, even if aura itself is not."""
    size = episodes if not splittable else max(1, shard_episodes)
    first_arms = [a for a in arms if a not in RATE_ARMS]
    if any(a in RATE_ARMS for a in arms) and "aura" not in first_arms:
        first_arms.append("aura")
    first_arms.sort(key=lambda a: 0 if a == "aura" else 1)

    def cut(arm: str) -> list[Shard]:
        return [
            Shard(arm, seed_offset + s, min(size, episodes - s)) for s in range(0, episodes, size)
        ]

    first = [s for a in first_arms for s in cut(a)]
    second = [s for a in arms if a in RATE_ARMS for s in cut(a)]
    return first, second


def _run_shard(
    shard: Shard,
    env_id: str,
    max_steps: int,
    model_dir: str | None,
    aura_rate: float | None,
    panel_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One shard, in a Ray worker: the single-process panel on its seeds, one arm. Returns
    its per-episode rows, the arm's own figures and the panel's metadata."""
    from aura_mem_dev.bench.closed_loop import run_panel

    panel = run_panel(
        env_id,
        shard.episodes,
        shard.seed_offset,
        max_steps,
        (shard.arm,),
        model_dir,
        aura_rate=aura_rate,
        **panel_kwargs,
    )
    return {
        "rows": panel.per_episode[shard.arm],
        "arm": panel.arms[shard.arm],
        "meta": {"reset_mode": panel.reset_mode, "envs": panel.envs, "model": panel.model},
    }


def arm_result(rows: list[dict[str, Any]], parts: list[Any] | None = None) -> Any:
    """An arm's figures from its per-episode rows in seed order, over all seeds
    (``summarise_rows``, as one process computes them). ``parts``: the shards' own ArmResults
    in seed order, for what rows do not hold (state bytes and memory-step timings after the
    last episode, the agent's reset count)."""
    from aura_mem_dev.bench.closed_loop import summarise_rows

    if not parts:
        return summarise_rows(rows)
    return summarise_rows(
        rows,
        final_bytes=parts[-1].final_state_bytes,
        start_ms=parts[0].memory_step_ms_start,
        end_ms=parts[-1].memory_step_ms_end,
        resets=sum(p.resets or 0 for p in parts),
    )


def run_panel_on_ray(
    address: str,
    env_id: str,
    episodes: int,
    seed_offset: int,
    max_steps: int,
    arms: tuple[str, ...],
    model_dir: str | None = None,
    workers: int | None = None,
    shard_episodes: int | None = None,
    splittable: bool = True,
    panel_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The ``Panel`` that ``run_panel`` returns for the same arguments, computed on Ray."""
    from aura_mem_dev.bench.closed_loop import Panel, check_panel_args
    from aura_mem_ros.retrain.cluster import cluster_slots, ray_session

    check_panel_args(seed_offset, arms, episodes, max_steps)
    panel_kwargs = dict(panel_kwargs or {})
    with ray_session(address) as ray:
        _, cpus = cluster_slots()
        slots = min(cpus, workers or cpus)
        if shard_episodes is None:
            shard_episodes = math.ceil(episodes / (2 * slots))
        first, second = plan_shards(arms, episodes, seed_offset, shard_episodes, splittable)
        task = ray.remote(num_cpus=1)(_run_shard)
        rows = _schedule(
            ray, task, first, second, slots, env_id, max_steps, model_dir, panel_kwargs
        )
    per_arm: dict[str, list[dict[str, Any]]] = {}
    parts: dict[str, list[Any]] = {}
    for shard in sorted(rows, key=lambda s: (s.arm, s.seed_offset)):
        per_arm.setdefault(shard.arm, []).extend(rows[shard]["rows"])
        parts.setdefault(shard.arm, []).append(rows[shard]["arm"])
    meta = next(iter(rows.values()))["meta"]
    aura_rate = arm_result(per_arm["aura"]).writes_per_step if "aura" in per_arm else None
    order = sorted(arms, key=lambda a: 0 if a == "aura" else 1)  # run_panel's order
    return Panel(
        env=env_id,
        episodes=episodes,
        seed_offset=seed_offset,
        max_steps=max_steps,
        budget_writes_per_step=aura_rate,
        arms={a: arm_result(per_arm[a], parts[a]) for a in arms},
        per_episode={a: per_arm[a] for a in order},
        **meta,
    )


def _schedule(
    ray: Any,
    task: Any,
    first: list[Shard],
    second: list[Shard],
    slots: int,
    env_id: str,
    max_steps: int,
    model_dir: str | None,
    panel_kwargs: dict[str, Any],
) -> dict[Shard, dict[str, Any]]:
    """At most ``slots`` shards in flight; the rate-matched wave is queued once every aura
    shard is back (with aura's rate over all seeds)."""
    queue: list[tuple[Shard, float | None]] = [(s, None) for s in first]
    aura_left = sum(s.arm == "aura" for s in first)
    in_flight: dict[Any, Shard] = {}
    out: dict[Shard, dict[str, Any]] = {}
    second_queued = not second
    while queue or in_flight or not second_queued:
        if not second_queued and aura_left == 0:
            rows = [row for s, got in out.items() if s.arm == "aura" for row in got["rows"]]
            rate = arm_result(rows).writes_per_step
            queue += [(s, rate) for s in second]
            second_queued = True
        while queue and len(in_flight) < slots:
            shard, rate = queue.pop(0)
            ref = task.remote(shard, env_id, max_steps, model_dir, rate, panel_kwargs)
            in_flight[ref] = shard
        if not in_flight:
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        shard = in_flight.pop(ready[0])
        out[shard] = ray.get(ready[0])  # a worker's exception is raised here
        aura_left -= shard.arm == "aura"
    return out


def run(args: argparse.Namespace, arms: tuple[str, ...]) -> Any:
    """What ``aura-mem-bench closed-loop --ray`` runs instead of ``run_panel`` (timed)."""
    t0 = time.time()
    panel = run_panel_on_ray(
        args.ray,
        args.env,
        args.episodes,
        args.seed_offset,
        args.max_steps,
        arms,
        args.model_dir,
        workers=args.ray_workers,
        shard_episodes=args.shard_episodes,
        splittable=getattr(args, "reset", True),
        panel_kwargs={
            "reset": getattr(args, "reset", True),
            "aura_checkpoint": getattr(args, "aura_checkpoint", None),
            "kv_checkpoint": getattr(args, "kv_checkpoint", None),
        },
    )
    panel.seconds = round(time.time() - t0, 2)
    return panel
