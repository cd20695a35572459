"""Recurrent cells and layers, built only from ops: BPTT is ``loss.backward()``.

Parameters follow PyTorch exactly: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H),
``bias_ih`` and ``bias_hh`` (G*H,), gates stacked in PyTorch's order (LSTM i, f, g, o;
GRU r, z, n). A layer names them ``weight_ih_l{k}`` and ``..._reverse`` for the
backward direction, so a PyTorch state dict converted with ``.numpy()`` loads as is. An
LSTM layer's ``proj_size`` P > 0 is PyTorch's too: ``weight_hr`` (P, H) projects h to P
features, h_t = (o * tanh(c_t)) W_hr^T, so ``weight_hh`` is (G*H, P).

Options beyond PyTorch:
  LSTM ``peephole=True`` adds diagonal cell-to-gate weights (Gers & Schmidhuber):
  ``weight_ci``, ``weight_cf`` (gates see c_{t-1}) and ``weight_co`` (sees c_t), each (H,).
  LSTM ``coupled=True`` ties the input gate to 1 - f; then there is no input-gate block
  and the gates are stacked f, g, o (G = 3; no ``weight_ci``).
  GRU ``reset_after=False`` is Cho et al.'s original form, n = tanh(W_in x + b_in +
  W_hn (r * h) + b_hn); the default ``True`` is PyTorch's, n = tanh(W_in x + b_in +
  r * (W_hn h + b_hn)). Both have the same parameter shapes.

The step functions below take the input projection ``xp = x W_ih^T + b_ih`` already
made, so a layer computes it for all time steps in one matmul before its loop.
"""

from typing import Callable, NamedTuple

import numpy as np

from .. import backend as _backend
from .. import ops
from .. import random as _random
from ..gates import gate_slices, num_gates
from ..tensor import Tensor
from . import _fused, init
from .functional import dropout as _dropout
from .module import Module, Parameter, as_input, check_dtype, check_int
from .recurrent import check_lengths, unroll
from .utils.rnn import packed_input

# ---------------------------------------------------------------- step functions

_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def rnn_step(xp, h, w, nonlinearity="tanh"):
    """Elman step: h' = act(xp + h W_hh^T + b_hh). ``w`` is a ``_StepWeights``."""
    pre = xp + ops.matmul(h, w.hh_t)
    if w.b_hh is not None:
        pre = pre + w.b_hh
    return _ACTIVATIONS[nonlinearity](pre)


def lstm_step(xp, h, c, w, peephole=False, coupled=False):
    """LSTM step; returns (h', c'). Gates i, f, g, o (f, g, o when coupled). With a projection
    (``w.hr_t``, a layer's ``proj_size``), h' = (o * tanh(c')) W_hr^T."""
    gates = xp + ops.matmul(h, w.hh_t)
    if w.b_hh is not None:
        gates = gates + w.b_hh
    s = w.gate  # each gate's columns
    if coupled:
        f, g, o = gates[:, s["f"]], gates[:, s["g"]], gates[:, s["o"]]
        f = ops.sigmoid(f + c * w.cf if peephole else f)
        i = 1 - f
    elif peephole:
        i, f, g, o = gates[:, s["i"]], gates[:, s["f"]], gates[:, s["g"]], gates[:, s["o"]]
        i, f = ops.sigmoid(i + c * w.ci), ops.sigmoid(f + c * w.cf)
    else:
        # One sigmoid over all gates (g's block goes unused) is fewer graph nodes than three.
        act = ops.sigmoid(gates)
        i, f, g, o = act[:, s["i"]], act[:, s["f"]], gates[:, s["g"]], act[:, s["o"]]
    c = f * c + i * ops.tanh(g)
    if peephole:
        o = ops.sigmoid(o + c * w.co)
    elif coupled:
        o = ops.sigmoid(o)
    h = o * ops.tanh(c)
    return (h if w.hr_t is None else ops.matmul(h, w.hr_t)), c


