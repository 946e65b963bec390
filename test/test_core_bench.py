"""The footprint and synthetic subcommands (the synthetic one is the slow smoke test)."""

from __future__ import annotations

import json

import pytest
import torch

from aura_mem_dev.bench.cli import main as bench
from aura_mem_dev.bench.footprint import measure
from aura_mem_dev.bench.synthetic_task import CONFIGS, generate

# Tiny tensor ops: extra threads only contend for the shared CPU (10x slower under load).
torch.set_num_threads(1)

NAMES = {
    "aura", "always_fast_weight", "gru", "kv_cache", "reconstruction",
    "similarity", "random", "periodic", "oracle",
}  # fmt: skip


def test_footprint_is_measured_from_stepped_objects() -> None:
    out = measure(steps=300, d_model=16, kv_read_every=7)
    assert out.aura_state_bytes == out.aura_state_bytes_at_step_1 == 4224
    assert out.aura_serialised_bytes == 4224 and out.aura_writes == 300
    assert out.kv_cache_bytes == 300 * 256
    assert out.ratio == round(300 * 256 / 4224, 1)


def test_synthetic_task_properties() -> None:
    import torch

    cfg = CONFIGS["hard"]
    b = generate(cfg, 64, torch.Generator().manual_seed(0))
    assert (b.event_mask.sum(1) == cfg.n_events).all() and (
        b.query_mask.sum(1) == cfg.n_events
    ).all()
    assert not (b.event_mask & b.query_mask).any() and not (b.distractor_mask & b.event_mask).any()
    # a memoryless reading of the query step: base logits are flat there
    assert (b.base_actions[b.query_mask] == 0).all()
    # the event never decides the action at its own step
    event_steps = b.event_mask.nonzero()
    assert (b.base_actions[event_steps[:, 0], event_steps[:, 1], 0].max(-1).values > 0).all()
    # distractors are salient: far larger than events
    norm = b.features.norm(dim=-1)
    assert norm[b.distractor_mask].mean() > 3 * norm[b.event_mask].mean()


@pytest.mark.slow
def test_synthetic_quick_smoke(tmp_path, capsys) -> None:
    out = tmp_path / "quick.json"
    assert (
        bench(
            [
                "synthetic",
                "--config",
                "easy",
                "--seeds",
                "1",
                "--quick",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["config"] == "easy" and set(result["methods"]) == NAMES
    for entry in result["methods"].values():
        assert {"accuracy_mean", "accuracy_std", "writes_per_seq", "steps_per_seq"} <= set(entry)
    m = result["methods"]
    assert m["oracle"]["accuracy_mean"] > 0.5  # memory of the events solves the task
    assert m["random"]["accuracy_mean"] < 0.5  # a few random writes do not
    assert m["aura"]["writes_per_seq"] < m["always_fast_weight"]["writes_per_seq"] / 4
