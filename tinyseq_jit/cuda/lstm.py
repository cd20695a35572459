"""Fused LSTM layer-direction on the GPU, with peepholes and the coupled gate.

The same entry points, arguments, checks, contract and numbers as ``tinyseq_jit.cpu.lstm``:
gates stacked i, f, g, o (coupled: f, g, o with i = 1 - f); with peepholes i and f also
see c_{t-1} and o sees c_t through diagonal weights ci, cf, co. Per step t:

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

The two paths of ``cuda/rnn.py``, a thread per (sequence, unit) computing all the gates of
its unit, with the step's maths in the device functions ``cell`` and ``cell_grad`` that
both share: one ``gemm`` for the input projection before the loop, then for H <=
MAX_HIDDEN one kernel for all T steps, else one ``gemm`` for h_{t-1} W_hh^T and one
point-wise kernel per step; after the backward loop dx, dW_ih, dW_hh, the bias and peephole
gradients. Launches per pass, per step: 2T + 1 forward; 2T + 4 backward (2T + 3 without dx),
+ 3 (2 when coupled) with peepholes, + 2T when recording gradient norms; per block: 2
forward, 5 backward (+ 3 or 2 with peepholes); one more forward for the bias sum when both
biases are given.
"""

import math
from typing import NamedTuple

import numba
from numba import cuda

from tinyseq.gates import num_gates

from .._contract import WEIGHTS, Forward
from ..cpu._common import Inputs, norm_buffer
from ..cpu.lstm import _gate_starts, check_peepholes
from . import _common
from ._arrays import copy, receive, receive_grads, send_grads, summed_bias, zeros
from ._common import (
    GATES_HIDDEN, MAX_HIDDEN, ROWS, activations, block_grid, block_norm, grid, input_grads, line, named, per_block,
    signatures,
)
from ._gemm import FLOATS, gemm
from ._runtime import launch, require


class LSTMSaved(NamedTuple):
    """What ``lstm_backward`` needs from ``lstm_forward``; the arrays stay on the device."""

    inputs: Inputs  # the checked arguments, x, the states and the weights on the device
    peephole: bool
    coupled: bool
    lengths: object  # (B,) device array
    peep: object  # (3, H) device array: ci, cf, co (zeros where absent)
    acts: object  # (T, B, G*H): the gates after their non-linearities
    h_prev: object  # (T, B, H): h_{t-1}
    c_prev: object  # (T, B, H): c_{t-1}
    c_new: object  # (T, B, H): c_t


