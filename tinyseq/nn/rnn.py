"""Recurrent cells and layers, built only from ops: BPTT is ``loss.backward()``.

Parameters follow PyTorch exactly: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H),
``bias_ih`` and ``bias_hh`` (G*H,), gates stacked in PyTorch's order (LSTM i, f, g, o;
GRU r, z, n). A layer names them ``weight_ih_l{k}`` and ``..._reverse`` for the
backward direction, so a PyTorch state dict converted with ``.numpy()`` loads as is.

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

import math

import numpy as np

from .. import backend as _backend
from .. import ops
from ..tensor import Tensor
from . import init
from .functional import dropout as _dropout
from .module import Module, Parameter, check_int

# ---------------------------------------------------------------- step functions

_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


def rnn_step(xp, h, w, nonlinearity="tanh"):
    """Elman step: h' = act(xp + h W_hh^T + b_hh). ``w`` is a ``_StepWeights``."""
    pre = xp + ops.matmul(h, w.hh_t)
    if w.b_hh is not None:
        pre = pre + w.b_hh
    return _ACTIVATIONS[nonlinearity](pre)


def lstm_step(xp, h, c, w, peephole=False, coupled=False):
    """LSTM step; returns (h', c'). Gates i, f, g, o (f, g, o when coupled)."""
    gates = xp + ops.matmul(h, w.hh_t)
    if w.b_hh is not None:
        gates = gates + w.b_hh
    H = h.shape[-1]
    if coupled:
        f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        f = ops.sigmoid(f + c * w.cf if peephole else f)
        i = 1 - f
    elif peephole:
        i, f, g, o = ops.chunk(gates, 4, axis=-1)
        i, f = ops.sigmoid(i + c * w.ci), ops.sigmoid(f + c * w.cf)
    else:
        # One sigmoid over all gates (g's quarter goes unused) is fewer graph nodes than three.
        act = ops.sigmoid(gates)
        i, f, g, o = act[:, :H], act[:, H : 2 * H], gates[:, 2 * H : 3 * H], act[:, 3 * H :]
    c = f * c + i * ops.tanh(g)
    if peephole:
        o = ops.sigmoid(o + c * w.co)
    elif coupled:
        o = ops.sigmoid(o)
    return o * ops.tanh(c), c


def gru_step(xp, h, w, reset_after=True):
    """GRU step: h' = (1 - z) * n + z * h, gates r, z, n."""
    H = h.shape[-1]
    if reset_after:
        hp = ops.matmul(h, w.hh_t)
        if w.b_hh is not None:
            hp = hp + w.b_hh
        r, z = ops.chunk(ops.sigmoid(xp[:, : 2 * H] + hp[:, : 2 * H]), 2, axis=-1)
        n = ops.tanh(xp[:, 2 * H :] + r * hp[:, 2 * H :])
    else:
        hp = ops.matmul(h, w.hh_rz_t)
        if w.b_hh is not None:
            hp = hp + w.b_hh_rz
        r, z = ops.chunk(ops.sigmoid(xp[:, : 2 * H] + hp), 2, axis=-1)
        hn = ops.matmul(r * h, w.hh_n_t)
        n = ops.tanh(xp[:, 2 * H :] + hn + w.b_hh_n if w.b_hh is not None else xp[:, 2 * H :] + hn)
    return n + z * (h - n)


class _StepWeights:
    """The recurrent weights of one cell, transposed (and split) once per sequence, not per step."""

    def __init__(self, weight_hh, bias_hh, peepholes=(None, None, None), gru_classic=False):
        self.hh_t, self.b_hh = weight_hh.T, bias_hh
        self.ci, self.cf, self.co = peepholes
        if gru_classic:
            hidden = weight_hh.shape[1]
            self.hh_rz_t, self.hh_n_t = self.hh_t[:, : 2 * hidden], self.hh_t[:, 2 * hidden :]
            if bias_hh is not None:
                self.b_hh_rz, self.b_hh_n = bias_hh[: 2 * hidden], bias_hh[2 * hidden :]


# ---------------------------------------------------------------- shared parameter set-up

_MODES = ("RNN", "LSTM", "GRU")


def _num_gates(mode, coupled=False):
    return {"RNN": 1, "LSTM": 3 if coupled else 4, "GRU": 3}[mode]



def _check_options(name, mode, nonlinearity, peephole, coupled, reset_after):
    if mode == "RNN" and nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if mode != "LSTM" and (peephole or coupled):
        raise ValueError(f"{name}: peephole and coupled are LSTM options")
    if mode != "GRU" and reset_after is not True:
        raise ValueError(f"{name}: reset_after is a GRU option")


