"""Fused Elman RNN layer-direction on the GPU: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

The same entry points, arguments, checks, contract and numbers as ``tinyseq_jit.cpu.rnn``
(``act`` is tanh or relu; a sequence past its length keeps its state and outputs zeros).
The input projection for all steps is one ``gemm`` before the loop, and the weight
gradients a few ``gemm`` calls after it. The loop runs on one of two paths (``_common``):
for H <= MAX_HIDDEN the per-block path, one kernel for all T steps (2 launches forward, 5
backward, 4 without dx); otherwise the per-step path, one ``gemm`` for h_{t-1} W_hh^T and
one point-wise kernel a step (2T + 1 forward, 2T + 4 backward, 2T + 3 without dx, and T
more when recording gradient norms; one more forward for the bias sum when both biases are
given). Inputs and weights are uploaded once per call (or read where they are, given as
device arrays: ``_arrays``), the saved activations stay on the device until the backward,
and the results come back once.
"""

from typing import NamedTuple

import numba
from numba import cuda

from .._contract import Forward
from ..cpu._common import Inputs, norm_buffer
from . import _common
from ._arrays import copy, receive, receive_grads, send_grads, summed_bias, to_host
from ._common import (
    MAX_HIDDEN, ROWS, activations, block_grid, block_norm, grid, input_grads, line, named, per_block, signatures,
)
from ._gemm import FLOATS, gemm
from ._runtime import launch, require

_NONLINEARITIES = ("tanh", "relu")


class RNNSaved(NamedTuple):
    """What ``rnn_backward`` needs from ``rnn_forward``; the arrays stay on the device."""

    inputs: Inputs  # the checked arguments, x, h0 and the weights on the device
    relu: bool
    lengths: object  # (B,) device array
    out: object  # (T, B, H) device array: h_t, which is also what the activation's derivative needs
    h_prev: object  # (T, B, H) device array: h_{t-1}, the state step t read


