"""Tensors made from nothing: filled, ranges, and views of NumPy arrays, with PyTorch's names.

Floating results are float32 (``config.DEFAULT_DTYPE``) unless ``dtype`` says otherwise;
as in PyTorch, ``arange`` and ``full`` of Python ints give int64. Random tensors are in
``tinyseq.random``, which shares the size and dtype helpers here.
"""

import numbers

import numpy as np

from . import config
from .tensor import Tensor, as_array


def size_of(size, owner):
    """PyTorch's ``*size``: ``f(2, 3)`` or ``f((2, 3))`` -> (2, 3), non-negative ints."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in size):
        raise ValueError(f"{owner}: size must be non-negative ints, got {size}")
    return tuple(int(n) for n in size)


def _dtype(dtype):
    return np.dtype(config.DEFAULT_DTYPE if dtype is None else dtype)


def float_dtype(dtype, owner):
    """``dtype`` if it is a float dtype (None: the default float32), else a TypeError."""
    dtype = _dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{owner}: dtype must be a floating-point dtype, got {dtype}")
    return dtype


def _filled(make, size, dtype, requires_grad):
    return Tensor(make(size_of(size, make.__name__), _dtype(dtype)), requires_grad=requires_grad)


def zeros(*size, dtype=None, requires_grad=False):
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return _filled(np.zeros, size, dtype, requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``."""
    return _filled(np.ones, size, dtype, requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    """A tensor whose values are whatever the memory held (``np.empty``): ``empty(2, 3)``."""
    return _filled(np.empty, size, dtype, requires_grad)


def _scalar_dtype(value, dtype, owner):
    """PyTorch's inference: bool -> bool, int -> int64, float -> the default float dtype."""
    if dtype is not None:
        return np.dtype(dtype)
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int64)
    if isinstance(value, numbers.Real):
        return np.dtype(config.DEFAULT_DTYPE)
    raise TypeError(f"{owner}: expected a real number, got {type(value).__name__}")


def full(size, fill_value, dtype=None, requires_grad=False):
    """A tensor of shape ``size`` filled with ``fill_value`` (an int fills int64, as PyTorch)."""
    shape = size_of((size,), "full")
    return Tensor(np.full(shape, fill_value, _scalar_dtype(fill_value, dtype, "full")),
                  requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    """Zeros with ``t``'s shape and (unless given) dtype."""
    data = as_array(t)
    return Tensor(np.zeros(data.shape, dtype or data.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    """Ones with ``t``'s shape and (unless given) dtype."""
    data = as_array(t)
    return Tensor(np.ones(data.shape, dtype or data.dtype), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    """``start, start + step, ...`` up to but not including ``end`` (``arange(n)`` is 0 .. n-1).

    All-int arguments give int64, any float gives float32, as PyTorch.
    """
    if end is None:
        start, end = 0, start
    for name, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"arange: {name} must be a real number, got {value!r}")
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if ints else config.DEFAULT_DTYPE
    return Tensor(np.arange(start, end, step).astype(dtype), requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing ``array``'s memory and dtype (as ``torch.from_numpy``)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)
