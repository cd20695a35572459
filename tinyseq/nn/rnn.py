"""Recurrent cells and layers: each cell's maths written once, as a step built from ops.

``RNNStep``, ``LSTMStep`` and ``GRUStep`` are that maths: ``nn.Cell``s whose ``forward(x_t,
state) -> (y_t, new_state)`` reads as the equations. Everything else runs them: the cells
(``RNNCell``, ...: PyTorch's calling convention) call their step once; the layers run it
over time, on the graph backend unrolled as ops (``nn.recurrent.unroll``: BPTT is
``loss.backward()``), on "numba" and "cuda" as the fused forward and BPTT that
``tinyseq_jit.compiler`` generates from the same ``forward``.

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
"""

import numpy as np

from .. import backend as _backend
from .. import ops
from .. import random as _random
from ..gates import num_gates
from ..tensor import Tensor
from . import init
from .functional import dropout as _dropout
from .functional import linear
from .module import Module, Parameter, as_input, check_dtype, check_int
from .recurrent import Cell, check_lengths, run_step
from .utils.rnn import packed_input

# ---------------------------------------------------------------- the steps: each cell's maths, once

#: A cell's parameters, PyTorch's names; a layer adds a suffix such as "_l0" or "_l1_reverse".
PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ci", "weight_cf", "weight_co")


class _Step(Cell):
    """What the built-in steps share: their parameters (PyTorch's names and shapes) and options.

    A step is an ``nn.Cell``: ``forward(x_t, state) -> (y_t, new_state)``, written from ops.
    The graph backend unrolls it (``nn.recurrent.unroll``); ``tinyseq_jit.compiler`` turns the
    same ``forward`` into the fused forward and BPTT that the numba and cuda backends run.
    """

    mode = None  # PyTorch's name, "RNN", "LSTM" or "GRU"; the key of its gate layout (tinyseq.gates)
    options = {}  # its own options and their defaults
    states = ("h",)

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, proj_size=0, **options):
        self.proj_size = check_int(type(self).__name__, "proj_size", proj_size, 0)
        if proj_size and self.mode != "LSTM":
            raise ValueError(f"{type(self).__name__}: proj_size is an LSTM option")
        _init_cell(self, input_size, hidden_size, bias, dtype, options)
        self.state_size = self._state_size()

    @classmethod
    def view(cls, owner, suffix=""):
        """The step of ``owner`` (a built-in cell, or a layer's direction ``suffix`` such as
        "_l1_reverse"), sharing its parameters: gradients reach ``owner``'s."""
        step = cls.__new__(cls)
        for option in ("hidden_size", "bias", "proj_size", *cls.options):
            setattr(step, option, getattr(owner, option, 0))
        for attr in PARAMETERS:
            setattr(step, attr, getattr(owner, attr + suffix, None))
        step.input_size = step.weight_ih.shape[1]
        step.state_size = step._state_size()
        return step

    def _state_size(self):
        return self.hidden_size

    def extra_repr(self):
        extra = "" if self.bias else ", bias=False"
        extra += "".join(f", {k}={getattr(self, k)!r}" for k, v in self.options.items() if getattr(self, k) != v)
        return f"{self.input_size}, {self.hidden_size}{extra}"


class RNNStep(_Step):
    """One step of an Elman RNN (``nn.RNN``, ``nn.RNNCell``):

        h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)     (or relu)
    """

    mode = "RNN"
    options = {"nonlinearity": "tanh"}

    def forward(self, x, h):
        pre = linear(x, self.weight_ih, self.bias_ih) + linear(h, self.weight_hh, self.bias_hh)
        h = pre.relu() if self.nonlinearity == "relu" else pre.tanh()
        return h, h


