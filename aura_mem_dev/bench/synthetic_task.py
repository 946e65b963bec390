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


# --------------------------------------------------------------------------------------------
# The `stream` config: one long run in which the value behind a key is re-assigned.
#
# Layout of an observation (d_model 48): value content [0, 16) (a class embedding), key
# content [16, 24) (a key code), markers ASSIGN, LURE, STREAM_DISTRACTOR, STREAM_QUERY, noise
# from STREAM_NOISE_FROM on. Each step is, independently, with the config's probabilities:
#
#   ASSIGN      key k := a value different from k's current one (the observation shows both)
#   LURE        looks like an assignment (a key and a value of the same size) but carries the
#               lure marker instead of the assign marker: it assigns nothing
#   QUERY       a key whose latest assignment is >= min_delay steps old, and the query flag;
#               the correct action is that key's CURRENT (newest) value, the base logits are
#               flat (a memoryless policy is at chance)
#   DISTRACTOR  salient noise as in the segment configs
#   background  small noise; the base policy's confident action is already right
#
# The statistics do not depend on the position, so a memory trained on short windows can be
# evaluated on 10,000-step runs of the same process. The oracle writes exactly the ASSIGN
# steps; a memory that writes lures, or cannot overwrite, answers with a stale or lured value.
# --------------------------------------------------------------------------------------------

KEY_CONTENT = (16, 24)
ASSIGN, LURE, STREAM_DISTRACTOR, STREAM_QUERY = 24, 25, 26, 27
STREAM_NOISE_FROM = 28
_KIND_ASSIGN, _KIND_LURE, _KIND_QUERY, _KIND_DISTRACTOR, _KIND_BACKGROUND = range(5)


@dataclass(frozen=True)
class StreamConfig:
    name: str
    train_len: int  # training windows (steps)
    eval_len: int  # test runs (steps)
    n_keys: int
    assign_rate: float  # per-step probabilities of each kind of step
    lure_rate: float
    query_rate: float
    distractor_rate: float
    min_delay: int = 2  # a query comes >= this many steps after its key's latest assignment
    n_classes: int = 8
    d_model: int = 48
    noise: float = 0.1
    distractor_scale: float = 2.5
    base_logit: float = 4.0
    iterations: int = 200
    batch_size: int = 32
    eval_sequences: int = 32

    def __post_init__(self) -> None:
        if self.d_model <= STREAM_NOISE_FROM or self.n_classes > CONTENT_DIMS:
            raise ValueError("the stream task needs d_model > 28 and at most 16 classes")
        if not 1 <= self.n_keys <= KEY_CONTENT[1] - KEY_CONTENT[0]:
            raise ValueError("the stream task has room for 1..8 keys")
        rates = (self.assign_rate, self.lure_rate, self.query_rate, self.distractor_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"step rates {rates} must be >= 0 and sum to <= 1")

    @property
    def seq_len(self) -> int:
        """Training sequence length (what ``SyntheticConfig.seq_len`` is for the others)."""
        return self.train_len

    @property
    def oracle_write_rate(self) -> float:
        return self.assign_rate

    @property
    def oracle_writes_per_eval_seq(self) -> float:
        return self.assign_rate * self.eval_len


@dataclass
class StreamBatch(SyntheticBatch):
    lure_mask: Tensor | None = None  # (B, T) bool
    # query steps whose key has been assigned more than once (a stale value exists)
    reassigned_query_mask: Tensor | None = None
    # query steps whose key was lured since its latest assignment
    lured_query_mask: Tensor | None = None


def key_codes(n_keys: int) -> Tensor:
    """Fixed orthonormal key codes (8-d), the same for every seed."""
    width = KEY_CONTENT[1] - KEY_CONTENT[0]
    g = torch.Generator().manual_seed(4321)
    q, _ = torch.linalg.qr(torch.randn(width, width, generator=g))
    return q[:n_keys]


