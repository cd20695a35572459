"""Fused LSTM layer-direction on the GPU, with peepholes and the coupled gate.

The same entry points, arguments, checks, contract and numbers as ``tinyseq_jit.cpu.lstm``:
gates stacked i, f, g, o (coupled: f, g, o with i = 1 - f); with peepholes i and f also
see c_{t-1} and o sees c_t through diagonal weights ci, cf, co. Per step t:

    i, f, o = sigmoid(xp_t + h_{t-1} W_hh^T [+ peephole terms]),  g = tanh(...)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

The per-step path, as ``cuda/rnn.py``: one ``gemm`` for the input projection before the
loop; per step one ``gemm`` for h_{t-1} W_hh^T and one point-wise kernel, a thread per
(sequence, unit) computing all four gates of its unit; backward, one point-wise kernel and
one ``gemm`` per step, then dx, dW_ih, dW_hh, the bias and peephole gradients after the
loop. Launches per pass: 2T + 1 forward; 2T + 4 backward (3 without dx), + 3 (2 when
coupled) with peepholes, + 2T when recording gradient norms.
"""

from typing import NamedTuple

import numpy as np
from numba import cuda

from tinyseq.gates import num_gates

from .._contract import WEIGHTS, Forward, weight_grads
from ..cpu._common import Inputs, add_biases, check_inputs, norm_buffer
from ..cpu.lstm import _gate_starts, _peepholes
from . import _common
from ._common import activations, grid, line, named, types
from ._gemm import FLOATS, gemm
from ._runtime import launch, require


class LSTMSaved(NamedTuple):
    """What ``lstm_backward`` needs from ``lstm_forward``; the arrays stay on the device."""

    inputs: Inputs  # the checked host arguments
    peephole: bool
    coupled: bool
    device: dict  # x (T*B, I), w_ih, w_hh, peep (3, H), lengths: the uploaded inputs
    acts: object  # (T, B, G*H): the gates after their non-linearities
    h_prev: object  # (T, B, H): h_{t-1}
    c_prev: object  # (T, B, H): c_{t-1}
    c_new: object  # (T, B, H): c_t


