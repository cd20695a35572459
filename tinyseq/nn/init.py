"""Weight initialisation, after ``torch.nn.init``.

Every ``*_`` function fills its tensor in place -- ``t.data[...] = values``, so the
array object and its dtype stay the same -- counts it as an in-place change (backward's
version check, as PyTorch's fills bump the version) and returns the tensor. A ``Tensor``, a
``Parameter`` or a plain float NumPy array is accepted. Random fills take an optional
``generator`` (a ``numpy.random.Generator``); without one they draw from the library's
default generator, which ``tinyseq.manual_seed(seed)`` (alias ``init.manual_seed``) replaces.

Random values are drawn in float64 and rounded to the tensor's dtype on assignment.
Rounding is monotone, so a uniform fill on ``[a, b]`` stays within ``[dtype(a), dtype(b)]``.

Recurrent extras beyond PyTorch: ``default_rnn_`` (PyTorch's RNN/LSTM/GRU default),
``orthogonal_gates_``, ``identity_`` and ``spectral_radius_`` for stacked-gate weights
``(G*H, H)``, and ``lstm_forget_bias_``.
"""

import math
import numbers

import numpy as np

from .. import random as _random
from .._checks import check_int
from ..gates import gate_names, gate_slice, num_gates
from ..tensor import Tensor, mark_changed
from .module import Module

__all__ = [
    "manual_seed", "calculate_gain", "calculate_fan_in_and_fan_out",
    "uniform_", "normal_", "constant_", "zeros_", "ones_", "default_rnn_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "orthogonal_gates_", "identity_", "eye_", "spectral_radius_", "lstm_forget_bias_",
]

# ---------------------------------------------------------------- generator and checks

# The library's one default generator (``tinyseq.manual_seed``); kept here under the old names.
manual_seed = _random.manual_seed
default_generator = _random.default_generator


def _rng(generator, op):
    return _random.get_generator(generator, f"init.{op}")


