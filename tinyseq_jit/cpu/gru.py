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

from .._jit import jit
from ._common import (
    check_inputs, input_grads, matmul_into, project, sigmoid, small_product, tanh, weight_grad,
)


@jit
def _gru_forward(xp, w_hh_t, b_hh, h0, lengths, reverse, small, out, acts, hp_n, h_prev):
    steps, batch, hidden = out.shape
    h = h0.copy()
    hp = np.empty((batch, 3 * hidden), dtype=xp.dtype)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        matmul_into(h, w_hh_t, hp, small)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                continue
            for j in range(hidden):
                r = sigmoid(xp[t, b, j] + (hp[b, j] + b_hh[j]))
                z = sigmoid(xp[t, b, hidden + j] + (hp[b, hidden + j] + b_hh[hidden + j]))
                hn = hp[b, 2 * hidden + j] + b_hh[2 * hidden + j]
                n = tanh(xp[t, b, 2 * hidden + j] + r * hn)
                h_t = n + z * (h[b, j] - n)
                acts[t, b, j], acts[t, b, hidden + j], acts[t, b, 2 * hidden + j] = r, z, n
                hp_n[t, b, j] = hn
                out[t, b, j] = h_t
                h[b, j] = h_t
    return h


@jit
def _gru_backward(d_out, d_h_n, w_hh, lengths, reverse, small, acts, hp_n, h_prev, d_xp, d_hp):
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    dh_rec = np.empty_like(dh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            if t >= lengths[b]:
                d_xp[t, b] = 0.0
                d_hp[t, b] = 0.0
                continue
            for j in range(hidden):
                r, z, n = acts[t, b, j], acts[t, b, hidden + j], acts[t, b, 2 * hidden + j]
                dh_t = dh[b, j] + d_out[t, b, j]
                dn_pre = dh_t * (1.0 - z) * (1.0 - n * n)
                dz_pre = dh_t * (h_prev[t, b, j] - n) * z * (1.0 - z)
                dr_pre = dn_pre * hp_n[t, b, j] * r * (1.0 - r)
                d_xp[t, b, j], d_xp[t, b, hidden + j], d_xp[t, b, 2 * hidden + j] = dr_pre, dz_pre, dn_pre
                d_hp[t, b, j], d_hp[t, b, hidden + j], d_hp[t, b, 2 * hidden + j] = dr_pre, dz_pre, dn_pre * r
                dh[b, j] = dh_t * z
        matmul_into(d_hp[t], w_hh, dh_rec, small)
        for b in range(batch):
            if t < lengths[b]:
                for j in range(hidden):
                    dh[b, j] += dh_rec[b, j]
    return dh


@jit
def _gru_classic_forward(xp, w_rz_t, w_n_t, b_hh, h0, lengths, reverse, small, out, acts, rh, h_prev):
    steps, batch, hidden = out.shape
    h = h0.copy()
    hp = np.empty((batch, 2 * hidden), dtype=xp.dtype)
    rh_t = np.empty_like(h)
    hn = np.empty_like(h)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        h_prev[t] = h
        matmul_into(h, w_rz_t, hp, small)
        for b in range(batch):
            for j in range(hidden):
                r = sigmoid(xp[t, b, j] + (hp[b, j] + b_hh[j]))
                z = sigmoid(xp[t, b, hidden + j] + (hp[b, hidden + j] + b_hh[hidden + j]))
                acts[t, b, j], acts[t, b, hidden + j] = r, z
                rh_t[b, j] = r * h[b, j]
        rh[t] = rh_t
        matmul_into(rh_t, w_n_t, hn, small)
        for b in range(batch):
            if t >= lengths[b]:
                out[t, b] = 0.0
                acts[t, b] = 0.0
                continue
            for j in range(hidden):
                n = tanh(xp[t, b, 2 * hidden + j] + hn[b, j] + b_hh[2 * hidden + j])
                z = acts[t, b, hidden + j]
                h_t = n + z * (h[b, j] - n)
                acts[t, b, 2 * hidden + j] = n
                out[t, b, j] = h_t
                h[b, j] = h_t
    return h


@jit
def _gru_classic_backward(d_out, d_h_n, w_rz, w_n, lengths, reverse, small, acts, rh, h_prev, d_xp):
    steps, batch, hidden = d_out.shape
    dh = d_h_n.copy()
    d_n = np.zeros_like(dh)
    d_rz = np.zeros((batch, 2 * hidden), dtype=dh.dtype)
    d_rh = np.empty_like(dh)
    dh_rec = np.empty_like(dh)
    for s in range(steps):
        t = s if reverse else steps - 1 - s
        for b in range(batch):
            for j in range(hidden):
                d_n[b, j] = 0.0
                if t < lengths[b]:
                    z, n = acts[t, b, hidden + j], acts[t, b, 2 * hidden + j]
                    dh_t = dh[b, j] + d_out[t, b, j]
                    d_n[b, j] = dh_t * (1.0 - z) * (1.0 - n * n)
                    d_rz[b, hidden + j] = dh_t * (h_prev[t, b, j] - n) * z * (1.0 - z)
                    dh[b, j] = dh_t * z
        matmul_into(d_n, w_n, d_rh, small)
        for b in range(batch):
            if t >= lengths[b]:
                d_xp[t, b] = 0.0
                d_rz[b] = 0.0
                continue
            for j in range(hidden):
                r = acts[t, b, j]
                d_rz[b, j] = d_rh[b, j] * h_prev[t, b, j] * r * (1.0 - r)
                dh[b, j] += d_rh[b, j] * r
                d_xp[t, b, j], d_xp[t, b, hidden + j] = d_rz[b, j], d_rz[b, hidden + j]
                d_xp[t, b, 2 * hidden + j] = d_n[b, j]
        matmul_into(d_rz, w_rz, dh_rec, small)
        for b in range(batch):
            if t < lengths[b]:
                for j in range(hidden):
                    dh[b, j] += dh_rec[b, j]
    return dh


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, reset_after=True):
    """Run one GRU layer in one direction over all T steps.

    x (T, B, I); h0 (B, H); w_ih (3H, I); w_hh (3H, H); biases (3H,) or None; ``lengths``
    (B,) or None; ``reverse`` runs t = T-1 .. 0; ``reset_after`` picks the form (see the
    module docstring). Returns ``out`` (T, B, H), ``h_n`` (B, H) and ``ctx``, what
    ``gru_backward`` needs.
    """
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = check_inputs("gru_forward", 3, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    hidden = h0.shape[1]
    xp = project(x, w_ih, b_ih)
    bias_hh = np.zeros(3 * hidden, dtype=x.dtype) if b_hh is None else b_hh
    out = np.empty((x.shape[0], x.shape[1], hidden), dtype=x.dtype)
    acts = np.empty_like(xp)
    h_prev, saved = np.empty_like(out), np.empty_like(out)  # saved: W_hn h + b_hn, or r * h
    small = small_product(x.shape[1], w_hh)
    if reset_after:
        h_n = _gru_forward(xp, np.ascontiguousarray(w_hh.T), bias_hh, h0, lengths, reverse, small, out, acts, saved,
                           h_prev)
    else:
        w_rz_t, w_n_t = np.ascontiguousarray(w_hh[: 2 * hidden].T), np.ascontiguousarray(w_hh[2 * hidden :].T)
        h_n = _gru_classic_forward(xp, w_rz_t, w_n_t, bias_hh, h0, lengths, reverse, small, out, acts, saved,
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
    d_xp = np.empty_like(acts)
    small = small_product(d_out.shape[1], w_hh)
    if reset_after:
        d_hp = np.empty_like(acts)
        dh0 = _gru_backward(d_out, d_h_n, w_hh, lengths, reverse, small, acts, saved, h_prev, d_xp, d_hp)
        dw_hh = weight_grad(d_hp, h_prev)
        db_hh = d_hp.reshape(-1, 3 * hidden).sum(axis=0)
    else:
        w_rz, w_n = np.ascontiguousarray(w_hh[: 2 * hidden]), np.ascontiguousarray(w_hh[2 * hidden :])
        dh0 = _gru_classic_backward(d_out, d_h_n, w_rz, w_n, lengths, reverse, small, acts, saved, h_prev, d_xp)
        dw_hh = np.concatenate([weight_grad(d_xp[..., : 2 * hidden], h_prev), weight_grad(d_xp[..., 2 * hidden :], saved)])
        db_hh = None
    dx, dw_ih, db_ih = input_grads(x, w_ih, d_xp, need_dx)
    if db_hh is None:
        db_hh = db_ih.copy()
    return dx, dh0, dw_ih, dw_hh, db_ih if has_b_ih else None, db_hh if has_b_hh else None
