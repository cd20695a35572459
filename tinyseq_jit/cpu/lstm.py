"""Fused LSTM layer-direction: forward over all T steps and its BPTT backward, one call each.

Gates are stacked as PyTorch's i, f, g, o (coupled: f, g, o with i = 1 - f). With
peepholes, i and f also see c_{t-1} and o sees c_t through diagonal weights ci, cf, co.
Per step t (x-projection xp_t = x_t W_ih^T + b_ih + b_hh made before the loop):

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   r_t = o * tanh(c_t),   h_t = r_t  (or r_t W_hr^T)

With a projection w_hr (P, H) (PyTorch's ``proj_size``), h_t = r_t W_hr^T has P features
and W_hh is (G*H, P): one more per-step product each way. A sequence past its length keeps
its state and outputs zeros.
"""

from typing import NamedTuple

import numpy as np

from tinyseq.gates import gate_slice, num_gates

from .._contract import WEIGHTS, Forward, weight_grads
from .._jit import jit
from ._common import (
    Inputs, add_biases, add_state_grad, check_inputs, input_grads, norm_buffer, project, record_norm, record_norms,
    time_step, weight_grad, zero_padding,
)
from ._gemm import plan_product, product_into, product_scratch
from ._math import add_product, sigmoid_rows, tanh, tanh_rows


class LSTMSaved(NamedTuple):
    """What ``lstm_backward`` needs from ``lstm_forward``."""

    inputs: Inputs
    peep: np.ndarray  # (3, H): ci, cf, co (zeros where absent)
    peephole: bool
    coupled: bool
    acts: np.ndarray  # (T, B, G*H): the gates i, f, g, o after their non-linearities
    r: np.ndarray  # (T, B, H): o * tanh(c_t), what W_hr projects (zero at padded steps); None without w_hr
    h_prev: np.ndarray  # (T, B, H): h_{t-1} ((T, B, P) with w_hr)
    c_prev: np.ndarray  # (T, B, H): c_{t-1}
    c_new: np.ndarray  # (T, B, H): c_t


@jit
def _lstm_forward(xp, w_hh_t, projected, w_hr_t, peep, peephole, coupled, gf, gg, go, h0, c0, lengths, reverse,
                  out, r, acts, h_prev, c_prev, c_new):
    """The recurrence over all steps; returns (h_n, c_n) and fills the (T, B, ...) arrays.

    xp (T, B, G*H): x W_ih^T + b_ih + b_hh; w_hh_t: ``plan_product(W_hh^T, B)``; projected:
    bool, and then w_hr_t ``plan_product(W_hr^T, B)`` (any plan otherwise); peep (3, H): ci,
    cf, co; peephole, coupled: bools; gf, gg, go: where the f, g and o blocks start in a row
    of gates (i is the block before f: none when coupled); h0 (B, P) (P = H unprojected), c0
    (B, H); lengths (B,) int64; reverse: bool. Written: out (T, B, P) h_t (at every step when
    projected: zero its padded steps after the call), r (T, B, H) o * tanh(c_t) (the same
    array as ``out`` when not projected) and acts (T, B, G*H) the gates at valid steps; h_prev
    (T, B, P), c_prev (T, B, H) h_{t-1} and c_{t-1} at every step; c_new (T, B, H) c_t at
    valid steps.
    """
    steps, batch, gh = xp.shape
    hidden = c0.shape[1]
    ci, cf, co = peep[0], peep[1], peep[2]
    h, c = h0.copy(), c0.copy()
    pre = np.empty((batch, gh), dtype=xp.dtype)  # h_{t-1} W_hh^T, then + the peephole terms
    parts, parts_hr = product_scratch(batch, w_hh_t), product_scratch(batch, w_hr_t)
    for s in range(steps):
        t = time_step(s, steps, reverse)
        h_prev[t] = h
        c_prev[t] = c
        product_into(h, w_hh_t, parts, pre)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, hw, xp_t, c_last, c_t = acts[t, b], pre[b], xp[t, b], c_prev[t, b], c_new[t, b]
            f, g, o = a[gf:gg], a[gg:go], a[go:]
            if peephole:
                if not coupled:
                    add_product(hw[:gf], c_last, ci)
                add_product(hw[gf:gg], c_last, cf)
            sigmoid_rows(a[:gg], xp_t[:gg], hw[:gg])  # i and f (f alone when coupled)
            tanh_rows(g, xp_t[gg:go], hw[gg:go])
            if coupled:
                for j in range(hidden):
                    c_t[j] = f[j] * c_last[j] + (1.0 - f[j]) * g[j]
            else:
                i = a[:gf]
                for j in range(hidden):
                    c_t[j] = f[j] * c_last[j] + i[j] * g[j]
            if peephole:
                add_product(hw[go:], c_t, co)
            sigmoid_rows(o, xp_t[go:], hw[go:])
            r_t = r[t, b]
            for j in range(hidden):
                r_t[j] = o[j] * tanh(c_t[j])
            c[b] = c_t
        if projected:
            product_into(r[t], w_hr_t, parts_hr, out[t])
        for b in range(batch):
            if t < lengths[b]:
                h[b] = out[t, b]
    return h, c