def _array(t, op):
    """The writable float array behind ``t`` (a Tensor or an ndarray)."""
    if isinstance(t, Tensor):
        arr = t.data
    elif isinstance(t, np.ndarray):
        arr = t
    else:
        raise TypeError(f"init.{op}: expected a Tensor, Parameter or NumPy array, got {type(t).__name__}")
    if arr.dtype.kind != "f":
        raise TypeError(f"init.{op}: expected a floating-point tensor, got dtype {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"init.{op}: the array is read-only and cannot be filled in place")
    return arr


def _matrix_array(t, op):
    arr = _array(t, op)
    if arr.ndim < 2:
        raise ValueError(f"init.{op}: expected a tensor with at least 2 dimensions, got shape {arr.shape}")
    return arr


def _number(value, name, op):
    if not isinstance(value, numbers.Real):
        raise TypeError(f"init.{op}: expected {name} to be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"init.{op}: expected {name} to be finite, got {value!r}")
    return float(value)


def _filled(t, arr, op):
    """``t``, after counting the fill of ``arr`` as an in-place change (as PyTorch's init functions
    bump the version): a backward through a graph that used the old values then raises."""
    mark_changed(arr, f"init.{op}")
    return t


# ---------------------------------------------------------------- gain and fans


def calculate_gain(nonlinearity, param=None):
    """Recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``.

    linear / conv* / sigmoid: 1; tanh: 5/3; relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + slope**2)) with ``param`` the slope (default 0.01); selu: 3/4.
    """
    linear = ("linear", "conv1d", "conv2d", "conv3d",
              "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"init.calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"init.calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
        "linear, conv1d/2d/3d, conv_transpose1d/2d/3d, sigmoid, tanh, relu, leaky_relu, selu"
    )


def calculate_fan_in_and_fan_out(t):
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``, as PyTorch computes them."""
    shape = _matrix_array(t, "calculate_fan_in_and_fan_out").shape
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(t, mode, op):
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init.{op}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(t)
    return fan_in if mode == "fan_in" else fan_out


# ---------------------------------------------------------------- basic fills


def uniform_(t, a=0.0, b=1.0, generator=None):
    """Fill with draws from U(a, b)."""
    arr = _array(t, "uniform_")
    a, b = _number(a, "a", "uniform_"), _number(b, "b", "uniform_")
    if a > b:
        raise ValueError(f"init.uniform_: expected a <= b, got a={a}, b={b}")
    arr[...] = _rng(generator, "uniform_").uniform(a, b, size=arr.shape)
    return _filled(t, arr, "uniform_")


def normal_(t, mean=0.0, std=1.0, generator=None):
    """Fill with draws from N(mean, std**2)."""
    arr = _array(t, "normal_")
    mean, std = _number(mean, "mean", "normal_"), _number(std, "std", "normal_")
    if std < 0:
        raise ValueError(f"init.normal_: expected std >= 0, got {std}")
    arr[...] = _rng(generator, "normal_").normal(mean, std, size=arr.shape)
    return _filled(t, arr, "normal_")


def constant_(t, value):
    """Fill with ``value``."""
    arr = _array(t, "constant_")
    arr[...] = _number(value, "value", "constant_")
    return _filled(t, arr, "constant_")


def zeros_(t):
    """Fill with 0."""
    return constant_(t, 0.0)


def ones_(t):
    """Fill with 1."""
    return constant_(t, 1.0)


def default_rnn_(t, hidden_size, generator=None):
    """PyTorch's default for every RNN/LSTM/GRU weight and bias: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(check_int("init.default_rnn_", "hidden_size", hidden_size, 1))
    return uniform_(t, -bound, bound, generator=generator)


# ---------------------------------------------------------------- fan-scaled fills


def xavier_uniform_(t, gain=1.0, generator=None):
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    gain = _number(gain, "gain", "xavier_uniform_")
    arr = _matrix_array(t, "xavier_uniform_")
    if arr.size == 0:
        return t
    fan_in, fan_out = calculate_fan_in_and_fan_out(arr)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator=_rng(generator, "xavier_uniform_"))


def xavier_normal_(t, gain=1.0, generator=None):
    """Glorot normal: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    gain = _number(gain, "gain", "xavier_normal_")
    arr = _matrix_array(t, "xavier_normal_")
    if arr.size == 0:
        return t
    fan_in, fan_out = calculate_fan_in_and_fan_out(arr)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(t, 0.0, std, generator=_rng(generator, "xavier_normal_"))


def _kaiming_std(arr, a, mode, nonlinearity, op):
    fan = _fan(arr, mode, op)
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan) if fan else 0.0  # fan is 0 only for a zero-element tensor


def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan).

    ``a`` is the leaky_relu negative slope passed to ``calculate_gain``; ``mode`` picks
    ``fan_in`` (keeps forward variance) or ``fan_out`` (keeps backward variance).
    """
    arr = _matrix_array(t, "kaiming_uniform_")
    std = _kaiming_std(arr, a, mode, nonlinearity, "kaiming_uniform_")
    if arr.size == 0:
        return t
    bound = math.sqrt(3.0) * std
    return uniform_(t, -bound, bound, generator=_rng(generator, "kaiming_uniform_"))


def kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std**2) with std = gain / sqrt(fan); arguments as ``kaiming_uniform_``."""
    arr = _matrix_array(t, "kaiming_normal_")
    std = _kaiming_std(arr, a, mode, nonlinearity, "kaiming_normal_")
    if arr.size == 0:
        return t
    return normal_(t, 0.0, std, generator=_rng(generator, "kaiming_normal_"))


# ---------------------------------------------------------------- orthogonal and identity


def _orthogonal(rows, cols, rng):
    """A (rows, cols) float64 matrix with orthonormal rows or columns, PyTorch's recipe."""
    flat = rng.standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    # Make Q Haar-distributed (Mezzadri 2007). NOTE: PyTorch multiplies by sign(diag R); a
    # zero on the diagonal (probability 0) would zero a column there, here it counts as +1.
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return q.T if rows < cols else q


