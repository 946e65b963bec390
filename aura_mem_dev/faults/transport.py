"""Fault table, transport rows: a camera that stops and comes back, publishers whose QoS
cannot match the node's, frames lost in transport (``transport_loss``: counted from gaps in
the camera's stamp sequence, WARN naming the Fast DDS profile), and (an observation, not a
row) which frame sizes DDS delivers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from aura_mem_dev.faults.harness import (
    MINI_INSTRUCTION,
    Probe,
    describe_status,
    level_name,
    status_values,
)
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.serving_probe import set_param, wait_until
from aura_mem_dev.faults.session import DIAG_PERIOD_S, Session, short, stream


def camera_dropout(s: Session, gap_s: float = 3.0) -> FaultRow:
    t0 = time.monotonic()
    row = FaultRow(
        "camera dropout then recovery",
        injected=f"30 Hz camera, then no frames for {gap_s:.0f} s, then 30 Hz again",
    )
    sent0, lat0 = stream(s, 30.0, 1.0)
    base = s.good_frame()
    digest0 = s.settle_file()
    stale0 = int(s.inputs_values().get("stale_frames", 0))
    idx = s.probe.n_diagnostics()
    time.sleep(gap_s)
    during = [
        st
        for name in ("inputs", "latency", "backbone", "memory")
        for st in s.probe.statuses(name, idx)
    ]
    # Only a status about the camera counts (gate=always keeps other rows' WARNs out anyway).
    flagged = [
        st
        for st in during
        if level_name(st) != "OK"
        and (
            st.name.endswith(": inputs")
            or any(w in st.message.lower() for w in ("frame", "camera", "image"))
        )
    ]
    row.check("node_survived", s.alive(), "node died during the dropout")
    row.check(
        "memory_unchanged_during_gap",
        s.settle_file() == digest0,
        "memory changed while no frames arrived",
    )
    t_resume = time.monotonic()
    first = s.good_frame()
    recovery_ms = (time.monotonic() - t_resume) * 1e3
    sent1, lat1 = stream(s, 30.0, 1.0)
    stale1 = int(s.inputs_values().get("stale_frames", 0))
    row.kept_running = s.alive() and first is not None
    row.check("kept_serving", row.kept_running, "no action after the camera came back")
    row.check(
        "memory_continued",
        first is not None and int(first.step) == int(base.step) + 1,
        "memory did not continue where it stopped",
    )
    row.check(
        "no_stale_frames_after", stale1 == stale0, f"{stale1 - stale0} stale frames after recovery"
    )
    row.check(
        "frames_served_after",
        len(lat1) >= 0.8 * sent1,
        f"only {len(lat1)}/{sent1} frames served after recovery",
    )
    row.check(
        "diagnostics_reported_dropout",
        bool(flagged),
        "/diagnostics stayed OK for the whole dropout (no 'no frames' WARN)",
    )
    row.node_did = (
        f"before: {len(lat0)}/{sent0} served; during the gap: nothing to do; first frame after "
        f"it answered in {recovery_ms:.0f} ms as step {first.step if first else '?'}; "
        f"after: {len(lat1)}/{sent1} served, {stale1 - stale0} stale"
    )
    row.memory_lost = "no: memory unchanged during the gap and continued after it"
    row.diagnostics = "during the gap: " + (
        describe_status(flagged[-1])
        if flagged
        else f"all {len(during)} statuses OK (dropout not reported)"
    )
    row.seconds = time.monotonic() - t0
    return row


def incompatible_qos(s: Session) -> FaultRow:
    """A publisher whose QoS cannot match the node's subscription, and a 'strict' camera.

    The node's camera subscription is best effort / volatile / no deadline, which every
    publisher satisfies: a camera cannot be incompatible with it (a RELIABLE camera is
    accepted). The instruction subscription (reliable + transient local) can be: a best-effort
    instruction publisher never delivers. The node must say so.
    """
    from rclpy.event_handler import PublisherEventCallbacks
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    t0 = time.monotonic()
    row = FaultRow("camera / instruction publisher with incompatible QoS")
    probe_events: list[str] = []
    # Before the publishers exist: the node may report them the moment discovery matches.
    log_before = len(s.node.log())
    diag_idx = s.probe.n_diagnostics()
    # A RELIABLE camera (many drivers publish reliable): compatible with the node's best-effort
    # subscription. (A TRANSIENT_LOCAL camera is compatible too, but Fast DDS here loses ~15 %
    # of a transient-local best-effort writer's samples even between two plain rclpy
    # processes, which would blur this row.)
    strict_cam = s.probe.node.create_publisher(
        Image,
        "/image",
        QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=5,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        ),
    )
    bad_instr = s.probe.node.create_publisher(
        String,
        "/instruction",
        QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        ),
        event_callbacks=PublisherEventCallbacks(
            incompatible_qos=lambda ev: probe_events.append(f"policy {ev.last_policy_kind}")
        ),
    )
    try:
        # Frames published before discovery matched it to the node would be lost: wait.
        s.probe.wait_for(lambda: strict_cam.get_subscription_count() >= 1, 5.0)
        time.sleep(0.3)
        served = 0
        for _ in range(5):
            n0 = s.probe.n_actions()
            strict_cam.publish(s.probe.image_msg(s.frame()))
            if s.probe.wait_for(lambda n0=n0: s.probe.n_actions() > n0, 1.5):
                served += 1
        # Compatibility is all-or-nothing (an incompatible pair delivers 0 frames); the odd
        # lost frame is DDS best-effort delivery, not this row's subject.
        row.check(
            "reliable_camera_served",
            served >= 3,
            f"reliable camera publisher served {served}/5 frames",
        )
        for _ in range(10):
            bad_instr.publish(String(data="a task sent best effort"))
            time.sleep(0.05)
        s.probe.wait_for(lambda: bool(probe_events), 3.0)

        def node_warned() -> list[str]:
            return [
                ln
                for ln in s.node.log()[log_before:].splitlines()
                if "incompatible" in ln.lower() or "qos" in ln.lower()
            ]

        s.probe.wait_for(lambda: bool(node_warned()), 5.0)
        time.sleep(2 * DIAG_PERIOD_S + 0.3)
        node_log = s.node.log()[log_before:]
        warned = [
            ln
            for ln in node_log.splitlines()
            if "incompatible" in ln.lower() or "qos" in ln.lower()
        ]
        statuses = [
            st
            for a in (
                s.probe.statuses(n, diag_idx) for n in ("inputs", "qos", "backbone", "memory")
            )
            for st in a
        ]
        diag_hits = [
            st
            for st in statuses
            if "qos" in (st.message + str([kv.key + kv.value for kv in st.values])).lower()
            and level_name(st) != "OK"
        ]
        inputs = s.inputs_values()
        row.check(
            "instruction_unchanged",
            inputs.get("instruction") == MINI_INSTRUCTION,
            "instruction changed through an incompatible publisher",
        )
        row.check(
            "dds_reported_mismatch",
            bool(probe_events),
            "DDS did not report the instruction QoS mismatch at all",
        )
        row.check(
            "node_logged_mismatch",
            bool(warned),
            "node did not log the incompatible instruction publisher; its log since: "
            + short(s.node.log()[log_before:][-600:], 600),
        )
        row.check(
            "diagnostics_reported_mismatch",
            bool(diag_hits),
            "/diagnostics did not report the QoS mismatch",
        )
        after = s.good_frame()
        row.kept_running = s.alive() and after is not None
        row.check("kept_serving", row.kept_running, "node stopped serving")
        row.injected = (
            "camera publisher RELIABLE (depth 5); instruction "
            "publisher BEST_EFFORT + VOLATILE (node requires RELIABLE + "
            "TRANSIENT_LOCAL)"
        )
        row.node_did = (
            f"camera: {served}/5 frames served (compatible by design: sensor-data QoS accepts "
            f"any camera); instruction: never delivered (publisher saw "
            f"{len(probe_events)} incompatible-QoS event(s): {probe_events[:1]}); node log: "
            + (f"`{short(warned[0].split('] ', 2)[-1], 90)}`" if warned else "nothing")
        )
        row.memory_lost = "no: the task and memory stay as they were"
        row.diagnostics = (
            describe_status(diag_hits[-1])
            if diag_hits
            else "nothing about QoS (all statuses silent on it)"
        )
    finally:
        s.probe.node.destroy_publisher(strict_cam)
        s.probe.node.destroy_publisher(bad_instr)
    row.seconds = time.monotonic() - t0
    return row


def frame_delivery(
    s: Session,
    sizes: tuple[tuple[int, int], ...] = ((56, 56), (224, 224), (640, 480), (1280, 720)),
    per_size: int = 8,
) -> list[dict[str, Any]]:
    """How many camera frames of each size reach the node at all (best-effort camera QoS,
    default DDS transports). Not a fault of the node, but a limit every deployment meets.

    A frame "arrived" if it was answered or rejected (the shared node's small
    max_image_pixels rejects the large ones, which proves they were delivered); one at a time,
    so nothing is dropped for being busy.
    """
    out = []
    for w, h in sizes:
        rgb = np.zeros((h, w, 3), np.uint8)
        arrived = 0
        for _ in range(per_size):
            n0, r0 = s.probe.n_actions(), s.rejected_total()
            s.probe.image_pub.publish(s.probe.image_msg(rgb))

            def got(n0: int = n0, r0: int = r0) -> bool:
                stats = s.probe.latest_stats()
                rejected = int(stats.rejected_inputs) if stats is not None else r0
                return s.probe.n_actions() > n0 or rejected > r0

            arrived += int(s.probe.wait_for(got, 1.0))
        out.append(
            {
                "width": w,
                "height": h,
                "mb": round(w * h * 3 / 1e6, 2),
                "sent": per_size,
                "arrived": arrived,
            }
        )
    return out


class _Camera:
    """A 30-Hz camera stamp sequence, continuous across calls (a real camera does not restart
    its clock between two stretches of loss); frames with keep(i) false never leave, which is
    all the node can see of a transport loss."""

    def __init__(self, probe: Probe, s: Session, pub: Any = None) -> None:
        self.probe, self.s, self.pub = probe, s, pub or probe.image_pub
        self.t0 = probe.node.get_clock().now().nanoseconds
        self.index = 0

    def stream(self, n: int, keep: Callable[[int], bool]) -> tuple[int, int]:
        """``n`` frames at 30 Hz: (frames generated, frames sent)."""
        start = time.monotonic()
        sent = 0
        for k in range(n):
            time.sleep(max(0.0, start + k / 30 - time.monotonic()))
            if keep(k):
                ns = self.t0 + int((self.index + k) * 1e9 / 30)
                stamp = self.probe.now_msg()
                stamp.sec, stamp.nanosec = ns // 10**9, ns % 10**9
                self.pub.publish(self.probe.image_msg(self.s.frame(), stamp))
                sent += 1
        self.index += n
        return n, sent


def transport_loss(s: Session) -> FaultRow:
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    row = FaultRow(
        "camera frames lost in transport",
        "a 30-Hz camera whose frames 40 % of the time never arrive (camera_rate_hz 30), "
        "then all arrive; then camera_rate_hz 0 and a camera advertising a 33-ms QoS "
        "deadline losing half",
    )
    probe = s.probe
    row.check("rate_configured", set_param(probe, "camera_rate_hz", 30.0), "set refused")
    idx = probe.n_diagnostics()
    lost0 = int((probe.latest_stats() or type("S", (), {"frames_lost": 0})).frames_lost)
    camera = _Camera(probe, s)
    # 88 frames: the last one is sent, so every withheld frame shows as a gap before it.
    n, sent = camera.stream(88, lambda i: i % 5 < 3)
    time.sleep(0.5)
    stats = s.fresh_stats(time.time_ns())
    lost = int(stats.frames_lost) - lost0 if stats is not None else -1
    warn = probe.wait_status("transport", lambda st: level_name(st) == "WARN", 3.0, since=idx)
    row.check("warned", warn is not None, "transport never WARNed")
    row.check(
        "points_at_profile",
        warn is not None and "fastdds_large_data.xml" in warn.message,
        "the WARN does not name the Fast DDS profile",
    )
    # Withheld frames are counted; best-effort frames really lost between the two processes
    # count too (rightly), and a node stall longer than camera_timeout_s reads as a dropout
    # instead (not counted): an estimate, checked as one.
    withheld = n - sent
    row.check(
        "counted",
        0.7 * withheld <= lost <= withheld + max(3, sent // 10),
        f"frames_lost {lost}, {withheld} withheld of {n}",
    )
    camera.stream(90, lambda i: True)
    idx_ok = probe.n_diagnostics()
    ok = probe.wait_status("transport", lambda st: True, 2.0, since=idx_ok)
    row.check(
        "clears",
        ok is not None and level_name(ok) == "OK",
        f"still {describe_status(ok)} with every frame arriving",
    )
    # The rate a camera advertises as its QoS deadline, with nothing configured.
    row.check("rate_unset", set_param(probe, "camera_rate_hz", 0.0), "set refused")
    advertising = probe.node.create_publisher(
        Image,
        "/image",
        QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            deadline=Duration(nanoseconds=int(1e9 / 30)),
        ),
    )
    try:
        wait_until(lambda: advertising.get_subscription_count() > 0, 5.0)
        time.sleep(2 * DIAG_PERIOD_S)
        idx_adv = probe.n_diagnostics()
        _Camera(probe, s, advertising).stream(90, lambda i: i % 2 == 0)
        adv = probe.wait_status(
            "transport", lambda st: level_name(st) == "WARN", 3.0, since=idx_adv
        )
        row.check("advertised_rate", adv is not None, "no WARN at the advertised rate")
    finally:
        probe.node.destroy_publisher(advertising)
    row.kept_running = s.alive() and s.good_frame() is not None
    row.check("still_serving", row.kept_running, "no action afterwards")
    row.node_did = (
        f"{n - sent} of {n} frames withheld -> frames_lost {lost}, transport WARN; OK again "
        f"once all arrived; WARN too at the rate advertised as QoS deadline "
        f"({status_values(adv).get('frame_rate_expected_hz', '?') if adv else '?'} Hz)"
    )
    row.memory_lost = "n/a (frames that never arrive cannot be served)"
    row.diagnostics = describe_status(warn, ("frames_lost_total", "frame_rate_seen_hz"))
    return row
