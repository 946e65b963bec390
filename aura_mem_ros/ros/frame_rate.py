"""Camera frames seen vs the rate the camera should deliver: frame loss in transport (no rclpy).

Large frames sent best effort are lost silently before the node sees them when the DDS
transport is not set up for them (default Fast DDS: a 512 KB shared-memory segment, 212 KB UDP
buffers): no drop, stale or reject counter can move for a frame that never arrives. The
camera's stamps tell: at a known period ``p``, two consecutive frames stamped ``g`` apart mean
``round(g / p) - 1`` frames went missing between them. The period is the ``camera_rate_hz``
parameter, or what the camera advertises (its publisher's QoS deadline); with neither
(lock-step simulators, cameras triggered on demand) nothing is judged, only the rate seen is
reported.

Gaps longer than ``dropout_s`` are a camera dropout (its own WARN), not transport loss.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

NS = 1_000_000_000


@dataclass(frozen=True)
class FrameWindow:
    """The last ``seconds`` of the camera stream as the node saw it."""

    received: int  # frames that reached the node
    lost: int  # frames missing from the camera's stamp sequence (estimate)
    seconds: float  # how much stream the window covers (less than its length just after start)
    expected_hz: float  # 0 = unknown

    @property
    def seen_hz(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    @property
    def loss_fraction(self) -> float:
        total = self.received + self.lost
        return self.lost / total if total else 0.0


class FrameRateMonitor:
    """Counts frames and stamp gaps over a sliding window of ``window_s`` seconds.

    ``observe`` runs on the executor for every frame that arrives (also those then dropped
    because the worker is busy: they did arrive), so it only appends to a short deque.
    """

    def __init__(self, window_s: float = 2.0, dropout_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        self.window_s = window_s
        self.dropout_ns = int(dropout_s * NS)
        self._period_ns = 0
        self._last_stamp_ns = 0
        self._events: deque[tuple[float, int]] = deque()  # (arrival s, frames lost before it)
        self._start: float | None = None
        self.received_total = 0
        self.lost_total = 0

    def set_expected_rate(self, rate_hz: float) -> None:
        """The camera's rate (configured or advertised); 0 = unknown (nothing is judged)."""
        with self._lock:
            self._period_ns = int(NS / rate_hz) if rate_hz > 0 else 0

    @property
    def expected_hz(self) -> float:
        return NS / self._period_ns if self._period_ns else 0.0

    def restart(self, now_s: float) -> None:
        """Forget the previous stream (on activation: a gap while inactive is no loss)."""
        with self._lock:
            self._last_stamp_ns = 0
            self._events.clear()
            self._start = now_s

    def observe(self, stamp_ns: int, now_s: float) -> None:
        with self._lock:
            self.received_total += 1
            lost = 0
            last, self._last_stamp_ns = self._last_stamp_ns, stamp_ns or self._last_stamp_ns
            if self._period_ns and stamp_ns and last:
                gap = stamp_ns - last
                if 0 < gap <= self.dropout_ns:
                    lost = max(0, round(gap / self._period_ns) - 1)
            self.lost_total += lost
            self._events.append((now_s, lost))
            self._prune(now_s)

    def window(self, now_s: float) -> FrameWindow:
        with self._lock:
            self._prune(now_s)
            start = self._start if self._start is not None else now_s
            return FrameWindow(
                received=len(self._events),
                lost=sum(lost for _, lost in self._events),
                seconds=max(0.0, min(self.window_s, now_s - start)),
                expected_hz=self.expected_hz,
            )

    def _prune(self, now_s: float) -> None:
        while self._events and self._events[0][0] < now_s - self.window_s:
            self._events.popleft()
