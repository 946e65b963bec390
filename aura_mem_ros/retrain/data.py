"""Training sequences from bags: (observation -> frozen backbone features, base action, target).

A training step is a camera frame for which a target action with the SAME header.stamp was
recorded (the teleoperation / correction topic, see ``TARGET_TOPICS``). The instruction,
proprio and wrist image in effect are the newest ones received before the frame, as the
node would have used them. Episodes (memory resets) end at an EpisodeResult, an instruction
change, or a gap of more than ``episode_gap_s`` between frames; long episodes are cut into
windows for truncated back-propagation through time.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_mem_ros.backbones.base import BackboneError
from aura_mem_ros.bags.read import iter_bag_with_progress, topic_types
from aura_mem_ros.eval.extract import (
    TARGET_TOPICS,
    Observed,
    Topics,
    _proprio,
    _stamp_ns,
    _to_rgb,
)

_PENDING = 512


@dataclass
class Episode:
    bag: str
    features: list[np.ndarray] = field(default_factory=list)
    base: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)


def find_target_topic(bags: Sequence[str | Path], requested: str) -> str:
    if requested != "auto":
        return requested
    present = set().union(*(topic_types(b) for b in bags))
    for topic in TARGET_TOPICS:
        if topic in present:
            return topic
    raise ValueError(
        f"no target action topic in the bags (looked for {list(TARGET_TOPICS)}; "
        f"topics present: {sorted(present)}): pass --target-topic"
    )


def extract_episodes(
    bag: str | Path,
    topics: Topics,
    step_fn: Callable[[Observed], tuple],
    reset_fn: Callable[[], None],
    params: dict[str, Any],
    episode_gap_s: float = 2.0,
    progress: bool = True,
) -> list[Episode]:
    bag = str(bag)
    instruction = str(params.get("instruction") or "")
    proprio: np.ndarray | None = None
    wrist: tuple[str, Any] | None = None
    images: OrderedDict[int, tuple[str, Any, str, Any, Any, int]] = OrderedDict()
    targets: OrderedDict[int, np.ndarray] = OrderedDict()
    episodes: list[Episode] = []
    boundary = 0  # bumps at each EpisodeResult / instruction change
    last: tuple[int, int] | None = None  # (boundary, stamp) of the last emitted step
    skipped: list[str] = []  # why each frame the backbone refused was left out
    wanted = [topics.instruction, topics.proprio, topics.episode, topics.target, *topics.images()]

    def emit(stamp: int) -> None:
        nonlocal last
        topic, msg, instr, prop, wr, b = images.pop(stamp)
        target = targets.pop(stamp)
        new = (
            last is None
            or b != last[0]
            or (stamp - last[1]) / 1e9 > episode_gap_s
            or stamp <= last[1]
        )
        if new:
            reset_fn()
            episodes.append(Episode(bag))
        imgs = (_to_rgb(topic, msg),) + ((_to_rgb(*wr),) if wr is not None else ())
        # A state published just after its frame (same stamp) is still that frame's state.
        try:
            feat, base = step_fn(Observed(imgs, instr, prop if prop is not None else proprio))
        except BackboneError as exc:
            # The backbone cannot take this frame (e.g. the recorder had no joint state yet):
            # the frame is left out, not the bag; the count is reported below.
            skipped.append(str(exc))
            last = (b, stamp)
            return
        base = np.asarray(base, np.float32)
        if target.size != base.size:
            raise ValueError(
                f"{bag}: target action has {target.size} values, the backbone's "
                f"action has {base.size} ({base.shape})"
            )
        ep = episodes[-1]
        ep.features.append(np.asarray(feat, np.float32))
        ep.base.append(base)
        ep.targets.append(target.reshape(base.shape))
        last = (b, stamp)

    for topic, _, msg in iter_bag_with_progress(bag, wanted, progress):
        if topic == topics.instruction:
            if msg.data.strip() and msg.data != instruction:
                if instruction:
                    boundary += 1
                instruction = msg.data
        elif topic == topics.proprio:
            proprio = _proprio(msg, params)
        elif topic == topics.episode:
            boundary += 1
        elif topic in (topics.wrist, topics.wrist + "/compressed"):
            wrist = (topic, msg)
        elif topic == topics.target:
            stamp = _stamp_ns(msg.header.stamp)
            targets[stamp] = np.asarray(msg.action, np.float32)
            if stamp in images:
                emit(stamp)
        elif topic in topics.images():
            stamp = _stamp_ns(msg.header.stamp)
            images[stamp] = (topic, msg, instruction, proprio, wrist, boundary)
            if stamp in targets:
                emit(stamp)
        for pending in (images, targets):
            while len(pending) > _PENDING:
                pending.popitem(last=False)
    if skipped:
        print(
            f"{bag}: {len(skipped)} frame(s) left out, the backbone refused them "
            f"(first: {skipped[0]})",
            file=sys.stderr,
        )
    return [e for e in episodes if len(e)]


def windows(episodes: Sequence[Episode], length: int) -> list[Episode]:
    """Cut episodes longer than ``length`` steps (each window starts with fresh memory)."""
    out: list[Episode] = []
    for ep in episodes:
        for s in range(0, len(ep), length):
            out.append(
                Episode(
                    ep.bag,
                    ep.features[s : s + length],
                    ep.base[s : s + length],
                    ep.targets[s : s + length],
                )
            )
    return out


def to_batch(episodes: Sequence[Episode], discrete: bool) -> Any:
    """Pad to the longest episode; mask marks real steps."""
    from aura_mem_ros.core.train import SequenceBatch

    n_seq, n_steps = len(episodes), max(len(e) for e in episodes)
    d = episodes[0].features[0].shape[0]
    chunk, dim = episodes[0].base[0].shape
    feats = np.zeros((n_seq, n_steps, d), np.float32)
    base = np.zeros((n_seq, n_steps, chunk, dim), np.float32)
    tgt = np.zeros((n_seq, n_steps, chunk, dim), np.float32)
    mask = np.zeros((n_seq, n_steps), np.float32)
    for i, e in enumerate(episodes):
        n = len(e)
        feats[i, :n] = np.stack(e.features)
        base[i, :n] = np.stack(e.base)
        tgt[i, :n] = np.stack(e.targets)
        mask[i, :n] = 1.0
    targets: torch.Tensor
    if discrete:
        # Discrete targets are logits / one-hot over the actions: the class is the argmax.
        targets = torch.from_numpy(tgt[:, :, -1, :].argmax(-1)).long()
    else:
        targets = torch.from_numpy(tgt)
    return SequenceBatch(
        torch.from_numpy(feats), torch.from_numpy(base), targets, torch.from_numpy(mask)
    )
