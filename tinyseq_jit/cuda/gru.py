"""Fused GRU layer-direction on the GPU, both forms; gates stacked r, z, n as PyTorch.

The same entry points, arguments, checks, contract and numbers as ``tinyseq_jit.cpu.gru``:

    r = sigmoid(xp_r + h W_hr^T + b_hr),  z = sigmoid(xp_z + h W_hz^T + b_hz)
    reset_after=True  (PyTorch, cuDNN):  n = tanh(xp_n + r * (h W_hn^T + b_hn))
    reset_after=False (Cho et al. 2014): n = tanh(xp_n + (r * h) W_hn^T + b_hn)
    h' = n + z * (h - n)

The two paths of ``cuda/rnn.py``, with the step's maths in ``cell`` and ``cell_grad``.
For H <= MAX_HIDDEN one kernel runs all T steps of either form (2 launches forward, 6
backward with dx). Otherwise, per step: PyTorch's form takes one ``gemm`` and one
point-wise kernel (2T + 1 forward, 2T + 5 backward with dx); the classic form waits for r
before its second product, so it takes two of each (4T + 1 forward, 4T + 5 backward with
dx); recording gradient norms adds T.
"""

from typing import NamedTuple

import numba
from numba import cuda

from tinyseq.gates import num_gates

from .._contract import Forward
from ..cpu._common import Inputs, norm_buffer
from ..cpu.gru import _gate_starts
from . import _common
from ._arrays import copy, receive, receive_grads, send_grads, zeros
from ._common import (
    GATES_HIDDEN, MAX_HIDDEN, ROWS, activations, block_grid, block_norm, column_sums, grid, input_grads, line, named,
    per_block, signatures,
)
from ._gemm import FLOATS, gemm
from ._runtime import launch, require


class GRUSaved(NamedTuple):
    """What ``gru_backward`` needs from ``gru_forward``; the arrays stay on the device."""

    inputs: Inputs  # the checked arguments, x, h0 and the weights on the device
    reset_after: bool
    lengths: object  # (B,) device array
    acts: object  # (T, B, 3H): the gates r, z, n after their non-linearities
    n_rec: object  # (T, B, H): n's recurrent input: h_{t-1} W_hn^T + b_hn, or r * h_{t-1} (classic)
    h_prev: object  # (T, B, H): h_{t-1}