def _make_kernels(dtype):
    zero, one = dtype.type(0), dtype.type(1)
    sigmoid, tanh = activations(dtype)

    def lstm_step_forward(xp, bias, hw, peep, peephole, coupled, gf, gg, go, h, c, lengths, t, out, acts, h_prev,
                          c_prev, c_new):
        """Step t for every (b, j): xp (T, B, G*H) x W_ih^T; bias (G*H,) b_ih + b_hh; hw (B, G*H) h_{t-1} W_hh^T;
        peep (3, H) ci, cf, co; gf, gg, go where the f, g, o blocks start; h, c (B, H) the state,
        updated. Written: h_prev[t], c_prev[t] everywhere; out[t] (0 at padded steps), acts[t]
        and c_new[t] at valid steps."""
        j, b = cuda.grid(2)
        batch, hidden = h.shape
        if b < batch and j < hidden:
            c_last = c[b, j]
            h_prev[t, b, j] = h[b, j]
            c_prev[t, b, j] = c_last
            if t < lengths[b]:
                pre_f = hw[b, gf + j] + c_last * peep[1, j] if peephole else hw[b, gf + j]
                f = sigmoid((xp[t, b, gf + j] + bias[gf + j]) + pre_f)
                g = tanh((xp[t, b, gg + j] + bias[gg + j]) + hw[b, gg + j])
                if coupled:
                    i = one - f
                else:
                    pre_i = hw[b, j] + c_last * peep[0, j] if peephole else hw[b, j]
                    i = sigmoid((xp[t, b, j] + bias[j]) + pre_i)
                    acts[t, b, j] = i
                c_t = f * c_last + i * g
                pre_o = hw[b, go + j] + c_t * peep[2, j] if peephole else hw[b, go + j]
                o = sigmoid((xp[t, b, go + j] + bias[go + j]) + pre_o)
                acts[t, b, gf + j], acts[t, b, gg + j], acts[t, b, go + j] = f, g, o
                h_t = o * tanh(c_t)
                c_new[t, b, j] = c_t
                out[t, b, j] = h_t
                h[b, j] = h_t
                c[b, j] = c_t
            else:
                out[t, b, j] = zero

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
                f, g, o = acts[t, b, gf + j], acts[t, b, gg + j], acts[t, b, go + j]
                c_t, c_last = c_new[t, b, j], c_prev[t, b, j]
                dh_t = dh[b, j] + d_out[t, b, j]
                tanh_c = tanh(c_t)  # through h_t = o tanh(c_t)
                do = dh_t * tanh_c * o * (one - o)
                dc_t = dc[b, j] + dh_t * o * (one - tanh_c * tanh_c)
                if peephole:
                    dc_t += do * peep[2, j]
                if record:
                    dc_total[b, j] = dc_t
                if coupled:  # through c_t = f c_{t-1} + (1 - f) g
                    dg = dc_t * (one - f) * (one - g * g)
                    df = dc_t * (c_last - g) * f * (one - f)
                    dc_next = dc_t * f
                else:  # through c_t = f c_{t-1} + i g
                    i = acts[t, b, j]
                    di = dc_t * g * i * (one - i)
                    df = dc_t * c_last * f * (one - f)
                    dg = dc_t * i * (one - g * g)
                    dc_next = dc_t * f
                    if peephole:
                        dc_next += di * peep[0, j]
                    d_gates[t, b, j] = di
                if peephole:
                    dc_next += df * peep[1, j]
                d_gates[t, b, gf + j], d_gates[t, b, gg + j], d_gates[t, b, go + j] = df, dg, do
                dc[b, j] = dc_next
                dh[b, j] = zero
            else:
                for k in range(d_gates.shape[2] // hidden):
                    d_gates[t, b, k * hidden + j] = zero

    return named(dtype, lstm_step_forward, lstm_step_backward)


KERNELS = {dtype.name: _make_kernels(dtype) for dtype in FLOATS}


def kernel_signatures():
    """(name, dtype, python function, argument types) of every kernel here, for compiling ahead of time."""
    found = []
    for dtype in FLOATS:
        k, ty = KERNELS[dtype.name], types(dtype)
        matrix, cube, lengths, index, flag = (ty[n] for n in ("matrix", "cube", "lengths", "index", "flag"))
        signatures = {
            "lstm_step_forward": (cube, ty["vector"], matrix, matrix, flag, flag, index, index, index, matrix, matrix,
                                  lengths, index, cube, cube, cube, cube, cube),
            "lstm_step_backward": (cube, matrix, matrix, matrix, flag, flag, index, index, index, lengths, index,
                                   cube, cube, cube, cube, flag, matrix),
        }
        found += [(k[name].py_func.__name__, dtype, k[name].py_func, sig) for name, sig in signatures.items()]
    return found


def lstm_forward(x, h0, c0, weights, lengths=None, reverse=False, coupled=False):
    """Run one LSTM layer in one direction over all T steps, on the GPU.

    x (T, B, I); h0, c0 (B, H); ``weights``: w_ih (G*H, I) and w_hh (G*H, H) with G = 4
    (3 when ``coupled``), optionally b_ih and b_hh (G*H,), and the peepholes ci, cf, co
    (H,) each for a peephole LSTM (cf and co when coupled); ``lengths`` (B,) or None;
    ``reverse`` runs t = T-1 .. 0. Returns a ``Forward``: out (T, B, H), h_n, c_n (B, H),
    saved (its arrays on the device).
    """
    require("lstm_forward")
    inputs = check_inputs("lstm_forward", num_gates("LSTM", coupled), x, (h0, c0), weights, lengths, reverse,
                          allowed=WEIGHTS)
    w, (h0, c0) = inputs.w, inputs.states
    (steps, batch, features), hidden, dtype = inputs.x.shape, h0.shape[1], inputs.x.dtype
    peep, peephole = _peepholes("lstm_forward", w, coupled, hidden, dtype)
    gates = w["w_hh"].shape[0]
    bias = add_biases(w.get("b_ih"), w.get("b_hh"))
    x_flat = inputs.x.reshape(steps * batch, features)
    device = {"x": cuda.to_device(x_flat), "w_ih": cuda.to_device(w["w_ih"]), "w_hh": cuda.to_device(w["w_hh"]),
              "peep": cuda.to_device(peep), "lengths": cuda.to_device(inputs.lengths)}
    xp = gemm(device["x"], device["w_ih"], trans_b=True).reshape(steps, batch, gates)
    bias = cuda.to_device(np.zeros(gates, dtype) if bias is None else bias)
    h, c = cuda.to_device(h0), cuda.to_device(c0)
    hw = cuda.device_array((batch, gates), dtype)
    acts = cuda.device_array((steps, batch, gates), dtype)
    out, h_prev, c_prev, c_new = (cuda.device_array((steps, batch, hidden), dtype) for _ in range(4))
    step = KERNELS[dtype.name]["lstm_step_forward"]
    starts = _gate_starts(hidden, coupled)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        gemm(h, device["w_hh"], hw, trans_b=True)
        launch(step, *grid(batch, hidden), xp, bias, hw, device["peep"], peephole, coupled, *starts, h, c,
               device["lengths"], t, out, acts, h_prev, c_prev, c_new)
    saved = LSTMSaved(inputs, peephole, coupled, device, acts, h_prev, c_prev, c_new)
    return Forward(out.copy_to_host(), h.copy_to_host(), c.copy_to_host(), saved)


def lstm_backward(saved, d_out, d_h_n, d_c_n, need_dx=True, grad_norms=None):
    """BPTT through a ``lstm_forward`` call in one call, on the GPU; returns a ``Grads`` (x
    None unless ``need_dx``). ``grad_norms``, if given, a (2, T, B) array: written with
    ||dL/dh_t|| and ||dL/dc_t|| of every sequence at every step (zero at padded steps)."""
    require("lstm_backward")
    inputs, device = saved.inputs, saved.device
    dtype = inputs.x.dtype
    d_out, d_h_n, d_c_n = (np.ascontiguousarray(a, dtype=dtype) for a in (d_out, d_h_n, d_c_n))
    steps, batch, hidden = d_out.shape
    gates = saved.acts.shape[2]
    norms = norm_buffer("lstm_backward", grad_norms, 2, inputs)
    recording = norms.shape[1] > 0
    kernels, shared = KERNELS[dtype.name], _common.KERNELS[dtype.name]
    d_out_dev, dh, dc = cuda.to_device(d_out), cuda.to_device(d_h_n), cuda.to_device(d_c_n)
    norms_dev = cuda.to_device(norms) if recording else None
    dc_total = cuda.device_array((batch, hidden), dtype)
    d_gates = cuda.device_array((steps, batch, gates), dtype)
    starts = _gate_starts(hidden, saved.coupled)
    lengths = device["lengths"]
    for s in range(steps):
        t = s if inputs.reverse else steps - 1 - s  # BPTT runs the other way
        if recording:
            launch(shared["sum_norms"], *line(batch), dh, d_out_dev, lengths, t, 0, norms_dev)
        launch(kernels["lstm_step_backward"], *grid(batch, hidden), d_out_dev, dh, dc, device["peep"],
               saved.peephole, saved.coupled, *starts, lengths, t, saved.acts, saved.c_prev, saved.c_new, d_gates,
               recording, dc_total)
        if recording:
            launch(shared["row_norms"], *line(batch), dc_total, lengths, t, 1, norms_dev)
        gemm(d_gates[t], device["w_hh"], dh, accumulate=True)
    if recording:
        norms[...] = norms_dev.copy_to_host()
    flat = d_gates.reshape(steps * batch, gates)
    dx = gemm(flat, device["w_ih"]).copy_to_host().reshape(inputs.x.shape) if need_dx else None
    dw_ih = gemm(flat, device["x"], trans_a=True).copy_to_host()
    dw_hh = gemm(flat, saved.h_prev.reshape(steps * batch, hidden), trans_a=True).copy_to_host()
    db = cuda.device_array(gates, dtype)
    launch(shared["column_sums"], *line(gates), flat, db)
    db = db.copy_to_host()
    d_peep = np.zeros((3, hidden), dtype)
    if saved.peephole:  # ci and cf see c_{t-1}, co sees c_t
        for k, start, c in ((0, 0, saved.c_prev), (1, starts[0], saved.c_prev), (2, starts[2], saved.c_new)):
            if k == 0 and saved.coupled:
                continue
            out = cuda.device_array(hidden, dtype)
            launch(shared["product_column_sums"], *line(hidden), flat, start, c.reshape(steps * batch, hidden), out)
            d_peep[k] = out.copy_to_host()
    return weight_grads(inputs.w, x=dx, h0=dh.copy_to_host(), c0=dc.copy_to_host(), w_ih=dw_ih, w_hh=dw_hh,
                        b_ih=db, b_hh=db.copy(), ci=d_peep[0], cf=d_peep[1], co=d_peep[2])
