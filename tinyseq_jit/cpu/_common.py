"""What every CPU kernel shares: argument checks, the padding rule, the input projection
and the gradient GEMMs after the loop.

Every public kernel has the same shape: check and allocate in Python, project the input
for all T steps with one GEMM, run the recurrence in one compiled call, and (backward)
turn the per-step gate gradients into dx, dW_ih, dW_hh and the bias gradients with a few
large GEMMs after the loop.
"""

from typing import NamedTuple

import numpy as np

from .._jit import jit
from ._gemm import dot

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
    lengths = np.asarray(lengths)
    if lengths.shape == (0,):
        lengths = lengths.astype(np.int64)  # NumPy reads [] as float64
    if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
        raise ValueError(f"{name}: lengths must be {batch} integers, got shape {lengths.shape} "
                         f"and dtype {lengths.dtype}")
    if batch and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"{name}: lengths must lie in [1, {steps}], got values from {lengths.min()} "
                         f"to {lengths.max()}")
    return lengths.astype(np.int64)


# ---------------------------------------------------------------- the padding rule
#
# Step t of sequence b is padding when t >= lengths[b]. A padded step keeps the state and
# outputs zeros; backward, its gate gradients are zeros and the state's gradient passes
# through it unchanged. The loops skip padded steps (``if t >= lengths[b]: continue``) and
# carry the state's gradient with ``add_state_grad``; the arrays the loops leave unwritten
# there are zeroed whole with ``zero_padding``: the outputs, the gate gradients (which the
# GEMMs after the loop read), and the padded inputs (which the GEMMs before and after it
# read, where a nan would become 0 * nan = nan).


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


@jit
def add_state_grad(t, lengths, dh, dh_rec):
    """dh[b] += dh_rec[b] for every sequence b inside its length at step t: the gradient that
    reaches h_{t-1} through the recurrent product. At a padded step dh passes through."""
    for b in range(dh.shape[0]):
        if t < lengths[b]:
            dh[b] += dh_rec[b]


# ---------------------------------------------------------------- gradient telemetry
#
# A backward can record ||dL/dh_t|| (and an LSTM's ||dL/dc_t||) of every sequence at every
# step: the norm of the state's gradient it holds anyway, once everything that reaches the
# state (its output's gradient, the next step's) is summed in. The caller hands over an
# (S, T, B) array for the S states; without one the loops get an empty (S, 0, 0) array and
# skip the recording. NOTE: dL/dh_t is recorded by ``record_norms`` once per step, before
# the loop over the batch, which it leaves as it was: the same code inside that loop, even
# never run, made a small RNN's backward 10% slower (benchmarks/RESULTS.md, issue 12).


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
def record_norms(grad_norms, state, t, lengths, dh, d_out_t):
    """grad_norms[state, t, b] = ||dh[b] + d_out_t[b]|| for every sequence b inside its length:
    the state's gradient from step t+1 plus the output's: all of dL/dh_t."""
    for b in range(dh.shape[0]):
        if t < lengths[b]:
            total = 0.0
            for j in range(dh.shape[1]):
                g = dh[b, j] + d_out_t[b, j]
                total += g * g
            grad_norms[state, t, b] = np.sqrt(total)


@jit
def record_norm(grad_norms, state, t, b, grad):
    """grad_norms[state, t, b] = ||grad||."""
    total = 0.0
    for v in grad:
        total += v * v
    grad_norms[state, t, b] = np.sqrt(total)


# ---------------------------------------------------------------- the GEMMs outside the loop


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


def input_grads(inputs, d_xp, need_dx):
    """dx, dW_ih and the summed bias gradient from the per-step input-projection gradients."""
    x, w_ih = inputs.x, inputs.w["w_ih"]
    steps, batch, features = x.shape
    flat = d_xp.reshape(steps * batch, w_ih.shape[0])
    dx = dot(flat, w_ih).reshape(x.shape) if need_dx else None
    return dx, dot(flat.T, x.reshape(steps * batch, features)), flat.sum(axis=0)


def weight_grad(d_gates, h_in):
    """Sum over steps of d_gates[t]^T h_in[t]: (T, B, G) x (T, B, H) -> (G, H), one GEMM."""
    rows = d_gates.shape[0] * d_gates.shape[1]
    return dot(d_gates.reshape(rows, d_gates.shape[-1]).T, h_in.reshape(rows, h_in.shape[-1]))
