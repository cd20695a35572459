"""Truncated backpropagation through time, and instruments for studying BPTT.

Full BPTT unrolls the whole sequence and backpropagates through all of it: memory grows with
its length, and one update waits for its end. Truncated BPTT walks the sequence in pieces
of k1 steps: each piece starts from the state the previous one ended in, *detached*, so the
gradient stops at the piece's start, and the parameters are updated after every piece.
With k2 < k1 only the last k2 steps of a piece are unrolled with gradients (the first
k1 - k2 just advance the state, under ``no_grad``) and only their loss is trained on.

    tbptt = TBPTT(model, loss_fn, optimizer, k1=64, max_norm=1.0, batch_first=True)
    for x, y in batches:            # consecutive chunks of the same streams
        loss = tbptt.step(x, y)

``model(x, state)`` must return ``(output, state)`` (as ``nn.LSTM`` does, with ``state`` None
at first, a tensor, or a tuple of tensors such as an LSTM's ``(h, c)``), and ``loss_fn(output,
y)`` a scalar tensor. The state is carried between ``step`` calls; call ``reset()`` where the
streams start again.

The instruments (see the README's "Studying BPTT"):

- ``grad_norms_through_time``: ||dL/dh_t|| (and ||dL/dc_t||) at every step, per layer and
  direction, on every backend; ``last_step_loss`` puts the loss at the last step only, so
  the curve shows how far back the signal reaches.
- ``state_jacobians``: dh_t/dh_{t-1} along a trajectory, the singular values of their
  products (how the last state responds to an earlier one), and the eigenvalues of W_hh.
- ``truncation_bias``: how far truncated BPTT's gradient is from the full one, per k.

And BPTT's counterpart: ``rtrl`` and ``RTRL``, real-time recurrent learning, the same
gradient carried forward in time (no stored history; online updates at every step).
"""

import contextlib
import numbers
from typing import NamedTuple

import numpy as np

from . import _blas, config, nn, ops
from ._checks import check_int
from .gates import gate_names
from .tensor import Tensor, _keep_grad, _run_hooks, as_array, enable_grad, no_grad


