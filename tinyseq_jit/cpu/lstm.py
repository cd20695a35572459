"""Fused LSTM layer-direction: forward over all T steps and its BPTT backward, one call each.

Gates are stacked as PyTorch's i, f, g, o (coupled: f, g, o with i = 1 - f). With
peepholes, i and f also see c_{t-1} and o sees c_t through diagonal weights ci, cf, co.
Per step t (x-projection xp_t = x_t W_ih^T + b_ih + b_hh made before the loop):

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

A sequence past its length keeps its state and outputs zeros.
"""

import numpy as np

from .._jit import jit
from ._common import (
    add_biases, check_inputs, input_grads, matmul_into, project, sigmoid, small_product, tanh, weight_grad,
)


@jit
def _lstm_forward(xp, w_hh_t, ci, cf, co, peephole, coupled, h0, c0, lengths, reverse, small,
                  out, acts, h_prev, c_prev, c_new):
    steps, batch, _ = xp.shape
    hidden = h0.shape[1]
    h, c = h0.copy(), c0.copy()
    hw = np.empty((batch, w_hh_t.shape[1]), dtype=xp.dtype)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        c_prev[t] = c
        matmul_into(h, w_hh_t, hw, small)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                acts[t, b] = 0.0
                c_new[t, b] = c[b]
                continue
            for j in range(hidden):
                cp = c[b, j]
                if coupled:
                    f_pre = xp[t, b, j] + hw[b, j]
                    g_pre = xp[t, b, hidden + j] + hw[b, hidden + j]
                    o_pre = xp[t, b, 2 * hidden + j] + hw[b, 2 * hidden + j]
                    if peephole:
                        f_pre += cp * cf[j]
                    f = sigmoid(f_pre)
                    i = 1.0 - f
                else:
                    i_pre = xp[t, b, j] + hw[b, j]
                    f_pre = xp[t, b, hidden + j] + hw[b, hidden + j]
                    g_pre = xp[t, b, 2 * hidden + j] + hw[b, 2 * hidden + j]
                    o_pre = xp[t, b, 3 * hidden + j] + hw[b, 3 * hidden + j]
                    if peephole:
                        i_pre += cp * ci[j]
                        f_pre += cp * cf[j]
                    i = sigmoid(i_pre)
                    f = sigmoid(f_pre)
                g = tanh(g_pre)
                c_t = f * cp + i * g
                if peephole:
                    o_pre += c_t * co[j]
                o = sigmoid(o_pre)
                h_t = o * tanh(c_t)
                if coupled:
                    acts[t, b, j], acts[t, b, hidden + j], acts[t, b, 2 * hidden + j] = f, g, o
                else:
                    acts[t, b, j], acts[t, b, hidden + j] = i, f
                    acts[t, b, 2 * hidden + j], acts[t, b, 3 * hidden + j] = g, o
                c_new[t, b, j] = c_t
                out[t, b, j] = h_t
                h[b, j] = h_t
                c[b, j] = c_t
    return h, c


