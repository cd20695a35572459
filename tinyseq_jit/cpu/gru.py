"""Fused GRU layer-direction, both forms; gates stacked r, z, n as PyTorch.

    r = sigmoid(xp_r + h W_hr^T + b_hr),  z = sigmoid(xp_z + h W_hz^T + b_hz)
    reset_after=True  (PyTorch, cuDNN):  n = tanh(xp_n + r * (h W_hn^T + b_hn))
    reset_after=False (Cho et al. 2014): n = tanh(xp_n + (r * h) W_hn^T + b_hn)
    h' = n + z * (h - n)                 (= (1 - z) * n + z * h)

where xp = x W_ih^T + b_ih is made for all steps before the loop. The classic form needs
two matmuls per step (the second waits for r). A sequence past its length keeps its state
and outputs zeros.
"""

import numpy as np

from tinyseq.gates import gate_slice, num_gates

from .._jit import jit
from ._common import (
    add_product, check_inputs, input_grads, plan_product, product_into, product_scratch, project, sigmoid_rows, tanh,
    tanh_rows, weight_grad,
)


@jit
def _new_state(h_t, n, z, h):
    """h_t = n + z (h - n), row-wise; then h = h_t."""
    for j in range(h_t.shape[0]):
        h_t[j] = n[j] + z[j] * (h[j] - n[j])
    h[:] = h_t


@jit
def _gru_forward(xp, w_hh_t, b_hh, gz, gn, h0, lengths, reverse, out, acts, hp_n, h_prev):
    steps, batch, hidden = out.shape
    h = h0.copy()
    hp = np.empty((batch, 3 * hidden), dtype=xp.dtype)
    parts = product_scratch(batch, w_hh_t)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        product_into(h, w_hh_t, parts, hp)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                continue
            a, x, z = acts[t, b], xp[t, b], hp[b]
            z += b_hh
            sigmoid_rows(a[:gn], x[:gn], z[:gn])  # r, z
            hn, r, n = hp_n[t, b], a[:gz], a[gn:]
            hn[:] = z[gn:]  # W_hn h + b_hn
            for j in range(hidden):
                n[j] = tanh(x[gn + j] + r[j] * hn[j])
            _new_state(out[t, b], n, a[gz:gn], h[b])
    return h