@jit
def _lstm_backward(d_out, d_h_n, d_c_n, w_hh, projected, w_hr, peep, peephole, coupled, gf, gg, go, lengths, reverse,
                   acts, c_prev, c_new, d_gates, d_h, d_peep, grad_norms):
    """BPTT over all steps; returns (dh0, dc0) and fills ``d_gates``, ``d_h``, ``d_peep`` and
    ``grad_norms``.

    d_out (T, B, P), d_h_n (B, P) and d_c_n (B, H): the incoming gradients (P = H unprojected);
    w_hh: ``plan_product(W_hh, B)``; projected, and then w_hr ``plan_product(W_hr, B)``; peep,
    peephole, coupled, gf, gg, go, lengths, reverse as for ``_lstm_forward``, and its acts,
    c_prev and c_new. Written: d_gates (T, B, G*H), the gradients of the gates'
    pre-activations at valid steps, and when projected d_h (T, B, P), all of dL/dh_t at valid
    steps (zero both at padded steps before the call; d_h is unused otherwise); d_peep (3, H)
    += the peepholes' gradients; grad_norms (2, T, B): ||dL/dh_t|| and ||dL/dc_t|| at valid
    steps, or (2, 0, 0) to record nothing.
    """
    steps, batch, hidden = c_new.shape
    ci, cf, co = peep[0], peep[1], peep[2]
    d_ci, d_cf, d_co = d_peep[0], d_peep[1], d_peep[2]
    dh, dc = d_h_n.copy(), d_c_n.copy()
    dh_rec = np.empty_like(dh)
    d_r = dh  # dL/d(o tanh(c_t)): dL/dh_t itself, or through W_hr into its own array
    if projected:
        d_r = np.empty_like(dc)
    parts, parts_hr = product_scratch(batch, w_hh), product_scratch(batch, w_hr)
    record = grad_norms.shape[1] > 0
    for s in range(steps):
        t = time_step(s, steps, not reverse)  # BPTT runs the other way
        if record:
            record_norms(grad_norms, 0, t, lengths, dh, d_out[t])
        for b in range(batch):
            if t < lengths[b]:
                dh[b] += d_out[t, b]
                if projected:
                    d_h[t, b] = dh[b]
        if projected:
            product_into(d_h[t], w_hr, parts_hr, d_r)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, da, c_t, c_last, dr_t, dc_t = acts[t, b], d_gates[t, b], c_new[t, b], c_prev[t, b], d_r[b], dc[b]
            f, g, o = a[gf:gg], a[gg:go], a[go:]
            df, dg, do = da[gf:gg], da[gg:go], da[go:]
            for j in range(hidden):  # through r_t = o tanh(c_t)
                tanh_c = tanh(c_t[j])
                do[j] = dr_t[j] * tanh_c * o[j] * (1.0 - o[j])
                dc_t[j] += dr_t[j] * o[j] * (1.0 - tanh_c * tanh_c)
            dh[b, :] = 0.0  # h_{t-1} reaches h_t only through the product
            if peephole:
                add_product(dc_t, do, co)
                add_product(d_co, do, c_t)
            if record:  # all of dL/dc_t is in now
                record_norm(grad_norms, 1, t, b, dc_t)
            if coupled:  # through c_t = f c_{t-1} + (1 - f) g
                for j in range(hidden):
                    dg[j] = dc_t[j] * (1.0 - f[j]) * (1.0 - g[j] * g[j])
                    df[j] = dc_t[j] * (c_last[j] - g[j]) * f[j] * (1.0 - f[j])
                    dc_t[j] *= f[j]
            else:  # through c_t = f c_{t-1} + i g
                i, di = a[:gf], da[:gf]
                for j in range(hidden):
                    di[j] = dc_t[j] * g[j] * i[j] * (1.0 - i[j])
                    df[j] = dc_t[j] * c_last[j] * f[j] * (1.0 - f[j])
                    dg[j] = dc_t[j] * i[j] * (1.0 - g[j] * g[j])
                    dc_t[j] *= f[j]
                if peephole:
                    add_product(dc_t, di, ci)
                    add_product(d_ci, di, c_last)
            if peephole:
                add_product(dc_t, df, cf)
                add_product(d_cf, df, c_last)
        product_into(d_gates[t], w_hh, parts, dh_rec)
        add_state_grad(t, lengths, dh, dh_rec)
    return dh, dc