def _make_kernels(dtype):
    zero, one = dtype.type(0), dtype.type(1)
    scalar = numba.from_dtype(dtype)
    sigmoid, tanh = activations(dtype)
    state_grad_norm = block_norm(dtype)

    @cuda.jit(device=True, inline="always")
    def cell(x_r, x_z, x_n, h_r, h_z, h_n, h_last):
        """One unit's step with r applied after the product, shared by both paths: the gates'
        input parts x_* (xp + b_ih) and recurrent parts h_* (h_{t-1} W_hh^T + b_hh); returns
        r, z, n, h_t."""
        r = sigmoid(x_r + h_r)
        z = sigmoid(x_z + h_z)
        n = tanh(x_n + r * h_n)
        return r, z, n, n + z * (h_last - n)

    @cuda.jit(device=True, inline="always")
    def cell_grad(dh_t, r, z, n, h_n, h_last):
        """One unit's BPTT step, r after the product: dr, dz, dn from dL/dh_t (the direct path to
        h_{t-1} is dh_t * z)."""
        dn = dh_t * (one - z) * (one - n * n)
        dz = dh_t * (h_last - n) * z * (one - z)
        return dn * h_n * r * (one - r), dz, dn

    def gru_step_forward(xp, b_ih, b_hh, hw, gz, gn, h, lengths, t, out, acts, n_rec, h_prev):
        """Step t, r applied after the product, for every (b, j): xp (T, B, 3H) x W_ih^T; hw (B, 3H)
        h_{t-1} W_hh^T; h (B, H) the state, updated. Written: h_prev[t] everywhere, out[t] (0 at
        padded steps), acts[t] and n_rec[t] at valid steps."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            h_last = h[b, j]
            h_prev[t, b, j] = h_last
            if t < lengths[b]:
                hn = hw[b, gn + j] + b_hh[gn + j]
                r, z, n, h_t = cell(xp[t, b, j] + b_ih[j], xp[t, b, gz + j] + b_ih[gz + j],
                                    xp[t, b, gn + j] + b_ih[gn + j], hw[b, j] + b_hh[j], hw[b, gz + j] + b_hh[gz + j],
                                    hn, h_last)
                acts[t, b, j], acts[t, b, gz + j], acts[t, b, gn + j] = r, z, n
                n_rec[t, b, j] = hn
                out[t, b, j] = h_t
                h[b, j] = h_t
            else:
                out[t, b, j] = zero

    def gru_step_backward(d_out, dh, lengths, t, gz, gn, acts, n_rec, h_prev, d_xp, d_hw):
        """BPTT step t, r applied after the product, for every (b, j): dh (B, H) holds dL/dh_t from
        the later steps and becomes z * dL/dh_t, the direct path (the next gemm adds the rest).
        Written: d_xp[t] and d_hw[t] (the gradients of xp and of h_{t-1} W_hh^T + b_hh; zeros at
        padded steps)."""
        j, b = cuda.grid(2)
        batch, hidden = dh.shape
        if b < batch and j < hidden:
            if t < lengths[b]:
                r, z = acts[t, b, j], acts[t, b, gz + j]
                dh_t = dh[b, j] + d_out[t, b, j]
                dr, dz, dn = cell_grad(dh_t, r, z, acts[t, b, gn + j], n_rec[t, b, j], h_prev[t, b, j])
                d_xp[t, b, j], d_xp[t, b, gz + j], d_xp[t, b, gn + j] = dr, dz, dn
                d_hw[t, b, j], d_hw[t, b, gz + j], d_hw[t, b, gn + j] = dr, dz, dn * r
                dh[b, j] = dh_t * z
            else:
                for k in range(3):
                    d_xp[t, b, k * hidden + j] = zero
                    d_hw[t, b, k * hidden + j] = zero

    def gru_classic_gates(xp, b_ih, b_hh, hw_rz, gz, h, t, acts, n_rec):
        """Step t of the classic form, first half, for every (b, j), padded or not (n's product
        takes all of n_rec[t]): r and z from hw_rz (B, 2H) h_{t-1} W_h{r,z}^T; n_rec[t] = r * h."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            r = sigmoid((xp[t, b, j] + b_ih[j]) + (hw_rz[b, j] + b_hh[j]))
            z = sigmoid((xp[t, b, gz + j] + b_ih[gz + j]) + (hw_rz[b, gz + j] + b_hh[gz + j]))
            acts[t, b, j], acts[t, b, gz + j] = r, z
            n_rec[t, b, j] = r * h[b, j]

    def gru_classic_state(xp, b_ih, b_hh, rhw, gn, h, lengths, t, out, acts, h_prev):
        """Step t of the classic form, second half: n from rhw (B, H) (r * h_{t-1}) W_hn^T, then the
        new state. Written: h_prev[t] everywhere, out[t] (0 at padded steps), acts[t]'s n at
        valid steps."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            h_last = h[b, j]
            h_prev[t, b, j] = h_last
            if t < lengths[b]:
                n = tanh((xp[t, b, gn + j] + b_ih[gn + j]) + (rhw[b, j] + b_hh[gn + j]))
                acts[t, b, gn + j] = n
                z = acts[t, b, gn - hidden + j]
                h_t = n + z * (h_last - n)
                out[t, b, j] = h_t
                h[b, j] = h_t
            else:
                out[t, b, j] = zero

    def gru_classic_step_backward(d_out, dh, lengths, t, gz, gn, acts, h_prev, d_xp):
        """BPTT step t of the classic form, first half: dn and dz into d_xp[t] (zeros at padded
        steps, r's too); dh becomes z * dL/dh_t."""
        j, b = cuda.grid(2)
        batch, hidden = dh.shape
        if b < batch and j < hidden:
            if t < lengths[b]:
                z, n = acts[t, b, gz + j], acts[t, b, gn + j]
                dh_t = dh[b, j] + d_out[t, b, j]
                d_xp[t, b, gn + j] = dh_t * (one - z) * (one - n * n)
                d_xp[t, b, gz + j] = dh_t * (h_prev[t, b, j] - n) * z * (one - z)
                dh[b, j] = dh_t * z
            else:
                for k in range(3):
                    d_xp[t, b, k * hidden + j] = zero

    def gru_classic_reset_backward(d_rh, dh, lengths, t, acts, h_prev, d_xp):
        """BPTT step t of the classic form, second half: from d_rh (B, H), the gradient of r * h_{t-1},
        r's gradient into d_xp[t] and d_rh * r into dh, at valid steps."""
        j, b = cuda.grid(2)
        batch, hidden = dh.shape
        if b < batch and j < hidden and t < lengths[b]:
            r = acts[t, b, j]
            d_xp[t, b, j] = d_rh[b, j] * h_prev[t, b, j] * r * (one - r)
            dh[b, j] += d_rh[b, j] * r

    def gru_block_forward(xp, b_ih, b_hh, w_hh, reset_after, gz, gn, h0, lengths, reverse, out, acts, n_rec, h_prev,
                          h_n):
        """The whole recurrence, either form, ROWS sequences per block, the state in shared memory;
        w_hh (3H, H). Written: out (0 at padded steps), h_prev and n_rec everywhere (n_rec 0 at
        padded steps), acts at valid steps, h_n."""
        h = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)
        rh = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)  # the classic form's r * h_{t-1}
        j, row = cuda.threadIdx.x, cuda.threadIdx.y
        b = cuda.blockIdx.x * ROWS + row
        steps, batch, hidden = out.shape
        mine = b < batch and j < hidden
        if mine:
            h[row, j] = h0[b, j]
        cuda.syncthreads()
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            valid = mine and t < lengths[b]
            h_last = h[row, j] if mine else zero
            h_t, z = h_last, zero
            h_r, h_z, hw_n = b_hh[j] if mine else zero, b_hh[gz + j] if mine else zero, zero
            if mine:
                h_prev[t, b, j] = h_last
                out[t, b, j] = zero
                n_rec[t, b, j] = zero
            if valid:
                for k in range(hidden):
                    h_k = h[row, k]
                    h_r += h_k * w_hh[j, k]
                    h_z += h_k * w_hh[gz + j, k]
                    if reset_after:
                        hw_n += h_k * w_hh[gn + j, k]
            if valid and reset_after:
                hw_n += b_hh[gn + j]
                r, z, n, h_t = cell(xp[t, b, j] + b_ih[j], xp[t, b, gz + j] + b_ih[gz + j],
                                    xp[t, b, gn + j] + b_ih[gn + j], h_r, h_z, hw_n, h_last)
                acts[t, b, j], acts[t, b, gz + j], acts[t, b, gn + j] = r, z, n
                n_rec[t, b, j] = hw_n
                out[t, b, j] = h_t
            rh[row, j] = zero
            if valid and not reset_after:
                r = sigmoid((xp[t, b, j] + b_ih[j]) + h_r)
                z = sigmoid((xp[t, b, gz + j] + b_ih[gz + j]) + h_z)
                acts[t, b, j], acts[t, b, gz + j] = r, z
                rh[row, j] = r * h_last
                n_rec[t, b, j] = r * h_last
            cuda.syncthreads()  # every thread has read h_{t-1} (and the classic form's r * h is in)
            if valid and not reset_after:
                for k in range(hidden):
                    hw_n += rh[row, k] * w_hh[gn + j, k]
                n = tanh((xp[t, b, gn + j] + b_ih[gn + j]) + (hw_n + b_hh[gn + j]))
                acts[t, b, gn + j] = n
                h_t = n + z * (h_last - n)
                out[t, b, j] = h_t
            if mine:
                h[row, j] = h_t
            cuda.syncthreads()
        if mine:
            h_n[b, j] = h[row, j]

    def gru_block_backward(d_out, d_h_n, w_hh, reset_after, gz, gn, lengths, reverse, acts, n_rec, h_prev, d_xp,
                           d_hw, dh0, record, grad_norms):
        """BPTT over all steps, either form, ROWS sequences per block. Written: d_xp and (PyTorch's
        form) d_hw, zeros at padded steps; dh0; with ``record`` grad_norms (1, T, B)."""
        dh = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)
        dg = cuda.shared.array((ROWS, GATES_HIDDEN), scalar)  # the gradients the products read
        j, row = cuda.threadIdx.x, cuda.threadIdx.y
        b = cuda.blockIdx.x * ROWS + row
        steps, batch, hidden = d_out.shape
        mine = b < batch and j < hidden
        if mine:
            dh[row, j] = d_h_n[b, j]
        cuda.syncthreads()
        for s in range(steps):
            t = s if reverse else steps - 1 - s  # BPTT runs the other way
            valid = mine and t < lengths[b]
            if record and j == 0 and b < batch:  # all of dL/dh_t, one thread per sequence
                grad_norms[0, t, b] = state_grad_norm(dh, row, d_out, t, b, hidden) if t < lengths[b] else zero
            if mine:
                for q in range(3):
                    d_xp[t, b, q * hidden + j] = zero
                    if reset_after:
                        d_hw[t, b, q * hidden + j] = zero
            for q in range(3):
                dg[row, q * MAX_HIDDEN + j] = zero
            dh_t = dh[row, j] if mine else zero
            direct = dh_t  # a padded step passes the gradient on
            r = zero
            if valid:
                dh_t += d_out[t, b, j]
                r, z, n, h_last = acts[t, b, j], acts[t, b, gz + j], acts[t, b, gn + j], h_prev[t, b, j]
                if reset_after:
                    dr, dz, dn = cell_grad(dh_t, r, z, n, n_rec[t, b, j], h_last)
                    d_xp[t, b, j], d_xp[t, b, gz + j], d_xp[t, b, gn + j] = dr, dz, dn
                    d_hw[t, b, j], d_hw[t, b, gz + j], d_hw[t, b, gn + j] = dr, dz, dn * r
                    dg[row, j], dg[row, MAX_HIDDEN + j], dg[row, 2 * MAX_HIDDEN + j] = dr, dz, dn * r
                else:
                    dn = dh_t * (one - z) * (one - n * n)
                    dz = dh_t * (h_last - n) * z * (one - z)
                    d_xp[t, b, gz + j], d_xp[t, b, gn + j] = dz, dn
                    dg[row, MAX_HIDDEN + j], dg[row, 2 * MAX_HIDDEN + j] = dz, dn
                direct = dh_t * z
            cuda.syncthreads()
            if valid and not reset_after:  # through r * h_{t-1}: r's gradient, and r * d(r h)
                d_rh = zero
                for k in range(hidden):
                    d_rh += dg[row, 2 * MAX_HIDDEN + k] * w_hh[gn + k, j]
                dr = d_rh * h_prev[t, b, j] * r * (one - r)
                d_xp[t, b, j] = dr
                direct += d_rh * r
            cuda.syncthreads()  # every thread has read dn
            if valid and not reset_after:
                dg[row, j] = dr
                dg[row, 2 * MAX_HIDDEN + j] = zero  # n's product is done: W_hn is not in W_h{r,z}
            cuda.syncthreads()
            if valid:  # h_{t-1} through the products
                for q in range(3):
                    for k in range(hidden):
                        direct += dg[row, q * MAX_HIDDEN + k] * w_hh[q * hidden + k, j]
            cuda.syncthreads()
            if mine:
                dh[row, j] = direct
            cuda.syncthreads()
        if mine:
            dh0[b, j] = dh[row, j]

    return named(dtype, gru_step_forward, gru_step_backward, gru_classic_gates, gru_classic_state,
                 gru_classic_step_backward, gru_classic_reset_backward, gru_block_forward, gru_block_backward)


