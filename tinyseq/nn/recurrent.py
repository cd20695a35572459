"""Any recurrent cell unrolled over time: ``Recurrent``, and ``Bidirectional`` and ``Stacked`` built on it.

A cell is a Module whose ``forward(x_t, state)`` returns ``(y_t, new_state)``: x_t is one
time step of the batch, (B, ...); the state is a Tensor or a tuple of Tensors, each (B, ...);
y_t is what the layer outputs at that step. ``initial_state(batch)`` gives the state a
sequence starts from (``Cell``'s: zeros of ``state_size``). For example::

    class Elman(nn.Cell):
        def __init__(self, inputs, hidden):
            self.state_size = hidden
            self.xh, self.hh = nn.Linear(inputs, hidden), nn.Linear(hidden, hidden, bias=False)

        def forward(self, x, h):
            h = (self.xh(x) + self.hh(h)).tanh()
            return h, h

    out, h_n = nn.Recurrent(Elman(3, 8))(x)    # x (T, B, 3) -> out (T, B, 8), h_n (B, 8)

``unroll`` is tinyseq's one time loop: ``Recurrent`` runs your cell with it, and the
built-in layers run their steps (``nn.RNNStep``, ``LSTMStep``, ``GRUStep``: cells too) with
it on the graph backend, so the two share every rule below: with ``lengths``, a padded step
keeps the state and outputs zeros, the reverse direction starts at each sequence's last
valid step, and the final state is each sequence's last valid one.
"""

import numpy as np

from .. import backend as backends
from .. import config, ops, viz
from ..tensor import Tensor, creation_mark
from .containers import ModuleList
from .functional import unrolling
from .layers import Dropout
from .module import Module, as_input
from .utils.rnn import packed_input, valid_lengths


def unroll(cell, xs, state, mask=None, reverse=False, norms=None, label="", owner=None):
    """Run ``cell(x_t, state) -> (y_t, new_state)`` over the T steps of ``xs`` (T, B, ...).

    ``state``: a Tensor or a tuple of Tensors (B, ...); ``mask``: None or (T, B) booleans,
    False at padded steps, which keep the state and output zeros; ``reverse`` runs t = T-1
    .. 0; ``norms``: None, or an (S, T, B) array that backward fills with each sequence's
    ||dL/d state_t|| for each of the S state tensors (``tinyseq.bptt``); ``label`` names the
    steps in ``tinyseq.viz`` pictures; ``owner`` names the layer in errors (default: the
    cell). Every step's y_t must be (B, ...) and keep one shape, and the new state must keep
    the state's shapes. Returns (the outputs stacked (T, B, ...), the final state).
    """
    with unrolling(xs) as inside:  # x_t's products for all steps at once (see nn.functional.linear)
        return _unroll(inside, cell, xs, state, mask, reverse, norms, label, owner)


def _unroll(inside, cell, xs, state, mask, reverse, norms, label, owner):
    steps = xs.shape[0]
    outputs = [None] * steps
    owner = owner or getattr(cell, "__name__", type(cell).__name__)
    y_shape = None
    for t in reversed(range(steps)) if reverse else range(steps):
        first = creation_mark()
        inside.t, inside.x_t = t, xs[t]
        y, new = _checked_step(owner, cell, inside.x_t, state, t, y_shape)
        y_shape = y.shape
        if norms is not None:
            for s, row in zip(_parts(new), norms[:, t]):  # at a padded step its gradient is 0 (where)
                if s.requires_grad:
                    s.register_hook(norm_hook(row))
        if mask is not None and not mask[t].all():
            keep = mask[t]
            kept = tuple(ops.where(_rows(keep, n), n, s) for n, s in zip(_parts(new), _parts(state)))
            new = kept if isinstance(new, tuple) else kept[0]
            y = ops.where(_rows(keep, y), y, 0.0)
        state, outputs[t] = new, y
        viz.mark_time_step(y, label, t, first)
    return ops.stack(outputs, axis=0), state