class LSTMStep(_Step):
    """One step of an LSTM (``nn.LSTM``, ``nn.LSTMCell``), gates i, f, g, o:

        i = sigmoid(x W_ii^T + b_ii + h W_hi^T + b_hi)       (f, o alike; g with tanh)
        c' = f * c + i * g,     h' = o * tanh(c')

    ``peephole``: the gates also see the cell state, ci * c and cf * c join i and f, co * c'
    joins o. ``coupled``: no input gate, i = 1 - f (gates f, g, o). A layer's ``proj_size``
    P: h' = (o * tanh(c')) W_hr^T, P features.
    """

    mode = "LSTM"
    options = {"peephole": False, "coupled": False}
    states = ("h", "c")

    def forward(self, x, state):
        h, c = state
        gates = linear(x, self.weight_ih, self.bias_ih) + linear(h, self.weight_hh, self.bias_hh)
        if self.coupled:
            f_in, g_in, o_in = ops.chunk(gates, 3, axis=-1)
        else:
            i_in, f_in, g_in, o_in = ops.chunk(gates, 4, axis=-1)
        f = (f_in + self.weight_cf * c if self.peephole else f_in).sigmoid()
        if self.coupled:
            i = 1 - f
        else:
            i = (i_in + self.weight_ci * c if self.peephole else i_in).sigmoid()
        g = g_in.tanh()
        c = f * c + i * g
        o = (o_in + self.weight_co * c if self.peephole else o_in).sigmoid()
        h = o * c.tanh()
        if self.proj_size:
            h = linear(h, self.weight_hr)
        return h, (h, c)

    def _state_size(self):
        return (self.proj_size or self.hidden_size, self.hidden_size)


class GRUStep(_Step):
    """One step of a GRU (``nn.GRU``, ``nn.GRUCell``), gates r, z, n:

        r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)       (z alike)
        n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h

    ``reset_after=False`` is Cho et al.'s original: n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn).
    """

    mode = "GRU"
    options = {"reset_after": True}

    def forward(self, x, h):
        x_r, x_z, x_n = ops.chunk(linear(x, self.weight_ih, self.bias_ih), 3, axis=-1)
        rz_rows, n_rows = slice(0, 2 * self.hidden_size), slice(2 * self.hidden_size, None)
        if self.reset_after:
            h_r, h_z, h_n = ops.chunk(linear(h, self.weight_hh, self.bias_hh), 3, axis=-1)
        else:
            h_r, h_z = ops.chunk(linear(h, self.weight_hh[rz_rows], _rows(self.bias_hh, rz_rows)), 2, axis=-1)
        r = (x_r + h_r).sigmoid()
        z = (x_z + h_z).sigmoid()
        if self.reset_after:
            n = (x_n + r * h_n).tanh()
        else:
            n = (x_n + linear(r * h, self.weight_hh[n_rows], _rows(self.bias_hh, n_rows))).tanh()
        h = (1 - z) * n + z * h
        return h, h


def _rows(bias, rows):
    return None if bias is None else bias[rows]


STEPS = {step.mode: step for step in (RNNStep, LSTMStep, GRUStep)}
_DEFAULTS = {option: default for step in STEPS.values() for option, default in step.options.items()}


def _set_options(module, name, options):
    """Check the options of a ``module`` of kind ``module.mode`` and set its own as attributes:
    one another kind takes (``peephole=True`` for a GRU) is refused, as is a wrong value."""
    own = STEPS[module.mode].options
    for option, value in options.items():
        if option not in _DEFAULTS:
            raise TypeError(f"{name}: got an unexpected option {option!r}")
        if option not in own and value != _DEFAULTS[option]:
            owner = next(s.mode for s in STEPS.values() if option in s.options)
            raise ValueError(f"{name}: {option} is an {owner} option")
    values = {option: options.get(option, default) for option, default in own.items()}
    if values.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {values['nonlinearity']!r}")
    for option, value in values.items():
        setattr(module, option, value)


def _init_cell(module, input_size, hidden_size, bias, dtype, options):
    """Check a cell's arguments, set them as attributes and create its parameters."""
    name = type(module).__name__
    check_int(name, "input_size", input_size, 1)
    check_int(name, "hidden_size", hidden_size, 1)
    _set_options(module, name, options)
    module.input_size, module.hidden_size, module.bias = input_size, hidden_size, bias
    make_parameters(module, "", input_size, check_dtype(name, dtype))


