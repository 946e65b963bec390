"""Arm memory training data: single episodes and never-reset streams (memory carried)."""

from __future__ import annotations

import pytest
import torch

from aura_mem_dev.arm.memory import arm_aura_config
from aura_mem_dev.arm.sequences import ArmSequences
from aura_mem_ros.core.checkpoint import init_aura

D_MODEL = 16


def toy_sequences(lengths: list[int]) -> ArmSequences:
    """Episodes whose every feature row carries the episode's index (to see the order)."""
    seqs = ArmSequences()
    gen = torch.Generator().manual_seed(0)
    for i, n in enumerate(lengths):
        feats = torch.randn(n, D_MODEL, generator=gen)
        feats[:, 0] = float(i)
        seqs.features.append(feats)
        seqs.base.append(torch.randn(n, 8, 7, generator=gen))
        seqs.labels.append(torch.randn(n, 8, 7, generator=gen))
        seqs.cue_pads.append(i % 3)
    return seqs


def episodes_in_row(seqs: ArmSequences, feats: torch.Tensor, mask: torch.Tensor) -> list[int]:
    """Decode a row back into its episodes (in order) from the index in feature 0."""
    ids = feats[mask.bool(), 0].round().long().tolist()
    out: list[int] = []
    t = 0
    while t < len(ids):
        out.append(ids[t])
        t += len(seqs.labels[ids[t]])
    return out


def test_streams_are_whole_episodes_back_to_back_in_the_requested_share() -> None:
    seqs = toy_sequences([3, 5, 4, 6, 2, 7])
    draw = seqs.sampler(64, seed=3, pair_fraction=0.5, stream_len=(2, 3))
    counts = {1: 0, 2: 0, 3: 0}
    for _ in range(4):
        batch = draw(0)
        for j, (feats, mask) in enumerate(zip(batch.features, batch.mask, strict=True)):
            row = episodes_in_row(seqs, feats, mask)
            counts[len(row)] += 1
            # the row is exactly those episodes concatenated: labels and base chunks too
            n = int(mask.sum())
            assert n == sum(len(seqs.labels[i]) for i in row)
            assert torch.equal(batch.targets[j, :n], torch.cat([seqs.labels[i] for i in row]))
            assert torch.equal(batch.base_actions[j, :n], torch.cat([seqs.base[i] for i in row]))
    total = sum(counts.values())
    assert counts[2] > 0 and counts[3] > 0 and 0.3 < (counts[2] + counts[3]) / total < 0.7
    with pytest.raises(ValueError, match="stream_len"):
        seqs.sampler(4, seed=0, stream_len=(1, 2))


def test_stream_rows_carry_the_memory_across_the_episode_boundary() -> None:
    """A stream row = the layer run on episode a, then on episode b FROM a's final memory."""
    seqs = toy_sequences([4, 5])
    layer = init_aura(arm_aura_config(D_MODEL, 0.05), seed=0).eval()
    torch.nn.init.normal_(layer.head.out.weight, std=0.1)  # a head that reads the memory
    stream = seqs.batch([(0, 1)])
    always = torch.ones(1, 9)
    with torch.no_grad():
        whole = layer(stream.features, stream.base_actions, writes=always)
        first = layer(seqs.batch([0]).features, seqs.batch([0]).base_actions, writes=always[:, :4])
        carried = layer(
            seqs.batch([1]).features,
            seqs.batch([1]).base_actions,
            writes=always[:, :5],
            state=first.state,
        )
        fresh = layer(seqs.batch([1]).features, seqs.batch([1]).base_actions, writes=always[:, :5])
    assert torch.allclose(whole.actions[:, 4:], carried.actions, atol=1e-6)
    assert not torch.allclose(whole.actions[:, 4:], fresh.actions, atol=1e-4)
    assert torch.equal(stream.targets[0], torch.cat(seqs.labels))


def test_follow_budget_sets_the_threshold_to_the_write_budget_on_its_batches() -> None:
    from aura_mem_dev.arm.counterfactual import follow_budget
    from aura_mem_ros.core.train import write_rate

    seqs = toy_sequences([6, 5, 7, 4])
    layer = init_aura(arm_aura_config(D_MODEL, 0.2), seed=0)
    torch.nn.init.normal_(layer.gate_out.weight, std=1.0)  # probabilities spread out
    batches = [seqs.sampler(4, seed=1, pair_fraction=0.5)(0)]
    before = write_rate(layer, batches)
    callback = follow_budget(layer, batches, 0.2, every=2)  # sets it at once
    after = write_rate(layer, batches)
    assert before > 0.5 and 0.0 < after <= 0.2
    threshold = layer.config.threshold
    callback("iteration", None, {"it": 0})  # not on the schedule: unchanged
    assert layer.config.threshold == threshold


def test_a_sampler_without_streams_draws_what_it_always_did() -> None:
    """stream_len must not change the batches when there are no streams (the shipped
    weights' refit draws its batches this way; an extra draw changed them)."""
    seqs = toy_sequences([3, 5, 4, 6, 2, 7])
    plain = seqs.sampler(8, seed=5)
    unused = seqs.sampler(8, seed=5, pair_fraction=0.0, stream_len=(2, 3))
    for _ in range(3):
        assert torch.equal(plain(0).features, unused(0).features)
