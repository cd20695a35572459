"""Every differentiable primitive, one class per op, forward and backward side by side.

Forwards take and return NumPy arrays; backwards take the gradient of the output and
return one gradient per tensor input (``None`` where none is needed). ``unbroadcast``
is the only place that sums a gradient back down to an input's shape. Right under each
class stands its lower-case wrapper, the public surface (also reached through ``Tensor``
methods and Python operators); wrappers validate arguments so that a bad shape is
reported by op name instead of by a NumPy traceback.
"""

import builtins
import contextlib
import math
import numbers
import operator
from collections import namedtuple

import numpy as np

from . import config
from . import derivatives
from . import tensor as _tensor_module
from . import random as _random
from ._checks import check_int
from ._blas import matmul as gemm
from .tensor import Function, IndexedGrad, Tensor, _data, as_array, torch_names


# ---------------------------------------------------------------- helpers


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _tensor(x, like=None):
    """Wrap ``x`` as a Tensor; a Python number takes ``like``'s float dtype."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and like is not None and like.dtype.kind == "f":
        return Tensor(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


def _pair(a, b):
    a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_is and b_is:
        return a, b
    if a_is:
        return a, _tensor(b, a)
    b = _tensor(b)
    return _tensor(a, b), b


def _binary(op, name, a, b):
    a, b = _pair(a, b)
    try:
        return op.apply(a, b)
    except ValueError:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{name}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None
        raise


def _axes(axis, ndim, name):
    """Normalise ``axis`` (None, int or sequence) to a sorted tuple of non-negative axes.

    As PyTorch, a 0-d tensor accepts axis 0 and -1, which reduce over nothing.
    """
    if axis is None:
        return tuple(range(ndim))
    raw = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    if not raw:
        raise ValueError(f"{name}: axis=() is ambiguous (NumPy reduces over no axis, PyTorch over all); "
                         "pass axis=None for all")
    span = builtins.max(ndim, 1)
    out = []
    for a in raw:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool) or not -span <= a < span:
            raise ValueError(f"{name}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % span)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis}")
    return tuple(sorted(out)) if ndim else ()


def _axis(axis, ndim, name):
    """One axis, normalised to be non-negative."""
    if not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for a tensor with {ndim} dimensions")
    return int(axis) % ndim


def _one_axis(axis, ndim, name):
    """One axis as a reduction tuple: ``(axis,)``, or ``()`` for a 0-d tensor (as ``_axes``)."""
    if not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: axis must be an int, got {axis!r}")
    return _axes(axis, ndim, name)


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


# ---------------------------------------------------------------- elementwise binary


class Add(Function):
    def forward(self, a, b):
        self.save(a.shape, b.shape)
        return a + b

    def backward(self, g):
        sa, sb = self.saved
        return unbroadcast(derivatives.add_a(g), sa), unbroadcast(derivatives.add_b(g), sb)


def add(a, b):
    """a + b with broadcasting."""
    return _binary(Add, "add", a, b)


class Sub(Function):
    def forward(self, a, b):
        self.save(a.shape, b.shape)
        return a - b

    def backward(self, g):
        sa, sb = self.saved
        return unbroadcast(derivatives.sub_a(g), sa), unbroadcast(derivatives.sub_b(g), sb)


def sub(a, b):
    """a - b with broadcasting."""
    return _binary(Sub, "sub", a, b)


class Mul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        ga = unbroadcast(derivatives.mul_a(g, b), a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(derivatives.mul_b(g, a), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def mul(a, b):
    """a * b with broadcasting."""
    return _binary(Mul, "mul", a, b)


class Div(Function):
    def forward(self, a, b):
        out = a / b
        self.save(a.shape, b, out)
        return out

    def backward(self, g):
        sa, b, out = self.saved
        ga = unbroadcast(derivatives.div_a(g, b), sa) if self.needs_input_grad[0] else None
        gb = unbroadcast(derivatives.div_b(g, b, out), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def div(a, b):
    """a / b with broadcasting."""
    return _binary(Div, "div", a, b)


class Pow(Function):
    """``a ** b`` with both tensors. NOTE: d/db needs a > 0 (it uses log a)."""

    def forward(self, a, b):
        out = a**b
        self.save(a, b, out)
        return out

    def backward(self, g):
        a, b, out = self.saved
        ga = gb = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.needs_input_grad[0]:
                # NOTE: d(a^0)/da is 0 even at a = 0, where b * a^(b-1) would be 0 * inf (as PyTorch).
                ga = unbroadcast(g * np.where(b == 0, 0, b * a ** (b - 1)), a.shape)
            if self.needs_input_grad[1]:
                # NOTE: at a = 0 with b >= 0, out * log a is 0 * -inf; the limit (PyTorch's value) is 0.
                gb = unbroadcast(g * np.where((a == 0) & (b >= 0), 0, out * np.log(a)), b.shape)
        return ga, gb


def pow(a, b):
    """a ** b: a constant Python number exponent, or a tensor exponent (then a must be > 0)."""
    if isinstance(b, numbers.Number) and not isinstance(b, bool):
        return PowScalar.apply(_tensor(a), p=b)
    return _binary(Pow, "pow", a, b)


class PowScalar(Function):
    """``a ** p`` for a constant number ``p``."""

    def forward(self, a, p):
        self.save(a, p)
        return a**p

    def backward(self, g):
        a, p = self.saved
        if p == 0:  # NOTE: not 0 * a^-1, which is nan at a = 0
            return np.zeros_like(g)
        return g * p * a ** (p - 1)


class Maximum(Function):
    """Elementwise max; NOTE: on ties the gradient is split equally between a and b."""

    pick, wins = staticmethod(np.maximum), staticmethod(np.greater)

    def forward(self, a, b):
        self.save(a, b)
        return self.pick(a, b)

    def backward(self, g):
        a, b = self.saved
        share = np.where(self.wins(a, b), 1.0, np.where(a == b, 0.5, 0.0)).astype(g.dtype)
        return unbroadcast(g * share, a.shape), unbroadcast(g * (1 - share), b.shape)


def maximum(a, b):
    """Elementwise maximum with broadcasting."""
    return _binary(Maximum, "maximum", a, b)


class Minimum(Maximum):
    """Elementwise min; NOTE: on ties the gradient is split equally between a and b."""

    pick, wins = staticmethod(np.minimum), staticmethod(np.less)


def minimum(a, b):
    """Elementwise minimum with broadcasting."""
    return _binary(Minimum, "minimum", a, b)


class Where(Function):
    """``cond ? a : b`` elementwise; ``cond`` is a constant bool array."""

    def forward(self, a, b, cond):
        self.save(cond, a.shape, b.shape)
        return np.where(cond, a, b)

    def backward(self, g):
        cond, sa, sb = self.saved
        return unbroadcast(derivatives.where_a(g, cond), sa), unbroadcast(derivatives.where_b(g, cond), sb)


def where(cond, a, b):
    """Pick ``a`` where ``cond`` is true, else ``b`` (all three broadcast together)."""
    return _where("where", "cond", cond, a, b)


def _where(name, cond_name, cond, a, b):
    """``Where`` after checking that ``cond`` is bool and the three shapes broadcast."""
    cond = as_array(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"{name}: {cond_name} must be a bool array, got dtype {cond.dtype}")
    a, b = _pair(a, b)
    try:
        np.broadcast_shapes(cond.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{name}: shapes {cond.shape} ({cond_name}), {a.shape} and {b.shape} cannot be broadcast together"
        ) from None
    return Where.apply(a, b, cond=cond)


def masked_fill(a, mask, value):
    """``value`` where the bool ``mask`` is true, else ``a`` (as ``torch.masked_fill``): the mask
    broadcasts with ``a``; the result keeps ``a``'s dtype. The gradient to ``a`` is zero where
    masked; a 0-d tensor ``value`` gets the sum of the gradient over the masked places."""
    a = _tensor(a)
    value = Tensor(np.asarray(value, a.dtype)) if not isinstance(value, Tensor) else value
    if value.ndim:
        raise ValueError(f"masked_fill: value must be a number or a 0-d tensor, got shape {value.shape}")
    return _where("masked_fill", "mask", mask, value if value.dtype == a.dtype else cast(value, a.dtype), a)


# ---------------------------------------------------------------- comparisons (bool results, no gradient)


def _comparison(name, op, symbol):
    """The public comparison ``name``: ``op`` on the data, a bool tensor with no gradient."""

    def compare(a, b):
        try:
            out = Tensor(np.asarray(op(_data(a), _data(b))))
        except ValueError:
            raise ValueError(f"{name}: shapes {np.shape(_data(a))} and {np.shape(_data(b))} "
                             "cannot be broadcast together") from None
        if _tensor_module._tracer is not None:
            _tensor_module._tracer.compared(name, a, b, out)
        return out

    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = f"``a {symbol} b`` elementwise: a bool tensor (no gradient, as every comparison)."
    return compare


eq = _comparison("eq", operator.eq, "==")
ne = _comparison("ne", operator.ne, "!=")
lt = _comparison("lt", operator.lt, "<")
le = _comparison("le", operator.le, "<=")
gt = _comparison("gt", operator.gt, ">")
ge = _comparison("ge", operator.ge, ">=")


# ---------------------------------------------------------------- elementwise unary


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return derivatives.neg(g)


def neg(a):
    """-a."""
    return Neg.apply(_tensor(a))


class Exp(Function):
    def forward(self, a):
        out = np.exp(a)
        self.save(out)
        return out

    def backward(self, g):
        (out,) = self.saved
        return derivatives.exp(g, out)


def exp(a):
    """e ** a."""
    return Exp.apply(_tensor(a))


class Log(Function):
    def forward(self, a):
        self.save(a)
        return np.log(a)

    def backward(self, g):
        (a,) = self.saved
        return derivatives.log(g, a)


def log(a):
    """Natural logarithm."""
    return Log.apply(_tensor(a))


class Sqrt(Function):
    def forward(self, a):
        out = np.sqrt(a)
        self.save(out)
        return out

    def backward(self, g):
        (out,) = self.saved
        return g * 0.5 / out


def sqrt(a):
    """Square root."""
    return Sqrt.apply(_tensor(a))


class Abs(Function):
    """|a|; NOTE: the gradient at 0 is taken as 0."""

    def forward(self, a):
        self.save(a)
        return np.abs(a)

    def backward(self, g):
        (a,) = self.saved
        return derivatives.abs(g, a)


def abs(a):
    """Absolute value."""
    return Abs.apply(_tensor(a))


class Erf(Function):
    """The error function, 2/sqrt(pi) * integral from 0 to a of exp(-t^2) dt.

    NOTE: computed by SciPy's ``special.erf`` where SciPy imports, else by the standard
    library's ``math.erf`` one element at a time (as exact, but slow on large arrays).
    """

    def forward(self, a):
        self.save(a)
        return _erf(a)

    def backward(self, g):
        (a,) = self.saved
        return g * (2 / np.sqrt(np.pi)) * np.exp(-a * a)


def _erf(a):
    try:
        from scipy.special import erf
    except ImportError:
        return np.vectorize(math.erf, otypes=[np.float64])(a).astype(a.dtype, copy=False)
    return erf(a)


def erf(a):
    """The error function (Gauss's), elementwise."""
    return Erf.apply(_tensor(a))


class Tanh(Function):
    def forward(self, a):
        out = np.tanh(a)
        self.save(out)
        return out

    def backward(self, g):
        (out,) = self.saved
        return derivatives.tanh(g, out)


def tanh(a):
    """Hyperbolic tangent."""
    return Tanh.apply(_tensor(a))


class Sigmoid(Function):
    """1 / (1 + e^-a), computed as (1 + tanh(a / 2)) / 2, which cannot overflow.

    NOTE: for a < -20 or so the result keeps its absolute accuracy (~1e-17) but not its
    relative one; use log_softmax / logsumexp where the log of a tiny probability matters.
    """

    def forward(self, a):
        out = np.tanh(a * 0.5)
        out *= 0.5
        out += 0.5
        self.save(out)
        return out

    def backward(self, g):
        (out,) = self.saved
        return derivatives.sigmoid(g, out)


def sigmoid(a):
    """Logistic sigmoid, stable for large |a|."""
    return Sigmoid.apply(_tensor(a))


class Softplus(Function):
    """log(1 + e^a), by NumPy's ``logaddexp(0, a)``: no overflow, and full relative accuracy
    where it is tiny (a << 0). Its gradient, sigmoid(a), is e^(a - out): accurate there too."""

    def forward(self, a):
        out = np.logaddexp(0, a)
        self.save(a, out)
        return out

    def backward(self, g):
        a, out = self.saved
        return g * np.exp(a - out)


def softplus(a):
    """log(1 + e^a), computed stably (no linear cut-off, unlike PyTorch's ``threshold``)."""
    return Softplus.apply(_tensor(a))


class Relu(Function):
    def forward(self, a):
        out = np.maximum(a, 0)
        self.save(out)
        return out

    def backward(self, g):
        (out,) = self.saved
        return derivatives.relu(g, out)


def relu(a):
    """max(a, 0)."""
    return Relu.apply(_tensor(a))


class LeakyRelu(Function):
    def forward(self, a, negative_slope):
        positive = a > 0
        self.save(positive, negative_slope)
        return np.where(positive, a, a * negative_slope)

    def backward(self, g):
        positive, slope = self.saved
        return np.where(positive, g, g * slope)


def leaky_relu(a, negative_slope=0.01):
    """a where a > 0, else negative_slope * a."""
    return LeakyRelu.apply(_tensor(a), negative_slope=negative_slope)


class Clip(Function):
    """Clamp into [lo, hi]; the gradient passes where lo <= a <= hi (as PyTorch)."""

    def forward(self, a, lo, hi):
        inside = np.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a >= lo
        if hi is not None:
            inside &= a <= hi
        self.save(inside)
        return np.clip(a, lo, hi)

    def backward(self, g):
        (inside,) = self.saved
        return g * inside


def clip(a, min=None, max=None):
    """Clamp into [min, max]; either bound may be None."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    if min is not None and max is not None and min > max:
        raise ValueError(f"clip: min ({min}) is greater than max ({max})")
    return Clip.apply(_tensor(a), lo=min, hi=max)


clamp = clip


class Cast(Function):
    def forward(self, a, dtype):
        self.save(a.dtype)
        return a.astype(dtype)

    def backward(self, g):
        (dtype,) = self.saved
        return g.astype(dtype)


def cast(a, dtype):
    """Convert to ``dtype``; the gradient is converted back. An integer or bool result is a
    constant (no gradient), as in PyTorch."""
    a, dtype = _tensor(a), np.dtype(dtype)
    if dtype.kind not in "fc":
        return Tensor(a.data.astype(dtype))
    return Cast.apply(a, dtype=dtype)


class Clone(Function):
    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


def clone(a):
    """A copy that stays in the graph."""
    return Clone.apply(_tensor(a))


# ---------------------------------------------------------------- matmul


def _rows(x):
    """``x`` as a matrix of its last axis, the leading axes as rows (0 rows where one is 0)."""
    return x.reshape(-1, x.shape[-1]) if x.shape[-1] else x.reshape(math.prod(x.shape[:-1]), 0)


class MatMul(Function):
    """``a @ b`` as NumPy defines it: 1-D operands are promoted, batch dims broadcast."""

    def forward(self, a, b):
        self.save(a, b)
        if a.ndim >= 2 and b.ndim == 2:  # one GEMM over all leading axes, not a batched loop
            return gemm(_rows(a), b).reshape(a.shape[:-1] + b.shape[-1:])
        return a @ b

    def backward(self, g):
        a, b = self.saved
        if a.ndim >= 2 and b.ndim == 2:
            g2 = _rows(g)
            ga = gemm(g2, b.T).reshape(a.shape) if self.needs_input_grad[0] else None
            gb = gemm(_rows(a).T, g2) if self.needs_input_grad[1] else None
            return ga, gb
        # Give 1-D operands (and the output) the matrix axes NumPy added, then drop them.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g
        g2 = g2[..., None, :] if a.ndim == 1 else g2
        # NOTE: not np.matmul for plain matrices: it takes a slow non-BLAS path for some
        # transposed operands (e.g. the (H, 1) @ (1, G) outer product of a batch of one).
        mm = gemm if g2.ndim == 2 else np.matmul
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = mm(g2, np.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga[..., 0, :] if a.ndim == 1 else ga, a.shape)
        if self.needs_input_grad[1]:
            gb = mm(np.swapaxes(a2, -1, -2), g2)
            gb = unbroadcast(gb[..., 0] if b.ndim == 1 else gb, b.shape)
        return ga, gb


class Affine(MatMul):
    """``a @ w + bias`` as one node (a (..., K), w (K, N), bias (N,)): what
    ``nn.functional.linear`` makes inside a recurrence's unroll, where a step's
    ``linear(h, W, b)`` runs T times and each node costs more than a small product.
    The numbers are ``matmul``'s and then ``add``'s; backward is MatMul's, and the bias gets
    the gradient summed over the rows."""

    def forward(self, a, w, bias):
        self.bias_shape = bias.shape
        return super().forward(a, w) + bias

    def backward(self, g):
        ga, gw = super().backward(g)
        return ga, gw, (unbroadcast(g, self.bias_shape) if self.needs_input_grad[2] else None)


def matmul(a, b):
    """Matrix product with NumPy's rules (1-D, 2-D and broadcast batched N-D)."""
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a, k_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned ({k_a} != {k_b})")
    if a.ndim > 2 and b.ndim > 2:  # NOTE: np.broadcast_shapes costs ~1 us; a 2-D or 1-D operand has no batch dims
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast together") from None
    return MatMul.apply(a, b)


# ---------------------------------------------------------------- reductions


#: What ``max(a, axis)`` and ``min(a, axis)`` return, as PyTorch's ``torch.return_types.max``.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


class Sum(Function):
    def forward(self, a, axes, keepdims):
        self.save(a.shape, axes)
        return a.sum(axis=axes, keepdims=keepdims)

    def backward(self, g):
        shape, axes = self.saved
        return np.broadcast_to(g.reshape(_keepdims_shape(shape, axes)), shape)


def _reduce(op, name, a, axis, keepdims, **extra):
    a = _tensor(a)
    return op.apply(a, axes=_axes(axis, a.ndim, name), keepdims=keepdims, **extra)


@torch_names


def sum(a, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all axes; int or tuple)."""
    return _reduce(Sum, "sum", a, axis, keepdims)


class Mean(Function):
    def forward(self, a, axes, keepdims):
        self.save(a.shape, axes)
        return a.mean(axis=axes, keepdims=keepdims)

    def backward(self, g):
        shape, axes = self.saved
        n = int(np.prod([shape[i] for i in axes]))
        return np.broadcast_to(g.reshape(_keepdims_shape(shape, axes)) / n, shape)


@torch_names


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis``."""
    return _reduce(Mean, "mean", a, axis, keepdims)


class Norm(Function):
    """The p-norm over axes, (sum |a|^p)^(1/p); for p = inf the largest |a| (ties share the
    gradient). NOTE: where the norm is 0 the gradient is 0, as PyTorch's, not nan."""

    def forward(self, a, axes, keepdims, p):
        if p == np.inf:
            out = np.abs(a).max(axis=axes, keepdims=True)
        elif p == 2:
            out = np.sqrt((a * a).sum(axis=axes, keepdims=True))
        else:
            out = (np.abs(a) ** p).sum(axis=axes, keepdims=True) ** (1 / p)
        self.save(a, out, axes, p)
        return out if keepdims else out.squeeze(axis=axes)

    def backward(self, g):
        a, out, axes, p = self.saved
        g = g.reshape(out.shape)
        if p == np.inf:
            hit = np.abs(a) == out
            return g * np.sign(a) * hit / hit.sum(axis=axes, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = a / out if p == 2 else np.sign(a) * (np.abs(a) / out) ** (p - 1)
        return g * np.where(out == 0, 0, scale)


@torch_names


def norm(a, p=2, axis=None, keepdims=False):
    """The ``p``-norm over ``axis`` (None: all elements as one vector; int or tuple): ``p`` a
    number >= 1, ``float("inf")`` or ``"fro"`` (= 2), as ``torch.norm``'s vector norms."""
    if p == "fro":
        p = 2
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not p >= 1:
        raise ValueError(f"norm: p must be a number >= 1, inf or 'fro', got {p!r}")
    a = _nonempty("norm", a, axis) if p == np.inf else a
    return _reduce(Norm, "norm", a, axis, keepdims, p=float(p))


class Max(Function):
    """Max over axes; NOTE: tied maxima share the gradient equally."""

    reduce = staticmethod(np.max)

    def forward(self, a, axes, keepdims):
        out = self.reduce(a, axis=axes, keepdims=True)
        self.save(a == out, axes)
        return out if keepdims else out.squeeze(axis=axes)

    def backward(self, g):
        hit, axes = self.saved
        share = hit / hit.sum(axis=axes, keepdims=True)
        return g.reshape(_keepdims_shape(hit.shape, axes)) * share


def _nonempty(name, a, axis):
    a = _tensor(a)
    if builtins.any(a.shape[i] == 0 for i in _axes(axis, a.ndim, name)):
        raise ValueError(f"{name}: cannot reduce over an empty axis (shape {a.shape}, axis {axis})")
    return a


@torch_names


def amax(a, axis=None, keepdims=False):
    """Maximum over ``axis`` (None, int or tuple); tied maxima share the gradient."""
    return _reduce(Max, "amax", _nonempty("amax", a, axis), axis, keepdims)


def _max_min(name, amax_or_amin, pick, a, axis, keepdims):
    if isinstance(axis, Tensor):  # max(a, b): PyTorch's elementwise form
        return (maximum if name == "max" else minimum)(a, axis)
    if axis is None:
        if keepdims:
            raise TypeError(f"{name}: keepdims needs an axis (amax/amin keep all dims with axis=None)")
        return amax_or_amin(a)
    if not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: axis must be an int (a tuple of axes is amax/amin's), got {axis!r}")
    a = _nonempty(name, a, axis)
    indices = _arg(pick, name, a, axis, keepdims=True)
    axes = _axes(axis, a.ndim, name)
    if not axes:  # a 0-d tensor
        return ValuesIndices(clone(a), indices)
    values = _values_at(a, indices.data, axes[0], keepdims)
    return ValuesIndices(values, indices if keepdims else squeeze(indices, axes[0]))


@torch_names


def max(a, axis=None, keepdims=False):
    """As PyTorch: ``max(a)`` is the maximum (ties share the gradient); ``max(a, axis)`` is the
    named tuple ``(values, indices)`` along one axis (the gradient goes to the index returned);
    ``max(a, b)`` with a tensor ``b`` is ``maximum(a, b)``."""
    return _max_min("max", amax, np.argmax, a, axis, keepdims)


class Min(Max):
    """Min over axes; NOTE: tied minima share the gradient equally."""

    reduce = staticmethod(np.min)


@torch_names


def amin(a, axis=None, keepdims=False):
    """Minimum over ``axis`` (None, int or tuple); tied minima share the gradient."""
    return _reduce(Min, "amin", _nonempty("amin", a, axis), axis, keepdims)


@torch_names


def min(a, axis=None, keepdims=False):
    """As ``max``, for the minimum."""
    return _max_min("min", amin, np.argmin, a, axis, keepdims)


class Var(Function):
    """Variance with ``correction`` (1 = unbiased, PyTorch's default; 0 = NumPy's)."""

    def forward(self, a, axes, keepdims, correction):
        centred = a - a.mean(axis=axes, keepdims=True)
        n = int(np.prod([a.shape[i] for i in axes])) - correction
        self.save(centred, axes, n)
        return (centred * centred).sum(axis=axes, keepdims=keepdims) / n

    def backward(self, g):
        centred, axes, n = self.saved[:3]
        return g.reshape(_keepdims_shape(centred.shape, axes)) * (2 / n) * centred


def _spread(op, name, a, axis, keepdims, correction):
    a = _tensor(a)
    n = int(np.prod([a.shape[i] for i in _axes(axis, a.ndim, name)]))
    if n - correction <= 0:
        raise ValueError(f"{name}: need more than {correction} elements to reduce, got {n} (shape {a.shape})")
    return _reduce(op, name, a, axis, keepdims, correction=correction)


@torch_names


def var(a, axis=None, keepdims=False, correction=1):
    """Variance over ``axis``, divided by N - correction (PyTorch's default correction=1).

    NOTE: N - correction <= 0 raises a ValueError, where PyTorch returns nan with a warning.
    """
    return _spread(Var, "var", a, axis, keepdims, correction)


class Std(Var):
    """The square root of ``Var``; NOTE: where it is 0 its gradient is taken as 0 (as PyTorch), not 0/0."""

    def forward(self, a, axes, keepdims, correction):
        out = np.sqrt(super().forward(a, axes, keepdims, correction))
        self.save(*self.saved, out)
        return out

    def backward(self, g):
        out = self.saved[3]
        with np.errstate(divide="ignore", invalid="ignore"):
            return super().backward(np.where(out == 0, 0, g / (2 * out)))


@torch_names


def std(a, axis=None, keepdims=False, correction=1):
    """Standard deviation over ``axis``: ``sqrt(var(a, axis, keepdims, correction))``, with var's
    correction (1 by default, as PyTorch) and its ValueError where N - correction <= 0."""
    return _spread(Std, "std", a, axis, keepdims, correction)


class Cumsum(Function):
    def forward(self, a, axis):
        self.save(axis)
        return np.cumsum(a, axis=axis, dtype=np.int64 if a.dtype.kind in "biu" else None)

    def backward(self, g):
        (axis,) = self.saved
        return np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)


@torch_names


def cumsum(a, axis):
    """Running sums along ``axis`` (PyTorch's ``dim``); integers and bools sum in int64, as PyTorch."""
    a = _tensor(a)
    axes = _one_axis(axis, a.ndim, "cumsum")
    if not axes:  # a 0-d tensor
        return reshape(cumsum(reshape(a, (1,)), 0), ())
    return Cumsum.apply(a, axis=axes[0])


def _order(a, axis, descending):
    """Indices that sort the array ``a`` along ``axis``; equal values keep their order (a stable
    sort) in both directions. NaN sorts as the largest value, as PyTorch."""
    if not descending:
        return np.argsort(a, axis=axis, kind="stable")
    # Sorting the reversed array and reversing the result keeps ties in their first order.
    return a.shape[axis] - 1 - np.flip(np.argsort(np.flip(a, axis), axis=axis, kind="stable"), axis)


def _pick(name, a, axis, descending, count=None):
    """The named tuple ``(values, indices)`` of ``a`` sorted along ``axis``, its first ``count``
    entries (all if None); the gradient flows to the values' places in ``a``."""
    a = _tensor(a)
    axes = _one_axis(axis, a.ndim, name)
    if not axes:  # a 0-d tensor
        return ValuesIndices(clone(a), Tensor(np.zeros((), dtype=np.int64)))
    axis = axes[0]
    order = _order(a.data, axis, descending)[(slice(None),) * axis + (slice(0, count),)]
    return ValuesIndices(_values_at(a, order, axis, keepdims=True), Tensor(order.astype(np.int64)))


@torch_names


def sort(a, axis=-1, descending=False, stable=False):
    """The named tuple ``(values, indices)`` of ``a`` sorted along ``axis`` (as ``torch.sort``);
    the gradient flows to the values. NaN sorts as the largest value.

    The sort is always stable: equal values keep their order, also with ``descending=True``
    (PyTorch's ``stable=True``; ``stable`` is accepted for its signature).
    """
    return _pick("sort", a, axis, descending)


@torch_names


def topk(a, k, axis=-1, largest=True, sorted=True):
    """The named tuple ``(values, indices)`` of the ``k`` largest (``largest=False``: smallest)
    entries along ``axis``, in order (as ``torch.topk``); the gradient flows to the values.

    NOTE: of equal values the first ones (lowest indices) are taken, in their order; PyTorch
    picks among ties as its algorithm happens to. The result is always sorted
    (``sorted=False`` is accepted for PyTorch's signature).
    """
    a = _tensor(a)
    k = check_int("topk", "k", k, 0)
    n = a.shape[_axis(axis, a.ndim, "topk")] if a.ndim else 1
    if k > n:
        raise ValueError(f"topk: k={k} is more than the {n} entries along axis {axis} (shape {a.shape})")
    return _pick("topk", a, axis, largest, k)


def _arg(pick, name, a, axis, keepdims):
    """Index (int64 tensor) of the ``pick`` (np.argmax/np.argmin) along one axis, or in the flattened tensor."""
    a = _tensor(a)
    if axis is None:
        if a.numel() == 0:
            raise ValueError(f"{name}: cannot reduce an empty tensor (shape {a.shape})")
        index = np.asarray(pick(a.data), dtype=np.int64)
        return Tensor(index.reshape((1,) * a.ndim) if keepdims else index)
    if not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: axis must be an int or None, got {axis!r}")
    axes = _axes(axis, a.ndim, name)
    if not axes:  # a 0-d tensor
        return Tensor(np.zeros((), dtype=np.int64))
    _nonempty(name, a, axis)
    return Tensor(pick(a.data, axis=axes[0], keepdims=keepdims).astype(np.int64))


@torch_names


def argmax(a, axis=None, keepdims=False):
    """Index of the maximum along ``axis`` (the first one on ties), or in the flattened tensor."""
    return _arg(np.argmax, "argmax", a, axis, keepdims)


@torch_names


def argmin(a, axis=None, keepdims=False):
    """Index of the minimum along ``axis`` (the first one on ties), or in the flattened tensor."""
    return _arg(np.argmin, "argmin", a, axis, keepdims)


class TakeAlong(Function):
    """``a``'s entries at ``indices`` along ``axis`` (``np.take_along_axis``). NOTE: the indices
    must be distinct along the axis (an argmax's, a sort's, a top-k's): backward puts the
    gradient back, it does not add up repeats."""

    def forward(self, a, indices, axis):
        self.save(a.shape, indices, axis)
        return np.take_along_axis(a, indices, axis)

    def backward(self, g):
        shape, indices, axis = self.saved
        grad = np.zeros(shape, g.dtype)
        np.put_along_axis(grad, indices, g, axis)
        return grad


def _values_at(a, indices, axis, keepdims):
    """``a``'s entries at ``indices`` (keepdims-shaped, distinct along ``axis``) along ``axis``; differentiable."""
    values = TakeAlong.apply(a, indices=indices, axis=axis)
    return values if keepdims else squeeze(values, axis)


# ---------------------------------------------------------------- shape


class Reshape(Function):
    def forward(self, a, shape):
        self.save(a.shape)
        return a.reshape(shape)

    def backward(self, g):
        (shape,) = self.saved
        return g.reshape(shape)


def reshape(a, shape):
    """View with a new shape (one entry may be -1)."""
    a = _tensor(a)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(int(n) for n in shape)
    known = int(np.prod([n for n in shape if n != -1]))
    if shape.count(-1) == 0:
        fits = known == a.numel()
    else:
        fits = shape.count(-1) == 1 and known > 0 and a.numel() % known == 0
    if not fits or builtins.any(n < -1 for n in shape):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} into {shape}")
    return Reshape.apply(a, shape=shape)


@torch_names


def squeeze(a, axis=None):
    """Drop size-1 axes: all of them, or those of ``axis`` (int or tuple) that have size 1; as
    PyTorch (not NumPy), a given axis of another size is left as it is."""
    a = _tensor(a)
    axes = _axes(axis, a.ndim, "squeeze")
    return Reshape.apply(a, shape=tuple(n for i, n in enumerate(a.shape) if i not in axes or n != 1))


@torch_names


def unsqueeze(a, axis):
    """Insert a size-1 axis at ``axis`` (negative counts from the end of the result)."""
    a = _tensor(a)
    axis = _axis(axis, a.ndim + 1, "unsqueeze")
    return Reshape.apply(a, shape=a.shape[:axis] + (1,) + a.shape[axis:])


def flatten(a, start_dim=0, end_dim=-1):
    """Merge the axes ``start_dim`` to ``end_dim`` (both included) into one, as ``torch.flatten``;
    a 0-d tensor becomes 1-D."""
    a = _tensor(a)
    if a.ndim == 0:
        for d in (start_dim, end_dim):
            _one_axis(d, 0, "flatten")  # 0 or -1, as PyTorch
        return Reshape.apply(a, shape=(1,))
    start, end = _axis(start_dim, a.ndim, "flatten"), _axis(end_dim, a.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (shape {a.shape})")
    merged = int(np.prod(a.shape[start:end + 1]))
    return Reshape.apply(a, shape=a.shape[:start] + (merged,) + a.shape[end + 1:])


class Permute(Function):
    def forward(self, a, axes):
        self.save(axes)
        return a.transpose(axes)

    def backward(self, g):
        (axes,) = self.saved
        return g.transpose(np.argsort(axes))


def permute(a, axes):
    """Reorder the axes: ``axes`` is a permutation of range(ndim)."""
    a = _tensor(a)
    axes = tuple(int(x) for x in axes)
    if sorted(x % builtins.max(a.ndim, 1) for x in axes) != list(range(a.ndim)) or builtins.any(
        not -a.ndim <= x < a.ndim for x in axes
    ):
        raise ValueError(f"permute: {axes} is not a permutation of the {a.ndim} axes of shape {a.shape}")
    return Permute.apply(a, axes=tuple(x % a.ndim for x in axes))


def transpose(a, *axes, dim0=None, dim1=None):
    """``transpose(a)`` reverses the axes; ``transpose(a, d0, d1)`` (or ``dim0=, dim1=``) swaps two (as PyTorch)."""
    a = _tensor(a)
    axes += tuple(d for d in (dim0, dim1) if d is not None)
    if not axes:
        return Permute.apply(a, axes=tuple(range(a.ndim))[::-1])
    if len(axes) != 2:
        raise ValueError(f"transpose: expected no axes or two axes to swap, got {axes}; use permute for more")
    d0, d1 = _axis(axes[0], a.ndim, "transpose"), _axis(axes[1], a.ndim, "transpose")
    order = list(range(a.ndim))
    order[d0], order[d1] = order[d1], order[d0]
    return Permute.apply(a, axes=tuple(order))


class Expand(Function):
    def forward(self, a, shape):
        self.save(a.shape)
        return np.broadcast_to(a, shape)

    def backward(self, g):
        (shape,) = self.saved
        return unbroadcast(g, shape)


def expand(a, shape):
    """Broadcast to ``shape`` without copying; -1 keeps a dimension's size (as PyTorch)."""
    a = _tensor(a)
    shape = tuple(int(n) for n in shape)
    lead = len(shape) - a.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {a.shape} to fewer dimensions {shape}")
    shape = tuple(a.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    if builtins.any(n != m and n != 1 for n, m in zip(a.shape, shape[lead:])) or builtins.any(n < 0 for n in shape):
        raise ValueError(f"expand: cannot expand shape {a.shape} to {shape}")
    return Expand.apply(a, shape=shape)


broadcast_to = expand


def t(a):
    """The transpose of a matrix; a 0-D or 1-D tensor is returned as it is (as ``torch.t``)."""
    a = _tensor(a)
    if a.ndim > 2:
        raise ValueError(f"t: expected a tensor with at most 2 dimensions, got shape {a.shape}; "
                         "use transpose(d0, d1) or mT")
    return a if a.ndim < 2 else Permute.apply(a, axes=(1, 0))


def matrix_transpose(a):
    """The last two axes swapped (``Tensor.mT``, a batch of matrices transposed)."""
    a = _tensor(a)
    if a.ndim < 2:
        raise ValueError(f"mT: expected a tensor with at least 2 dimensions, got shape {a.shape}")
    return transpose(a, -2, -1)


# ---------------------------------------------------------------- indexing


class GetItem(Function):
    """``a[index]``: basic slicing, or integer-array indexing (repeats accumulate in backward)."""

    def forward(self, a, index):
        self.save(a.shape, index)
        return a[index]

    def backward(self, g):
        shape, index = self.saved
        return IndexedGrad(index, g, shape, basic=_is_basic(index))


_leaf_slices = None  # inside ``leaf_slices_once``: (id(leaf), index) -> (leaf, leaf[index])


@contextlib.contextmanager
def leaf_slices_once():
    """Inside it, a basic ``[]`` slice of a leaf tensor that takes a gradient (a parameter:
    ``weight_hh[:2 * H]``), taken with grad enabled, is made once and the same node returned
    each time the same index is written again (``chunk``, ``split`` and ``narrow`` are not
    cached): a recurrence's step that slices its weights (``nn.GRUStep(reset_after=False)``)
    then costs one slice per sequence, and backward adds the steps' gradients before one
    scatter into the parameter's, not one (T, ...) zeros-and-scatter per step.
    ``nn.functional.unrolling`` (so ``nn.recurrent.unroll``) runs the steps inside it; the
    leaves must not change in place meanwhile."""
    global _leaf_slices
    outer, _leaf_slices = _leaf_slices, {}
    try:
        yield
    finally:
        _leaf_slices = outer


def _is_basic(index):
    """True when ``index`` (a tuple) holds only slices, ints, None and Ellipsis: a view, no repeats."""
    for x in index:
        if x.__class__ is slice or x is None or x is Ellipsis:
            continue
        # NOTE: (int, np.integer), not numbers.Integral: an ABC check is slower, on a path
        # every slice of a fused layer's output takes.
        if not isinstance(x, (int, np.integer)) or isinstance(x, (bool, np.bool_)):
            return False
    return True


def getitem(a, index):
    """``a[index]`` with slices, ints, None, Ellipsis and integer (or bool) index arrays."""
    a = _tensor(a)
    index = index if isinstance(index, tuple) else (index,)
    if (_leaf_slices is not None and a._ctx is None and a.requires_grad and _tensor_module._grad_enabled
            and _is_basic(index)):
        key = (id(a), tuple((x.start, x.stop, x.step) if x.__class__ is slice else x for x in index))
        if key not in _leaf_slices:  # the leaf kept with it: its id stays its own
            _leaf_slices[key] = (a, GetItem.apply(a, index=index))
        return _leaf_slices[key][1]
    if not a.requires_grad and _is_basic(index):  # nothing to record: the view, without an op's cost
        try:
            data = np.asarray(a.data)[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor shape {a.shape})") from None
        return _tensor_module._new_tensor(Tensor)._init(np.asarray(data), None)
    if not _is_basic(index):
        index = tuple(as_array(x) if isinstance(x, (Tensor, list)) else x for x in index)
        for x in index:
            if isinstance(x, np.ndarray) and x.dtype.kind not in "iub":
                raise TypeError(f"getitem: index arrays must be integer or bool, got dtype {x.dtype}")
    try:
        return GetItem.apply(a, index=index)
    except IndexError as e:
        raise IndexError(f"getitem: {e} (tensor shape {a.shape})") from None


@torch_names


def narrow(a, axis, start, length):
    """``length`` entries along ``axis`` from ``start`` (negative counts from the end), as
    ``torch.narrow``: a slice, its gradient scattered back."""
    a = _tensor(a)
    axis = _axis(axis, a.ndim, "narrow")
    n = a.shape[axis]
    start, length = check_int("narrow", "start", start, -n), check_int("narrow", "length", length, 0)
    start = start + n if start < 0 else start
    if start + length > n:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds the size {n} of axis {axis}")
    return GetItem.apply(a, index=(slice(None),) * axis + (slice(start, start + length),))


class Embedding(Function):
    """Rows of ``weight`` gathered by an integer index array; repeated rows accumulate.
    Positions looking up ``padding_idx`` (if given) send no gradient to that row."""

    def forward(self, weight, indices, padding_idx):
        self.save(weight.shape, indices, padding_idx)
        return weight[indices]

    def backward(self, g):
        shape, indices, padding_idx = self.saved
        if padding_idx is not None:
            g = np.where((indices == padding_idx)[..., None], 0, g).astype(g.dtype, copy=False)
        return IndexedGrad(indices, g, shape, basic=False)


def embedding(indices, weight, padding_idx=None):
    """``weight[indices]``: (num, dim) weight and integer indices of any shape -> (*indices.shape, dim).

    ``padding_idx``: that row's value is still looked up, but it gets no gradient (as PyTorch).
    """
    weight = _tensor(weight)
    idx = as_array(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, dim), got shape {weight.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise ValueError(
            f"embedding: indices must lie in [0, {weight.shape[0]}), got values from {idx.min()} to {idx.max()}"
        )
    return Embedding.apply(weight, indices=idx, padding_idx=padding_idx)


def one_hot(indices, num_classes, dtype=None):
    """Float one-hot encoding (not differentiable): (*indices.shape, num_classes)."""
    idx = as_array(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= num_classes):
        raise ValueError(f"one_hot: indices must lie in [0, {num_classes}), got values from {idx.min()} to {idx.max()}")
    out = np.zeros(idx.shape + (num_classes,), dtype=dtype or config.DEFAULT_DTYPE)
    np.put_along_axis(out, idx[..., None].astype(np.intp), 1, axis=-1)
    return Tensor(out)


# ---------------------------------------------------------------- joining and splitting


class Concatenate(Function):
    def forward(self, *arrays, axis):
        self.save(axis, np.cumsum([x.shape[axis] for x in arrays])[:-1])
        return np.concatenate(arrays, axis=axis)

    def backward(self, g):
        axis, bounds = self.saved
        return tuple(np.split(g, bounds, axis=axis))


def _check_same(name, tensors, skip_axis=None):
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")

    def compared(shape):  # the rank and every length but skip_axis's
        return shape if skip_axis is None else (len(shape),) + shape[:skip_axis] + shape[skip_axis + 1:]

    ref = tensors[0].shape
    for i, t in enumerate(tensors):
        if compared(t.shape) != compared(ref):
            what = f"all but axis {skip_axis}" if skip_axis is not None else "all"
            raise ValueError(f"{name}: tensor 0 has shape {ref} but tensor {i} has shape {t.shape} ({what} must match)")


@torch_names


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = [_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate: expected a non-empty sequence of tensors")
    if tensors[0].ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated; use stack")
    axis = _axis(axis, tensors[0].ndim, "concatenate")
    _check_same("concatenate", tensors, skip_axis=axis)
    return Concatenate.apply(*tensors, axis=axis)


cat = concatenate


class Stack(Function):
    def forward(self, *arrays, axis):
        self.save(axis)
        return np.stack(arrays, axis=axis)

    def backward(self, g):
        (axis,) = self.saved
        return tuple(np.moveaxis(g, axis, 0))


@torch_names


def stack(tensors, axis=0):
    """Join same-shaped tensors along a new axis."""
    tensors = [_tensor(t) for t in tensors]
    _check_same("stack", tensors)
    axis = _axis(axis, tensors[0].ndim + 1, "stack")
    return Stack.apply(*tensors, axis=axis)


@torch_names


def split(a, split_size_or_sections, axis=0):
    """Split along ``axis`` as PyTorch: an int is the size of each piece (the last may be
    smaller); a list gives every piece's size and must add up to the axis length."""
    a = _tensor(a)
    axis = _axis(axis, a.ndim, "split")
    n = a.shape[axis]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size <= 0:
            raise ValueError(f"split: split size must be positive, got {size}")
        sizes = [builtins.min(size, n - start) for start in range(0, n, size)]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or builtins.any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} do not add up to the length {n} of axis {axis}")
    pieces, start = [], 0
    lead = (slice(None),) * axis
    for s in sizes:
        pieces.append(GetItem.apply(a, index=lead + (slice(start, start + s),)))
        start += s
    return pieces


@torch_names


def chunk(a, chunks, axis=0):
    """Split into ``chunks`` pieces of equal size (the last may be smaller), as PyTorch."""
    a = _tensor(a)
    chunks = check_int("chunk", "chunks", chunks, 1)
    n = a.shape[_axis(axis, a.ndim, "chunk")]
    return split(a, builtins.max(-(-n // chunks), 1), axis)


# ---------------------------------------------------------------- softmax family


class Softmax(Function):
    def forward(self, a, axis):
        e = np.exp(a - a.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        self.save(out, axis)
        return out

    def backward(self, g):
        out, axis = self.saved
        return out * (g - (g * out).sum(axis=axis, keepdims=True))


@torch_names


def softmax(a, axis=-1):
    """exp(a) / sum(exp(a)) along ``axis``, shifted by the max for stability."""
    a = _tensor(a)
    return Softmax.apply(a, axis=_one_axis(axis, a.ndim, "softmax"))


class LogSoftmax(Function):
    def forward(self, a, axis):
        shifted = a - a.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        self.save(out, axis)
        return out

    def backward(self, g):
        out, axis = self.saved
        return g - np.exp(out) * g.sum(axis=axis, keepdims=True)


@torch_names


def log_softmax(a, axis=-1):
    """log(softmax(a)) computed stably."""
    a = _tensor(a)
    return LogSoftmax.apply(a, axis=_one_axis(axis, a.ndim, "log_softmax"))


class SoftmaxNLL(Function):
    """-log softmax(a)[target] along the last axis: cross-entropy's work in one op.

    Its backward is ``g (softmax(a) - onehot(target))`` from the saved softmax, whereas
    log_softmax followed by picking the target makes more passes over the (..., C) scores and
    scatters the gradient into a zero array first.
    """

    def forward(self, a, target):
        shifted = a - a.max(axis=-1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, target[..., None], axis=-1)
        e /= total  # softmax
        self.save(e, target)
        return (np.log(total) - picked)[..., 0]

    def backward(self, g):
        p, target = self.saved
        grad = p * g[..., None]
        picked = np.take_along_axis(grad, target[..., None], axis=-1)
        np.put_along_axis(grad, target[..., None], picked - g[..., None], axis=-1)
        return grad


def softmax_nll(a, target):
    """-log softmax(a)[..., target] per position, for integer ``target`` (...) in [0, C):
    what ``nn.functional.cross_entropy`` adds up, fused into one op (``SoftmaxNLL``)."""
    a = _tensor(a)
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"softmax_nll: targets must be integers, got dtype {t.dtype}")
    if a.ndim < 1 or t.shape != a.shape[:-1]:
        raise ValueError(f"softmax_nll: expected targets of shape {a.shape[:-1]}, got {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= a.shape[-1]):
        raise ValueError(f"softmax_nll: targets must lie in [0, {a.shape[-1]}), got values from {t.min()} to {t.max()}")
    return SoftmaxNLL.apply(a, target=t.astype(np.intp, copy=False))


class BinaryCrossEntropy(Function):
    """-(y log p + (1 - y) log(1 - p)) elementwise, each log clamped to >= -100, as PyTorch's.

    Its backward is PyTorch's too: g (p - y) / max(p (1 - p), 1e-12) for p, finite where p
    is 0 or 1 (the clamped logs alone would give 0 / 0 there), and g (log(1 - p) - log p)
    for y.
    """

    def forward(self, p, y):
        with np.errstate(divide="ignore"):
            log_p, log_q = np.log(p), np.log1p(-p)
        self.save(p, y, log_p, log_q)
        return -(y * np.maximum(log_p, -100) + (1 - y) * np.maximum(log_q, -100))

    def backward(self, g):
        p, y, log_p, log_q = self.saved
        return g * (p - y) / np.maximum(p * (1 - p), 1e-12), g * (log_q - log_p)


class LogSumExp(Function):
    def forward(self, a, axes, keepdims):
        m = a.max(axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)  # NOTE: all -inf rows give -inf, not nan
        with np.errstate(divide="ignore"):
            out = m + np.log(np.exp(a - m).sum(axis=axes, keepdims=True))
        self.save(a, out, axes)
        return out if keepdims else out.squeeze(axis=axes)

    def backward(self, g):
        a, out, axes = self.saved
        return g.reshape(out.shape) * np.exp(a - out)


@torch_names


def logsumexp(a, axis=None, keepdims=False):
    """log(sum(exp(a))) over ``axis``, computed stably."""
    a = _tensor(a)
    return LogSumExp.apply(a, axes=_axes(axis, a.ndim, "logsumexp"), keepdims=keepdims)


# ---------------------------------------------------------------- dropout


class Dropout(Function):
    """Multiply by a constant mask (already scaled by 1 / (1 - p))."""

    def forward(self, a, mask):
        self.save(mask, a.shape)
        return a * mask

    def backward(self, g):
        mask, shape = self.saved
        return unbroadcast(g * mask, shape)


def dropout(a, p=0.5, training=True, generator=None, mask=None):
    """Zero elements with probability ``p`` and scale the rest by 1 / (1 - p).

    Pass ``mask`` (already scaled, broadcastable to ``a``) to reuse a mask, e.g. the same
    one at every time step; otherwise one is drawn from ``generator`` (a
    ``numpy.random.Generator``; the default one, which ``tinyseq.manual_seed`` seeds, if None).
    Identity when not training.
    """
    a = _tensor(a)
    if mask is not None:
        mask = as_array(mask, a.dtype)
        try:
            if np.broadcast_shapes(a.shape, mask.shape) != a.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"dropout: mask of shape {mask.shape} does not broadcast to input shape {a.shape}") from None
        return Dropout.apply(a, mask=mask)
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return a
    return Dropout.apply(a, mask=dropout_mask(a.shape, p, a.dtype, generator))


def dropout_mask(shape, p, dtype, generator=None):
    """A mask for ``dropout``: 0 with probability ``p``, else 1 / (1 - p); drawn from
    ``generator`` (the default one if None)."""
    keep = _random.get_generator(generator, "dropout").random(shape) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return (keep * scale).astype(dtype)
