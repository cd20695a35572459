"""The lecture notes' other recurrent networks, each a short cell for ``nn.Recurrent``.

Every one is a few ops on ``Linear`` layers, so its gradient comes from the engine:
``JordanCell`` feeds back the output instead of the hidden state, ``DeepTransitionCell``
puts an MLP between h_{t-1} and h_t, ``NARX`` predicts a series from tapped delay lines of
its past outputs and inputs, and ``RecursiveNN`` composes a tree bottom-up with one shared
cell: a graph whose shape is each example's own.
"""

import numpy as np

from .. import ops
from ..tensor import Tensor
from .containers import ModuleList
from .layers import Embedding, Linear
from .module import Module, as_input, check_int
from .recurrent import Cell, Recurrent, param_dtype

_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu, "sigmoid": ops.sigmoid, "identity": lambda v: v}


def _activation(name, value, what="activation"):
    if value not in _ACTIVATIONS:
        raise ValueError(f"{name}: {what} must be one of {sorted(_ACTIVATIONS)}, got {value!r}")
    return value


class JordanCell(Cell):
    """A Jordan network's cell: the state is the previous *output* y_{t-1}, not h_{t-1}.

        h_t = act(W x_t + U y_{t-1} + b)
        y_t = act_y(V h_t + c)

    Args: input_size, hidden_size, output_size; ``activation`` (act, default "tanh") and
    ``output_activation`` (act_y, default "identity"), each "tanh", "relu", "sigmoid" or
    "identity"; ``dtype``. Parameters: ``W`` (Linear I -> H, holds b), ``U`` (Linear
    output -> H, no bias), ``V`` (Linear H -> output, holds c).

    ``forward(x_t, y_prev) -> (y_t, y_t)``; ``state_size`` is ``output_size``.
    """

    def __init__(self, input_size, hidden_size, output_size, activation="tanh", output_activation="identity",
                 dtype=None):
        for what, n in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            check_int("JordanCell", what, n, 1)
        self.activation = _activation("JordanCell", activation)
        self.output_activation = _activation("JordanCell", output_activation, "output_activation")
        self.W = Linear(input_size, hidden_size, dtype=dtype)
        self.U = Linear(output_size, hidden_size, bias=False, dtype=dtype)
        self.V = Linear(hidden_size, output_size, dtype=dtype)
        self.state_size = output_size

    def forward(self, x, y_prev):
        h = _ACTIVATIONS[self.activation](self.W(x) + self.U(y_prev))
        y = _ACTIVATIONS[self.output_activation](self.V(h))
        return y, y


class DeepTransitionCell(Cell):
    """A deep-transition RNN's cell (Pascanu et al. 2014, DT-RNN): an MLP of ``depth``
    layers between h_{t-1} and h_t, where a plain RNN has one.

        z_1 = act(W x_t + U h_{t-1} + b_1)
        z_l = act(V_l z_{l-1} + b_l)                          for l = 2 .. depth
        h_t = z_depth;   with ``shortcut`` (DT(S)-RNN), the last layer also sees h_{t-1}:
        h_t = act(V_L z_{L-1} + S h_{t-1} + b_L)

    Args: input_size, hidden_size, ``depth`` (>= 1; 1 is the Elman cell), ``shortcut``
    (needs depth >= 2), ``activation`` ("tanh"), ``dtype``. Parameters: ``W`` (holds b_1),
    ``U``, ``layers`` (V_2 .. V_L, each with its b_l), and ``S`` with ``shortcut``.

    ``forward(x_t, h_prev) -> (h_t, h_t)``; ``state_size`` is ``hidden_size``.
    """

    def __init__(self, input_size, hidden_size, depth=2, shortcut=False, activation="tanh", dtype=None):
        check_int("DeepTransitionCell", "input_size", input_size, 1)
        check_int("DeepTransitionCell", "hidden_size", hidden_size, 1)
        check_int("DeepTransitionCell", "depth", depth, 1)
        if shortcut and depth < 2:
            raise ValueError("DeepTransitionCell: a shortcut needs depth >= 2 (at depth 1 it is U itself)")
        self.activation, self.depth, self.shortcut = _activation("DeepTransitionCell", activation), depth, shortcut
        self.W = Linear(input_size, hidden_size, dtype=dtype)
        self.U = Linear(hidden_size, hidden_size, bias=False, dtype=dtype)
        self.layers = ModuleList([Linear(hidden_size, hidden_size, dtype=dtype) for _ in range(depth - 1)])
        self.S = Linear(hidden_size, hidden_size, bias=False, dtype=dtype) if shortcut else None
        self.state_size = hidden_size

    def forward(self, x, h_prev):
        act = _ACTIVATIONS[self.activation]
        z = act(self.W(x) + self.U(h_prev))
        for k, layer in enumerate(self.layers):
            pre = layer(z)
            if self.shortcut and k == len(self.layers) - 1:
                pre = pre + self.S(h_prev)
            z = act(pre)
        return z, z


