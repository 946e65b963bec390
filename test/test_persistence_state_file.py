"""The memory state file: exact round trip, atomic replacement, and every way it can be bad."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aura_mem_ros.persistence import (
    RestoreStatus,
    StateFileError,
    decode_state,
    encode_state,
    read_state,
    state_key,
    write_atomic,
)
from aura_mem_ros.persistence.state_file import HEADER_BYTES

STATE = bytes(range(256)) * 16 + bytes(128)  # 4,224 bytes, not all zero
KEY = state_key("model-a", "pick up the cup")


def test_round_trip_is_exact_and_sized() -> None:
    blob = encode_state(STATE, KEY)
    assert len(STATE) == 4224
    assert len(blob) == HEADER_BYTES + 4224
    assert decode_state(blob, KEY, 4224) == STATE


def test_key_binds_model_and_instruction() -> None:
    assert state_key("m", "a") != state_key("m", "b")
    assert state_key("m", "a") != state_key("n", "a")
    assert state_key("ab", "c") != state_key("a", "bc")


@pytest.mark.parametrize("offset", [0, 9, 20, HEADER_BYTES - 2, HEADER_BYTES + 100])
def test_any_flipped_byte_is_reported_corrupt(offset: int) -> None:
    blob = bytearray(encode_state(STATE, KEY))
    blob[offset] ^= 0xFF
    with pytest.raises(StateFileError) as err:
        decode_state(bytes(blob), KEY, 4224)
    assert err.value.status is RestoreStatus.CORRUPT


def test_truncated_file_is_corrupt() -> None:
    blob = encode_state(STATE, KEY)
    for cut in (0, 10, HEADER_BYTES, len(blob) - 1):
        with pytest.raises(StateFileError) as err:
            decode_state(blob[:cut], KEY, 4224)
        assert err.value.status is RestoreStatus.CORRUPT


def test_other_instruction_or_size_is_a_mismatch() -> None:
    blob = encode_state(STATE, KEY)
    with pytest.raises(StateFileError) as err:
        decode_state(blob, state_key("model-a", "open the drawer"), 4224)
    assert err.value.status is RestoreStatus.MISMATCH
    with pytest.raises(StateFileError) as err:
        decode_state(blob, KEY, 1056)
    assert err.value.status is RestoreStatus.MISMATCH


def test_read_state_never_raises(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    assert read_state(path, KEY, 4224).status is RestoreStatus.ABSENT
    write_atomic(path, encode_state(STATE, KEY))
    ok = read_state(path, KEY, 4224)
    assert ok.status is RestoreStatus.RESTORED and ok.payload == STATE
    path.write_bytes(b"garbage")
    assert read_state(path, KEY, 4224).status is RestoreStatus.CORRUPT
    assert read_state(tmp_path, KEY, 4224).status is RestoreStatus.ERROR  # a directory


def test_atomic_write_keeps_old_content_when_rename_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state.bin"
    write_atomic(path, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("simulated power cut before rename")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]  # no temp file left behind


def test_atomic_write_fsyncs_file_and_directory(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_atomic(tmp_path / "state.bin", b"x" * 10)
    assert len(synced) == 2  # the data, then the directory entry
