"""Fused LSTM layer-direction: forward over all T steps and its BPTT backward, one call each.

Gates are stacked as PyTorch's i, f, g, o (coupled: f, g, o with i = 1 - f). With
peepholes, i and f also see c_{t-1} and o sees c_t through diagonal weights ci, cf, co.
Per step t (x-projection xp_t = x_t W_ih^T + b_ih + b_hh made before the loop):

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

A sequence past its length keeps its state and outputs zeros.
"""

import numpy as np

from tinyseq.gates import gate_slice, num_gates

from .._jit import jit
from ._common import (
    add_biases, add_product, check_inputs, input_grads, plan_product, product_into, product_scratch, project,
    sigmoid_rows, tanh, tanh_rows, weight_grad,
)


@jit
def _lstm_forward(xp, w_hh_t, ci, cf, co, peephole, coupled, gf, gg, go, h0, c0, lengths, reverse, out, acts,
                  h_prev, c_prev, c_new):
    steps, batch, gh = xp.shape
    hidden = h0.shape[1]
    h, c = h0.copy(), c0.copy()
    pre = np.empty((batch, gh), dtype=xp.dtype)  # h W_hh^T, then + peephole terms
    parts = product_scratch(batch, w_hh_t)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        c_prev[t] = c
        product_into(h, w_hh_t, parts, pre)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                acts[t, b] = 0.0
                c_new[t, b] = c[b]
                continue
            a, z, x, cp, ct = acts[t, b], pre[b], xp[t, b], c[b], c_new[t, b]
            i, f, g, o = a[:gf], a[gf:gg], a[gg:go], a[go:]
            if peephole:
                if not coupled:
                    add_product(z[:gf], cp, ci)
                add_product(z[gf:gg], cp, cf)
            sigmoid_rows(a[:gg], x[:gg], z[:gg])
            tanh_rows(g, x[gg:go], z[gg:go])
            if coupled:
                for j in range(hidden):
                    ct[j] = f[j] * cp[j] + (1.0 - f[j]) * g[j]
            else:
                for j in range(hidden):
                    ct[j] = f[j] * cp[j] + i[j] * g[j]
            if peephole:
                add_product(z[go:], ct, co)
            sigmoid_rows(o, x[go:], z[go:])
            h_t = out[t, b]
            for j in range(hidden):
                h_t[j] = o[j] * tanh(ct[j])
            h[b] = h_t
            cp[:] = ct
    return h, c


@jit
def _lstm_backward(d_out, d_h_n, d_c_n, w_hh, ci, cf, co, peephole, coupled, gf, gg, go, lengths, reverse, acts,
                   c_prev, c_new, d_gates, d_peep):
    steps, batch, hidden = d_out.shape
    dh, dc = d_h_n.copy(), d_c_n.copy()
    dh_prev = np.empty_like(dh)
    parts = product_scratch(batch, w_hh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if t >= lengths[b]:
                d_gates[t, b] = 0.0
                continue
            a, dg, ct, cp, dh_t, dc_t = acts[t, b], d_gates[t, b], c_new[t, b], c_prev[t, b], dh[b], dc[b]
            i, f, g, o = a[:gf], a[gf:gg], a[gg:go], a[go:]
            di, df, dg_g, do = dg[:gf], dg[gf:gg], dg[gg:go], dg[go:]
            dh_t += d_out[t, b]
            for j in range(hidden):  # through h_t = o tanh(c_t)
                tanh_c = tanh(ct[j])
                do[j] = dh_t[j] * tanh_c * o[j] * (1.0 - o[j])
                dc_t[j] += dh_t[j] * o[j] * (1.0 - tanh_c * tanh_c)
            if peephole:
                add_product(dc_t, do, co)
                add_product(d_peep[2], do, ct)
            if coupled:  # through c_t = f c_{t-1} + (1 - f) g
                for j in range(hidden):
                    dg_g[j] = dc_t[j] * (1.0 - f[j]) * (1.0 - g[j] * g[j])
                    df[j] = dc_t[j] * (cp[j] - g[j]) * f[j] * (1.0 - f[j])
                    dc_t[j] *= f[j]
            else:  # through c_t = f c_{t-1} + i g
                for j in range(hidden):
                    di[j] = dc_t[j] * g[j] * i[j] * (1.0 - i[j])
                    df[j] = dc_t[j] * cp[j] * f[j] * (1.0 - f[j])
                    dg_g[j] = dc_t[j] * i[j] * (1.0 - g[j] * g[j])
                    dc_t[j] *= f[j]
            if peephole:
                if not coupled:
                    add_product(dc_t, di, ci)
                    add_product(d_peep[0], di, cp)
                add_product(dc_t, df, cf)
                add_product(d_peep[1], df, cp)
        product_into(d_gates[t], w_hh, parts, dh_prev)
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
    gates = num_gates("LSTM", coupled)
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, c0 = check_inputs(
        "lstm_forward", gates, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, c0)
    hidden = h0.shape[1]
    peep = _peephole_array("lstm_forward", peephole, coupled, hidden, x.dtype)
    steps, batch, _ = x.shape
    xp = project(x, w_ih, add_biases(b_ih, b_hh))
    out = np.empty((steps, batch, hidden), dtype=x.dtype)
    acts = np.empty_like(xp)
    h_prev, c_prev, c_new = np.empty_like(out), np.empty_like(out), np.empty_like(out)
    h_n, c_n = _lstm_forward(xp, plan_product(w_hh.T, batch), peep[0], peep[1], peep[2], peephole is not None,
                             coupled, *_gate_offsets(hidden, coupled), h0, c0, lengths, reverse, out, acts, h_prev,
                             c_prev, c_new)
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
    dh0, dc0 = _lstm_backward(d_out, d_h_n, d_c_n, plan_product(w_hh, d_out.shape[1]), peep[0], peep[1], peep[2],
                              has_peep, coupled, *_gate_offsets(d_out.shape[2], coupled), lengths, reverse, acts,
                              c_prev, c_new, d_gates, d_peep)
    dx, dw_ih, db = input_grads(x, w_ih, d_gates, need_dx)
    dw_hh = weight_grad(d_gates, h_prev)
    d_peephole = None
    if has_peep:
        d_peephole = (None if coupled else d_peep[0], d_peep[1], d_peep[2])
    return (dx, dh0, dc0, dw_ih, dw_hh, db if has_b_ih else None, db.copy() if has_b_hh else None, d_peephole)


def _gate_offsets(hidden, coupled):
    """Where the f, g and o blocks start in a row of stacked gates (``tinyseq.gates``); the loops
    read i as the block before f (none when coupled) and o as the last block."""
    return tuple(gate_slice("LSTM", gate, hidden, coupled).start for gate in ("f", "g", "o"))


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
