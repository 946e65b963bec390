"""FusedStep: ``AuraLayer.step`` for one observation at inference, compiled into one kernel.

The reference step (``aura.py``) is written for training: batched, differentiable, with the
straight-through gradient. At batch 1 it issues ~275 torch operator calls, each a few
microseconds of dispatch on 32- to 128-wide vectors, so a step took ~600 us where its
arithmetic needs ~70. The same step as numpy still paid ~100 us for ~40 small calls. Here
it is one numba-compiled function, on one thread, releasing the GIL:

    y          = x [K; V; Q; head_x; gate_x]ᵀ + b   every projection of x in ONE pass
    k̂, q̂, v    = unit(y_K), unit(y_Q), y_V
    r, e       = Wᵀq̂,  v - Wᵀk̂
    r⁺         = (1 - α) r + β (k̂·q̂) e             α = 0 unless the layer forgets (or σ(w·k̂ + b))
    a_keep     = head_out(gelu(head_x + head_r r))      [r, m] / [r⁺, v], or m / v: head_reads
                 [+ bil_out(bil_x ⊙ bil_r r)]            head_bilinear > 0 (bil_x is in y)
    a_write    = the same with r⁺
    p          = σ(8 tanh(gate_out(gelu(gate_x + gate_r [r, log1p|e|, log1p Δa])) / 8) - offset)
    g          = p > threshold (learned) | 1 (always) | 0 (never)
    W, m       ← (1 - gα) W + g β k̂ eᵀ,  v if g   in place; untouched when g = 0
    action     = base + (a_write if g else a_keep)   a_keep always with act_before_write

The weights are copied out of the layer and rearranged once, and copied again whenever a
parameter or buffer of the layer changes (its version counter or storage), so training the
layer between steps is safe. Only gates that need nothing but the layer are fused (learned,
always, never); the heuristic and schedule baselines keep the reference path.
``test/test_core_fused.py`` checks both paths make the same writes and actions.

Importing this module loads numba and LLVM: with the kernel, ~130 MB of resident memory
(measured by ``make bench-perf``), so ``runtime.py`` imports it only for a fused runtime.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the universal torch idiom

from aura_mem_ros.core.aura import GATE_LOGIT_BOUND, AuraLayer
from aura_mem_ros.core.config import HEAD_READS
from aura_mem_ros.core.gates import FUSED_GATES

_GATE_MODE = {"learned": 0, "always": 1, "never": 2}
_UNIT_EPS = 1e-6  # memory.unit's eps, so both paths normalise identically


class FusedWeights(NamedTuple):
    """The layer's weights rearranged for the kernel (float32, C-contiguous)."""

    x_weight_t: np.ndarray  # (d_model, rows): all projections of x, so x @ W is row-major
    x_bias: np.ndarray  # (rows,)
    split: np.ndarray  # (4,) row offsets: key | value | query | head_x | gate_x
    head_r_t: np.ndarray  # (head_mem_width, head_hidden)
    head_out_t: np.ndarray  # (head_hidden, chunk * action_dim)
    head_out_b: np.ndarray  # (chunk * action_dim,): out's bias + bil_out's
    bil_r_t: np.ndarray  # (head_mem_width, head_bilinear); head_bilinear may be 0
    bil_out_t: np.ndarray  # (head_bilinear, chunk * action_dim)
    gate_mem_t: np.ndarray  # (d_val + 2, gate_hidden): the [r, log1p|e|, log1p Δa] part
    gate_out_w: np.ndarray  # (gate_hidden,)
    scalars: np.ndarray  # (8,) float64: gate_out bias, β, gate offset, act_before_write,
    #                      head_reads (0 read, 1 read_and_last, 2 last), α (0: no forgetting),
    #                      forget_by_key (0/1), its bias b
    forget_key_w: np.ndarray  # (d_key,): w of α = σ(w·k̂ + b) (zeros unless forget_by_key)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())


