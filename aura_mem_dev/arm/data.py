"""Episodes of the arm task recorded at the chunk rate: frame, proprio, expert chunk label.

Every chunk request of an episode gives one sample: the rendered frame and proprio the
policy saw, and the expert's next 8 actions from that state (``expert_chunk``: a look-ahead
that restores the simulator), i.e. the action labels a teleoperator would give. What is
EXECUTED is up to the driver: the expert's chunk (demonstrations, optionally with
per-step action noise so the data also shows recoveries), or a learner's chunk (DAgger).
The cue pad is recorded for evaluation and probes only; training never reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aura_mem_ros.sim.arm.env import ArmEnv, ArmObs, ArmTaskConfig
from aura_mem_ros.sim.arm.expert import expert_chunk
from aura_mem_ros.sim.arm.loop import CHUNK_SIZE

# (observation, expert label chunk, chunk index) -> the chunk to execute
Driver = Callable[[ArmObs, np.ndarray, int], np.ndarray]


@dataclass
class ArmRecord:
    """One episode, one row per chunk request."""

    seed: int
    cue_mode: str
    cue_pad: int  # evaluation / probes only
    placed_pad: int | None
    steps: int
    images: np.ndarray  # uint8 (N, S, S, 3)
    proprio: np.ndarray  # float32 (N, 8)
    labels: np.ndarray  # float32 (N, 8, 7)
    cue_visible: np.ndarray  # bool (N,): evaluation / plots only
    flicker_visible: np.ndarray  # bool (N,): evaluation / plots only

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def completed(self) -> bool:
        return self.placed_pad is not None

    @property
    def success(self) -> bool:
        return self.placed_pad == self.cue_pad


def expert_driver() -> Driver:
    def drive(obs: ArmObs, label: np.ndarray, index: int) -> np.ndarray:
        return label

    return drive


def record_episode(
    env: ArmEnv,
    seed: int,
    driver: Driver,
    *,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    execute_steps: int = CHUNK_SIZE,
) -> ArmRecord:
    """Run one episode under ``driver``; ``noise``: std of Gaussian noise on executed xyz."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    obs = env.reset(seed)
    images, proprio, labels, cue, flicker = [], [], [], [], []
    index = 0
    while not env.state.done:
        label = expert_chunk(env, CHUNK_SIZE)
        images.append(obs.image)
        proprio.append(obs.proprio)
        labels.append(label)
        cue.append(env.cue_visible())
        flicker.append(env.flicker_visible())
        chunk = np.asarray(driver(obs, label, index), dtype=np.float32)
        index += 1
        for action in chunk[:execute_steps]:
            if noise > 0:
                action = action.copy()
                action[:3] += rng.normal(0.0, noise, 3).astype(np.float32)
            env.step(action)
            if env.state.done:
                break
        obs = env.observe(render=not env.state.done)
    return ArmRecord(
        seed=seed,
        cue_mode=env.config.cue_mode,
        cue_pad=env.state.cue_pad,
        placed_pad=env.state.placed_pad,
        steps=env.state.t,
        images=np.stack(images),
        proprio=np.stack(proprio).astype(np.float32),
        labels=np.stack(labels).astype(np.float32),
        cue_visible=np.array(cue),
        flicker_visible=np.array(flicker),
    )


def collect(
    config: ArmTaskConfig,
    seeds: list[int],
    driver_for: Callable[[int], Driver],
    *,
    noise: float = 0.0,
    progress: str | None = None,
) -> list[ArmRecord]:
    """One episode per seed; ``driver_for(seed)`` builds that episode's driver."""
    env = ArmEnv(config)
    bar = seeds
    if progress:
        from tqdm import tqdm

        bar = tqdm(seeds, desc=progress, unit="ep", leave=False)
    try:
        return [
            record_episode(env, s, driver_for(s), noise=noise, rng=np.random.default_rng(s))
            for s in bar
        ]
    finally:
        env.close()
