"""A rosbag2 bag written as size/time-limited splits, each one closed and indexed when full.

Layout (the one ``ros2 bag record`` produces, so ``ros2 bag info/play`` read it):

    BAG/metadata.yaml          lists the CLOSED split files only, rewritten atomically
    BAG/BAG_0.mcap, BAG_1.mcap ...
    BAG/.recording/            the split being written + topics.json (removed on a clean close)

rosbags' Writer writes one file per bag, so each split is a complete one-file bag written in
``.recording/BAG_k/`` and moved into place when it closes; ``metadata.yaml`` for the whole bag
is composed here. Why this shape: an mcap file is only indexed (readable by rosbags or rosbag2)
once its summary and footer are written at close. Whatever kills the recorder, every closed
split stays readable through ``metadata.yaml``; the open split is salvaged by ``recover_bag``
(``aura-mem-record --recover BAG``), which keeps every chunk flushed before the kill.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.metadata import dump_qos_v9
from ruamel.yaml import YAML

BAG_VERSION = 9
RECORDING_DIR = ".recording"
TOPICS_FILE = "topics.json"
STORAGES: dict[str, tuple[StoragePlugin, str]] = {
    "mcap": (StoragePlugin.MCAP, ".mcap"),
    "sqlite3": (StoragePlugin.SQLITE3, ".db3"),
}
# Per-message framing in an mcap chunk plus its index entry, for the split-size estimate.
_MSG_OVERHEAD = 57


@dataclass(frozen=True)
class TopicSpec:
    """What a bag must know about a topic: type, embedded definition, hash, offered QoS."""

    topic: str
    msgtype: str
    msgdef: str
    rihs01: str
    qos: tuple[Qos, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "msgtype": self.msgtype,
            "msgdef": self.msgdef,
            "rihs01": self.rihs01,
            "qos": dump_qos_v9(list(self.qos)),
        }


@dataclass
class FileInfo:
    path: str
    start_ns: int
    end_ns: int
    count: int
    per_topic: dict[str, int] = field(default_factory=dict)


def _yaml_text(data: Any) -> str:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf8")
    os.replace(tmp, path)


def metadata_dict(
    storage: str,
    topics: Sequence[TopicSpec],
    files: Sequence[FileInfo],
    custom_data: dict[str, str],
) -> dict[str, Any]:
    """rosbag2 metadata v9 (the same keys rosbags' Writer and rosbag2 itself write)."""
    counted = [f for f in files if f.count]
    start = min((f.start_ns for f in counted), default=0)
    end = max((f.end_ns for f in counted), default=0)
    totals: dict[str, int] = {t.topic: 0 for t in topics}
    for f in files:
        for topic, n in f.per_topic.items():
            totals[topic] = totals.get(topic, 0) + n
    return {
        "rosbag2_bagfile_information": {
            "version": BAG_VERSION,
            "storage_identifier": storage,
            "relative_file_paths": [f.path for f in files],
            "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(f.count for f in files),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": t.topic,
                        "type": t.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": dump_qos_v9(list(t.qos)),
                        "type_description_hash": t.rihs01,
                    },
                    "message_count": totals.get(t.topic, 0),
                }
                for t in topics
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": f.path,
                    "starting_time": {"nanoseconds_since_epoch": f.start_ns},
                    "duration": {"nanoseconds": max(0, f.end_ns - f.start_ns)},
                    "message_count": f.count,
                }
                for f in files
            ],
            "custom_data": dict(custom_data) or None,
            "ros_distro": "kilted",
        }
    }