def _make_kernels(dtype):
    """The kernels for one float dtype (their constants and shared arrays in that dtype)."""
    zero, one = dtype.type(0), dtype.type(1)
    scalar = numba.from_dtype(dtype)
    _, tanh = activations(dtype)
    state_grad_norm = block_norm(dtype)

    @cuda.jit(device=True, inline="always")
    def activation(pre, relu):
        if relu:
            return zero if pre < zero else pre  # as the CPU's max(pre, 0): a nan stays nan
        return tanh(pre)

    @cuda.jit(device=True, inline="always")
    def activation_grad(g, h, relu):
        """The gradient of the pre-activation from g = dL/dh_t, through h_t = act(pre)."""
        if relu:
            return g * (one if h > zero else zero)  # as the CPU: an inf or nan g stays visible
        return g * (one - h * h)

    def rnn_step_forward(xp, bias, hw, h, lengths, t, relu, out, h_prev):
        """Step t for every (b, j): xp (T, B, H) x W_ih^T; bias (H,) b_ih + b_hh; hw (B, H)
        h_{t-1} W_hh^T; h (B, H) the state, updated; written: out[t] and h_prev[t], all of it."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            h_prev[t, b, j] = h[b, j]
            if t < lengths[b]:
                h_t = activation(xp[t, b, j] + bias[j] + hw[b, j], relu)
                out[t, b, j] = h_t
                h[b, j] = h_t
            else:
                out[t, b, j] = zero

    def rnn_step_backward(d_out, dh, out, lengths, t, relu, d_pre):
        """Step t of BPTT for every (b, j): dh (B, H) holds dL/dh_t from the later steps; written:
        d_pre[t] (zeros at padded steps), and dh zeroed where step t is valid (h_{t-1} reaches
        h_t only through the product, which the next gemm adds into dh)."""
        j, b = cuda.grid(2)
        batch, hidden = dh.shape
        if b < batch and j < hidden:
            if t < lengths[b]:
                d_pre[t, b, j] = activation_grad(dh[b, j] + d_out[t, b, j], out[t, b, j], relu)
                dh[b, j] = zero
            else:
                d_pre[t, b, j] = zero

    def rnn_block_forward(xp, bias, w_hh, relu, h0, lengths, reverse, out, h_prev, h_n):
        """The whole recurrence, ROWS sequences per block: xp (T, B, H) x W_ih^T; bias (H,)
        b_ih + b_hh; w_hh (H, H); h0 (B, H). Written: out (0 at padded steps) and h_prev
        everywhere, h_n."""
        h = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)  # the block's states h_{t-1}
        j, row = cuda.threadIdx.x, cuda.threadIdx.y
        b = cuda.blockIdx.x * ROWS + row
        steps, batch, hidden = out.shape
        mine = b < batch and j < hidden
        if mine:
            h[row, j] = h0[b, j]
        cuda.syncthreads()
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            h_t = zero
            if mine:
                h_prev[t, b, j] = h[row, j]
                if t < lengths[b]:
                    hw = zero
                    for k in range(hidden):
                        hw += h[row, k] * w_hh[j, k]
                    h_t = activation((xp[t, b, j] + bias[j]) + hw, relu)
                    out[t, b, j] = h_t
                else:
                    h_t = h[row, j]
                    out[t, b, j] = zero
            cuda.syncthreads()  # every thread has read h_{t-1}
            if mine:
                h[row, j] = h_t
            cuda.syncthreads()
        if mine:
            h_n[b, j] = h[row, j]

    def rnn_block_backward(d_out, d_h_n, w_hh, relu, lengths, reverse, out, d_pre, dh0, record, grad_norms):
        """BPTT over all steps, ROWS sequences per block. Written: d_pre (T, B, H) (zeros at padded
        steps), dh0 (B, H), and with ``record`` grad_norms (1, T, B)."""
        dh = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)  # dL/dh_t from the later steps
        dp = cuda.shared.array((ROWS, MAX_HIDDEN), scalar)  # this step's d_pre, for the product
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
            g = zero
            if valid:
                g = activation_grad(dh[row, j] + d_out[t, b, j], out[t, b, j], relu)
            if mine:
                d_pre[t, b, j] = g
            dp[row, j] = g
            cuda.syncthreads()
            dh_t = zero
            if valid:  # h_{t-1} reaches h_t only through the product
                for k in range(hidden):
                    dh_t += dp[row, k] * w_hh[k, j]
            elif mine:
                dh_t = dh[row, j]  # a padded step passes the gradient on
            cuda.syncthreads()
            if mine:
                dh[row, j] = dh_t
            cuda.syncthreads()
        if mine:
            dh0[b, j] = dh[row, j]

    return named(dtype, rnn_step_forward, rnn_step_backward, rnn_block_forward, rnn_block_backward)


KERNELS = {dtype.name: _make_kernels(dtype) for dtype in FLOATS}


def kernel_signatures():
    """(name, dtype, python function, argument types) of every kernel here, for compiling ahead of time."""
    return signatures(KERNELS, lambda vector, matrix, cube, lengths, index, flag: {
        "rnn_step_forward": (cube, vector, matrix, matrix, lengths, index, flag, cube, cube),
        "rnn_step_backward": (cube, matrix, cube, lengths, index, flag, cube),
        "rnn_block_forward": (cube, vector, matrix, flag, matrix, lengths, flag, cube, cube, matrix),
        "rnn_block_backward": (cube, matrix, matrix, flag, lengths, flag, cube, cube, matrix, flag, cube),
    })


def rnn_forward(x, h0, weights, lengths=None, reverse=False, nonlinearity="tanh"):
    """Run one Elman RNN layer in one direction over all T steps, on the GPU.

    x (T, B, I); h0 (B, H); ``weights``: w_ih (H, I), w_hh (H, H), and optionally b_ih and
    b_hh (H,); ``lengths`` (B,) or None; ``reverse`` runs t = T-1 .. 0; ``nonlinearity``
    "tanh" or "relu". x, h0 and the weights are NumPy arrays, or all device arrays (then
    so are the results, left on the GPU; the backward reads the arguments again, so leave
    them unwritten until it has run). Returns a ``Forward``: out (T, B, H), h_n (B, H),
    c_n None, saved (its arrays on the device).
    """
    require("rnn_forward")
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    inputs, give = receive("rnn_forward", 1, x, (h0,), weights, lengths, reverse)
    w, (steps, batch, features) = inputs.w, inputs.x.shape
    hidden, dtype = w["w_hh"].shape[0], inputs.x.dtype
    bias, lengths = summed_bias(w, hidden, dtype), cuda.to_device(inputs.lengths)
    xp = gemm(inputs.x.reshape(steps * batch, features), w["w_ih"], trans_b=True).reshape(steps, batch, hidden)
    out, h_prev = cuda.device_array((steps, batch, hidden), dtype), cuda.device_array((steps, batch, hidden), dtype)
    kernels, relu = KERNELS[dtype.name], nonlinearity == "relu"
    if per_block(hidden):
        h = cuda.device_array((batch, hidden), dtype)
        launch(kernels["rnn_block_forward"], *block_grid(batch), xp, bias, w["w_hh"], relu, inputs.states[0],
               lengths, inputs.reverse, out, h_prev, h)
    else:
        h, hw = copy(inputs.states[0]), cuda.device_array((batch, hidden), dtype)
        for s in range(steps):
            t = steps - 1 - s if inputs.reverse else s
            gemm(h, w["w_hh"], hw, trans_b=True)
            launch(kernels["rnn_step_forward"], *grid(batch, hidden), xp, bias, hw, h, lengths, t, relu, out, h_prev)
    # NOTE: the backward reads out (the activation's derivative): a caller on the device gets a copy to write into
    returned = out.copy_to_host() if give is to_host else copy(out)
    return Forward(returned, *give(h, None), RNNSaved(inputs, relu, lengths, out, h_prev))


def rnn_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through an ``rnn_forward`` call in one call, on the GPU; returns a ``Grads`` (x
    None unless ``need_dx``), device arrays if d_out is one. ``grad_norms``, if given, a
    (1, T, B) NumPy array: written with ||dL/dh_t|| of every sequence at every step (zero at
    padded steps)."""
    require("rnn_backward")
    inputs, lengths, w = saved.inputs, saved.lengths, saved.inputs.w
    (d_out, dh), give = receive_grads("rnn_backward", inputs, d_out, d_h_n)
    (steps, batch, hidden), dtype = d_out.shape, inputs.x.dtype
    norms = norm_buffer("rnn_backward", grad_norms, 1, inputs)
    recording = norms.shape[1] > 0
    kernels, shared = KERNELS[dtype.name], _common.KERNELS[dtype.name]
    norms_dev = cuda.to_device(norms) if recording else cuda.device_array((1, 1, 1), dtype)
    d_pre = cuda.device_array((steps, batch, hidden), dtype)
    if per_block(hidden):
        dh0 = cuda.device_array((batch, hidden), dtype)
        launch(kernels["rnn_block_backward"], *block_grid(batch), d_out, dh, w["w_hh"], saved.relu, lengths,
               inputs.reverse, saved.out, d_pre, dh0, recording, norms_dev)
        dh = dh0
    else:
        for s in range(steps):
            t = s if inputs.reverse else steps - 1 - s  # BPTT runs the other way
            if recording:
                launch(shared["sum_norms"], *line(batch), dh, d_out, lengths, t, 0, norms_dev)
            launch(kernels["rnn_step_backward"], *grid(batch, hidden), d_out, dh, saved.out, lengths, t, saved.relu,
                   d_pre)
            gemm(d_pre[t], w["w_hh"], dh, accumulate=True)
    if recording:
        norms[...] = norms_dev.copy_to_host()
    dx, dw_ih, db = input_grads(inputs, d_pre, need_dx)
    dw_hh = gemm(d_pre.reshape(steps * batch, hidden), saved.h_prev.reshape(steps * batch, hidden), trans_a=True)
    return send_grads(give, inputs, x=dx, h0=dh, w_ih=dw_ih, w_hh=dw_hh, b_ih=db, b_hh=copy(db))