def run_step(cell, x, state, lengths, mask, reverse, grad_norms=None, kernel=None, label="", owner=None):
    """One layer-direction: ``cell`` over x (T, B, ...) from ``state``, on the ``kernel``
    ``tinyseq_jit.compiler`` made of it (None: the graph, ``unroll``). ``lengths`` and ``mask``
    are ``check_lengths``'s; ``grad_norms``: None or a list to which the (S, T, B) array of
    ||dL/d state_t|| this direction's backward fills is appended. Returns (the outputs
    (T, B, ...), the final state), as ``unroll``."""
    norms = None
    if grad_norms is not None:
        norms = np.zeros((len(_parts(state)),) + x.shape[:2], dtype=x.dtype)
        grad_norms.append(norms)
    if kernel is None:
        return unroll(cell, x, state, mask, reverse, norms, label, owner)
    from ._fused import run_compiled

    out, finals = run_compiled(kernel, x, _parts(state), dict(cell.named_parameters()), lengths, reverse, norms)
    return out, (finals if isinstance(state, tuple) else finals[0])


def _checked_step(name, cell, x_t, state, t, y_shape):
    """Step ``t``, with a clear error when the cell breaks the protocol: (y_t, new_state),
    y_t (B, ...) and of ``y_shape`` (the earlier steps'; None at the first), the new state of
    the state's structure and shapes. A shape-tuple comparison per tensor: cheap."""
    result = cell(x_t, state)
    if isinstance(result, Tensor):
        raise TypeError(f"{name}: a cell's forward(x_t, state) must return the pair (y_t, new_state), got a "
                        "single Tensor; if it is the new state h, return (h, h)")
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Tensor)):
        raise TypeError(f"{name}: a cell's forward(x_t, state) must return the pair (y_t, new_state) with y_t a "
                        f"Tensor, got {_describe(result)}")
    new = result[1]
    same = isinstance(new, Tensor) if isinstance(state, Tensor) else (
        isinstance(new, tuple) and len(new) == len(state) and all(isinstance(s, Tensor) for s in new))
    if not same:
        hint = ""
        if isinstance(state, tuple) and len(result) == len(state) and isinstance(result[1], Tensor):
            hint = f"; if it returned the new state {_describe(result)} alone, return (y_t, that tuple)"
        raise TypeError(f"{name}: the new state must have the old state's structure ({_describe(state)}), "
                        f"got {_describe(new)}{hint}")
    y = result[0]
    if y.shape != y_shape and (y_shape is not None or y.shape[:1] != x_t.shape[:1]):
        expected = f"(B = {x_t.shape[0]}, ...)" if y_shape is None else f"{y_shape} (y_t at the steps before)"
        raise _step_shape_error(name, t, "y_t", y.shape, expected)
    check_state_shapes(name, t, [s.shape for s in _parts(state)], [n.shape for n in _parts(new)])
    return result


def check_state_shapes(owner, t, before, after):
    """A ValueError unless the shapes ``after`` of a cell's new state at step ``t`` are the
    shapes ``before`` the step (``owner`` names the layer or function and the cell, as
    "Recurrent(MyCell)")."""
    for k, (old, new) in enumerate(zip(before, after)):
        if new != old:
            what = "new state" if len(after) == 1 else f"new state {k}"
            raise _step_shape_error(owner, t, what, new, f"{old} (the state's shape before the step)")


def _step_shape_error(owner, t, what, got, expected):
    return ValueError(f"{owner}: at step {t} the cell's {what} has shape {got}, expected {expected}")


def _describe(value):
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}: ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def _rows(keep, like):
    """The (B,) mask ``keep`` shaped to broadcast over ``like`` (B, ...)."""
    return keep.reshape((-1,) + (1,) * (like.ndim - 1))


def norm_hook(row):
    """A backward hook that writes each sequence's gradient norm ||g[b]|| into ``row`` (B,)."""

    def hook(g):
        g = g.data
        row[...] = np.sqrt((g * g).reshape(g.shape[0], -1).sum(axis=-1))

    return hook


def check_lengths(name, lengths, steps, batch):
    """``lengths`` checked (B ints in [1, T]) and the (T, B) mask it gives, True at valid
    steps; (None, None) when it pads nothing."""
    if lengths is None:
        return None, None
    lengths = valid_lengths(name, lengths, steps, batch)
    if not batch or lengths.min() == steps:
        return None, None
    return lengths, np.arange(steps)[:, None] < lengths[None, :]


# ---------------------------------------------------------------- cells and layers


