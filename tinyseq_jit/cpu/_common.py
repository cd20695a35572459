"""Shared pieces of the CPU kernels: argument checks, the input projection, the gate maths,
the per-step product.

Every public kernel has the same shape: check and allocate in Python, project the input
for all T steps with one GEMM, run the recurrence in one compiled call, and (backward)
turn the per-step gate gradients into dx, dW_ih, dW_hh and the bias gradients with a few
large GEMMs after the loop. The weight of the per-step product (W_hh^T forward, W_hh
backward; named so in the kernels) is passed as ``plan_product``'s plan, not as an array.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .. import _jit
from .._jit import jit

FLOATS = (np.float32, np.float64)


# The gate non-linearities are most of the point-wise work. numba calls libm for math.exp
# and math.tanh one element at a time (~4 and ~16 ns here), and tanh's branches defeat the
# vectoriser, so exp, sigmoid and tanh are built here from plain arithmetic that LLVM turns
# into SIMD code: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, a degree-13 Taylor
# polynomial for e^r - 1 (truncation < 1e-16 relative), and 2^n put straight into the float's
# exponent bits. Branch-free: edge cases are selects.
# They agree with libm to a few ulps (tests/test_backends.py holds them to 4e-16 relative
# over all floats); overflow gives inf and underflow denormals, then 0, as in libm.

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: (y + _ROUND) - _ROUND rounds y to an integer
_P = tuple(1.0 / math.factorial(k) for k in range(14))
_EXP_LO, _EXP_HI = -746.0, 710.0  # e^x rounds to 0 below, overflows above

# float32: the same scheme with 16 SIMD lanes instead of 8 and a degree-7 polynomial
# (truncation < 2e-8 relative), so float32 layers never widen to float64.
_F = np.float32
_LOG2E_F, _LN2_HI_F, _LN2_LO_F = _F(_LOG2E), _F(0.693359375), _F(-2.12194440e-4)
_ROUND_F = _F(12582912.0)  # 1.5 * 2**23
_P_F = tuple(_F(c) for c in _P[:8])
_EXP_LO_F, _EXP_HI_F = _F(-104.0), _F(89.0)
_ONE_F, _TWO_F = _F(1.0), _F(2.0)


def _bitcast(int_type, float_type, ir_type):
    """An intrinsic that reinterprets an ``int_type``'s bits as ``float_type`` (one LLVM
    bitcast, which vectorises)."""
    @intrinsic
    def from_bits(typingctx, bits):
        if bits != int_type:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir_type)

        return float_type(bits), codegen
    return from_bits


_float64_from_bits = _bitcast(types.int64, types.float64, ir.DoubleType())
_float32_from_bits = _bitcast(types.int32, types.float32, ir.FloatType())


@jit
def _reduce64(x):
    """(r, a, b) with x = n ln2 + r, |r| <= ln2/2, a b = 2^n, for x clamped to [_EXP_LO, _EXP_HI].

    2^n is split as a = 2^(n//2), b = 2^(n - n//2) so that both are normal floats: then
    (e^r a) b overflows to inf and underflows to denormals and 0 as e^x should."""
    x = min(max(x, _EXP_LO), _EXP_HI)
    n = (x * _LOG2E + _ROUND) - _ROUND
    r = (x - n * _LN2_HI) - n * _LN2_LO
    k = np.int64(n)
    half = k >> 1
    return r, _float64_from_bits((half + 1023) << 52), _float64_from_bits((k - half + 1023) << 52)


@jit
def _reduce32(x):
    """``_reduce64`` for float32."""
    x = min(max(x, _EXP_LO_F), _EXP_HI_F)
    n = (x * _LOG2E_F + _ROUND_F) - _ROUND_F
    r = (x - n * _LN2_HI_F) - n * _LN2_LO_F
    k = np.int64(n)
    half = k >> 1
    return r, _float32_from_bits(np.int32((half + 127) << 23)), _float32_from_bits(np.int32((k - half + 127) << 23))


@jit
def _expm1_small64(r):
    """e^r - 1 for |r| <= ln2/2: r + r^2/2! + ... + r^13/13!, in Estrin's scheme (short
    dependency chains, so the SIMD units stay busy); the leading r keeps it exact near 0."""
    r2 = r * r
    r4 = r2 * r2
    q0 = (_P[2] + _P[3] * r) + (_P[4] + _P[5] * r) * r2
    q1 = (_P[6] + _P[7] * r) + (_P[8] + _P[9] * r) * r2
    q2 = (_P[10] + _P[11] * r) + (_P[12] + _P[13] * r) * r2
    return r + r2 * (q0 + r4 * (q1 + r4 * q2))


@jit
def _expm1_small32(r):
    """``_expm1_small64`` for float32, to r^7/7!."""
    r2 = r * r
    q0 = (_P_F[2] + _P_F[3] * r) + (_P_F[4] + _P_F[5] * r) * r2
    q1 = _P_F[6] + _P_F[7] * r
    return r + r2 * (q0 + (r2 * r2) * q1)


@jit
def _exp64(x):
    r, a, b = _reduce64(x)
    y = (_expm1_small64(r) + 1.0) * a * b
    return y if x == x else x


@jit
def _exp32(x):
    r, a, b = _reduce32(x)
    y = (_expm1_small32(r) + _ONE_F) * a * b
    return y if x == x else x


@jit
def _tanh64(x):
    r, a, b = _reduce64(-2.0 * abs(x))
    scale = a * b
    e = _expm1_small64(r) * scale + (scale - 1.0)  # e^(-2|x|) - 1
    y = math.copysign(-e / (2.0 + e), x)
    return y if x == x else x


@jit
def _tanh32(x):
    r, a, b = _reduce32(-_TWO_F * abs(x))
    scale = a * b
    e = _expm1_small32(r) * scale + (scale - _ONE_F)
    y = math.copysign(-e / (_TWO_F + e), x)
    return y if x == x else x


def exp(x):
    """e^x, in x's precision (float32, else float64); see the note above. Kernel code only."""
    raise TypeError("tinyseq_jit's exp runs inside compiled kernels only")


