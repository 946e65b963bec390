"""aura-mem-record: live recording reads back every message; mcap opens independently; the
bag survives SIGTERM (clean close) and SIGKILL (closed splits readable, open split salvaged)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from aura_mem_ros.msg import AuraAction
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from ros_harness import REPO_ROOT, spin_for, spin_until, start_python, stop_process, subprocess_env
from sensor_msgs.msg import Image
from std_msgs.msg import String
from test_bags_support import wait_matched

from aura_mem_ros.bags.read import bag_metadata, iter_messages
from aura_mem_ros.bags.record import DEFAULT_TOPICS, NODE_PARAMS_KEY, Recorder, RecordQueue
from aura_mem_ros.bags.types import make_typestore
from aura_mem_ros.bags.writer import SplitBagWriter, TopicSpec, recover_bag
from aura_mem_ros.ros import qos
from aura_mem_ros.ros.image_conversion import rgb_to_image

pytestmark = pytest.mark.timeout(60)


def read_bag(path: Path) -> tuple[dict[str, list], dict]:
    """All messages per topic (decoded, in bag order) and the metadata custom_data."""
    out: dict[str, list] = {}
    for topic, _, msg in iter_messages([path]):
        out.setdefault(topic, []).append(msg)
    return out, dict(bag_metadata(path).get("custom_data") or {})


def mcap_count(path: Path) -> tuple[int, set[str]]:
    """Messages and schema names as the independent ``mcap`` package reads every split file."""
    from mcap.reader import make_reader

    total, schemas = 0, set()
    for file in sorted(path.glob("*.mcap")):
        with file.open("rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            assert summary is not None, f"{file} has no summary (not closed)"
            schemas |= {s.name for s in summary.schemas.values()}
            n = sum(1 for _ in reader.iter_messages())
            assert n == summary.statistics.message_count
            total += n
    return total, schemas


def image(node: Node, i: int, side: int = 32) -> Image:
    arr = np.full((side, side, 3), i % 256, np.uint8)
    return rgb_to_image(arr, stamp=node.get_clock().now().to_msg(), frame_id=str(i))


def test_record_running_node_reads_back_every_message(tmp_path, ros_context, executor) -> None:
    """The real aura_mem node (toy backbone) serving frames; every action it published, every
    frame, the latched instruction, stats and diagnostics come back from the bag."""
    from aura_mem_ros.ros.aura_node import AuraMemNode

    params = {
        "backbone": "toy",
        "backbone_args": '{"d_model": 16}',
        "gate": "always",
        "stats_rate_hz": 20.0,
        "diagnostics_period_s": 0.1,
        "instruction": "pick",
        "use_proprio": False,
    }
    node = AuraMemNode(
        context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    client = Node("bags_client", context=ros_context)
    actions: list[AuraAction] = []
    client.create_subscription(AuraAction, "/aura_mem/action", actions.append, qos.reliable_qos())
    image_pub = client.create_publisher(Image, "/image", qos.sensor_qos())
    instr_pub = client.create_publisher(String, "/instruction", qos.instruction_qos())
    instr_pub.publish(String(data="pick up the cup"))  # latched before the recorder exists
    for n in (node, client):
        executor.add_node(n)
    assert node.autostart(), node.configure_error

    writer = SplitBagWriter(tmp_path / "bag", max_split_bytes=16 * 1024)
    recorder = Recorder(writer, DEFAULT_TOPICS, context=ros_context, log=lambda _: None)
    executor.add_node(recorder.node)
    wanted = {"/image", "/instruction", "/aura_mem/action", "/aura_mem/stats", "/diagnostics"}
    wait_matched(executor, recorder, wanted)
    assert spin_until(executor, lambda: recorder.node_parameters is not None, 5.0)
    frames = 15
    for i in range(frames):
        image_pub.publish(image(client, i))
        assert spin_until(executor, lambda i=i: len(actions) > i, 5.0), f"no action for {i}"
    assert spin_until(executor, lambda: recorder.counters["/aura_mem/action"].received == frames)
    spin_for(executor, 0.3)
    executor.remove_node(recorder.node)
    recorder.stop()
    summary = recorder.summary()
    for n in (node, client):
        executor.remove_node(n)
        n.destroy_node()

    assert summary["dropped"] == 0
    assert summary["messages_written"] == summary["messages_received"]
    assert len(writer.files) > 1, "the 16 kB split size should have split the bag"
    msgs, custom = read_bag(tmp_path / "bag")
    assert [m.header.frame_id for m in msgs["/image"]] == [str(i) for i in range(frames)]
    assert [m.step for m in msgs["/aura_mem/action"]] == [a.step for a in actions]
    np.testing.assert_array_equal(
        np.concatenate([m.action for m in msgs["/aura_mem/action"]]),
        np.concatenate([np.asarray(a.action) for a in actions]),
    )
    assert [m.data for m in msgs["/instruction"]] == ["pick up the cup"]
    assert msgs["/aura_mem/stats"][-1].steps >= 1
    assert any(s.name.startswith("aura_mem") for a in msgs["/diagnostics"] for s in a.status)
    assert json.loads(custom[NODE_PARAMS_KEY])["backbone"] == "toy"
    assert not (tmp_path / "bag" / ".recording").exists()

    # An independent reader: the mcap package sees the same messages, with our schema embedded,
    # and rclpy decodes the stored CDR bytes into the generated message class.
    total, schemas = mcap_count(tmp_path / "bag")
    assert total == summary["messages_written"]
    assert "aura_mem_ros/msg/AuraAction" in schemas
    from mcap.reader import make_reader

    decoded = []
    for file in (tmp_path / "bag").glob("*.mcap"):
        with file.open("rb") as f:
            decoded += [
                deserialize_message(bytes(m.data), AuraAction).step
                for _, _, m in make_reader(f).iter_messages(topics=["/aura_mem/action"])
            ]
    assert sorted(decoded) == sorted(a.step for a in actions)


def test_queue_is_bounded_by_bytes_and_refuses_when_full() -> None:
    q = RecordQueue(max_bytes=1000)
    assert q.put(("/a", 1, b"x" * 600))
    assert not q.put(("/a", 2, b"x" * 600))  # would exceed: refused, caller counts a drop
    assert q.put(("/a", 3, b"x" * 400))
    assert q.nbytes == 1000 and q.peak_bytes == 1000
    assert [item[1] for item in q.get_batch(0.0)] == [1, 3]
    assert q.nbytes == 0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_killed_writer_leaves_closed_splits_readable_and_recovery_salvages(
    tmp_path, storage
) -> None:
    """Writer level, no ROS: a copy of the bag taken mid-recording is what SIGKILL leaves."""
    import shutil

    ts = make_typestore()
    t = "aura_mem_ros/msg/AuraAction"
    spec = TopicSpec(
        "/aura_mem/action", t, ts.generate_msgdef(t, ros_version=2)[0], ts.hash_rihs01(t)
    )
    cls, header, stamp = (
        ts.types[t],
        ts.types["std_msgs/msg/Header"],
        ts.types["builtin_interfaces/msg/Time"],
    )
    w = SplitBagWriter(
        tmp_path / "bag", storage=storage, max_split_bytes=8000, flush_interval_s=0.0
    )
    w.add_topic(spec)
    for i in range(120):
        msg = cls(header(stamp(i, 0), ""), np.zeros(7, np.float32), 1, 7, False, 0.0, i, 1.0, False)
        w.write(spec.topic, 10**9 + i, bytes(ts.serialize_cdr(msg, t)))
        w.tick()  # flush_interval 0: every message is handed to the OS at once
    shutil.copytree(tmp_path / "bag", tmp_path / "killed")
    w.close()
    killed = tmp_path / "killed"
    before, _ = read_bag(killed)
    closed = len(before["/aura_mem/action"])
    assert 0 < closed < 120
    result = recover_bag(killed)
    assert result["salvaged_messages"] == 120 - closed
    after, _ = read_bag(killed)
    assert [m.step for m in after["/aura_mem/action"]] == list(range(120))
    assert recover_bag(killed)["salvaged_messages"] == 0  # idempotent


def _publish_until(
    client: Node, executor, pubs: tuple, start: int, stop: int, rate_hz: float = 100.0
) -> int:
    period = 1.0 / rate_hz
    for i in range(start, stop):
        pubs[0].publish(image(client, i, side=64))
        a = AuraAction(chunk_size=1, action_dim=7, step=i)
        a.action = [float(i)] * 7
        pubs[1].publish(a)
        spin_for(executor, period)
    return stop


@pytest.mark.multiprocess
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_signals_leave_a_readable_bag(
    tmp_path, ros_context, executor, ros_domain_id, how: str
) -> None:
    client = Node("bags_signal_client", context=ros_context)
    executor.add_node(client)
    pubs = (
        # Reliable here: these tests are about what the recorder does with what it received;
        # best-effort transport loss under load (see docs/results/recorder.md) is not.
        client.create_publisher(Image, "/image", qos.reliable_qos()),
        client.create_publisher(AuraAction, "/aura_mem/action", qos.reliable_qos()),
    )
    out = tmp_path / "bag"
    proc = start_python(
        [
            *("-m", "aura_mem_ros.bags.record", "-o", str(out), "--node", ""),
            *("/image", "/aura_mem/action", "-b", "40K", "--flush-interval", "0.1"),
        ],
        ros_domain_id,
    )
    try:
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in pubs), 20.0)
        spin_for(executor, 0.5)  # the recorder's readers match our writers too
        sent = _publish_until(client, executor, pubs, 0, 60)
        if how == "SIGTERM":
            spin_for(executor, 0.5)  # everything published is delivered before the signal
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        else:
            # Kill while data is still flowing: nothing can be flushed at the end.
            proc.send_signal(signal.SIGKILL)
            sent = _publish_until(client, executor, pubs, sent, sent + 5)
            proc.wait(timeout=5)
    finally:
        log = stop_process(proc)
    executor.remove_node(client)
    client.destroy_node()

    if how == "SIGTERM":
        assert "dropped 0" in log, log
        assert not (out / ".recording").exists()
        msgs, _ = read_bag(out)
        assert [m.header.frame_id for m in msgs["/image"]] == [str(i) for i in range(sent)]
        assert [m.step for m in msgs["/aura_mem/action"]] == list(range(sent))
        total, _ = mcap_count(out)
        assert total == 2 * sent
        return

    # SIGKILL: the closed splits are readable as they are, through metadata.yaml.
    assert (out / ".recording").is_dir()
    before, _ = read_bag(out)
    n_before = len(before["/aura_mem/action"])
    assert n_before > 0
    assert [m.step for m in before["/aura_mem/action"]] == list(range(n_before))
    # --recover salvages the open split up to its last flush (0.1 s before the kill at most,
    # plus what was still queued); the result is whole for rosbags and for mcap.
    res = subprocess.run(
        [sys.executable, "-m", "aura_mem_ros.bags.record", "--recover", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(ros_domain_id),
        check=True,
    )
    assert json.loads(res.stdout)["message_count"] >= 2 * n_before
    after, _ = read_bag(out)
    steps = [m.step for m in after["/aura_mem/action"]]
    assert steps == list(range(len(steps))), "a salvaged bag has a prefix, no holes"
    assert len(steps) >= n_before
    assert len(steps) >= 60 - 30, f"lost {60 - len(steps)} of the messages sent pre-kill"
    frames = [int(m.header.frame_id) for m in after["/image"]]
    assert frames == sorted(frames)
    total, _ = mcap_count(out)
    assert total == len(steps) + len(frames)
    assert not (out / ".recording").exists()


@pytest.mark.parametrize("name", ["AuraAction", "MemoryStats", "EpisodeResult"])
def test_registered_types_hash_like_rosidl(name: str) -> None:
    """The definitions registered from .msg hash exactly as rosidl hashed the built messages
    (share/aura_mem_ros/msg/<T>.json): a bag's type_description_hash must match the
    publisher's, or a real ``ros2 bag play`` refuses/mis-decodes the topic."""
    from aura_mem_ros.bags.types import find_msg_file

    msgtype = f"aura_mem_ros/msg/{name}"
    installed = find_msg_file(msgtype)
    assert installed is not None
    rosidl = json.loads(installed.with_suffix(".json").read_text())["type_hashes"]
    expected = {h["type_name"]: h["hash_string"] for h in rosidl}[msgtype]
    assert make_typestore().hash_rihs01(msgtype) == expected