class Cell(Module):
    """The base of a cell for ``Recurrent``: write ``forward(x_t, state) -> (y_t, new_state)``.

    Set ``state_size`` (H for one (B, H) state; a tuple of sizes for a tuple of states) and
    ``initial_state(batch)`` gives zeros of those shapes in the dtype of the cell's
    parameters; or write ``initial_state`` yourself.
    """

    state_size = None

    def initial_state(self, batch):
        """The state every sequence starts from: zeros of ``state_size``, (B, size) each."""
        if self.state_size is None:
            raise NotImplementedError(f"{type(self).__name__}: set state_size or write initial_state(batch)")
        dtype = param_dtype(self)
        sizes = self.state_size if isinstance(self.state_size, tuple) else (self.state_size,)
        zeros = tuple(Tensor(np.zeros((batch, size), dtype=dtype)) for size in sizes)
        return zeros if isinstance(self.state_size, tuple) else zeros[0]


def param_dtype(module, default=None):
    """The dtype of a module's parameters (``default`` if it has none, else the default float dtype)."""
    for p in module.parameters():
        return p.dtype
    return np.dtype(config.DEFAULT_DTYPE) if default is None else default


class Recurrent(Module):
    """A cell unrolled over time: any ``forward(x_t, state) -> (y_t, new_state)`` becomes a layer.

    Args:
        cell: the cell (a Module; ``Cell`` gives it a zero ``initial_state``), or a built-in
            ``nn.RNNCell``, ``nn.GRUCell`` (the state is h, the output h) or ``nn.LSTMCell``
            (the state is (h, c), the output h): then this runs the cell's ``step()``
            (``nn.RNNStep``, ...) as ``nn.RNN``/``GRU``/``LSTM`` do, with the cell's parameters.
        batch_first: if True, input and output are (B, T, ...) instead of (T, B, ...). Default: False.
        reverse: if True, run from t = T-1 down to 0 (the outputs stay in time order). Default: False.
        backend: "graph" (the cell's ops unrolled over time), "numba" (the cell's step compiled
            by ``tinyseq_jit.compiler`` into a fused forward and BPTT for the CPU), "cuda" (the
            same for numba.cuda) or "auto" (as the built-in layers: the
            process-wide choice, else numba; compiled when the cell compiles, else on the
            graph, and then ``fallback_reason`` says why). A cell that cannot compile on
            ``backend="numba"`` is a ``CompileError`` naming the op or construct and its line.
            Default: "auto".

    Inputs: input, state=None, lengths=None
        - **input**: (T, B, ...), or (B, T, ...) with ``batch_first=True``.
        - **state**: the initial state (a Tensor or a tuple of them, (B, ...) each);
          ``cell.initial_state(B)`` if None. Where the cell has a ``state_size``, a given
          state must be (B, size) for each size (checked before the first step).
        - **lengths**: B ints in [1, T], as the built-in layers take them: padded steps keep
          the state, outputs past a sequence's end are zero, a reverse layer runs over each
          sequence's valid part. None: all T. Or pass ``input`` as an
          ``nn.utils.rnn.PackedSequence`` (and no ``lengths``), as PyTorch: the same run, with
          the output packed the same way.

    Outputs: output, final_state
        - **output**: the y_t stacked, (T, B, ...) or (B, T, ...) with ``batch_first=True``.
        - **final_state**: the state after each sequence's last valid step, (B, ...) as the
          cell keeps it: no (L*D, ...) layer axis as nn.LSTM's h_n has.

    Every step is checked (a shape comparison, no copy): y_t must be (B, ...) and of the
    same shape at every step, and each new state tensor of the shape it had before the step;
    a ValueError names the layer and cell, the step, and both shapes. (Compiled, the trace
    checks the step once.)
    """

    def __init__(self, cell, batch_first=False, reverse=False, backend="auto"):
        if not isinstance(cell, Module):
            raise TypeError(f"Recurrent: cell must be a Module with forward(x_t, state) -> (y_t, new_state), "
                            f"got {type(cell).__name__}")
        self.cell, self.batch_first, self.reverse = cell, batch_first, reverse
        self.backend = backends.check(backend, "Recurrent")
        self.fallback_reason = None  # why "auto" ran the graph (None: it did not, or nothing was tried)
        self._input_size = None

    def forward(self, x, state=None, lengths=None, *, grad_norms=None):
        """The cell over ``x``: see the class's docstring. ``grad_norms``: None, or a list to
        which the (S, T, B) array that backward fills with every sequence's ||dL/d s_t|| for
        each of the S state tensors is appended (``tinyseq.bptt``)."""
        name = f"Recurrent({type(self.cell).__name__})"
        x, lengths, repack = packed_input(name, x, lengths, self.batch_first)
        x = as_input(name, x, param_dtype(self.cell, default=_dtype_of(x)))
        dtype = x.dtype
        if x.ndim < 3:
            raise ValueError(f"{name}: expected an input of ({'B, T' if self.batch_first else 'T, B'}, ...) "
                             f"with at least 3 axes, got shape {x.shape}")
        if self.batch_first:
            x = ops.transpose(x, 0, 1)
        steps, batch = x.shape[:2]
        if steps == 0:
            raise ValueError(f"{name}: the input has no time steps (shape {x.shape})")
        _, mask = check_lengths(name, lengths, steps, batch)
        if mask is not None:  # padded steps must influence nothing, not even as 0 * nan
            x = ops.where(mask.reshape(mask.shape + (1,) * (x.ndim - 2)), x, 0.0)
        step = _step_of(self.cell)
        given = state is not None
        if state is None:
            if getattr(step, "initial_state", None) is None:
                raise TypeError(f"{name}: the cell has no initial_state(batch); pass state=, or subclass nn.Cell")
            state = step.initial_state(batch)
        elif isinstance(state, (tuple, list)):
            state = tuple(as_input(name, s, dtype, "state") for s in state)
        else:
            state = as_input(name, state, dtype, "state")
        for s in _parts(state):
            if s.ndim == 0 or s.shape[0] != batch:
                raise ValueError(f"{name}: each state tensor must be (B, ...) with B = {batch}, no layer axis "
                                 f"(unlike nn.LSTM's (L*D, B, H)); got shape {s.shape}")
        if given:
            _check_state_size(name, getattr(step, "state_size", None), state, batch)
        kernel = self._kernel(name, step, x)
        out, final = run_step(step, x, state, lengths, mask, self.reverse, grad_norms, kernel,
                              label=type(self.cell).__name__, owner=name)
        return repack(ops.transpose(out, 0, 1) if self.batch_first else out), final

    def _kernel(self, name, cell, x):
        """The compiled kernel this call runs ``cell`` (the cell's step) on, or None for the
        graph (see ``backend``)."""
        choice = backends.resolve(self.backend)
        if choice == "graph":
            return None
        from tinyseq_jit.compiler import CompileError, compile_cell

        try:
            if x.ndim != 3:
                raise CompileError(f"{name}: the kernels take an input of (T, B, I), got {x.ndim} axes")
            self._input_size = x.shape[2]
            kernel = compile_cell(cell, x.shape[2], param_dtype(cell, default=x.dtype), choice)
        except CompileError as error:
            if self.backend != "auto":  # asked for by this layer (a process-wide choice falls back)
                raise
            self.fallback_reason = str(error)
            return None
        self.fallback_reason = None
        return kernel

    def kernel_source(self, input_size=None, device="numba"):
        """The source of the kernels the compiler generates for this cell: the fused forward and
        BPTT, one line per op of the cell's step. ``input_size``: the features of x (default:
        those of the last input the layer ran on); ``device``: "numba" (the CPU module) or
        "cuda". A ``CompileError`` if the cell cannot compile."""
        from tinyseq_jit.compiler import compile_cell

        size = self._input_size if input_size is None else input_size
        if size is None:
            raise ValueError(f"Recurrent({type(self.cell).__name__}).kernel_source: pass input_size, or run the "
                             "layer once first")
        return compile_cell(_step_of(self.cell), size, param_dtype(self.cell), device).source

    def extra_repr(self):
        flags = [f"{k}=True" for k in ("batch_first", "reverse") if getattr(self, k)]
        return ", ".join(flags + ([f"backend={self.backend!r}"] if self.backend != "auto" else []))


