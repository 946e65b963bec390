"""``aura-mem-record``: record the AURA-Mem node's topics into a rosbag2 bag (mcap or sqlite3).

Hot path: a raw subscription (``raw=True``) hands the CDR bytes to a callback that only
stamps them and appends them to a byte-bounded queue; one writer thread empties the queue
into the bag. Nothing is decoded or re-encoded. When the queue is full the NEWEST message is
dropped and counted (the writer is behind; holding more would only grow memory).

Topics are subscribed as soon as a publisher appears (the graph is polled), with a QoS that
matches the publishers: best effort if any publisher is best effort (a reliable subscription
would receive nothing from it), transient local if all publishers are (latched instruction).
The publishers' offered QoS is stored in the bag so ``ros2 bag play`` republishes alike.

SIGINT / SIGTERM: stop subscribing, drain the queue, close the split, write metadata.yaml.
SIGKILL cannot be caught: closed splits stay readable; run ``aura-mem-record --recover BAG``
to salvage the open split (everything flushed before the kill, see ``writer.py``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

from aura_mem_ros.bags.read import NODE_PARAMS_KEY
from aura_mem_ros.bags.types import UnknownTypeError, ensure_type, make_typestore
from aura_mem_ros.bags.writer import STORAGES, SplitBagWriter, TopicSpec, recover_bag
from aura_mem_ros.ros.topics import node_path, node_topics

# The node's inputs and outputs (node ``aura_mem`` in the root namespace, as the launch file
# starts it by default: one table, ``ros/topics.py``), the teleoperation topic aura-mem-train
# learns from, and the simulator's episode results. Topics that never appear are simply not
# recorded.
DEFAULT_TOPICS: tuple[str, ...] = tuple(node_topics())
# Never worth recording with --all: ROS plumbing.
EXCLUDED_WITH_ALL = ("/rosout", "/parameter_events")
PARAMS_RETRY_S = 0.3
GRAPH_POLL_S = 0.05
# The node parameters stored in the bag so aura-mem-eval can rebuild the same frozen backbone.
NODE_PARAMETERS = (
    "backbone",
    "backbone_args",
    "aura_checkpoint",
    "gate",
    "gate_threshold",
    "seed",
    "instruction",
    "reset_policy",
    "write_rate_budget",
    "use_wrist_image",
    "use_compressed",
    "use_proprio",
    "proprio_joint_names",
    "proprio_fields",
    "max_image_pixels",
    "action_min",
    "action_max",
)


def parse_size(text: str) -> int:
    """``"64M"`` / ``"1.5G"`` / ``"4096"`` -> bytes (K/M/G are powers of 1024)."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KMG" else text
    value = int(float(number) * scale)
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must be >= 0, got {text!r}")
    return value


# -- the bounded hand-off between executor callbacks and the writer thread ---------------------
@dataclass
class TopicCounters:
    received: int = 0
    dropped: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class CustomData:
    """A metadata.yaml custom_data entry, passed through the queue so only the writer thread
    ever touches the writer."""

    key: str
    value: str


QueueItem = tuple[str, int, bytes] | TopicSpec | CustomData


@dataclass
class RecordQueue:
    """A FIFO bounded by bytes (an image is 150 kB, a stats message 100 B: counting items
    would bound nothing). ``put`` never blocks: when full it refuses and the caller counts."""

    max_bytes: int
    items: deque[QueueItem] = field(default_factory=deque)
    nbytes: int = 0
    peak_bytes: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def put(self, item: QueueItem) -> bool:
        size = len(item[2]) if isinstance(item, tuple) else 0
        with self.cond:
            if size and self.nbytes + size > self.max_bytes:
                return False
            self.items.append(item)
            self.nbytes += size
            self.peak_bytes = max(self.peak_bytes, self.nbytes)
            self.cond.notify()
        return True

    def get_batch(self, timeout_s: float) -> list[QueueItem]:
        with self.cond:
            if not self.items and not self.closed:
                self.cond.wait(timeout_s)
            batch = list(self.items)
            self.items.clear()
            self.nbytes = 0
        return batch

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class BagWriterThread(threading.Thread):
    """Owns the SplitBagWriter; exits once the queue is closed and drained."""

    def __init__(self, writer: SplitBagWriter, queue: RecordQueue) -> None:
        super().__init__(name="aura_bag_writer", daemon=True)
        self.writer = writer
        self.queue = queue
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                batch = self.queue.get_batch(timeout_s=min(0.2, self.writer.flush_interval_s))
                for item in batch:
                    if isinstance(item, TopicSpec):
                        self.writer.add_topic(item)
                    elif isinstance(item, CustomData):
                        self.writer.set_custom_data(item.key, item.value)
                    else:
                        self.writer.write(*item)
                self.writer.tick()
                if self.queue.closed and not self.queue.items:
                    break
        except BaseException as exc:  # reported by the recorder; the bag is still closed
            self.error = exc
        finally:
            self.writer.close()


