"""The frozen backbone over every training frame of the bags, once: a feature cache.

Retraining the AURA layer never changes the backbone, so its output per frame (features, base
action) is a pure function of the bag's bytes, the backbone's weights and arguments, and how
frames are paired with targets. ``load_training_data`` computes it per bag, stores it in a
cache keyed by exactly those inputs, and a later run on the same bags reads it back instead of
running the backbone again (for OpenVLA-OFT that is ~0.1 GPU-seconds per frame saved).

Pairing and episodes are ``retrain/data.py``'s ``extract_episodes``, unchanged: one bag runs
in order on one backbone (a backbone may keep per-episode state; ``reset`` is called at every
episode start), so a bag is the unit of work. With ``--ray`` the bags are spread over a pool
of Ray actors, one per GPU where the cluster has GPUs, CPU actors otherwise
(``retrain/ray_features.py``); without it they run here, one after the other. Either way the
driver (this process) hashes the bags, reads and writes the cache, and gets the same arrays.

Cache layout (``--feature-cache DIR``, default ``$AURA_MEM_FEATURE_CACHE`` or
``~/.cache/aura_mem_ros/features``): ``<key>.npz`` (features, base, targets, episode starts)
plus ``<key>.json`` (what the key was made of, readable). Entries are written atomically;
an unreadable entry is reported and recomputed, never trusted.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros.bags.read import bag_metadata, node_parameters
from aura_mem_ros.eval.extract import Observed, Topics
from aura_mem_ros.retrain.data import Episode, extract_episodes, find_target_topic

# Bump when what an entry holds, or how it is computed, changes: old entries then miss.
CACHE_FORMAT = 1
CACHE_ENV = "AURA_MEM_FEATURE_CACHE"
# Node parameters that change how a frame becomes an Observation (see extract_episodes).
EXTRACTION_PARAMS = ("instruction", "proprio_joint_names", "proprio_fields")


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "aura_mem_ros" / "features"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``aura-mem-train`` (and the training sweep) take for features."""
    parser.add_argument(
        "--feature-cache",
        default=None,
        help=f"feature cache directory (default: ${CACHE_ENV} or ~/.cache/aura_mem_ros/"
        "features); 'none' runs the backbone every time and stores nothing",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="auto|ADDRESS|local",
        help="run the backbone over the bags on a Ray cluster: auto = $RAY_ADDRESS or the "
        "cluster running on this machine, else a local one; ADDRESS = ray://... or host:port "
        "of a head node; local = a new cluster on this machine only",
    )
    parser.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        help="at most this many actors (default: one per GPU, else one per CPU)",
    )


# ---------------------------------------------------------------------------------------------
# What a cache entry holds, and what the trainer gets.


@dataclass(frozen=True)
class BackboneInfo:
    """What the trainer needs to know of the backbone, without building or running it."""

    name: str
    args: dict[str, Any]
    identity: str  # Backbone.model_id(): the weights
    d_model: int
    chunk_size: int
    action_dim: int
    discrete: bool
    num_images: int
    proprio_dim: int | None
    feature_parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, backbone: Any, name: str, args: dict[str, Any]) -> BackboneInfo:
        return cls(
            name=name,
            args=dict(args),
            identity=backbone.model_id(),
            d_model=int(backbone.d_model),
            chunk_size=int(backbone.chunk_size),
            action_dim=int(backbone.action_dim),
            discrete=bool(backbone.discrete),
            num_images=int(backbone.num_images),
            proprio_dim=None if backbone.proprio_dim is None else int(backbone.proprio_dim),
            feature_parts={k: (int(a), int(b)) for k, (a, b) in backbone.feature_parts().items()},
        )

    def model_id(self) -> str:  # the Backbone method of the same name, for the model card
        return self.identity


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything besides the bag and the backbone that decides a bag's training steps."""

    topics: Topics
    episode_gap_s: float
    params: dict[str, Any]  # the EXTRACTION_PARAMS subset of the node parameters

    def to_dict(self) -> dict[str, Any]:
        return {
            "topics": dataclasses.asdict(self.topics),
            "episode_gap_s": self.episode_gap_s,
            "params": self.params,
        }


