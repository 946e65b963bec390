"""The recipes that rebuild the shipped MiniGrid memories with the one trainer
(``aura_mem_ros.core.train``): expert ACTION labels + closed-loop DAgger, no oracle schedule,
no simulator state in any training batch.

AURA (``train_aura_dagger``), what each piece is for (measured, see the issue 17 record):

1. data: 400 expert episodes + 200 episodes driven by the frozen base policy, expert labels;
2. the head learns to READ memory without an oracle: a small write strength (beta 0.3: a
   dense memory is a decaying superposition that still holds an early cue at the fork; at
   0.9 the last writes erase it), an always-write warm-up (400 iterations), then 30% of
   every batch on dense random schedules (head only) for the whole run, and a wider
   residual head (512 hidden; same 4,224-byte memory state);
3. the gate: ``CounterfactualGate`` (exact write benefit) on the other 70% of the rows (the
   gate's greedy schedule, 10% random extra writes in 30% of them), price floor 0.05 nats,
   budget 0.1 writes/step;
4. DAgger: at fixed iterations the current gated layer drives 300 episodes (expert actions
   executed 30%, 10%, then 0% of the time), every visited state gets the expert's label;
5. checkpoint selection: closed-loop success on 60 VALIDATION seeds (950,000+, disjoint from
   training seeds and from the evaluation seeds >= 1,000,000), the best restored at the end.

Why not straight-through: the first-order gate converges to a "marker" write (one write
anywhere in the look-back phase: the head reads "something was written" as "cue seen" and
the fork stays at chance, 0.47-0.53 closed loop); the exact benefit of a write at the cue
view only exceeds a marker's once the head can read the cue's identity, which the dense
rows teach.

The KV-cache arm (``train_kv_dagger``): the same trainer (``FixedGate("always")``), the
same aggregated data, its own DAgger rounds and the same closed-loop checkpoint selection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from aura_mem_dev.agent import Agent, run_agent_episode
from aura_mem_dev.training.episodes import (
    EpisodeSource,
    agent_driver,
    collect_episodes,
    expert_driver,
)
from aura_mem_ros.backbones.mini import MiniBackbone
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.kv import KVConfig, KVMemory, KVRuntime
from aura_mem_ros.core.objectives import CounterfactualGate, FixedGate
from aura_mem_ros.core.runtime import AuraRuntime
from aura_mem_ros.core.train import Trainer, TrainerConfig, TrainResult, print_progress
from aura_mem_ros.sim.env import make_env

ENVS = ("MiniGrid-MemoryS13-v0", "MiniGrid-MemoryS11-v0")
TRAIN_SEED0 = 600_000  # AURA/KV training episodes: 600,000-899,999 (backbone: below)
VAL_SEED0 = 950_000  # checkpoint selection: 950,000-999,999 (evaluation: >= 1,000,000)


class Seeds:
    """Consecutive, never reused training seeds."""

    def __init__(self, start: int):
        self.next = start

    def take(self, n: int) -> list[int]:
        out = list(range(self.next, self.next + n))
        self.next += n
        return out


@dataclass(frozen=True)
class DaggerRecipe:
    env_ids: tuple[str, ...] = ENVS
    seed: int = 0
    demo_episodes: int = 400
    base_episodes: int = 200
    iterations: int = 3000
    batch_size: int = 64
    lr: float = 1e-2
    lr_final: float = 2e-3
    budget: float = 0.1  # writes/step
    warmup: int = 400  # always-write iterations
    dense_fraction: float = 0.3
    explore_rows: float = 0.3
    explore_rate: float = 0.1
    horizon: int | None = None  # exact counterfactual benefit
    beta_init: float = 0.3
    head_hidden: int = 512
    dagger_at: tuple[int, ...] = (1000, 1500, 2000, 2500)
    dagger_episodes: int = 300
    expert_mix: tuple[float, ...] = (0.3, 0.1)
    eval_every: int = 100
    select_episodes: int = 60  # closed-loop checkpoint selection (validation seeds)
    # the KV arm: as many DAgger rounds, its own rollouts, the same selection
    kv_iterations: int = 1500
    kv_dagger_at: tuple[int, ...] = (500, 1000)
    max_steps: int = 100
    # never-reset operation (issue 12): training sequences are streams of stream_len
    # consecutive episodes (drawn uniformly in the range) with the memory carried across
    # boundaries; never_reset: DAgger rollouts run without resets and checkpoints are chosen
    # on the worse of reset and never-reset closed-loop success.
    stream_len: tuple[int, int] = (1, 1)
    max_stream_steps: int = 160
    never_reset: bool = False
    censor_tail: bool = False  # CounterfactualGate.censor_tail (needs a horizon)
    head_reads: str = "read_and_last"  # AuraConfig.head_reads of a never-reset layer
    forget_init: float | None = None  # AuraConfig.forget_init of a never-reset layer

    def __post_init__(self) -> None:
        if self.demo_episodes <= 0 or self.iterations <= 0 or self.max_steps <= 0:
            raise ValueError("demo_episodes, iterations and max_steps must be positive")
        if any(not 0 < it < self.iterations for it in self.dagger_at):
            raise ValueError("dagger_at iterations must lie inside the run")
        if not 0 < self.budget <= 1:
            raise ValueError("budget must lie in (0, 1] writes/step")
        if not 1 <= self.stream_len[0] <= self.stream_len[1]:
            raise ValueError("stream_len must be (lo, hi) episodes with 1 <= lo <= hi")


# Step 4 of ``make train-default``: the layer ``reset_policy: never`` serves, from scratch,
# on streams of 2-6 consecutive episodes with the memory carried across.
# - Its head reads [r, m] (``head_reads="read_and_last"``): m, the newest write, tells a new
#   episode's spawn frame (newest write: the previous episode's end) from the same frame
#   after this episode's look-back (newest write: the cue); see spawn_recurrence.md.
# - It acts before writing (``act_before_write``): a write at the fork, which marks "cue
#   used" for the next episode, cannot change the fork decision itself.
# - Each write forgets a learned fraction of W (``forget_init`` 0.5; training settles it near
#   0.25). Without it W keeps whatever earlier episodes wrote along other keys: over a 2-6
#   episode training stream that residue is small, over hundreds of episodes it grew past
#   anything training showed, and the layer collapsed (0.15-0.32 on 200 never-reset
#   validation episodes, against 0.95-0.98 with resets). With it, an episode's entries fade
#   by (1 - α)² per later episode, so a run of any length looks like the training streams.
# - The budget allows two writes per episode (the cue and that mark).
# - ``censor_tail``: the mark pays off only in the NEXT episode; at a training window's last
#   episode its benefit is unobserved, not zero.
# - Checkpoints are chosen on 300 validation episodes, the worse of reset and never reset
#   (at 100 several checkpoints tie at 1.0 and the first of them is kept: 0.97 over 300).
NEVER_RESET_RECIPE = DaggerRecipe(
    iterations=1500,
    batch_size=48,
    lr=1e-2,
    lr_final=2e-3,
    budget=0.2,
    warmup=300,
    dagger_at=(600, 900, 1200),
    expert_mix=(0.3, 0.1),
    stream_len=(2, 6),
    horizon=16,
    censor_tail=True,
    never_reset=True,
    forget_init=0.5,
    select_episodes=300,
)


def base_data(backbone: MiniBackbone, recipe: DaggerRecipe, seeds: Seeds) -> EpisodeSource:
    """Expert-driven demonstrations + base-policy-driven episodes, expert labels: no trained
    memory shapes any of it."""
    rng = random.Random(recipe.seed)
    envs = recipe.env_ids
    eps = collect_episodes(
        backbone, envs, seeds.take(recipe.demo_episodes), expert_driver(0.0, rng), recipe.max_steps
    )
    if recipe.base_episodes:
        driver = agent_driver(Agent(backbone), 0.0, rng)
        eps += collect_episodes(
            backbone, envs, seeds.take(recipe.base_episodes), driver, recipe.max_steps
        )
    return EpisodeSource(eps)


def closed_loop(
    backbone: MiniBackbone,
    runtime: Any,
    env_ids: Sequence[str],
    seeds: Sequence[int],
    max_steps: int = 100,
    reset: bool = True,
) -> dict[str, float]:
    """Success and writes per episode of ``runtime`` driving the backbone, its memory reset
    per episode, or (reset False) never: one run, env ids alternating."""
    envs = {e: make_env(e) for e in env_ids}
    agent = Agent(backbone, runtime)
    outs = [
        run_agent_episode(envs[env_ids[i % len(env_ids)]], agent, s, max_steps, reset)
        for i, s in enumerate(seeds)
    ]
    steps = sum(o.steps for o in outs)
    return {
        "score": sum(o.success for o in outs) / len(outs),
        "writes_per_episode": sum(o.writes for o in outs) / len(outs),
        "write_rate": sum(o.writes for o in outs) / max(1, steps),
    }


def closed_loop_selector(
    backbone: MiniBackbone, runtime_of: Callable[[nn.Module], Any], recipe: DaggerRecipe
) -> Callable[[nn.Module], dict[str, float]]:
    """Checkpoint criterion: closed-loop success on validation seeds (< 1,000,000); for a
    never-reset recipe the worse of the per-episode-reset and the never-reset runs."""
    seeds = list(range(VAL_SEED0, VAL_SEED0 + recipe.select_episodes))

    def select(model: nn.Module) -> dict[str, float]:
        was = model.training
        model.eval()
        result = closed_loop(backbone, runtime_of(model), recipe.env_ids, seeds, recipe.max_steps)
        if recipe.never_reset:
            never = closed_loop(
                backbone, runtime_of(model), recipe.env_ids, seeds, recipe.max_steps, False
            )
            result = {
                **{f"reset_{k}": v for k, v in result.items()},
                **{f"never_{k}": v for k, v in never.items()},
                "score": min(result["score"], never["score"]),
                "write_rate": max(result["write_rate"], never["write_rate"]),
            }
        model.train(was)
        return result

    return select


def dagger_rounds(
    backbone: MiniBackbone,
    source: EpisodeSource,
    at: Sequence[int],
    recipe: DaggerRecipe,
    seeds: Seeds,
    runtime_of: Callable[[nn.Module], Any],
    log: list[dict[str, Any]],
):
    """A trainer callback: after iteration ``at[r]`` the current model drives
    ``dagger_episodes`` episodes (expert executed with ``expert_mix[r]``), relabelled with
    the expert's actions and added to ``source``. Same optimizer, same controller."""
    rng = random.Random(recipe.seed)

    def callback(event: str, trainer: Trainer, info: dict[str, Any]) -> None:
        if event != "iteration" or info["it"] + 1 not in at:
            return
        r = list(at).index(info["it"] + 1)
        mix = recipe.expert_mix[r] if r < len(recipe.expert_mix) else 0.0
        model = trainer.model
        model.eval()
        t0 = time.perf_counter()
        agent = Agent(backbone, runtime_of(model))
        driver = agent_driver(agent, mix, rng, reset=not recipe.never_reset)
        eps = collect_episodes(
            backbone, recipe.env_ids, seeds.take(recipe.dagger_episodes), driver, recipe.max_steps
        )
        source.add(eps)
        model.train()
        entry = {
            "it": info["it"],
            "round": r,
            "expert_mix": mix,
            "rollout_success": sum(e.success for e in eps) / len(eps),
            "data_episodes": len(source),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log.append(entry)
        print(f"  dagger: {entry}", flush=True)

    return callback


def aura_runtime(layer: nn.Module) -> AuraRuntime:
    return AuraRuntime(layer, gate="learned", fused=False)


def new_layer(backbone: MiniBackbone, recipe: DaggerRecipe, never_reset: bool = False) -> AuraLayer:
    """never_reset: the head reads m (the newest write) too, acts before writing, and each
    write forgets (``recipe.forget_init``)."""
    config = AuraConfig.for_backbone(
        backbone,
        target_write_rate=recipe.budget,
        beta_init=recipe.beta_init,
        head_hidden=recipe.head_hidden,
        gate_init_bias=-2.0,  # the gate starts closed: writes are added where they pay
        head_reads=recipe.head_reads if never_reset else "read",
        act_before_write=never_reset,
        forget_init=recipe.forget_init if never_reset else None,
    )
    return init_aura(config, seed=recipe.seed)


def _summary(res: TrainResult, log: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seconds": round(res.seconds, 1),
        "best_iteration": res.best_it,
        "improved": res.improved,
        "stopped_early": res.stopped_early,
        "price": res.price,
        "start_validation": res.start_val,
        "best_validation": res.best_val,
        "dagger": log,
        "validations": res.validations,
    }


def _fit_aura(
    backbone: MiniBackbone,
    layer: AuraLayer,
    source: EpisodeSource,
    recipe: DaggerRecipe,
    seeds: Seeds,
    seed: int,
) -> dict[str, Any]:
    """The one trainer with the counterfactual gate, DAgger rounds and closed-loop checkpoint
    selection, as ``recipe`` says -> the training record (``layer`` is trained in place)."""
    log: list[dict[str, Any]] = []
    config = TrainerConfig(
        iterations=recipe.iterations,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        lr_final=recipe.lr_final,
        budget=recipe.budget,
        warmup=recipe.warmup,
        eval_every=recipe.eval_every,
        seed=seed,
    )
    objective = CounterfactualGate(
        horizon=recipe.horizon,
        dense_fraction=recipe.dense_fraction,
        explore_rows=recipe.explore_rows,
        explore_rate=recipe.explore_rate,
        censor_tail=recipe.censor_tail,
    )
    dagger = dagger_rounds(backbone, source, recipe.dagger_at, recipe, seeds, aura_runtime, log)
    selector = closed_loop_selector(backbone, aura_runtime, recipe)
    trainer = Trainer(
        layer, source.sample, objective, config, None, [print_progress(50), dagger], selector
    )
    res = trainer.train()
    return {"recipe": asdict(recipe), **_summary(res, log), "data_episodes": len(source)}


def train_aura_dagger(
    backbone: MiniBackbone, recipe: DaggerRecipe | None = None
) -> tuple[AuraLayer, dict[str, Any], EpisodeSource]:
    """-> trained layer, training record, the aggregated data (reused by the KV arm)."""
    recipe = recipe or DaggerRecipe()
    torch.manual_seed(recipe.seed)
    seeds = Seeds(TRAIN_SEED0 + 100_000 * recipe.seed)
    source = base_data(backbone, recipe, seeds)
    layer = new_layer(backbone, recipe)
    record = _fit_aura(backbone, layer, source, recipe, seeds, recipe.seed)
    return layer.eval(), record, source


def train_never_reset(
    backbone: MiniBackbone, recipe: DaggerRecipe = NEVER_RESET_RECIPE
) -> tuple[AuraLayer, dict[str, Any]]:
    """Step 4: a fresh never-reset layer (``new_layer(never_reset=True)``), fitted by the same
    trainer and gate objective on streams of consecutive episodes (memory carried across),
    with never-reset DAgger rollouts and a checkpoint chosen on the worse of reset and
    never-reset closed-loop success. Its own data: fresh expert + base-policy episodes (any
    concatenation of them is a valid stream: they do not depend on memory)."""
    torch.manual_seed(recipe.seed + 2)
    seeds = Seeds(TRAIN_SEED0 + 100_000 * recipe.seed + 70_000)
    source = base_data(backbone, recipe, seeds)
    source.stream_len, source.max_stream_steps = recipe.stream_len, recipe.max_stream_steps
    layer = new_layer(backbone, recipe, never_reset=True)
    record = _fit_aura(backbone, layer, source, recipe, seeds, recipe.seed + 2)
    return layer.eval(), record


def train_kv_dagger(
    backbone: MiniBackbone, source: EpisodeSource, recipe: DaggerRecipe | None = None
) -> tuple[KVMemory, dict[str, Any]]:
    """The always-write KV-cache arm by the same trainer on the same data (+ its own DAgger)."""
    recipe = recipe or DaggerRecipe()
    torch.manual_seed(recipe.seed + 1)
    kv_config = KVConfig(  # the same residual head as AURA's
        d_model=backbone.d_model, action_dim=backbone.action_dim, head_hidden=recipe.head_hidden
    )
    model = KVMemory(kv_config)
    seeds = Seeds(TRAIN_SEED0 + 100_000 * recipe.seed + 50_000)
    log: list[dict[str, Any]] = []
    config = TrainerConfig(
        iterations=recipe.kv_iterations,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        lr_final=recipe.lr_final,
        eval_every=recipe.eval_every,
        seed=recipe.seed + 1,
    )
    dagger = dagger_rounds(backbone, source, recipe.kv_dagger_at, recipe, seeds, KVRuntime, log)
    selector = closed_loop_selector(backbone, KVRuntime, recipe)
    trainer = Trainer(
        model,
        source.sample,
        FixedGate("always"),
        config,
        None,
        [print_progress(100), dagger],
        selector,
    )
    res = trainer.train()
    return model.eval(), {"recipe": asdict(recipe), **_summary(res, log)}
