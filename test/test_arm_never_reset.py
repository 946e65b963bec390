"""The arm's never-reset layer (issue 15): ``aura_mem_dev.arm.train --only-never-reset``.

A smoke-test size run on the shipped ``arm_mini`` backbone checks that the layer lands where
``reset_policy: never`` + ``aura_checkpoint: bundled`` looks, with the never-reset wiring,
that its record shows both closed-loop modes and a never-reset DAgger round, and that the
training rows are streams of episodes (no simulator state in them). Whether the layer is
GOOD is the benchmark's question (``never_reset_probe``, ``bench --never-reset``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aura_mem_ros.backbones.arm_mini import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.slow  # ~10 s: a few closed-loop episodes in MuJoCo


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aura_mem_dev.arm.train import main

    out = tmp_path_factory.mktemp("arm_nr") / "arm_mini"
    shutil.copytree(DEFAULT_MODEL_DIR, out, ignore=shutil.ignore_patterns("aura_never_reset"))
    assert main(["--out", str(out), "--quick", "--only-never-reset"]) == 0
    return out


def test_only_never_reset_writes_the_layer_reset_policy_never_serves(trained: Path) -> None:
    from aura_mem_dev.arm.bench import never_reset_layer
    from aura_mem_ros.backbones.arm_mini import ArmMiniBackbone
    from aura_mem_ros.core.checkpoint import load_aura

    backbone = ArmMiniBackbone(trained)
    served = backbone.bundled_aura_checkpoint(never_reset=True)
    assert served == str(trained / "aura_never_reset")
    assert backbone.bundled_aura_checkpoint() == str(trained / "aura")  # untouched
    assert never_reset_layer(trained) == "aura_never_reset"
    layer = load_aura(served)
    c = layer.config
    assert c.head_reads in ("last", "read_and_last") and c.act_before_write
    assert c.forget_init is not None and 0.0 < float(layer.forget) < 1.0
    report = json.loads((trained / "never_reset_train_report.json").read_text())
    assert report["dagger"] and report["dagger"][0]["round"] == 0
    metrics = report["start_validation"]
    assert metrics["selector_score"] == min(
        metrics["selector_reset_success"], metrics["selector_never_success"]
    )


def test_warm_start_copies_the_per_episode_layer_and_leaves_m_unread() -> None:
    from aura_mem_dev.arm.never_reset import new_layer, quick_config, warm_start
    from aura_mem_ros.core.checkpoint import load_aura

    source = load_aura(DEFAULT_MODEL_DIR / "aura")
    layer = warm_start(new_layer(source.config.d_model, quick_config()), DEFAULT_MODEL_DIR / "aura")
    assert layer.config.threshold == source.config.threshold
    assert torch.equal(layer.key.weight, source.key.weight)
    copied = source.head.inp.weight.shape[1]  # x and r; "last" would read m alone
    if layer.config.head_reads == "last":
        copied = source.config.d_model
    assert torch.equal(layer.head.inp.weight[:, :copied], source.head.inp.weight[:, :copied])
    assert not layer.head.inp.weight[:, copied:].any()  # m's columns start at zero
    # from an empty memory the two layers act alike (m = 0, r = 0)
    x, base = torch.randn(1, source.config.d_model), torch.zeros(1, 8, 7)
    with torch.no_grad():
        a = layer.step(x, base, layer.init_state(1), write=torch.zeros(1)).action
        b = source.step(x, base, source.init_state(1), write=torch.zeros(1)).action
    assert torch.allclose(a, b)


def test_warm_start_into_a_layer_reading_r_keeps_how_the_source_reads_memory() -> None:
    import dataclasses

    from aura_mem_dev.arm.never_reset import new_layer, quick_config, warm_start
    from aura_mem_ros.core.checkpoint import load_aura

    source = load_aura(DEFAULT_MODEL_DIR / "aura")
    cfg = dataclasses.replace(
        quick_config(), head_reads="read", forget_init=None, forget_by_key=False
    )
    layer = warm_start(new_layer(source.config.d_model, cfg), DEFAULT_MODEL_DIR / "aura")
    assert torch.equal(layer.head.inp.weight, source.head.inp.weight)  # x and r columns
    # one write, then a read: the two layers hold the same W and act alike on it
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(1, source.config.d_model, generator=gen) for _ in range(2))
    base = torch.zeros(1, 8, 7)
    with torch.no_grad():
        wrote = [
            m.step(x1, base, m.init_state(1), write=torch.ones(1)).state for m in (layer, source)
        ]
        assert torch.allclose(wrote[0].W, wrote[1].W) and wrote[0].W.abs().sum() > 0
        a = layer.step(x2, base, wrote[0], write=torch.zeros(1)).action
        b = source.step(x2, base, wrote[1], write=torch.zeros(1)).action
    assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, base)


def test_stream_rows_carry_memory_across_episodes() -> None:
    from aura_mem_dev.arm.never_reset import ArmNeverResetConfig, stream_source
    from aura_mem_dev.arm.sequences import ArmSequences

    lengths = (5, 7, 9)
    seqs = ArmSequences(
        features=[torch.full((n, 4), float(i)) for i, n in enumerate(lengths)],
        base=[torch.zeros(n, 8, 7) for n in lengths],
        labels=[torch.zeros(n, 8, 7) for n in lengths],
        cue_pads=[0, 1, 2],
    )
    cfg = ArmNeverResetConfig(stream_len=(2, 3), max_stream_steps=20)
    batch = stream_source(seqs, cfg)(16, torch.Generator().manual_seed(0))
    steps = batch.mask.sum(1)
    assert batch.features.shape[1] <= 20 and steps.min() >= 10  # >= 2 episodes, cut at 20
    assert batch.writes is None  # no write schedule reaches training
    row = batch.features[int(steps.argmax()), :, 0]
    assert len(set(row[: int(steps.max())].tolist())) >= 2  # a row spans episodes


@pytest.mark.parametrize("by_key", [True, False])
def test_freeze_keeps_alpha_and_the_memoryless_path(by_key: bool) -> None:
    import dataclasses

    from aura_mem_dev.arm.never_reset import freeze, new_layer, quick_config, warm_start

    cfg = dataclasses.replace(quick_config(), forget_by_key=by_key)
    layer = warm_start(new_layer(192, cfg), DEFAULT_MODEL_DIR / "aura")
    freeze(layer, cfg)
    x, base = torch.randn(2, 5, 192), torch.zeros(2, 5, 8, 7)
    out = layer.forward_sequence(x, base, writes=torch.ones(2, 5))
    out.actions.abs().sum().backward()
    grad = layer.head.inp.weight.grad
    assert not grad[:, :192].any() and grad[:, 192:].abs().sum() > 0  # only memory columns
    assert layer.key.weight.grad is not None
    if by_key:  # a per-key α is what never-reset training learns: it trains
        assert layer.forget_key.weight.grad is not None
    else:  # one α for every write stays where it started
        assert layer.forget_logit.grad is None
