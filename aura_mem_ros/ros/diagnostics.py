"""/diagnostics for the aura_mem node: small independent checks, each one status.

Each check reads a ``DiagInput`` (a snapshot of everything it may judge) and returns one
``Status``; the node registers them by name with its ``DiagnosticUpdater``
(``diag_updater.py``, diagnostic_updater's ``add(name, check)``). The checks are pure
functions so the OK/WARN/ERROR rules are tested without ROS. Rules:

  memory       WARN when the recent write rate exceeds ``write_rate_budget``
  latency      WARN when the p95 inference latency exceeds ``max_latency_ms``
  inputs       WARN when frames were stale, results went stale before publishing, or inputs
               were rejected since the last report; camera dropout; incompatible QoS
  transport    WARN when camera frames are lost before the node (stamp gaps at the camera's
               configured or advertised rate, or the rate seen well below it)
  backbone     ERROR when configuration failed or the latest inference failed
  persistence  WARN when the state file was unusable (until replaced) or cannot be written

Text that comes from outside (the instruction) is shown as a short prefix only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus

from aura_mem_ros.persistence import RestoreResult, RestoreStatus
from aura_mem_ros.persistence.flash import flash_lifetime_s, lifetime_years
from aura_mem_ros.persistence.state_file import HEADER_BYTES
from aura_mem_ros.ros.diag_updater import StatusWrapper
from aura_mem_ros.ros.frame_rate import FrameWindow
from aura_mem_ros.ros.parameters import NodeParams
from aura_mem_ros.ros.pipeline import AuraPipeline, short_text
from aura_mem_ros.ros.stats import StatsSnapshot

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR

# Fewer recent steps than this make a write rate too noisy to warn about.
MIN_STEPS_FOR_RATE = 20
# Fewer expected frames than this in a report window make a loss fraction too noisy.
MIN_FRAMES_FOR_LOSS = 10
# Where the fix for large-frame loss lives (installed to share/aura_mem_ros/config/).
TRANSPORT_PROFILE = "config/fastdds_large_data.xml"


@dataclass(frozen=True)
class DiagInput:
    stats: StatsSnapshot
    previous: StatsSnapshot | None  # the snapshot of the previous report (for "since then")
    lifecycle_state: str
    backbone: str
    model_id: str
    configure_error: str
    state_bytes: int
    kv_bytes_per_step: int
    file_bytes: int  # bytes one flush of the state file writes (header + state)
    write_rate_budget: float
    max_latency_ms: float
    flash_size_bytes: int
    flash_pe_cycles: int
    flash_write_amplification: float
    state_file: str = ""
    persisted_bytes: int = 0
    flushes: int = 0
    coalesced_writes: int = 0
    persist_write_errors: int = 0
    persist_last_error: str = ""
    restore: RestoreResult | None = None
    instruction: str | None = None
    dry_run: bool = False
    # Seconds without any camera frame while active (None when not serving), and the bound.
    camera_silence_s: float | None = None
    camera_timeout_s: float = 0.0
    # "topic: POLICY" for every endpoint whose peer offered/requested incompatible QoS.
    qos_problems: tuple[str, ...] = ()
    # Camera frames seen since the last report (None when not serving) and the loss bound.
    frames: FrameWindow | None = None
    frames_lost_total: int = 0
    max_frame_loss: float = 0.2


@dataclass(frozen=True)
class Status:
    name: str
    level: bytes  # DiagnosticStatus.OK | WARN | ERROR (a byte in ROS 2)
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.6g}"


def memory_task(d: DiagInput) -> Status:
    s = d.stats
    elapsed = max(s.active_s, 1e-9)
    # With persistence on, what really reached the disk; without, what it would have cost.
    gated_bps = (d.persisted_bytes if d.state_file else s.writes * d.file_bytes) / elapsed
    always_bps = s.steps * d.file_bytes / elapsed
    life = flash_lifetime_s(
        d.flash_size_bytes, d.flash_pe_cycles, gated_bps, d.flash_write_amplification
    )
    always = flash_lifetime_s(
        d.flash_size_bytes, d.flash_pe_cycles, always_bps, d.flash_write_amplification
    )
    values = [
        ("steps", str(s.steps)),
        ("writes", str(s.writes)),
        ("write_rate", _fmt(s.recent_write_rate)),
        ("write_rate_cumulative", _fmt(s.write_rate)),
        ("write_rate_budget", _fmt(d.write_rate_budget)),
        ("state_bytes", str(d.state_bytes)),
        ("kv_equivalent_bytes", str(s.steps * d.kv_bytes_per_step)),
        ("persisted_bytes", str(d.persisted_bytes)),
        ("projected_flash_lifetime_years", _fmt(lifetime_years(life))),
        ("always_write_flash_lifetime_years", _fmt(lifetime_years(always))),
        ("flash_size_bytes", str(d.flash_size_bytes)),
        ("flash_pe_cycles", str(d.flash_pe_cycles)),
        ("memory_resets", str(s.resets)),
    ]
    if s.recent_steps >= MIN_STEPS_FOR_RATE and s.recent_write_rate > d.write_rate_budget:
        return Status(
            "memory",
            WARN,
            f"write rate {s.recent_write_rate:.3f}/step exceeds budget {d.write_rate_budget:.3f}",
            values,
        )
    return Status("memory", OK, f"{s.writes} writes in {s.steps} steps", values)


def latency_task(d: DiagInput) -> Status:
    s = d.stats
    values = [
        ("latency_p50_ms", _fmt(s.latency_p50_ms)),
        ("latency_p95_ms", _fmt(s.latency_p95_ms)),
        ("max_latency_ms", _fmt(d.max_latency_ms)),
        ("samples", str(s.latency_samples)),
        ("warmup_steps_left", str(s.warmup_left)),
    ]
    if s.latency_samples and s.latency_p95_ms > d.max_latency_ms:
        return Status(
            "latency",
            WARN,
            f"p95 latency {s.latency_p95_ms:.1f} ms exceeds {d.max_latency_ms:.1f} ms",
            values,
        )
    return Status("latency", OK, "within bound" if s.latency_samples else "no samples yet", values)


def inputs_task(d: DiagInput) -> Status:
    s, p = d.stats, d.previous
    new_stale = s.stale_frames - (p.stale_frames if p else 0)
    new_stale_results = s.stale_results - (p.stale_results if p else 0)
    new_rejected = s.rejected_inputs - (p.rejected_inputs if p else 0)
    values = [
        ("stale_frames", str(s.stale_frames)),
        ("stale_results", str(s.stale_results)),
        ("dropped_frames", str(s.dropped_frames)),
        ("rejected_inputs", str(s.rejected_inputs)),
        ("clipped_steps", str(s.clipped_steps)),
        ("superseded_steps", str(s.superseded)),
        ("discarded_at_stop", str(s.discarded_at_stop)),
        ("instruction", short_text(d.instruction) if d.instruction is not None else "(none yet)"),
        ("dry_run", str(d.dry_run)),
    ]
    values += [(f"rejected_{k}", str(v)) for k, v in sorted(s.rejected_by_reason.items())]
    if s.last_rejection:
        values.append(("last_rejection", s.last_rejection))
    if d.camera_silence_s is not None:
        values.append(("seconds_since_camera_frame", _fmt(d.camera_silence_s)))
    values += [(f"incompatible_qos_{i}", text) for i, text in enumerate(d.qos_problems)]
    problems = []
    if d.qos_problems:
        # A QoS mismatch is otherwise silent: the subscriber simply never receives anything.
        problems.append("incompatible QoS: " + "; ".join(d.qos_problems))
    if (
        d.camera_silence_s is not None
        and d.camera_timeout_s > 0
        and d.camera_silence_s > d.camera_timeout_s
    ):
        problems.append(f"no camera frame for {d.camera_silence_s:.1f} s (camera dropout?)")
    if new_stale > 0:
        problems.append(f"{new_stale} stale frame(s)")
    if new_stale_results > 0:
        problems.append(
            f"{new_stale_results} result(s) dropped: inputs older than their maximum age "
            "by the time inference finished"
        )
    if new_rejected > 0:
        problems.append(f"{new_rejected} rejected input(s)")
    if problems:
        return Status("inputs", WARN, ", ".join(problems) + " since last report", values)
    if d.lifecycle_state != "active":
        return Status("inputs", OK, f"not serving ({d.lifecycle_state})", values)
    return Status("inputs", OK, "inputs fresh and valid", values)


def transport_task(d: DiagInput) -> Status:
    """Frames lost before they reach the node (see ``frame_rate.py``)."""
    w = d.frames
    values = [("frames_lost_total", str(d.frames_lost_total))]
    if w is None:
        return Status("transport", OK, f"not serving ({d.lifecycle_state})", values)
    values += [
        ("frames_received", str(w.received)),
        ("frames_lost", str(w.lost)),
        ("frame_rate_seen_hz", _fmt(w.seen_hz)),
        ("frame_rate_expected_hz", _fmt(w.expected_hz) if w.expected_hz else "unknown"),
        ("window_s", _fmt(w.seconds)),
        ("max_frame_loss", _fmt(d.max_frame_loss)),
    ]
    if not w.expected_hz:
        return Status(
            "transport",
            OK,
            f"{w.seen_hz:.1f} Hz seen (camera rate unknown: set camera_rate_hz to check for loss)",
            values,
        )
    expected = w.expected_hz * w.seconds
    loss = w.loss_fraction
    slow = w.received > 0 and w.seen_hz < (1.0 - d.max_frame_loss) * w.expected_hz
    if expected >= MIN_FRAMES_FOR_LOSS and (loss > d.max_frame_loss or slow):
        return Status(
            "transport",
            WARN,
            f"camera frames lost in transport: {w.received} seen at {w.seen_hz:.1f} Hz, "
            f"{w.lost} missing from the stamp sequence ({loss:.0%}), camera rate "
            f"{w.expected_hz:g} Hz. Large frames need the shipped Fast DDS profile on BOTH "
            f"the camera driver and this node: FASTDDS_DEFAULT_PROFILES_FILE="
            f"<share/aura_mem_ros>/{TRANSPORT_PROFILE}",
            values,
        )
    return Status("transport", OK, f"{w.seen_hz:.1f} Hz of {w.expected_hz:g} Hz seen", values)


def backbone_task(d: DiagInput) -> Status:
    s = d.stats
    values = [
        ("backbone", d.backbone),
        ("model_id", d.model_id or "(not loaded)"),
        ("lifecycle_state", d.lifecycle_state),
        ("backbone_errors", str(s.backbone_errors)),
    ]
    if s.last_backbone_error:
        values.append(("last_backbone_error", s.last_backbone_error))
    if d.configure_error:
        return Status("backbone", ERROR, f"configure failed: {d.configure_error}", values)
    if s.consecutive_backbone_errors > 0:
        return Status("backbone", ERROR, f"inference failing: {s.last_backbone_error}", values)
    return Status("backbone", OK, d.lifecycle_state, values)


def persistence_task(d: DiagInput) -> Status:
    values = [
        ("state_file", d.state_file or "(disabled)"),
        ("persisted_bytes", str(d.persisted_bytes)),
        ("flushes", str(d.flushes)),
        ("coalesced_writes", str(d.coalesced_writes)),
        ("write_errors", str(d.persist_write_errors)),
    ]
    if d.restore is not None:
        values.append(("last_restore", f"{d.restore.status.value}: {d.restore.message}"))
    if not d.state_file:
        return Status("persistence", OK, "disabled", values)
    if d.persist_last_error:
        return Status("persistence", WARN, d.persist_last_error, values)
    bad = d.restore is not None and d.restore.status not in (
        RestoreStatus.RESTORED,
        RestoreStatus.ABSENT,
    )
    if bad and d.flushes == 0:
        # Stays visible until a fresh state has replaced the unusable file.
        return Status(
            "persistence",
            WARN,
            f"state file not used ({d.restore.status.value}); running with fresh memory",
            values,
        )
    return Status("persistence", OK, "ok", values)


def collect(
    snap: StatsSnapshot,
    previous: StatsSnapshot | None,
    pipeline: AuraPipeline | None,
    params: NodeParams,
    lifecycle_state: str,
    configure_error: str,
    camera_silence_s: float | None = None,
    qos_problems: tuple[str, ...] = (),
    frames: FrameWindow | None = None,
    frames_lost_total: int = 0,
) -> DiagInput:
    """Gather what the tasks judge from the node's parts (any of which may be absent)."""
    store = pipeline.store if pipeline else None
    state_bytes = pipeline.runtime.state_nbytes if pipeline else 0
    return DiagInput(
        stats=snap,
        previous=previous,
        lifecycle_state=lifecycle_state,
        backbone=params.backbone,
        model_id=pipeline.model_id if pipeline else "",
        configure_error=configure_error,
        state_bytes=state_bytes,
        kv_bytes_per_step=pipeline.kv_bytes_per_step if pipeline else 0,
        # Without a state file: what one flush WOULD write, for the "what it would cost" line.
        file_bytes=store.file_bytes if store else HEADER_BYTES + state_bytes,
        write_rate_budget=params.write_rate_budget,
        max_latency_ms=params.max_latency_ms,
        flash_size_bytes=params.flash_size_bytes,
        flash_pe_cycles=params.flash_pe_cycles,
        flash_write_amplification=params.flash_write_amplification,
        state_file=params.state_file,
        persisted_bytes=store.persisted_bytes if store else 0,
        flushes=store.flushes if store else 0,
        coalesced_writes=store.coalesced_writes if store else 0,
        persist_write_errors=store.write_errors if store else 0,
        persist_last_error=store.last_error if store else "",
        restore=pipeline.restore_result if pipeline else None,
        instruction=pipeline.instruction if pipeline else None,
        dry_run=params.dry_run,
        camera_silence_s=camera_silence_s,
        camera_timeout_s=params.camera_timeout_s,
        qos_problems=qos_problems,
        frames=frames,
        frames_lost_total=frames_lost_total,
        max_frame_loss=params.max_frame_loss,
    )


# The checks the node registers with its DiagnosticUpdater, in report order.
CHECKS: tuple[tuple[str, Callable[[DiagInput], Status]], ...] = (
    ("memory", memory_task),
    ("latency", latency_task),
    ("inputs", inputs_task),
    ("transport", transport_task),
    ("backbone", backbone_task),
    ("persistence", persistence_task),
)


def run_tasks(d: DiagInput) -> list[Status]:
    return [check(d) for _, check in CHECKS]


def as_check(
    rule: Callable[[DiagInput], Status], inputs: Callable[[], DiagInput]
) -> Callable[[StatusWrapper], None]:
    """A rule as a DiagnosticUpdater check: ``inputs()`` gives the snapshot it judges."""

    def check(stat: StatusWrapper) -> None:
        status = rule(inputs())
        stat.summary(status.level, status.message)
        stat.values.extend(status.values)

    return check