def detach_state(state):
    """``state`` cut from the graph: None, a tensor, or a (nested) tuple or list of tensors."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        parts = [detach_state(s) for s in state]
        return type(state)(*parts) if hasattr(state, "_fields") else type(state)(parts)  # a namedtuple too
    raise TypeError(f"detach_state: expected None, a Tensor or a tuple or list of Tensors, got {type(state).__name__}")


class TBPTT:
    """Train ``model`` with truncated BPTT: updates every ``k1`` steps, gradients through the
    last ``k2`` of them (default ``k2 = k1``).

    Args:
        model: a Module called as ``model(x, state) -> (output, state)``; a bidirectional
            recurrent layer inside it is refused (its backward direction would read steps
            past the truncation).
        loss_fn: ``loss_fn(output, y) -> scalar Tensor``.
        optimizer: a ``tinyseq.optim`` optimizer over the model's parameters.
        k1: steps per update; k2: steps backpropagated through, 1 <= k2 <= k1.
        max_norm: if given, ``clip_grad_norm_`` over the optimizer's parameters before each
            update.
        batch_first: the time axis of x and y is 1 if True, else 0 (the layers' default);
            it must match the model's recurrent layers (checked).

    With k1 at least the sequence's length, ``step`` is one full-BPTT update. NOTE: with
    k2 < k1 the first k1 - k2 steps of each piece only warm up the state: their loss is not
    trained on.
    """

    def __init__(self, model, loss_fn, optimizer, k1, k2=None, max_norm=None, batch_first=False):
        k2 = k1 if k2 is None else k2
        k1, k2 = check_int("TBPTT", "k1", k1, 1), check_int("TBPTT", "k2", k2, 1)
        if k2 > k1:
            raise ValueError(f"TBPTT: k2 ({k2}) must be at most k1 ({k1})")
        _check_causal("TBPTT", model, batch_first)
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.k1, self.k2, self.max_norm, self.batch_first = int(k1), int(k2), max_norm, batch_first
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.state = None

    def reset(self):
        """Forget the carried state (the streams start again)."""
        self.state = None

    def state_dict(self):
        """The carried state as arrays (for a checkpoint; tuples and lists tagged)."""
        return {"state": _plain(self.state)}

    def load_state_dict(self, state_dict):
        """Carry on from a saved ``state_dict``: the state comes back as Tensors, in tuples
        and lists as saved (a namedtuple comes back a tuple)."""
        self.state = _tensors(state_dict["state"])

    def step(self, x, y):
        """Train on x and its targets y (T steps on the time axis) in updates of ``k1`` steps,
        carrying the state across them and into the next call (the model is put in training
        mode). Returns the loss averaged over the trained steps (each update's loss weighted
        by its number of steps: with a mean loss, the mean over every trained position)."""
        steps = _count_steps("TBPTT.step", x, y, self.batch_first)
        self.model.train()
        total = trained_steps = 0
        for start, trained, stop in _pieces(steps, self.k1, self.k2):
            state = self.state  # stored detached
            if trained > start:
                with no_grad():
                    _, state = self.model(_time_slice(x, start, trained, self.batch_first), state)
            self.optimizer.zero_grad()
            output, state = self.model(_time_slice(x, trained, stop, self.batch_first), state)
            loss = self.loss_fn(output, _time_slice(y, trained, stop, self.batch_first))
            loss.backward()
            if self.max_norm is not None:
                nn.utils.clip_grad_norm_(self.params, self.max_norm)
            self.optimizer.step()
            self.state = detach_state(state)
            total += loss.item() * (stop - trained)
            trained_steps += stop - trained
        return total / trained_steps


def evaluate(model, loss_fn, batches, state=None):
    """The mean loss of ``model`` over ``batches``, with the state carried from one batch to
    the next (consecutive chunks of the same streams, as ``StreamBatches`` yields them).

    Runs under ``no_grad`` in evaluation mode (dropout off), then puts back the mode the
    model was in. Each batch's loss is weighted by its number of targets (``y.size``), so
    the result is the mean over every target even when the last chunk is shorter; the
    per-target mean in nats for cross-entropy, which ``/ math.log(2)`` turns into bits.
    ``state`` is where the streams start (None: zeros). NOTE: the weighting assumes
    ``loss_fn`` averages over all targets (no ``ignore_index``).
    """
    was_training = model.training
    model.eval()
    total = count = 0
    try:
        with no_grad():
            for x, y in batches:
                output, state = model(x, state)
                n = np.size(y)
                total += loss_fn(output, y).item() * n
                count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: batches yielded no targets")
    return total / count


# ---------------------------------------------------------------- gradient flow through time


class GradientFlow(NamedTuple):
    """What ``grad_norms_through_time`` measured."""

    h: np.ndarray  # (L*D, T, B): ||dL/dh_t|| of each sequence at each step, per layer-direction
    c: np.ndarray  # the same for an LSTM's cell state c_t; None for other cells
    names: tuple  # each row's layer-direction, in h_n's order: "l0", "l0_reverse", "l1", ... ("cell" for a cell)
    loss: float


def grad_norms_through_time(layer, x, loss_fn=None, hx=None, lengths=None):
    """How the gradient of a loss spreads back through time: ||dL/dh_t|| at every step.

    ``layer``: an ``nn.RNN``/``LSTM``/``GRU`` on any backend (the fused kernels record the
    norms in their backward; the graph records them with hooks: the same numbers; a
    subclass's own ``forward`` is not called); an ``nn.Recurrent``, or an ``nn.Cell`` (run
    as ``nn.Recurrent(cell)``), whose first state's norms are ``h`` and second state's
    ``c`` (whatever that state is); or a cell called as ``cell(x_t, hx) -> h`` or ``(h,
    c)`` (``nn.LSTMCell``, or your own Module), unrolled here over the steps of x, which is
    then (T, B, I), time first. ``loss_fn(output, state) -> scalar Tensor`` reads what the
    layer returns (for a cell: its h at every step, (T, B, H), and its last state); the
    default is ``last_step_loss(output)``. ``hx`` and ``lengths`` are the layer's arguments;
    x and hx are read as values (a Tensor's own graph and ``.grad`` are left alone).

    h_t is the state after step t (for a reverse direction too, t is the input's step), and
    dL/dh_t is all of it: through the output at t and through the steps that read h_t after
    it. Steps past a sequence's length read 0. It runs in evaluation mode (no dropout, so
    the same numbers every call) and leaves the mode and the parameters' ``.grad`` as they
    were. Returns a ``GradientFlow``.
    """
    owner = "grad_norms_through_time"
    _check_module(owner, layer)
    recorded = []  # an (S, T, B) array per layer-direction, filled by backward
    with _studying(layer):
        if isinstance(layer, nn.Cell):
            layer = nn.Recurrent(layer)
        if isinstance(layer, (nn.rnn.RNNBase, nn.Recurrent)):
            base = nn.rnn.RNNBase if isinstance(layer, nn.rnn.RNNBase) else nn.Recurrent  # not a subclass's forward
            output, state = base.forward(layer, _leaf(layer, x), _state_values(hx), lengths, grad_norms=recorded)
            names = ("cell",) if isinstance(layer, nn.Recurrent) else tuple(layer.directions())
            batch_first = layer.batch_first
        else:
            if lengths is not None:
                raise ValueError(f"{owner}: lengths= is for the recurrent layers; a cell runs all T steps")
            layer, x, hx = _as_cell(owner, layer, x, hx)
            steps = _unroll(owner, layer, _leaf(layer, x), hx)
            recorded.append(np.zeros((len(steps[0]),) + x.shape[:2], dtype=steps[0][0].dtype))
            for t, states in enumerate(steps):
                for s, row in zip(states, recorded[0][:, t]):
                    if s.requires_grad:
                        s.register_hook(nn.recurrent.norm_hook(row))
            output, names, batch_first = ops.stack([s[0] for s in steps], axis=0), ("cell",), False
            state = steps[-1][0] if len(steps[-1]) == 1 else steps[-1]
        loss = loss_fn(output, state) if loss_fn is not None else last_step_loss(output, lengths, batch_first)
        _scalar_loss("grad_norms_through_time", loss).backward()
    norms = np.stack(recorded)  # (L*D, S, T, B)
    return GradientFlow(norms[:, 0], norms[:, 1] if norms.shape[1] >= 2 else None, names, loss.item())


def last_step_loss(output, lengths=None, batch_first=False, seed=0):
    """L = sum over sequences of u . y_last: a loss at each sequence's last step only.

    ``output`` (T, B, F), (B, T, F) with ``batch_first``, or (T, F) for one sequence; y_last
    is each sequence's output at step ``lengths[b] - 1`` (T - 1 without ``lengths``); u is a
    fixed random unit vector (drawn from ``seed``). So dL/dy_last = u has norm 1 and nothing
    else gets a gradient directly: whatever reaches an earlier step came back through time.
    NOTE: a bidirectional layer's output holds both directions, so u is split between them,
    and the reverse direction, which ends at t = 0, gets its gradient at the last step only.
    """
    if not isinstance(output, Tensor) or output.ndim not in (2, 3):
        raise ValueError(f"last_step_loss: expected a 2-D or 3-D output Tensor, got {type(output).__name__} of shape "
                         f"{getattr(output, 'shape', None)}")
    if output.ndim == 2:
        output = ops.unsqueeze(output, 1)
    elif batch_first:
        output = ops.transpose(output, 0, 1)
    steps, batch, features = output.shape
    last = np.full(batch, steps - 1) if lengths is None else as_array(lengths) - 1
    if last.shape != (batch,) or last.dtype.kind not in "iu" or (batch and (last.min() < 0 or last.max() >= steps)):
        raise ValueError(f"last_step_loss: lengths must be {batch} ints in [1, {steps}], got {lengths!r}")
    u = np.random.default_rng(seed).standard_normal(features)
    u = (u / np.linalg.norm(u)).astype(output.dtype)
    return (output[last, np.arange(batch)] * u).sum()


# ---------------------------------------------------------------- Jacobian spectra


class StateJacobians(NamedTuple):
    """What ``state_jacobians`` measured; s is the state (h, or an LSTM's h and c stacked),
    N its size, s_t the state after step t and s_{-1} the initial one."""

    jacobians: np.ndarray  # (T, B, N, N): ds_t/ds_{t-1}, one per step and sequence
    singular_values: np.ndarray  # (T, B, top): of ds_{T-1}/ds_{k-1} = J[T-1] ... J[k], largest first
    eigenvalues: dict  # gate -> the eigenvalues of W_hh's (H, H) block for it, largest modulus first

    @property
    def spectral_norms(self):
        """(T, B): the largest singular value of each product ds_{T-1}/ds_{k-1}."""
        return self.singular_values[..., 0]


def state_jacobians(cell, x, hx=None, top=None):
    """The Jacobians of a recurrence along the trajectory that x drives it through.

    ``cell``: a cell (``nn.RNNCell``, ``LSTMCell``, ``GRUCell`` or your own Module called as
    ``cell(x_t, hx) -> h`` or ``(h, c)``), or a one-layer, one-direction ``nn.RNN``/``LSTM``/
    ``GRU`` (its cell's equations with its weights). x: (T, B, I) (a layer's ``batch_first``
    is honoured), or (T, I); ``hx``: the initial state, (B, H) each, or for a layer also
    its own (1, B, H) (zeros if None).

    Each step's Jacobian ds_t/ds_{t-1} comes from reverse mode over that one step: the state
    repeated N times along the batch and backward seeded with the identity, so one backward
    gives every row. The products ds_{T-1}/ds_{k-1} (how the last state responds to the state
    entering step k, T - k steps earlier) are multiplied from the end; ``top`` keeps their
    largest singular values (all N if None), NaN for a sequence whose product is not finite
    (a NaN or inf in its input or state; the other sequences are computed). The cell must
    keep its state's shape (checked at every step). The eigenvalues are of the cell's
    ``weight_hh`` blocks, where it has one (an empty dict otherwise). It runs in evaluation
    mode and leaves the mode and the parameters' ``.grad`` as they were. Returns a
    ``StateJacobians``.
    """
    owner = "state_jacobians"
    _check_module(owner, cell)
    cell, x, hx = _as_cell(owner, cell, x, hx)
    top = None if top is None else check_int(owner, "top", top, 1)
    with _studying(cell):
        with no_grad():
            steps = _unroll(owner, cell, x, hx)
        entering = [_as_states(hx, steps[0])] + [[s.data for s in states] for states in steps[:-1]]
        sizes = [s.shape[-1] for s in entering[0]]
        batch, n = entering[0][0].shape[0], sum(sizes)
        seeds = np.split(np.tile(np.eye(n, dtype=entering[0][0].dtype), (batch, 1)), np.cumsum(sizes)[:-1], axis=1)
        jacobians = np.empty((len(steps), batch, n, n), dtype=seeds[0].dtype)
        for t, states in enumerate(entering):
            # Row (b, i) of the repeated batch gets the seed e_i: its gradient is row i of J_b.
            leaves = [Tensor(np.repeat(s, n, axis=0), requires_grad=True) for s in states]
            step = cell(np.repeat(x[t], n, axis=0), leaves[0] if len(leaves) == 1 else tuple(leaves))
            out = _state_tuple(owner, step)
            loss = sum((o * seed).sum() for o, seed in zip(out, seeds))
            loss.backward()
            jacobians[t] = np.concatenate([leaf.grad.data for leaf in leaves], axis=1).reshape(batch, n, n)
    products = np.broadcast_to(np.eye(n), (batch, n, n))
    top = n if top is None else min(top, n)
    singular = np.full((len(steps), batch, top), np.nan)
    for k in reversed(range(len(steps))):
        products = products @ jacobians[k]
        finite = np.isfinite(products).all(axis=(1, 2))  # a NaN or inf in one sequence: NaN for it alone
        if finite.any():
            singular[k, finite] = np.linalg.svd(products[finite], compute_uv=False)[:, :top]
    return StateJacobians(jacobians, singular, _eigenvalues(cell.cell if isinstance(cell, _CellStep) else cell))


def _check_module(owner, module):
    """Refuse what is not a cell or a recurrent layer, such as a whole model."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"{owner}: expected a recurrent layer or a cell Module, got {type(module).__name__}")
    if not isinstance(module, nn.rnn.RNNBase):
        inside = next((name for name, m in module.named_modules() if isinstance(m, nn.rnn.RNNBase)), None)
        if inside is not None:
            raise TypeError(f"{owner}: got a {type(module).__name__} holding the recurrent layer {inside!r}; "
                            f"pass that layer (or a cell), not the whole model")


def _as_cell(owner, cell, x, hx):
    """A cell with a layer's first-layer weights (or the cell itself), x as (T, B, I) and hx
    as (B, H) arrays (a layer's (1, B, H) state too), or None."""
    x, hx = _values(cell, x), _state_values(hx)
    if isinstance(cell, nn.Recurrent):
        if cell.reverse:
            raise ValueError(f"{owner}: expected a layer that runs forward in time, got a reverse one; "
                             "pass its cell")
        if cell.batch_first and x.ndim == 3:
            x = x.swapaxes(0, 1)
        cell = cell.cell
    if isinstance(cell, nn.Cell):
        cell = _CellStep(cell)
    if isinstance(cell, nn.rnn.RNNBase):
        layer = cell
        if layer.num_layers != 1 or layer.bidirectional:
            raise ValueError(f"{owner}: expected a one-layer, one-direction layer, got num_layers={layer.num_layers}, "
                             f"bidirectional={layer.bidirectional}; pass a cell with the weights you want to study")
        cell = _CellStep(layer.step())
        if layer.batch_first and x.ndim == 3:
            x = x.swapaxes(0, 1)
        if hx is not None:
            parts = [s[0] if s.ndim == 3 and s.shape[0] == 1 else s for s in (hx if isinstance(hx, tuple) else (hx,))]
            hx = tuple(parts) if isinstance(hx, tuple) else parts[0]
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{owner}: expected x of shape (T, B, I) or (T, I) with T >= 1, got {x.shape}")
    return cell, x, hx


class _CellStep(nn.Module):
    """An ``nn.Cell`` (``forward(x_t, state) -> (y_t, new_state)``) called as PyTorch's cells
    are, ``cell(x_t, state) -> new_state``, from its ``initial_state`` when state is None."""

    def __init__(self, cell):
        self.cell = cell

    def forward(self, x, state=None):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if state is None:
            state = self.cell.initial_state(x.shape[0])
        elif isinstance(state, (tuple, list)):
            state = tuple(s if isinstance(s, Tensor) else Tensor(s) for s in state)
        elif not isinstance(state, Tensor):
            state = Tensor(state)
        return self.cell(x, state)[1]


def _values(module, x):
    """x as an array: a Tensor's data, an array as it is, Python numbers and lists in the
    module's parameter dtype (as the layers convert them)."""
    if isinstance(x, (Tensor, np.ndarray)):
        return as_array(x)
    p = next(module.parameters(), None)
    return np.asarray(x, dtype=config.DEFAULT_DTYPE if p is None else p.dtype)


def _leaf(module, x):
    """x's values as a new leaf that requires grad (a float x): then there is a graph to walk
    back through even when every parameter is frozen, and x's own graph is left alone."""
    x = _values(module, x)
    return Tensor(x, requires_grad=x.dtype.kind == "f")


def _state_values(hx):
    """An initial state as arrays (a tuple for an LSTM's (h, c)), or None."""
    if hx is None:
        return None
    if isinstance(hx, (tuple, list)):
        return tuple(as_array(s) for s in hx)
    return as_array(hx)


def _unroll(owner, cell, x, hx):
    """Run ``cell`` over the steps of x (T, B, I); the states after each step, as tuples,
    each of the shape it had before the step (checked)."""
    steps, name = [], f"{owner}({type(cell.cell if isinstance(cell, _CellStep) else cell).__name__})"
    for t in range(x.shape[0]):
        before = None if hx is None else [np.shape(s) for s in (hx if isinstance(hx, (tuple, list)) else (hx,))]
        hx = cell(x[t], hx)
        steps.append(_state_tuple(owner, hx))
        if before is not None:
            nn.recurrent.check_state_shapes(name, t, before, [s.shape for s in steps[-1]])
    return steps


def _state_tuple(owner, state):
    if isinstance(state, Tensor):
        return (state,)
    if isinstance(state, (tuple, list)) and state and all(isinstance(s, Tensor) for s in state):
        return tuple(state)
    raise TypeError(f"{owner}: a cell must return its new state as a Tensor or a tuple of Tensors, got "
                    f"{type(state).__name__}")


def _as_states(hx, first):
    """The initial state as arrays like the states in ``first``: ``hx``, or zeros."""
    if hx is None:
        return [np.zeros_like(s.data) for s in first]
    return [as_array(s) for s in (hx if isinstance(hx, (tuple, list)) else (hx,))]


def _eigenvalues(cell):
    """{gate: the eigenvalues of W_hh's (H, H) block} for a cell with a ``weight_hh`` of (G*H, H),
    largest modulus first. A projected LSTM's (``weight_hr`` (P, H): h = W_hr (o * tanh c))
    blocks are W_hh's (H, P) rows times W_hr, the (H, H) map from one step's o * tanh(c) to the
    next step's gate."""
    w = getattr(cell, "weight_hh", None)
    if w is None or w.ndim != 2:
        return {}
    w = w.data
    w_hr = getattr(cell, "weight_hr", None)
    if w_hr is not None:
        w = w @ w_hr.data
    if w.shape[0] % w.shape[1]:
        return {}
    hidden, blocks, mode = w.shape[1], w.shape[0] // w.shape[1], getattr(cell, "mode", None)
    if mode in nn.rnn.STEPS:  # a built-in cell: its gates
        gates = gate_names(mode, getattr(cell, "coupled", False))
    else:  # your own: "h" for one square W_hh, else the blocks' numbers
        gates = ("h",) if blocks == 1 else tuple(str(k) for k in range(blocks))
    found = {}
    for k, gate in enumerate(gates):
        values = np.linalg.eigvals(w[k * hidden:(k + 1) * hidden].astype(np.float64))
        found[gate] = values[np.argsort(-np.abs(values), kind="stable")]
    return found


# ---------------------------------------------------------------- truncation bias


class TruncationBias(NamedTuple):
    """How far the gradient truncated to ``k`` steps is from full BPTT's."""

    k: int
    cosine: float  # cos(g_k, g): 1 when they point the same way
    relative_error: float  # ||g_k - g|| / ||g||: 0 when they are equal


def truncation_bias(model, loss_fn, batch, ks, batch_first=False, state=None):
    """Compare the gradient truncated BPTT follows with the full one, for each k in ``ks``.

    ``model``, ``loss_fn`` and ``batch_first`` as for ``TBPTT``; ``batch`` is (x, y).
    The truncated gradient g_k is what ``TBPTT(k1=k)`` would follow if it did not update in
    between: the sequence cut into pieces of k steps, each starting from the state the one
    before it ended in, detached, and each piece's loss weighted by its share of the T
    steps, so that for k >= T it is exactly the full gradient g (cosine 1, error 0). It runs
    in evaluation mode (no dropout) and leaves the mode and the parameters' ``.grad`` as
    they were. Returns a list of ``TruncationBias(k, cosine, relative_error)``.
    """
    owner = "truncation_bias"
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(f"{owner}: batch must be a pair (x, y), got {type(batch).__name__}"
                         + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    if isinstance(ks, numbers.Integral) or not all(isinstance(k, numbers.Integral) for k in np.ravel(ks)):
        raise TypeError(f"{owner}: ks must be a list of ints (e.g. [1, 10, 100]), got {ks!r}")
    x, y = batch
    _check_causal(owner, model, batch_first)
    steps = _count_steps(owner, x, y, batch_first)
    ks = [check_int(owner, "k", k, 1) for k in np.ravel(ks)]
    with _studying(model) as params:
        if not any(p.requires_grad for p in params):
            raise ValueError(f"{owner}: no parameter of the model requires grad; there is no gradient to compare")
        full = _truncated_gradient(model, params, loss_fn, x, y, steps, steps, batch_first, state)
        if not np.dot(full, full) > 0:
            raise ValueError(f"{owner}: the full BPTT gradient is zero (or not finite); there is nothing to compare")
        rows = []
        for k in ks:
            g = _truncated_gradient(model, params, loss_fn, x, y, k, steps, batch_first, state)
            cosine = np.dot(g, full) / np.sqrt(np.dot(g, g) * np.dot(full, full))  # exactly 1 when g is full
            rows.append(TruncationBias(k, float(np.clip(cosine, -1.0, 1.0)),
                                       float(np.linalg.norm(g - full) / np.linalg.norm(full))))
    return rows


def _truncated_gradient(model, params, loss_fn, x, y, k, steps, batch_first, state):
    """All parameters' gradient, flattened, with BPTT cut every k steps (see ``truncation_bias``)."""
    for p in params:
        p.grad = None
    for start, _, stop in _pieces(steps, k, k):
        output, state = model(_time_slice(x, start, stop, batch_first), state)
        loss = _scalar_loss("truncation_bias", loss_fn(output, _time_slice(y, start, stop, batch_first)))
        (loss * ((stop - start) / steps)).backward()
        state = detach_state(state)
    return np.concatenate([(np.zeros(p.shape) if p.grad is None else p.grad.data).ravel() for p in params])


# ---------------------------------------------------------------- real-time recurrent learning


class RTRL:
    """Real-time recurrent learning (Williams & Zipser 1989): the exact gradient of a loss
    summed over time steps, carried forward with the state instead of backward through a
    stored history.

    A cell's step s_t = f(s_{t-1}, x_t; theta) (s: every state tensor, flattened and joined,
    N entries per sequence). Each sequence carries its sensitivity P_t = ds_t/dtheta, (N, P)
    for the P entries of the cell's parameters, from P = 0 at the initial state:

        P_t = J_t P_{t-1} + ds_t/dtheta (this step alone),   J_t = ds_t/ds_{t-1}

    A loss l_t read at step t (from y_t, which the step computed from s_{t-1}, x_t and theta)
    adds to the gradient its part from this step, dl_t/dtheta, and its part through every
    earlier step, (dl_t/ds_{t-1}) P_{t-1}. Both come from reverse mode over the one step:
    one backward of l_t, and one per state entry of each sequence (B * N) for the rows of
    J_t and ds_t/dtheta (a parameter's gradient sums over the batch, so each sequence's row
    needs its own). Nothing of earlier steps is kept: memory is the sensitivities, B * N * P
    numbers, whatever the length; time per step is those backwards and the product
    J_t P_{t-1}, B * N^2 * P multiply-adds. BPTT's memory grows with T instead, and its
    time per step does not grow with N^2 * P. The step runs on the graph (whatever the
    layer's backend), one step at a time.

    ``cell``: what ``nn.Recurrent`` runs (an ``nn.Cell``, or your own Module with
    ``forward(x_t, state) -> (y_t, new_state)``; an ``nn.RNNCell``, ``LSTMCell`` or
    ``GRUCell``), an ``nn.Recurrent`` running forward in time, or a one-layer, one-direction
    ``nn.RNN``/``LSTM``/``GRU``. ``batch``: B; ``state``: the initial state (the cell's
    ``initial_state(B)`` if None), a constant: its own gradient is not computed.

    Online (the weights may change between steps; the sensitivities carried on were then
    computed with the old weights, the approximation RTRL always made online)::

        learner = bptt.RTRL(cell, batch=1)
        for x_t, target in stream:
            loss = learner.step(x_t, lambda y: mse(readout(y), target))  # .grad: d loss / d weights
            optimizer.step()
            optimizer.zero_grad()

    ``rtrl(cell, x, loss_fn)`` runs it over a whole sequence.
    """

    def __init__(self, cell, batch, state=None):
        self._layer = isinstance(cell, nn.rnn.RNNBase)  # its state may come with the (1, B, H) layer axis
        self.cell = _rtrl_step("RTRL", cell)
        self.batch = check_int("RTRL", "batch", batch, 1)
        self.dtype = nn.recurrent.param_dtype(self.cell)
        self.reset(state)

    def reset(self, state=None):
        """Start again from ``state`` (the cell's ``initial_state`` if None), with P = 0."""
        owner = f"RTRL({type(self.cell).__name__})"
        if state is None:
            if getattr(self.cell, "initial_state", None) is None:
                raise TypeError(f"{owner}: the cell has no initial_state(batch); pass state=")
            state = self.cell.initial_state(self.batch)
        else:
            state = (tuple(self._state_part(owner, s) for s in state) if isinstance(state, (tuple, list))
                     else self._state_part(owner, state))
            nn.recurrent._check_state_size(owner, getattr(self.cell, "state_size", None), state, self.batch)
        self._many = isinstance(state, tuple)
        self._state = tuple(np.array(s.data) for s in (state if self._many else (state,)))
        for s in self._state:
            if s.ndim == 0 or s.shape[0] != self.batch:
                raise ValueError(f"{owner}: each state tensor must be (B, ...) with B = {self.batch}, got shape {s.shape}")
        self.params = [p for p in self.cell.parameters() if p.requires_grad]
        self._offsets = np.cumsum([0] + [s[0].size for s in self._state])
        self.sensitivity = np.zeros((self.batch, self._offsets[-1], sum(p.data.size for p in self.params)), self.dtype)
        self.t, self._y_shape = 0, None

    def _state_part(self, owner, s):
        s = nn.module.as_input(owner, s, self.dtype, "state")
        if self._layer and s.ndim == 3 and s.shape[0] == 1:  # a one-layer layer's (1, B, H)
            s = s[0]
        return s

    @property
    def state(self):
        """The state after the last step (Tensors that record no graph), as the cell keeps it."""
        parts = tuple(Tensor(s) for s in self._state)
        return parts if self._many else parts[0]

    def step(self, x_t, loss_fn=None, keep=None):
        """Advance one step on x_t (B, ...) and, if ``loss_fn(y_t)`` is given and returns a
        one-element Tensor (None: no loss at this step), add the gradient of that loss with
        respect to the cell's parameters, through every step so far, into their ``.grad``
        (through their hooks, once, as ``backward`` does); any other parameter the loss
        reads, e.g. a readout's, gets its gradient from the loss's ``backward``. ``keep``:
        None, or B booleans, False for a sequence that has ended (its state and sensitivity
        stay, its y_t reads 0, as ``nn.Recurrent`` pads). x_t and the state are read as values
        (no gradient for them); only the cell's parameters get sensitivities, so a tensor
        inside the cell that requires grad but is not a parameter gets no meaningful gradient.
        Returns the loss as a float (None without one)."""
        loss, gradient = self._step(x_t, loss_fn, keep)
        if gradient is not None:
            self._add_grads(gradient)
        return loss

    def _step(self, x_t, loss_fn, keep):
        """``step`` without touching the cell's ``.grad``: (the loss, the flat gradient or None)."""
        owner = f"RTRL({type(self.cell).__name__})"
        x_t = nn.module.as_input(owner, x_t, self.dtype, "x_t")
        if x_t.ndim == 0 or x_t.shape[0] != self.batch:
            raise ValueError(f"{owner}: x_t must be (B, ...) with B = {self.batch}, got shape {x_t.shape}")
        if keep is not None:
            keep = np.asarray(keep)
            if keep.shape != (self.batch,) or keep.dtype != bool:
                raise ValueError(f"{owner}: keep must be {self.batch} booleans (one per sequence), got "
                                 f"{keep.dtype} of shape {keep.shape}")
            x_t = Tensor(np.where(keep.reshape((-1,) + (1,) * (x_t.ndim - 1)), x_t.data, 0))
        before = self.sensitivity
        kept = [(p.grad, p._hooks) for p in self.params]
        try:
            for p in self.params:  # the hooks see the step's whole gradient once, in _add_grads
                p._hooks = None
            with enable_grad():
                leaves = tuple(Tensor(s, requires_grad=True) for s in self._state)
                y, new = nn.recurrent._checked_step(owner, self.cell, x_t, leaves if self._many else leaves[0],
                                                    self.t, self._y_shape)
                new = new if self._many else (new,)
                if keep is not None:
                    new = tuple(ops.where(keep.reshape((-1,) + (1,) * (n.ndim - 1)), n, s) for n, s in zip(new, leaves))
                    y = ops.where(keep.reshape((-1,) + (1,) * (y.ndim - 1)), y, 0.0)
                loss = None if loss_fn is None else loss_fn(y)
                gradient = None
                if loss is not None:
                    loss = _scalar_loss(owner, loss)
                    direct, through = self._backward(loss, None, leaves)
                    gradient = direct + _blas.matmul(through.reshape(1, -1), before.reshape(-1, before.shape[2]))[0]
                self._advance(new, leaves, keep)
        finally:
            for p, (g, hooks) in zip(self.params, kept):
                p.grad, p._hooks = g, hooks
        self._state, self._y_shape, self.t = tuple(np.array(n.data) for n in new), y.shape, self.t + 1
        return (None if loss is None else loss.item()), gradient

    def _advance(self, new, leaves, keep):
        """P_t = J_t P_{t-1} + ds_t/dtheta, a row of each per backward seeded at one state entry."""
        batch, n = self.sensitivity.shape[:2]
        jacobian = np.zeros((batch, n, n), self.sensitivity.dtype)
        local = np.zeros_like(self.sensitivity)
        for k, state in enumerate(new):
            if not state.requires_grad:  # depends on neither theta nor the state: its rows stay 0
                continue
            for b in range(batch):
                if keep is not None and not keep[b]:  # ended: the state kept as it was
                    rows = slice(self._offsets[k], self._offsets[k + 1])
                    jacobian[b, rows, rows] = np.eye(rows.stop - rows.start)
                    continue
                for i in range(self._offsets[k + 1] - self._offsets[k]):
                    seed = np.zeros(state.shape, state.dtype)
                    seed.reshape(batch, -1)[b, i] = 1
                    direct, through = self._backward(state, seed, leaves)
                    local[b, self._offsets[k] + i], jacobian[b, self._offsets[k] + i] = direct, through[b]
        for b in range(batch):  # NOTE: through tinyseq's BLAS, not NumPy's: one thread pool (see _blas)
            local[b] += _blas.matmul(jacobian[b], self.sensitivity[b])
        self.sensitivity = local

    def _backward(self, out, seed, leaves):
        """One backward from ``out``: (the parameters' gradient, flattened, (P,); the
        gradient for each sequence's incoming state, (B, N)). The graph is kept for the next."""
        for p in self.params:
            p.grad = None
        for leaf in leaves:
            leaf.grad = None
        out.backward(seed, retain_graph=True)
        direct = np.concatenate([np.zeros(p.data.size) if p.grad is None else p.grad.data.ravel() for p in self.params])
        through = np.concatenate([np.zeros((self.batch, s.data[0].size)) if s.grad is None
                                  else s.grad.data.reshape(self.batch, -1) for s in leaves], axis=1)
        return direct, through

    def _add_grads(self, gradient):
        """Accumulate the flat ``gradient`` into the parameters' ``.grad`` through their hooks,
        as ``backward`` does."""
        start = 0
        for p in self.params:
            g = gradient[start:start + p.data.size].reshape(p.shape).astype(p.dtype)
            _keep_grad(p, _run_hooks(p, g) if p._hooks else g)
            start += p.data.size


class RTRLResult(NamedTuple):
    """What ``rtrl`` returns."""

    loss: float  # the sum over steps of loss_fn's values
    state: object  # the final state (Tensors that record no graph), as the cell keeps it


def rtrl(cell, x, loss_fn, hx=None, lengths=None):
    """The gradient of L = sum_t loss_fn(y_t, t) by real-time recurrent learning (see ``RTRL``):
    forward in time, no stored history. It accumulates into ``.grad`` what

        output, _ = nn.Recurrent(cell)(x, hx, lengths)
        sum(loss_fn(output[t], t) for t in range(T)).backward()

    would, to rounding: the cell's parameters' and any other the loss reads. ``x``: (T, B, ...)
    (a layer's ``batch_first`` honoured); ``loss_fn(y_t, t)``: a one-element Tensor, or None
    for no loss at step t; ``lengths``: B ints in [1, T] as the layers take them (a sequence
    that has ended keeps its state, and its y_t reads 0). The cell's parameters get their
    gradient once, at the end, through their hooks (none if a step raises); a parameter only
    the loss reads (a readout's) gets each step's from that step's ``backward``, its hooks
    called at every step (and what the steps before a failing one gave stays). Returns
    ``RTRLResult(loss, state)``.
    """
    owner = "rtrl"
    x = as_array(x)
    layout = cell.batch_first if isinstance(cell, (nn.Recurrent, nn.rnn.RNNBase)) else False
    if x.ndim < 3:
        raise ValueError(f"{owner}: expected x of ({'B, T' if layout else 'T, B'}, ...), got shape {x.shape}")
    if layout:
        x = x.swapaxes(0, 1)
    if x.shape[0] == 0:
        raise ValueError(f"{owner}: x has no time steps (shape {x.shape})")
    _, mask = nn.recurrent.check_lengths(owner, lengths, x.shape[0], x.shape[1])
    learner = RTRL(cell, x.shape[1], hx)
    total, gradient = 0.0, None
    for t in range(x.shape[0]):  # the cell's gradient summed here and added once: none if a step fails
        loss, g = learner._step(x[t], lambda y: loss_fn(y, t), None if mask is None else mask[t])
        if loss is not None:
            total, gradient = total + loss, g if gradient is None else gradient + g
    if gradient is not None:
        learner._add_grads(gradient)
    return RTRLResult(total, learner.state)


def _rtrl_step(owner, cell):
    """The ``nn.Cell`` (``forward(x_t, state) -> (y_t, new_state)``) that ``cell`` runs."""
    _check_module(owner, cell)
    if isinstance(cell, nn.Recurrent):
        if cell.reverse:
            raise ValueError(f"{owner}: expected a layer that runs forward in time, got a reverse one; pass its cell")
        cell = cell.cell
    if isinstance(cell, nn.rnn.RNNBase):
        if cell.num_layers != 1 or cell.bidirectional:
            raise ValueError(f"{owner}: expected a one-layer, one-direction layer, got num_layers={cell.num_layers}, "
                             f"bidirectional={cell.bidirectional}; pass a cell")
        return cell.step()
    return nn.recurrent._step_of(cell)


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def _studying(module):
    """Run the block in evaluation mode (no dropout: the same numbers every call), with grad
    mode on and every parameter's ``.grad`` cleared, then put the mode and the ``.grad`` back:
    the instruments leave no trace in the model. Yields the parameters."""
    params, was_training = list(module.parameters()), module.training
    kept = [p.grad for p in params]
    module.eval()
    try:
        for p in params:
            p.grad = None
        with enable_grad():
            yield params
    finally:
        for p, g in zip(params, kept):
            p.grad = g
        module.train(was_training)


def _scalar_loss(owner, loss):
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError(f"{owner}: loss_fn must return a one-element Tensor that requires grad, got "
                         f"{type(loss).__name__}" + (f" of shape {loss.shape}" if isinstance(loss, Tensor) else ""))
    return loss


def _check_causal(owner, model, batch_first):
    """Refuse a model with a bidirectional layer, or one whose time axis is not ``batch_first``'s."""
    bidirectional = [name for name, m in model.named_modules() if getattr(m, "bidirectional", False)]
    if bidirectional:
        raise ValueError(f"{owner}: {bidirectional[0] or 'the model'} is bidirectional; truncated BPTT needs a "
                         "causal model (a reverse direction would read steps past the truncation)")
    layouts = {name: m.batch_first for name, m in model.named_modules() if hasattr(m, "batch_first")}
    wrong = [name for name, layout in layouts.items() if layout != batch_first]
    if wrong:
        raise ValueError(f"{owner}: batch_first={batch_first}, but the model's {wrong[0] or 'layer'} has "
                         f"batch_first={layouts[wrong[0]]}; the time axis must be the same")


def _count_steps(owner, x, y, batch_first):
    """The number of time steps of x and y, which must agree and not be zero."""
    axis = 1 if batch_first else 0
    if getattr(x, "ndim", 0) <= axis or getattr(y, "ndim", 0) <= axis:
        raise ValueError(f"{owner}: x and y need a time axis {axis}, got {type(x).__name__} and "
                         f"{type(y).__name__} of shapes {getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}")
    steps = x.shape[axis]
    if steps == 0 or y.shape[axis] != steps:
        raise ValueError(f"{owner}: x and y need the same, non-zero number of steps on axis {axis}, "
                         f"got shapes {x.shape} and {y.shape}")
    return steps


def _pieces(steps, k1, k2):
    """(start, trained, stop) of each piece of k1 steps: gradients run through [trained, stop)."""
    for start in range(0, steps, k1):
        stop = min(start + k1, steps)
        yield start, max(start, stop - k2), stop


def _time_slice(a, start, stop, batch_first):
    return a[:, start:stop] if batch_first else a[start:stop]


def _plain(state):
    if state is None:
        return None
    if isinstance(state, Tensor):
        return {"tensor": state.data.copy()}
    if isinstance(state, (tuple, list)):
        return {"tuple" if isinstance(state, tuple) else "list": [_plain(s) for s in state]}
    raise TypeError(f"TBPTT.state_dict: cannot store a state of type {type(state).__name__}")


def _tensors(node):
    if node is None:
        return None
    if isinstance(node, dict) and len(node) == 1:
        (kind, value), = node.items()
        if kind == "tensor":
            return Tensor(np.asarray(value))
        if kind in ("tuple", "list") and isinstance(value, (list, tuple)):
            parts = [_tensors(v) for v in value]
            return tuple(parts) if kind == "tuple" else parts
    raise ValueError(f"TBPTT.load_state_dict: not a saved state: {node!r:.80}")