class SplitBagWriter:
    """Write messages (already CDR) into a split bag. Not thread-safe: one writer thread.

    max_split_bytes / max_split_s: start a new file when the open one reaches either (0 = off).
    flush_interval_s: hand buffered data to the OS at least this often (mcap: close the
        pending chunk; sqlite3: commit), which bounds what a SIGKILL can lose.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        max_split_bytes: int = 0,
        max_split_s: float = 0.0,
        flush_interval_s: float = 1.0,
        custom_data: dict[str, str] | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; not overwriting a bag")
        self.storage = storage
        self.plugin, self.suffix = STORAGES[storage]
        self.max_split_bytes = max_split_bytes
        self.max_split_s = max_split_s
        self.flush_interval_s = flush_interval_s
        self.custom_data: dict[str, str] = dict(custom_data or {})
        self.topics: dict[str, TopicSpec] = {}
        self.files: list[FileInfo] = []
        self.written: dict[str, int] = {}
        self.bytes_written = 0
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._split_index = 0
        self._split_bytes = 0
        self._split_opened = 0.0
        self._last_flush = time.monotonic()
        self._current: FileInfo | None = None
        self.path.mkdir(parents=True)
        (self.path / RECORDING_DIR).mkdir()
        self._write_topics_file()

    # -- topics -------------------------------------------------------------------------
    def add_topic(self, spec: TopicSpec) -> None:
        if spec.topic in self.topics:
            return
        self.topics[spec.topic] = spec
        self.written.setdefault(spec.topic, 0)
        self._write_topics_file()
        if self._writer is not None:
            self._add_connection(spec)

    def set_custom_data(self, key: str, value: str) -> None:
        self.custom_data[key] = value
        self._write_topics_file()

    def _write_topics_file(self) -> None:
        # What recover_bag needs to rebuild metadata.yaml if the process dies.
        data = {
            "storage": self.storage,
            "custom_data": self.custom_data,
            "topics": [t.to_json() for t in self.topics.values()],
        }
        _atomic_write(self.path / RECORDING_DIR / TOPICS_FILE, json.dumps(data, indent=1))

    def _add_connection(self, spec: TopicSpec) -> None:
        assert self._writer is not None
        self._connections[spec.topic] = self._writer.add_connection(
            spec.topic,
            spec.msgtype,
            msgdef=spec.msgdef,
            rihs01=spec.rihs01,
            offered_qos_profiles=list(spec.qos),
        )

    # -- splits -------------------------------------------------------------------------
    def _split_name(self, index: int) -> str:
        return f"{self.path.name}_{index}"

    def _open_split(self) -> None:
        name = self._split_name(self._split_index)
        self._writer = Writer(
            self.path / RECORDING_DIR / name, version=BAG_VERSION, storage_plugin=self.plugin
        )
        self._writer.open()
        self._connections = {}
        for spec in self.topics.values():
            self._add_connection(spec)
        self._current = FileInfo(name + self.suffix, 2**63 - 1, 0, 0, {})
        self._split_bytes = 0
        self._split_opened = time.monotonic()

    def _close_split(self) -> None:
        if self._writer is None:
            return
        writer, info = self._writer, self._current
        assert info is not None
        self._writer, self._current = None, None
        writer.close()
        tmp_dir = writer.path
        os.replace(tmp_dir / info.path, self.path / info.path)
        shutil.rmtree(tmp_dir)
        self.files.append(info)
        self._split_index += 1
        self.write_metadata()

    def write_metadata(self) -> None:
        text = _yaml_text(
            metadata_dict(self.storage, list(self.topics.values()), self.files, self.custom_data)
        )
        _atomic_write(self.path / "metadata.yaml", text)

    # -- messages -----------------------------------------------------------------------
    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        if self._writer is None:
            self._open_split()
        assert self._writer is not None and self._current is not None
        self._writer.write(self._connections[topic], timestamp_ns, data)
        info = self._current
        info.count += 1
        info.per_topic[topic] = info.per_topic.get(topic, 0) + 1
        info.start_ns = min(info.start_ns, timestamp_ns)
        info.end_ns = max(info.end_ns, timestamp_ns)
        self.written[topic] += 1
        self._split_bytes += len(data) + _MSG_OVERHEAD
        self.bytes_written += len(data)
        if (self.max_split_bytes and self._split_bytes >= self.max_split_bytes) or (
            self.max_split_s and time.monotonic() - self._split_opened >= self.max_split_s
        ):
            self._close_split()

    def tick(self) -> None:
        """Called by the writer thread when idle or between batches: flush and time splits."""
        now = time.monotonic()
        if (
            self._writer is not None
            and self.max_split_s
            and now - self._split_opened >= self.max_split_s
        ):
            self._close_split()
        if now - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Push buffered messages to the OS, so a killed process leaves them salvageable.

        rosbags has no public flush; these are its storage objects' own steps (closing the
        pending mcap chunk early; committing the sqlite3 transaction).
        """
        self._last_flush = time.monotonic()
        storage = getattr(self._writer, "storage", None)
        if storage is None:
            return
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and hasattr(storage, "close_chunk") and chunk.msgs:
            storage.close_chunk()
        bio = getattr(storage, "bio", None)
        if bio is not None:
            bio.flush()
        conn = getattr(storage, "conn", None)
        if conn is not None:
            conn.commit()

    def close(self) -> None:
        """Close the open split, write the final metadata.yaml, remove ``.recording``."""
        self._close_split()
        self.write_metadata()
        shutil.rmtree(self.path / RECORDING_DIR, ignore_errors=True)