KERNELS = {dtype.name: _make_kernels(dtype) for dtype in FLOATS}


def kernel_signatures():
    """(name, dtype, python function, argument types) of every kernel here, for compiling ahead of time."""
    return signatures(KERNELS, lambda vector, matrix, cube, lengths, index, flag: {
        "gru_step_forward": (cube, vector, vector, matrix, index, index, matrix, lengths, index, cube, cube, cube,
                             cube),
        "gru_step_backward": (cube, matrix, lengths, index, index, index, cube, cube, cube, cube, cube),
        "gru_classic_gates": (cube, vector, vector, matrix, index, matrix, index, cube, cube),
        "gru_classic_state": (cube, vector, vector, matrix, index, matrix, lengths, index, cube, cube, cube),
        "gru_classic_step_backward": (cube, matrix, lengths, index, index, index, cube, cube, cube),
        "gru_classic_reset_backward": (matrix, matrix, lengths, index, cube, cube, cube),
        "gru_block_forward": (cube, vector, vector, matrix, flag, index, index, matrix, lengths, flag,
                              cube, cube, cube, cube, matrix),
        "gru_block_backward": (cube, matrix, matrix, flag, index, index, lengths, flag, cube, cube,
                               cube, cube, cube, matrix, flag, cube),
    })


def gru_forward(x, h0, weights, lengths=None, reverse=False, reset_after=True):
    """Run one GRU layer in one direction over all T steps, on the GPU.

    x (T, B, I); h0 (B, H); ``weights``: w_ih (3H, I), w_hh (3H, H), and optionally b_ih
    and b_hh (3H,); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0;
    ``reset_after`` picks the form (see the module docstring). x, h0 and the weights are
    NumPy arrays, or all device arrays (then so are the results, left on the GPU; the
    backward reads the arguments again, so leave them unwritten until it has run). Returns
    a ``Forward``: out (T, B, H), h_n (B, H), c_n None, saved (its arrays on the device).
    """
    require("gru_forward")
    inputs, give = receive("gru_forward", num_gates("GRU"), x, (h0,), weights, lengths, reverse)
    w, h0 = inputs.w, inputs.states[0]
    (steps, batch, features), hidden, dtype = inputs.x.shape, h0.shape[1], inputs.x.dtype
    gz, gn = _gate_starts(hidden)
    b_ih, b_hh = (w[name] if name in w else zeros(3 * hidden, dtype) for name in ("b_ih", "b_hh"))
    lengths, w_hh = cuda.to_device(inputs.lengths), w["w_hh"]
    xp = gemm(inputs.x.reshape(steps * batch, features), w["w_ih"], trans_b=True).reshape(steps, batch, 3 * hidden)
    acts = cuda.device_array((steps, batch, 3 * hidden), dtype)
    out, n_rec, h_prev = (cuda.device_array((steps, batch, hidden), dtype) for _ in range(3))
    kernels, shape = KERNELS[dtype.name], grid(batch, hidden)
    if per_block(hidden):
        h = cuda.device_array((batch, hidden), dtype)
        launch(kernels["gru_block_forward"], *block_grid(batch), xp, b_ih, b_hh, w_hh, reset_after, gz, gn, h0,
               lengths, inputs.reverse, out, acts, n_rec, h_prev, h)
        return Forward(*give(out, h, None), GRUSaved(inputs, reset_after, lengths, acts, n_rec, h_prev))
    h = copy(h0)
    if reset_after:
        hw = cuda.device_array((batch, 3 * hidden), dtype)
    else:
        hw_rz, rhw = cuda.device_array((batch, gn), dtype), cuda.device_array((batch, hidden), dtype)
    for s in range(steps):
        t = steps - 1 - s if inputs.reverse else s
        if reset_after:
            gemm(h, w_hh, hw, trans_b=True)
            launch(kernels["gru_step_forward"], *shape, xp, b_ih, b_hh, hw, gz, gn, h, lengths, t, out, acts, n_rec,
                   h_prev)
        else:
            gemm(h, w_hh[:gn], hw_rz, trans_b=True)
            launch(kernels["gru_classic_gates"], *shape, xp, b_ih, b_hh, hw_rz, gz, h, t, acts, n_rec)
            gemm(n_rec[t], w_hh[gn:], rhw, trans_b=True)
            launch(kernels["gru_classic_state"], *shape, xp, b_ih, b_hh, rhw, gn, h, lengths, t, out, acts, h_prev)
    return Forward(*give(out, h, None), GRUSaved(inputs, reset_after, lengths, acts, n_rec, h_prev))


