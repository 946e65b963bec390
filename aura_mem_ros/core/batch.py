"""What the trainer consumes: batches of whole sequences, and the action error on them.

Shared by the loop (``train.py``) and the gate objectives (``objectives.py``); plain torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor, nn

from aura_mem_ros.core.aura import SequenceOutput


@dataclass
class SequenceBatch:
    """A batch of whole sequences (episodes, or streams of episodes with memory carried).

    features (B, T, d_model); base_actions (B, T, chunk, dim) (logits (B, T, 1, n) if
    discrete); targets (B, T) class ids (discrete) or (B, T, chunk, dim) (continuous);
    mask (B, T) loss weights (padding = 0); writes (B, T) forced decisions: ONLY for the
    evaluation-only ``oracle`` gate of the synthetic benchmark, never for AURA training.
    """

    features: Tensor
    base_actions: Tensor
    targets: Tensor
    mask: Tensor | None = None
    writes: Tensor | None = None


class SequenceModel(Protocol):
    """What the trainer needs: AuraLayer and every baseline memory speak it."""

    def forward_sequence(
        self,
        features: Tensor,
        base_actions: Tensor,
        *,
        gate: str = ...,
        threshold: float | None = ...,
        writes: Tensor | None = ...,
        generator: torch.Generator | None = ...,
    ) -> SequenceOutput: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...


def is_discrete(batch: SequenceBatch) -> bool:
    return not torch.is_floating_point(batch.targets)


def step_mask(batch: SequenceBatch) -> Tensor:
    """(B, T) float weights of the real steps (all ones without a mask)."""
    if batch.mask is not None:
        return batch.mask.to(batch.features.dtype)
    return torch.ones(batch.features.shape[:2], dtype=batch.features.dtype)


def per_step_loss(actions: Tensor, targets: Tensor, discrete: bool) -> Tensor:
    """(B, T) unmasked action error: CE on logits (B, T, 1, n) or L1 on (B, T, chunk, dim)."""
    if discrete:
        b, t = targets.shape
        return F.cross_entropy(
            actions[:, :, 0].reshape(b * t, -1), targets.reshape(-1), reduction="none"
        ).view(b, t)
    return (actions - targets).abs().mean(dim=(-2, -1))


def action_loss(actions: Tensor, batch: SequenceBatch) -> Tensor:
    """Masked mean of ``per_step_loss`` over the real steps (a scalar)."""
    mask = step_mask(batch)
    per_step = per_step_loss(actions, batch.targets, is_discrete(batch))
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


def select_rows(batch: SequenceBatch, rows: Tensor) -> SequenceBatch:
    """The sub-batch of the sequences ``rows`` (bool (B,) or indices), mask made explicit."""
    writes = None if batch.writes is None else batch.writes[rows]
    return SequenceBatch(
        batch.features[rows],
        batch.base_actions[rows],
        batch.targets[rows],
        step_mask(batch)[rows],
        writes,
    )
