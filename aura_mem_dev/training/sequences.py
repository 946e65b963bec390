"""Episodes -> padded sequence batches of frozen-backbone features for memory training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aura_mem_dev.training.rollout import EpisodeRecord
from aura_mem_ros.backbones.mini import MiniPolicyNet, tokenize


@dataclass
class SeqData:
    features: list[torch.Tensor]  # each (T, d_model)
    base: list[torch.Tensor]  # each (T, 1, n_actions)
    targets: list[torch.Tensor]  # each (T,) expert labels (true, look-back expert)
    cue_seen: list[torch.Tensor]  # each (T,) bool

    @classmethod
    def empty(cls) -> SeqData:
        return cls([], [], [], [])

    def __len__(self) -> int:
        return len(self.targets)

    def add(self, net: MiniPolicyNet, episodes: list[EpisodeRecord]) -> None:
        tokens = None
        with torch.no_grad():
            for ep in episodes:
                if not ep.images:
                    continue
                images = torch.from_numpy(np.stack(ep.images))
                if tokens is None:
                    tokens = torch.tensor(
                        [tokenize("go to the matching object at the end of the hallway", net.cfg)]
                    )
                feats, logits = net(
                    images, tokens.expand(len(images), -1), torch.tensor(ep.directions)
                )
                self.features.append(feats)
                self.base.append(logits[:, None, :])
                self.targets.append(torch.tensor(ep.label_true))
                self.cue_seen.append(torch.tensor(ep.cue_seen))

    def oracle_writes(self, idx: list[int], t_max: int) -> torch.Tensor:
        """(B, T) 0/1: the oracle schedule, one write at the first view that shows the cue."""
        writes = torch.zeros(len(idx), t_max)
        for j, i in enumerate(idx):
            seen = self.cue_seen[i][:t_max]
            if bool(seen.any()):
                writes[j, int(seen.float().argmax())] = 1.0
        return writes

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        """-> features (B,T,D), base (B,T,1,n), targets (B,T), mask (B,T) float."""
        t_max = max(len(self.targets[i]) for i in idx)
        b = len(idx)
        d = self.features[idx[0]].shape[-1]
        n = self.base[idx[0]].shape[-1]
        feats = torch.zeros(b, t_max, d)
        base = torch.zeros(b, t_max, 1, n)
        targets = torch.zeros(b, t_max, dtype=torch.long)
        mask = torch.zeros(b, t_max)
        for j, i in enumerate(idx):
            t = len(self.targets[i])
            feats[j, :t] = self.features[i]
            base[j, :t] = self.base[i]
            targets[j, :t] = self.targets[i]
            mask[j, :t] = 1.0
        return feats, base, targets, mask
