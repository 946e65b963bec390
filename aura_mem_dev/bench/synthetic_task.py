"""The controlled synthetic memory task: delayed, sparse, action-relevant events among salient
distractors.

A sequence of ``seq_len`` steps is cut into ``n_events`` segments. Each segment holds:

- one EVENT at a random step: the observation shows one of 8 classes (a fixed embedding)
  with an "event" marker;
- one QUERY ``delay`` steps later (delay drawn from ``delay``): the correct action is the
  class of the segment's event, and the observation says nothing about which one it is;
- salient DISTRACTORS on a ``distractor_rate`` fraction of the other steps: a random class
  embedding at ``distractor_scale`` times the event's size, a "distractor" marker and
  large noise. They change the observation a lot but never the correct action;
- BACKGROUND steps: small noise only.

On every non-query step the frozen base policy already outputs the right action (its logits
point at a random "navigation" action), so the memory must leave those alone; on query steps
the base logits are flat (a memoryless policy is at chance, 1/8). The event changes the
correct action only ``delay`` steps later and never the action at the event itself, so a
one-step action-surprise rule has nothing to see there. The oracle writes exactly the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aura_mem_ros.core.train import SequenceBatch

CONTENT_DIMS = 16
MARKER = (16, 17)  # event marker, distractor marker
QUERY_FLAG = 18
NOISE_FROM = 19


@dataclass(frozen=True)
class SyntheticConfig:
    name: str
    seq_len: int
    n_events: int
    delay: tuple[int, int]  # inclusive range of event -> query delays
    distractor_rate: float
    n_classes: int = 8
    d_model: int = 32
    noise: float = 0.1
    distractor_scale: float = 2.5
    base_logit: float = 4.0  # how sure the base policy is on non-query steps
    iterations: int = 200  # training batches per method
    batch_size: int = 64
    eval_sequences: int = 512

    def __post_init__(self) -> None:
        segment = self.seq_len // self.n_events
        if self.d_model <= NOISE_FROM or self.n_classes > CONTENT_DIMS:
            raise ValueError("the synthetic task needs d_model > 19 and at most 16 classes")
        if not 1 <= self.delay[0] <= self.delay[1] < segment:
            raise ValueError(f"delays {self.delay} must fit a segment of {segment} steps")

    @property
    def oracle_write_rate(self) -> float:
        return self.n_events / self.seq_len


CONFIGS: dict[str, SyntheticConfig] = {
    "easy": SyntheticConfig(
        "easy", seq_len=40, n_events=2, delay=(2, 6), distractor_rate=0.1, iterations=200
    ),
    "medium": SyntheticConfig(
        "medium", seq_len=64, n_events=4, delay=(2, 10), distractor_rate=0.2, iterations=250
    ),
    "hard": SyntheticConfig(
        "hard", seq_len=96, n_events=6, delay=(3, 12), distractor_rate=0.3, iterations=250
    ),
}


@dataclass
class SyntheticBatch(SequenceBatch):
    query_mask: Tensor | None = None  # (B, T) bool: the steps accuracy is measured on
    event_mask: Tensor | None = None  # (B, T) bool: the informative steps (oracle writes)
    distractor_mask: Tensor | None = None  # (B, T) bool


def class_embeddings(n_classes: int) -> Tensor:
    """Fixed orthonormal class codes, the same for every seed (the task, not the sample)."""
    g = torch.Generator().manual_seed(1234)
    q, _ = torch.linalg.qr(torch.randn(CONTENT_DIMS, CONTENT_DIMS, generator=g))
    return q[:n_classes]


def generate(cfg: SyntheticConfig, batch: int, generator: torch.Generator) -> SyntheticBatch:
    steps, segment = cfg.seq_len, cfg.seq_len // cfg.n_events
    g = generator
    emb = class_embeddings(cfg.n_classes)
    x = cfg.noise * torch.randn(batch, steps, cfg.d_model, generator=g)
    nav = torch.randint(0, cfg.n_classes, (batch, steps), generator=g)
    targets = nav.clone()
    base = torch.zeros(batch, steps, 1, cfg.n_classes)
    base[:, :, 0].scatter_(-1, nav[..., None], cfg.base_logit)
    query = torch.zeros(batch, steps, dtype=torch.bool)
    event = torch.zeros(batch, steps, dtype=torch.bool)

    rows = torch.arange(batch)
    for s in range(cfg.n_events):
        delay = torch.randint(cfg.delay[0], cfg.delay[1] + 1, (batch,), generator=g)
        start = torch.randint(0, segment - cfg.delay[1], (batch,), generator=g) + s * segment
        stop = start + delay
        cls = torch.randint(0, cfg.n_classes, (batch,), generator=g)
        x[rows, start, :CONTENT_DIMS] += emb[cls]
        x[rows, start, MARKER[0]] += 1.0
        x[rows, stop, QUERY_FLAG] += 1.0
        event[rows, start] = True
        query[rows, stop] = True
        targets[rows, stop] = cls
        base[rows, stop] = 0.0

    distract = (torch.rand(batch, steps, generator=g) < cfg.distractor_rate) & ~event & ~query
    n = int(distract.sum())
    k = cfg.distractor_scale
    d_cls = torch.randint(0, cfg.n_classes, (n,), generator=g)
    x[distract, :CONTENT_DIMS] += k * emb[d_cls]
    x[distract, MARKER[1]] += k
    x[distract, NOISE_FROM:] += k * torch.randn(n, cfg.d_model - NOISE_FROM, generator=g)

    return SyntheticBatch(
        features=x,
        base_actions=base,
        targets=targets,
        writes=event.float(),
        query_mask=query,
        event_mask=event,
        distractor_mask=distract,
    )