def make_parameters(module, suffix, input_size, dtype):
    """Create the parameters of one cell or layer-direction of ``module`` (its ``mode``,
    ``hidden_size``, ``bias``, ``proj_size`` and options) as attributes named ``weight_ih{suffix}``
    etc., all PyTorch's default U(-1/sqrt(H), 1/sqrt(H)). A projection P > 0 (an LSTM
    layer's) adds ``weight_hr`` (P, H), and ``weight_hh`` reads the projected h: (G*H, P)."""
    hidden, coupled = module.hidden_size, getattr(module, "coupled", False)
    gh = num_gates(module.mode, coupled) * hidden
    proj = getattr(module, "proj_size", 0)
    shapes = {"weight_ih": (gh, input_size), "weight_hh": (gh, proj or hidden)}
    if module.bias:
        shapes.update(bias_ih=(gh,), bias_hh=(gh,))
    else:
        module.bias_ih = module.bias_hh = None
    if proj:
        shapes["weight_hr"] = (proj, hidden)
    if getattr(module, "peephole", False):
        shapes.update({k: (hidden,) for k in (("weight_cf", "weight_co") if coupled else
                                              ("weight_ci", "weight_cf", "weight_co"))})
    for attr, shape in shapes.items():
        param = init.default_rnn_(Parameter(np.empty(shape, dtype=dtype)), hidden)
        setattr(module, attr + suffix, param)


def _param_dtype(module):
    """The dtype of a cell's or layer's parameters (all share one; see ``Module.to``)."""
    weight = getattr(module, "weight_hh", None)
    return (weight if weight is not None else module.weight_hh_l0).dtype


def _state_input(name, states, s, dtype, what):
    """A state argument as a Tensor; a tuple of tensors is refused (only an LSTM's state is a pair)."""
    several = isinstance(s, (tuple, list)) and any(isinstance(v, (Tensor, np.ndarray)) for v in s)
    if several and len(states) == 1:
        raise TypeError(f"{name}: expected {what} to be one Tensor or array, got a {type(s).__name__} of them; "
                        "only an LSTM takes a pair (h, c)")
    return as_input(name, s, dtype, what)


# ---------------------------------------------------------------- cells


class _CellBase(Module):
    mode = None  # "RNN", "LSTM" or "GRU", as PyTorch's: which step (``STEPS``) it runs

    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float32, **options):
        _init_cell(self, input_size, hidden_size, bias, dtype, options)

    def step(self):
        """This cell's step (``RNNStep``, ``LSTMStep`` or ``GRUStep``) sharing its parameters: an
        ``nn.Cell`` for ``nn.Recurrent``, ``forward(x_t, state) -> (h', new state)``."""
        return STEPS[self.mode].view(self)

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
        s = _state_input(name, STEPS[self.mode].states, s, dtype, what)
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if s.shape != expected:
            raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
        return s.reshape(1, -1) if unbatched else s

    extra_repr = _Step.extra_repr


