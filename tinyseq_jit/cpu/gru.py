"""Fused GRU layer-direction, both forms; gates stacked r, z, n as PyTorch.

    r = sigmoid(xp_r + h W_hr^T + b_hr),  z = sigmoid(xp_z + h W_hz^T + b_hz)
    reset_after=True  (PyTorch, cuDNN):  n = tanh(xp_n + r * (h W_hn^T + b_hn))
    reset_after=False (Cho et al. 2014): n = tanh(xp_n + (r * h) W_hn^T + b_hn)
    h' = n + z * (h - n)                 (= (1 - z) * n + z * h)

where xp = x W_ih^T + b_ih is made for all steps before the loop. The classic form needs
two matmuls per step (the second waits for r). A sequence past its length keeps its state
and outputs zeros.
"""

from typing import NamedTuple

import numpy as np

from tinyseq.gates import gate_slice, num_gates

from .._contract import Forward, weight_grads
from .._jit import jit
from ._common import (
    Inputs, add_state_grad, check_inputs, input_grads, norm_buffer, project, record_norms, time_step, weight_grad,
    zero_padding,
)
from ._gemm import plan_product, product_into, product_scratch
from ._math import add_product, sigmoid_rows, tanh, tanh_rows


class GRUSaved(NamedTuple):
    """What ``gru_backward`` needs from ``gru_forward``."""

    inputs: Inputs
    reset_after: bool
    acts: np.ndarray  # (T, B, 3H): the gates r, z, n after their non-linearities
    n_rec: np.ndarray  # (T, B, H): n's recurrent input: h_{t-1} W_hn^T + b_hn, or r * h_{t-1} (classic)
    h_prev: np.ndarray  # (T, B, H): h_{t-1}


@jit
def _new_state(h_t, n, z, h):
    """h_t = n + z (h - n), row-wise; then h = h_t."""
    for j in range(h_t.shape[0]):
        h_t[j] = n[j] + z[j] * (h[j] - n[j])
    h[:] = h_t


@jit
def _gru_forward(xp, w_hh_t, b_hh, gz, gn, h0, lengths, reverse, out, acts, n_rec, h_prev):
    """The recurrence over all steps, r applied after the product; returns h_n.

    xp (T, B, 3H): x W_ih^T + b_ih; w_hh_t: ``plan_product(W_hh^T, B)``; b_hh (3H,); gz, gn:
    where the z and n blocks start in a row of gates (r starts at 0); h0 (B, H); lengths
    (B,) int64; reverse: bool. Written: out (T, B, H) h_t, acts (T, B, 3H) the gates and
    n_rec (T, B, H) h_{t-1} W_hn^T + b_hn at valid steps; h_prev (T, B, H) at every step.
    """
    steps, batch, hidden = out.shape
    h = h0.copy()
    hw = np.empty((batch, 3 * hidden), dtype=xp.dtype)  # h_{t-1} W_hh^T, then + b_hh
    parts = product_scratch(batch, w_hh_t)
    for s in range(steps):
        t = time_step(s, steps, reverse)
        h_prev[t] = h
        product_into(h, w_hh_t, parts, hw)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, xp_t, hw_t, hn = acts[t, b], xp[t, b], hw[b], n_rec[t, b]
            hw_t += b_hh
            sigmoid_rows(a[:gn], xp_t[:gn], hw_t[:gn])  # r and z
            r, n = a[:gz], a[gn:]
            hn[:] = hw_t[gn:]
            for j in range(hidden):
                n[j] = tanh(xp_t[gn + j] + r[j] * hn[j])
            _new_state(out[t, b], n, a[gz:gn], h[b])
    return h


