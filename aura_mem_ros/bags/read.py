"""Reading bags recorded by aura-mem-record (or ``ros2 bag record``): decoded messages in time
order with aura_mem_ros's types known, plus the node parameters the recorder stored."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader
from ruamel.yaml import YAML
from tqdm import tqdm

from aura_mem_ros.bags.types import make_typestore

NODE_PARAMS_KEY = "aura_mem.node_parameters"


def bag_metadata(bag: str | Path) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` mapping of metadata.yaml."""
    path = Path(bag) / "metadata.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"{bag} is not a rosbag2 bag (no metadata.yaml); if the "
            f"recorder was killed, run: aura-mem-record --recover {bag}"
        )
    return YAML(typ="safe").load(path.read_text())["rosbag2_bagfile_information"]


def node_parameters(bag: str | Path) -> dict[str, Any] | None:
    """The aura_mem node's parameters stored by the recorder (None if it found no node)."""
    custom = bag_metadata(bag).get("custom_data") or {}
    text = custom.get(NODE_PARAMS_KEY)
    return json.loads(text) if text else None


def topic_types(bag: str | Path) -> dict[str, str]:
    return {
        t["topic_metadata"]["name"]: t["topic_metadata"]["type"]
        for t in bag_metadata(bag).get("topics_with_message_count") or []
    }


def iter_messages(
    bags: Sequence[str | Path], topics: Sequence[str] | None = None
) -> Iterator[tuple[str, int, Any]]:
    """(topic, receive time ns, decoded message) in time order across ``bags``."""
    with AnyReader([Path(b) for b in bags], default_typestore=make_typestore()) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield conn.topic, timestamp, reader.deserialize(raw, conn.msgtype)


def iter_bag_with_progress(
    bag: str | Path, topics: Sequence[str], progress: bool = True
) -> Iterator[tuple[str, int, Any]]:
    """``iter_messages`` over one bag, with a progress bar sized from its metadata.yaml."""
    counts = {
        t["topic_metadata"]["name"]: int(t["message_count"])
        for t in bag_metadata(bag).get("topics_with_message_count") or []
    }
    with tqdm(
        total=sum(counts.get(t, 0) for t in set(topics)),
        desc=f"read {Path(bag).name}",
        unit="msg",
        disable=not progress,
        leave=False,
    ) as bar:
        for item in iter_messages([bag], topics):
            bar.update()
            yield item


def message_count(bag: str | Path, topic: str) -> int:
    for t in bag_metadata(bag).get("topics_with_message_count") or []:
        if t["topic_metadata"]["name"] == topic:
            return int(t["message_count"])
    return 0
