"""Building the node's outgoing messages (kept out of the node so it stays about wiring)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from std_msgs.msg import Header

from aura_mem_ros.msg import AuraAction, MemoryStats
from aura_mem_ros.ros.pipeline import AuraPipeline, StepResult
from aura_mem_ros.ros.stats import StatsSnapshot


def action_msg(result: StepResult, source: Header) -> AuraAction:
    """The action for one frame, stamped with that frame's header.

    The source image's stamp (not the publish time) lets a consumer see how old the
    observation behind the command is and match it against its own state history.
    """
    out = AuraAction()
    out.header.stamp = source.stamp
    out.header.frame_id = source.frame_id
    out.action = result.action.ravel().tolist()
    out.chunk_size, out.action_dim = (int(n) for n in result.action.shape)
    out.wrote = result.wrote
    out.write_prob = float(result.write_prob)
    out.step = result.step
    out.latency_ms = float(result.latency_ms)
    return out


def safe_action_msg(action: np.ndarray, step: int, stamp: TimeMsg) -> AuraAction:
    """The stop command (zeros or the held last action), marked ``is_safe_action``; never a
    memory write, stamped with the time it was issued (no image is behind it)."""
    out = AuraAction()
    out.header.stamp = stamp
    out.action = np.asarray(action, np.float32).ravel().tolist()
    out.chunk_size, out.action_dim = (int(n) for n in np.shape(action))
    out.wrote = False
    out.write_prob = 0.0
    out.step = step
    out.is_safe_action = True
    return out


def stats_msg(snap: StatsSnapshot, pipeline: AuraPipeline, stamp: TimeMsg) -> MemoryStats:
    msg = MemoryStats()
    msg.header.stamp = stamp
    msg.steps = snap.steps
    msg.writes = snap.writes
    msg.write_rate = float(snap.recent_write_rate)  # recent window: what rqt_plot should show
    msg.writes_per_1k_steps = float(1000.0 * snap.write_rate)  # cumulative
    msg.state_bytes = pipeline.runtime.state_nbytes
    msg.kv_equivalent_bytes = snap.steps * pipeline.kv_bytes_per_step
    msg.persisted_bytes = pipeline.store.persisted_bytes if pipeline.store else 0
    msg.latency_p50_ms = float(snap.latency_p50_ms)
    msg.latency_p95_ms = float(snap.latency_p95_ms)
    msg.stale_frames = snap.stale_frames
    msg.dropped_frames = snap.dropped_frames
    msg.rejected_inputs = snap.rejected_inputs
    msg.stale_results = snap.stale_results
    return msg