# -- QoS --------------------------------------------------------------------------------------
def _qos_time(duration: Any) -> QosTime:
    ns = int(getattr(duration, "nanoseconds", 0))
    return QosTime(ns // 10**9, ns % 10**9)


def to_bag_qos(profile: Any) -> Qos:
    """An rclpy QoSProfile -> rosbags' Qos (what metadata.yaml and the mcap channel store)."""
    return Qos(
        QosHistory(int(profile.history)),
        int(profile.depth),
        QosReliability(int(profile.reliability)),
        QosDurability(int(profile.durability)),
        _qos_time(profile.deadline),
        _qos_time(profile.lifespan),
        QosLiveliness(int(profile.liveliness)),
        _qos_time(profile.liveliness_lease_duration),
        bool(profile.avoid_ros_namespace_conventions),
    )


def subscription_qos(publisher_profiles: Sequence[Any], depth: int) -> Any:
    """The QoS that receives from every one of these publishers (rosbag2's adaptation)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in publisher_profiles)
    latched = bool(publisher_profiles) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def import_message(msgtype: str) -> type:
    """``pkg/msg/Type`` -> the generated Python class (rclpy needs it even for raw=True)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


# -- the recorder -----------------------------------------------------------------------------
class Recorder:
    """Subscribes and queues; construct inside an initialised rclpy context.

    topics: absolute names to record (ignored when record_all is true).
    follow_node: also record every topic this node (``/ns/name``) publishes or subscribes,
    as the ROS graph shows them, so whatever it was remapped to is followed.
    """

    def __init__(
        self,
        writer: SplitBagWriter,
        topics: Sequence[str],
        *,
        record_all: bool = False,
        max_queue_bytes: int = 256 * 1024**2,
        qos_depth: int = 100,
        node_name: str = "aura_mem_recorder",
        params_of: str = "/aura_mem",
        follow_node: str = "",
        context: Any = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from rclpy.node import Node

        self.node = Node(
            node_name, context=context, start_parameter_services=False, enable_rosout=False
        )
        self.writer = writer
        self.topics = [t if t.startswith("/") else "/" + t for t in topics]
        self.follow_node = follow_node
        self.record_all = record_all
        self.qos_depth = qos_depth
        self.queue = RecordQueue(max_queue_bytes)
        self.counters: dict[str, TopicCounters] = {}
        self.typestore = make_typestore()
        self._subscriptions: dict[str, Any] = {}
        self._skipped: set[str] = set()
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.thread = BagWriterThread(writer, self.queue)
        self.thread.start()
        self.started = time.monotonic()
        self.stopped: float | None = None
        self._params_of = params_of
        self._params_client: Any = None
        self._params_futures: dict[str, Any] | None = None
        self._params_sent = 0.0
        self.node_parameters: dict[str, Any] | None = None
        # Fast: a lock-step client (the simulator) runs as soon as the node is up, and every
        # poll period of delay is actions missing from the start of the bag.
        self._poll_timer = self.node.create_timer(GRAPH_POLL_S, self.poll_graph)
        self.poll_graph()

    # graph -> subscriptions
    def poll_graph(self) -> None:
        names_types = dict(self.node.get_topic_names_and_types())
        self._follow()
        wanted = (
            [t for t in names_types if t not in EXCLUDED_WITH_ALL]
            if self.record_all
            else self.topics
        )
        for topic in wanted:
            if topic in self._subscriptions or topic in self._skipped or topic not in names_types:
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # only subscribers so far: no type/QoS to match yet
            self._subscribe(topic, names_types[topic], publishers)
        self._poll_node_parameters()

    def _follow(self) -> None:
        """Add the followed node's topics (nothing until discovery has seen it)."""
        if not self.follow_node:
            return
        namespace, _, name = self.follow_node.rpartition("/")
        try:
            endpoints = self.node.get_publisher_names_and_types_by_node(
                name, namespace or "/"
            ) + self.node.get_subscriber_names_and_types_by_node(name, namespace or "/")
        except Exception:  # NodeNameNonExistentError: not discovered yet
            return
        for topic, _ in endpoints:
            if topic not in self.topics and topic not in EXCLUDED_WITH_ALL:
                self.topics.append(topic)

    def _subscribe(self, topic: str, types: list[str], publishers: list[Any]) -> None:
        msgtype = types[0]
        if len(types) > 1:
            self._log(f"[record] {topic} has several types {types}; recording {msgtype}")
        try:
            ensure_type(self.typestore, msgtype)
            cls = import_message(msgtype)
        except (UnknownTypeError, ImportError, AttributeError, ValueError) as exc:
            self._log(f"[record] skipping {topic}: {exc}")
            self._skipped.add(topic)
            return
        msgdef, _ = self.typestore.generate_msgdef(msgtype, ros_version=2)
        rihs01 = self.typestore.hash_rihs01(msgtype)
        published = {str(getattr(p, "topic_type_hash", "")) for p in publishers}
        if (
            published
            and all(h.startswith("RIHS01_") for h in published)
            and rihs01 not in published
        ):
            self._log(
                f"[record] WARNING {topic}: definition hash {rihs01} differs from the "
                f"publisher's {sorted(published)}; the bag may not decode"
            )
        profiles = [p.qos_profile for p in publishers]
        spec = TopicSpec(topic, msgtype, msgdef, rihs01, tuple(to_bag_qos(q) for q in profiles))
        counters = self.counters.setdefault(topic, TopicCounters())
        self.queue.put(spec)  # ordered before this topic's first message
        queue = self.queue

        def on_message(data: bytes, topic: str = topic, counters: TopicCounters = counters) -> None:
            stamp = time.time_ns()
            counters.received += 1
            counters.bytes += len(data)
            if not queue.put((topic, stamp, data)):
                counters.dropped += 1

        self._subscriptions[topic] = self.node.create_subscription(
            cls, topic, on_message, subscription_qos(profiles, self.qos_depth), raw=True
        )
        self._log(f"[record] subscribed {topic} [{msgtype}]")

    def _poll_node_parameters(self) -> None:
        """Ask the AURA-Mem node once for the parameters eval needs (non-blocking).

        One request per name: rclpy answers a request with NO values when any one name in it
        is unset (e.g. an empty ``proprio_joint_names``), which would lose all the others.
        """
        if not self._params_of or self.node_parameters is not None:
            return
        from rcl_interfaces.srv import GetParameters

        if self._params_client is None:
            self._params_client = self.node.create_client(
                GetParameters, f"{self._params_of}/get_parameters"
            )
        if self._params_futures is None:
            if self._params_client.service_is_ready():
                self._params_futures = {
                    name: self._params_client.call_async(GetParameters.Request(names=[name]))
                    for name in NODE_PARAMETERS
                }
                self._params_sent = time.monotonic()
            return
        if not all(f.done() for f in self._params_futures.values()):
            # A request sent while the server's reply path is still being matched is never
            # answered (services are volatile): ask again rather than wait forever.
            if time.monotonic() - self._params_sent > PARAMS_RETRY_S:
                for future in self._params_futures.values():
                    if not future.done():
                        self._params_client.remove_pending_request(future)
                self._params_futures = None
            return
        from rclpy.parameter import parameter_value_to_python

        values: dict[str, Any] = {}
        for name, future in self._params_futures.items():
            result = future.result()
            if result is not None and result.values:
                value = parameter_value_to_python(result.values[0])
                values[name] = list(value) if isinstance(value, (list, tuple)) else value
        self._params_futures = None
        self.node_parameters = values
        self.queue.put(CustomData(NODE_PARAMS_KEY, json.dumps(values, sort_keys=True)))
        self._log(f"[record] node parameters of {self._params_of}: {values}")

    def stop(self) -> None:
        """Stop receiving, drain the queue into the bag, close it. Idempotent."""
        if self.stopped is not None:
            return
        for sub in self._subscriptions.values():
            self.node.destroy_subscription(sub)
        self.stopped = time.monotonic()
        self.queue.close()
        self.thread.join()
        self.node.destroy_node()
        if self.thread.error is not None:
            raise RuntimeError(f"bag writer failed: {self.thread.error!r}") from self.thread.error

    def summary(self) -> dict[str, Any]:
        end = self.stopped if self.stopped is not None else time.monotonic()
        duration = max(1e-9, end - self.started)
        topics = {}
        for topic, c in sorted(self.counters.items()):
            topics[topic] = {
                "received": c.received,
                "written": self.writer.written.get(topic, 0),
                "dropped": c.dropped,
                "bytes": c.bytes,
                "rate_hz": round(c.received / duration, 2),
            }
        return {
            "bag": str(self.writer.path),
            "storage": self.writer.storage,
            "duration_s": round(duration, 3),
            "files": [f.path for f in self.writer.files],
            "messages_received": sum(c.received for c in self.counters.values()),
            "messages_written": sum(self.writer.written.values()),
            "dropped": sum(c.dropped for c in self.counters.values()),
            "bytes_written": self.writer.bytes_written,
            "queue_peak_bytes": self.queue.peak_bytes,
            "topics": topics,
        }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"bag {summary['bag']} ({summary['storage']}, {len(summary['files'])} file(s)), "
        f"{summary['duration_s']:.1f} s, {summary['messages_written']} messages, "
        f"{summary['bytes_written'] / 1e6:.1f} MB, dropped {summary['dropped']}, "
        f"queue peak {summary['queue_peak_bytes'] / 1e6:.1f} MB"
    ]
    width = max([len(t) for t in summary["topics"]] + [5])
    lines.append(
        f"  {'topic':<{width}}  {'received':>9} {'written':>9} {'dropped':>8} {'rate_hz':>8}"
    )
    for topic, t in summary["topics"].items():
        lines.append(
            f"  {topic:<{width}}  {t['received']:>9} {t['written']:>9} "
            f"{t['dropped']:>8} {t['rate_hz']:>8.1f}"
        )
    return "\n".join(lines)


def default_bag_name() -> str:
    return time.strftime("aura_mem_%Y_%m_%d-%H_%M_%S")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aura-mem-record",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Default topics: {' '.join(DEFAULT_TOPICS)}",
    )
    p.add_argument("topics", nargs="*", help="topics to record (default: the node's I/O)")
    p.add_argument(
        "--namespace",
        default="",
        help="the node was launched with namespace:=NS: record its default topics there "
        "(and ask /NS/aura_mem for its parameters)",
    )
    p.add_argument(
        "--follow-node",
        default="",
        metavar="NODE",
        help="also record every topic NODE (e.g. /robot1/aura_mem) publishes or subscribes, "
        "as the graph shows them: follows any remap",
    )
    p.add_argument("-o", "--output", help="bag directory to create (default: aura_mem_<time>)")
    p.add_argument("-a", "--all", action="store_true", help="record every topic that appears")
    p.add_argument("-s", "--storage", choices=sorted(STORAGES), default="mcap")
    p.add_argument(
        "-b",
        "--max-bag-size",
        type=parse_size,
        default=parse_size("512M"),
        help="split when a file reaches this size, e.g. 64M, 1G; 0 = never (default 512M)",
    )
    p.add_argument(
        "-d",
        "--max-bag-duration",
        type=float,
        default=0.0,
        help="split after this many seconds; 0 = never (default)",
    )
    p.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="seconds between flushes to the OS: the most a SIGKILL loses beyond "
        "the queue (default 1)",
    )
    p.add_argument(
        "--max-queue-size",
        type=parse_size,
        default=parse_size("256M"),
        help="bytes held between subscriptions and the writer before dropping (default 256M)",
    )
    p.add_argument("--qos-depth", type=int, default=100, help="subscription history depth")
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop by itself after this many seconds (0 = until SIGINT/SIGTERM)",
    )
    p.add_argument(
        "--node",
        default=None,
        help="AURA-Mem node whose backbone/gate parameters are stored in the bag ('' = none; "
        "default: --follow-node, else /<namespace>/aura_mem)",
    )
    p.add_argument("--summary-json", help="also write the end summary to this JSON file")
    p.add_argument(
        "--recover", metavar="BAG", help="salvage a bag left by a killed recorder, then exit"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(remove_ros_args(["aura-mem-record", *argv])[1:])
    if args.recover:
        result = recover_bag(args.recover)
        print(json.dumps(result, indent=1))
        return 0
    out = Path(args.output or default_bag_name())
    try:
        writer = SplitBagWriter(
            out,
            storage=args.storage,
            max_split_bytes=args.max_bag_size,
            max_split_s=args.max_bag_duration,
            flush_interval_s=args.flush_interval,
        )
    except FileExistsError as exc:
        print(f"aura-mem-record: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    # Our handlers, not rclpy's: rclpy's would shut the context down under the recorder before
    # the queue is drained.
    rclpy.init(args=["aura-mem-record", *argv], signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    params_of = args.node
    if params_of is None:
        params_of = args.follow_node or node_path(args.namespace)
    recorder = Recorder(
        writer,
        args.topics or node_topics(args.namespace),
        record_all=args.all,
        max_queue_bytes=args.max_queue_size,
        qos_depth=args.qos_depth,
        params_of=params_of,
        follow_node=args.follow_node,
    )
    executor = SingleThreadedExecutor()
    executor.add_node(recorder.node)
    print(
        f"[record] recording to {out} ({args.storage}); SIGINT/SIGTERM to stop",
        file=sys.stderr,
        flush=True,
    )
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    status = 0
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
            if not recorder.thread.is_alive():
                break  # the writer failed (disk full?): stop() reports why
    finally:
        executor.remove_node(recorder.node)
        try:
            recorder.stop()
        except RuntimeError as exc:
            print(f"aura-mem-record: {exc}", file=sys.stderr)
            status = 1
        executor.shutdown()
        rclpy.try_shutdown()
    summary = recorder.summary()
    print(format_summary(summary), flush=True)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