# -- recovery -------------------------------------------------------------------------------
def _salvage_mcap(src: Path, dst: Path) -> FileInfo:
    """Copy every complete record of a truncated mcap into a new, indexed one.

    The stream reader yields the messages of each complete chunk; a chunk cut by the kill
    ends the stream (EndOfFile / a short read) and is dropped.
    """
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapFileWriter

    info = FileInfo(dst.name, 2**63 - 1, 0, 0, {})
    schema_ids: dict[int, int] = {}
    channels: dict[int, tuple[int, str]] = {}
    with src.open("rb") as fin, dst.open("xb") as fout:
        out = McapFileWriter(fout, compression=CompressionType.NONE)
        out.start(profile="ros2", library="aura_mem_ros recover")
        try:
            for record in StreamReader(fin).records:
                if isinstance(record, Schema) and record.id not in schema_ids:
                    schema_ids[record.id] = out.register_schema(
                        record.name, record.encoding, record.data
                    )
                elif isinstance(record, Channel) and record.id not in channels:
                    channels[record.id] = (
                        out.register_channel(
                            record.topic,
                            record.message_encoding,
                            schema_ids.get(record.schema_id, 0),
                            dict(record.metadata),
                        ),
                        record.topic,
                    )
                elif isinstance(record, Message) and record.channel_id in channels:
                    cid, topic = channels[record.channel_id]
                    out.add_message(
                        cid, record.log_time, record.data, record.publish_time, record.sequence
                    )
                    info.count += 1
                    info.per_topic[topic] = info.per_topic.get(topic, 0) + 1
                    info.start_ns = min(info.start_ns, record.log_time)
                    info.end_ns = max(info.end_ns, record.log_time)
        except (McapError, EOFError, ValueError, OSError):
            pass  # the cut: everything before it is kept
        out.finish()
    return info


def _salvage_sqlite(src: Path, dst: Path) -> FileInfo:
    """Committed rows survive a kill (sqlite's journal rolls back only the open transaction)."""
    shutil.copyfile(src, dst)
    info = FileInfo(dst.name, 2**63 - 1, 0, 0, {})
    with sqlite3.connect(f"file:{dst}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT t.name, count(*), min(m.timestamp), max(m.timestamp) "
            "FROM messages m JOIN topics t ON m.topic_id = t.id "
            "GROUP BY t.name"
        ).fetchall()
    conn.close()
    for topic, n, lo, hi in rows:
        info.per_topic[topic] = int(n)
        info.count += int(n)
        info.start_ns, info.end_ns = min(info.start_ns, int(lo)), max(info.end_ns, int(hi))
    return info