def gru_step(xp, h, w, reset_after=True):
    """GRU step: h' = (1 - z) * n + z * h, gates r, z, n (r and z are one sigmoid over both blocks)."""
    rz, n_cols = w.rz, w.gate["n"]
    if reset_after:
        hp = ops.matmul(h, w.hh_t)
        if w.b_hh is not None:
            hp = hp + w.b_hh
        r, z = ops.chunk(ops.sigmoid(xp[:, rz] + hp[:, rz]), 2, axis=-1)
        n = ops.tanh(xp[:, n_cols] + r * hp[:, n_cols])
    else:
        hp = ops.matmul(h, w.hh_rz_t)
        if w.b_hh is not None:
            hp = hp + w.b_hh_rz
        r, z = ops.chunk(ops.sigmoid(xp[:, rz] + hp), 2, axis=-1)
        hn = ops.matmul(r * h, w.hh_n_t)
        if w.b_hh is not None:
            hn = hn + w.b_hh_n
        n = ops.tanh(xp[:, n_cols] + hn)
    return n + z * (h - n)


class _StepWeights:
    """A cell's weights as its step function reads them, prepared once per sequence (not per
    step): W_hh transposed, ``b_hh`` (None when absent or already in the input projection),
    ``hr_t``: an LSTM's projection W_hr transposed (None without one), the peepholes ``ci``,
    ``cf``, ``co`` (None unless a peephole LSTM), ``gate``: each gate's columns in the
    stacked pre-activations (``tinyseq.gates``), and for a GRU ``rz``, r's and z's columns
    together. Cho et al.'s GRU (``reset_after=False``) multiplies r * h by W_hn
    alone, so it also gets W_hh^T and b_hh split as ``hh_rz_t``, ``hh_n_t``, ``b_hh_rz``,
    ``b_hh_n`` (None otherwise).
    """

    def __init__(self, mode, weights, coupled=False, reset_after=True, fold_b_hh=False):
        self.hh_t = weights["w_hh"].T
        self.b_hh = None if fold_b_hh else weights.get("b_hh")
        self.hr_t = weights["w_hr"].T if "w_hr" in weights else None
        self.ci, self.cf, self.co = weights.get("ci"), weights.get("cf"), weights.get("co")
        self.gate = gate_slices(mode, weights["w_hh"].shape[0] // num_gates(mode, coupled), coupled)
        self.rz = slice(self.gate["r"].start, self.gate["z"].stop) if "z" in self.gate else None
        self.hh_rz_t = self.hh_n_t = self.b_hh_rz = self.b_hh_n = None
        if not reset_after:
            self.hh_rz_t, self.hh_n_t = self.hh_t[:, self.rz], self.hh_t[:, self.gate["n"]]
            if self.b_hh is not None:
                self.b_hh_rz, self.b_hh_n = self.b_hh[self.rz], self.b_hh[self.gate["n"]]


# ---------------------------------------------------------------- what differs between the cell kinds


class CellKind(NamedTuple):
    """What one kind of recurrent cell is, for the code that builds and runs it (cells,
    layers, both backends): everything below that depends on RNN vs LSTM vs GRU reads it
    from here."""

    mode: str  # PyTorch's name, "RNN", "LSTM" or "GRU"; also the key of its gate layout (tinyseq.gates)
    options: dict  # its own constructor options and their defaults
    kernel_options: tuple  # those the fused kernels take as arguments
    states: tuple  # ("h",) or ("h", "c")
    step: Callable  # (xp_t, states, _StepWeights, module) -> the new states: one step, as graph ops
    kernel: str  # its fused pair: tinyseq_jit.cpu.{kernel}_forward and _backward
    fold_b_hh: bool  # b_hh is added outside every product, so it can join the input projection


KINDS = {
    "RNN": CellKind("RNN", {"nonlinearity": "tanh"}, ("nonlinearity",), ("h",),
                    lambda xp, s, w, m: (rnn_step(xp, s[0], w, m.nonlinearity),), "rnn", True),
    "LSTM": CellKind("LSTM", {"peephole": False, "coupled": False}, ("coupled",), ("h", "c"),
                     lambda xp, s, w, m: lstm_step(xp, s[0], s[1], w, m.peephole, m.coupled), "lstm", True),
    "GRU": CellKind("GRU", {"reset_after": True}, ("reset_after",), ("h",),
                    lambda xp, s, w, m: (gru_step(xp, s[0], w, m.reset_after),), "gru", False),
}

#: The kernels' names for a cell's parameters (``tinyseq_jit._contract.WEIGHTS``); a layer
#: adds a suffix such as "_l0" or "_l1_reverse" to the attribute names.
_PARAMETERS = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
               "w_hr": "weight_hr", "ci": "weight_ci", "cf": "weight_cf", "co": "weight_co"}