class NARX(Module):
    """A NARX model (nonlinear autoregressive with exogenous inputs), with tapped delay lines:

        y_{n+1} = F(y_n, ..., y_{n-q+1}; u_n, ..., u_{n-q+1})

    F is an MLP, ``V tanh(W [y-line; u-line] + b) + c``. Trained open-loop (series-parallel):
    the delay line holds the *true* past outputs (teacher forcing). Predicts closed-loop
    (parallel): after the first q true outputs, it feeds back its own predictions, so its
    errors compound as a simulation's do.

    Args: input_size (of u), output_size (of y), ``delay`` q, hidden_size; ``dtype``.

    Inputs: u, y, closed_loop=False
        - **u**: (T, B, input_size), the exogenous inputs u_0 .. u_{T-1}.
        - **y**: (T', B, output_size), the outputs from y_0: closed-loop reads the first q
          (the warm-up), open-loop the first T - 1 (any further steps are ignored).
    Output: the predictions of y_q .. y_{T-1}, (T - q, B, output_size).

    It runs on ``nn.Recurrent`` with ``NARXCell``, whose state is the two delay lines and
    the last output (true or predicted) that enters the y line at the next step.
    """

    def __init__(self, input_size, output_size, delay, hidden_size, dtype=None):
        for what, n in (("input_size", input_size), ("output_size", output_size), ("delay", delay),
                        ("hidden_size", hidden_size)):
            check_int("NARX", what, n, 1)
        self.input_size, self.output_size, self.delay = input_size, output_size, delay
        self.cell = NARXCell(input_size, output_size, delay, hidden_size, dtype)
        self.unrolled = Recurrent(self.cell)

    def forward(self, u, y, closed_loop=False):
        dtype, q = param_dtype(self), self.delay
        u, y = as_input("NARX", u, dtype, "u"), as_input("NARX", y, dtype, "y")
        if u.ndim != 3 or y.ndim != 3 or u.shape[-1] != self.input_size or y.shape[-1] != self.output_size:
            raise ValueError(f"NARX: expected u (T, B, {self.input_size}) and y (T, B, {self.output_size}), got "
                             f"shapes {u.shape} and {y.shape}")
        steps, batch = u.shape[:2]
        needed = q if closed_loop else steps - 1
        if steps <= q or y.shape[1] != batch or y.shape[0] < needed:
            raise ValueError(f"NARX: expected T > delay = {q} steps of u and at least {needed} of y "
                             f"({'the warm-up' if closed_loop else 'T - 1'}) for the same batch; got shapes "
                             f"{u.shape} and {y.shape}")
        y_line, u_line = _delay_line(y, q), _delay_line(u, q)
        xs = u[q - 1:steps - 1]
        if not closed_loop:  # the true y_n rides along with u_n: the cell then shifts it in
            xs = ops.concatenate([xs, y[q - 1:steps - 1]], axis=-1)
        predictions, _ = self.unrolled(xs, (y_line, u_line, y[q - 1]))
        return predictions


def _delay_line(series, q):
    """The delay line before step n = q - 1: steps q-2 .. 0 of ``series`` (T, B, d), newest
    first, then a step of zeros that the first shift drops; (B, q*d)."""
    zeros = Tensor(np.zeros(series.shape[1:], dtype=series.dtype))
    return ops.concatenate([series[t] for t in range(q - 2, -1, -1)] + [zeros], axis=-1)


