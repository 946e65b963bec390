"""The one trainer: exact write benefit, the counterfactual gate on a delayed cue, validation
(best checkpoint restored, start kept when nothing beats it), early stopping, the price."""

from __future__ import annotations

import pytest
import torch

from aura_mem_dev.bench.synthetic_task import SyntheticConfig, generate
from aura_mem_ros.core.batch import SequenceBatch, per_step_loss
from aura_mem_ros.core.checkpoint import init_aura
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.objectives import CounterfactualGate, FixedGate, write_benefits
from aura_mem_ros.core.train import PriceController, Trainer, TrainerConfig, validate

torch.set_num_threads(1)

DELAYED = SyntheticConfig("delayed", seq_len=16, n_events=1, delay=(3, 6), distractor_rate=0.25)


def _random_batch(b: int = 3, t: int = 7, d: int = 16, n: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t)
    mask[0, -2:] = 0.0  # a shorter sequence: padding never counts
    return SequenceBatch(
        torch.randn(b, t, d, generator=g),
        torch.randn(b, t, 1, n, generator=g),
        torch.randint(n, (b, t), generator=g),
        mask,
    )


def _loss_sum(layer, batch: SequenceBatch, writes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Brute force: re-run the whole sequence, sum the action loss over steps [lo, hi)."""
    with torch.no_grad():
        out = layer.forward_sequence(batch.features, batch.base_actions, writes=writes)
    per = per_step_loss(out.actions, batch.targets, True) * batch.mask
    return per[:, lo:hi].sum(1)


def test_write_benefit_is_the_loss_difference_of_two_full_reruns() -> None:
    torch.manual_seed(0)
    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=7, discrete=True), 0)
    torch.nn.init.normal_(layer.head.out.weight, std=0.5)  # a head that reads memory
    batch = _random_batch()
    schedule = torch.zeros(3, 7)
    schedule[:, 1] = schedule[:, 4] = 1.0
    schedule *= batch.mask
    exact = write_benefits(layer, batch, schedule)
    truncated = write_benefits(layer, batch, schedule, horizon=2)
    for t in range(7):
        on, off = schedule.clone(), schedule.clone()
        on[:, t], off[:, t] = 1.0, 0.0
        full = _loss_sum(layer, batch, off, t, 7) - _loss_sum(layer, batch, on, t, 7)
        window = _loss_sum(layer, batch, off, t, t + 2) - _loss_sum(layer, batch, on, t, t + 2)
        real = batch.mask[:, t]
        assert torch.allclose(exact[:, t], full * real, atol=1e-4), t
        assert torch.allclose(truncated[:, t], window * real, atol=1e-4), t
    assert exact.abs().max() > 0.1  # the writes matter: the check is not vacuous


@pytest.fixture(scope="module")
def counterfactual_delayed():
    """A fresh layer trained by the counterfactual gate on the delayed-cue task (labels only:
    the batch's oracle schedule is never read by the objective)."""
    layer = init_aura(
        AuraConfig(
            d_model=32,
            chunk_size=1,
            action_dim=8,
            discrete=True,
            gate_init_bias=-2.0,
            beta_init=0.3,
        ),
        seed=0,
    )
    stream = torch.Generator().manual_seed(0)
    config = TrainerConfig(
        iterations=200, batch_size=32, lr=1e-2, budget=1.5 / 16, warmup=40, seed=0
    )
    Trainer(layer, lambda n, g: generate(DELAYED, n, stream), CounterfactualGate(), config).train()
    return layer, generate(DELAYED, 256, torch.Generator().manual_seed(99))


def test_counterfactual_gate_writes_the_delayed_cue(counterfactual_delayed) -> None:
    layer, test = counterfactual_delayed
    with torch.no_grad():
        out = layer.forward_sequence(test.features, test.base_actions)
    correct = out.actions[:, :, 0].argmax(-1) == test.targets
    assert float(correct[test.query_mask].float().mean()) >= 0.8  # chance: 1/8
    assert float(out.writes[test.event_mask].mean()) >= 0.8  # it writes the events...
    assert float(out.writes.sum(1).mean()) <= 1.5 * DELAYED.n_events  # ...and little else


def test_truncated_horizon_picks_the_writes_the_exact_benefit_picks(counterfactual_delayed):
    layer, test = counterfactual_delayed
    with torch.no_grad():
        greedy = layer.forward_sequence(test.features, test.base_actions).writes
    explore = (torch.rand(greedy.shape, generator=torch.Generator().manual_seed(1)) < 0.1).float()
    schedule = torch.maximum(greedy, explore)
    exact = write_benefits(layer, test, schedule) > 0.05
    h = DELAYED.delay[1] + 1  # covers every event -> query delay
    truncated = write_benefits(layer, test, schedule, horizon=h) > 0.05
    assert float((exact == truncated).float().mean()) >= 0.97
    assert bool(exact[test.event_mask].float().mean() >= 0.8)  # and those are the events


def _copy_batch(n: int, g: torch.Generator, flip: bool = False) -> SequenceBatch:
    """The action is the class shown now (or a fixed permutation of it: a different task)."""
    cls = torch.randint(0, 8, (n, 4), generator=g)
    x = torch.nn.functional.one_hot(cls, 16).float()
    targets = (cls + 3) % 8 if flip else cls
    return SequenceBatch(x, torch.zeros(n, 4, 1, 8), targets, torch.ones(n, 4))


def _copy_layer():
    return init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=8, discrete=True), seed=0)