@dataclass
class BagFeatures:
    """One bag's training steps as contiguous arrays: what the trainer consumes.

    Episode ``e`` is rows ``starts[e]:starts[e + 1]`` (the last runs to the end); the backbone
    was reset before each, exactly where ``extract_episodes`` resets it.
    """

    bag: str
    features: np.ndarray  # (N, d_model) float32
    base: np.ndarray  # (N, chunk_size, action_dim) float32: the backbone's action
    targets: np.ndarray  # (N, chunk_size, action_dim) float32: the recorded target action
    starts: np.ndarray  # (E,) int64, increasing, starts[0] == 0 when N > 0

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def from_episodes(
        cls, bag: str, episodes: Sequence[Episode], info: BackboneInfo
    ) -> BagFeatures:
        shape = (0, info.chunk_size, info.action_dim)

        def stack(rows: list[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
            return np.stack(rows).astype(np.float32) if rows else np.zeros(empty, np.float32)

        lengths = [len(e) for e in episodes]
        return cls(
            bag=bag,
            features=stack([f for e in episodes for f in e.features], (0, info.d_model)),
            base=stack([b for e in episodes for b in e.base], shape),
            targets=stack([t for e in episodes for t in e.targets], shape),
            starts=np.cumsum([0, *lengths[:-1]]).astype(np.int64)
            if lengths
            else np.zeros(0, np.int64),
        )

    def episodes(self) -> list[Episode]:
        """``Episode`` objects as ``extract_episodes`` returns them (rows are views)."""
        ends = [*self.starts[1:].tolist(), len(self)]
        return [
            Episode(
                self.bag,
                list(self.features[s:e]),
                list(self.base[s:e]),
                list(self.targets[s:e]),
            )
            for s, e in zip(self.starts.tolist(), ends, strict=True)
        ]


@dataclass
class ExtractionStats:
    """Where the features came from this time (reported, and put in the model card)."""

    bags: int = 0
    from_cache: int = 0
    extracted: int = 0
    frames_extracted: int = 0
    frames_total: int = 0
    seconds_hashing: float = 0.0
    seconds_extracting: float = 0.0  # wall time of the backbone pass (0 on a full hit)
    runner: str = "local"  # "local" or "ray: N actors (GPU|CPU)"
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seconds_hashing"] = round(self.seconds_hashing, 3)
        out["seconds_extracting"] = round(self.seconds_extracting, 3)
        return out

    def line(self) -> str:
        return (
            f"features: {self.bags} bag(s), {self.from_cache} from the cache, {self.extracted} "
            f"extracted ({self.frames_extracted} frames in {self.seconds_extracting:.1f} s, "
            f"{self.runner}); {self.frames_total} frames in all"
        )


@dataclass
class TrainingData:
    """What ``aura-mem-train`` trains on: every bag's steps plus the backbone's shape.

    Plain arrays and strings, so it pickles cheaply (a training sweep puts it in Ray's object
    store once and every run reads it from there).
    """

    bags: list[BagFeatures]
    backbone: BackboneInfo
    target_topic: str
    stats: ExtractionStats = field(default_factory=ExtractionStats)

    def episodes(self) -> list[Episode]:
        return [ep for b in self.bags for ep in b.episodes()]


# ---------------------------------------------------------------------------------------------
# The cache.


def bag_content_hash(bag: str | Path) -> str:
    """sha256 over metadata.yaml and every storage file it lists (names and bytes)."""
    bag = Path(bag)
    meta = bag_metadata(bag)  # FileNotFoundError with the recover hint when not a bag
    h = hashlib.sha256()
    names = ["metadata.yaml", *sorted(meta.get("relative_file_paths") or [])]
    for name in names:
        path = bag / name
        if not path.is_file():
            raise FileNotFoundError(f"{bag}: metadata.yaml lists {name}, which is missing")
        h.update(name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def cache_key(bag_hash: str, backbone: BackboneInfo, settings: ExtractionSettings) -> str:
    text = json.dumps(
        {
            "format": CACHE_FORMAT,
            "bag_sha256": bag_hash,
            "backbone": backbone.name,
            "backbone_args": backbone.args,
            "model_id": backbone.identity,
            "settings": settings.to_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FeatureCache:
    """``<root>/<key>.npz`` + ``<key>.json``; ``root`` None = no cache (always a miss)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root).expanduser()

    @classmethod
    def from_arg(cls, value: str | None) -> FeatureCache:
        if value is not None and value.strip().lower() == "none":
            return cls(None)
        return cls(value or default_cache_dir())

    def get(self, key: str, bag: str) -> BagFeatures | None:
        if self.root is None or not (self.root / f"{key}.npz").is_file():
            return None
        try:
            with np.load(self.root / f"{key}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("features", "base", "targets", "starts")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            print(f"feature cache: entry {key} unreadable ({exc}); recomputing", file=sys.stderr)
            return None
        return BagFeatures(bag=bag, **arrays)

    def put(self, key: str, feats: BagFeatures, about: dict[str, Any]) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp.npz"
        np.savez(
            tmp,
            features=feats.features,
            base=feats.base,
            targets=feats.targets,
            starts=feats.starts,
        )
        os.replace(tmp, self.root / f"{key}.npz")  # readers see the old entry or the new one
        meta = {**about, "frames": len(feats), "episodes": len(feats.starts)}
        meta_tmp = self.root / f".{key}.{os.getpid()}.tmp.json"
        meta_tmp.write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(meta_tmp, self.root / f"{key}.json")


# ---------------------------------------------------------------------------------------------
# Running the backbone over a bag (here, or inside a Ray actor: the same class).


class BagExtractor:
    """One frozen backbone, run over whole bags. A Ray actor is this class, remote."""

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        from aura_mem_ros.backbones import make_backbone

        self.backbone = make_backbone(name, **args)
        self._info = BackboneInfo.of(self.backbone, name, args)
        self.steps = 0  # backbone.step calls, for the report (and the tests)

    def info(self) -> BackboneInfo:
        return self._info

    def _step(self, obs: Observed) -> tuple[np.ndarray, np.ndarray]:
        from aura_mem_ros.backbones.base import Observation

        bb = self.backbone
        out = bb.step(
            Observation(
                tuple(obs.images[: bb.num_images]),
                obs.instruction,
                obs.proprio if bb.proprio_dim is not None else None,
            )
        )
        self.steps += 1
        features = out.features
        if hasattr(features, "detach"):  # a GPU backbone's features are a device tensor
            features = features.detach().float().cpu().numpy()
        return features, out.action

    def extract(
        self, bag: str, settings: ExtractionSettings, progress: bool = False
    ) -> tuple[BagFeatures, float]:
        """(the bag's steps, seconds it took)."""
        if not Path(bag).is_dir():
            import socket

            raise FileNotFoundError(
                f"bag {bag} not found on {socket.gethostname()}: workers read bags by path "
                "(put them on storage every node mounts at the same path)"
            )
        t0 = time.perf_counter()
        episodes = extract_episodes(
            bag,
            settings.topics,
            self._step,
            self.backbone.reset,
            settings.params,
            settings.episode_gap_s,
            progress=progress,
        )
        return BagFeatures.from_episodes(bag, episodes, self._info), time.perf_counter() - t0


# A backend gets the bags that missed (index, path) and returns their features; it may call
# ``done(index, features)`` as each one finishes so the cache keeps partial progress.
Backend = Callable[..., dict[int, BagFeatures]]


def extract_local(
    extractor: BagExtractor,
    missing: list[tuple[int, str]],
    settings: ExtractionSettings,
    done: Callable[[int, BagFeatures], None],
    progress: bool,
) -> dict[int, BagFeatures]:
    out = {}
    for index, bag in missing:
        out[index], _ = extractor.extract(bag, settings, progress)
        done(index, out[index])
    return out


def extraction_settings(
    args: argparse.Namespace, params: dict[str, Any], target_topic: str
) -> ExtractionSettings:
    topics = Topics(
        image=args.image_topic,
        wrist=args.wrist_topic,
        instruction=args.instruction_topic,
        proprio=args.proprio_topic,
        episode=args.episode_topic,
        target=target_topic,
    )
    return ExtractionSettings(
        topics,
        float(args.episode_gap),
        {k: params[k] for k in EXTRACTION_PARAMS if params.get(k) not in (None, "", [])},
    )


def load_training_data(args: argparse.Namespace) -> TrainingData:
    """The bags' training steps for ``aura-mem-train``'s arguments, through the cache.

    Hashes every bag, reads what the cache holds, runs the backbone over the rest (here or on
    Ray, ``args.ray``), stores them, and returns all bags in the order given.
    """
    from aura_mem_ros.serving import ServingSpec

    params = dict(node_parameters(args.bags[0]) or {})
    if args.instruction:
        params["instruction"] = args.instruction
    if not (args.backbone or params.get("backbone")):
        raise ValueError("no backbone: the bag holds no node parameters; pass --backbone")
    spec = ServingSpec.from_params(params, backbone=args.backbone, backbone_args=args.backbone_args)
    target_topic = find_target_topic(args.bags, args.target_topic)
    settings = extraction_settings(args, params, target_topic)
    cache = FeatureCache.from_arg(getattr(args, "feature_cache", None))
    progress = not getattr(args, "quiet", False)
    bags = [str(Path(b).resolve()) for b in args.bags]
    stats = ExtractionStats(
        bags=len(bags), cache_dir=None if cache.root is None else str(cache.root)
    )

    t0 = time.perf_counter()
    hashes = [bag_content_hash(b) for b in bags]
    stats.seconds_hashing = time.perf_counter() - t0

    def run(describe: Callable[[], BackboneInfo], backend: Backend) -> TrainingData:
        info = describe()
        keys = [cache_key(h, info, settings) for h in hashes]
        found: dict[int, BagFeatures] = {}
        for i, (bag, key) in enumerate(zip(bags, keys, strict=True)):
            hit = cache.get(key, bag)
            if hit is not None:
                found[i] = hit
        missing = [(i, b) for i, b in enumerate(bags) if i not in found]

        def done(index: int, feats: BagFeatures) -> None:
            about = {
                "bag": bags[index],
                "bag_sha256": hashes[index],
                "backbone": dataclasses.asdict(info),
                "settings": settings.to_dict(),
                "format": CACHE_FORMAT,
            }
            cache.put(keys[index], feats, about)

        t1 = time.perf_counter()
        if missing:
            found.update(backend(missing, settings, done, progress))
            stats.seconds_extracting = time.perf_counter() - t1
        stats.from_cache = len(bags) - len(missing)
        stats.extracted = len(missing)
        stats.frames_extracted = sum(len(found[i]) for i, _ in missing)
        ordered = [found[i] for i in range(len(bags))]
        stats.frames_total = sum(len(b) for b in ordered)
        if not stats.frames_total:
            raise ValueError(f"no frame in {args.bags} has a {target_topic} message with its stamp")
        return TrainingData(ordered, info, target_topic, stats)

    if getattr(args, "ray", None):
        from aura_mem_ros.retrain.ray_features import RayExtraction

        with RayExtraction(args.ray, spec.backbone, spec.backbone_args, args.ray_workers) as pool:
            data = run(pool.describe, pool.extract)
            data.stats.runner = pool.runner
    else:
        extractor = BagExtractor(spec.backbone, spec.backbone_args)
        data = run(extractor.info, functools.partial(extract_local, extractor))
    if progress:
        print(data.stats.line(), file=sys.stderr)
    return data
