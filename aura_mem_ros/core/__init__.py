"""AURA-Mem core: the 4,224-byte gated fast-weight memory, its gate, training and baselines.

Plain torch/numpy; never imports rclpy. Main entry points:

- ``AuraConfig`` (config), ``AuraLayer`` (aura), ``AuraRuntime`` / ``RuntimeStep`` and the
  ``MemoryRuntime`` protocol (runtime), the KV-cache baseline and its runtime (kv, baselines)
- ``init_aura`` / ``save_aura`` / ``load_aura`` (checkpoint)
- ``SequenceBatch`` / ``TrainConfig`` / ``train_aura`` / ``evaluate`` / ``calibrate_threshold``
  (train)
"""

from aura_mem_ros.core.aura import AuraLayer, SequenceOutput, StepOutput
from aura_mem_ros.core.checkpoint import init_aura, load_aura, save_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.runtime import AuraRuntime, MemoryRuntime, RuntimeStep
from aura_mem_ros.core.train import (
    SequenceBatch,
    TrainConfig,
    TrainResult,
    calibrate_threshold,
    evaluate,
    train_aura,
)

__all__ = [
    "AuraConfig",
    "AuraLayer",
    "AuraRuntime",
    "MemoryRuntime",
    "RuntimeStep",
    "SequenceBatch",
    "SequenceOutput",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "calibrate_threshold",
    "evaluate",
    "init_aura",
    "load_aura",
    "save_aura",
    "train_aura",
]
