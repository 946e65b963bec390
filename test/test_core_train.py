"""Training through time: the budget controller and the delayed-utility cue."""

from __future__ import annotations

import statistics

import pytest
import torch

from aura_mem_dev.bench.synthetic_task import SyntheticBatch, SyntheticConfig, generate
from aura_mem_ros.core.aura import AuraLayer
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.train import (
    SequenceBatch,
    TrainConfig,
    calibrate_threshold,
    evaluate,
    train_aura,
    write_rate,
)

# Tiny tensor ops: extra threads only contend for the shared CPU (10x slower under load).
torch.set_num_threads(1)

# one event per sequence; its class is the right action 3-6 steps later, never at once
DELAYED = SyntheticConfig("delayed", seq_len=16, n_events=1, delay=(3, 6), distractor_rate=0.25)


@pytest.fixture(scope="module")
def delayed_trained() -> tuple[AuraLayer, SyntheticBatch]:
    layer = init_aura(AuraConfig(d_model=32, chunk_size=1, action_dim=8, discrete=True), seed=0)
    stream = torch.Generator().manual_seed(0)
    config = TrainConfig(iterations=150, lr=1e-2, target_write_rate=1.5 / 16, seed=0)
    train_aura(layer, lambda i: generate(DELAYED, 32, stream), config)
    return layer, generate(DELAYED, 256, torch.Generator().manual_seed(99))


def _event_write_rate(layer: AuraLayer, batch: SyntheticBatch, **kw: object) -> float:
    with torch.no_grad():
        out = layer.forward_sequence(batch.features, batch.base_actions, **kw)
    return float(out.writes[batch.event_mask].mean())


def test_trained_gate_stores_the_delayed_cue_a_one_step_rule_misses(delayed_trained) -> None:
    layer, test = delayed_trained
    aura = evaluate(layer, test, score_mask=test.query_mask)
    assert aura["accuracy"] >= 0.8  # chance is 0.125
    assert _event_write_rate(layer, test) >= 0.8
    assert aura["writes_per_seq"] <= 1.5 * DELAYED.n_events

    # The one-step action-surprise rule, same layer, same budget: at the cue the action does
    # not change yet, so it spends its writes elsewhere (on the queries) and misses the cue.
    threshold = calibrate_threshold(layer, [test], aura["write_rate"], gate="action_surprise")
    one_step = evaluate(
        layer, test, gate="action_surprise", threshold=threshold, score_mask=test.query_mask
    )
    assert one_step["write_rate"] <= aura["write_rate"] + 1e-6
    assert _event_write_rate(layer, test, gate="action_surprise", threshold=threshold) <= 0.2
    assert one_step["accuracy"] <= aura["accuracy"] - 0.4


def _graded_copy(batch: int, generator: torch.Generator, steps: int = 16) -> SequenceBatch:
    """Each step shows a class (the NEXT step's action) and a weight w (that action's loss
    weight): every write is worth something, some more than others, so a 0.3 budget binds."""
    cls = torch.randint(0, 8, (batch, steps), generator=generator)
    w = torch.rand(batch, steps, generator=generator)
    x = 0.05 * torch.randn(batch, steps, 16, generator=generator)
    x[..., :8] += torch.nn.functional.one_hot(cls, 8).float()
    x[..., 8] += w
    targets = torch.cat([cls[:, :1], cls[:, :-1]], 1)
    mask = torch.cat([torch.zeros(batch, 1), w[:, :-1]], 1)
    return SequenceBatch(x, torch.zeros(batch, steps, 1, 8), targets, mask)


@pytest.fixture(scope="module")
def budget_trained() -> tuple[AuraLayer, list[dict[str, float]], float]:
    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=8, discrete=True), seed=1)
    stream = torch.Generator().manual_seed(1)
    config = TrainConfig(iterations=150, lr=1e-2, target_write_rate=0.3, seed=1)
    result = train_aura(layer, lambda i: _graded_copy(32, stream), config)
    return layer, result.history, result.lagrange_multiplier


def test_budget_controller_lands_near_a_binding_target(budget_trained) -> None:
    _, history, lam = budget_trained
    assert statistics.fmean(h["write_rate"] for h in history[:20]) > 0.8  # starts dense
    late = statistics.fmean(h["write_rate"] for h in history[-30:])
    assert abs(late - 0.3) <= 0.1, late
    assert lam > 0  # the budget binds: writing more would lower the loss


def test_calibrated_threshold_meets_a_budget_at_inference(budget_trained) -> None:
    layer, _, _ = budget_trained
    data = [_graded_copy(128, torch.Generator().manual_seed(5))]
    for target in (0.1, 0.2):
        threshold = calibrate_threshold(layer, data, target)
        rate = write_rate(layer, data, threshold=threshold)
        assert target - 0.03 <= rate <= target, (target, rate)


def test_score_gates_calibrate_to_a_budget(delayed_trained) -> None:
    layer, test = delayed_trained
    for gate in ("reconstruction", "similarity"):
        threshold = calibrate_threshold(layer, [test], 0.2, gate=gate)
        rate = write_rate(layer, [test], gate=gate, threshold=threshold)
        assert 0.17 <= rate <= 0.2, (gate, rate)
