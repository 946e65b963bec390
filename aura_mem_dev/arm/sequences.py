"""Recorded arm episodes -> padded sequences of frozen-backbone features for memory training.

One sequence step per chunk request: the backbone's features (its action hidden state),
its base 8 x 7 chunk and the expert's label chunk. Nothing else about the episode (cue pad,
visibility flags) enters a batch: those fields stay for evaluation and probes only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aura_mem_dev.arm.data import ArmRecord
from aura_mem_ros.backbones.arm_mini import ArmPolicyNet
from aura_mem_ros.backbones.mini import tokenize
from aura_mem_ros.core.train import SequenceBatch
from aura_mem_ros.sim.arm.env import INSTRUCTION


@dataclass
class ArmSequences:
    features: list[torch.Tensor] = field(default_factory=list)  # each (T, d_model)
    base: list[torch.Tensor] = field(default_factory=list)  # each (T, 8, 7)
    labels: list[torch.Tensor] = field(default_factory=list)  # each (T, 8, 7)
    cue_pads: list[int] = field(default_factory=list)  # probes / evaluation only

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> ArmSequences:
        """The first ``n`` rows as a new collection (lists copied, tensors shared)."""
        return ArmSequences(self.features[:n], self.base[:n], self.labels[:n], self.cue_pads[:n])

    @torch.no_grad()
    def add(self, net: ArmPolicyNet, records: list[ArmRecord]) -> None:
        tokens = torch.tensor([tokenize(INSTRUCTION, net.cfg)])
        for rec in records:
            images = torch.from_numpy(rec.images)
            feats, chunks = net(
                images, tokens.expand(len(images), -1), torch.from_numpy(rec.proprio)
            )
            self.features.append(feats)
            self.base.append(chunks)
            self.labels.append(torch.from_numpy(rec.labels))
            self.cue_pads.append(rec.cue_pad)

    def batch(self, items: list[int] | list[tuple[int, ...]]) -> SequenceBatch:
        """Padded to the longest row; mask marks real steps.

        An item is one episode index, or a tuple of indices played back to back in one row
        (the memory is not reset in between: how a never-reset robot meets the next task).
        """
        rows = [(i,) if isinstance(i, int) else tuple(i) for i in items]

        def cat(parts: list[torch.Tensor], row: tuple[int, ...]) -> torch.Tensor:
            return torch.cat([parts[i] for i in row])

        t_max = max(sum(len(self.labels[i]) for i in row) for row in rows)
        b = len(rows)
        d = self.features[rows[0][0]].shape[-1]
        chunk = tuple(self.base[rows[0][0]].shape[1:])
        feats = torch.zeros(b, t_max, d)
        base = torch.zeros(b, t_max, *chunk)
        labels = torch.zeros(b, t_max, *chunk)
        mask = torch.zeros(b, t_max)
        for j, row in enumerate(rows):
            t = sum(len(self.labels[i]) for i in row)
            feats[j, :t] = cat(self.features, row)
            base[j, :t] = cat(self.base, row)
            labels[j, :t] = cat(self.labels, row)
            mask[j, :t] = 1.0
        return SequenceBatch(feats, base, labels, mask)

    def sampler(
        self,
        batch_size: int,
        seed: int,
        pair_fraction: float = 0.0,
        stream_len: tuple[int, int] = (2, 2),
    ):
        """A batch source for ``core.train.train_aura``: random sequences, fixed seed.

        ``pair_fraction`` of the rows are streams: ``stream_len`` = (lo, hi) random episodes
        back to back, the memory carried across every boundary (a robot that is never reset),
        so the layer also learns to replace a cue it holds from the previous task. Any
        concatenation is a valid stream: the labels are the expert's, whoever drove.
        """
        lo, hi = stream_len
        if not 2 <= lo <= hi:
            raise ValueError(f"stream_len must be (lo, hi) with 2 <= lo <= hi, got {stream_len}")
        gen = torch.Generator().manual_seed(seed)

        def draw(_: int) -> SequenceBatch:
            first = torch.randint(len(self), (batch_size,), generator=gen).tolist()
            second = torch.randint(len(self), (batch_size,), generator=gen).tolist()
            paired = (torch.rand(batch_size, generator=gen) < pair_fraction).tolist()
            rows = [(a, b) if p else (a,) for a, b, p in zip(first, second, paired, strict=True)]
            # longer streams: more draws (none without streams, so that a sampler without
            # them draws exactly what it always did: the shipped weights' batches)
            if pair_fraction > 0 and hi > 2:
                more = torch.randint(len(self), (batch_size, hi - 2), generator=gen).tolist()
                extra = torch.randint(lo - 2, hi - 1, (batch_size,), generator=gen).tolist()
                rows = [
                    row + tuple(m[:n]) if len(row) == 2 else row
                    for row, m, n in zip(rows, more, extra, strict=True)
                ]
            return self.batch(rows)

        return draw


def cue_probe_accuracy(seqs: ArmSequences, step: int = 0, seed: int = 0) -> float:
    """Diagnostic: can a linear probe read the cue pad from the features at ``step``?

    Uses the recorded cue pad as the probe's label (evaluation only): it tells whether the
    frozen backbone's features carry the cue at all, i.e. whether any memory could work.
    """
    xs = torch.stack([f[step] for f in seqs.features if len(f) > step])
    ys = torch.tensor(
        [p for f, p in zip(seqs.features, seqs.cue_pads, strict=True) if len(f) > step]
    )
    n = len(ys)
    split = int(0.7 * n)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    train, test = perm[:split], perm[split:]
    mean, std = xs[train].mean(0), xs[train].std(0) + 1e-4
    x = (xs - mean) / std
    probe = torch.nn.Linear(xs.shape[1], int(ys.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(probe(x[train]), ys[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((probe(x[test]).argmax(-1) == ys[test]).float().mean())