def _load_metadata_files(bag: Path) -> list[FileInfo]:
    meta = bag / "metadata.yaml"
    if not meta.is_file():
        return []
    info = YAML(typ="safe").load(meta.read_text())["rosbag2_bagfile_information"]
    files = []
    for f in info.get("files") or []:
        start = int(f["starting_time"]["nanoseconds_since_epoch"])
        files.append(
            FileInfo(
                f["path"],
                start,
                start + int(f["duration"]["nanoseconds"]),
                int(f["message_count"]),
                {},
            )
        )
    # Per-file topic counts are not in metadata v9: carry the topic totals on the first file.
    if files:
        for t in info.get("topics_with_message_count") or []:
            files[0].per_topic[t["topic_metadata"]["name"]] = int(t["message_count"])
    return files


def recover_bag(bag: str | Path) -> dict[str, Any]:
    """Make a bag left by a killed recorder whole: salvage the open split, rewrite metadata.

    Returns {"recovered_files": [...], "salvaged_messages": n, "message_count": total}.
    Idempotent: a bag without ``.recording`` is left as it is.
    """
    bag = Path(bag)
    rec = bag / RECORDING_DIR
    if not rec.is_dir():
        return {
            "recovered_files": [],
            "salvaged_messages": 0,
            "message_count": sum(f.count for f in _load_metadata_files(bag)),
        }
    state = json.loads((rec / TOPICS_FILE).read_text())
    storage = state["storage"]
    _, suffix = STORAGES[storage]
    topics = [
        TopicSpec(
            t["topic"],
            t["msgtype"],
            t["msgdef"],
            t["rihs01"],
            tuple(_qos_from_dict(q) for q in t["qos"]),
        )
        for t in state["topics"]
    ]
    files = _load_metadata_files(bag)
    listed = {f.path for f in files}
    # A split closed and moved into place just before the kill, but not yet listed: move it
    # back into .recording and treat it like the open split (salvage copies it whole).
    for orphan in bag.glob(f"{bag.name}_*{suffix}"):
        if orphan.name not in listed:
            (rec / orphan.stem).mkdir(exist_ok=True)
            os.replace(orphan, rec / orphan.stem / orphan.name)
    recovered: list[str] = []
    salvaged = 0
    for split_dir in sorted(p for p in rec.iterdir() if p.is_dir()):
        src = split_dir / (split_dir.name + suffix)
        dst = bag / (split_dir.name + suffix)
        if not src.is_file() or dst.name in listed:
            continue
        info = (_salvage_mcap if storage == "mcap" else _salvage_sqlite)(src, dst)
        if info.count == 0:
            dst.unlink()
            continue
        files.append(info)
        recovered.append(dst.name)
        salvaged += info.count
    files.sort(key=lambda f: int(Path(f.path).stem.rsplit("_", 1)[-1]))
    text = _yaml_text(metadata_dict(storage, topics, files, state.get("custom_data", {})))
    _atomic_write(bag / "metadata.yaml", text)
    shutil.rmtree(rec)
    return {
        "recovered_files": recovered,
        "salvaged_messages": salvaged,
        "message_count": sum(f.count for f in files),
    }


def _qos_from_dict(d: dict[str, Any]) -> Qos:
    from rosbags.interfaces import (
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    def t(x: dict[str, int]) -> QosTime:
        return QosTime(int(x["sec"]), int(x["nsec"]))

    return Qos(
        QosHistory[d["history"].upper()],
        int(d["depth"]),
        QosReliability[d["reliability"].upper()],
        QosDurability[d["durability"].upper()],
        t(d["deadline"]),
        t(d["lifespan"]),
        QosLiveliness[d["liveliness"].upper()],
        t(d["liveliness_lease_duration"]),
        bool(d["avoid_ros_namespace_conventions"]),
    )
