"""The node's single inference thread: takes the newest frame if idle, refuses it if busy.

Never a queue: a frame that arrives while an inference runs is refused (the caller counts it
as dropped), because a queue would only make the robot act on ever older images.

The thread is a daemon and nobody ever waits for it: stopping (deactivate, shutdown, SIGTERM)
must not wait for an 8-s inference on a big backbone, and neither must process exit. What the
abandoned inference computes is discarded by the node (memory epoch, publish gate).
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any


class LatestOnlyWorker:
    def __init__(self, run: Callable[..., None], name: str = "aura_infer") -> None:
        self._run_job = run
        self._cond = threading.Condition()
        self._job: tuple[Any, ...] | None = None
        self._busy = False
        self._closed = False
        self.idle = threading.Event()  # set while no job is pending or running
        self.idle.set()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def offer(self, *args: Any) -> bool:
        """Start ``run(*args)`` now if idle; False (nothing queued) if busy or closed."""
        with self._cond:
            if self._busy or self._closed:
                return False
            self._busy = True
            self.idle.clear()
            self._job = args
            self._cond.notify()
        return True

    def close(self) -> None:
        """No new jobs; a job already running finishes on its own (never waited for)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:
                    return
                job, self._job = self._job, None
            try:
                self._run_job(*job)
            except Exception:  # the job logs its own errors; this thread must survive a bug
                traceback.print_exc()
            finally:
                with self._cond:
                    self._busy = False
                    self.idle.set()
