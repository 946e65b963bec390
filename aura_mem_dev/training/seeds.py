"""Seed ranges: training and evaluation never share an episode layout.

Training (backbone BC/DAgger and AURA DAgger) draws seeds below ``EVAL_SEED_BASE``; the
closed-loop benchmark, the demo and the tests use seeds at or above it.
"""

from __future__ import annotations

TRAIN_SEED_MAX = 1_000_000
EVAL_SEED_BASE = 1_000_000


def check_eval_seed(seed: int) -> None:
    if seed < EVAL_SEED_BASE:
        raise ValueError(f"seed {seed} overlaps the training seeds (< {EVAL_SEED_BASE})")