def test_the_best_checkpoint_is_restored_not_the_last() -> None:
    layer = _copy_layer()
    val = [_copy_batch(64, torch.Generator().manual_seed(7))]

    def source(n: int, g: torch.Generator) -> SequenceBatch:
        # the first 60 batches teach the validation task, the rest another one
        return _copy_batch(n, g, flip=trainer.it_seen >= 60)

    def count(event, trainer_, info):
        if event == "iteration":
            trainer_.it_seen = info["it"] + 1

    config = TrainerConfig(iterations=120, batch_size=32, lr=3e-2, eval_every=20, seed=0)
    trainer = Trainer(layer, source, FixedGate("never"), config, val, [count])
    trainer.it_seen = 0
    res = trainer.train()
    losses = [v["metrics"]["loss"] for v in res.validations]
    best = res.best_val["loss"]
    assert res.improved and res.best_it < 60 and best == min(losses)
    assert losses[-1] > best + 0.5  # training went on to make it worse...
    now = validate(layer, val, "never", None)["loss"]
    assert now == pytest.approx(best, abs=1e-6)  # ...and the best one is what we hold


def test_nothing_better_than_the_start_keeps_the_start_weights() -> None:
    layer = _copy_layer()
    val = [_copy_batch(64, torch.Generator().manual_seed(7))]
    start = {k: v.clone() for k, v in layer.state_dict().items()}
    config = TrainerConfig(iterations=40, batch_size=32, lr=3e-2, eval_every=10, patience=2)
    with pytest.warns(UserWarning, match="did not beat the starting layer"):
        res = Trainer(
            layer, lambda n, g: _copy_batch(n, g, flip=True), FixedGate("never"), config, val
        ).train()
    # validations at 10, 20, 30: the first sets the bar, two more without gain stop the run
    assert not res.improved and res.stopped_early and len(res.history) == 30
    for k, v in layer.state_dict().items():
        assert torch.equal(v, start[k]), k


def test_price_rises_over_budget_and_never_falls_below_its_floor() -> None:
    price = PriceController(budget=0.1, floor=0.05, lr=0.1)
    for _ in range(5):
        price.update(0.3)  # three times the budget
    assert price.price == pytest.approx(0.55)
    for _ in range(20):
        price.update(0.0)
    assert price.price == pytest.approx(0.05)
    assert PriceController(None, 0.05, 0.1).update(1.0) == 0.05  # no budget: the floor


def _copy_batch_with_base(n: int, g: torch.Generator) -> SequenceBatch:
    """The copy task with a memoryless 'backbone' that always says class 0: right on the
    steps whose class is 0, wrong on the others (the steps a memory would have to fix)."""
    batch = _copy_batch(n, g)
    base = torch.zeros(n, 4, 1, 8)
    base[..., 0] = 4.0
    return SequenceBatch(batch.features, base, batch.targets, batch.mask)


