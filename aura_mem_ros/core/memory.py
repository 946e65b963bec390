"""The constant-size fast-weight memory: one matrix W (d_key x d_val) and one d_val vector m.

With unit-norm key and query k̂ = k/|k|, q̂ = q/|q| and a hard write decision g ∈ {0, 1}:

    read    r = Wᵀ q̂
    error   e = v - Wᵀ k̂                 the inner prediction error ("surprise")
    write   W ← W + g β k̂ eᵀ             delta rule = one TTT gradient step on ½|Wᵀk̂ - v|²
            m ← v if g else m             m is the last value written

Optionally a write also forgets: W ← (1 - g α) W + g β k̂ eᵀ, α ∈ [0, 1) (a learned weight of
the layer, not state). A delta-rule write replaces content only along its own key; what
earlier writes left along other keys stays for ever, which a never-resetting robot feels as
a residue that grows with the run. Forgetting a fraction α at each WRITE bounds it: after n
more writes an old entry weighs (1 - α)ⁿ. Silent steps forget nothing (the state is
bit-identical), so the memory still keeps a cue for as long as nothing new is written.

That is the whole inference state: (d_key*d_val + d_val) fp32 numbers, 4,224 bytes at
32 x 32 and batch 1, whatever the horizon. With g = 0 the state is bit-identical.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom
from torch import Tensor


class MemoryState(NamedTuple):
    W: Tensor  # (B, d_key, d_val) fast weights
    m: Tensor  # (B, d_val) the last value written (what the gate and the similarity filter
    #            compare a new value against)


def init_state(
    batch: int, d_key: int, d_val: int, device: torch.device | None = None
) -> MemoryState:
    return MemoryState(
        torch.zeros(batch, d_key, d_val, device=device),
        torch.zeros(batch, d_val, device=device),
    )


def unit(x: Tensor, eps: float = 1e-6) -> Tensor:
    return F.normalize(x, dim=-1, eps=eps)


def read(state: MemoryState, q_hat: Tensor) -> Tensor:
    """r = Wᵀ q̂, batched: (B, d_key) -> (B, d_val)."""
    return torch.bmm(q_hat[:, None, :], state.W)[:, 0]


def inner_error(state: MemoryState, k_hat: Tensor, v: Tensor) -> Tensor:
    """e = v - Wᵀ k̂: what W would get wrong about the new (k, v) pair."""
    return v - read(state, k_hat)


def write(
    state: MemoryState,
    k_hat: Tensor,
    error: Tensor,
    v: Tensor,
    beta: Tensor,
    g: Tensor,
    forget: Tensor | None = None,
) -> MemoryState:
    """W ← (1 - g α) W + g β k̂ eᵀ, m ← v where g = 1; g has shape (B,), α = ``forget``
    (None: no forgetting, the plain delta rule).

    The update is arithmetic in g on purpose: during training g carries the straight-through
    gradient, so even where g = 0 the loss learns whether a write *would* have helped. At
    inference (no grad) ``torch.where`` returns the old tensors themselves where g = 0, so a
    silent step is bit-identical even for -0.0 entries or a non-finite candidate update.
    """
    # one fused W + (gβk̂) eᵀ: the full-size (B, d_key, d_val) tensor is touched once
    kept = state.W if forget is None else (1 - g * forget)[:, None, None] * state.W
    w = torch.baddbmm(kept, ((g * beta)[:, None] * k_hat)[:, :, None], error[:, None, :])
    off = g == 0
    if not torch.is_grad_enabled():
        w = torch.where(off[:, None, None], state.W, w)
    # m only feeds detached gate inputs (novelty), so it needs no gradient: select exactly.
    m = torch.where(off[:, None], state.m, v)
    return MemoryState(w, m)


def state_nbytes(state: MemoryState) -> int:
    """Bytes actually held by the state tensors (measured, not computed from the config)."""
    return sum(t.numel() * t.element_size() for t in state)


def state_to_bytes(state: MemoryState) -> bytes:
    """Batch-1 state as little-endian fp32: W row-major, then m. Exactly state_nbytes long."""
    if state.W.shape[0] != 1:
        raise ValueError(f"state_to_bytes serialises batch 1, got batch {state.W.shape[0]}")
    parts = [t.detach().to(torch.float32).cpu().reshape(-1).numpy() for t in state]
    return np.concatenate(parts).astype("<f4", copy=False).tobytes()


def state_from_bytes(data: bytes, d_key: int, d_val: int) -> MemoryState:
    """Inverse of state_to_bytes; ValueError on a wrong size or non-finite values."""
    expected = (d_key * d_val + d_val) * 4
    if len(data) != expected:
        raise ValueError(f"memory state must be {expected} bytes, got {len(data)}")
    flat = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.isfinite(flat).all():
        raise ValueError("memory state holds non-finite values")
    w = torch.from_numpy(flat[: d_key * d_val].copy()).reshape(1, d_key, d_val)
    m = torch.from_numpy(flat[d_key * d_val :].copy()).reshape(1, d_val)
    return MemoryState(w, m)