class NARXCell(Cell):
    """One step of ``NARX`` at time n. x_n is u_n (closed-loop), or u_n and the true y_n
    side by side (open-loop: input_size + output_size features).

    State: (y-line (B, q*output_size), u-line (B, q*input_size), y_n (B, output_size)),
    newest first, where y_n is the last prediction. The step shifts the true y_n (open-loop)
    or the last prediction (closed-loop) and u_n into the lines, and returns y_{n+1} =
    F(lines) as its output and as the state's last entry.
    """

    def __init__(self, input_size, output_size, delay, hidden_size, dtype=None):
        for what, n in (("input_size", input_size), ("output_size", output_size), ("delay", delay),
                        ("hidden_size", hidden_size)):
            check_int("NARXCell", what, n, 1)
        self.input_size, self.output_size, self.delay = input_size, output_size, delay
        self.state_size = (delay * output_size, delay * input_size, output_size)
        self.W = Linear(delay * (input_size + output_size), hidden_size, dtype=dtype)
        self.V = Linear(hidden_size, output_size, dtype=dtype)

    def forward(self, x, state):
        y_line, u_line, y_last = state
        width = x.shape[-1]
        if width not in (self.input_size, self.input_size + self.output_size):
            raise ValueError(f"NARXCell: x_t must have {self.input_size} features (u_n, closed-loop) or "
                             f"{self.input_size + self.output_size} (u_n and y_n, open-loop), got {width}")
        u_n = x[:, :self.input_size]
        y_n = y_last if width == self.input_size else x[:, self.input_size:]
        y_line = ops.concatenate([y_n, y_line[:, :-self.output_size]], axis=-1)
        u_line = ops.concatenate([u_n, u_line[:, :-self.input_size]], axis=-1)
        y_next = self.V(ops.tanh(self.W(ops.concatenate([y_line, u_line], axis=-1))))
        return y_next, (y_line, u_line, y_next)


class RecursiveNN(Module):
    """A recursive (tree) network: one shared cell composes children into their parent,
    bottom-up, to a vector for the whole tree (Socher et al. 2011's recursive autoencoder
    shape, without the decoder).

        leaf:  h = E[token]
        node:  h = act(W [h_left; h_right] + b)

    A tree is a token id (a leaf) or a pair (left, right) of trees. Each tree's graph has
    that tree's shape: this is what a define-by-run engine is for; ``backward`` follows it.

    Args: num_tokens, hidden_size; ``activation`` ("tanh"); ``dtype``.
    ``forward(trees)`` takes a list of B trees and returns their root vectors, (B, H).
    """

    def __init__(self, num_tokens, hidden_size, activation="tanh", dtype=None):
        check_int("RecursiveNN", "num_tokens", num_tokens, 1)
        check_int("RecursiveNN", "hidden_size", hidden_size, 1)
        self.activation = _activation("RecursiveNN", activation)
        self.num_tokens = num_tokens
        self.embedding = Embedding(num_tokens, hidden_size, dtype=dtype)
        self.compose = Linear(2 * hidden_size, hidden_size, dtype=dtype)

    def forward(self, trees):
        if not isinstance(trees, list) or not trees:
            hint = "; for one tree, pass [tree]" if isinstance(trees, (tuple, int)) else ""
            raise TypeError(f"RecursiveNN: expected a non-empty list of trees, got {type(trees).__name__}{hint}")
        return ops.concatenate([self.encode(tree) for tree in trees], axis=0)

    def encode(self, tree):
        """One tree's root vector, (1, H). Iterative (an explicit stack, children before their
        parent, left before right), so a tree of any depth runs, as the engine's backward does."""
        act, todo, done = _ACTIVATIONS[self.activation], [(tree, False)], []
        while todo:
            node, children_done = todo.pop()
            if children_done:
                right = done.pop()
                done.append(act(self.compose(ops.concatenate([done.pop(), right], axis=-1))))
            elif isinstance(node, (int, np.integer)) and not isinstance(node, bool):
                if not 0 <= node < self.num_tokens:
                    raise ValueError(f"RecursiveNN: a leaf must be a token id in [0, {self.num_tokens}), got {node}")
                done.append(self.embedding(np.array([node])))
            elif isinstance(node, (tuple, list)) and len(node) == 2:
                todo += [(node, True), (node[1], False), (node[0], False)]
            else:
                raise TypeError(f"RecursiveNN: a tree is a token id or a pair (left, right), got {node!r}")
        return done[0]
