"""Fused LSTM layer-direction: forward over all T steps and its BPTT backward, one call each.

Gates are stacked as PyTorch's i, f, g, o (coupled: f, g, o with i = 1 - f). With
peepholes, i and f also see c_{t-1} and o sees c_t through diagonal weights ci, cf, co.
Per step t (x-projection xp_t = x_t W_ih^T + b_ih + b_hh made before the loop):

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

A sequence past its length keeps its state and outputs zeros.
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
    h_prev: np.ndarray  # (T, B, H): h_{t-1}
    c_prev: np.ndarray  # (T, B, H): c_{t-1}
    c_new: np.ndarray  # (T, B, H): c_t


@jit
def _lstm_forward(xp, w_hh_t, peep, peephole, coupled, gf, gg, go, h0, c0, lengths, reverse, out, acts, h_prev,
                  c_prev, c_new):
    """The recurrence over all steps; returns (h_n, c_n) and fills the (T, B, ...) arrays.

    xp (T, B, G*H): x W_ih^T + b_ih + b_hh; w_hh_t: ``plan_product(W_hh^T, B)``; peep (3, H):
    ci, cf, co; peephole, coupled: bools; gf, gg, go: where the f, g and o blocks start in a
    row of gates (i is the block before f: none when coupled); h0, c0 (B, H); lengths (B,)
    int64; reverse: bool. Written: out (T, B, H) h_t and acts (T, B, G*H) the gates at valid
    steps; h_prev, c_prev (T, B, H) h_{t-1} and c_{t-1} at every step; c_new (T, B, H) c_t at
    valid steps.
    """
    steps, batch, gh = xp.shape
    hidden = h0.shape[1]
    ci, cf, co = peep[0], peep[1], peep[2]
    h, c = h0.copy(), c0.copy()
    pre = np.empty((batch, gh), dtype=xp.dtype)  # h_{t-1} W_hh^T, then + the peephole terms
    parts = product_scratch(batch, w_hh_t)
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
            h_t = out[t, b]
            for j in range(hidden):
                h_t[j] = o[j] * tanh(c_t[j])
            h[b] = h_t
            c[b] = c_t
    return h, c


@jit
def _lstm_backward(d_out, d_h_n, d_c_n, w_hh, peep, peephole, coupled, gf, gg, go, lengths, reverse, acts, c_prev,
                   c_new, d_gates, d_peep, grad_norms):
    """BPTT over all steps; returns (dh0, dc0) and fills ``d_gates``, ``d_peep`` and ``grad_norms``.

    d_out (T, B, H), d_h_n and d_c_n (B, H): the incoming gradients; w_hh:
    ``plan_product(W_hh, B)``; peep, peephole, coupled, gf, gg, go, lengths, reverse as for
    ``_lstm_forward``, and its acts, c_prev and c_new. Written: d_gates (T, B, G*H), the
    gradients of the gates' pre-activations at valid steps (zero them at padded steps before
    the call); d_peep (3, H) += the peepholes' gradients; grad_norms (2, T, B): ||dL/dh_t|| and
    ||dL/dc_t|| at valid steps, or (2, 0, 0) to record nothing.
    """
    steps, batch, hidden = d_out.shape
    ci, cf, co = peep[0], peep[1], peep[2]
    d_ci, d_cf, d_co = d_peep[0], d_peep[1], d_peep[2]
    dh, dc = d_h_n.copy(), d_c_n.copy()
    dh_rec = np.empty_like(dh)
    parts = product_scratch(batch, w_hh)
    record = grad_norms.shape[1] > 0
    for s in range(steps):
        t = time_step(s, steps, not reverse)  # BPTT runs the other way
        if record:
            record_norms(grad_norms, 0, t, lengths, dh, d_out[t])
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, da, c_t, c_last, dh_t, dc_t = acts[t, b], d_gates[t, b], c_new[t, b], c_prev[t, b], dh[b], dc[b]
            f, g, o = a[gf:gg], a[gg:go], a[go:]
            df, dg, do = da[gf:gg], da[gg:go], da[go:]
            dh_t += d_out[t, b]
            for j in range(hidden):  # through h_t = o tanh(c_t)
                tanh_c = tanh(c_t[j])
                do[j] = dh_t[j] * tanh_c * o[j] * (1.0 - o[j])
                dc_t[j] += dh_t[j] * o[j] * (1.0 - tanh_c * tanh_c)
            dh_t[:] = 0.0  # h_{t-1} reaches h_t only through the product
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
    (3 when ``coupled``), optionally b_ih and b_hh (G*H,), and the peepholes ci, cf, co
    (H,) each for a peephole LSTM (cf and co when coupled); ``lengths`` (B,) or None;
    ``reverse`` runs t = T-1 .. 0. Returns a ``Forward``: out (T, B, H), h_n, c_n (B, H),
    saved.
    """
    inputs = check_inputs("lstm_forward", num_gates("LSTM", coupled), x, (h0, c0), weights, lengths, reverse,
                          allowed=WEIGHTS)
    w, (h0, c0) = inputs.w, inputs.states
    (steps, batch, _), hidden = inputs.x.shape, h0.shape[1]
    peep, peephole = _peepholes("lstm_forward", w, coupled, hidden, h0.dtype)
    xp = project(inputs.x, w["w_ih"], add_biases(w.get("b_ih"), w.get("b_hh")))
    out = np.empty((steps, batch, hidden), dtype=xp.dtype)
    acts = np.empty_like(xp)
    h_prev, c_prev, c_new = np.empty_like(out), np.empty_like(out), np.empty_like(out)
    h_n, c_n = _lstm_forward(xp, plan_product(w["w_hh"].T, batch), peep, peephole, coupled,
                             *_gate_starts(hidden, coupled), h0, c0, inputs.lengths, reverse, out, acts, h_prev,
                             c_prev, c_new)
    zero_padding(inputs.padding, out)
    return Forward(out, h_n, c_n, LSTMSaved(inputs, peep, peephole, coupled, acts, h_prev, c_prev, c_new))


def lstm_backward(saved, d_out, d_h_n, d_c_n, need_dx=True, grad_norms=None):
    """BPTT through a ``lstm_forward`` call in one call; returns a ``Grads`` (x None unless
    ``need_dx``). ``grad_norms``, if given, a (2, T, B) array: written with ||dL/dh_t|| and
    ||dL/dc_t|| of every sequence at every step (zero at padded steps)."""
    inputs = saved.inputs
    d_out, d_h_n, d_c_n = (np.ascontiguousarray(a, dtype=inputs.x.dtype) for a in (d_out, d_h_n, d_c_n))
    d_gates = np.empty_like(saved.acts)
    zero_padding(inputs.padding, d_gates)
    d_peep = np.zeros_like(saved.peep)
    grad_norms = norm_buffer("lstm_backward", grad_norms, 2, inputs)
    dh0, dc0 = _lstm_backward(d_out, d_h_n, d_c_n, plan_product(inputs.w["w_hh"], d_out.shape[1]), saved.peep,
                              saved.peephole, saved.coupled, *_gate_starts(d_out.shape[2], saved.coupled),
                              inputs.lengths, inputs.reverse, saved.acts, saved.c_prev, saved.c_new, d_gates, d_peep,
                              grad_norms)
    dx, dw_ih, db = input_grads(inputs, d_gates, need_dx)
    return weight_grads(inputs.w, x=dx, h0=dh0, c0=dc0, w_ih=dw_ih, w_hh=weight_grad(d_gates, saved.h_prev),
                        b_ih=db, b_hh=db.copy(), ci=d_peep[0], cf=d_peep[1], co=d_peep[2])


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
