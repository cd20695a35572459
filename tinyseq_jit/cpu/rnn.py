"""Fused Elman RNN layer-direction: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

``act`` is tanh or relu. A sequence past its length keeps its state and outputs zeros.
"""

from typing import NamedTuple

import numpy as np

from tinyseq.gates import num_gates

from .._contract import Forward, weight_grads
from .._jit import jit
from ._common import (
    Inputs, add_biases, add_state_grad, check_inputs, input_grads, norm_buffer, project, record_norms, time_step,
    weight_grad, zero_padding,
)
from ._gemm import plan_product, product_into, product_scratch
from ._math import tanh_rows

_NONLINEARITIES = ("tanh", "relu")


class RNNSaved(NamedTuple):
    """What ``rnn_backward`` needs from ``rnn_forward``."""

    inputs: Inputs
    relu: bool
    out: np.ndarray  # (T, B, H): h_t, which is also what the activation's derivative needs
    h_prev: np.ndarray  # (T, B, H): h_{t-1}, the state step t read


@jit
def _rnn_forward(xp, w_hh_t, relu, h0, lengths, reverse, out, h_prev):
    """The recurrence over all steps; returns h_n and fills ``out`` and ``h_prev``.

    xp (T, B, H): x W_ih^T + b_ih + b_hh; w_hh_t: ``plan_product(W_hh^T, B)``; relu: bool;
    h0 (B, H); lengths (B,) int64; reverse: bool; out, h_prev (T, B, H): written (out only
    at valid steps).
    """
    steps, batch, hidden = out.shape
    h = h0.copy()
    hw = np.empty_like(h)  # h_{t-1} W_hh^T
    parts = product_scratch(batch, w_hh_t)
    for s in range(steps):
        t = time_step(s, steps, reverse)
        h_prev[t] = h
        product_into(h, w_hh_t, parts, hw)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            h_t, xp_t, hw_t = out[t, b], xp[t, b], hw[b]
            if relu:
                for j in range(hidden):
                    h_t[j] = max(xp_t[j] + hw_t[j], 0.0)
            else:
                tanh_rows(h_t, xp_t, hw_t)
            h[b] = h_t
    return h


@jit
def _rnn_backward(d_out, d_h_n, w_hh, relu, lengths, reverse, out, d_pre, grad_norms):
    """BPTT over all steps; returns dh0 and fills ``d_pre`` and ``grad_norms``.

    d_out (T, B, H), d_h_n (B, H): the incoming gradients; w_hh: ``plan_product(W_hh, B)``;
    out (T, B, H): the forward's h_t; d_pre (T, B, H): written with the gradient of each
    step's pre-activation at valid steps (zero them at padded steps before the call);
    grad_norms (1, T, B): ||dL/dh_t|| at valid steps, or (1, 0, 0) to record nothing.
    """
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
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
            h_t, d_p, dh_t, d_o = out[t, b], d_pre[t, b], dh[b], d_out[t, b]
            if relu:
                for j in range(hidden):
                    d_p[j] = (dh_t[j] + d_o[j]) * (1.0 if h_t[j] > 0 else 0.0)
            else:
                for j in range(hidden):
                    d_p[j] = (dh_t[j] + d_o[j]) * (1.0 - h_t[j] * h_t[j])
            dh_t[:] = 0.0  # h_{t-1} reaches h_t only through the product
        product_into(d_pre[t], w_hh, parts, dh_rec)
        add_state_grad(t, lengths, dh, dh_rec)
    return dh


def rnn_forward(x, h0, weights, lengths=None, reverse=False, nonlinearity="tanh"):
    """Run one Elman RNN layer in one direction over all T steps.

    x (T, B, I); h0 (B, H); ``weights``: w_ih (H, I), w_hh (H, H), and optionally b_ih and
    b_hh (H,); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0; ``nonlinearity``
    "tanh" or "relu". Returns a ``Forward``: out (T, B, H), h_n (B, H), c_n None, saved.
    """
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    inputs = check_inputs("rnn_forward", num_gates("RNN"), x, (h0,), weights, lengths, reverse)
    w = inputs.w
    xp = project(inputs.x, w["w_ih"], add_biases(w.get("b_ih"), w.get("b_hh")))
    out, h_prev = np.empty_like(xp), np.empty_like(xp)
    relu = nonlinearity == "relu"
    h_n = _rnn_forward(xp, plan_product(w["w_hh"].T, xp.shape[1]), relu, inputs.states[0], inputs.lengths, reverse,
                       out, h_prev)
    zero_padding(inputs.padding, out)
    return Forward(out, h_n, None, RNNSaved(inputs, relu, out, h_prev))


def rnn_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through an ``rnn_forward`` call in one call; returns a ``Grads`` (x None unless
    ``need_dx``). ``grad_norms``, if given, a (1, T, B) array: written with ||dL/dh_t|| of
    every sequence at every step (zero at padded steps)."""
    inputs = saved.inputs
    d_out, d_h_n = (np.ascontiguousarray(a, dtype=inputs.x.dtype) for a in (d_out, d_h_n))
    d_pre = np.empty_like(saved.out)
    zero_padding(inputs.padding, d_pre)
    grad_norms = norm_buffer("rnn_backward", grad_norms, 1, inputs)
    dh0 = _rnn_backward(d_out, d_h_n, plan_product(inputs.w["w_hh"], d_out.shape[1]), saved.relu, inputs.lengths,
                        inputs.reverse, saved.out, d_pre, grad_norms)
    dx, dw_ih, db = input_grads(inputs, d_pre, need_dx)
    return weight_grads(inputs.w, x=dx, h0=dh0, w_ih=dw_ih, w_hh=weight_grad(d_pre, saved.h_prev), b_ih=db,
                        b_hh=db.copy())
