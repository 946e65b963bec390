"""The backbone over many bags on a Ray actor pool (``aura-mem-train --ray``).

One actor = one loaded backbone (``features.BagExtractor``, made remote). Where the cluster
has GPUs there is one actor per GPU (``num_gpus=1``: Ray sets CUDA_VISIBLE_DEVICES, so the
backbone's "cuda" is that actor's own GPU); otherwise one CPU actor per CPU. ``--ray-workers``
caps the count, and there are never more actors than bags to extract. Each free actor takes
the next bag (a bag is processed in order: the backbone is reset at each episode start, as in
the single-process run), so a slow bag does not hold up the others.

Why actors and not Ray Data: the unit of work is a whole bag in order, the expensive state
is the loaded model (7B on a GPU for OpenVLA-OFT, loaded once per actor), and the outputs are
a few large arrays per bag; an actor pool is exactly that, and needs only the ``ray`` package.

The bags are read by path on whichever node runs the actor, so every node must see them at
the same path (shared storage); the driver hashes them, and only the driver reads and writes
the feature cache, so the cache directory need not be shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aura_mem_ros.retrain.cluster import cluster_slots, ray_session
from aura_mem_ros.retrain.features import (
    BackboneInfo,
    BagExtractor,
    BagFeatures,
    ExtractionSettings,
)


class RayExtraction:
    """``with RayExtraction(address, name, args, workers) as pool``: ``pool.describe()`` builds
    the first actor (and the backbone's identity, for the cache key); ``pool.extract(...)``
    adds actors as needed and spreads the bags over them."""

    def __init__(
        self, address: str, name: str, args: dict[str, Any], workers: int | None = None
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError("--ray-workers must be >= 1")
        self.address, self.name, self.args, self.workers = address, name, dict(args), workers
        self.actors: list[Any] = []
        self.runner = "ray (nothing to extract)"
        self._session: Any = None

    def __enter__(self) -> RayExtraction:
        self._session = ray_session(self.address)
        self.ray = self._session.__enter__()
        gpus, cpus = cluster_slots()
        self.use_gpus = gpus > 0
        slots = gpus if self.use_gpus else cpus
        self.max_actors = min(slots, self.workers or slots)
        resources = {"num_gpus": 1, "num_cpus": 1} if self.use_gpus else {"num_cpus": 1}
        self._actor_class = self.ray.remote(**resources)(BagExtractor)
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        self._session.__exit__(*exc)

    def _grow(self, n: int) -> None:
        while len(self.actors) < n:
            self.actors.append(self._actor_class.remote(self.name, self.args))

    def start(self, n: int) -> int:
        """Up to ``n`` actors, each with its backbone loaded, before any bag is given out
        (benchmarks time extraction apart from start-up). Returns how many there are."""
        self._grow(min(n, self.max_actors))
        self.ray.get([a.info.remote() for a in self.actors])
        return len(self.actors)

    def describe(self) -> BackboneInfo:
        self._grow(1)
        return self.ray.get(self.actors[0].info.remote())

    def extract(
        self,
        missing: list[tuple[int, str]],
        settings: ExtractionSettings,
        done: Callable[[int, BagFeatures], None],
        progress: bool = False,
    ) -> dict[int, BagFeatures]:
        self._grow(min(self.max_actors, len(missing)))
        self.runner = f"ray: {len(self.actors)} {'GPU' if self.use_gpus else 'CPU'} actor(s)"
        queue = list(missing)
        in_flight: dict[Any, tuple[Any, int]] = {}  # result ref -> (actor, bag index)
        idle = list(self.actors)
        out: dict[int, BagFeatures] = {}
        while queue or in_flight:
            while queue and idle:
                actor = idle.pop()
                index, bag = queue.pop(0)
                in_flight[actor.extract.remote(bag, settings)] = (actor, index)
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            actor, index = in_flight.pop(ready[0])
            feats, seconds = self.ray.get(ready[0])  # re-raises a worker's error here
            out[index] = feats
            done(index, feats)
            idle.append(actor)
            if progress:
                print(f"  {feats.bag}: {len(feats)} frames in {seconds:.1f} s", flush=True)
        return out