def sigmoid(x):
    """1 / (1 + e^-x), in x's precision. Kernel code only."""
    raise TypeError("tinyseq_jit's sigmoid runs inside compiled kernels only")


def tanh(x):
    """tanh x = -expm1(-2|x|) / (2 + expm1(-2|x|)) with x's sign (no cancellation near 0, no
    overflow for large |x|), in x's precision. Kernel code only."""
    raise TypeError("tinyseq_jit's tanh runs inside compiled kernels only")


@overload(exp, jit_options=_jit.OPTIONS)
def _exp_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: _exp64(float(x))


@overload(sigmoid, jit_options=_jit.OPTIONS)
def _sigmoid_impl(x):
    if x == types.float32:
        return lambda x: _ONE_F / (_ONE_F + _exp32(-x))
    return lambda x: 1.0 / (1.0 + _exp64(-float(x)))


@overload(tanh, jit_options=_jit.OPTIONS)
def _tanh_impl(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: _tanh64(float(x))


# The point-wise passes are written as short loops over 1-D rows so that LLVM vectorises
# them. Each loop writes one or two rows and reads a few (LLVM gives up when it would need
# more than 8 run-time overlap checks between them), and indexes its rows from 0: an index
# like a[lo + k], with lo of unknown sign, gets numba's negative-index wraparound, which
# also stops vectorisation. So gate blocks are passed as slices, a[lo:hi].


@jit
def sigmoid_rows(out, u, v):
    """out = sigmoid(u + v), element-wise over 1-D rows of one length."""
    for k in range(out.shape[0]):
        out[k] = sigmoid(u[k] + v[k])


@jit
def tanh_rows(out, u, v):
    """out = tanh(u + v), element-wise over 1-D rows of one length."""
    for k in range(out.shape[0]):
        out[k] = tanh(u[k] + v[k])


@jit
def add_product(out, u, w):
    """out += u * w, element-wise over 1-D rows of one length."""
    for k in range(out.shape[0]):
        out[k] += u[k] * w[k]


def plan_product(w, rows):
    """W (K, N) laid out for ``product_into`` with a (rows, K) left factor, per the rules in
    ``tinyseq_jit._jit``: returns (w3, transposed) with w3 one of
    (1, K, N) (one call), (C, K, width) column chunks (the last one zero-padded) or
    (1, N, K) = W^T with ``transposed`` True."""
    inner, cols = w.shape
    work, limit = rows * inner * cols, _jit.small_gemm_mnk()
    if work <= max(limit, _jit.TINY_GEMM_MNK):
        return np.ascontiguousarray(w).reshape(1, inner, cols), False
    chunks = -(-cols // max(limit // (rows * inner), 1)) if limit > 0 else cols + 1
    if chunks > _jit.MAX_CHUNKS:
        w_t = w.T if w.T.flags.c_contiguous else _transposed(np.ascontiguousarray(w))
        return w_t.reshape(1, cols, inner), True
    width = -(-cols // chunks)  # chunks of equal width
    out = np.zeros((chunks, inner, width), dtype=w.dtype)
    for c in range(chunks):
        part = w[:, c * width : (c + 1) * width]
        out[c, :, : part.shape[1]] = part
    return out, False


@jit
def _transposed(w):
    """w.T as a new C-contiguous array, copied in 32 x 32 tiles (about 2x NumPy's speed at
    W_hh's size: 144-177 against 332-356 us for 1024 x 256 float32)."""
    rows, cols = w.shape
    out = np.empty((cols, rows), dtype=w.dtype)
    for i0 in range(0, rows, 32):
        for j0 in range(0, cols, 32):
            for j in range(j0, min(j0 + 32, cols)):
                row = out[j]
                for i in range(i0, min(i0 + 32, rows)):
                    row[i] = w[i, j]
    return out


@jit
def product_scratch(rows, plan):
    """The scratch array ``product_into`` needs for this plan."""
    w3, transposed = plan
    chunks, inner, width = w3.shape
    if transposed:
        return np.empty((1, inner, rows), dtype=w3.dtype)
    return np.empty((chunks if chunks > 1 else 0, rows, width), dtype=w3.dtype)


@jit
def product_into(a, plan, scratch, out):
    """out = a @ W for ``plan = plan_product(W, len(a))``, ``scratch`` from ``product_scratch``."""
    w3, transposed = plan
    chunks, _, width = w3.shape
    if transposed:
        np.dot(w3[0], a.T, scratch[0])
        out[:] = scratch[0].T
    elif chunks == 1:
        np.dot(a, w3[0], out)
    else:
        for c in range(chunks):
            np.dot(a, w3[c], scratch[c])
            start = c * width
            stop = min(start + width, out.shape[1])
            out[:, start:stop] = scratch[c, :, : stop - start]


@jit
def _dot(a, b):
    return np.dot(a, b)


def dot(a, b):
    """a @ b for 2-D arrays through numba's BLAS, SciPy's OpenBLAS: the library of the loops'
    products and of ``tinyseq._blas`` (one thread pool), called with the GIL released."""
    return _dot(_blas_layout(a), _blas_layout(b))


def _blas_layout(a):
    """``a`` itself when C- or F-contiguous (a transpose is passed to BLAS as such), else a copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)


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
        if lengths.shape == (0,):
            lengths = lengths.astype(np.int64)  # NumPy reads [] as float64
        if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
            raise ValueError(f"{name}: lengths must be {batch} integers, got shape {lengths.shape} "
                             f"and dtype {lengths.dtype}")
        if batch and (lengths.min() < 1 or lengths.max() > steps):
            raise ValueError(f"{name}: lengths must lie in [1, {steps}], got values from {lengths.min()} "
                             f"to {lengths.max()}")
        lengths = lengths.astype(np.int64)
        out[0] = zero_padded_steps(out[0], lengths)
    out.append(lengths)
    if c0 is not None:
        out.append(_array(name, "c0", c0, x.dtype, (batch, hidden)))
    return out


def zero_padded_steps(x, lengths):
    """x with the steps past each sequence's length set to 0 (a copy if any was not).

    The padding rule: a step t >= lengths[b] keeps the state, outputs zeros and gets no
    gradient. The loops skip those steps, but the big GEMMs before and after them do not:
    dW_ih = sum d_gates^T x would meet a nan there as 0 * nan. So padded inputs are zeroed
    before anything multiplies them.
    """
    padded = np.arange(x.shape[0])[:, None] >= lengths[None, :]
    if not np.any(x[padded]):  # nothing padded, or already zeros (a layer above the first)
        return x
    x = x.copy()
    x[padded] = 0.0
    return x


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