def _check_state_size(name, sizes, state, batch):
    """A ``state=`` given to the layer against the cell's ``state_size`` (H, or a tuple of
    sizes; None: nothing to check), before the cell sees it."""
    if sizes is None:
        return
    many = isinstance(sizes, tuple)
    if many != isinstance(state, tuple) or (many and len(sizes) != len(state)):
        expected = f"a tuple of {len(sizes)} states (B, size)" if many else "one (B, size) Tensor"
        raise ValueError(f"{name}: state= must fit the cell's state_size {sizes}, {expected}; got {_describe(state)}")
    for k, (size, s) in enumerate(zip(_parts(sizes), _parts(state))):
        if s.shape != (batch, size):
            where = f" for state {k}" if many else ""
            raise ValueError(f"{name}: state= must fit the cell's state_size {sizes}, (B, {size}) = {(batch, size)}"
                             f"{where}; got shape {s.shape}")


def _step_of(cell):
    """What ``Recurrent`` runs: the cell itself, or for a built-in ``nn.RNNCell``, ``LSTMCell``
    or ``GRUCell`` (whose forward returns h', or (h', c'), as PyTorch's) its step, an
    ``nn.Cell`` on the same parameters."""
    from .rnn import _CellBase  # nn.rnn imports this module

    return cell.step() if isinstance(cell, _CellBase) else cell


