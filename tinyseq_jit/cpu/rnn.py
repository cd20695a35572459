"""Fused Elman RNN layer-direction: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

``act`` is tanh or relu. A sequence past its length keeps its state and outputs zeros.
"""

import numpy as np

from tinyseq.gates import num_gates

from .._jit import jit
from ._common import (
    add_biases, check_inputs, input_grads, plan_product, product_into, product_scratch, project, tanh_rows,
    weight_grad,
)

_NONLINEARITIES = ("tanh", "relu")


@jit
def _rnn_forward(xp, w_hh_t, relu, h0, lengths, reverse, out, h_prev):
    steps, batch, hidden = out.shape
    h = h0.copy()
    hw = np.empty_like(h)
    parts = product_scratch(batch, w_hh_t)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        product_into(h, w_hh_t, parts, hw)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                continue
            h_t, x, z = out[t, b], xp[t, b], hw[b]
            if relu:
                for j in range(hidden):
                    h_t[j] = max(x[j] + z[j], 0.0)
            else:
                tanh_rows(h_t, x, z)
            h[b] = h_t
    return h


@jit
def _rnn_backward(d_out, d_h_n, w_hh, relu, lengths, reverse, out, d_pre):
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    dh_prev = np.empty_like(dh)
    parts = product_scratch(batch, w_hh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if t >= lengths[b]:
                d_pre[t, b] = 0.0
                continue
            h_t, d_p, dh_b, d_o = out[t, b], d_pre[t, b], dh[b], d_out[t, b]
            if relu:
                for j in range(hidden):
                    d_p[j] = (dh_b[j] + d_o[j]) * (1.0 if h_t[j] > 0 else 0.0)
            else:
                for j in range(hidden):
                    d_p[j] = (dh_b[j] + d_o[j]) * (1.0 - h_t[j] * h_t[j])
        product_into(d_pre[t], w_hh, parts, dh_prev)
        for b in range(batch):
            if t < lengths[b]:
                dh[b] = dh_prev[b]
    return dh


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, nonlinearity="tanh"):
    """Run one Elman RNN layer in one direction over all T steps.

    x (T, B, I); h0 (B, H); w_ih (H, I); w_hh (H, H); biases (H,) or None; ``lengths``
    (B,) or None; ``reverse`` runs t = T-1 .. 0. Returns ``out`` (T, B, H), ``h_n`` (B, H)
    and ``ctx``, what ``rnn_backward`` needs.
    """
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = check_inputs("rnn_forward", num_gates("RNN"), x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    xp = project(x, w_ih, add_biases(b_ih, b_hh))
    out = np.empty_like(xp)
    h_prev = np.empty_like(xp)
    relu = nonlinearity == "relu"
    h_n = _rnn_forward(xp, plan_product(w_hh.T, x.shape[1]), relu, h0, lengths, reverse, out, h_prev)
    ctx = (x, w_ih, w_hh, b_ih is not None, b_hh is not None, relu, lengths, reverse, out, h_prev)
    return out, h_n, ctx


def rnn_backward(ctx, d_out, d_h_n, need_dx=True):
    """BPTT through an ``rnn_forward`` call in one call.

    Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``; ``db_*`` are None where that bias
    was None and ``dx`` is None when ``need_dx`` is False.
    """
    x, w_ih, w_hh, has_b_ih, has_b_hh, relu, lengths, reverse, out, h_prev = ctx
    d_out, d_h_n = (np.ascontiguousarray(a, dtype=x.dtype) for a in (d_out, d_h_n))
    d_pre = np.empty_like(out)
    dh0 = _rnn_backward(d_out, d_h_n, plan_product(w_hh, d_out.shape[1]), relu, lengths, reverse, out, d_pre)
    dx, dw_ih, db = input_grads(x, w_ih, d_pre, need_dx)
    return dx, dh0, dw_ih, weight_grad(d_pre, h_prev), db if has_b_ih else None, db.copy() if has_b_hh else None