@jit
def _gru_backward(d_out, d_h_n, w_hh, gz, gn, lengths, reverse, acts, n_rec, h_prev, d_xp, d_hw, grad_norms):
    """BPTT over all steps, r applied after the product; returns dh0.

    d_out (T, B, H), d_h_n (B, H): the incoming gradients; w_hh: ``plan_product(W_hh, B)``;
    gz, gn, lengths, reverse as for ``_gru_forward``, and its acts, n_rec and h_prev.
    Written at valid steps (zero them at padded steps before the call): d_xp (T, B, 3H)
    the gradient of xp, d_hw (T, B, 3H) that of h_{t-1} W_hh^T + b_hh; grad_norms (1, T, B)
    ||dL/dh_t||, unless it is (1, 0, 0) (record nothing).
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
            a, d_a, dh_t, hn, h_last = acts[t, b], d_xp[t, b], dh[b], n_rec[t, b], h_prev[t, b]
            r, z, n = a[:gz], a[gz:gn], a[gn:]
            dr, dz, dn = d_a[:gz], d_a[gz:gn], d_a[gn:]
            dh_t += d_out[t, b]
            for j in range(hidden):
                dn[j] = dh_t[j] * (1.0 - z[j]) * (1.0 - n[j] * n[j])
            for j in range(hidden):
                dz[j] = dh_t[j] * (h_last[j] - n[j]) * z[j] * (1.0 - z[j])
            for j in range(hidden):
                dr[j] = dn[j] * hn[j] * r[j] * (1.0 - r[j])
            d_hw[t, b, :gn] = d_a[:gn]
            d_hn = d_hw[t, b, gn:]
            for j in range(hidden):
                d_hn[j] = dn[j] * r[j]
            dh_t *= z  # the direct path of h_t = n + z (h_{t-1} - n)
        product_into(d_hw[t], w_hh, parts, dh_rec)
        add_state_grad(t, lengths, dh, dh_rec)
    return dh


@jit
def _gru_classic_forward(xp, w_rz_t, w_n_t, b_hh, gz, gn, h0, lengths, reverse, out, acts, n_rec, h_prev):
    """The recurrence over all steps, r applied before the product (Cho et al.); returns h_n.

    As ``_gru_forward``, but with W_hh^T planned in two parts, w_rz_t (the r and z
    columns) and w_n_t (n's), and n_rec written with r * h_{t-1} at every step.
    """
    steps, batch, hidden = out.shape
    h = h0.copy()
    hw_rz = np.empty((batch, gn), dtype=xp.dtype)  # h_{t-1} W_h{r,z}^T, then + b_h{r,z}
    rhw = np.empty_like(h)  # (r * h_{t-1}) W_hn^T, then + b_hn
    parts_rz, parts_n = product_scratch(batch, w_rz_t), product_scratch(batch, w_n_t)
    for s in range(steps):
        t = time_step(s, steps, reverse)
        h_prev[t] = h
        product_into(h, w_rz_t, parts_rz, hw_rz)
        for b in range(batch):  # every row, padded or not: n's product takes all of rh[t]
            a, hw_t = acts[t, b], hw_rz[b]
            hw_t += b_hh[:gn]
            sigmoid_rows(a[:gn], xp[t, b, :gn], hw_t)  # r and z
            rh_t, r, h_b = n_rec[t, b], a[:gz], h[b]
            for j in range(hidden):
                rh_t[j] = r[j] * h_b[j]
        product_into(n_rec[t], w_n_t, parts_n, rhw)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, rhw_t = acts[t, b], rhw[b]
            rhw_t += b_hh[gn:]
            tanh_rows(a[gn:], xp[t, b, gn:], rhw_t)
            _new_state(out[t, b], a[gn:], a[gz:gn], h[b])
    return h


@jit
def _gru_classic_backward(d_out, d_h_n, w_rz, w_n, gz, gn, lengths, reverse, acts, n_rec, h_prev, d_xp, grad_norms):
    """BPTT over all steps, r applied before the product; returns dh0.

    As ``_gru_backward`` with W_hh planned in two parts (w_rz: its r and z rows, w_n: n's);
    only d_xp and grad_norms are written (the gradient of b_hh equals b_ih's in this form).
    """
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    d_rh = np.empty_like(dh)  # the gradient of r * h_{t-1}
    dh_rec = np.empty_like(dh)
    d_n, d_rz = np.empty_like(dh), np.empty((batch, gn), dtype=dh.dtype)  # contiguous for the products
    parts_rz, parts_n = product_scratch(batch, w_rz), product_scratch(batch, w_n)
    record = grad_norms.shape[1] > 0
    for s in range(steps):
        t = time_step(s, steps, not reverse)  # BPTT runs the other way
        if record:
            record_norms(grad_norms, 0, t, lengths, dh, d_out[t])
        d_a = d_xp[t]
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, dh_t, h_last, dz, dn = acts[t, b], dh[b], h_prev[t, b], d_a[b, gz:gn], d_a[b, gn:]
            z, n = a[gz:gn], a[gn:]
            dh_t += d_out[t, b]
            for j in range(hidden):
                dn[j] = dh_t[j] * (1.0 - z[j]) * (1.0 - n[j] * n[j])
            for j in range(hidden):
                dz[j] = dh_t[j] * (h_last[j] - n[j]) * z[j] * (1.0 - z[j])
            dh_t *= z  # the direct path of h_t = n + z (h_{t-1} - n)
        d_n[:] = d_a[:, gn:]
        product_into(d_n, w_n, parts_n, d_rh)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            r, h_last, dr, drh, dh_t = acts[t, b, :gz], h_prev[t, b], d_a[b, :gz], d_rh[b], dh[b]
            for j in range(hidden):
                dr[j] = drh[j] * h_last[j] * r[j] * (1.0 - r[j])
            add_product(dh_t, drh, r)
        d_rz[:] = d_a[:, :gn]
        product_into(d_rz, w_rz, parts_rz, dh_rec)
        add_state_grad(t, lengths, dh, dh_rec)
    return dh


def gru_forward(x, h0, weights, lengths=None, reverse=False, reset_after=True):
    """Run one GRU layer in one direction over all T steps.

    x (T, B, I); h0 (B, H); ``weights``: w_ih (3H, I), w_hh (3H, H), and optionally b_ih
    and b_hh (3H,); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0;
    ``reset_after`` picks the form (see the module docstring). Returns a ``Forward``: out
    (T, B, H), h_n (B, H), c_n None, saved.
    """
    inputs = check_inputs("gru_forward", num_gates("GRU"), x, (h0,), weights, lengths, reverse)
    w, h0, lengths = inputs.w, inputs.states[0], inputs.lengths
    (steps, batch, _), hidden = inputs.x.shape, h0.shape[1]
    gz, gn = _gate_starts(hidden)
    w_hh = w["w_hh"]
    b_hh = w["b_hh"] if "b_hh" in w else np.zeros(3 * hidden, dtype=h0.dtype)
    xp = project(inputs.x, w["w_ih"], w.get("b_ih"))
    out = np.empty((steps, batch, hidden), dtype=xp.dtype)
    acts = np.empty_like(xp)
    h_prev, n_rec = np.empty_like(out), np.empty_like(out)
    if reset_after:
        h_n = _gru_forward(xp, plan_product(w_hh.T, batch), b_hh, gz, gn, h0, lengths, reverse, out, acts, n_rec,
                           h_prev)
    else:
        w_rz_t, w_n_t = plan_product(w_hh[:gn].T, batch), plan_product(w_hh[gn:].T, batch)
        h_n = _gru_classic_forward(xp, w_rz_t, w_n_t, b_hh, gz, gn, h0, lengths, reverse, out, acts, n_rec, h_prev)
    zero_padding(inputs.padding, out)
    return Forward(out, h_n, None, GRUSaved(inputs, reset_after, acts, n_rec, h_prev))


def gru_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through a ``gru_forward`` call in one call; returns a ``Grads`` (x None unless
    ``need_dx``). ``grad_norms``, if given, a (1, T, B) array: written with ||dL/dh_t|| of
    every sequence at every step (zero at padded steps)."""
    inputs = saved.inputs
    d_out, d_h_n = (np.ascontiguousarray(a, dtype=inputs.x.dtype) for a in (d_out, d_h_n))
    batch, hidden = d_out.shape[1], d_out.shape[2]
    gz, gn = _gate_starts(hidden)
    w_hh, lengths, reverse = inputs.w["w_hh"], inputs.lengths, inputs.reverse
    d_xp = np.empty_like(saved.acts)
    grad_norms = norm_buffer("gru_backward", grad_norms, 1, inputs)
    if saved.reset_after:
        d_hw = np.empty_like(saved.acts)
        zero_padding(inputs.padding, d_xp, d_hw)
        dh0 = _gru_backward(d_out, d_h_n, plan_product(w_hh, batch), gz, gn, lengths, reverse, saved.acts,
                            saved.n_rec, saved.h_prev, d_xp, d_hw, grad_norms)
        dw_hh = weight_grad(d_hw, saved.h_prev)
        db_hh = d_hw.reshape(-1, 3 * hidden).sum(axis=0)
    else:
        zero_padding(inputs.padding, d_xp)
        w_rz, w_n = plan_product(w_hh[:gn], batch), plan_product(w_hh[gn:], batch)
        dh0 = _gru_classic_backward(d_out, d_h_n, w_rz, w_n, gz, gn, lengths, reverse, saved.acts, saved.n_rec,
                                    saved.h_prev, d_xp, grad_norms)
        dw_hh = np.concatenate([weight_grad(d_xp[..., :gn], saved.h_prev), weight_grad(d_xp[..., gn:], saved.n_rec)])
        db_hh = None
    dx, dw_ih, db_ih = input_grads(inputs, d_xp, need_dx)
    if db_hh is None:
        db_hh = db_ih.copy()  # b_hh is added where b_ih is
    return weight_grads(inputs.w, x=dx, h0=dh0, w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh)


def _gate_starts(hidden):
    """Where the z and n blocks start in a row of stacked gates (``tinyseq.gates``); r starts at
    0. The loops take r and z as the blocks before n (one sigmoid over both)."""
    return tuple(gate_slice("GRU", gate, hidden).start for gate in ("z", "n"))