@jit
def _gru_backward(d_out, d_h_n, w_hh, gz, gn, lengths, reverse, acts, hp_n, h_prev, d_xp, d_hp):
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    dh_rec = np.empty_like(dh)
    parts = product_scratch(batch, w_hh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if t >= lengths[b]:
                d_xp[t, b] = 0.0
                d_hp[t, b] = 0.0
                continue
            a, dx, dh_t, hn, hp = acts[t, b], d_xp[t, b], dh[b], hp_n[t, b], h_prev[t, b]
            r, z, n = a[:gz], a[gz:gn], a[gn:]
            dr, dz, dn = dx[:gz], dx[gz:gn], dx[gn:]
            dh_t += d_out[t, b]
            for j in range(hidden):
                dn[j] = dh_t[j] * (1.0 - z[j]) * (1.0 - n[j] * n[j])
            for j in range(hidden):
                dz[j] = dh_t[j] * (hp[j] - n[j]) * z[j] * (1.0 - z[j])
            for j in range(hidden):
                dr[j] = dn[j] * hn[j] * r[j] * (1.0 - r[j])
            d_hp[t, b, :gn] = dx[:gn]
            d_hn = d_hp[t, b, gn:]
            for j in range(hidden):
                d_hn[j] = dn[j] * r[j]
            dh_t *= z
        product_into(d_hp[t], w_hh, parts, dh_rec)
        for b in range(batch):
            if t < lengths[b]:
                dh[b] += dh_rec[b]
    return dh


@jit
def _gru_classic_forward(xp, w_rz_t, w_n_t, b_hh, gz, gn, h0, lengths, reverse, out, acts, rh, h_prev):
    steps, batch, hidden = out.shape
    h = h0.copy()
    hp = np.empty((batch, gn), dtype=xp.dtype)
    hn = np.empty_like(h)
    parts_rz, parts_n = product_scratch(batch, w_rz_t), product_scratch(batch, w_n_t)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        product_into(h, w_rz_t, parts_rz, hp)
        for b in range(batch):
            a, z = acts[t, b], hp[b]
            z += b_hh[:gn]
            sigmoid_rows(a[:gn], xp[t, b, :gn], z)
            rh_t, r, h_b = rh[t, b], a[:gz], h[b]
            for j in range(hidden):
                rh_t[j] = r[j] * h_b[j]
        product_into(rh[t], w_n_t, parts_n, hn)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                acts[t, b] = 0.0
                continue
            a, z = acts[t, b], hn[b]
            z += b_hh[gn:]
            tanh_rows(a[gn:], xp[t, b, gn:], z)
            _new_state(out[t, b], a[gn:], a[gz:gn], h[b])
    return h


@jit
def _gru_classic_backward(d_out, d_h_n, w_rz, w_n, gz, gn, lengths, reverse, acts, rh, h_prev, d_xp):
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    d_rh = np.empty_like(dh)
    dh_rec = np.empty_like(dh)
    d_n, d_rz = np.empty_like(dh), np.empty((batch, gn), dtype=dh.dtype)  # contiguous for the products
    parts_rz, parts_n = product_scratch(batch, w_rz), product_scratch(batch, w_n)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        d_x = d_xp[t]
        d_x[:] = 0.0
        for b in range(batch):
            if t >= lengths[b]:
                continue
            a, dh_t, hp, dz, dn = acts[t, b], dh[b], h_prev[t, b], d_x[b, gz:gn], d_x[b, gn:]
            z, n = a[gz:gn], a[gn:]
            dh_t += d_out[t, b]
            for j in range(hidden):
                dn[j] = dh_t[j] * (1.0 - z[j]) * (1.0 - n[j] * n[j])
            for j in range(hidden):
                dz[j] = dh_t[j] * (hp[j] - n[j]) * z[j] * (1.0 - z[j])
            dh_t *= z
        d_n[:] = d_x[:, gn:]
        product_into(d_n, w_n, parts_n, d_rh)
        for b in range(batch):
            if t >= lengths[b]:
                continue
            r, hp, dr, drh, dh_b = acts[t, b, :gz], h_prev[t, b], d_x[b, :gz], d_rh[b], dh[b]
            for j in range(hidden):
                dr[j] = drh[j] * hp[j] * r[j] * (1.0 - r[j])
            add_product(dh_b, drh, r)
        d_rz[:] = d_x[:, :gn]
        product_into(d_rz, w_rz, parts_rz, dh_rec)
        for b in range(batch):
            if t < lengths[b]:
                dh[b] += dh_rec[b]
    return dh


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, reset_after=True):
    """Run one GRU layer in one direction over all T steps.

    x (T, B, I); h0 (B, H); w_ih (3H, I); w_hh (3H, H); biases (3H,) or None; ``lengths``
    (B,) or None; ``reverse`` runs t = T-1 .. 0; ``reset_after`` picks the form (see the
    module docstring). Returns ``out`` (T, B, H), ``h_n`` (B, H) and ``ctx``, what
    ``gru_backward`` needs.
    """
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = check_inputs("gru_forward", num_gates("GRU"), x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    hidden = h0.shape[1]
    gz, gn = _gate_offsets(hidden)
    xp = project(x, w_ih, b_ih)
    bias_hh = np.zeros(3 * hidden, dtype=x.dtype) if b_hh is None else b_hh
    out = np.empty((x.shape[0], x.shape[1], hidden), dtype=x.dtype)
    acts = np.empty_like(xp)
    h_prev, saved = np.empty_like(out), np.empty_like(out)  # saved: W_hn h + b_hn, or r * h
    batch = x.shape[1]
    if reset_after:
        h_n = _gru_forward(xp, plan_product(w_hh.T, batch), bias_hh, gz, gn, h0, lengths, reverse, out, acts, saved,
                           h_prev)
    else:
        w_rz_t, w_n_t = plan_product(w_hh[:gn].T, batch), plan_product(w_hh[gn:].T, batch)
        h_n = _gru_classic_forward(xp, w_rz_t, w_n_t, bias_hh, gz, gn, h0, lengths, reverse, out, acts, saved,
                                   h_prev)
    ctx = (x, w_ih, w_hh, b_ih is not None, b_hh is not None, reset_after, lengths, reverse, acts, saved, h_prev)
    return out, h_n, ctx


def gru_backward(ctx, d_out, d_h_n, need_dx=True):
    """BPTT through a ``gru_forward`` call in one call.

    Returns ``(dx, dh0, dw_ih, dw_hh, db_ih, db_hh)``; ``db_*`` are None where that bias
    was None and ``dx`` is None when ``need_dx`` is False.
    """
    x, w_ih, w_hh, has_b_ih, has_b_hh, reset_after, lengths, reverse, acts, saved, h_prev = ctx
    d_out, d_h_n = (np.ascontiguousarray(a, dtype=x.dtype) for a in (d_out, d_h_n))
    hidden = h_prev.shape[2]
    gz, gn = _gate_offsets(hidden)
    d_xp = np.empty_like(acts)
    batch = d_out.shape[1]
    if reset_after:
        d_hp = np.empty_like(acts)
        dh0 = _gru_backward(d_out, d_h_n, plan_product(w_hh, batch), gz, gn, lengths, reverse, acts, saved, h_prev,
                            d_xp, d_hp)
        dw_hh = weight_grad(d_hp, h_prev)
        db_hh = d_hp.reshape(-1, 3 * hidden).sum(axis=0)
    else:
        w_rz, w_n = plan_product(w_hh[:gn], batch), plan_product(w_hh[gn:], batch)
        dh0 = _gru_classic_backward(d_out, d_h_n, w_rz, w_n, gz, gn, lengths, reverse, acts, saved, h_prev, d_xp)
        dw_hh = np.concatenate([weight_grad(d_xp[..., :gn], h_prev), weight_grad(d_xp[..., gn:], saved)])
        db_hh = None
    dx, dw_ih, db_ih = input_grads(x, w_ih, d_xp, need_dx)
    if db_hh is None:
        db_hh = db_ih.copy()
    return dx, dh0, dw_ih, dw_hh, db_ih if has_b_ih else None, db_hh if has_b_hh else None


def _gate_offsets(hidden):
    """Where the z and n blocks start in a row of stacked gates (``tinyseq.gates``); r starts at 0.
    The loops take r and z as the blocks before n (one sigmoid over both)."""
    return tuple(gate_slice("GRU", gate, hidden).start for gate in ("z", "n"))