def _check_options(name, kind, options):
    """Refuse an option another kind of cell takes (``peephole=True`` for a GRU); check its values."""
    for option, value in options.items():
        if option not in kind.options and value != _DEFAULTS[option]:
            owner = next(k.mode for k in KINDS.values() if option in k.options)
            raise ValueError(f"{name}: {option} is an {owner} option")
    if "nonlinearity" in kind.options and options["nonlinearity"] not in _ACTIVATIONS:
        raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {options['nonlinearity']!r}")


_DEFAULTS = {option: default for kind in KINDS.values() for option, default in kind.options.items()}


def _make_params(module, suffix, kind, input_size, hidden_size, bias, peephole, coupled, dtype, proj_size=0):
    """Create the parameters of one cell as attributes named ``weight_ih{suffix}`` etc., all
    PyTorch's default U(-1/sqrt(H), 1/sqrt(H)). ``proj_size`` P > 0 (an LSTM layer's) adds
    ``weight_hr`` (P, H), and ``weight_hh`` reads the projected h: (G*H, P)."""
    gh = num_gates(kind.mode, coupled) * hidden_size
    shapes = {"w_ih": (gh, input_size), "w_hh": (gh, proj_size or hidden_size)}
    if bias:
        shapes.update(b_ih=(gh,), b_hh=(gh,))
    else:
        setattr(module, f"bias_ih{suffix}", None)
        setattr(module, f"bias_hh{suffix}", None)
    if proj_size:
        shapes["w_hr"] = (proj_size, hidden_size)
    if peephole:
        shapes.update({k: (hidden_size,) for k in (("cf", "co") if coupled else ("ci", "cf", "co"))})
    for key, shape in shapes.items():
        param = init.default_rnn_(Parameter(np.empty(shape, dtype=dtype)), hidden_size)
        setattr(module, _PARAMETERS[key] + suffix, param)


def _cell_weights(module, suffix=""):
    """``{kernel name: Parameter}`` of one cell or layer-direction, only those it has."""
    found = {key: getattr(module, attr + suffix, None) for key, attr in _PARAMETERS.items()}
    return {key: p for key, p in found.items() if p is not None}


def _param_dtype(module):
    """The dtype of a cell's or layer's parameters (all share one; see ``Module.to``)."""
    weight = getattr(module, "weight_hh", None)
    return (weight if weight is not None else module.weight_hh_l0).dtype


def _state_input(name, kind, s, dtype, what):
    """A state argument as a Tensor; a tuple of tensors is refused (only an LSTM's state is a pair)."""
    several = isinstance(s, (tuple, list)) and any(isinstance(v, (Tensor, np.ndarray)) for v in s)
    if several and len(kind.states) == 1:
        raise TypeError(f"{name}: expected {what} to be one Tensor or array, got a {type(s).__name__} of them; "
                        "only an LSTM takes a pair (h, c)")
    return as_input(name, s, dtype, what)


def _check_projection_backend(name, proj_size, where):
    """Refuse to run an LSTM with ``proj_size`` on "cuda": its GPU kernels have no projection."""
    if proj_size and where == "cuda":
        raise ValueError(f"{name}: backend 'cuda' does not support proj_size={proj_size} (the GPU kernels have "
                         "no projection); use backend='numba' or 'graph'")


# ---------------------------------------------------------------- cells


