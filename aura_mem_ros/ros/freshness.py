"""How old the inputs behind an action are, and which joint state belongs to a frame (no rclpy).

Two rules make "never publish a command built from stale inputs" hold by construction:

* ``SourceTimes.stale_input`` is asked right before ``~/action`` is published (and once
  before inference, to save the work): the camera frame (and wrist frame) must be younger than
  ``max_obs_age_s``, the joint state younger than ``max_proprio_age_s``, measured on the node
  clock AT THAT MOMENT. A slow inference therefore cannot publish an answer to an old image.
* ``ProprioBuffer.pair`` picks the joint state whose stamp is nearest the frame's (and the
  node rejects it if even that one lies more than ``max_proprio_age_s`` from the frame). The
  "is a newer one there yet?" test and the wait happen under the lock that ``add`` takes, so a
  joint state that arrives just before the wait is never missed (the old race), and waiting
  can only end on the matching state, never pair the frame with the NEXT one.

Joint-state time is the header stamp, or the node-clock arrival time when the publisher
leaves the stamp at zero (many do): a stream that stops is detected either way.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000


@dataclass(frozen=True)
class StampedJoints:
    """One joint state as received: the message, its header stamp (0 = unset), arrival time."""

    msg: Any
    stamp_ns: int
    received_ns: int

    @property
    def time_ns(self) -> int:
        """When the state was measured: its stamp, or its arrival when it carries none."""
        return self.stamp_ns or self.received_ns


class ProprioBuffer:
    """The recent joint states (bounded), filled by the executor, read by the worker.

    ``capacity`` bounds memory and the search: at 1 kHz, 1024 states cover ~1 s, more than
    ``max_obs_age_s`` of history, so the joint state of any frame still worth serving is here.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._items: deque[StampedJoints] = deque(maxlen=capacity)
        self._arrived = threading.Condition()

    def add(self, msg: Any, stamp_ns: int, received_ns: int) -> None:
        with self._arrived:
            self._items.append(StampedJoints(msg, stamp_ns, received_ns))
            self._arrived.notify_all()

    def clear(self) -> None:
        with self._arrived:
            self._items.clear()

    def newest(self) -> StampedJoints | None:
        with self._arrived:
            return self._items[-1] if self._items else None

    def pair(self, frame_ns: int, wait_s: float) -> StampedJoints | None:
        """The joint state for a frame stamped ``frame_ns``; None when none ever arrived.

        When the frame and the newest joint state are both stamped and no joint state at or
        after the frame's stamp has arrived yet, wait up to ``wait_s`` for one (the executor
        delivers a frame and the joint state of the same instant in either order). Then the
        nearest stamp wins, whichever side of the frame it lies on.
        """
        deadline = time.monotonic() + wait_s
        with self._arrived:
            while not self._caught_up(frame_ns):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)  # add() notifies under this same lock
            return self._nearest(frame_ns)

    def _caught_up(self, frame_ns: int) -> bool:
        if not self._items:
            return False
        newest = self._items[-1]
        return frame_ns == 0 or newest.stamp_ns == 0 or newest.stamp_ns >= frame_ns

    def _nearest(self, frame_ns: int) -> StampedJoints | None:
        if not self._items:
            return None
        newest = self._items[-1]
        if frame_ns == 0 or newest.stamp_ns == 0:
            return newest  # nothing to match stamps on: the newest is the best guess
        best, best_gap = newest, abs(newest.stamp_ns - frame_ns)
        # Stamps mostly increase: walk back from the newest and stop once they only recede.
        for item in reversed(self._items):
            if item.stamp_ns == 0:
                continue
            gap = abs(item.stamp_ns - frame_ns)
            if gap < best_gap:
                best, best_gap = item, gap
            elif item.stamp_ns < frame_ns:
                break
        return best


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (0 for an unset stamp)."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


@dataclass(frozen=True)
class SourceTimes:
    """When the inputs behind one step were measured (nanoseconds on the node clock)."""

    image_ns: int
    wrist_ns: int | None = None
    proprio_ns: int | None = None

    @property
    def proprio_gap_s(self) -> float:
        """Seconds between the joint state and the frame (0 when either time is unknown): a
        joint state far from the frame's instant is no description of it, however fresh."""
        if self.proprio_ns is None or self.image_ns == 0:
            return 0.0
        return abs(self.proprio_ns - self.image_ns) / NS

    def stale_input(
        self, now_ns: int, max_obs_age_s: float, max_proprio_age_s: float
    ) -> tuple[str, float] | None:
        """(which input, its age in s) for the first input too old at ``now_ns``, else None.

        An unset image stamp counts as infinitely old: its age cannot be known.
        """
        checks = [("frame", self.image_ns, max_obs_age_s)]
        if self.wrist_ns is not None:
            checks.append(("wrist image", self.wrist_ns, max_obs_age_s))
        if self.proprio_ns is not None:
            checks.append(("proprio", self.proprio_ns, max_proprio_age_s))
        for what, t_ns, limit in checks:
            age = math.inf if t_ns == 0 else (now_ns - t_ns) / NS
            # A stamp from the future (clock skew between machines) is as untrustworthy.
            if abs(age) > limit:
                return what, age
        return None
