"""Truncated backpropagation through time.

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
"""

import numpy as np

from . import nn
from ._checks import check_int
from .tensor import Tensor, no_grad


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
        bidirectional = [name for name, m in model.named_modules() if getattr(m, "bidirectional", False)]
        if bidirectional:
            raise ValueError(f"TBPTT: {bidirectional[0] or 'the model'} is bidirectional; truncated BPTT needs a "
                             "causal model (a reverse direction would read steps past the truncation)")
        layouts = {name: m.batch_first for name, m in model.named_modules() if hasattr(m, "batch_first")}
        wrong = [name for name, layout in layouts.items() if layout != batch_first]
        if wrong:
            raise ValueError(f"TBPTT: batch_first={batch_first}, but the model's {wrong[0]} has "
                             f"batch_first={layouts[wrong[0]]}; the time axis must be the same")
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

    def _steps(self, a, start, stop):
        return a[:, start:stop] if self.batch_first else a[start:stop]

    def step(self, x, y):
        """Train on x and its targets y (T steps on the time axis) in updates of ``k1`` steps,
        carrying the state across them and into the next call (the model is put in training
        mode). Returns the loss averaged over the trained steps (each update's loss weighted
        by its number of steps: with a mean loss, the mean over every trained position)."""
        axis = 1 if self.batch_first else 0
        if getattr(x, "ndim", 0) <= axis or getattr(y, "ndim", 0) <= axis:
            raise ValueError(f"TBPTT.step: x and y need a time axis {axis}, got {type(x).__name__} and "
                             f"{type(y).__name__} of shapes {getattr(x, 'shape', None)} and {getattr(y, 'shape', None)}")
        steps = x.shape[axis]
        if steps == 0 or y.shape[axis] != steps:
            raise ValueError(f"TBPTT.step: x and y need the same, non-zero number of steps on axis {axis}, "
                             f"got shapes {x.shape} and {y.shape}")
        self.model.train()
        total = trained_steps = 0
        for start in range(0, steps, self.k1):
            stop = min(start + self.k1, steps)
            trained = max(start, stop - self.k2)
            state = self.state  # stored detached
            if trained > start:
                with no_grad():
                    _, state = self.model(self._steps(x, start, trained), state)
            self.optimizer.zero_grad()
            output, state = self.model(self._steps(x, trained, stop), state)
            loss = self.loss_fn(output, self._steps(y, trained, stop))
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