@jit
def _lstm_backward(d_out, d_h_n, d_c_n, w_hh, ci, cf, co, peephole, coupled, lengths, reverse, small,
                   acts, c_prev, c_new, d_gates, d_peep):
    steps, batch, hidden = d_out.shape
    dh, dc = d_h_n.copy(), d_c_n.copy()
    dh_prev = np.empty_like(dh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if t >= lengths[b]:
                d_gates[t, b] = 0.0
                continue
            for j in range(hidden):
                dh_t = dh[b, j] + d_out[t, b, j]
                c_t, cp = c_new[t, b, j], c_prev[t, b, j]
                if coupled:
                    f, g, o = acts[t, b, j], acts[t, b, hidden + j], acts[t, b, 2 * hidden + j]
                    i = 1.0 - f
                else:
                    i, f = acts[t, b, j], acts[t, b, hidden + j]
                    g, o = acts[t, b, 2 * hidden + j], acts[t, b, 3 * hidden + j]
                tanh_c = tanh(c_t)
                do_pre = dh_t * tanh_c * o * (1.0 - o)
                dc_t = dc[b, j] + dh_t * o * (1.0 - tanh_c * tanh_c)
                if peephole:
                    dc_t += do_pre * co[j]
                    d_peep[2, j] += do_pre * c_t
                dg_pre = dc_t * i * (1.0 - g * g)
                dc_prev = dc_t * f
                if coupled:
                    df_pre = dc_t * (cp - g) * f * (1.0 - f)
                    d_gates[t, b, j], d_gates[t, b, hidden + j], d_gates[t, b, 2 * hidden + j] = df_pre, dg_pre, do_pre
                else:
                    di_pre = dc_t * g * i * (1.0 - i)
                    df_pre = dc_t * cp * f * (1.0 - f)
                    d_gates[t, b, j], d_gates[t, b, hidden + j] = di_pre, df_pre
                    d_gates[t, b, 2 * hidden + j], d_gates[t, b, 3 * hidden + j] = dg_pre, do_pre
                    if peephole:
                        dc_prev += di_pre * ci[j]
                        d_peep[0, j] += di_pre * cp
                if peephole:
                    dc_prev += df_pre * cf[j]
                    d_peep[1, j] += df_pre * cp
                dc[b, j] = dc_prev
        matmul_into(d_gates[t], w_hh, dh_prev, small)
        for b in range(batch):
            if t < lengths[b]:
                dh[b] = dh_prev[b]
    return dh, dc


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, peephole=None, lengths=None, reverse=False,
                 coupled=False):
    """Run one LSTM layer in one direction over all T steps.

    x (T, B, I); h0, c0 (B, H); w_ih (G*H, I) and w_hh (G*H, H) with G = 4 (3 when
    ``coupled``); biases (G*H,) or None; ``peephole`` None or (ci, cf, co) of (H,) each
    (ci None when coupled); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0.
    Returns ``out`` (T, B, H), ``h_n``, ``c_n`` (B, H) and ``ctx``, what ``lstm_backward``
    needs.
    """
    gates = 3 if coupled else 4
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, c0 = check_inputs(
        "lstm_forward", gates, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, c0)
    hidden = h0.shape[1]
    peep = _peephole_array("lstm_forward", peephole, coupled, hidden, x.dtype)
    steps, batch, _ = x.shape
    xp = project(x, w_ih, add_biases(b_ih, b_hh))
    out = np.empty((steps, batch, hidden), dtype=x.dtype)
    acts = np.empty_like(xp)
    h_prev, c_prev, c_new = np.empty_like(out), np.empty_like(out), np.empty_like(out)
    small = small_product(batch, w_hh)
    h_n, c_n = _lstm_forward(xp, np.ascontiguousarray(w_hh.T), peep[0], peep[1], peep[2], peephole is not None,
                             coupled, h0, c0, lengths, reverse, small, out, acts, h_prev, c_prev, c_new)
    ctx = (x, w_ih, w_hh, b_ih is not None, b_hh is not None, peep, peephole is not None, coupled, lengths,
           reverse, acts, h_prev, c_prev, c_new)
    return out, h_n, c_n, ctx


def lstm_backward(ctx, d_out, d_h_n, d_c_n, need_dx=True):
    """BPTT through a ``lstm_forward`` call in one call.

    Returns ``(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, d_peephole)``; ``db_*`` are None
    where that bias was None, ``d_peephole`` is None or (dci, dcf, dco) (dci None when
    coupled), and ``dx`` is None when ``need_dx`` is False.
    """
    x, w_ih, w_hh, has_b_ih, has_b_hh, peep, has_peep, coupled, lengths, reverse, acts, h_prev, c_prev, c_new = ctx
    dtype = x.dtype
    d_out, d_h_n, d_c_n = (np.ascontiguousarray(a, dtype=dtype) for a in (d_out, d_h_n, d_c_n))
    d_gates = np.empty_like(acts)
    d_peep = np.zeros_like(peep)
    small = small_product(d_out.shape[1], w_hh)
    dh0, dc0 = _lstm_backward(d_out, d_h_n, d_c_n, w_hh, peep[0], peep[1], peep[2], has_peep, coupled, lengths,
                              reverse, small, acts, c_prev, c_new, d_gates, d_peep)
    dx, dw_ih, db = input_grads(x, w_ih, d_gates, need_dx)
    dw_hh = weight_grad(d_gates, h_prev)
    d_peephole = None
    if has_peep:
        d_peephole = (None if coupled else d_peep[0], d_peep[1], d_peep[2])
    return (dx, dh0, dc0, dw_ih, dw_hh, db if has_b_ih else None, db.copy() if has_b_hh else None, d_peephole)


def _peephole_array(name, peephole, coupled, hidden, dtype):
    """Pack (ci, cf, co) into one (3, H) array (zeros where absent), checking shapes."""
    peep = np.zeros((3, hidden), dtype=dtype)
    if peephole is None:
        return peep
    if len(peephole) != 3:
        raise ValueError(f"{name}: peephole must be (ci, cf, co), got {len(peephole)} items")
    for k, (label, w) in enumerate(zip(("ci", "cf", "co"), peephole)):
        if w is None:
            if label == "ci" and coupled:
                continue
            raise ValueError(f"{name}: peephole weight {label} is missing")
        if label == "ci" and coupled:
            raise ValueError(f"{name}: a coupled LSTM has no input gate, so ci must be None")
        w = np.asarray(w)
        if w.shape != (hidden,) or w.dtype != dtype:
            raise ValueError(f"{name}: peephole {label} must be ({hidden},) {np.dtype(dtype)}, "
                             f"got {w.shape} {w.dtype}")
        peep[k] = w
    return peep