def lstm_forward(x, h0, c0, weights, lengths=None, reverse=False, coupled=False):
    """Run one LSTM layer in one direction over all T steps.

    x (T, B, I); h0, c0 (B, H); ``weights``: w_ih (G*H, I) and w_hh (G*H, H) with G = 4
    (3 when ``coupled``), optionally b_ih and b_hh (G*H,), the projection w_hr (P, H) (then
    w_hh is (G*H, P) and h0 (B, P)), and the peepholes ci, cf, co (H,) each for a peephole
    LSTM (cf and co when coupled); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0.
    Returns a ``Forward``: out (T, B, H), h_n (B, H), c_n (B, H), saved; out and h_n have P
    features with w_hr.
    """
    inputs = check_inputs("lstm_forward", num_gates("LSTM", coupled), x, (h0, c0), weights, lengths, reverse,
                          allowed=WEIGHTS)
    w, (h0, c0) = inputs.w, inputs.states
    (steps, batch, _), hidden, size = inputs.x.shape, c0.shape[1], h0.shape[1]
    peep, peephole = _peepholes("lstm_forward", w, coupled, hidden, h0.dtype)
    xp = project(inputs.x, w["w_ih"], add_biases(w.get("b_ih"), w.get("b_hh")))
    out, h_prev = np.empty((steps, batch, size), dtype=xp.dtype), np.empty((steps, batch, size), dtype=xp.dtype)
    acts = np.empty_like(xp)
    c_prev, c_new = (np.empty((steps, batch, hidden), dtype=xp.dtype) for _ in range(2))
    projected = "w_hr" in w
    r = np.empty_like(c_new) if projected else out
    h_n, c_n = _lstm_forward(xp, plan_product(w["w_hh"].T, batch), projected, _projection(w, True, batch), peep,
                             peephole, coupled, *_gate_starts(hidden, coupled), h0, c0, inputs.lengths, reverse, out,
                             r, acts, h_prev, c_prev, c_new)
    zero_padding(inputs.padding, out, r)
    return Forward(out, h_n, c_n, LSTMSaved(inputs, peep, peephole, coupled, acts, r if projected else None, h_prev,
                                            c_prev, c_new))


def lstm_backward(saved, d_out, d_h_n, d_c_n, need_dx=True, grad_norms=None):
    """BPTT through a ``lstm_forward`` call in one call; returns a ``Grads`` (x None unless
    ``need_dx``). ``grad_norms``, if given, a (2, T, B) array: written with ||dL/dh_t|| and
    ||dL/dc_t|| of every sequence at every step (zero at padded steps)."""
    inputs = saved.inputs
    d_out, d_h_n, d_c_n = (np.ascontiguousarray(a, dtype=inputs.x.dtype) for a in (d_out, d_h_n, d_c_n))
    w, projected, batch = inputs.w, saved.r is not None, d_out.shape[1]
    d_gates = np.empty_like(saved.acts)
    d_h = np.empty_like(d_out) if projected else np.empty((0, 0, 0), dtype=d_out.dtype)
    zero_padding(inputs.padding, d_gates, *([d_h] if projected else []))
    d_peep = np.zeros_like(saved.peep)
    grad_norms = norm_buffer("lstm_backward", grad_norms, 2, inputs)
    dh0, dc0 = _lstm_backward(d_out, d_h_n, d_c_n, plan_product(w["w_hh"], batch), projected,
                              _projection(w, False, batch), saved.peep, saved.peephole, saved.coupled,
                              *_gate_starts(saved.c_new.shape[2], saved.coupled), inputs.lengths, inputs.reverse,
                              saved.acts, saved.c_prev, saved.c_new, d_gates, d_h, d_peep, grad_norms)
    dx, dw_ih, db = input_grads(inputs, d_gates, need_dx)
    return weight_grads(w, x=dx, h0=dh0, c0=dc0, w_ih=dw_ih, w_hh=weight_grad(d_gates, saved.h_prev),
                        b_ih=db, b_hh=db.copy(), w_hr=weight_grad(d_h, saved.r) if projected else None,
                        ci=d_peep[0], cf=d_peep[1], co=d_peep[2])


def _projection(w, transposed, batch):
    """The per-step product's plan for W_hr^T (forward) or W_hr (backward); an empty one
    when ``w`` has no projection (the loops then never run it)."""
    w_hr = w.get("w_hr", np.empty((0, 0), dtype=w["w_hh"].dtype))
    return plan_product(w_hr.T if transposed else w_hr, batch)


def _gate_starts(hidden, coupled):
    """Where the f, g and o blocks start in a row of stacked gates (``tinyseq.gates``)."""
    return tuple(gate_slice("LSTM", gate, hidden, coupled).start for gate in ("f", "g", "o"))


def _peepholes(name, w, coupled, hidden, dtype):
    """The peepholes in ``w`` stacked as one (3, H) array ci, cf, co (zeros where absent), and
    whether there are any."""
    peephole = check_peepholes(name, w, coupled)
    peep = np.zeros((3, hidden), dtype=dtype)
    for k, label in enumerate(("ci", "cf", "co")):
        if label in w:
            peep[k] = w[label]
    return peep, peephole


def check_peepholes(name, w, coupled):
    """Whether ``w`` holds peepholes; a partial set, or ci on a coupled LSTM, is refused."""
    given = tuple(k for k in ("ci", "cf", "co") if k in w)
    if not given:
        return False
    if coupled and "ci" in given:
        raise ValueError(f"{name}: a coupled LSTM has no input gate, so it takes no ci peephole")
    needed = ("cf", "co") if coupled else ("ci", "cf", "co")
    if given != needed:
        raise ValueError(f"{name}: a peephole LSTM needs the weights {list(needed)}, got {list(given)}")
    return True
