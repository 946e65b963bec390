"""Counters shared by the worker thread and the executor (no rclpy; thread-safe).

The worker records steps and rejections; timers on the executor take ``snapshot()``s for
~/stats, the rqt_plot topics and /diagnostics. One lock, held only for bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Why a frame or message produced no action (keys of ``rejected_by_reason``).
REASONS = (
    "wrong_encoding",  # unsupported or inconsistent image encoding / compressed data
    "bad_size",  # data length does not match width, height and step
    "empty_image",  # zero width or height
    "oversized_image",  # more than max_image_pixels
    "image_count",  # wrist image required but none received yet
    "bad_proprio",  # NaN/inf, wrong length, unknown joint names
    "missing_proprio",  # proprio required but none received yet
    "stale_proprio",  # the joint state paired with a frame is older than max_proprio_age_s
    "empty_instruction",  # an empty / whitespace-only instruction message
    "oversized_instruction",  # longer than max_instruction_bytes
    "no_instruction",  # a frame arrived before any instruction
    "backbone_error",  # the backbone raised or returned non-finite output
    "memory_error",  # the AURA runtime raised
    "callback_error",  # any other exception that reached the executor (a bug; logged)
)


@dataclass(frozen=True)
class StatsSnapshot:
    steps: int
    writes: int
    recent_write_rate: float  # writes/step over the last ``window`` steps
    recent_steps: int
    stale_frames: int
    dropped_frames: int
    rejected_inputs: int
    rejected_by_reason: dict[str, int]
    last_rejection: str
    clipped_steps: int
    backbone_errors: int
    consecutive_backbone_errors: int
    last_backbone_error: str
    latency_p50_ms: float
    latency_p95_ms: float
    latency_samples: int
    warmup_left: int
    active_s: float  # seconds spent active (rates and flash projections divide by this)
    resets: int = 0
    superseded: int = 0
    stale_results: int = 0  # computed, then dropped: inputs too old by publish time
    discarded_at_stop: int = 0  # computed while serving stopped: never published

    @property
    def write_rate(self) -> float:
        return self.writes / self.steps if self.steps else 0.0


class NodeStats:
    def __init__(
        self, window: int = 200, warmup_steps: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._window = window
        self._warmup_steps = warmup_steps
        self._active_since: float | None = None
        self.reset_counters()

    def reset_counters(self) -> None:
        with self._lock:
            self._steps = 0
            self._writes = 0
            self._stale = 0
            self._dropped = 0
            self._rejected: Counter[str] = Counter()
            self._last_rejection = ""
            self._clipped = 0
            self._backbone_errors = 0
            self._consecutive_errors = 0
            self._last_backbone_error = ""
            self._latencies: deque[float] = deque(maxlen=self._window)
            self._recent_writes: deque[int] = deque(maxlen=self._window)
            self._warmup_left = self._warmup_steps
            self._resets = 0
            self._superseded = 0
            self._stale_results = 0
            self._discarded_at_stop = 0
            # Rates divide by active time: restart the clock with the counters.
            self._active_accum = 0.0
            if self._active_since is not None:
                self._active_since = self._clock()

    def set_active(self, active: bool) -> None:
        with self._lock:
            now = self._clock()
            if active and self._active_since is None:
                self._active_since = now
            elif not active and self._active_since is not None:
                self._active_accum += now - self._active_since
                self._active_since = None

    def record_step(self, wrote: bool, latency_ms: float, clipped: bool) -> None:
        with self._lock:
            self._steps += 1
            self._writes += int(wrote)
            self._recent_writes.append(int(wrote))
            self._clipped += int(clipped)
            self._consecutive_errors = 0
            # The first inference pays for lazy initialisation (allocators, kernels, caches):
            # counting it would poison the percentiles users tune their control rate on.
            if self._warmup_left > 0:
                self._warmup_left -= 1
            else:
                self._latencies.append(latency_ms)

    def record_stale(self) -> None:
        with self._lock:
            self._stale += 1

    def record_stale_result(self) -> None:
        with self._lock:
            self._stale_results += 1

    def record_discarded_at_stop(self) -> None:
        with self._lock:
            self._discarded_at_stop += 1

    def record_dropped(self) -> None:
        with self._lock:
            self._dropped += 1

    def record_superseded(self) -> None:
        with self._lock:
            self._superseded += 1

    def record_reset(self) -> None:
        with self._lock:
            self._resets += 1

    def record_rejected(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        with self._lock:
            self._rejected[reason] += 1
            self._last_rejection = f"{reason}: {message}"
            if reason in ("backbone_error", "memory_error"):
                self._backbone_errors += 1
                self._consecutive_errors += 1
                self._last_backbone_error = message

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            lat = np.asarray(self._latencies, dtype=np.float64)
            p50, p95 = np.percentile(lat, [50, 95]).tolist() if lat.size else (0.0, 0.0)
            recent = len(self._recent_writes)
            active = self._active_accum
            if self._active_since is not None:
                active += self._clock() - self._active_since
            return StatsSnapshot(
                steps=self._steps,
                writes=self._writes,
                recent_write_rate=sum(self._recent_writes) / recent if recent else 0.0,
                recent_steps=recent,
                stale_frames=self._stale,
                dropped_frames=self._dropped,
                rejected_inputs=sum(self._rejected.values()),
                rejected_by_reason=dict(self._rejected),
                last_rejection=self._last_rejection,
                clipped_steps=self._clipped,
                backbone_errors=self._backbone_errors,
                consecutive_backbone_errors=self._consecutive_errors,
                last_backbone_error=self._last_backbone_error,
                latency_p50_ms=float(p50),
                latency_p95_ms=float(p95),
                latency_samples=int(lat.size),
                warmup_left=self._warmup_left,
                active_s=active,
                resets=self._resets,
                superseded=self._superseded,
                stale_results=self._stale_results,
                discarded_at_stop=self._discarded_at_stop,
            )
