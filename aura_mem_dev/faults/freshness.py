"""Fault table, freshness rows (issue 13): nothing is published from stale inputs.

``stale_result_at_publish``: an action goes out only if its image is still younger than
max_obs_age_s when it is published (a slow backbone). ``proprio_stream_stops``: a joint-state
stream that stops rejects steps (stale_proprio). ``proprio_pairing``: each frame gets the
joint state with its own stamp, also when that one lands just before or after the frame.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from aura_mem_dev.faults.harness import (
    MINI_INSTRUCTION,
    Probe,
    describe_status,
    level_name,
    status_values,
)
from aura_mem_dev.faults.row import FaultRow
from aura_mem_dev.faults.serving_probe import (
    TOY,
    actions_since,
    inputs_delta,
    latest_status,
    node_session,
    set_param,
    stamp_ns_of,
)
from aura_mem_dev.faults.session import Session


def stale_result_at_publish(probe: Probe, domain: int, workdir: Path) -> FaultRow:
    """A 0.8-s backbone step and max_obs_age_s 0.5: fresh when inference starts, 0.8 s old
    when it ends. Nothing may be published; every such result is counted and reported."""
    row = FaultRow(
        "result older than max_obs_age_s when published (slow backbone)",
        "toy backbone with a 0.8-s step; max_obs_age_s 2.0 to start, then 0.5 (live); "
        "5 frames, each sent while the node is idle",
    )
    s = node_session(
        probe,
        domain,
        workdir,
        "stale_result",
        {**TOY, "backbone_args": '{"d_model": 16, "delay_s": 0.8}', "max_obs_age_s": 2.0},
    )
    try:
        if not row.check("node_serves", s.ready(), "never answered a frame"):
            return row
        row.check("limit_lowered", set_param(probe, "max_obs_age_s", 0.5), "set refused")
        before = s.inputs_values()
        n0, idx = probe.n_actions(), probe.n_diagnostics()
        for _ in range(5):
            probe.send_frame(s.frame())
            time.sleep(1.0)  # > one step: each frame finds the worker idle
        time.sleep(0.5)
        after = s.inputs_values()
        dropped = inputs_delta(before, after, "stale_results")
        published = probe.n_actions() - n0
        row.check("nothing_published", published == 0, f"{published} stale action(s) published")
        row.check("counted", dropped == 5, f"stale_results rose by {dropped}, expected 5")
        warn = probe.wait_status(
            "inputs",
            lambda st: level_name(st) == "WARN" and "result(s) dropped" in st.message,
            3.0,
            since=idx,
        )
        row.check("reported", warn is not None, "inputs never WARNed about dropped results")
        # Every action the row ever received: its image's age when it ARRIVED here is an
        # upper bound of its age when published, and must be within the limit in force.
        ages = [(r.t_ns - stamp_ns_of(r.msg.header.stamp)) / 1e9 for r in actions_since(probe, 0)]
        row.check("restored_limit", set_param(probe, "max_obs_age_s", 2.0), "set refused")
        served = s.good_frame(timeout_s=8.0)
        row.kept_running = s.alive() and served is not None
        row.check("still_serving", row.kept_running, "no action once the limit allowed it")
        row.node_did = (
            f"{dropped}/5 results dropped at publish time (inference 0.8 s > 0.5 s), "
            f"{published} published; with max_obs_age_s 2.0 every action arrived "
            f"{max(ages, default=0):.2f} s or less after its image"
        )
        row.memory_lost = (
            "no: the observation still went into memory; only its late action was dropped"
        )
        row.diagnostics = describe_status(warn, ("stale_results",))
    finally:
        s.close()
    return row


def proprio_stream_stops(s: Session, gap_s: float = 2.0) -> FaultRow:
    row = FaultRow(
        "joint-state stream stops while the camera goes on",
        f"joint states at 100 Hz, then none for {gap_s:.0f} s while frames stream at 30 Hz, "
        "then joint states again",
    )
    probe = s.probe
    limit = 0.25  # the shipped max_proprio_age_s
    before = s.inputs_values()
    idx = probe.n_diagnostics()
    n0 = probe.n_actions()
    with probe.proprio_paused():
        t_last_joint = time.time_ns()  # the stream paused before this moment
        end = time.monotonic() + gap_s
        stamps = []
        while time.monotonic() < end:
            stamps.append(stamp_ns_of(probe.send_frame(s.frame()).header.stamp))
            time.sleep(1 / 30)
        t_resume = time.time_ns()
    time.sleep(0.3)
    # Frames near the end may rightly pair with the first joint state after the gap.
    margin = int((limit + 0.1) * 1e9)
    late = [
        r
        for r in actions_since(probe, n0)
        if t_last_joint + margin < stamp_ns_of(r.msg.header.stamp) < t_resume - margin
    ]
    after = s.inputs_values()
    rejected = inputs_delta(before, after, "rejected_stale_proprio")
    row.check(
        "no_action_on_old_joints",
        not late,
        f"{len(late)} action(s) from frames > {limit + 0.1:.2f} s after the last joint state",
    )
    # Each rejection first waits proprio_sync_s (0.05 s) for a joint state that never comes,
    # so about every other frame of a 30-Hz camera finds the worker busy (dropped instead).
    beyond = sum(t_last_joint + margin < t < t_resume - margin for t in stamps)
    row.check(
        "counted",
        rejected >= beyond // 3,
        f"{rejected} stale_proprio for {beyond} frames sent well after the last joint state",
    )
    warn = probe.wait_status(
        "inputs",
        lambda st: level_name(st) == "WARN" and "rejected_stale_proprio" in status_values(st),
        3.0,
        since=idx,
    )
    row.check("reported", warn is not None, "inputs never WARNed with rejected_stale_proprio")
    served = s.good_frame()
    row.kept_running = s.alive() and served is not None
    row.check("recovers", row.kept_running, "no action once joint states came back")
    row.node_did = (
        f"{probe.n_actions() - n0 - (served is not None)} action(s) while joint states "
        f"were < {limit} s old, then {rejected} steps rejected (stale_proprio), none served; "
        "served again when the stream returned"
    )
    row.memory_lost = "no: rejected steps never reach memory"
    row.diagnostics = describe_status(warn, ("rejected_stale_proprio",))
    return row


def proprio_pairing(probe: Probe, domain: int, workdir: Path, frames: int = 60) -> FaultRow:
    """Joint states at camera rate carrying the frame's stamp, published just before or just
    after the frame (0-5 ms: the old race window). With the toy backbone, no trained layer
    and gate 'never', the action IS the backbone's action for (image, instruction, proprio),
    so the probe can tell which joint state the node used."""
    from aura_mem_ros.backbones import make_backbone
    from aura_mem_ros.backbones.base import Observation

    row = FaultRow(
        "joint states at camera rate: each frame paired with its own",
        f"{frames} frames at 30 Hz, each with a joint state of the same stamp (position = frame "
        "index) published 5 ms before, or 0/1/2/5 ms after, the frame",
    )
    args = '{"d_model": 16, "proprio_dim": 1}'
    s = node_session(
        probe,
        domain,
        workdir,
        "pairing",
        {**TOY, "use_proprio": True, "backbone_args": args, "gate": "never", "state_file": ""},
    )
    try:
        if not row.check("node_serves", s.ready(), "never answered a frame"):
            return row
        backbone = make_backbone("toy", **json.loads(args))
        offsets_ms = (-5.0, 0.0, 1.0, 2.0, 5.0)
        sent: dict[int, tuple[np.ndarray, int]] = {}
        n0 = probe.n_actions()
        with probe.proprio_paused():
            for i in range(frames):
                stamp = probe.now_msg()
                rgb = s.frame()
                joint = probe.proprio_msg(float(i + 1))
                joint.header.stamp = stamp
                image = probe.image_msg(rgb, stamp)
                offset = offsets_ms[i % len(offsets_ms)]
                if offset < 0:
                    probe.proprio_pub.publish(joint)
                    time.sleep(-offset / 1e3)
                    probe.image_pub.publish(image)
                else:
                    probe.image_pub.publish(image)
                    if offset:
                        time.sleep(offset / 1e3)
                    probe.proprio_pub.publish(joint)
                sent[stamp_ns_of(stamp)] = (rgb, i + 1)
                time.sleep(max(0.0, 1 / 30 - abs(offset) / 1e3))
            time.sleep(0.5)
        own = other = 0
        wrong: list[str] = []
        for r in actions_since(probe, n0):
            key = stamp_ns_of(r.msg.header.stamp)
            if key not in sent:
                continue
            rgb, pos = sent[key]
            got = np.asarray(r.msg.action, np.float32)
            for candidate in (pos, pos - 1, pos + 1):
                obs = Observation((rgb,), MINI_INSTRUCTION, np.array([candidate], np.float32))
                want = backbone.step(obs).action.ravel()
                if np.allclose(got, want, atol=1e-5):
                    if candidate == pos:
                        own += 1
                    else:
                        other += 1
                        wrong.append(f"frame {pos} got joint state {candidate}")
                    break
            else:
                other += 1
                wrong.append(f"frame {pos}: action matches no joint state")
        answered = own + other
        row.check("enough_answered", answered >= frames // 2, f"{answered}/{frames} answered")
        row.check("own_joint_state", other == 0, "; ".join(wrong[:3]))
        row.kept_running = s.alive()
        row.node_did = (
            f"{answered}/{frames} frames answered (the rest dropped while busy); {own} built "
            f"from the joint state with the frame's own stamp, {other} from another"
        )
        row.memory_lost = "n/a (gate never; pairing only)"
        row.diagnostics = "inputs: " + describe_status(
            latest_status(probe, "inputs", s.diag_start), ("dropped_frames", "stale_frames")
        )
    finally:
        s.close()
    return row
