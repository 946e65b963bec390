"""The memory state file: a small header, the raw state, a checksum; written atomically.

Layout (little endian), ``HEADER_BYTES`` + payload:

    magic    8s   b"AURAMEM1"
    version  u32  FORMAT_VERSION
    length   u32  payload length in bytes (4,224 for the card's memory)
    key      32s  sha256(model id, instruction): a state from another model or task is refused
    crc32    u32  over everything before it plus the payload
    payload  length bytes

A reader never trusts a file: every field is checked and any mismatch is reported as a
``RestoreResult`` rather than raised, so a bad file can only ever mean "start fresh".
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"AURAMEM1"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sII32s")
_CRC = struct.Struct("<I")
HEADER_BYTES = _PREFIX.size + _CRC.size


class StateFileError(ValueError):
    """A state file is corrupt, truncated, from another format version, or for another key."""

    def __init__(self, status: RestoreStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class RestoreStatus(enum.Enum):
    RESTORED = "restored"
    ABSENT = "absent"  # no file yet: the normal first start
    CORRUPT = "corrupt"  # bad magic, version, length or checksum
    MISMATCH = "mismatch"  # valid file, but another model or instruction
    ERROR = "error"  # the file could not be read at all (permissions, I/O)


@dataclass(frozen=True)
class RestoreResult:
    status: RestoreStatus
    message: str
    payload: bytes | None = None


def state_key(model_id: str, instruction: str) -> bytes:
    """32-byte key binding a state to the weights that wrote it and the task it was for."""
    # A NUL separator keeps ("ab", "c") and ("a", "bc") apart.
    return hashlib.sha256(model_id.encode() + b"\0" + instruction.encode()).digest()


def encode_state(payload: bytes, key: bytes) -> bytes:
    if len(key) != 32:
        raise ValueError(f"state key must be 32 bytes, got {len(key)}")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(payload), key)
    crc = zlib.crc32(prefix + payload)
    return prefix + _CRC.pack(crc) + payload


def decode_state(blob: bytes, key: bytes, expected_len: int) -> bytes:
    """Return the payload of ``blob`` or raise ``StateFileError`` saying exactly what is wrong."""
    if len(blob) < HEADER_BYTES:
        raise StateFileError(
            RestoreStatus.CORRUPT, f"file is {len(blob)} bytes, shorter than its header"
        )
    magic, version, length, file_key = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise StateFileError(RestoreStatus.CORRUPT, f"bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise StateFileError(
            RestoreStatus.CORRUPT, f"format version {version}, expected {FORMAT_VERSION}"
        )
    payload = blob[HEADER_BYTES:]
    if length != len(payload):
        raise StateFileError(
            RestoreStatus.CORRUPT, f"header says {length} payload bytes, file holds {len(payload)}"
        )
    (crc,) = _CRC.unpack_from(blob, _PREFIX.size)
    if zlib.crc32(blob[: _PREFIX.size] + payload) != crc:
        raise StateFileError(RestoreStatus.CORRUPT, "checksum mismatch")
    # Checked after the checksum so a flipped bit is reported as corruption, not a mismatch.
    if length != expected_len:
        raise StateFileError(
            RestoreStatus.MISMATCH, f"state is {length} bytes, this memory needs {expected_len}"
        )
    if file_key != key:
        raise StateFileError(
            RestoreStatus.MISMATCH, "state was written by another model or for another instruction"
        )
    return payload


def write_atomic(path: str | os.PathLike[str], blob: bytes) -> None:
    """Write ``blob`` so that ``path`` holds either the old or the new content, never a mix.

    temp file in the same directory (rename is atomic only within one file system), fsync the
    data, rename over the target, fsync the directory so the rename itself survives power loss.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(blob)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Delete temp files that a crash inside ``write_atomic`` left beside ``path``.

    Only one process owns a state file, so at restore time any temp file is an orphan; without
    this every kill during a write would leave one more file behind, forever.
    """
    target = Path(path)
    removed = 0
    for orphan in target.parent.glob(f".{target.name}.tmp.*"):
        try:
            orphan.unlink()
            removed += 1
        except OSError:
            pass  # not ours to delete, or already gone: the restore itself is what matters
    return removed


def read_state(path: str | os.PathLike[str], key: bytes, expected_len: int) -> RestoreResult:
    """Read and validate a state file; never raises."""
    target = Path(path)
    try:
        blob = target.read_bytes()
    except FileNotFoundError:
        return RestoreResult(RestoreStatus.ABSENT, f"no state file at {target}")
    except OSError as exc:
        return RestoreResult(RestoreStatus.ERROR, f"cannot read {target}: {exc}")
    try:
        payload = decode_state(blob, key, expected_len)
    except StateFileError as exc:
        return RestoreResult(exc.status, f"{target}: {exc}")
    return RestoreResult(
        RestoreStatus.RESTORED, f"restored {len(payload)} bytes from {target}", payload
    )
