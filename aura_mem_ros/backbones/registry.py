"""A small name -> class registry, so the node picks a backbone by parameter.

Backbone modules register themselves on import; ``make_backbone`` imports the module that
owns a name lazily, so asking for ``mini`` never imports transformers and vice versa.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from aura_mem_ros.backbones.base import Backbone

_REGISTRY: dict[str, type[Backbone]] = {}

# name -> module that registers it; imported on first use.
_MODULES: dict[str, str] = {
    "mini": "aura_mem_ros.backbones.mini",
    "arm_mini": "aura_mem_ros.backbones.arm_mini",
    "toy": "aura_mem_ros.backbones.toy",
    "openvla_oft": "aura_mem_ros.backbones.openvla_oft",
}


def register_backbone(name: str) -> Callable[[type[Backbone]], type[Backbone]]:
    """Class decorator: make ``cls`` available as ``make_backbone(name, ...)``."""

    def decorate(cls: type[Backbone]) -> type[Backbone]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"backbone name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_backbones() -> list[str]:
    return sorted(set(_MODULES) | set(_REGISTRY))


def make_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build the backbone registered as ``name`` with its own keyword arguments."""
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {available_backbones()}")
    return _REGISTRY[name](**kwargs)
