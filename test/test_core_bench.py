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
    # --update reruns one method and keeps every other entry of the file
    args = ["synthetic", "--config", "easy", "--seeds", "1", "--quick", "--out", str(out)]
    assert bench([*args, "--methods", "kv_cache", "--update", "--no-progress"]) == 0
    again = json.loads(out.read_text())
    assert set(again["methods"]) == NAMES and again["command"] == result["command"]
    assert again["methods"]["aura"] == m["aura"] and again["checks"] == result["checks"]
    assert len(again["updates"]) == 1 and "--methods kv_cache" in again["updates"][0]
    assert bench([*args[:4], "2", *args[5:], "--methods", "gru", "--update"]) == 2


def test_stream_task_reassigns_keys_lures_and_newest_wins() -> None:
    from aura_mem_dev.bench.synthetic_task import (
        ASSIGN,
        CONTENT_DIMS,
        KEY_CONTENT,
        LURE,
        STREAM,
        generate_stream,
    )

    b = generate_stream(STREAM, 8, torch.Generator().manual_seed(3), length=2_000)
    masks = (b.event_mask, b.lure_mask, b.query_mask, b.distractor_mask)
    for i, a in enumerate(masks):  # one kind per step
        for c in masks[i + 1 :]:
            assert not (a & c).any()
    rates = (STREAM.assign_rate, STREAM.lure_rate, STREAM.query_rate, STREAM.distractor_rate)
    for mask, rate in zip(masks, rates, strict=True):
        assert abs(mask.float().mean().item() - rate) < 0.01  # stationary: same rate anywhere
    assert (b.base_actions[b.query_mask] == 0).all()  # memoryless: chance at queries
    # lures look like assignments: same content sizes, only the marker differs
    f = b.features
    for dims in ((0, CONTENT_DIMS), KEY_CONTENT):
        ev = f[b.event_mask][:, dims[0] : dims[1]].norm(dim=-1).mean()
        lu = f[b.lure_mask][:, dims[0] : dims[1]].norm(dim=-1).mean()
        assert abs(ev - lu) < 0.05
    assert (f[b.lure_mask][:, ASSIGN].abs() < 0.6).all() and (f[b.lure_mask][:, LURE] > 0.6).all()

    # Replay what an oracle memory holds: the newest assignment of each key wins.
    keys_at = {}
    for row in range(b.features.shape[0]):
        current: dict[int, list[int]] = {}
        for t in range(b.features.shape[1]):
            if b.event_mask[row, t]:
                x = b.features[row, t]
                key = int((x[KEY_CONTENT[0] : KEY_CONTENT[1]] @ _keys().T).argmax())
                current.setdefault(key, []).append(int((x[:CONTENT_DIMS] @ _classes().T).argmax()))
            elif b.query_mask[row, t]:
                x = b.features[row, t]
                key = int((x[KEY_CONTENT[0] : KEY_CONTENT[1]] @ _keys().T).argmax())
                history = current[key]
                assert b.targets[row, t] == history[-1]  # newest wins
                if len(history) > 1:
                    assert history[-1] != history[-2]  # a re-assignment changes the value
                keys_at[(row, t)] = history
                assert bool(b.reassigned_query_mask[row, t]) is (len(history) > 1)
    stale = [h for h in keys_at.values() if len(h) > 1 and h[0] != h[-1]]
    assert len(stale) > 0.5 * len(keys_at)  # the first value is usually wrong by query time
    assert b.lured_query_mask.any() and b.reassigned_query_mask.any()


def _keys() -> torch.Tensor:
    from aura_mem_dev.bench.synthetic_task import STREAM, key_codes

    return key_codes(STREAM.n_keys)


def _classes() -> torch.Tensor:
    from aura_mem_dev.bench.synthetic_task import class_embeddings

    return class_embeddings(8)


def test_stream_evaluation_scores_each_kind_of_query_and_steps_the_kv_cache() -> None:
    import dataclasses

    from aura_mem_dev.bench.synthetic import _model, evaluate_stream
    from aura_mem_dev.bench.synthetic_task import STREAM, generate_stream
    from aura_mem_ros.core.train import evaluate

    task = dataclasses.replace(STREAM, train_len=96)
    batch = generate_stream(task, 6, torch.Generator().manual_seed(5))
    kv = _model("kv_cache", task, 0)
    with torch.no_grad():  # a non-zero head, so the read decides the action
        for p in kv.head.out.parameters():
            p.normal_()
    ev = evaluate_stream(kv, batch, "always", None, 0)
    # step by step (what 10,000-step runs need) == the whole-sequence attention
    full = evaluate(kv, batch, gate="always", score_mask=batch.query_mask)
    assert ev["accuracy"] == pytest.approx(full["accuracy"])
    assert ev["writes_per_seq"] == 96 and ev["write_rate"] == 1.0
    oracle = evaluate_stream(_model("oracle", task, 0), batch, "oracle", None, 0)
    assert oracle["writes_per_seq"] == pytest.approx(float(batch.event_mask.sum(1).float().mean()))
    aura = evaluate_stream(_model("aura", task, 0), batch, "learned", None, 0)
    assert {"write_rate_events", "write_rate_lures", "accuracy_reassigned"} <= set(aura)
    assert 0.0 <= aura["accuracy_after_lure"] <= 1.0