def fuse_weights(layer: AuraLayer) -> FusedWeights:
    c, d = layer.config, layer.config.d_model
    x_parts = [
        (layer.key.weight, torch.zeros(c.d_key)),  # the key projection has no bias
        # the value reads features[value_from:]: zero columns for the rest
        (F.pad(layer.value.weight, (c.value_from, 0)), layer.value.bias),
        (layer.query.weight, layer.query.bias),
        (layer.head.inp.weight[:, :d], layer.head.inp.bias),
        *([(layer.head.bil_x.weight, layer.head.bil_x.bias)] if c.head_bilinear else []),
        (layer.gate_in.weight[:, :d], layer.gate_in.bias),
    ]
    n_out = layer.head.out.out_features
    with torch.no_grad():
        weight = torch.cat([w.detach().cpu() for w, _ in x_parts], 0)
        bias = torch.cat([b.detach().cpu() for _, b in x_parts], 0)
        scalars = [
            float(layer.gate_out.bias[0]),
            float(layer.beta),
            float(layer.gate_offset),
            float(c.act_before_write),
            float(HEAD_READS.index(c.head_reads)),
            0.0 if layer.forget is None else float(layer.forget),
            float(c.forget_by_key),
            float(layer.forget_key.bias[0]) if c.forget_by_key else 0.0,
        ]
        forget_key_w = layer.forget_key.weight[0] if c.forget_by_key else torch.zeros(c.d_key)
        return FusedWeights(
            x_weight_t=_numpy(weight.t()),
            x_bias=_numpy(bias),
            # key | value | query | head_x (+ bil_x: one block) | gate_x
            split=np.cumsum([c.d_key, c.d_val, c.d_key, c.head_hidden + c.head_bilinear]),
            head_r_t=_numpy(layer.head.inp.weight[:, d:].t()),
            head_out_t=_numpy(layer.head.out.weight.t()),
            head_out_b=_numpy(
                layer.head.out.bias + (layer.head.bil_out.bias if c.head_bilinear else 0.0)
            ),
            bil_r_t=_numpy(
                layer.head.bil_r.weight.t() if c.head_bilinear else torch.zeros(c.head_mem_width, 0)
            ),
            bil_out_t=_numpy(
                layer.head.bil_out.weight.t() if c.head_bilinear else torch.zeros(0, n_out)
            ),
            gate_mem_t=_numpy(layer.gate_in.weight[:, d:].t()),
            gate_out_w=_numpy(layer.gate_out.weight[0]),
            scalars=np.array(scalars, dtype=np.float64),
            forget_key_w=_numpy(forget_key_w),
        )


# -- the kernel: small helpers, each the plain loop of one formula --------------------------
_jit = numba.njit(cache=True, nogil=True)


@_jit
def _vec_mat(v: np.ndarray, m: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """bias + v @ m, row by row so the inner loop runs over contiguous memory."""
    out = bias.copy()
    for i in range(m.shape[0]):
        vi = v[i]
        for j in range(m.shape[1]):
            out[j] += vi * m[i, j]
    return out


@_jit
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(np.sum(v * v)), _UNIT_EPS)


