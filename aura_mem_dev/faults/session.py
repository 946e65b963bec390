"""A node process under test (fault backbone, state file) and the probe talking to it.

Evidence, not trust: "memory untouched" is read from the outside. The node runs with gate
``always`` and a state file, so every served frame rewrites the file and a rejected input
that touched memory would show up as a changed file or a skipped step number; the step
counter travels in every AuraAction. /diagnostics is read as an operator would see it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aura_mem_dev.faults.harness import (
    FAULT_NODE_MODULE,
    MINI_INSTRUCTION,
    NodeProcess,
    Probe,
    mini_frame,
    status_values,
)

STATE_LEN = 4224


DIAG_PERIOD_S = 0.25  # faster than the YAML's 1 s so a row's WARN shows up quickly


def digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "(none)"


def log_lines(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Session:
    """A node process (with the fault backbone and a state file) plus the probe talking to it."""

    def __init__(
        self,
        probe: Probe,
        domain_id: int,
        workdir: Path,
        overrides: dict[str, Any] | None = None,
        module: str = FAULT_NODE_MODULE,
        seed: int = 0,
    ) -> None:
        self.probe = probe
        self.domain_id = domain_id
        self.workdir = workdir
        self.rng = np.random.default_rng(seed)
        self.state_file = workdir / "state.bin"
        self.overrides: dict[str, Any] = {
            "backbone": "faulty_mini" if module == FAULT_NODE_MODULE else "mini",
            "gate": "always",
            "state_file": str(self.state_file),
            "persist_min_interval_s": 0.0,
            "diagnostics_period_s": DIAG_PERIOD_S,
            "stats_rate_hz": 20.0,
            # gate=always writes every step; without this every row would also carry the
            # (expected) write-budget WARN of the memory status.
            "write_rate_budget": 1.0,
            **(overrides or {}),
        }
        self.module = module
        # Diagnostics received before this index came from earlier node processes.
        self.diag_start = probe.n_diagnostics()
        self.node = NodeProcess(self.overrides, domain_id, module=module)

    def ready(self, timeout_s: float = 90.0) -> bool:
        return self.probe.wait_ready(self.rng, timeout_s)

    def alive(self) -> bool:
        return self.node.alive()

    def frame(self) -> np.ndarray:
        return mini_frame(self.rng)

    def good_frame(self, timeout_s: float = 5.0) -> Any | None:
        """Send a valid frame and return its action (matched by stamp), or None."""
        for _ in range(3):  # best-effort camera QoS: a frame may be lost before matching
            if not self.alive():
                return None
            sent = self.probe.send_frame(self.frame())
            stamp = (sent.header.stamp.sec, sent.header.stamp.nanosec)

            def mine(stamp: tuple[int, int] = stamp) -> Any | None:
                with self.probe._lock:
                    for r in reversed(self.probe.log.actions):
                        s = r.msg.header.stamp
                        if (s.sec, s.nanosec) == stamp:
                            return r.msg
                return None

            if self.probe.wait_for(lambda m=mine: m() is not None, timeout_s / 3):
                self.settle_file()
                return mine()
        return None

    def settle_file(self, timeout_s: float = 2.0) -> str:
        """The state file's digest once the worker has finished persisting (two equal reads)."""
        deadline = time.monotonic() + timeout_s
        last = digest(self.state_file)
        while time.monotonic() < deadline:
            time.sleep(0.08)
            now = digest(self.state_file)
            if now == last:
                return now
            last = now
        return last

    def fresh_stats(self, after_ns: int, timeout_s: float = 3.0) -> Any | None:
        """The first ~/stats message received after ``after_ns`` (wall clock)."""
        found: list[Any] = []

        def check() -> bool:
            with self.probe._lock:
                found[:] = [r.msg for r in self.probe.log.stats if r.t_ns > after_ns]
            return bool(found)

        self.probe.wait_for(check, timeout_s)
        return found[0] if found else None

    def rejected_total(self) -> int:
        stats = self.fresh_stats(time.time_ns())
        return int(stats.rejected_inputs) if stats is not None else -1

    def wait_rejected(self, target: int, timeout_s: float = 5.0) -> bool:
        def check() -> bool:
            stats = self.probe.latest_stats()
            return stats is not None and int(stats.rejected_inputs) >= target

        return self.probe.wait_for(check, timeout_s)

    def inputs_values(self) -> dict[str, str]:
        """Values of the newest ``inputs`` status published after now."""
        idx = self.probe.n_diagnostics()
        status = self.probe.wait_status("inputs", lambda s: True, 3.0, since=idx)
        return status_values(status) if status is not None else {}

    def memory_values(self) -> dict[str, str]:
        idx = self.probe.n_diagnostics()
        status = self.probe.wait_status("memory", lambda s: True, 3.0, since=idx)
        return status_values(status) if status is not None else {}

    def close(self) -> str:
        return self.node.stop()


def stream(
    s: Session, rate_hz: float, duration_s: float, during: Callable[[], None] | None = None
) -> tuple[int, list[float]]:
    """Frames at ``rate_hz`` for ``duration_s``; return (frames sent, e2e latencies in ms)."""
    stamps: dict[tuple[int, int], int] = {}
    stop = threading.Event()

    def camera() -> None:
        period = 1.0 / rate_hz
        next_t = time.monotonic()
        end = next_t + duration_s
        while not stop.is_set() and next_t < end:
            msg = s.probe.send_frame(s.frame())
            stamps[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = 1
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    start_idx = s.probe.n_actions()
    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    if during is not None:
        during()
    thread.join(duration_s + 5)
    stop.set()
    time.sleep(0.3)
    lat = []
    with s.probe._lock:
        got = list(s.probe.log.actions[start_idx:])
    for r in got:
        st = r.msg.header.stamp
        if (st.sec, st.nanosec) in stamps:
            lat.append((r.t_ns - (st.sec * 1_000_000_000 + st.nanosec)) / 1e6)
    return len(stamps), lat


def state_key_from_log(log: str) -> bytes | None:
    """The key the node binds its state file to: sha256(model id, instruction)."""
    from aura_mem_ros.persistence import state_key

    for line in log.splitlines():
        if "configured:" in line and "model_id=" in line:
            model_id = line.split("model_id=", 1)[1].split()[0]
            return state_key(model_id, MINI_INSTRUCTION)
    return None


def restore_value(s: Session, timeout_s: float = 5.0) -> str:
    status = s.probe.wait_status(
        "persistence",
        lambda st: "last_restore" in status_values(st),
        timeout_s,
        since=s.diag_start,
    )
    return status_values(status).get("last_restore", "") if status is not None else ""