def _make_kernels(dtype):
    zero, one = dtype.type(0), dtype.type(1)
    scalar = numba.from_dtype(dtype)
    sigmoid, tanh = activations(dtype)
    state_grad_norm = block_norm(dtype)

    @cuda.jit(device=True, inline="always")
    def cell(x_i, x_f, x_g, x_o, h_i, h_f, h_g, h_o, c_last, ci, cf, co, peephole, coupled):
        """One unit's step, shared by both paths: the gates' input parts x_* (xp + bias) and
        recurrent parts h_* (h_{t-1} W_hh^T), c_{t-1}, the peepholes; returns i, f, g, o, c_t, h_t."""
        f = sigmoid(x_f + (h_f + c_last * cf if peephole else h_f))
        g = tanh(x_g + h_g)
        i = one - f if coupled else sigmoid(x_i + (h_i + c_last * ci if peephole else h_i))
        c_t = f * c_last + i * g
        o = sigmoid(x_o + (h_o + c_t * co if peephole else h_o))
        return i, f, g, o, c_t, o * tanh(c_t)

    @cuda.jit(device=True, inline="always")
    def cell_grad(dh_t, dc_later, i, f, g, o, c_t, c_last, ci, cf, co, peephole, coupled):
        """One unit's BPTT step, shared by both paths: from dL/dh_t and the part of dL/dc_t from
        the later steps, the gates' pre-activation gradients di, df, dg, do, all of dL/dc_t,
        and dL/dc_{t-1}'s part through this step."""
        tanh_c = tanh(c_t)  # through h_t = o tanh(c_t)
        do = dh_t * tanh_c * o * (one - o)
        dc_t = dc_later + dh_t * o * (one - tanh_c * tanh_c)
        if peephole:
            dc_t += do * co
        if coupled:  # through c_t = f c_{t-1} + (1 - f) g
            di = zero
            dg = dc_t * (one - f) * (one - g * g)
            df = dc_t * (c_last - g) * f * (one - f)
            dc_next = dc_t * f
        else:  # through c_t = f c_{t-1} + i g
            di = dc_t * g * i * (one - i)
            df = dc_t * c_last * f * (one - f)
            dg = dc_t * i * (one - g * g)
            dc_next = dc_t * f
            if peephole:
                dc_next += di * ci
        if peephole:
            dc_next += df * cf
        return di, df, dg, do, dc_t, dc_next

    def lstm_step_forward(xp, bias, hw, peep, peephole, coupled, gf, gg, go, h, c, lengths, t, out, acts, h_prev,
                          c_prev, c_new):
        """Step t for every (b, j): xp (T, B, G*H) x W_ih^T; bias (G*H,) b_ih + b_hh; hw (B, G*H) h_{t-1} W_hh^T;
        peep (3, H) ci, cf, co; gf, gg, go where the f, g, o blocks start; h, c (B, H) the state,
        updated. Written: h_prev[t], c_prev[t], out[t] and c_new[t] everywhere (out and c_new 0
        at padded steps), acts[t] at valid steps."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            c_last = c[b, j]
            h_prev[t, b, j] = h[b, j]
            c_prev[t, b, j] = c_last
            if t < lengths[b]:
                gi = 0 if coupled else j  # no i block when coupled: its parts go unread
                i, f, g, o, c_t, h_t = cell(
                    xp[t, b, gi] + bias[gi], xp[t, b, gf + j] + bias[gf + j], xp[t, b, gg + j] + bias[gg + j],
                    xp[t, b, go + j] + bias[go + j], hw[b, gi], hw[b, gf + j], hw[b, gg + j], hw[b, go + j],
                    c_last, peep[0, j], peep[1, j], peep[2, j], peephole, coupled)
                if not coupled:
                    acts[t, b, j] = i
                acts[t, b, gf + j], acts[t, b, gg + j], acts[t, b, go + j] = f, g, o
                c_new[t, b, j] = c_t
                out[t, b, j] = h_t
                h[b, j] = h_t
                c[b, j] = c_t
            else:  # c_new too: the peephole gradient's sum reads every row (0 * garbage can be nan)
                out[t, b, j] = zero
                c_new[t, b, j] = zero

    def lstm_step_backward(d_out, dh, dc, peep, peephole, coupled, gf, gg, go, lengths, t, acts, c_prev, c_new,
                           d_gates, record, dc_total):
        """Step t of BPTT for every (b, j): dh, dc (B, H) hold dL/dh_t and the part of dL/dc_t
        from the later steps. Written: d_gates[t] (zeros at padded steps); at valid steps dc
        becomes dL/dc_{t-1}'s part through this step, dh zero (the next gemm adds h_{t-1}'s),
        and, when ``record``, dc_total[b, j] all of dL/dc_t."""
        j, b = cuda.grid(2)
        batch, hidden = dh.shape
        if b < batch and j < hidden:
            if t < lengths[b]:
                i = one if coupled else acts[t, b, j]
                di, df, dg, do, dc_t, dc_next = cell_grad(
                    dh[b, j] + d_out[t, b, j], dc[b, j], i, acts[t, b, gf + j], acts[t, b, gg + j],
                    acts[t, b, go + j], c_new[t, b, j], c_prev[t, b, j], peep[0, j], peep[1, j], peep[2, j], peephole,
                    coupled)
                if record:
                    dc_total[b, j] = dc_t
                if not coupled:
                    d_gates[t, b, j] = di
                d_gates[t, b, gf + j], d_gates[t, b, gg + j], d_gates[t, b, go + j] = df, dg, do
                dc[b, j] = dc_next
                dh[b, j] = zero
            else:
                for k in range(d_gates.shape[2] // hidden):
                    d_gates[t, b, k * hidden + j] = zero

    def lstm_block_forward(xp, bias, w_hh, peep, peephole, coupled, gf, gg, go, h0, c0, lengths, reverse, out, acts,
                           h_prev, c_prev, c_new, h_n, c_n):
        """The whole recurrence, ROWS sequences per block, the state in shared memory; w_hh
        (G*H, H); the other arguments and what is written as for ``lstm_step_forward`` at every
        step, and h_n, c_n."""
        h = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)
        c = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)
        j, row = cuda.threadIdx.x, cuda.threadIdx.y
        b = cuda.blockIdx.x * ROWS + row
        steps, batch, hidden = out.shape
        mine = b < batch and j < hidden
        gi = 0 if coupled else j
        if mine:
            h[row, j], c[row, j] = h0[b, j], c0[b, j]
        cuda.syncthreads()
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            h_t, c_t = zero, zero
            if mine:
                c_last = c[row, j]
                h_prev[t, b, j] = h[row, j]
                c_prev[t, b, j] = c_last
                if t < lengths[b]:
                    h_i, h_f, h_g, h_o = zero, zero, zero, zero  # h_{t-1} W_hh^T, this unit's four gates
                    for k in range(hidden):
                        h_k = h[row, k]
                        if not coupled:
                            h_i += h_k * w_hh[j, k]
                        h_f += h_k * w_hh[gf + j, k]
                        h_g += h_k * w_hh[gg + j, k]
                        h_o += h_k * w_hh[go + j, k]
                    i, f, g, o, c_t, h_t = cell(
                        xp[t, b, gi] + bias[gi], xp[t, b, gf + j] + bias[gf + j], xp[t, b, gg + j] + bias[gg + j],
                        xp[t, b, go + j] + bias[go + j], h_i, h_f, h_g, h_o, c_last, peep[0, j], peep[1, j],
                        peep[2, j], peephole, coupled)
                    if not coupled:
                        acts[t, b, j] = i
                    acts[t, b, gf + j], acts[t, b, gg + j], acts[t, b, go + j] = f, g, o
                    c_new[t, b, j] = c_t
                    out[t, b, j] = h_t
                else:
                    h_t, c_t = h[row, j], c_last
                    out[t, b, j] = zero
                    c_new[t, b, j] = zero
            cuda.syncthreads()  # every thread has read h_{t-1}
            if mine:
                h[row, j], c[row, j] = h_t, c_t
            cuda.syncthreads()
        if mine:
            h_n[b, j], c_n[b, j] = h[row, j], c[row, j]

    def lstm_block_backward(d_out, d_h_n, d_c_n, w_hh, peep, peephole, coupled, gf, gg, go, lengths, reverse, acts,
                            c_prev, c_new, d_gates, dh0, dc0, record, grad_norms):
        """BPTT over all steps, ROWS sequences per block: dL/dh in shared memory, each unit's dL/dc
        in its thread. Written: d_gates (zeros at padded steps), dh0, dc0, and with ``record``
        grad_norms (2, T, B)."""
        dh = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)
        dcs = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)  # all of dL/dc_t, for its norm
        dgs = cuda.shared.array((ROWS, GATES_HIDDEN), scalar)  # this step's gate gradients, G blocks
        j, row = cuda.threadIdx.x, cuda.threadIdx.y
        b = cuda.blockIdx.x * ROWS + row
        steps, batch, hidden = d_out.shape
        blocks = d_gates.shape[2] // hidden
        mine = b < batch and j < hidden
        dc = d_c_n[b, j] if mine else zero
        if mine:
            dh[row, j] = d_h_n[b, j]
        cuda.syncthreads()
        for s in range(steps):
            t = s if reverse else steps - 1 - s  # BPTT runs the other way
            valid = mine and t < lengths[b]
            if record and j == 0 and b < batch:  # all of dL/dh_t, one thread per sequence
                grad_norms[0, t, b] = state_grad_norm(dh, row, d_out, t, b, hidden) if t < lengths[b] else zero
            di, df, dg, do, dc_t = zero, zero, zero, zero, zero
            if valid:
                i = one if coupled else acts[t, b, j]
                di, df, dg, do, dc_t, dc = cell_grad(
                    dh[row, j] + d_out[t, b, j], dc, i, acts[t, b, gf + j], acts[t, b, gg + j], acts[t, b, go + j],
                    c_new[t, b, j], c_prev[t, b, j], peep[0, j], peep[1, j], peep[2, j], peephole, coupled)
            if mine:
                if not coupled:
                    d_gates[t, b, j] = di
                d_gates[t, b, gf + j], d_gates[t, b, gg + j], d_gates[t, b, go + j] = df, dg, do
            if not coupled:
                dgs[row, j] = di
            dgs[row, (gf // hidden) * MAX_HIDDEN + j] = df
            dgs[row, (gg // hidden) * MAX_HIDDEN + j] = dg
            dgs[row, (go // hidden) * MAX_HIDDEN + j] = do
            dcs[row, j] = dc_t
            cuda.syncthreads()
            if record and j == 0 and b < batch:
                total = zero
                for k in range(hidden):
                    total += dcs[row, k] * dcs[row, k]
                grad_norms[1, t, b] = math.sqrt(total)
            dh_t = zero
            if valid:  # h_{t-1} reaches h_t only through the product
                for q in range(blocks):
                    for k in range(hidden):
                        dh_t += dgs[row, q * MAX_HIDDEN + k] * w_hh[q * hidden + k, j]
            elif mine:
                dh_t = dh[row, j]  # a padded step passes the gradient on
            cuda.syncthreads()
            if mine:
                dh[row, j] = dh_t
            cuda.syncthreads()
        if mine:
            dh0[b, j], dc0[b, j] = dh[row, j], dc

    return named(dtype, lstm_step_forward, lstm_step_backward, lstm_block_forward, lstm_block_backward)


KERNELS = {dtype.name: _make_kernels(dtype) for dtype in FLOATS}


def kernel_signatures():
    """(name, dtype, python function, argument types) of every kernel here, for compiling ahead of time."""
    return signatures(KERNELS, lambda vector, matrix, cube, lengths, index, flag: {
        "lstm_step_forward": (cube, vector, matrix, matrix, flag, flag, index, index, index, matrix, matrix,
                              lengths, index, cube, cube, cube, cube, cube),
        "lstm_step_backward": (cube, matrix, matrix, matrix, flag, flag, index, index, index, lengths, index,
                               cube, cube, cube, cube, flag, matrix),
        "lstm_block_forward": (cube, vector, matrix, matrix, flag, flag, index, index, index, matrix, matrix,
                               lengths, flag, cube, cube, cube, cube, cube, matrix, matrix),
        "lstm_block_backward": (cube, matrix, matrix, matrix, matrix, flag, flag, index, index, index, lengths,
                                flag, cube, cube, cube, cube, matrix, matrix, flag, cube),
    })


def lstm_forward(x, h0, c0, weights, lengths=None, reverse=False, coupled=False):
    """Run one LSTM layer in one direction over all T steps, on the GPU.

    x (T, B, I); h0, c0 (B, H); ``weights``: w_ih (G*H, I) and w_hh (G*H, H) with G = 4
    (3 when ``coupled``), optionally b_ih and b_hh (G*H,), and the peepholes ci, cf, co
    (H,) each for a peephole LSTM (cf and co when coupled); no projection w_hr (the CPU
    kernels have one); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0. x, the
    states and the weights are NumPy arrays, or all device arrays (then so are the results,
    left on the GPU; the backward reads the arguments again, so leave them unwritten until
    it has run). Returns a ``Forward``: out
    (T, B, H), h_n, c_n (B, H), saved (its arrays on the device).
    """
    require("lstm_forward")
    if weights.get("w_hr") is not None:
        raise ValueError("lstm_forward: the CUDA kernels have no projection (proj_size), got w_hr; "
                         "run it on the CPU kernels (tinyseq_jit.cpu.lstm_forward)")
    inputs, give = receive("lstm_forward", num_gates("LSTM", coupled), x, (h0, c0), weights, lengths, reverse,
                           allowed=WEIGHTS)
    w, (h0, c0) = inputs.w, inputs.states
    (steps, batch, features), hidden, dtype = inputs.x.shape, h0.shape[1], inputs.x.dtype
    gates = w["w_hh"].shape[0]
    peephole, peep = check_peepholes("lstm_forward", w, coupled), zeros((3, hidden), dtype)
    for k, name in enumerate(("ci", "cf", "co")):
        if name in w:
            peep[k].copy_to_device(w[name])
    bias, lengths = summed_bias(w, gates, dtype), cuda.to_device(inputs.lengths)
    xp = gemm(inputs.x.reshape(steps * batch, features), w["w_ih"], trans_b=True).reshape(steps, batch, gates)
    acts = cuda.device_array((steps, batch, gates), dtype)
    out, h_prev, c_prev, c_new = (cuda.device_array((steps, batch, hidden), dtype) for _ in range(4))
    kernels, starts = KERNELS[dtype.name], _gate_starts(hidden, coupled)
    if per_block(hidden):
        h, c = cuda.device_array((batch, hidden), dtype), cuda.device_array((batch, hidden), dtype)
        launch(kernels["lstm_block_forward"], *block_grid(batch), xp, bias, w["w_hh"], peep, peephole, coupled,
               *starts, h0, c0, lengths, inputs.reverse, out, acts, h_prev, c_prev, c_new, h, c)
    else:
        h, c, hw = copy(h0), copy(c0), cuda.device_array((batch, gates), dtype)
        for s in range(steps):
            t = steps - 1 - s if inputs.reverse else s
            gemm(h, w["w_hh"], hw, trans_b=True)
            launch(kernels["lstm_step_forward"], *grid(batch, hidden), xp, bias, hw, peep, peephole, coupled,
                   *starts, h, c, lengths, t, out, acts, h_prev, c_prev, c_new)
    saved = LSTMSaved(inputs, peephole, coupled, lengths, peep, acts, h_prev, c_prev, c_new)
    return Forward(*give(out, h, c), saved)


def lstm_backward(saved, d_out, d_h_n, d_c_n, need_dx=True, grad_norms=None):
    """BPTT through a ``lstm_forward`` call in one call, on the GPU; returns a ``Grads`` (x
    None unless ``need_dx``), device arrays if d_out is one. ``grad_norms``, if given, a
    (2, T, B) NumPy array: written with ||dL/dh_t|| and ||dL/dc_t|| of every sequence at
    every step (zero at padded steps)."""
    require("lstm_backward")
    inputs, lengths, w = saved.inputs, saved.lengths, saved.inputs.w
    (d_out, dh, dc), give = receive_grads("lstm_backward", inputs, d_out, d_h_n, d_c_n)
    (steps, batch, hidden), dtype = d_out.shape, inputs.x.dtype
    gates = saved.acts.shape[2]
    norms = norm_buffer("lstm_backward", grad_norms, 2, inputs)
    recording = norms.shape[1] > 0
    kernels, shared = KERNELS[dtype.name], _common.KERNELS[dtype.name]
    norms_dev = cuda.to_device(norms) if recording else cuda.device_array((2, 1, 1), dtype)
    d_gates = cuda.device_array((steps, batch, gates), dtype)
    starts = _gate_starts(hidden, saved.coupled)
    if per_block(hidden):
        dh0, dc0 = cuda.device_array((batch, hidden), dtype), cuda.device_array((batch, hidden), dtype)
        launch(kernels["lstm_block_backward"], *block_grid(batch), d_out, dh, dc, w["w_hh"], saved.peep,
               saved.peephole, saved.coupled, *starts, lengths, inputs.reverse, saved.acts, saved.c_prev, saved.c_new,
               d_gates, dh0, dc0, recording, norms_dev)
        dh, dc = dh0, dc0
    else:
        dc_total = cuda.device_array((batch, hidden), dtype)
        for s in range(steps):
            t = s if inputs.reverse else steps - 1 - s  # BPTT runs the other way
            if recording:
                launch(shared["sum_norms"], *line(batch), dh, d_out, lengths, t, 0, norms_dev)
            launch(kernels["lstm_step_backward"], *grid(batch, hidden), d_out, dh, dc, saved.peep, saved.peephole,
                   saved.coupled, *starts, lengths, t, saved.acts, saved.c_prev, saved.c_new, d_gates, recording,
                   dc_total)
            if recording:
                launch(shared["row_norms"], *line(batch), dc_total, lengths, t, 1, norms_dev)
            gemm(d_gates[t], w["w_hh"], dh, accumulate=True)
    if recording:
        norms[...] = norms_dev.copy_to_host()
    dx, dw_ih, db = input_grads(inputs, d_gates, need_dx)
    flat = d_gates.reshape(steps * batch, gates)
    dw_hh = gemm(flat, saved.h_prev.reshape(steps * batch, hidden), trans_a=True)
    d_peep = zeros((3, hidden), dtype)
    if saved.peephole:  # ci and cf see c_{t-1}, co sees c_t
        for k, start, c in ((0, 0, saved.c_prev), (1, starts[0], saved.c_prev), (2, starts[2], saved.c_new)):
            if not (k == 0 and saved.coupled):
                launch(shared["product_column_sums"], *line(hidden), flat, start, c.reshape(steps * batch, hidden),
                       d_peep[k])
    return send_grads(give, inputs, x=dx, h0=dh, c0=dc, w_ih=dw_ih, w_hh=dw_hh, b_ih=db, b_hh=copy(db),
                      ci=d_peep[0], cf=d_peep[1], co=d_peep[2])
