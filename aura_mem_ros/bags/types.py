"""Message types for bag I/O: the ROS 2 Kilted store plus every custom type, registered from .msg.

rosbags needs the full definition of a type to embed it in a bag (so ``ros2 bag play`` on a
real install and any other reader can decode it) and to compute its RIHS01 hash, which must
equal what rosidl computed for the publisher. The definitions are therefore taken from the
INSTALLED ``share/<pkg>/msg/*.msg`` (what the running nodes were built from) and only fall back
to this checkout's ``msg/`` when the package is not installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "aura_mem_ros"
SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
AURA_TYPES = ("AuraAction", "MemoryStats", "EpisodeResult")


class UnknownTypeError(LookupError):
    """No definition for a message type could be found (not in Kilted, not installed)."""


def _prefixes() -> list[Path]:
    """Install prefixes to search for ``share/<pkg>/msg``: AMENT_PREFIX_PATH, then the venv."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(Path(sys.prefix))
    return prefixes


def find_msg_file(msgtype: str) -> Path | None:
    """``pkg/msg/Type`` -> the installed .msg file (or this checkout's msg/ for our package)."""
    pkg, _, name = msgtype.split("/")
    for prefix in _prefixes():
        candidate = prefix / "share" / pkg / "msg" / f"{name}.msg"
        if candidate.is_file():
            return candidate
    if pkg == PACKAGE and (SOURCE_MSG_DIR / f"{name}.msg").is_file():
        return SOURCE_MSG_DIR / f"{name}.msg"
    return None


def ensure_type(typestore: Typestore, msgtype: str) -> None:
    """Register ``msgtype`` (and, recursively, the types it uses) if the store lacks it."""
    if msgtype in typestore.fielddefs:
        return
    path = find_msg_file(msgtype)
    if path is None:
        raise UnknownTypeError(
            f"no definition for {msgtype}: not in the Kilted store and no share/"
            f"{msgtype.split('/')[0]}/msg/{msgtype.split('/')[-1]}.msg under AMENT_PREFIX_PATH"
        )
    types = get_types_from_msg(path.read_text(), msgtype)
    # Nested types the store lacks must be registered first, or hashing fails later.
    for _, fields in [types[msgtype]]:
        for _, (_, spec) in fields:
            for name in _referenced(spec):
                ensure_type(typestore, name)
    typestore.register(types)


def _referenced(spec: object) -> list[str]:
    """Type names a parsed field spec refers to (``pkg/msg/T`` strings inside nested tuples)."""
    out: list[str] = []
    if isinstance(spec, str) and spec.count("/") == 2:
        out.append(spec)
    elif isinstance(spec, tuple):
        for item in spec:
            out.extend(_referenced(item))
    return out


def make_typestore() -> Typestore:
    """Kilted's types plus aura_mem_ros's messages."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    for name in AURA_TYPES:
        ensure_type(typestore, f"{PACKAGE}/msg/{name}")
    return typestore