class _CellBase(Module):
    mode = None  # "RNN", "LSTM" or "GRU", as PyTorch's; the key of the cell's ``KINDS`` entry

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", peephole=False, coupled=False,
                 reset_after=True, dtype=np.float32):
        name = type(self).__name__
        check_int(name, "input_size", input_size, 1)
        check_int(name, "hidden_size", hidden_size, 1)
        _check_options(name, self._kind, dict(nonlinearity=nonlinearity, peephole=peephole, coupled=coupled,
                                              reset_after=reset_after))
        dtype = check_dtype(name, dtype)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.nonlinearity, self.peephole, self.coupled, self.reset_after = nonlinearity, peephole, coupled, reset_after
        _make_params(self, "", self._kind, input_size, hidden_size, bias, peephole, coupled, dtype)

    @property
    def _kind(self):
        return KINDS[self.mode]

    def _input(self, x):
        """Validate x ((B, I) or unbatched (I,)); return (x as (B, I), was_unbatched)."""
        name = type(self).__name__
        x = as_input(name, x, _param_dtype(self))
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), "
                             f"got {x.shape}")
        return (x.reshape(1, -1), True) if x.ndim == 1 else (x, False)

    def _state(self, s, batch, unbatched, what):
        name = type(self).__name__
        dtype = _param_dtype(self)
        if s is None:
            return Tensor(np.zeros((batch, self.hidden_size), dtype=dtype))
        s = _state_input(name, self._kind, s, dtype, what)
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if s.shape != expected:
            raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
        return s.reshape(1, -1) if unbatched else s

    def _xp(self, x):
        xp = ops.matmul(x, self.weight_ih.T)
        return xp if self.bias_ih is None else xp + self.bias_ih

    def _weights(self):
        return _StepWeights(self.mode, _cell_weights(self), self.coupled, self.reset_after)

    def extra_repr(self):
        extra = "" if self.bias else ", bias=False"
        for option, default in self._kind.options.items():
            if getattr(self, option) != default:
                extra += f", {option}={getattr(self, option)!r}"
        return f"{self.input_size}, {self.hidden_size}{extra}"


_CELL_DOC = """{title}

{equations}
    One time step; the layers unroll the same step functions over T steps.

    Args:
        input_size: I, the number of input features.
        hidden_size: H, the number of hidden features.
        bias: if False, no ``bias_ih``/``bias_hh``. Default: True.
{own_args}        dtype: float32 (default) or float64; the input and state must match.

    Inputs: input, {hx}
        - **input**: (B, I), or (I,) unbatched.
        - **{hx}**: {hx_doc} Zeros if None.

    Outputs: {out}
        - **{out}**: {out_doc}

    Attributes:
        weight_ih: ({G}*H, I), weight_hh: ({G}*H, H), bias_ih and bias_hh: ({G}*H,) or None;
            the gates' blocks stacked {gates} (``tinyseq.gates``). All start U(-1/sqrt(H), 1/sqrt(H)).
{own_attributes}"""


class RNNCell(_CellBase):
    __doc__ = _CELL_DOC.format(
        title="An Elman RNN cell, as ``torch.nn.RNNCell``.",
        equations="    h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)     (or relu)\n",
        own_args="        nonlinearity: \"tanh\" (default) or \"relu\".\n",
        hx="hx", hx_doc="h, (B, H) or (H,).", out="h'", out_doc="(B, H), or (H,) unbatched.",
        G=1, gates="(one block)", own_attributes="")

    mode = "RNN"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, nonlinearity=nonlinearity, dtype=dtype)

    def forward(self, x, hx=None):
        x, unbatched = self._input(x)
        h = self._state(hx, x.shape[0], unbatched, "h")
        out = rnn_step(self._xp(x), h, self._weights(), self.nonlinearity)
        return out.reshape(-1) if unbatched else out


class LSTMCell(_CellBase):
    __doc__ = _CELL_DOC.format(
        title="An LSTM cell with a forget gate, as ``torch.nn.LSTMCell``, plus peepholes and a coupled gate.",
        equations=("    i, f, o = sigmoid(x W_i^T + b_i + h W_h^T + b_h) per gate,  g = tanh(...)\n"
                   "    c' = f * c + i * g,     h' = o * tanh(c')\n"
                   "    (peephole: ci * c, cf * c join i, f and co * c' joins o; coupled: i = 1 - f)\n"),
        own_args=("        peephole: diagonal cell-to-gate weights (Gers & Schmidhuber). Default: False.\n"
                  "        coupled: tie the input gate to 1 - f (no i block). Default: False.\n"),
        hx="hx", hx_doc="the pair (h, c), each (B, H) or (H,).", out="(h', c')",
        out_doc="each (B, H), or (H,) unbatched.",
        G="G", gates="i, f, g, o (G = 4), or f, g, o when coupled (G = 3)",
        own_attributes="        weight_ci, weight_cf, weight_co: (H,) with ``peephole=True`` (no ci when coupled).\n")

    mode = "LSTM"

    def __init__(self, input_size, hidden_size, bias=True, peephole=False, coupled=False, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, peephole=peephole, coupled=coupled, dtype=dtype)

    def forward(self, x, hx=None):
        x, unbatched = self._input(x)
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError("LSTMCell: hx must be a tuple (h, c)")
        h, c = (None, None) if hx is None else hx
        h = self._state(h, x.shape[0], unbatched, "h")
        c = self._state(c, x.shape[0], unbatched, "c")
        h, c = lstm_step(self._xp(x), h, c, self._weights(), self.peephole, self.coupled)
        return (h.reshape(-1), c.reshape(-1)) if unbatched else (h, c)


