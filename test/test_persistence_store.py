"""MemoryStore: writes only after gate writes, coalesces, counts bytes, survives I/O errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aura_mem_ros.persistence import MemoryStore, RestoreStatus, read_state, state_key
from aura_mem_ros.persistence.flash import SECONDS_PER_YEAR, flash_lifetime_s, lifetime_years

KEY = state_key("model", "task")
N = 4224


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def state(value: int) -> bytes:
    return bytes([value]) * N


def test_each_gate_write_flushes_and_counts_bytes(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", N)
    assert store.restore(KEY).status is RestoreStatus.ABSENT
    assert not (tmp_path / "s.bin").exists()  # reading never creates the file
    assert store.record_write(state(1))
    assert store.record_write(state(2))
    assert store.flushes == 2
    assert store.persisted_bytes == 2 * store.file_bytes
    assert read_state(tmp_path / "s.bin", KEY, N).payload == state(2)


def test_coalescing_flushes_at_most_once_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MemoryStore(tmp_path / "s.bin", N, min_interval_s=10.0, clock=clock)
    store.restore(KEY)
    assert store.record_write(state(1))  # first write: nothing flushed yet, so it goes now
    clock.t += 1
    assert not store.record_write(state(2))
    assert not store.record_write(state(3))
    assert store.pending and store.coalesced_writes == 1
    assert not store.poll()  # interval not over
    clock.t += 10
    assert store.poll()
    assert store.flushes == 2 and not store.pending
    assert read_state(tmp_path / "s.bin", KEY, N).payload == state(3)  # newest state wins


def test_flush_forces_pending_state(tmp_path: Path) -> None:
    clock = FakeClock()
    store = MemoryStore(tmp_path / "s.bin", N, min_interval_s=60.0, clock=clock)
    store.restore(KEY)
    store.record_write(state(1))
    store.record_write(state(2))
    assert store.flush()
    assert read_state(tmp_path / "s.bin", KEY, N).payload == state(2)
    assert not store.flush()  # nothing pending: no write


def test_no_key_no_write(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", N)
    assert not store.record_write(state(1))
    assert not (tmp_path / "s.bin").exists()


def test_discard_removes_file_and_pending(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", N, min_interval_s=60.0, clock=FakeClock())
    store.restore(KEY)
    store.record_write(state(1))
    store.record_write(state(2))
    store.discard()
    assert not (tmp_path / "s.bin").exists() and not store.pending


def test_io_error_is_recorded_not_raised_and_retried(tmp_path: Path) -> None:
    target = tmp_path / "missing_dir" / "s.bin"
    store = MemoryStore(target, N)
    store.restore(KEY)
    assert not store.record_write(state(1))
    assert store.write_errors == 1 and "cannot write" in store.last_error
    assert store.pending  # kept for a retry
    target.parent.mkdir()
    assert store.poll()
    assert store.last_error == "" and store.persisted_bytes == store.file_bytes


def test_wrong_state_size_is_a_programming_error(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", N)
    with pytest.raises(ValueError):
        store.record_write(b"short")


def test_flash_lifetime_projection() -> None:
    # 8 GiB x 3000 P/E at 4,276 B/s (one flush per second) -> about 191 years.
    size, pe, bps = 8 * 1024**3, 3000, 4276.0
    life = flash_lifetime_s(size, pe, bps)
    assert life == pytest.approx(size * pe / bps)
    assert lifetime_years(life) == pytest.approx(size * pe / bps / SECONDS_PER_YEAR)
    assert flash_lifetime_s(size, pe, bps * 7) == pytest.approx(life / 7)  # 7x fewer writes
    assert flash_lifetime_s(size, pe, bps, write_amplification=2.0) == pytest.approx(life / 2)
    assert math.isinf(flash_lifetime_s(size, pe, 0.0))
    with pytest.raises(ValueError):
        flash_lifetime_s(0, pe, bps)


def test_restore_removes_temp_files_orphaned_by_a_crash(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "s.bin", N)
    store.restore(KEY)
    store.record_write(state(3))
    # what a kill -9 inside write_atomic leaves behind, from two earlier crashed processes
    for pid in (111, 222):
        (tmp_path / f".s.bin.tmp.{pid}").write_bytes(b"half a state")
    unrelated = tmp_path / ".other.bin.tmp.111"
    unrelated.write_bytes(b"not ours")
    restored = MemoryStore(tmp_path / "s.bin", N).restore(KEY)
    assert restored.payload == state(3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.bin.tmp.111", "s.bin"]