_CELL_DOC = """{title}

{equations}
    One time step of ``{step}`` (``.step()`` gives it, sharing this cell's parameters), the step
    the layers run.

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
        title="An Elman RNN cell, as ``torch.nn.RNNCell``.", step="RNNStep",
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
        out, _ = self.step()(x, h)
        return out.reshape(-1) if unbatched else out


class LSTMCell(_CellBase):
    __doc__ = _CELL_DOC.format(
        title="An LSTM cell with a forget gate, as ``torch.nn.LSTMCell``, plus peepholes and a coupled gate.",
        step="LSTMStep",
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
        _, (h, c) = self.step()(x, (h, c))
        return (h.reshape(-1), c.reshape(-1)) if unbatched else (h, c)


class GRUCell(_CellBase):
    __doc__ = _CELL_DOC.format(
        title="A GRU cell, as ``torch.nn.GRUCell``, plus Cho et al.'s original form.", step="GRUStep",
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
        out, _ = self.step()(x, h)
        return out.reshape(-1) if unbatched else out


# ---------------------------------------------------------------- layers



class RNNBase(Module):
    """A stack of recurrent layers unrolled over time: what ``RNN``, ``LSTM`` and ``GRU``
    share (their docstrings have the arguments, inputs and outputs).

    Each layer-direction runs its step (``RNNStep``, ``LSTMStep`` or ``GRUStep``; ``step(k,
    reverse)`` gives it): on the "graph" backend unrolled as ops (``nn.recurrent.unroll``), on
    "numba" and "cuda" as the fused forward and BPTT ``tinyseq_jit.compiler`` generates from it.
    """

    mode = None  # "RNN", "LSTM" or "GRU", as PyTorch's: which step (``STEPS``) it runs

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, backend="auto", dtype=np.float32, generator=None, **options):
        name = type(self).__name__
        check_int(name, "input_size", input_size, 1)
        check_int(name, "hidden_size", hidden_size, 1)
        check_int(name, "num_layers", num_layers, 1)
        proj_size = check_int(name, "proj_size", proj_size, 0)
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}")
        _set_options(self, name, options)
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        self.backend = _backend.check(backend, name)
        if backend != "auto":
            _backend.resolve(backend)  # fail now, not at the first forward, if it cannot run
        dtype = check_dtype(name, dtype)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.proj_size, self.generator = bidirectional, proj_size, generator
        for layer in range(num_layers):
            for suffix in self._suffixes(layer):
                make_parameters(self, suffix, input_size if layer == 0 else self._h_size * self.num_directions, dtype)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _h_size(self):
        """The size of h: ``proj_size`` when an LSTM projects it, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def _suffixes(self, layer):
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    def directions(self):
        """The name of each layer-direction in the order of h_n's first axis: "l0",
        "l0_reverse" (with ``bidirectional``), "l1", ... (its parameters' suffix without "_")."""
        return [suffix[1:] for layer in range(self.num_layers) for suffix in self._suffixes(layer)]

    def step(self, layer=0, reverse=False):
        """The step of layer ``layer`` (its ``reverse`` direction with ``bidirectional``): an
        ``RNNStep``, ``LSTMStep`` or ``GRUStep`` sharing that layer-direction's parameters (its
        ``weight_ih`` is this layer's ``weight_ih_l{layer}``, ...): an ``nn.Cell``, so
        ``nn.Recurrent(layer.step())`` runs the first layer alone."""
        check_int(f"{type(self).__name__}.step", "layer", layer, 0)
        if layer >= self.num_layers or (reverse and not self.bidirectional):
            raise ValueError(f"{type(self).__name__}.step: this layer has {self.num_layers} layer(s)"
                             f"{', both directions' if self.bidirectional else ', one direction'}; "
                             f"got layer={layer}, reverse={reverse}")
        return STEPS[self.mode].view(self, f"_l{layer}" + ("_reverse" if reverse else ""))

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

        kinds = STEPS[self.mode].states
        if hx is None:
            hx = [None] * len(kinds)
        elif len(kinds) == 2:
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
            s = _state_input(name, kinds, s, dtype, what)
            expected = states_shape[::2] if unbatched else states_shape
            if s.shape != expected:
                raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
            states.append(ops.unsqueeze(s, 1) if unbatched else s)

        lengths, mask = check_lengths(name, lengths, steps, batch)
        return x, states, mask, lengths, unbatched

    # ------------------------------------------------------------ forward

    def forward(self, x, hx=None, lengths=None, *, grad_norms=None):
        """The layers over ``x``: see the class's docstring. ``grad_norms``: None, or a list to
        which each layer-direction (in the order of h_n's first axis) appends the (S, T, B)
        array its backward fills with every sequence's ||dL/dh_t|| (and ||dL/dc_t||) at every
        step (``tinyseq.bptt``)."""
        x, lengths, repack = packed_input(type(self).__name__, x, lengths, self.batch_first)
        x, states, mask, lengths, unbatched = self._check_input(x, hx, lengths)
        if mask is not None:  # padded steps must influence nothing, not even as 0 * nan
            x = ops.where(mask[:, :, None], x, 0.0)
        where = _backend.resolve(self.backend)
        finals = []  # the final states of each layer-direction, bottom first
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                step = self.step(layer, reverse=d == 1)
                initial = tuple(s[k] for s in states)
                out, final = run_step(step, layer_input, initial if len(initial) > 1 else initial[0], lengths, mask,
                                      d == 1, grad_norms, _kernel(step, where),
                                      label=f"{type(self).__name__}{self._suffixes(layer)[d]}")
                outs.append(out)
                finals.append(final if isinstance(final, tuple) else (final,))
            layer_input = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                rng = _random.get_generator(self.generator, type(self).__name__)
                layer_input = _dropout(layer_input, self.dropout, generator=rng)
        output = layer_input
        state = [ops.stack([f[i] for f in finals], axis=0) for i in range(len(states))]  # (L*D, B, H) each
        if unbatched:
            output, state = output.squeeze(1), [s.squeeze(1) for s in state]
        elif self.batch_first:
            output = ops.transpose(output, 0, 1)
        return repack(output), (state[0] if len(state) == 1 else tuple(state))

    def extra_repr(self):
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                        proj_size=0, backend="auto", **STEPS[self.mode].options)
        for key, default in defaults.items():
            value = getattr(self, key)
            if value != default:
                parts.append(f"{key}={value!r}")
        return ", ".join(parts)