def gru_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through a ``gru_forward`` call in one call, on the GPU; returns a ``Grads`` (x None
    unless ``need_dx``), device arrays if d_out is one. ``grad_norms``, if given, a (1, T, B)
    NumPy array: written with ||dL/dh_t|| of every sequence at every step (zero at padded
    steps)."""
    require("gru_backward")
    inputs, lengths, w = saved.inputs, saved.lengths, saved.inputs.w
    (d_out, dh), give = receive_grads("gru_backward", inputs, d_out, d_h_n)
    (steps, batch, hidden), dtype = d_out.shape, inputs.x.dtype
    gz, gn = _gate_starts(hidden)
    w_hh = w["w_hh"]
    norms = norm_buffer("gru_backward", grad_norms, 1, inputs)
    recording = norms.shape[1] > 0
    kernels, shared = KERNELS[dtype.name], _common.KERNELS[dtype.name]
    norms_dev = cuda.to_device(norms) if recording else cuda.device_array((1, 1, 1), dtype)
    shape = grid(batch, hidden)
    d_xp = cuda.device_array((steps, batch, 3 * hidden), dtype)
    d_hw = cuda.device_array((steps, batch, 3 * hidden) if saved.reset_after else (1, 1, 1), dtype)
    if per_block(hidden):
        dh0 = cuda.device_array((batch, hidden), dtype)
        launch(kernels["gru_block_backward"], *block_grid(batch), d_out, dh, w_hh, saved.reset_after, gz, gn, lengths,
               inputs.reverse, saved.acts, saved.n_rec, saved.h_prev, d_xp, d_hw, dh0, recording, norms_dev)
        dh, steps_left = dh0, 0
    else:
        steps_left = steps
    if not saved.reset_after:
        d_rh = cuda.device_array((batch, hidden), dtype)
    for s in range(steps_left):
        t = s if inputs.reverse else steps - 1 - s  # BPTT runs the other way
        if recording:
            launch(shared["sum_norms"], *line(batch), dh, d_out, lengths, t, 0, norms_dev)
        if saved.reset_after:
            launch(kernels["gru_step_backward"], *shape, d_out, dh, lengths, t, gz, gn, saved.acts, saved.n_rec,
                   saved.h_prev, d_xp, d_hw)
            gemm(d_hw[t], w_hh, dh, accumulate=True)
        else:
            launch(kernels["gru_classic_step_backward"], *shape, d_out, dh, lengths, t, gz, gn, saved.acts,
                   saved.h_prev, d_xp)
            gemm(d_xp[t][:, gn:], w_hh[gn:], d_rh)
            launch(kernels["gru_classic_reset_backward"], *shape, d_rh, dh, lengths, t, saved.acts, saved.h_prev,
                   d_xp)
            gemm(d_xp[t][:, :gn], w_hh[:gn], dh, accumulate=True)
    if recording:
        norms[...] = norms_dev.copy_to_host()
    flat = d_xp.reshape(steps * batch, 3 * hidden)
    h_prev = saved.h_prev.reshape(steps * batch, hidden)
    dx, dw_ih, db_ih = input_grads(inputs, d_xp, need_dx)
    if saved.reset_after:
        d_hw_flat = d_hw.reshape(steps * batch, 3 * hidden)
        dw_hh, db_hh = gemm(d_hw_flat, h_prev, trans_a=True), column_sums(d_hw_flat)
    else:
        dw_hh = cuda.device_array((3 * hidden, hidden), dtype)
        gemm(flat[:, :gn], h_prev, dw_hh[:gn], trans_a=True)
        gemm(flat[:, gn:], saved.n_rec.reshape(steps * batch, hidden), dw_hh[gn:], trans_a=True)
        db_hh = copy(db_ih)  # b_hh is added where b_ih is
    return send_grads(give, inputs, x=dx, h0=dh, w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh)