def _make_params(module, suffix, mode, input_size, hidden_size, bias, peephole, coupled, dtype):
    """Create the parameters of one cell as attributes named ``weight_ih{suffix}`` etc."""
    gh = _num_gates(mode, coupled) * hidden_size
    bound = 1 / math.sqrt(hidden_size)

    def param(*shape):
        return init.uniform_(Parameter(np.empty(shape, dtype=dtype)), -bound, bound)

    setattr(module, f"weight_ih{suffix}", param(gh, input_size))
    setattr(module, f"weight_hh{suffix}", param(gh, hidden_size))
    setattr(module, f"bias_ih{suffix}", param(gh) if bias else None)
    setattr(module, f"bias_hh{suffix}", param(gh) if bias else None)
    if peephole:
        if not coupled:
            setattr(module, f"weight_ci{suffix}", param(hidden_size))
        setattr(module, f"weight_cf{suffix}", param(hidden_size))
        setattr(module, f"weight_co{suffix}", param(hidden_size))


def _param_dtype(module):
    return next(iter(module.parameters())).dtype


def _as_float_tensor(name, x, dtype, what="input"):
    x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=dtype) if not isinstance(x, np.ndarray) else x)
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: {what} has dtype {x.dtype} but the parameters are {dtype}; "
            f"convert one of them (x.astype(...) or module.to(...))"
        )
    return x


# ---------------------------------------------------------------- cells


class _CellBase(Module):
    mode = None

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", peephole=False, coupled=False,
                 reset_after=True, dtype=np.float32):
        name = type(self).__name__
        check_int(name, "input_size", input_size, 1)
        check_int(name, "hidden_size", hidden_size, 1)
        _check_options(name, self.mode, nonlinearity, peephole, coupled, reset_after)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.nonlinearity, self.peephole, self.coupled, self.reset_after = nonlinearity, peephole, coupled, reset_after
        _make_params(self, "", self.mode, input_size, hidden_size, bias, peephole, coupled, dtype)

    def _input(self, x):
        """Validate x ((B, I) or unbatched (I,)); return (x as (B, I), was_unbatched)."""
        name = type(self).__name__
        x = _as_float_tensor(name, x, _param_dtype(self))
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), "
                             f"got {x.shape}")
        return (x.reshape(1, -1), True) if x.ndim == 1 else (x, False)

    def _state(self, s, batch, unbatched, what):
        name = type(self).__name__
        dtype = _param_dtype(self)
        if s is None:
            return Tensor(np.zeros((batch, self.hidden_size), dtype=dtype))
        s = _as_float_tensor(name, s, dtype, what)
        expected = (self.hidden_size,) if unbatched else (batch, self.hidden_size)
        if s.shape != expected:
            raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
        return s.reshape(1, -1) if unbatched else s

    def _xp(self, x):
        xp = ops.matmul(x, self.weight_ih.T)
        return xp if self.bias_ih is None else xp + self.bias_ih

    def _weights(self):
        peep = (getattr(self, "weight_ci", None), getattr(self, "weight_cf", None), getattr(self, "weight_co", None))
        return _StepWeights(self.weight_hh, self.bias_hh, peep, gru_classic=self.mode == "GRU" and not self.reset_after)

    def extra_repr(self):
        extra = "" if self.bias else ", bias=False"
        if self.mode == "RNN" and self.nonlinearity != "tanh":
            extra += f", nonlinearity={self.nonlinearity!r}"
        extra += ", peephole=True" if self.peephole else ""
        extra += ", coupled=True" if self.coupled else ""
        extra += ", reset_after=False" if not self.reset_after else ""
        return f"{self.input_size}, {self.hidden_size}{extra}"


class RNNCell(_CellBase):
    """Elman cell: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu). ``cell(x, h=None) -> h'``."""

    mode = "RNN"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, nonlinearity=nonlinearity, dtype=dtype)

    def forward(self, x, h=None):
        x, unbatched = self._input(x)
        h = self._state(h, x.shape[0], unbatched, "h")
        out = rnn_step(self._xp(x), h, self._weights(), self.nonlinearity)
        return out.reshape(-1) if unbatched else out


class LSTMCell(_CellBase):
    """LSTM cell with forget gate (gates i, f, g, o). ``cell(x, (h, c)=None) -> (h', c')``.

    ``peephole=True``: diagonal cell-to-gate weights; ``coupled=True``: input gate = 1 - f.
    """

    mode = "LSTM"

    def __init__(self, input_size, hidden_size, bias=True, peephole=False, coupled=False, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, peephole=peephole, coupled=coupled, dtype=dtype)

    def forward(self, x, state=None):
        x, unbatched = self._input(x)
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("LSTMCell: state must be a tuple (h, c)")
        h, c = (None, None) if state is None else state
        h = self._state(h, x.shape[0], unbatched, "h")
        c = self._state(c, x.shape[0], unbatched, "c")
        h, c = lstm_step(self._xp(x), h, c, self._weights(), self.peephole, self.coupled)
        return (h.reshape(-1), c.reshape(-1)) if unbatched else (h, c)


