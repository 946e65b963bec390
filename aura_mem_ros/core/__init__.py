"""AURA-Mem core: the 4,224-byte gated fast-weight memory, its gate, training and baselines.

Plain torch/numpy; never imports rclpy. Main entry points:

- ``AuraConfig`` (config), ``AuraLayer`` (aura), ``AuraRuntime`` / ``RuntimeStep`` and the
  ``MemoryRuntime`` protocol (runtime), the KV-cache baseline and its runtime (kv, baselines)
- ``init_aura`` / ``save_aura`` / ``load_aura`` (checkpoint)
- ``Trainer`` / ``TrainerConfig`` (the one trainer, train) with a gate objective
  (``CounterfactualGate``, ``StraightThroughGate``, ``FixedGate``: objectives);
  ``SequenceBatch`` (batch); ``train_aura`` / ``TrainConfig`` (the older entry point, mapped
  onto ``Trainer``), ``evaluate``, ``calibrate_threshold`` (train)
"""

from aura_mem_ros.core.aura import AuraLayer, SequenceOutput, StepOutput
from aura_mem_ros.core.batch import SequenceBatch
from aura_mem_ros.core.checkpoint import init_aura, load_aura, save_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.objectives import CounterfactualGate, FixedGate, StraightThroughGate
from aura_mem_ros.core.runtime import AuraRuntime, MemoryRuntime, RuntimeStep
from aura_mem_ros.core.train import (
    TrainConfig,
    Trainer,
    TrainerConfig,
    TrainResult,
    calibrate_threshold,
    evaluate,
    train_aura,
)

__all__ = [
    "AuraConfig",
    "AuraLayer",
    "AuraRuntime",
    "CounterfactualGate",
    "FixedGate",
    "MemoryRuntime",
    "RuntimeStep",
    "SequenceBatch",
    "SequenceOutput",
    "StepOutput",
    "StraightThroughGate",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "calibrate_threshold",
    "evaluate",
    "init_aura",
    "load_aura",
    "save_aura",
    "train_aura",
]
