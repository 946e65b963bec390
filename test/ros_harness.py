"""Helpers for tests that use real rclpy (no launch_testing here).

Isolation: each pytest run reserves its own DDS domain (ros-domain-coordinator). In-process
tests also switch automatic discovery OFF, so nothing outside the process is ever seen;
multi-process tests use LOCALHOST, so only this machine's processes on this run's domain talk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rclpy.executors import Executor

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def preserved_env(name: str) -> Iterator[None]:
    """Restore environment variable ``name`` afterwards (for module-scoped fixtures, where
    pytest's monkeypatch is not available); harness classes set discovery variables."""
    saved = os.environ.get(name)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def spin_until(executor: Executor, predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.02)
    return predicate()


def spin_for(executor: Executor, duration_s: float) -> None:
    """Spin for a fixed time (to let messages that should NOT arrive have their chance)."""
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)


def subprocess_env(domain_id: int) -> dict[str, str]:
    """Environment for a ROS process that must talk to this test run and nothing else."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_python(args: list[str], domain_id: int, cwd: Path = REPO_ROOT) -> subprocess.Popen[str]:
    """Start ``python ARGS`` as a ROS process on this run's domain.

    Output goes to a temporary file, not a pipe: a chatty child must never block on a full
    pipe while the test waits for it. ``stop_process`` returns what it printed.
    """
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop_process
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=subprocess_env(domain_id),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> str:
    """SIGINT, then SIGKILL after ``timeout_s``; return everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    log = proc.log_file  # type: ignore[attr-defined]
    log.seek(0)
    out = log.read()
    log.close()
    return out
