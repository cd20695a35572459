"""The default random generator, and random tensors drawn from it.

Every random draw in tinyseq -- initialisation, dropout, ``rand``/``randn``,
``multinomial`` -- comes from a ``generator=`` argument when one is given (a
``numpy.random.Generator``), else from the one default generator. ``manual_seed(seed)``
replaces it, so one call makes a whole run reproducible (as ``torch.manual_seed``).

NOTE: one default generator for the whole process, shared by all threads.
"""

import numbers

import numpy as np

from ._checks import check_int
from .creation import float_dtype, size_of
from .tensor import Tensor, as_array

_default = np.random.default_rng()


def manual_seed(seed):
    """Reseed the default generator; returns the new ``numpy.random.Generator``."""
    global _default
    _default = np.random.default_rng(seed)
    return _default


def default_generator():
    """The generator used when none is given (replaced by ``manual_seed``)."""
    return _default


def get_rng_state():
    """The default generator's state as plain values (a dict), for a checkpoint; as
    ``torch.get_rng_state``, ``set_rng_state`` puts it back."""
    return _default.bit_generator.state


def set_rng_state(state):
    """Make the default generator continue from a ``get_rng_state()`` state."""
    global _default
    name = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generator = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise ValueError(f"set_rng_state: expected a state from get_rng_state (a dict naming its bit generator), "
                         f"got {type(state).__name__} {name!r}")
    restored = bit_generator()
    try:
        restored.state = state
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"set_rng_state: the {name} state does not load: {e}") from None
    _default = np.random.Generator(restored)


def get_generator(gen, owner):
    """``gen`` if it is a ``numpy.random.Generator``, the default one if None; else a TypeError."""
    if gen is None:
        return _default
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"{owner}: expected generator to be a numpy.random.Generator or None, "
                        f"got {type(gen).__name__}")
    return gen


def rand(*size, dtype=None, generator=None, requires_grad=False):
    """Uniform draws on [0, 1) of the given shape (float32 unless ``dtype``)."""
    shape, dtype = size_of(size, "rand"), float_dtype(dtype, "rand")
    data = get_generator(generator, "rand").random(shape)
    return Tensor(data.astype(dtype), requires_grad=requires_grad)


def randn(*size, dtype=None, generator=None, requires_grad=False):
    """Standard normal draws of the given shape (float32 unless ``dtype``)."""
    shape, dtype = size_of(size, "randn"), float_dtype(dtype, "randn")
    data = get_generator(generator, "randn").standard_normal(shape)
    return Tensor(data.astype(dtype), requires_grad=requires_grad)


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, requires_grad=False):
    """Integers drawn uniformly from [low, high) in a tensor of shape ``size`` (a tuple), int64
    unless ``dtype`` says otherwise; PyTorch's forms: ``randint(high, size)``,
    ``randint(low, high, size)``, ``randint(high=..., size=...)``."""
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=...)
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size (a tuple) is required")
    shape = size_of((size,), "randint")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"randint: {name} must be an int, got {value!r}")
    if low >= high:
        raise ValueError(f"randint: expected low < high, got low={low} and high={high}")
    dtype = np.dtype(np.int64 if dtype is None else dtype)
    if dtype.kind not in "iuf":
        raise TypeError(f"randint: dtype must be an integer or floating-point dtype, got {dtype}")
    if dtype.kind in "iu" and not (np.iinfo(dtype).min <= low and high - 1 <= np.iinfo(dtype).max):
        raise ValueError(f"randint: [{low}, {high}) does not fit dtype {dtype}")
    data = get_generator(generator, "randint").integers(low, high, shape)
    return Tensor(data.astype(dtype), requires_grad=requires_grad)


def multinomial(probs, num_samples, replacement=False, generator=None):
    """Draw ``num_samples`` category indices from each row of ``probs`` (as ``torch.multinomial``).

    ``probs``: (C,) or (rows, C) non-negative weights, not necessarily summing to 1.
    Without ``replacement`` a category is drawn at most once per row, so each row needs
    ``num_samples`` non-zero weights. Returns int64 indices of shape (num_samples,) or
    (rows, num_samples).
    """
    p = as_array(probs, np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0:
        raise ValueError(f"multinomial: probs must be 1-D or 2-D with at least one category, got shape {p.shape}")
    num_samples = check_int("multinomial", "num_samples", num_samples, 1)
    rows = p.reshape(-1, p.shape[-1])
    if not rows.size:  # no rows
        return Tensor(np.zeros(p.shape[:-1] + (num_samples,), dtype=np.int64))
    if not np.isfinite(rows).all() or (rows < 0).any():
        raise ValueError("multinomial: probs must be finite and non-negative")
    if (rows.sum(axis=1) <= 0).any():
        raise ValueError("multinomial: every row of probs needs a positive sum")
    if not replacement and ((rows > 0).sum(axis=1) < num_samples).any():
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from a row "
                         f"with fewer non-zero weights; pass replacement=True")
    rng = get_generator(generator, "multinomial")
    out = np.stack([rng.choice(len(row), size=num_samples, replace=replacement, p=row / row.sum())
                    for row in rows])
    return Tensor(out.astype(np.int64).reshape(p.shape[:-1] + (num_samples,)))
