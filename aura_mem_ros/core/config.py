"""AuraConfig: the shape of an AURA layer and its gate, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from aura_mem_ros.validation import from_dict, require_positive_ints


class BackboneShape(Protocol):
    """What an AURA layer needs to know about its backbone (every ``Backbone`` has these)."""

    d_model: int
    chunk_size: int
    action_dim: int
    discrete: bool


HEAD_READS = ("read", "read_and_last", "last")


@dataclass(frozen=True)
class AuraConfig:
    """Everything needed to rebuild an AuraLayer (it is saved next to the weights).

    d_model: backbone feature size (4096 for OpenVLA-OFT, small for the CPU default).
    chunk_size, action_dim: the base action's shape; a discrete policy gives logits with
        chunk_size 1 and action_dim = number of actions.
    d_key, d_val: the fast-weight matrix is d_key x d_val (32 x 32 -> 4,224 bytes of state).
    threshold: the learned gate writes when its probability exceeds this (re-tunable at
        inference with ``train.calibrate_threshold``).
    gate_hidden, head_hidden: widths of the gate MLP and the residual action head.
    gate_init_bias: initial gate logit. Positive means training starts writing densely: the
        through-time gradient can only teach the head to use memories that were written, and
        the budget controller then removes the writes that do not pay for themselves.
    beta_init: initial write strength of the delta rule (learned scalar in (0, 1)).
    target_write_rate: the write budget in writes/step (None: no budget controller).
    head_reads: what of the memory the residual head reads: "read" (r = Wᵀq̂), "read_and_last"
        ([r, m]; m is the last value written, already part of the state, so the state size is
        unchanged) or "last" (m only). m is the NEWEST write, which r holds only through key
        overlap: a never-reset layer needs it to tell "cue just stored" from "an older
        episode's cue, then a later write", and r also carries what earlier episodes left.
    act_before_write: the action at a step is computed from the memory BEFORE that step's
        write (the write serves later steps only). A write at the step that makes a decision
        then cannot change that decision: a never-reset layer can mark "cue used" at the fork
        itself. Off: the written memory serves the same step (the layer as first trained).
    head_bilinear: width of a product term in the residual head, out_b((U x) ⊙ (V r)), beside
        its MLP (0: none, the layer as first trained). The decision memory serves is often a
        comparison of what is seen with what was stored (go to the object that matches the
        cue): an XOR of view and memory, which a product term represents in one layer and a
        GELU layer has to assemble from many units. Measured on 50 MiniGrid bag episodes
        (docs/results/retrain.md, 4 training seeds each): S13/S11 mean 0.888/0.890 with 64
        units against 0.878/0.860 without, seed to seed -0.07 to +0.08: small, not shown
        significant. Off by default.
    forget_init: None (a write forgets nothing: the plain delta rule) or the starting value
        of α in (0, 1), the learned fraction of W each write erases (``memory.write``). A
        never-reset layer needs it: without it, what earlier episodes wrote along other keys
        stays in W for ever and grows past anything a training stream shows. A weight, not
        state: the state stays 4,224 bytes.
    forget_by_key: with forget_init set, α depends on what is written: α = σ(w·k̂ + b) per
        write (w starts at zero, b at logit(forget_init), so the layer starts as the scalar
        one). A never-reset layer must erase an earlier episode's cue when the next cue is
        written, yet keep its own cue when a later write in the same episode stores
        something else; one α for every write cannot do both. Two weights (d_key + 1
        numbers), not state. Off by default.
    value_from: the value projection reads only features[value_from:] (0: all of them). A
        backbone may end its features with a part that says WHAT is in view but not where
        (``mini``'s ``seen_objects``, ``Backbone.feature_parts``). A value written from
        position-specific features stores "a ball three tiles ahead", and what that means
        at the fork is learned only for the views the bags paired with each answer; a value
        written from "a ball is in view" means the same from every view. Measured on 50
        MiniGrid bag episodes (docs/results/retrain.md, 4 training seeds): S13/S11 0.97-1.00
        against 0.81-0.94 with the value reading every feature; on held-out starts whose
        cue view the bags showed only with the other answer, 1.00 against 0.00-0.76.
    """

    d_model: int
    chunk_size: int
    action_dim: int
    discrete: bool = False
    d_key: int = 32
    d_val: int = 32
    threshold: float = 0.5
    gate_hidden: int = 64
    head_hidden: int = 128
    gate_init_bias: float = 2.0
    beta_init: float = 0.9
    target_write_rate: float | None = None
    head_reads: str = "read"
    act_before_write: bool = False
    forget_init: float | None = None
    head_bilinear: int = 0
    forget_by_key: bool = False
    value_from: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        sizes = ("d_model", "chunk_size", "action_dim", "d_key", "d_val", "gate_hidden")
        require_positive_ints(self, (*sizes, "head_hidden"))
        if not isinstance(self.head_bilinear, int) or self.head_bilinear < 0:
            raise ValueError(
                f"AuraConfig.head_bilinear must be an int >= 0, got {self.head_bilinear!r}"
            )
        value_from_ok = isinstance(self.value_from, int) and not isinstance(self.value_from, bool)
        if not value_from_ok or not 0 <= self.value_from < self.d_model:
            raise ValueError(
                f"AuraConfig.value_from must be an int in [0, d_model={self.d_model}), "
                f"got {self.value_from!r}"
            )
        if self.head_reads not in HEAD_READS:
            raise ValueError(
                f"AuraConfig.head_reads must be one of {HEAD_READS}, got {self.head_reads!r}"
            )
        for flag in ("discrete", "act_before_write", "forget_by_key"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"AuraConfig.{flag} must be a bool, got {getattr(self, flag)!r}")
        if self.discrete and self.chunk_size != 1:
            raise ValueError(
                "a discrete-action AuraConfig has chunk_size 1 (logits of shape 1 x n)"
            )
        if self.discrete and self.action_dim < 2:
            raise ValueError("a discrete-action AuraConfig needs action_dim >= 2 actions")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"AuraConfig.threshold must lie in [0, 1], got {self.threshold!r}")
        if not 0.0 < float(self.beta_init) < 1.0:
            raise ValueError(f"AuraConfig.beta_init must lie in (0, 1), got {self.beta_init!r}")
        if self.forget_init is not None and not 0.0 < float(self.forget_init) < 1.0:
            raise ValueError(
                f"AuraConfig.forget_init must lie in (0, 1) or be None, got {self.forget_init!r}"
            )
        if self.forget_by_key and self.forget_init is None:
            raise ValueError("AuraConfig.forget_by_key needs forget_init (α's starting value)")
        if self.target_write_rate is not None and not 0.0 < float(self.target_write_rate) <= 1.0:
            raise ValueError(
                f"AuraConfig.target_write_rate must lie in (0, 1] or be None, "
                f"got {self.target_write_rate!r}"
            )

    @property
    def head_mem_width(self) -> int:
        """Width of the memory input of the residual head."""
        return 2 * self.d_val if self.head_reads == "read_and_last" else self.d_val

    @property
    def state_nbytes(self) -> int:
        """Inference state for batch 1: W (d_key x d_val) + one d_val vector, fp32."""
        return (self.d_key * self.d_val + self.d_val) * 4

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuraConfig:
        return from_dict(cls, data)

    @classmethod
    def for_backbone(cls, backbone: BackboneShape, **overrides: Any) -> AuraConfig:
        """The layer that fits ``backbone``'s features and action chunk (the one place a
        config is derived from a backbone); ``overrides`` set the other fields."""
        return cls(
            d_model=backbone.d_model,
            chunk_size=backbone.chunk_size,
            action_dim=backbone.action_dim,
            discrete=backbone.discrete,
            **overrides,
        )
