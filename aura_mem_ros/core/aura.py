"""AuraLayer: a frozen backbone's action plus a residual read from a gated fast-weight memory.

Per step, from backbone features x and base action a_base:

    k̂, v, q̂ = unit(K x), V x[value_from:], unit(Q x)
    r        = Wᵀ q̂                          read before writing
    e        = v - Wᵀ k̂                      inner prediction error ("surprise")
    r⁺       = (1 - α) r + β (k̂·q̂) e         the read if this step were written
    Δa       = |head(x, r⁺) - head(x, r)|     one-step action surprise
    p        = σ(gate(x, r, log1p|e|, log1p Δa))
    g        = [p > threshold]                hard, at training AND inference
    action   = a_base + head(x, r) + g (head(x, r⁺) - head(x, r))
    W, m     ← memory.write(W, m; g)         W ← (1 - gα) W + gβ k̂ eᵀ,  m ← v if g

α is 0 unless ``config.forget_init`` is set (a learned forgetting fraction per write, which
bounds what earlier episodes leave in W when the memory is never reset).

With ``config.act_before_write`` the action is a_base + head(x, r): a write serves only later
steps. With ``config.head_reads`` "read_and_last" the head reads [r, m], with "last" m alone
(m: the last value written, v if this step writes) instead of r: the newest write, which a
never-reset layer needs to tell "this episode's cue is stored" from "an older cue, then an
end-of-episode write".

The head's last layer starts at zero, so an untrained or silent memory returns a_base
exactly. The gate sees the one-step surprise as a feature, but is trained on the action
error of whole sequences (see ``train.py``), which is what lets it store delayed cues.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor, nn

from aura_mem_ros.core import memory
from aura_mem_ros.core.config import AuraConfig
from aura_mem_ros.core.gates import GateInputs, get_gate
from aura_mem_ros.core.memory import MemoryState

GATE_LOGIT_BOUND = 8.0


class StepOutput(NamedTuple):
    action: Tensor  # (B, chunk_size, action_dim)
    write: Tensor  # (B,) 0/1 (float; carries the straight-through gradient in training)
    write_prob: Tensor  # (B,)
    state: object  # the method's state after the step (MemoryState for AuraLayer)


class SequenceOutput(NamedTuple):
    actions: Tensor  # (B, T, chunk_size, action_dim)
    writes: Tensor  # (B, T)
    write_probs: Tensor  # (B, T)
    state: object


class ResidualHead(nn.Module):
    """residual = out(gelu(in([x, r]))) [+ bil_out((bil_x x) ⊙ (bil_r r))] reshaped to
    (chunk, dim); ``out`` and ``bil_out`` start at zero. The product term (``bilinear`` > 0
    units) compares what is seen with what memory holds in one layer."""

    def __init__(
        self,
        d_model: int,
        d_mem: int,
        hidden: int,
        chunk_size: int,
        action_dim: int,
        bilinear: int = 0,
    ):
        super().__init__()
        self.d_model, self.hidden, self.bilinear = d_model, hidden, bilinear
        self.shape = (chunk_size, action_dim)
        self.inp = nn.Linear(d_model + d_mem, hidden)
        self.out = nn.Linear(hidden, chunk_size * action_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if bilinear:
            self.bil_x = nn.Linear(d_model, bilinear)
            self.bil_r = nn.Linear(d_mem, bilinear, bias=False)
            self.bil_out = nn.Linear(bilinear, chunk_size * action_dim)
            nn.init.zeros_(self.bil_out.weight)
            nn.init.zeros_(self.bil_out.bias)

    def project_x(self, x: Tensor) -> Tensor:
        """The x-parts, computed once per sequence rather than per step: (..., hidden
        [+ bilinear])."""
        hx = F.linear(x, self.inp.weight[:, : self.d_model], self.inp.bias)
        return torch.cat([hx, self.bil_x(x)], -1) if self.bilinear else hx

    def from_parts(self, hx: Tensor, r: Tensor) -> Tensor:
        h = F.gelu(hx[..., : self.hidden] + F.linear(r, self.inp.weight[:, self.d_model :]))
        out = self.out(h)
        if self.bilinear:
            out = out + self.bil_out(hx[..., self.hidden :] * self.bil_r(r))
        return out.unflatten(-1, self.shape)

    def forward(self, x: Tensor, r: Tensor) -> Tensor:
        return self.from_parts(self.project_x(x), r)


class AuraLayer(nn.Module):
    def __init__(self, config: AuraConfig):
        super().__init__()
        c = self.config = config
        self.key = nn.Linear(c.d_model, c.d_key, bias=False)
        # the value reads features[value_from:] only (AuraConfig.value_from: what is in view,
        # not where); key, query, head and gate read all of them
        self.value = nn.Linear(c.d_model - c.value_from, c.d_val)
        self.query = nn.Linear(c.d_model, c.d_key)
        self.beta_logit = nn.Parameter(torch.tensor(math.log(c.beta_init / (1 - c.beta_init))))
        if c.forget_by_key:  # α = σ(w·k̂ + b), starting as the scalar α = forget_init
            self.forget_key = nn.Linear(c.d_key, 1)
            nn.init.zeros_(self.forget_key.weight)
            nn.init.constant_(self.forget_key.bias, math.log(c.forget_init / (1 - c.forget_init)))
        elif c.forget_init is not None:  # only then: older checkpoints load unchanged
            self.forget_logit = nn.Parameter(
                torch.tensor(math.log(c.forget_init / (1 - c.forget_init)))
            )
        self.head = ResidualHead(
            c.d_model,
            c.head_mem_width,
            c.head_hidden,
            c.chunk_size,
            c.action_dim,
            c.head_bilinear,
        )
        # gate input = [x, r, log1p|e|, log1p Δa]
        self.gate_in = nn.Linear(c.d_model + c.d_val + 2, c.gate_hidden)
        self.gate_out = nn.Linear(c.gate_hidden, 1)
        nn.init.normal_(self.gate_out.weight, std=0.01)
        nn.init.constant_(self.gate_out.bias, c.gate_init_bias)
        # the write price training settled on (train.py folds its multiplier in here)
        self.register_buffer("gate_offset", torch.zeros(()))

    # -- state -------------------------------------------------------------------------------
    def init_state(self, batch: int = 1) -> MemoryState:
        c = self.config
        return memory.init_state(batch, c.d_key, c.d_val, device=self.value.weight.device)

    @property
    def beta(self) -> Tensor:
        return torch.sigmoid(self.beta_logit)

    @property
    def forget(self) -> Tensor | None:
        """α, the fraction of W a write erases; None for a plain delta-rule layer. With
        ``forget_by_key``: the α of a key orthogonal to w, σ(b) (``forget_at`` is per write)."""
        if self.config.forget_by_key:
            return torch.sigmoid(self.forget_key.bias[0])
        return torch.sigmoid(self.forget_logit) if self.config.forget_init is not None else None

    def forget_at(self, k_hat: Tensor) -> Tensor | None:
        """α of a write under the unit key k̂ (B, d_key): (B,) with ``forget_by_key``, else
        the scalar α (or None: no forgetting)."""
        if self.config.forget_by_key:
            return torch.sigmoid(self.forget_key(k_hat)).squeeze(-1)
        return self.forget

    # -- one step ----------------------------------------------------------------------------
    def _precompute(self, x: Tensor) -> tuple[Tensor, ...]:
        """Everything that depends on x alone; works on (B, D) and on (B, T, D)."""
        gx = F.linear(x, self.gate_in.weight[:, : self.config.d_model], self.gate_in.bias)
        return (
            memory.unit(self.key(x)),
            self.value(x[..., self.config.value_from :]),
            memory.unit(self.query(x)),
            self.head.project_x(x),
            gx,
        )

    def _step(
        self,
        pre: tuple[Tensor, ...],
        base: Tensor,
        state: MemoryState,
        gate: str,
        threshold: float | None,
        write: Tensor | None,
        t: int,
        generator: torch.Generator | None,
        explore: float = 0.0,
    ) -> StepOutput:
        k_hat, v, q_hat, hx, gx = pre
        spec = get_gate(gate)
        beta, forget = self.beta, self.forget_at(k_hat)  # forget: None, () or (B,)
        r = memory.read(state, q_hat)
        e = memory.inner_error(state, k_hat, v)
        # what a write leaves of the read
        r_kept = r if forget is None else (1 - forget.reshape(-1, 1)) * r
        r_written = r_kept + beta * (k_hat * q_hat).sum(-1, keepdim=True) * e
        read_keep, read_write = r, r_written  # what the head reads: (B, head_mem_width)
        if self.config.head_reads == "read_and_last":
            read_keep = torch.cat([r, state.m], -1)
            read_write = torch.cat([r_written, v], -1)  # a write makes v the last value
        elif self.config.head_reads == "last":
            read_keep, read_write = state.m, v
        # both candidate actions in one pass: memory as it is / memory if this step writes
        a_keep, a_write = self.head.from_parts(
            torch.stack([hx, hx]), torch.stack([read_keep, read_write])
        ).unbind(0)
        error_norm = e.detach().norm(dim=-1)
        surprise = (a_write - a_keep).detach().abs().mean(dim=(-2, -1))
        z = p = None
        if spec.learned:
            # The gate's inputs are observations of the memory, not paths for the action
            # loss: its gradient reaches the memory only through its decisions.
            feats = torch.stack([error_norm.log1p(), surprise.log1p()], -1)
            feats = torch.cat([r.detach(), feats], -1)
            w_mem = self.gate_in.weight[:, self.config.d_model :]
            raw = self.gate_out(F.gelu(gx + F.linear(feats, w_mem))).squeeze(-1)
            # bounded logit: the straight-through gradient below does not saturate, so
            # without a bound useful steps' logits grow without limit and no threshold could
            # re-tune the rate any more
            z = GATE_LOGIT_BOUND * torch.tanh(raw / GATE_LOGIT_BOUND) - self.gate_offset
            p = torch.sigmoid(z)

        if write is not None:
            g = write.to(r.dtype)
            prob = g if p is None else p
        else:
            if threshold is None:
                threshold = spec.default_threshold
                threshold = self.config.threshold if threshold is None else threshold
            inputs = GateInputs(
                prob=None if p is None else p.detach(),
                error_norm=error_norm,
                novelty=(v - state.m).detach().norm(dim=-1),
                action_surprise=surprise,
                t=t,
                generator=generator,
            )
            prob, hard = spec.decide(inputs, float(threshold))
            if z is not None and explore > 0:
                # still a hard 0/1 write, but drawn: P(write) = σ((z - logit(threshold)) / T),
                # 1/2 at the threshold; as the temperature T -> 0 this becomes the threshold.
                shift = math.log(max(threshold, 1e-6) / max(1 - threshold, 1e-6))
                explore_p = torch.sigmoid((z.detach() - shift) / explore)
                hard = torch.rand(p.shape, generator=generator, device=p.device) < explore_p
            g = hard.to(r.dtype)
            if z is not None:
                # Straight-through: the forward value is the hard decision (exactly 0 or 1, as
                # at inference); the backward pass hands dL/dg to the gate's logit. Skipping
                # σ'(z) keeps the signal alive where the gate is saturated, so a step it has
                # wrongly shut can re-open when writing there turns out to help.
                g = g + (z - z.detach())  # exactly g in value: (z - z) is 0
        new_state = memory.write(state, k_hat, e, v, beta, g, forget)
        if self.config.act_before_write:
            action = base + a_keep  # this step's write serves later steps only
        else:
            action = base + a_keep + g[:, None, None] * (a_write - a_keep)
        return StepOutput(action, g, prob, new_state)

    def step(
        self,
        x: Tensor,
        base_action: Tensor,
        state: MemoryState,
        write: Tensor | None = None,
        *,
        gate: str = "learned",
        threshold: float | None = None,
        t: int = 0,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x (B, d_model), base_action (B, chunk, dim) -> action, write, write_prob, new state.

        ``write`` (B,) forces the decisions (oracle, tests); ``threshold`` overrides the gate's.
        """
        return self._step(
            self._precompute(x), base_action, state, gate, threshold, write, t, generator
        )

    # -- whole sequences (training / evaluation) ---------------------------------------------
    def forward_sequence(
        self,
        features: Tensor,
        base_actions: Tensor,
        *,
        gate: str = "learned",
        threshold: float | None = None,
        writes: Tensor | None = None,
        generator: torch.Generator | None = None,
        state: MemoryState | None = None,
        explore: float = 0.0,
    ) -> SequenceOutput:
        """features (B, T, d_model), base_actions (B, T, chunk, dim); writes (B, T) forces g.

        explore: a temperature > 0 makes the learned gate draw its hard writes at random
        around the threshold instead of thresholding (training only; see train.py).
        """
        batch, steps = features.shape[:2]
        # unbind once: indexing [:, t] per step would back-propagate a full-size zeros tensor
        # per step (O(T^2) memory traffic).
        pre = list(zip(*(p.unbind(1) for p in self._precompute(features)), strict=True))
        state = self.init_state(batch) if state is None else state
        actions, gs, probs = [], [], []
        for t in range(steps):
            out = self._step(
                pre[t],
                base_actions[:, t],
                state,
                gate,
                threshold,
                None if writes is None else writes[:, t],
                t,
                generator,
                explore,
            )
            state = out.state
            actions.append(out.action)
            gs.append(out.write)
            probs.append(out.write_prob)
        return SequenceOutput(
            torch.stack(actions, 1), torch.stack(gs, 1), torch.stack(probs, 1), state
        )

    forward = forward_sequence
