"""One pass over a bag: the node's served steps, its statistics, and the observations behind them.

Each AuraAction carries the stamp of the camera image it was computed from, so a step is
matched to that image; the instruction and wrist image in effect are the newest ones that had
arrived (bag receive time) when that image arrived, and the proprio is the stamped joint state
nearest the image's stamp (the newest by arrival when joint states carry no stamp): what the
node used.
When a backbone is given, it is run on each matched observation right away, so only features
and base actions are kept (a 10-minute bag of 224x224 frames does not fit in memory).

Memory resets in the recorded run are inferred from the node's ``reset_policy``: an
instruction change under ``instruction_change``; an EpisodeResult (the simulator calls
``~/reset_memory`` between episodes) unless the policy is ``never``; ``step`` going backwards
(node restart). ``~/reset_memory`` service calls leave no trace in a bag and are not seen.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_ros import reset_policy
from aura_mem_ros.backbones.base import BackboneError
from aura_mem_ros.bags.read import iter_bag_with_progress, node_parameters

# A step's image arrives before its action; it is looked for among this many recent frames.
MAX_PENDING_IMAGES = 256
# Joint states kept for stamp pairing (at 1 kHz: the last second).
MAX_JOINT_STATES = 1024
# Actions that should have been taken (teleoperation, a simulator's expert), AuraAction with
# the camera image's stamp; looked for in this order when the topic is "auto".
TARGET_TOPICS = ("/teleop/action", "/expert/action")


@dataclass(frozen=True)
class Topics:
    """Topic names of one recording (the node's defaults in the root namespace)."""

    action: str = "/aura_mem/action"
    stats: str = "/aura_mem/stats"
    image: str = "/image"
    wrist: str = "/wrist_image"
    instruction: str = "/instruction"
    proprio: str = "/proprio"
    episode: str = "/episode_result"
    target: str = ""  # retraining only: the action that should have been taken

    def images(self) -> tuple[str, ...]:
        return (self.image, self.image + "/compressed", self.wrist, self.wrist + "/compressed")


@dataclass(frozen=True)
class Observed:
    """What the node had when it served one step."""

    images: tuple[np.ndarray, ...]
    instruction: str
    proprio: np.ndarray | None


@dataclass
class Recording:
    """Everything eval/retrain need from one bag (arrays indexed by served step)."""

    bag: str
    params: dict[str, Any]
    t_s: np.ndarray  # receive time of each AuraAction, seconds from bag start
    step: np.ndarray  # the node's step counter
    wrote: np.ndarray  # bool
    write_prob: np.ndarray
    latency_ms: np.ndarray
    actions: np.ndarray  # (N, chunk, dim) as published (clamped; logits for discrete)
    resets: np.ndarray  # bool (N,): memory was reset before this step
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # MemoryStats series
    stats_totals: dict[str, int] = field(default_factory=dict)
    matched: np.ndarray | None = None  # bool (N,): the source observation was found
    features: np.ndarray | None = None  # (N, d_model) where matched
    base_actions: np.ndarray | None = None  # (N, chunk, dim) where matched
    targets: np.ndarray | None = None  # (N, chunk, dim) target actions (retraining)
    target_found: np.ndarray | None = None
    duration_s: float = 0.0
    instructions: list[str] = field(default_factory=list)
    episode_success: list[bool] = field(default_factory=list)  # from EpisodeResult messages
    # False for steps whose memory content is unknown: the bag starts mid-run (the first
    # AuraAction's step is not 1) and these come before the first reset seen in the bag.
    memory_known: np.ndarray | None = None
    # The bag starts mid-run and shows no reset at all: the replay starts from an empty
    # memory where the node's was not, so it cannot be faithful.
    memory_unknown_at_start: bool = False

    @property
    def n(self) -> int:
        return len(self.step)


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 10**9 + int(stamp.nanosec)


def _to_rgb(topic: str, msg: Any) -> np.ndarray:
    from aura_mem_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb

    rgb = compressed_to_rgb(msg) if topic.endswith("/compressed") else image_to_rgb(msg)
    # Bag buffers are read-only; torch warns about (and must not write to) such arrays.
    return rgb if rgb.flags.writeable else rgb.copy()


def _nearest_joints(
    joints: deque[tuple[int, np.ndarray | None]], stamp: int, fallback: np.ndarray | None
) -> np.ndarray | None:
    """The node's pairing: the stamped joint state nearest ``stamp`` (else ``fallback``)."""
    if not joints or not stamp:
        return fallback
    return min(joints, key=lambda j: abs(j[0] - stamp))[1]


def _proprio(msg: Any, params: dict[str, Any]) -> np.ndarray | None:
    from aura_mem_ros.ros.inputs import joint_state_to_proprio

    try:
        return joint_state_to_proprio(
            msg,
            list(params.get("proprio_joint_names") or []),
            str(params.get("proprio_fields") or "position"),
            None,
        )
    except Exception:  # the node rejects such a frame too: no proprio then
        return None


def _cumulative(values: list[int]) -> int:
    """Total of a counter that restarts from 0 when the node restarts."""
    total, prev = 0, 0
    for v in values:
        total += v - prev if v >= prev else v
        prev = v
    return total


def extract(
    bag: str | Path,
    topics: Topics = Topics(),
    *,
    step_fn: Callable[[Observed], tuple[np.ndarray, np.ndarray]] | None = None,
    reset_fn: Callable[[], None] | None = None,
    params: dict[str, Any] | None = None,
    progress: bool = True,
) -> Recording:
    """Read ``bag`` once. ``step_fn(obs) -> (features, base_action)`` runs the frozen backbone
    on each matched observation (in order, with ``reset_fn`` at each memory reset)."""
    bag = str(bag)
    params = dict(node_parameters(bag) or {}) | dict(params or {})
    policy = reset_policy.from_params(params)
    instruction = str(params.get("instruction") or "")
    proprio: np.ndarray | None = None
    # Stamped joint states (stamp ns, vector), for the node's nearest-stamp pairing; the one
    # that belongs to a frame may be recorded just after it, so pairing waits for the action.
    joints: deque[tuple[int, np.ndarray | None]] = deque(maxlen=MAX_JOINT_STATES)
    wrist: np.ndarray | None = None
    wrist_raw: tuple[str, Any] | None = None
    pending: OrderedDict[int, tuple[str, Any, str, Any, Any, int]] = OrderedDict()
    episode_marks = 0  # EpisodeResults seen so far
    instr_changes = 0

    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "t",
            "step",
            "wrote",
            "prob",
            "lat",
            "act",
            "reset",
            "matched",
            "feat",
            "base",
            "stamp",
        )
    }
    stats_rows: dict[str, list[float]] = {
        k: []
        for k in (
            "t",
            "steps",
            "writes",
            "write_rate",
            "stale",
            "dropped",
            "rejected",
            "latency_p95_ms",
        )
    }
    last_epoch: tuple[int, int] | None = None  # (instruction changes, episodes) at last step
    refused: list[str] = []  # why the backbone refused each frame it was given
    last_step = -1
    t0: int | None = None
    t_end = 0
    targets: OrderedDict[int, np.ndarray] = OrderedDict()  # target actions by image stamp
    instructions: list[str] = [instruction] if instruction else []
    image_topics = set(topics.images())
    wanted = [
        topics.action,
        topics.stats,
        topics.instruction,
        topics.proprio,
        topics.episode,
        *image_topics,
        *([topics.target] if topics.target else []),
    ]

    for topic, t_ns, msg in iter_bag_with_progress(bag, wanted, progress):
        t0 = t_ns if t0 is None else t0
        t_end = t_ns
        if topic == topics.instruction:
            if msg.data != instruction and msg.data.strip():
                if instruction and policy.resets_on_instruction:
                    instr_changes += 1
                instruction = msg.data
                instructions.append(instruction)
        elif topic == topics.proprio:
            proprio = _proprio(msg, params)
            if _stamp_ns(msg.header.stamp):
                joints.append((_stamp_ns(msg.header.stamp), proprio))
        elif topic in (topics.wrist, topics.wrist + "/compressed"):
            wrist_raw = (topic, msg)
            wrist = None  # decoded lazily: most frames are never matched to a step
        elif topic in image_topics:
            if wrist is None and wrist_raw is not None:
                wrist = _to_rgb(*wrist_raw)
            pending[_stamp_ns(msg.header.stamp)] = (
                topic,
                msg,
                instruction,
                proprio,
                wrist,
                instr_changes * 1_000_000 + episode_marks,
            )
            while len(pending) > MAX_PENDING_IMAGES:
                pending.popitem(last=False)
        elif topic == topics.episode:
            if policy.resets_on_request:  # under "never" the simulator's reset call is refused
                episode_marks += 1
            if hasattr(msg, "success"):
                rows.setdefault("success", []).append(bool(msg.success))
        elif topics.target and topic == topics.target:
            # Kept whole (a few floats each): a target may arrive after the node's action.
            targets[_stamp_ns(msg.header.stamp)] = np.asarray(msg.action, np.float32)
        elif topic == topics.stats:
            stats_rows["t"].append((t_ns - t0) / 1e9)
            stats_rows["steps"].append(int(msg.steps))
            stats_rows["writes"].append(int(msg.writes))
            stats_rows["write_rate"].append(float(msg.write_rate))
            stats_rows["stale"].append(int(msg.stale_frames))
            stats_rows["dropped"].append(int(msg.dropped_frames))
            stats_rows["rejected"].append(int(msg.rejected_inputs))
            stats_rows["latency_p95_ms"].append(float(msg.latency_p95_ms))
        elif topic == topics.action:
            chunk, dim = int(msg.chunk_size), int(msg.action_dim)
            action = np.asarray(msg.action, np.float32)
            if chunk * dim != action.size or action.size == 0:
                continue  # malformed or a safe action without shape: not a served step
            if getattr(msg, "is_safe_action", None) or (
                # bags recorded before AuraAction carried is_safe_action
                not hasattr(msg, "is_safe_action")
                and int(msg.step) == last_step
                and float(msg.latency_ms) == 0.0
                and not msg.wrote
            ):
                continue  # the safe action published on deactivate: no observation behind it
            stamp = _stamp_ns(msg.header.stamp)
            src = pending.get(stamp)
            epoch = (
                (instr_changes, episode_marks)
                if src is None
                else (src[5] // 1_000_000, src[5] % 1_000_000)
            )
            reset = last_epoch is None or epoch != last_epoch or int(msg.step) <= last_step
            last_epoch, last_step = epoch, int(msg.step)
            rows["t"].append((t_ns - t0) / 1e9)
            rows["step"].append(int(msg.step))
            rows["wrote"].append(bool(msg.wrote))
            rows["prob"].append(float(msg.write_prob))
            rows["lat"].append(float(msg.latency_ms))
            rows["act"].append(action.reshape(chunk, dim))
            rows["reset"].append(reset)
            rows["matched"].append(src is not None)
            rows["stamp"].append(stamp)
            if step_fn is not None:
                if reset and reset_fn is not None:
                    reset_fn()
                if src is not None:
                    img_topic, img, instr, prop, wr, _ = src
                    prop = _nearest_joints(joints, stamp, prop)
                    images = (_to_rgb(img_topic, img),) + ((wr,) if wr is not None else ())
                    try:
                        feat, base = step_fn(Observed(images, instr, prop))
                    except BackboneError as exc:
                        # e.g. the recorder had no joint state yet for this frame: the
                        # step stays in the recording, unmatched (not replayed)
                        refused.append(str(exc))
                        feat = base = None
                    rows["feat"].append(None if feat is None else np.asarray(feat, np.float32))
                    rows["base"].append(None if base is None else np.asarray(base, np.float32))
                else:
                    rows["feat"].append(None)
                    rows["base"].append(None)

    n = len(rows["step"])
    shape = rows["act"][0].shape if n else (1, 1)
    rec = Recording(
        bag=bag,
        params=params,
        t_s=np.asarray(rows["t"], np.float64),
        step=np.asarray(rows["step"], np.int64),
        wrote=np.asarray(rows["wrote"], bool),
        write_prob=np.asarray(rows["prob"], np.float32),
        latency_ms=np.asarray(rows["lat"], np.float32),
        actions=np.stack(rows["act"]) if n else np.zeros((0, *shape), np.float32),
        resets=np.asarray(rows["reset"], bool),
        matched=np.asarray(rows["matched"], bool),
        duration_s=(t_end - (t0 or 0)) / 1e9 if t0 is not None else 0.0,
        instructions=instructions,
        episode_success=list(rows.get("success", [])),
    )
    rec.stats = {k: np.asarray(v) for k, v in stats_rows.items()}
    if stats_rows["t"]:
        rec.stats_totals = {
            k: _cumulative([int(x) for x in stats_rows[k]])
            for k in ("steps", "writes", "stale", "dropped", "rejected")
        }
    if topics.target and n:
        shape = rec.actions.shape[1:]
        found = [
            stamp in targets and targets[stamp].size == rec.actions[0].size
            for stamp in rows["stamp"]
        ]
        rec.target_found = np.asarray(found, bool)
        rec.targets = np.stack(
            [
                targets[stamp].reshape(shape) if ok else np.zeros(shape, np.float32)
                for stamp, ok in zip(rows["stamp"], found, strict=True)
            ]
        )
    if step_fn is not None and n:
        ok = [f is not None for f in rows["feat"]]
        d_model = next((f.shape[0] for f in rows["feat"] if f is not None), 1)
        base_shape = next((b.shape for b in rows["base"] if b is not None), shape)
        rec.features = np.stack(
            [f if f is not None else np.zeros(d_model, np.float32) for f in rows["feat"]]
        )
        rec.base_actions = np.stack(
            [b if b is not None else np.zeros(base_shape, np.float32) for b in rows["base"]]
        )
        rec.matched = np.asarray(ok, bool)
    if refused:
        print(
            f"{bag}: {len(refused)} step(s) not replayed, the backbone refused their frame "
            f"(first: {refused[0]})",
            file=sys.stderr,
        )
    _mark_known_memory(rec)
    return rec


def _mark_known_memory(rec: Recording) -> None:
    """Steps before the first reset of a bag that starts mid-run are not replayable: the node's
    memory then held what earlier, unrecorded steps wrote (a recorder joining a running node
    misses its first actions)."""
    known = np.ones(rec.n, bool)
    if rec.n and rec.step[0] > 1:
        later = np.flatnonzero(rec.resets[1:]) + 1
        if later.size:
            known[: later[0]] = False
        else:
            rec.memory_unknown_at_start = True
    rec.memory_known = known


def describe_params(params: dict[str, Any]) -> str:
    keep = ("backbone", "backbone_args", "aura_checkpoint", "gate", "gate_threshold", "seed")
    return json.dumps({k: params.get(k) for k in keep if k in params}, sort_keys=True)