_kernels = {}  # what a step's kernels depend on -> its Kernel
#: the sizes a built-in step is traced at to make its size-generic kernels: no two of a
#: step's widths equal, and P stays below H when one is doubled (the widest state, H, sets
#: the CUDA kernels' threads)
_TRACE_SIZES = {"I": 11, "H": 29, "P": 7}


def _kernel(step, where):
    """The compiled kernels a built-in step runs on for backend ``where``, None on "graph":
    its form's size-generic module (``tinyseq_jit/generated/`` holds the common forms',
    committed), bound to the step's sizes."""
    if where == "graph":
        return None
    form = step_form(step)
    key = (form, step.input_size, step.hidden_size, step.proj_size, where)
    kernel = _kernels.get(key)
    if kernel is None:
        from tinyseq_jit import generated
        from tinyseq_jit.compiler import bind

        kernel = _kernels[key] = bind(generated.kernel(form, where), step, step.input_size)
    return kernel


def step_form(step):
    """What a built-in step's kernels depend on besides its sizes: its class, options, which
    parameters it has (a bias may be missing), whether it projects, and the dtype."""
    return (type(step), tuple((k, getattr(step, k)) for k in step.options),
            tuple(p for p in PARAMETERS if getattr(step, p, None) is None), bool(step.proj_size), step.weight_ih.dtype.name)


def quiet_step(cls, *args, **kwargs):
    """``cls(*args, **kwargs)``, a step made to be traced, without moving the library's random
    stream (its parameters' init draws from it: a layer's first compile must not change what
    a seeded user draws next)."""
    state = _random.get_rng_state()
    try:
        return cls(*args, **kwargs)
    finally:
        _random.set_rng_state(state)


def generic_arguments(form):
    """``tinyseq_jit.compiler.compile_generic``'s arguments for a ``step_form``: (make_cell,
    sizes, provides)."""
    cls, options, absent, projected, dtype = form

    def make_cell(I, H, P=0):  # noqa: E741  (the size symbols of the generated code)
        step = quiet_step(cls, I, H, dtype=dtype, proj_size=P, **dict(options))
        for attr in absent:
            setattr(step, attr, None)
        return step

    sizes = {k: v for k, v in _TRACE_SIZES.items() if projected or k != "P"}
    provides = {"I": "input", "P": 0, "H": 1} if projected else {"I": "input", "H": 0}
    return make_cell, sizes, provides


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
                  "            instead of H, while c stays H. Default: 0.\n"),
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
