"""A child process that persists memory states with the node's own code and is SIGKILLed while
doing so, at a chosen point of the atomic write or at a random moment.

Why a separate child and not only the node: killing the node at a *chosen* instruction of
``write_atomic`` is not possible from outside, and restarting the node (torch, DDS, model) for
every kill would limit the test to a handful of kills. This child imports only
``aura_mem_ros.persistence`` (stdlib only) and starts in ~0.1 s, so hundreds of kills are cheap;
the node itself is also killed during persistence, fewer times, in ``process``.

Child protocol: payload ``i`` encodes ``i`` in its first 8 bytes; after ``record_write`` of
payload ``i`` returns, the child prints ``done i``. The parent then knows which states were
durably written and which one was in flight when the kill landed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STATE_LEN = 4224
KEY = hashlib.sha256(b"crash-test-model\0crash-test-instruction").digest()
# Where the child kills itself inside write_atomic (None: the parent kills it at random).
CRASH_POINTS = ("mid_write", "before_fsync", "before_rename", "after_rename")
# The state the file must hold after a crash at each point: the last completed one (old) or
# the one being written (new). After the rename the new file is in place, only its directory
# entry may not be durable yet; on a live file system (no power loss) the new state is read.
EXPECTED = {
    "mid_write": "old",
    "before_fsync": "old",
    "before_rename": "old",
    "after_rename": "new",
}


def payload(i: int) -> bytes:
    head = struct.pack("<Q", i)
    body = hashlib.shake_256(head).digest(STATE_LEN - len(head))
    return head + body


def payload_index(data: bytes) -> int:
    return struct.unpack_from("<Q", data)[0]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str) -> None:
    """Patch the os functions write_atomic uses so the process dies at ``point``."""
    import aura_mem_ros.persistence.state_file as sf

    real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

    class _Os:
        """A stand-in for ``os`` inside state_file only (the child's own I/O stays real)."""

        def __getattr__(self, name: str) -> object:
            return getattr(os, name)

        @staticmethod
        def write(fd: int, data: bytes | memoryview) -> int:
            if point == "mid_write":
                real_write(fd, bytes(data[: len(data) // 2]))
                _die()
            return real_write(fd, data)

        @staticmethod
        def fsync(fd: int) -> None:
            if point == "before_fsync":
                _die()
            real_fsync(fd)

        @staticmethod
        def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
            if point == "before_rename":
                _die()
            real_replace(src, dst)
            if point == "after_rename":
                _die()

    sf.os = _Os()  # type: ignore[assignment]


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", required=True)
    parser.add_argument("--first", type=int, default=1, help="index of the first payload")
    parser.add_argument(
        "--clean-writes",
        type=int,
        default=0,
        help="writes that complete before the crash point is armed",
    )
    parser.add_argument("--point", choices=CRASH_POINTS, default=None)
    parser.add_argument("--max-writes", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    from aura_mem_ros.persistence import MemoryStore

    store = MemoryStore(args.path, STATE_LEN, 0.0)
    store.set_key(KEY)
    i = args.first
    for n in range(args.max_writes):
        if args.point is not None and n == args.clean_writes:
            _arm(args.point)
        if not store.record_write(payload(i)):
            print(f"error {i} {store.last_error}", flush=True)
            return 2
        print(f"done {i}", flush=True)
        i += 1
    return 0


@dataclass(frozen=True)
class CrashResult:
    point: str  # a CRASH_POINTS entry or "random"
    last_done: int  # last index the child reported complete (first - 1 if none)
    file_index: int | None  # index of the payload in the file after the kill; None if unusable
    status: str  # read_state status after the kill
    ok: bool
    detail: str
    orphan_tmp: int  # temp files left behind in the directory


def _child_cmd(path: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "aura_mem_dev.faults.crash", "--path", str(path), *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _check(path: Path, point: str, last_done: int, allowed: set[int], detail: str) -> CrashResult:
    from aura_mem_ros.persistence import read_state

    result = read_state(path, KEY, STATE_LEN)
    index = payload_index(result.payload) if result.payload is not None else None
    if result.payload is not None and result.payload != payload(index):  # type: ignore[arg-type]
        index = None  # a valid checksum over the wrong bytes would be a catastrophe; say so
    ok = (index in allowed) if allowed else result.status.value == "absent"
    orphans = len(list(path.parent.glob(f".{path.name}.tmp.*")))
    return CrashResult(
        point,
        last_done,
        index,
        result.status.value,
        ok,
        f"{detail}; file: {result.status.value} {result.message}",
        orphans,
    )


def crash_at_point(path: Path, point: str, first: int, clean_writes: int) -> CrashResult:
    """Run the child until it kills itself at ``point`` during write ``first + clean_writes``."""
    proc = subprocess.run(
        _child_cmd(
            path, ["--first", str(first), "--clean-writes", str(clean_writes), "--point", point]
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    done = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("done")]
    last_done = done[-1] if done else first - 1
    in_flight = first + clean_writes
    if proc.returncode != -signal.SIGKILL:
        return CrashResult(
            point,
            last_done,
            None,
            "n/a",
            False,
            f"child exited {proc.returncode}, not SIGKILL: {proc.stderr[-300:]}",
            0,
        )
    want = {in_flight if EXPECTED[point] == "new" else last_done}
    if last_done < 1 and EXPECTED[point] == "old":
        want = set()  # nothing was ever written: the file must be absent
    return _check(path, point, last_done, want, f"killed at {point} of write {in_flight}")


def crash_random(path: Path, first: int, rng_delay_s: float) -> CrashResult:
    """Let the child write continuously and SIGKILL it from outside after ``rng_delay_s``."""
    proc = subprocess.Popen(
        _child_cmd(path, ["--first", str(first)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    # Wait for the first completed write so the kill lands while writes are going on.
    first_line = proc.stdout.readline()
    time.sleep(rng_delay_s)
    proc.kill()
    rest, _ = proc.communicate(timeout=30)
    lines = [first_line, *rest.splitlines()]
    done = [int(x.split()[1]) for x in lines if x.startswith("done")]
    last_done = done[-1] if done else first - 1
    # The kill can land before the child's "done" line for a write that did reach the disk.
    allowed = {last_done, last_done + 1} if last_done >= first else {first}
    return _check(
        path,
        "random",
        last_done,
        allowed,
        f"external SIGKILL after {rng_delay_s * 1e3:.1f} ms of writing",
    )


if __name__ == "__main__":
    sys.exit(child_main())