@_jit
def _gelu(u: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as torch's default."""
    out = np.empty_like(u)
    for i in range(u.shape[0]):
        out[i] = 0.5 * u[i] * (1.0 + math.erf(u[i] / math.sqrt(2.0)))
    return out


@_jit
def _head(
    read: np.ndarray,
    hx: np.ndarray,
    head_r_t: np.ndarray,
    head_out_t: np.ndarray,
    head_out_b: np.ndarray,
    bil_r_t: np.ndarray,
    bil_out_t: np.ndarray,
) -> np.ndarray:
    """The residual head on one read: out(gelu(hx + r W)) [+ bil_out(bil_x ⊙ r V)]."""
    hidden = head_r_t.shape[1]
    a = _vec_mat(_gelu(_vec_mat(read, head_r_t, hx[:hidden])), head_out_t, head_out_b)
    if bil_r_t.shape[1] > 0:
        product = hx[hidden:] * _vec_mat(read, bil_r_t, np.zeros(bil_r_t.shape[1], dtype=hx.dtype))
        a = a + _vec_mat(product, bil_out_t, np.zeros(bil_out_t.shape[1], dtype=hx.dtype))
    return a


@_jit
def _fused_step(
    x: np.ndarray,
    base: np.ndarray,
    w_mem: np.ndarray,
    m_mem: np.ndarray,
    fw: tuple,
    mode: int,
    threshold: float,
) -> tuple[np.ndarray, bool, float]:
    (x_weight_t, x_bias, split, head_r_t, head_out_t, head_out_b) = (
        fw[0],
        fw[1],
        fw[2],
        fw[3],
        fw[4],
        fw[5],
    )
    bil_r_t, bil_out_t, gate_mem_t, gate_out_w, s = fw[6], fw[7], fw[8], fw[9], fw[10]
    gate_out_b, beta, gate_offset, forget = s[0], s[1], s[2], s[5]
    y = _vec_mat(x, x_weight_t, x_bias)
    k_hat = _unit(y[: split[0]])
    v = y[split[0] : split[1]]
    q_hat = _unit(y[split[1] : split[2]])
    hx, gx = y[split[2] : split[3]], y[split[3] :]
    zero = np.zeros(w_mem.shape[1], dtype=w_mem.dtype)
    r = _vec_mat(q_hat, w_mem, zero)
    e = v - _vec_mat(k_hat, w_mem, zero)
    if s[6] == 1.0:  # forget_by_key: α = σ(w·k̂ + b) for this write
        forget = 1.0 / (1.0 + math.exp(-(np.sum(fw[11] * k_hat) + s[7])))
    r_kept = r if forget == 0.0 else np.float32(1.0 - forget) * r
    r_written = r_kept + np.float32(beta * np.sum(k_hat * q_hat)) * e
    read_keep, read_write = r, r_written
    if s[4] == 1.0:  # the head also reads m, the last value written
        read_keep = np.concatenate((r, m_mem))
        read_write = np.concatenate((r_written, v))
    elif s[4] == 2.0:  # m alone
        read_keep, read_write = m_mem.copy(), v
    a_keep = _head(read_keep, hx, head_r_t, head_out_t, head_out_b, bil_r_t, bil_out_t)
    a_write = _head(read_write, hx, head_r_t, head_out_t, head_out_b, bil_r_t, bil_out_t)
    if mode == 0:
        feats = np.empty(gate_mem_t.shape[0], dtype=w_mem.dtype)
        feats[:-2] = r
        feats[-2] = math.log1p(math.sqrt(np.sum(e * e)))
        feats[-1] = math.log1p(np.mean(np.abs(a_write - a_keep)))
        hidden = _gelu(_vec_mat(feats, gate_mem_t, gx))
        raw = np.sum(hidden * gate_out_w) + gate_out_b
        z = GATE_LOGIT_BOUND * math.tanh(raw / GATE_LOGIT_BOUND) - gate_offset
        prob = 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0
        wrote = prob > threshold
    else:
        wrote = mode == 1
        prob = 1.0 if wrote else 0.0
    if wrote:
        if forget != 0.0:
            w_mem *= np.float32(1.0 - forget)
        for i in range(w_mem.shape[0]):
            step = np.float32(beta * k_hat[i])
            for j in range(w_mem.shape[1]):
                w_mem[i, j] += step * e[j]
        m_mem[:] = v
    action = base.ravel() + (a_write if wrote and s[3] == 0.0 else a_keep)
    return action.reshape(base.shape), wrote, prob


class FusedStep:
    """Evaluates ``layer``'s step for batch 1 on numpy arrays, updating a memory in place."""

    def __init__(self, layer: AuraLayer, gate: str = "learned"):
        if gate not in FUSED_GATES:
            raise ValueError(f"gate {gate!r} is not fused; fused gates: {FUSED_GATES}")
        self.layer = layer
        self.gate = gate
        self._mode = _GATE_MODE[gate]
        self._tensors = [*layer.parameters(), *layer.buffers()]
        self._key: tuple[tuple[int, int], ...] = ()
        self.weights = self.refresh()
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) now, not on a robot's first control step:
        compiling takes seconds once per machine, loading the cache ~0.4 s per process."""
        c = self.layer.config
        self(
            np.zeros(c.d_model, np.float32),
            np.zeros((c.chunk_size, c.action_dim), np.float32),
            np.zeros((c.d_key, c.d_val), np.float32),
            np.zeros(c.d_val, np.float32),
            1.0,
        )

    def _version_key(self) -> tuple[tuple[int, int], ...]:
        return tuple((t._version, t.data_ptr()) for t in self._tensors)

    def refresh(self) -> FusedWeights:
        """Re-copy the layer's weights if a parameter or buffer changed since the last copy."""
        key = self._version_key()
        if key != self._key:
            self.weights = fuse_weights(self.layer)
            self._key = key
        return self.weights

    def __call__(
        self,
        x: np.ndarray,
        base_action: np.ndarray,
        w_mem: np.ndarray,
        m_mem: np.ndarray,
        threshold: float,
    ) -> tuple[np.ndarray, bool, float]:
        """x (d_model,), base_action (chunk, dim) float32 -> (action, wrote, write probability).

        w_mem (d_key, d_val) and m_mem (d_val,) are the memory: written in place on a write,
        untouched (bit-identical) otherwise.
        """
        action, wrote, prob = _fused_step(
            x, base_action, w_mem, m_mem, tuple(self.refresh()), self._mode, float(threshold)
        )
        return action, bool(wrote), float(prob)
