"""The kernels' point-wise maths: exp, sigmoid and tanh that vectorise, and the row loops
that apply them.

Kernel code only: ``exp``, ``sigmoid`` and ``tanh`` are numba overloads, callable from
``@jit`` functions on float32 or float64 scalars.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .. import _jit
from .._jit import jit

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