def _dtype_of(x):
    """The dtype an input to a cell without parameters keeps: its own if it is a float array."""
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None and np.dtype(dtype).kind == "f" else np.dtype(config.DEFAULT_DTYPE)


class Bidirectional(Module):
    """Two ``Recurrent`` layers over the same input, one forward and one reversed, their
    outputs concatenated on the last axis (as a built-in ``bidirectional=True`` layer).

    Args:
        forward_cell: the forward direction's cell.
        backward_cell: the reversed direction's cell (another instance: the two do not
            share weights).
        batch_first: as ``Recurrent``'s. Default: False.
        backend: as ``Recurrent``'s, for both directions. Default: "auto".

    Inputs: input, state=None, lengths=None, as ``Recurrent``'s (``input`` may be a
    ``PackedSequence``); ``state`` is None or the pair (forward's, backward's). Outputs: output (..., F_forward + F_backward), and the pair of final states.
    """

    def __init__(self, forward_cell, backward_cell, batch_first=False, backend="auto"):
        if forward_cell is backward_cell:
            raise ValueError("Bidirectional: the two directions need two cells (one would share its weights)")
        self.forward_layer = Recurrent(forward_cell, batch_first, backend=backend)
        self.backward_layer = Recurrent(backward_cell, batch_first, reverse=True, backend=backend)
        self.batch_first = batch_first

    def forward(self, x, state=None, lengths=None):
        if state is not None and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("Bidirectional: state must be None or a pair (forward's, backward's)")
        first, second = (None, None) if state is None else state
        x, lengths, repack = packed_input("Bidirectional", x, lengths, self.batch_first)
        out_f, final_f = self.forward_layer(x, first, lengths)
        out_b, final_b = self.backward_layer(x, second, lengths)
        return repack(ops.concatenate([out_f, out_b], axis=-1)), (final_f, final_b)


class Stacked(Module):
    """Recurrent layers stacked, each reading the previous one's output, with dropout between.

    Args:
        layers: ``Recurrent`` or ``Bidirectional`` layers (anything with ``forward(x, state,
            lengths) -> (output, final_state)``), bottom first; they share ``batch_first``.
        dropout: the probability of zeroing an element of each layer's output but the last's,
            in training. Default: 0.
        variational: one dropout mask per sequence for all its steps (Gal & Ghahramani 2016)
            instead of a new one for every element. Default: False.
        generator: a ``numpy.random.Generator`` for the masks (default: the library's).

    Inputs: input, state=None, lengths=None, as ``Recurrent``'s (``input`` may be a
    ``PackedSequence``); ``state`` is None or one state per layer.
    Outputs: the top layer's output, and the tuple of every layer's final state.
    """

    def __init__(self, layers, dropout=0.0, variational=False, generator=None):
        layers = list(layers)
        if not layers:
            raise ValueError("Stacked: expected at least one layer")
        layouts = {getattr(layer, "batch_first", False) for layer in layers}
        if len(layouts) > 1:
            raise ValueError("Stacked: the layers must agree on batch_first")
        self.layers = ModuleList(layers)
        self.batch_first = layouts.pop()
        self.drop = Dropout(dropout, variational=variational, batch_first=self.batch_first, generator=generator)

    def forward(self, x, state=None, lengths=None):
        if state is None:
            state = [None] * len(self.layers)
        elif not isinstance(state, (tuple, list)) or len(state) != len(self.layers):
            raise ValueError(f"Stacked: state must be None or one state per layer ({len(self.layers)})")
        x, lengths, repack = packed_input("Stacked", x, lengths, self.batch_first)
        finals = []
        for k, (layer, initial) in enumerate(zip(self.layers, state)):
            if k:
                x = self.drop(x)
            x, final = layer(x, initial, lengths)
            finals.append(final)
        return repack(x), tuple(finals)