class GRUCell(_CellBase):
    __doc__ = _CELL_DOC.format(
        title="A GRU cell, as ``torch.nn.GRUCell``, plus Cho et al.'s original form.",
        equations=("    r, z = sigmoid(x W_i^T + b_i + h W_h^T + b_h) per gate\n"
                   "    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))     (reset_after=False: (r * h) W_hn^T + b_hn)\n"
                   "    h' = (1 - z) * n + z * h\n"),
        own_args=("        reset_after: True (default, PyTorch's) applies r after the recurrent product;\n"
                  "            False is Cho et al. 2014's original. Same parameter shapes.\n"),
        hx="hx", hx_doc="h, (B, H) or (H,).", out="h'", out_doc="(B, H), or (H,) unbatched.",
        G=3, gates="r, z, n", own_attributes="")

    mode = "GRU"

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, reset_after=reset_after, dtype=dtype)

    def forward(self, x, hx=None):
        x, unbatched = self._input(x)
        h = self._state(hx, x.shape[0], unbatched, "h")
        out = gru_step(self._xp(x), h, self._weights(), self.reset_after)
        return out.reshape(-1) if unbatched else out


# ---------------------------------------------------------------- layers



class RNNBase(Module):
    """A stack of recurrent layers unrolled over time: what ``RNN``, ``LSTM`` and ``GRU``
    share (their docstrings have the arguments, inputs and outputs).

    On the "graph" backend each layer-direction runs the step functions above as ops; on
    "numba" (and "cuda") it is one fused kernel pair (``nn/_fused.py``).
    """

    mode = None  # "RNN", "LSTM" or "GRU", as PyTorch's; the key of the layer's ``KINDS`` entry

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", peephole=False, coupled=False, reset_after=True,
                 proj_size=0, backend="auto", dtype=np.float32, generator=None):
        name = type(self).__name__
        check_int(name, "input_size", input_size, 1)
        check_int(name, "hidden_size", hidden_size, 1)
        check_int(name, "num_layers", num_layers, 1)
        proj_size = check_int(name, "proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        _check_options(name, self._kind, dict(nonlinearity=nonlinearity, peephole=peephole, coupled=coupled,
                                              reset_after=reset_after))
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if backend not in _backend.BACKENDS:
            raise ValueError(f"{name}: backend must be one of {_backend.BACKENDS}, got {backend!r}")
        if backend != "auto":
            _check_projection_backend(name, proj_size, backend)
            _backend.resolve(backend)  # fail now, not at the first forward, if it cannot run
        dtype = check_dtype(name, dtype)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.nonlinearity = bidirectional, nonlinearity
        self.peephole, self.coupled, self.reset_after = peephole, coupled, reset_after
        self.proj_size, self.backend, self.generator = proj_size, backend, generator
        for layer in range(num_layers):
            for suffix in self._suffixes(layer):
                size = input_size if layer == 0 else self._h_size * self.num_directions
                _make_params(self, suffix, self._kind, size, hidden_size, bias, peephole, coupled, dtype, proj_size)

    @property
    def _kind(self):
        return KINDS[self.mode]

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _h_size(self):
        """The size of h: ``proj_size`` when an LSTM projects it, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _suffixes(self, layer):
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    # ------------------------------------------------------------ input checks

    def _check_input(self, x, hx, lengths):
        name = type(self).__name__
        dtype = _param_dtype(self)
        x = as_input(name, x, dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"{name}: expected a 3-D input ({'B, T' if self.batch_first else 'T, B'}, "
                             f"{self.input_size}) or a 2-D unbatched one, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input feature size {self.input_size}, got {x.shape[-1]} "
                             f"(input shape {x.shape})")
        unbatched = x.ndim == 2
        if unbatched:
            x = ops.unsqueeze(x, 1)
        elif self.batch_first:
            x = ops.transpose(x, 0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {x.shape})")

        kind = self._kind
        if hx is None:
            hx = [None] * len(kind.states)
        elif len(kind.states) == 2:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError(f"{name}: hx must be a tuple (h0, c0)")
        else:
            hx = [hx]
        states = []
        for s, what, size in zip(hx, ("h0", "c0"), (self._h_size, self.hidden_size)):
            states_shape = (self.num_layers * self.num_directions, batch, size)
            if s is None:
                states.append(Tensor(np.zeros(states_shape, dtype=dtype)))
                continue
            s = _state_input(name, kind, s, dtype, what)
            expected = states_shape[::2] if unbatched else states_shape
            if s.shape != expected:
                raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
            states.append(ops.unsqueeze(s, 1) if unbatched else s)

        lengths, mask = check_lengths(name, lengths, steps, batch)
        return x, states, mask, lengths, unbatched

    # ------------------------------------------------------------ forward

    def _run_direction(self, x, weights, states, mask, reverse, norms=None, label=""):
        """One layer-direction over all steps on the graph backend: the step function as ops.

        ``weights`` maps kernel names to this direction's parameters; ``states`` is (h0,) or
        (h0, c0); ``norms``: None, or an (S, T, B) array that backward fills with each
        sequence's ||dL/d state_t|| (as the fused kernels' telemetry does); ``label`` names
        the steps in ``tinyseq.viz`` pictures. Returns (outputs (T, B, H), the final states).
        """
        kind = self._kind
        # RNN and LSTM add both biases outside any product, so they join the input
        # projection (one add for all steps); GRU's b_hn sits inside r * (...).
        b_ih, b_hh = weights.get("b_ih"), weights.get("b_hh")
        fold = kind.fold_b_hh and b_hh is not None
        xp = ops.matmul(x, weights["w_ih"].T)
        if b_ih is not None:
            xp = xp + (b_ih + b_hh if fold else b_ih)
        w = _StepWeights(self.mode, weights, self.coupled, self.reset_after, fold_b_hh=fold)

        def cell(xp_t, states):
            new = kind.step(xp_t, states, w, self)
            return new[0], new

        return unroll(cell, xp, tuple(states), mask, reverse, norms, label)

    def forward(self, x, hx=None, lengths=None):
        x, lengths, repack = packed_input(type(self).__name__, x, lengths, self.batch_first)
        output, state = self._forward(x, hx, lengths)
        return repack(output), state

    def _forward(self, x, hx, lengths, grad_norms=None):
        """``forward``; with a list as ``grad_norms``, each layer-direction (in the order of
        h_n's first axis) appends to it the (S, T, B) array its backward fills with every
        sequence's ||dL/dh_t|| (and ||dL/dc_t||) at every step (``tinyseq.bptt``)."""
        x, states, mask, lengths, unbatched = self._check_input(x, hx, lengths)
        where = _backend.resolve(self.backend)
        _check_projection_backend(type(self).__name__, self.proj_size, where)
        fused = where != "graph"
        if mask is not None and not fused:
            # Padded steps must influence nothing: a nan there would reach the gradients as
            # 0 * nan through the unused step's ops, so it is replaced before any product.
            # (The fused kernels do the same to their copy of x.)
            x = ops.where(mask[:, :, None], x, 0.0)
        kind = self._kind
        options = {k: getattr(self, k) for k in kind.kernel_options}
        finals = []  # the final states of each layer-direction, bottom first
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + d
                weights = _cell_weights(self, suffix)
                initial = tuple(s[k] for s in states)
                norms = None
                if grad_norms is not None:
                    norms = np.zeros((len(kind.states),) + x.shape[:2], dtype=x.dtype)
                    grad_norms.append(norms)
                if fused:
                    out, final = _fused.run(kind.kernel, layer_input, initial, weights, lengths, d == 1, options,
                                            grad_norms=norms, device=where)
                else:
                    out, final = self._run_direction(layer_input, weights, initial, mask, d == 1, norms,
                                                     label=f"{type(self).__name__}{suffix}")
                outs.append(out)
                finals.append(final)
            layer_input = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                rng = _random.get_generator(self.generator, type(self).__name__)
                layer_input = _dropout(layer_input, self.dropout, generator=rng)
        output = layer_input
        state = [ops.stack([f[i] for f in finals], axis=0) for i in range(len(kind.states))]  # (L*D, B, H) each
        if unbatched:
            output, state = output.squeeze(1), [s.squeeze(1) for s in state]
        elif self.batch_first:
            output = ops.transpose(output, 0, 1)
        return output, (state[0] if len(state) == 1 else tuple(state))

    def extra_repr(self):
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                        nonlinearity="tanh", peephole=False, coupled=False, reset_after=True, proj_size=0,
                        backend="auto")
        for key, default in defaults.items():
            value = getattr(self, key)
            if value != default:
                parts.append(f"{key}={value!r}")
        return ", ".join(parts)