def test_memory_accuracy_counts_only_the_steps_the_backbone_gets_wrong() -> None:
    layer = _copy_layer()  # fresh: its residual is zero, it acts exactly as the backbone
    val = [_copy_batch_with_base(256, torch.Generator().manual_seed(3))]
    m = validate(layer, val, "never", None)
    share_zero = float((val[0].targets == 0).float().mean())
    assert m["accuracy"] == pytest.approx(share_zero)  # right exactly where the base is
    assert m["memory_accuracy"] == 0.0  # and never where the base is wrong

    # a layer that overrides the backbone EVERYWHERE (here: always says class 1) is right
    # on the class-1 steps only: every other override counts against it
    biased = _copy_layer()
    with torch.no_grad():
        biased.head.out.bias.copy_(torch.tensor([0.0, 9.0, 0, 0, 0, 0, 0, 0]))
    mb = validate(biased, val, "never", None)
    share_one = float((val[0].targets == 1).float().mean())
    assert mb["memory_accuracy"] == pytest.approx(share_one)

    config = TrainerConfig(
        iterations=80, batch_size=32, lr=3e-2, eval_every=20, criterion="memory_accuracy"
    )
    source = lambda n, g: _copy_batch_with_base(n, g)  # noqa: E731
    res = Trainer(layer, source, FixedGate("never"), config, val).train()
    assert res.improved
    assert res.best_val["memory_accuracy"] > 0.9
    assert res.best_val["criterion"] == pytest.approx(
        1 - res.best_val["memory_accuracy"] + 1e-3 * res.best_val["loss"]
    )


def test_an_unknown_criterion_is_refused() -> None:
    with pytest.raises(ValueError, match="criterion"):
        TrainerConfig(criterion="success")


def test_a_censored_tail_fits_the_gate_only_where_the_whole_window_was_seen() -> None:
    """censor_tail: the gate is not taught "useless" for writes whose payoff lies past the
    end of the training window (a never-reset stream's last episode)."""
    from aura_mem_ros.core.objectives import Context

    layer = init_aura(AuraConfig(d_model=16, chunk_size=1, action_dim=7, discrete=True), seed=2)
    torch.nn.init.normal_(layer.head.out.weight, std=0.5)
    batch = _random_batch(b=3, t=7)  # row 0 has 5 real steps, rows 1-2 have 7

    def gate_loss(horizon: int, censor: bool) -> float:
        objective = CounterfactualGate(
            horizon=horizon, dense_fraction=0.0, explore_rows=0.0, censor_tail=censor
        )
        ctx = Context(0, 10, 0.05, None, torch.Generator().manual_seed(0), warm=False)
        return float(objective.training_pass(layer, batch, ctx)[1])

    assert gate_loss(8, censor=False) > 0
    assert gate_loss(8, censor=True) == 0  # no step has 8 observed steps ahead of it
    assert gate_loss(3, censor=True) > 0
    with pytest.raises(ValueError, match="needs a horizon"):
        CounterfactualGate(censor_tail=True)


def test_memory_accuracy_keeps_a_layer_by_held_out_accuracy_not_loss() -> None:
    """The save rule behind ``improved``: better on the criterion AND not worse on the rest.
    For memory_accuracy "the rest" is the accuracy on every step (what a robot executes): a
    higher held-out loss from a few confident mistakes does not veto it, a lower accuracy
    does. The loss and accuracy criteria keep the loss guard."""
    from aura_mem_ros.core.train import _beats, criterion_of

    def m(memory_accuracy: float, accuracy: float, loss: float) -> dict[str, float]:
        out = {"memory_accuracy": memory_accuracy, "accuracy": accuracy, "loss": loss}
        return out | {"criterion": criterion_of(out, "memory_accuracy")}

    start = m(0.0, 0.825, 0.468)
    assert _beats(m(0.6, 0.960, 0.513), start, "memory_accuracy")  # loss up, accuracy up
    assert not _beats(m(0.6, 0.800, 0.300), start, "memory_accuracy")  # broke other steps
    assert not _beats(m(0.0, 0.900, 0.600), start, "memory_accuracy")  # criterion not beaten
    assert not _beats(None, start, "memory_accuracy")
    acc_start = start | {"criterion": criterion_of(start, "accuracy")}
    worse_loss = m(0.6, 0.960, 0.513)
    worse_loss["criterion"] = criterion_of(worse_loss, "accuracy")
    assert not _beats(worse_loss, acc_start, "accuracy")  # accuracy: the loss guard stays
