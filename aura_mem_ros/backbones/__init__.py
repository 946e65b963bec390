"""Frozen policies behind one interface, picked by name (see ``registry``)."""

from aura_mem_ros.backbones.base import Backbone, BackboneError, BackboneOutput, Observation
from aura_mem_ros.backbones.registry import available_backbones, make_backbone, register_backbone

__all__ = [
    "Backbone",
    "BackboneError",
    "BackboneOutput",
    "Observation",
    "available_backbones",
    "make_backbone",
    "register_backbone",
]