# The layers' docstrings share their arguments, inputs and outputs; each fills in its
# equations, its own options and its state.
_LAYER_DOC = """{title}

{equations}
    A stack of ``num_layers`` layers, each unrolled over the T steps of the input;
    backpropagation through time is ``loss.backward()``.

    Args:
        input_size: I, the number of features of each input step.
        hidden_size: H, the number of features of the hidden state.
        num_layers: L, recurrent layers stacked (each reads the previous one's output). Default: 1.
{own_args}        bias: if False, no ``bias_ih``/``bias_hh``. Default: True.
        batch_first: if True, input and output are (B, T, ...) instead of (T, B, ...). The
            states ``hx`` and ``h_n`` stay (L*D, B, H), as in PyTorch. Default: False.
        dropout: dropout probability on each layer's output except the last, in training. Default: 0.
        bidirectional: if True (D = 2), each layer also runs from t = T-1 down to 0 and the two
            directions' outputs are concatenated. Default: False.
        backend: "graph" (these unrolled ops), "numba" (fused kernels, ``tinyseq_jit``), "cuda"
            (the same on an NVIDIA GPU, ``tinyseq_jit.cuda``) or "auto" (default:
            ``tinyseq.backend``'s choice, numba when it imports; never cuda). Same numbers.
        dtype: float32 (default) or float64; the input and states must match.
        generator: a ``numpy.random.Generator`` for the dropout masks (default: the library's).

    Inputs: input, {hx}, lengths=None
        - **input**: (T, B, I), or (B, T, I) with ``batch_first=True``; (T, I) unbatched.
        - **{hx}**: {hx_doc} Zeros if None.
        - **lengths**: B ints in [1, T], each sequence's length in a padded batch: padded
          steps leave the state unchanged, the reverse direction runs over each sequence's
          valid part, and outputs past a sequence's end are zero. None: all T.
          Or, as PyTorch, pass ``input`` as an ``nn.utils.rnn.PackedSequence`` (and no
          ``lengths``): the same run; ``output`` then comes packed the same way, and the
          states stay in the original batch order.

    Outputs: output, {out_state}
        - **output**: (T, B, D*H), or (B, T, D*H) with ``batch_first=True``; (T, D*H)
          unbatched: the last layer's hidden state at every step.
        - **{out_state}**: {out_state_doc}
          With ``lengths``, each sequence's state at its own last valid step.

    Attributes:
        weight_ih_l{{k}}: ({G}*H, I) for k = 0, ({G}*H, D*H) after; the gates' blocks stacked
            {gates} (``tinyseq.gates``).
        weight_hh_l{{k}}: ({G}*H, H).
        bias_ih_l{{k}}, bias_hh_l{{k}}: ({G}*H,), or None with ``bias=False``.
        The reverse direction's have the suffix ``_reverse``. All start U(-1/sqrt(H), 1/sqrt(H)).
{own_attributes}"""