def orthogonal_(t, gain=1.0, generator=None):
    """Fill with a (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_``.

    The tensor is viewed as ``(rows, numel // rows)``: for rows >= cols the columns are
    orthonormal (Q^T Q = I), otherwise the rows are (Q Q^T = I).
    """
    gain = _number(gain, "gain", "orthogonal_")
    arr = _matrix_array(t, "orthogonal_")
    rng = _rng(generator, "orthogonal_")
    if arr.size == 0:
        return t
    rows = arr.shape[0]
    arr[...] = (gain * _orthogonal(rows, arr.size // rows, rng)).reshape(arr.shape)
    return _filled(t, arr, "orthogonal_")


def _gate_rows(arr, num_gates, op):
    num_gates = check_int(f"init.{op}", "num_gates", num_gates, 1)
    if arr.shape[0] % num_gates:
        raise ValueError(
            f"init.{op}: first dimension {arr.shape[0]} is not divisible by num_gates={num_gates}"
        )
    return num_gates, arr.shape[0] // num_gates


def orthogonal_gates_(t, num_gates, gain=1.0, generator=None):
    """Make each of the ``num_gates`` row blocks of a stacked-gate weight orthogonal on its own.

    For ``weight_hh`` of shape ``(G*H, H)`` (LSTM G=4, GRU G=3) every ``(H, H)`` gate block
    is an independent orthogonal matrix times ``gain``; a plain ``orthogonal_`` on the whole
    ``(G*H, H)`` weight would only make the stacked columns orthonormal. Non-square blocks
    (e.g. ``weight_ih``) are made semi-orthogonal like ``orthogonal_``.
    """
    arr = _matrix_array(t, "orthogonal_gates_")
    num_gates, block_rows = _gate_rows(arr, num_gates, "orthogonal_gates_")
    rng = _rng(generator, "orthogonal_gates_")
    if arr.size == 0:
        return t
    cols = arr.size // arr.shape[0]
    blocks = [_orthogonal(block_rows, cols, rng) for _ in range(num_gates)]
    arr[...] = (gain * np.concatenate(blocks, axis=0)).reshape(arr.shape)
    return _filled(t, arr, "orthogonal_gates_")


def identity_(t, scale=1.0, num_gates=1):
    """Set a square recurrent weight to ``scale * I`` (IRNN, Le et al. 2015).

    With ``num_gates=G`` a stacked-gate weight of shape ``(G*H, H)`` gets ``scale * I`` in
    every ``(H, H)`` block; each block must be square (``eye_`` takes any 2-D shape).
    """
    arr = _array(t, "identity_")
    if arr.ndim != 2:
        raise ValueError(f"init.identity_: expected a 2-D tensor, got shape {arr.shape}")
    num_gates, block_rows = _gate_rows(arr, num_gates, "identity_")
    if block_rows != arr.shape[1]:
        raise ValueError(
            f"init.identity_: expected square gate blocks, got {num_gates} block(s) of shape "
            f"({block_rows}, {arr.shape[1]}) from a weight of shape {arr.shape}"
        )
    scale = _number(scale, "scale", "identity_")
    arr[...] = np.tile(scale * np.eye(block_rows), (num_gates, 1))
    return _filled(t, arr, "identity_")


def spectral_radius_(t, radius, num_gates=1):
    """Rescale a square recurrent weight so that its spectral radius (its eigenvalues' largest
    modulus) is ``radius``; with ``num_gates=G`` each (H, H) block of a (G*H, H) weight on its own.

    The eigenvalues of W_hh say how a linearised recurrence treats a perturbation of the state
    over k steps: it shrinks like radius^k below 1 and grows like it above. Only the scale
    changes (the eigenvectors stay); a block whose eigenvalues are all 0 cannot be rescaled
    (ValueError).
    """
    arr = _array(t, "spectral_radius_")
    if arr.ndim != 2:
        raise ValueError(f"init.spectral_radius_: expected a 2-D tensor, got shape {arr.shape}")
    num_gates, block_rows = _gate_rows(arr, num_gates, "spectral_radius_")
    if block_rows != arr.shape[1]:
        raise ValueError(f"init.spectral_radius_: expected square gate blocks, got {num_gates} block(s) of shape "
                         f"({block_rows}, {arr.shape[1]}) from a weight of shape {arr.shape}")
    radius = _number(radius, "radius", "spectral_radius_")
    if radius < 0:
        raise ValueError(f"init.spectral_radius_: radius must be >= 0 (a modulus), got {radius}")
    if not np.isfinite(arr).all():
        raise ValueError("init.spectral_radius_: the weight holds nan or inf; fill it with finite values first")
    for k in range(num_gates):
        block = arr[k * block_rows:(k + 1) * block_rows]
        current = np.abs(np.linalg.eigvals(block.astype(np.float64))).max() if block.size else 0.0
        if current == 0:
            raise ValueError(f"init.spectral_radius_: block {k} has spectral radius 0 (all eigenvalues 0); "
                             "fill it with something else first")
        block[...] = block * (radius / current)
    return _filled(t, arr, "spectral_radius_")


def eye_(t):
    """Fill a 2-D tensor with the identity, ones on the main diagonal (as ``torch.nn.init.eye_``;
    the tensor need not be square)."""
    arr = _array(t, "eye_")
    if arr.ndim != 2:
        raise ValueError(f"init.eye_: expected a 2-D tensor, got shape {arr.shape}")
    arr[...] = np.eye(*arr.shape)
    return _filled(t, arr, "eye_")


# ---------------------------------------------------------------- LSTM bias


def lstm_forget_bias_(target, value=1.0, hidden_size=None, coupled=False):
    """Set the forget-gate bias of an LSTM to ``value``; the other gates' biases are left alone.

    ``target`` is either

    * a module: in every ``nn.LSTM`` and ``nn.LSTMCell`` in it (itself included; any
      options), in every layer and direction, the forget slice of ``bias_ih`` is set to
      ``value`` and that of ``bias_hh`` to 0, so the forget gate's total bias (the two add)
      is ``value``; returns the module. Or
    * one stacked bias tensor: its forget slice is set to ``value``; returns the tensor. The
      gates are i, f, g, o (PyTorch's), or f, g, o for a coupled LSTM (``coupled=True``),
      and ``hidden_size`` defaults to ``len(bias) // G``. NOTE: an LSTM's two biases add,
      so set ``value`` on one and zero the other's forget slice, or pass the module.
    """
    value = _number(value, "value", "lstm_forget_bias_")
    if isinstance(target, Module):
        return _lstm_modules_forget_bias(target, value)
    arr = _array(target, "lstm_forget_bias_")
    gates = num_gates("LSTM", coupled)
    if arr.ndim != 1:
        raise ValueError(f"init.lstm_forget_bias_: expected a module or a 1-D bias of shape ({gates}*H,), "
                         f"got shape {arr.shape}")
    if hidden_size is None:
        if len(arr) % gates:
            hint = "" if coupled else "; for a coupled LSTM pass coupled=True (or pass the module)"
            raise ValueError(f"init.lstm_forget_bias_: bias length {len(arr)} is not divisible by {gates} "
                             f"(the gates {', '.join(gate_names('LSTM', coupled))}){hint}")
        hidden_size = len(arr) // gates
    hidden_size = check_int("init.lstm_forget_bias_", "hidden_size", hidden_size, 1)
    if len(arr) != gates * hidden_size:
        raise ValueError(
            f"init.lstm_forget_bias_: expected a bias of length {gates}*hidden_size = {gates * hidden_size}, "
            f"got {len(arr)}"
        )
    arr[gate_slice("LSTM", "f", hidden_size, coupled)] = value
    return _filled(target, arr, "lstm_forget_bias_")


def _lstm_modules_forget_bias(module, value):
    lstms = [m for m in module.modules() if getattr(m, "mode", None) == "LSTM"]
    if not lstms:
        raise ValueError(f"init.lstm_forget_bias_: {type(module).__name__} holds no LSTM or LSTMCell")
    if any(not lstm.bias for lstm in lstms):  # checked for all before any is changed
        raise ValueError("init.lstm_forget_bias_: an LSTM built with bias=False has no biases to set")
    for lstm in lstms:
        forget = gate_slice("LSTM", "f", lstm.hidden_size, lstm.coupled)
        for n, p in lstm.named_parameters():
            if n.startswith(("bias_ih", "bias_hh")):
                p.data[forget] = value if n.startswith("bias_ih") else 0.0
                _filled(p, p.data, "lstm_forget_bias_")
    return module