class GRUCell(_CellBase):
    """GRU cell (gates r, z, n). ``cell(x, h=None) -> h'``. See the module docstring for ``reset_after``."""

    mode = "GRU"

    def __init__(self, input_size, hidden_size, bias=True, reset_after=True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, reset_after=reset_after, dtype=dtype)

    def forward(self, x, h=None):
        x, unbatched = self._input(x)
        h = self._state(h, x.shape[0], unbatched, "h")
        out = gru_step(self._xp(x), h, self._weights(), self.reset_after)
        return out.reshape(-1) if unbatched else out


# ---------------------------------------------------------------- layers



class RNNBase(Module):
    """A stack of recurrent layers unrolled over time; see ``RNN``, ``LSTM``, ``GRU``.

    ``forward(x, hx=None, lengths=None)``: x is (T, B, I) ((B, T, I) with
    ``batch_first``; (T, I) unbatched). ``hx`` is h0 (layers*directions, B, H), or
    ``(h0, c0)`` for LSTM. ``lengths`` (B ints, 1..T) runs a padded batch without packing:
    padded steps leave the state unchanged, the reverse direction runs over each
    sequence's valid part, outputs past a sequence's end are zero, and the final state is
    each sequence's state at its own last valid step.
    Returns ``(output, h_n)`` or, for LSTM, ``(output, (h_n, c_n))``; output is
    (T, B, directions*H).

    ``backend``: "graph" unrolls the step functions below as ops; "numba" runs each
    layer-direction as one fused kernel pair (``tinyseq_jit``); "auto" (default) follows
    ``tinyseq.backend`` (numba when it imports). Both give the same numbers.
    """

    mode = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, nonlinearity="tanh", peephole=False, coupled=False, reset_after=True,
                 backend="auto", dtype=np.float32, generator=None):
        name = type(self).__name__
        check_int(name, "input_size", input_size, 1)
        check_int(name, "hidden_size", hidden_size, 1)
        check_int(name, "num_layers", num_layers, 1)
        _check_options(name, self.mode, nonlinearity, peephole, coupled, reset_after)
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be in [0, 1], got {dropout}")
        if backend not in _backend.BACKENDS:
            raise ValueError(f"{name}: backend must be one of {_backend.BACKENDS}, got {backend!r}")
        if backend != "auto":
            _backend.resolve(backend)  # fail now, not at the first forward, if it cannot run
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.nonlinearity = bidirectional, nonlinearity
        self.peephole, self.coupled, self.reset_after = peephole, coupled, reset_after
        self.backend, self.generator = backend, generator
        for layer in range(num_layers):
            for suffix in self._suffixes(layer):
                size = input_size if layer == 0 else hidden_size * self.num_directions
                _make_params(self, suffix, self.mode, size, hidden_size, bias, peephole, coupled, dtype)

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _suffixes(self, layer):
        return [f"_l{layer}"] + ([f"_l{layer}_reverse"] if self.bidirectional else [])

    # ------------------------------------------------------------ input checks

    def _check_input(self, x, hx, lengths):
        name = type(self).__name__
        dtype = _param_dtype(self)
        x = _as_float_tensor(name, x, dtype)
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

        states_shape = (self.num_layers * self.num_directions, batch, self.hidden_size)
        want = 2 if self.mode == "LSTM" else 1
        if hx is None:
            hx = [None] * want
        elif self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError(f"{name}: hx must be a tuple (h0, c0)")
        else:
            hx = [hx]
        states = []
        for s, what in zip(hx, ("h0", "c0")):
            if s is None:
                states.append(Tensor(np.zeros(states_shape, dtype=dtype)))
                continue
            s = _as_float_tensor(name, s, dtype, what)
            expected = states_shape[::2] if unbatched else states_shape
            if s.shape != expected:
                raise ValueError(f"{name}: expected {what} of shape {expected}, got {s.shape}")
            states.append(ops.unsqueeze(s, 1) if unbatched else s)

        mask = None
        if lengths is not None:
            lengths = np.asarray(lengths.data if isinstance(lengths, Tensor) else lengths)
            if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
                raise ValueError(f"{name}: lengths must be {batch} integers (one per sequence), "
                                 f"got shape {lengths.shape} and dtype {lengths.dtype}")
            if lengths.min() < 1 or lengths.max() > steps:
                raise ValueError(f"{name}: lengths must lie in [1, {steps}] (the number of time steps), "
                                 f"got values from {lengths.min()} to {lengths.max()}")
            if lengths.min() < steps:
                mask = (np.arange(steps)[:, None] < lengths[None, :])[:, :, None]  # (T, B, 1)
            else:
                lengths = None
        return x, states, mask, lengths, unbatched

    # ------------------------------------------------------------ forward

    def _run_direction(self, x, suffix, h, c, mask, reverse):
        """One layer, one direction over all steps; returns (outputs (T, B, H), h_T, c_T)."""
        get = lambda n: getattr(self, f"{n}{suffix}", None)  # noqa: E731
        b_ih, b_hh = get("bias_ih"), get("bias_hh")
        # RNN and LSTM add both biases outside any product, so they join the input
        # projection (one add for all steps); GRU's b_hn sits inside r * (...).
        fold = self.mode != "GRU" and b_hh is not None
        xp = ops.matmul(x, get("weight_ih").T)
        if b_ih is not None:
            xp = xp + (b_ih + b_hh if fold else b_ih)
        peep = (get("weight_ci"), get("weight_cf"), get("weight_co"))
        w = _StepWeights(get("weight_hh"), None if fold else b_hh, peep,
                         gru_classic=self.mode == "GRU" and not self.reset_after)
        steps = x.shape[0]
        outputs = [None] * steps
        for t in reversed(range(steps)) if reverse else range(steps):
            xp_t = xp[t]
            if self.mode == "LSTM":
                h_new, c_new = lstm_step(xp_t, h, c, w, self.peephole, self.coupled)
            elif self.mode == "GRU":
                h_new, c_new = gru_step(xp_t, h, w, self.reset_after), None
            else:
                h_new, c_new = rnn_step(xp_t, h, w, self.nonlinearity), None
            if mask is None or mask[t].all():
                h, c = h_new, c_new
                outputs[t] = h
            else:
                m = mask[t]
                h = ops.where(m, h_new, h)
                c = ops.where(m, c_new, c) if c is not None else None
                outputs[t] = ops.where(m, h_new, 0.0)
        return ops.stack(outputs, axis=0), h, c

    def forward(self, x, hx=None, lengths=None):
        x, states, mask, lengths, unbatched = self._check_input(x, hx, lengths)
        fused = _backend.resolve(self.backend) == "numba"
        h0 = states[0]
        c0 = states[1] if self.mode == "LSTM" else None
        h_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes(layer)):
                k = layer * self.num_directions + d
                c0_k = None if c0 is None else c0[k]
                if fused:
                    out, h, c = _backend.fused_direction(self, layer_input, suffix, h0[k], c0_k, lengths, d == 1)
                else:
                    out, h, c = self._run_direction(layer_input, suffix, h0[k], c0_k, mask, reverse=d == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                rng = self.generator if self.generator is not None else init.default_generator()
                layer_input = _dropout(layer_input, self.dropout, generator=rng)
        output = layer_input
        h_n = ops.stack(h_n, axis=0)
        c_n = ops.stack(c_n, axis=0) if self.mode == "LSTM" else None
        if unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        elif self.batch_first:
            output = ops.transpose(output, 0, 1)
        return (output, (h_n, c_n)) if self.mode == "LSTM" else (output, h_n)

    def extra_repr(self):
        parts = [f"{self.input_size}, {self.hidden_size}"]
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
                        nonlinearity="tanh", peephole=False, coupled=False, reset_after=True, backend="auto")
        for key, default in defaults.items():
            value = getattr(self, key)
            if value != default:
                parts.append(f"{key}={value!r}")
        return ", ".join(parts)


class RNN(RNNBase):
    """Elman RNN layer(s), tanh or relu; PyTorch's arguments and returns (see ``RNNBase``)."""

    mode = "RNN"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, backend="auto", dtype=np.float32, generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         nonlinearity=nonlinearity, backend=backend, dtype=dtype, generator=generator)


class LSTM(RNNBase):
    """LSTM layer(s); PyTorch's arguments and returns plus ``peephole`` and ``coupled`` (see ``RNNBase``)."""

    mode = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, peephole=False, coupled=False, backend="auto", dtype=np.float32,
                 generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         peephole=peephole, coupled=coupled, backend=backend, dtype=dtype, generator=generator)


class GRU(RNNBase):
    """GRU layer(s); PyTorch's arguments and returns plus ``reset_after`` (see ``RNNBase``)."""

    mode = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, reset_after=True, backend="auto", dtype=np.float32, generator=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         reset_after=reset_after, backend=backend, dtype=dtype, generator=generator)
