"""Memory state that survives restarts while sparing the flash (no rclpy here).

``state_file``: the on-disk format, atomic writes and validated reads.
``store``: when to write (only after a gate write, optionally coalesced) and what it cost.
``flash``: projected lifetime of a flash device at a given write rate.
"""

from aura_mem_ros.persistence.flash import flash_lifetime_s
from aura_mem_ros.persistence.state_file import (
    RestoreResult,
    RestoreStatus,
    StateFileError,
    decode_state,
    encode_state,
    read_state,
    state_key,
    write_atomic,
)
from aura_mem_ros.persistence.store import MemoryStore

__all__ = [
    "MemoryStore",
    "RestoreResult",
    "RestoreStatus",
    "StateFileError",
    "decode_state",
    "encode_state",
    "flash_lifetime_s",
    "read_state",
    "state_key",
    "write_atomic",
]