def generate_stream(
    cfg: StreamConfig, batch: int, generator: torch.Generator, length: int | None = None
) -> StreamBatch:
    """``batch`` independent runs of ``length`` steps (default: the training window)."""
    steps = cfg.train_len if length is None else length
    g = generator
    n_cls, n_keys = cfg.n_classes, cfg.n_keys
    emb, codes = class_embeddings(n_cls), key_codes(n_keys)
    x = cfg.noise * torch.randn(batch, steps, cfg.d_model, generator=g)
    nav = torch.randint(0, n_cls, (batch, steps), generator=g)
    targets = nav.clone()
    base = torch.zeros(batch, steps, 1, n_cls)
    base[:, :, 0].scatter_(-1, nav[..., None], cfg.base_logit)

    cuts = torch.tensor([cfg.assign_rate, cfg.lure_rate, cfg.query_rate, cfg.distractor_rate])
    kind = torch.bucketize(torch.rand(batch, steps, generator=g), cuts.cumsum(0), right=True)
    key_draw = torch.randint(0, n_keys, (batch, steps), generator=g)
    other_value = torch.randint(1, n_cls, (batch, steps), generator=g)  # offset from current
    any_value = torch.randint(0, n_cls, (batch, steps), generator=g)
    query_pick = torch.rand(batch, steps, n_keys, generator=g)

    value = torch.full((batch, n_keys), -1)  # current value per key (-1: never assigned)
    last = torch.full((batch, n_keys), -(10**9))  # step of the latest assignment
    assigned = torch.zeros(batch, n_keys, dtype=torch.long)
    lured = torch.zeros(batch, n_keys, dtype=torch.bool)
    masks = {k: torch.zeros(batch, steps, dtype=torch.bool) for k in range(6)}
    event, lure, query, distract, reassigned, lured_q = (masks[k] for k in range(6))
    rows = torch.arange(batch)
    for t in range(steps):
        kt = kind[:, t]
        # assignments: a new value for the drawn key (never its current one)
        r = rows[kt == _KIND_ASSIGN]
        if len(r):
            k = key_draw[r, t]
            cur = value[r, k]
            v = torch.where(cur >= 0, (cur + other_value[r, t]) % n_cls, any_value[r, t])
            x[r, t, :CONTENT_DIMS] += emb[v]
            x[r, t, KEY_CONTENT[0] : KEY_CONTENT[1]] += codes[k]
            x[r, t, ASSIGN] += 1.0
            value[r, k], last[r, k] = v, t
            assigned[r, k] += 1
            lured[r, k] = False
            event[r, t] = True
        # lures: the same look with the lure marker; nothing changes
        r = rows[kt == _KIND_LURE]
        if len(r):
            k = key_draw[r, t]
            x[r, t, :CONTENT_DIMS] += emb[any_value[r, t]]
            x[r, t, KEY_CONTENT[0] : KEY_CONTENT[1]] += codes[k]
            x[r, t, LURE] += 1.0
            lured[r, k] = True
            lure[r, t] = True
        # queries: a key assigned long enough ago (none yet: the step stays background)
        eligible = (value >= 0) & (t - last >= cfg.min_delay)
        r = rows[(kt == _KIND_QUERY) & eligible.any(1)]
        if len(r):
            k = query_pick[r, t].masked_fill(~eligible[r], -1.0).argmax(1)
            x[r, t, KEY_CONTENT[0] : KEY_CONTENT[1]] += codes[k]
            x[r, t, STREAM_QUERY] += 1.0
            targets[r, t] = value[r, k]
            base[r, t] = 0.0
            query[r, t] = True
            reassigned[r, t] = assigned[r, k] > 1
            lured_q[r, t] = lured[r, k]
    distract |= kind == _KIND_DISTRACTOR
    n, s = int(distract.sum()), cfg.distractor_scale
    x[distract, :CONTENT_DIMS] += s * emb[torch.randint(0, n_cls, (n,), generator=g)]
    x[distract, STREAM_DISTRACTOR] += s
    x[distract, STREAM_NOISE_FROM:] += s * torch.randn(
        n, cfg.d_model - STREAM_NOISE_FROM, generator=g
    )
    return StreamBatch(
        features=x,
        base_actions=base,
        targets=targets,
        writes=event.float(),
        query_mask=query,
        event_mask=event,
        distractor_mask=distract,
        lure_mask=lure,
        reassigned_query_mask=reassigned,
        lured_query_mask=lured_q,
    )


STREAM = StreamConfig(
    "stream",
    train_len=128,
    eval_len=10_000,
    n_keys=3,
    assign_rate=0.04,
    lure_rate=0.04,
    query_rate=0.05,
    distractor_rate=0.15,
)
