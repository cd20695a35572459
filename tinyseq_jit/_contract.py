"""The interface every fused kernel pair implements (CPU now, CUDA with the same names).

A forward takes x (T, B, I), the initial state(s) (B, H) and ``weights``, a mapping from
the names below to arrays, and returns a ``Forward``. Its backward takes ``Forward.saved``
and the gradients of ``out`` and of the final state(s), and returns a ``Grads``::

    result = lstm_forward(x, h0, c0, {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih})
    grads = lstm_backward(result.saved, d_out, d_h_n, d_c_n)
    grads.w_ih, grads.b_ih, grads.b_hh   # b_hh is None: the forward had no b_hh

``tinyseq.nn._fused`` wraps such a pair as one node of the autodiff graph.
"""

from typing import NamedTuple

import numpy as np

#: A layer-direction's weights as the kernels name them (the layer's names in brackets):
#: w_ih (G*H, I) [weight_ih], w_hh (G*H, H) [weight_hh], b_ih, b_hh (G*H,) [bias_ih, bias_hh],
#: an LSTM's projection w_hr (P, H) [weight_hr; then w_hh is (G*H, P) and h is (B, P)] and
#: its peepholes ci, cf, co (H,) [weight_ci, weight_cf, weight_co].
WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "ci", "cf", "co")


class Forward(NamedTuple):
    """What a kernel's forward returns."""

    out: np.ndarray  # (T, B, H): h_t at every step, zeros past a sequence's length (H: P if projected)
    h_n: np.ndarray  # (B, H): each sequence's state at its last valid step (B, P if projected)
    c_n: np.ndarray  # (B, H) for an LSTM; None otherwise
    saved: tuple  # the cell's own named tuple of what its backward needs


class Grads(NamedTuple):
    """What a kernel's backward returns: the gradient of each forward argument, named as it.

    None for an argument the forward did not get (a missing bias, the peepholes of a plain
    LSTM, c0 of an RNN or GRU) and for x when the backward was called with ``need_dx=False``.
    """

    x: np.ndarray = None
    h0: np.ndarray = None
    c0: np.ndarray = None
    w_ih: np.ndarray = None
    w_hh: np.ndarray = None
    b_ih: np.ndarray = None
    b_hh: np.ndarray = None
    w_hr: np.ndarray = None
    ci: np.ndarray = None
    cf: np.ndarray = None
    co: np.ndarray = None


def weight_grads(given, **grads):
    """``Grads`` keeping only the weights named in ``given`` (what the forward was handed);
    the state and input gradients are kept as they are."""
    return Grads(**{k: v for k, v in grads.items() if k not in WEIGHTS or k in given})
