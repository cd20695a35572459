"""What the generated CPU modules call in their loops (``time_step``, ``record_norm``), and
the kernel pairs' argument checks (``check_inputs``, ``norm_buffer``: ``tinyseq_jit/_pairs.py``,
and ``tinyseq_jit.cuda``'s entry points)."""

from typing import NamedTuple

import numpy as np

from .._jit import jit

FLOATS = (np.float32, np.float64)


def _check(name, what, arr, dtype, shape):
    if arr.dtype != dtype:
        raise TypeError(f"{name}: {what} has dtype {arr.dtype}, expected {np.dtype(dtype)} like x")
    if arr.shape != shape:
        raise ValueError(f"{name}: {what} has shape {arr.shape}, expected {shape}")


class Inputs(NamedTuple):
    """A layer-direction's arguments as ``check_inputs`` returns them; a kernel's saved tuple
    keeps them for its backward. (The GPU kernels keep x, the states and the weights on the
    device; ``lengths`` and ``padding`` are host arrays everywhere.)"""

    x: np.ndarray  # (T, B, I), contiguous, padded steps zeroed
    states: tuple  # (h0,) or (h0, c0), (B, H) each
    w: dict  # the weights given (not None), by name, contiguous, of x's dtype
    lengths: np.ndarray  # (B,) int64
    padding: np.ndarray  # padding_mask(lengths, T): True at padded steps; None when there are none
    reverse: bool  # the loop runs t = T-1 .. 0


def check_inputs(name, gates, x, states, weights, lengths, reverse, allowed=("w_ih", "w_hh", "b_ih", "b_hh")):
    """Validate a layer-direction's arguments; return them as ``Inputs``.

    x (T, B, I) float32/float64; ``states`` a tuple of (B, H) arrays (h0, or h0 and c0);
    ``weights`` a mapping with w_ih (gates*H, I) and w_hh (gates*H, H), and optionally
    b_ih and b_hh (gates*H,) and the other names in ``allowed`` ((H,) each, but an LSTM's
    projection w_hr (P, H): then w_hh is (gates*H, P) and h0 (B, P)); lengths (B,) ints in
    [1, T] or None (all T).
    """
    x, states = np.asarray(x), tuple(np.asarray(s) for s in states)
    weights = {k: None if v is None else np.asarray(v) for k, v in weights.items()}
    lengths = check_shapes(name, gates, x, states, weights, lengths, allowed)
    w = {k: np.ascontiguousarray(v) for k, v in weights.items() if v is not None}
    states = tuple(np.ascontiguousarray(s) for s in states)
    x = np.ascontiguousarray(x)
    padding = padding_mask(lengths, x.shape[0])
    if padding is not None and np.any(x[padding]):  # not already zeros (as a layer above the first's are)
        x = x.copy()
        zero_padding(padding, x)
    return Inputs(x, states, w, lengths, padding, bool(reverse))


def check_shapes(name, gates, x, states, weights, lengths, allowed):
    """``check_inputs``'s checks of x, the states and the weights by their shapes and dtypes
    alone (so device arrays pass through them too); returns ``lengths`` checked, as int64."""
    if x.dtype not in FLOATS:
        raise TypeError(f"{name}: x must be float32 or float64, got {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"{name}: x must be 3-D (T, B, I), got shape {x.shape}")
    steps, batch, inputs = x.shape
    if steps == 0:
        raise ValueError(f"{name}: x has no time steps (shape {x.shape})")
    unknown = sorted(set(weights) - set(allowed))
    if unknown or weights.get("w_ih") is None or weights.get("w_hh") is None:
        raise ValueError(f"{name}: weights must hold w_ih and w_hh and may hold {allowed[2:]}, got "
                         f"{sorted(weights)}")
    w_hh, w_hr = weights["w_hh"], weights.get("w_hr")
    if w_hr is None:
        size = hidden = w_hh.shape[1] if w_hh.ndim == 2 else 0
    elif w_hr.ndim == 2:
        size, hidden = w_hr.shape  # h has P features, c H
    else:
        raise ValueError(f"{name}: w_hr must have shape (P, H), got {w_hr.shape}")
    if w_hh.shape != (gates * hidden, size):
        raise ValueError(f"{name}: w_hh must have shape ({gates}*H, {'H' if w_hr is None else 'P'}), got "
                         f"{w_hh.shape}" + ("" if w_hr is None else f" (w_hr is (P, H) = {w_hr.shape})"))
    shapes = dict(w_ih=(gates * hidden, inputs), w_hh=(gates * hidden, size), b_ih=(gates * hidden,),
                  b_hh=(gates * hidden,), w_hr=(size, hidden))
    for k, v in weights.items():
        if v is not None:
            _check(name, k, v, x.dtype, shapes.get(k, (hidden,)))
    for what, s, features in zip(("h0", "c0"), states, (size, hidden)):
        _check(name, what, s, x.dtype, (batch, features))
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    from tinyseq.nn.utils.rnn import valid_lengths  # the layers' check, written once

    return valid_lengths(name, lengths, steps, batch).astype(np.int64)


# ---------------------------------------------------------------- the padding rule
#
# Step t of sequence b is padding when t >= lengths[b]. A padded step keeps the state and
# outputs zeros; backward, its gradients are zeros and the state's gradient passes through
# it unchanged. The generated loops skip padded steps; the padded inputs are zeroed before
# the GEMMs that read every step (where a nan would become 0 * nan = nan).


def padding_mask(lengths, steps):
    """(T, B) booleans, True at padded steps; None when no step is padded."""
    if not len(lengths) or lengths.min() == steps:
        return None
    return np.arange(steps)[:, None] >= lengths[None, :]


def zero_padding(padding, *arrays):
    """Set the padded steps of each (T, B, ...) array to zero (``padding`` from ``padding_mask``)."""
    if padding is not None:
        for a in arrays:
            a[padding] = 0.0


@jit
def time_step(s, steps, reverse):
    """The step t that iteration s of a loop over ``steps`` visits: 0 .. T-1, or T-1 .. 0."""
    return steps - 1 - s if reverse else s


def norm_buffer(name, grad_norms, states, inputs):
    """What the backward loop records into: ``grad_norms`` checked ((S, T, B), x's dtype) with
    its padded steps zeroed, or, for None, an empty (S, 0, 0) array that records nothing."""
    steps, batch = inputs.x.shape[:2]
    if grad_norms is None:
        return np.empty((states, 0, 0), dtype=inputs.x.dtype)
    expected, dtype = (states, steps, batch), np.dtype(inputs.x.dtype)
    if not isinstance(grad_norms, np.ndarray):
        raise TypeError(f"{name}: grad_norms must be None or a NumPy array, got {type(grad_norms).__name__}")
    if grad_norms.shape != expected or grad_norms.dtype != dtype:
        raise ValueError(f"{name}: grad_norms must have shape {expected} (states, T, B) and x's dtype {dtype}, "
                         f"got shape {grad_norms.shape} and dtype {grad_norms.dtype}")
    if not grad_norms.flags.c_contiguous or not grad_norms.flags.writeable:
        raise ValueError(f"{name}: grad_norms must be a writable C-contiguous array (np.empty{expected} is one)")
    zero_padding(inputs.padding, *grad_norms)
    return grad_norms


@jit
def record_norm(grad_norms, state, t, b, grad):
    """grad_norms[state, t, b] = ||grad||."""
    total = 0.0
    for v in grad:
        total += v * v
    grad_norms[state, t, b] = np.sqrt(total)
