"""Shared pieces of the CPU kernels: argument checks, the input projection, the sigmoid.

Every public kernel has the same shape: check and allocate in Python, project the input
for all T steps with one GEMM, run the recurrence in one compiled call, and (backward)
turn the per-step gate gradients into dx, dW_ih, dW_hh and the bias gradients with a few
large GEMMs after the loop.
"""

import math

import numpy as np

from .. import _jit
from .._jit import jit

FLOATS = (np.float32, np.float64)


# NOTE: scalar libm tanh costs ~16 ns here against ~4 ns for exp, and the gate
# non-linearities are most of the point-wise work, so both are built on exp/expm1. They
# agree with NumPy's tanh and the graph's sigmoid to a few ulps (the contract tests hold
# them to rtol 1e-9 in float64); exp overflowing to inf gives the right limits.


@jit
def sigmoid(x):
    """1 / (1 + e^-x)."""
    return 1.0 / (1.0 + math.exp(-x))


@jit
def tanh(x):
    """tanh x from expm1 near 0 (no cancellation) and from exp elsewhere."""
    if abs(x) < 0.5:
        e = math.expm1(2.0 * x)
        return e / (e + 2.0)
    return 1.0 - 2.0 / (math.exp(2.0 * x) + 1.0)


@jit
def matmul_into(a, b, out, small):
    """out = a @ b. With ``small`` (a few rows) a plain loop over b's rows, vectorised over
    its columns: for a batch of a few sequences it beats OpenBLAS, which repacks b on every
    call, and it keeps the step off a second BLAS thread pool."""
    if not small:
        np.dot(a, b, out)
        return
    rows, inner = a.shape
    out[:] = 0.0
    for k in range(inner):
        b_k = b[k]
        for r in range(rows):
            a_rk = a[r, k]
            o_r = out[r]
            for n in range(b_k.shape[0]):
                o_r[n] += a_rk * b_k[n]


@jit
def _dot(a, b):
    return np.dot(a, b)


def dot(a, b):
    """a @ b for 2-D arrays through numba's BLAS (SciPy's OpenBLAS), the library the loops
    use: with NumPy's OpenBLAS as well, two thread pools would spin against each other."""
    return _dot(_blas_layout(a), _blas_layout(b))


def _blas_layout(a):
    """``a`` itself when C- or F-contiguous (a transpose is passed to BLAS as such), else a copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)


def small_product(batch, w_hh):
    """Whether the recurrent product should take ``matmul_into``'s loop (see ``_jit``)."""
    return batch <= _jit.SMALL_BATCH and w_hh.nbytes >= _jit.SMALL_MIN_WEIGHT_BYTES


def _array(name, what, value, dtype, shape):
    arr = np.asarray(value)
    if arr.dtype != dtype:
        raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {np.dtype(dtype)} like x")
    if arr.shape != shape:
        raise ValueError(f"{name}: {what} has shape {arr.shape}, expected {shape}")
    return np.ascontiguousarray(arr)


def check_inputs(name, gates, x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, c0=None):
    """Validate a layer-direction's arguments; return them contiguous, plus int64 lengths.

    x (T, B, I) float32/float64; h0 (and c0) (B, H); w_ih (gates*H, I); w_hh (gates*H, H);
    biases (gates*H,) or None; lengths (B,) ints in [1, T] or None (all T).
    """
    x = np.asarray(x)
    if x.dtype not in FLOATS:
        raise TypeError(f"{name}: x must be float32 or float64, got {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be 3-D (T, B, I), got shape {x.shape}")
    steps, batch, inputs = x.shape
    if steps == 0:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape})")
    w_hh = np.asarray(w_hh)
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ValueError(f"{name}: w_hh must have shape ({gates}*H, H), got {w_hh.shape}")
    hidden = w_hh.shape[1]
    gh = gates * hidden
    out = [
        np.ascontiguousarray(x),
        _array(name, "h0", h0, x.dtype, (batch, hidden)),
        _array(name, "w_ih", w_ih, x.dtype, (gh, inputs)),
        _array(name, "w_hh", w_hh, x.dtype, (gh, hidden)),
        None if b_ih is None else _array(name, "b_ih", b_ih, x.dtype, (gh,)),
        None if b_hh is None else _array(name, "b_hh", b_hh, x.dtype, (gh,)),
    ]
    if lengths is None:
        lengths = np.full(batch, steps, dtype=np.int64)
    else:
        lengths = np.asarray(lengths)
        if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
            raise ValueError(f"{name}: lengths must be {batch} integers, got shape {lengths.shape} "
                             f"and dtype {lengths.dtype}")
        if batch and (lengths.min() < 1 or lengths.max() > steps):
            raise ValueError(f"{name}: lengths must lie in [1, {steps}], got values from {lengths.min()} "
                             f"to {lengths.max()}")
        lengths = lengths.astype(np.int64)
    out.append(lengths)
    if c0 is not None:
        out.append(_array(name, "c0", c0, x.dtype, (batch, hidden)))
    return out


def project(x, w_ih, bias):
    """x W_ih^T + bias for all steps at once: (T, B, I) -> (T, B, G*H), one GEMM."""
    steps, batch, inputs = x.shape
    xp = dot(x.reshape(steps * batch, inputs), w_ih.T)
    if bias is not None:
        xp += bias
    return xp.reshape(steps, batch, w_ih.shape[0])


def add_biases(b_ih, b_hh):
    """b_ih + b_hh where both are added outside any product (RNN, LSTM); None if neither."""
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def input_grads(x, w_ih, d_xp, need_dx):
    """dx, dW_ih and the summed bias gradient from the per-step input-projection gradients."""
    steps, batch, inputs = x.shape
    flat = d_xp.reshape(steps * batch, w_ih.shape[0])
    dx = dot(flat, w_ih).reshape(x.shape) if need_dx else None
    return dx, dot(flat.T, x.reshape(steps * batch, inputs)), flat.sum(axis=0)


def weight_grad(d_gates, h_in):
    """Sum over steps of d_gates[t]^T h_in[t]: (T, B, G) x (T, B, H) -> (G, H), one GEMM."""
    rows = d_gates.shape[0] * d_gates.shape[1]
    return dot(d_gates.reshape(rows, d_gates.shape[-1]).T, h_in.reshape(rows, h_in.shape[-1]))
