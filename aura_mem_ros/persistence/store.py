"""When the memory state goes to disk: only after the gate writes, at most once per interval.

A silent step leaves the state unchanged, so there is nothing new to save: writing only on
gate writes is what makes the gate's sparsity reach the flash. With ``min_interval_s > 0``
several gate writes inside one interval cost one flush (the newest state wins); the pending
state is flushed when the interval has passed (``poll``) or on shutdown (``flush``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aura_mem_ros.persistence.state_file import (
    HEADER_BYTES,
    RestoreResult,
    encode_state,
    read_state,
    remove_stale_temps,
    write_atomic,
)


class MemoryStore:
    """Persists one memory state file. Thread-safe; never raises on I/O errors.

    I/O errors are kept in ``last_error`` (and counted) for diagnostics: a robot must keep
    acting when its disk is full, it just loses the ability to resume memory after a restart.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        state_len: int,
        min_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s must be >= 0")
        self.path = Path(path)
        self.state_len = state_len
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._pending: bytes | None = None
        self._last_flush: float | None = None
        self.persisted_bytes = 0
        self.flushes = 0
        self.coalesced_writes = 0
        self.write_errors = 0
        self.last_error = ""

    @property
    def file_bytes(self) -> int:
        """Bytes one flush puts on the device (header + state)."""
        return HEADER_BYTES + self.state_len

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def restore(self, key: bytes) -> RestoreResult:
        """Read the file for ``key``; from now on saves are bound to ``key``."""
        with self._lock:
            self._key = key
            self._pending = None
        remove_stale_temps(self.path)
        return read_state(self.path, key, self.state_len)

    def set_key(self, key: bytes) -> None:
        """Bind later saves to another model/instruction (drops a pending state of the old key)."""
        with self._lock:
            self._key = key
            self._pending = None

    def record_write(self, state: bytes) -> bool:
        """The gate wrote and memory now holds ``state``. Returns True if it was flushed now."""
        if len(state) != self.state_len:
            raise ValueError(f"state is {len(state)} bytes, expected {self.state_len}")
        with self._lock:
            if self._pending is not None:
                self.coalesced_writes += 1
            self._pending = bytes(state)
            return self._flush_locked(force=False)

    def poll(self) -> bool:
        """Flush a coalesced state whose interval has passed. Returns True if it flushed."""
        with self._lock:
            return self._flush_locked(force=False)

    def flush(self) -> bool:
        """Flush any pending state now (deactivate, shutdown)."""
        with self._lock:
            return self._flush_locked(force=True)

    def discard(self) -> None:
        """Memory was reset: forget the pending state and remove the file.

        Removing (not rewriting) keeps "only gate writes touch the flash" true, and stops a
        restart from resuming a memory the user deliberately cleared.
        """
        with self._lock:
            self._pending = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                self.write_errors += 1
                self.last_error = f"cannot remove {self.path}: {exc}"

    def _flush_locked(self, force: bool) -> bool:
        if self._pending is None or self._key is None:
            return False
        now = self._clock()
        due = self._last_flush is None or now - self._last_flush >= self.min_interval_s
        if not (force or due):
            return False
        blob = encode_state(self._pending, self._key)
        try:
            write_atomic(self.path, blob)
        except OSError as exc:
            # Keep the state pending: the next write or poll retries.
            self.write_errors += 1
            self.last_error = f"cannot write {self.path}: {exc}"
            return False
        self._pending = None
        self._last_flush = now
        self.flushes += 1
        self.persisted_bytes += len(blob)
        self.last_error = ""
        return True
