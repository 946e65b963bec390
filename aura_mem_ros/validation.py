"""Checks shared by the frozen config dataclasses (``AuraConfig``, ``KVConfig``, ``MiniConfig``).

Each config validates itself on construction and is rebuilt from the JSON stored next to its
weights; these two helpers give every class the same rules and the same error messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def require_positive_ints(config: object, names: tuple[str, ...] | None = None) -> None:
    """ValueError unless each named field (default: every field) is an int > 0 (not a bool)."""
    cls = type(config).__name__
    for name in names or tuple(f.name for f in dataclasses.fields(config)):  # type: ignore[arg-type]
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{cls}.{name} must be a positive int, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """``cls(**data)`` after naming any unknown or missing keys (a stale or foreign config file
    must fail with the reason, not with a TypeError about ``__init__``)."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in fields}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{cls.__name__} is missing required keys {missing}")
    return cls(**data)