class RNN(RNNBase):
    __doc__ = _LAYER_DOC.format(
        title="Elman RNN layer(s), as ``torch.nn.RNN``.",
        equations="    h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)     (or relu)\n",
        own_args="        nonlinearity: \"tanh\" (default) or \"relu\".\n",
        hx="h_0", hx_doc="(L*D, B, H), or (L*D, H) unbatched.",
        out_state="h_n", out_state_doc="(L*D, B, H): the final hidden state of each layer and direction.",
        G=1, gates="(one block)", own_attributes="")

    mode = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, backend="auto", dtype=np.float32, generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         nonlinearity=nonlinearity, backend=backend, dtype=dtype, generator=generator)


class LSTM(RNNBase):
    __doc__ = _LAYER_DOC.format(
        title="Long short-term memory layer(s), as ``torch.nn.LSTM``, plus peepholes and a coupled gate.",
        equations=(
            "    i = sigmoid(x_t W_ii^T + b_ii + h_{t-1} W_hi^T + b_hi)     (f, o alike)\n"
            "    g = tanh(x_t W_ig^T + b_ig + h_{t-1} W_hg^T + b_hg)\n"
            "    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)\n"
            "    peephole=True adds ci * c_{t-1} to i's and cf * c_{t-1} to f's pre-activation, co * c_t to o's;\n"
            "    coupled=True drops the input gate: i = 1 - f.\n"),
        own_args=("        peephole: add diagonal cell-to-gate weights (Gers & Schmidhuber). Default: False.\n"
                  "        coupled: tie the input gate to 1 - f (no i block). Default: False.\n"
                  "        proj_size: P, 0 <= P < H; if P > 0, h_t = (o * tanh(c_t)) W_hr^T (Sak et al.'s\n"
                  "            LSTMP, as PyTorch's): h (so h_0, h_n and each output step) has P features\n"
                  "            instead of H, while c stays H. Runs on graph and numba, not cuda. Default: 0.\n"),
        hx="(h_0, c_0)",
        hx_doc="(L*D, B, P or H) and (L*D, B, H), or (L*D, ...) unbatched.",
        out_state="(h_n, c_n)",
        out_state_doc="(L*D, B, P or H) and (L*D, B, H): the final hidden and cell states.",
        G="G", gates="i, f, g, o (G = 4), or f, g, o when coupled (G = 3)",
        own_attributes=(
            "        weight_ci_l{k}, weight_cf_l{k}, weight_co_l{k}: (H,) with ``peephole=True`` (no ci when coupled).\n"
            "        weight_hr_l{k}: (P, H) with ``proj_size=P`` > 0; then ``weight_hh_l{k}`` is (G*H, P),\n"
            "            ``weight_ih_l{k}`` for k > 0 is (G*H, D*P) and the output (T, B, D*P), as PyTorch's.\n"))

    mode = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, coupled=False, backend="auto", dtype=np.float32,
                 generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         peephole=peephole, coupled=coupled, proj_size=proj_size, backend=backend, dtype=dtype,
                         generator=generator)


class GRU(RNNBase):
    __doc__ = _LAYER_DOC.format(
        title="Gated recurrent unit layer(s), as ``torch.nn.GRU``, plus Cho et al.'s original form.",
        equations=(
            "    r = sigmoid(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)     (z alike)\n"
            "    n = tanh(x_t W_in^T + b_in + r * (h_{t-1} W_hn^T + b_hn))\n"
            "    h_t = (1 - z) * n + z * h_{t-1}\n"
            "    reset_after=False: n = tanh(x_t W_in^T + b_in + (r * h_{t-1}) W_hn^T + b_hn).\n"),
        own_args=("        reset_after: True (default) applies r after the recurrent product, as PyTorch\n"
                  "            and cuDNN; False is Cho et al. 2014's original. Same parameter shapes.\n"),
        hx="h_0", hx_doc="(L*D, B, H), or (L*D, H) unbatched.",
        out_state="h_n", out_state_doc="(L*D, B, H): the final hidden state of each layer and direction.",
        G=3, gates="r, z, n", own_attributes="")

    mode = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, reset_after=True, backend="auto", dtype=np.float32, generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         reset_after=reset_after, backend=backend, dtype=dtype, generator=generator)
