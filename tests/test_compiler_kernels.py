"""tinyseq_jit.compiler's kernels (issue 23): a cell compiled equals the same cell on the graph.

Every test runs ONE cell object twice, ``nn.Recurrent(cell, backend="graph")`` and
``backend="numba"`` (the ``.grad`` of its parameters cleared in between), and compares the
outputs, the final states and every gradient (x, each given state tensor, each parameter):
to 1e-10 in float64, 1e-4 in float32. That holds for the whole gallery, with lengths (NaN in
the padded steps), reversed, batch first, packed, bidirectional, stacked with variational
dropout, in truncated BPTT and in the gradient telemetry. Then what compiling must not
change (state dicts, dtypes), the backend rules ("auto" falls back and says why, "numba"
refuses with the op and the line), compiling once per cell structure, and the generated
source. Each new cell structure costs seconds of Numba compilation: the cells are made once
(``cell``) and shared.
"""

import inspect
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyseq as ts
from tinyseq import Tensor, backend, nn, ops
from tinyseq.bptt import TBPTT, evaluate, grad_norms_through_time, truncation_bias
from tinyseq.nn import Parameter
from tinyseq.nn._fused import CompiledRecurrence
from tinyseq.nn.utils.rnn import pack_padded_sequence
from tinyseq_jit.compiler import CompileError, cache_key, compile_cell
from tinyseq_jit.compiler.kernels import cache_dir

from helpers import count_nodes, load_example, weighted_sum

gallery = load_example("cell_gallery")

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOLERANCE = {F64: 1e-10, F32: 1e-4}  # rtol and atol
I, T, B = 3, 6, 5
LENGTHS = np.array([6, 3, 1, 6, 4])


class Readout(nn.Cell):
    """A cell whose output is not its state, and narrower: h = tanh(W x + U h), y = sigmoid(V h)."""

    def __init__(self, inputs, hidden, outputs, dtype=np.float64):
        self.state_size = hidden
        self.W = nn.Linear(inputs, hidden, dtype=dtype)
        self.U = nn.Linear(hidden, hidden, bias=False, dtype=dtype)
        self.V = nn.Linear(hidden, outputs, dtype=dtype)

    def forward(self, x, h):
        h = (self.W(x) + self.U(h)).tanh()
        return self.V(h).sigmoid(), h


class EveryOp(nn.Cell):
    """A step made of every kind of op the compiler takes: chunk, split, slices and cat of
    features, sum over them, log, exp, abs, neg, division, numbers, a constant array, where
    on a comparison and on a constant mask, a tuple state and a parameter vector."""

    def __init__(self, inputs, hidden, dtype=np.float64):
        self.state_size, self.hidden = (hidden, hidden), hidden
        self.W = nn.Linear(inputs, 2 * hidden, dtype=dtype)
        self.U = nn.Linear(hidden, 2 * hidden, bias=False, dtype=dtype)
        self.scale = Parameter(np.linspace(0.5, 1.5, hidden).astype(dtype))
        self.mask = np.arange(hidden) % 2 == 0

    def forward(self, x, state):
        h, m = state
        a, b = ops.chunk(self.W(x) + self.U(h), 2, axis=-1)
        p = ((a * a).sum(axis=-1, keepdims=True) + 1.0).log() - (-b).exp() / (1.0 + b.abs())
        q = ops.where(a > 0.1, p, a * 0.5)
        r = ops.where(self.mask, q, m * Tensor(np.arange(len(self.mask), dtype=m.dtype)))
        u = ops.cat([r[:, 2:], r[:, :2]], -1)
        h = (u * self.scale - m / (2.0 + h * h)).tanh()
        m = 0.5 * m + 0.5 * ops.split(ops.cat([h, q], -1), [self.hidden] * 2, axis=-1)[1].sigmoid()
        return h, (h, m)


class Unusual(nn.Cell):
    """Shapes of step the gallery lacks: one weight in the hoisted product over x and in a
    per-step product over h; one Parameter in two Linears (tied); x read point-wise, and a
    one-column slice of it broadcast; a state carried unchanged (k) and one that counts
    steps (n, one column); the output is the state the step started from."""

    def __init__(self, size, dtype=np.float64):
        self.state_size = (size, size, 1)
        self.W = Parameter(np.random.default_rng(0).uniform(-0.6, 0.6, (size, size)).astype(dtype))
        self.U = nn.Linear(size, size, bias=False, dtype=dtype)
        self.V = nn.Linear(size, size, dtype=dtype)
        self.V.weight = self.U.weight

    def forward(self, x, state):
        h, k, n = state
        n = n + 1.0
        a = (x @ self.W.T + self.U(h) * k).tanh()
        b = self.V(a) + h @ self.W.T
        new = (b / n).tanh() * x.sigmoid() + x[:, :1] * h
        return h, (new, k, n)


def _from_gallery(name, hidden):
    return lambda dtype: gallery.GALLERY[name](I, hidden, dtype=dtype)


#: name -> make(dtype): every cell takes I features (NARX open loop: u_n (2) and y_n (1))
CELLS = {name: _from_gallery(name, 5 if name in ("lstm", "lstm_peephole", "gru_classic", "mirnn") else 4)
         for name in gallery.GALLERY}
CELLS.update({
    "jordan": lambda dtype: nn.JordanCell(I, 5, 4, dtype=dtype),
    "deep_transition": lambda dtype: nn.DeepTransitionCell(I, 4, depth=3, dtype=dtype),
    "deep_transition_shortcut": lambda dtype: nn.DeepTransitionCell(I, 5, depth=2, shortcut=True, dtype=dtype),
    "narx_open_loop": lambda dtype: nn.NARXCell(2, 1, delay=2, hidden_size=4, dtype=dtype),
    "readout": lambda dtype: Readout(I, 4, I, dtype=dtype),
    "every_op": lambda dtype: EveryOp(I, 4, dtype=dtype),
    "unusual": lambda dtype: Unusual(I, dtype=dtype),
})

_cells = {}


def cell(name, dtype=F64):
    """The one cell of ``CELLS[name]`` in ``dtype`` that the tests share (made once)."""
    key = (name, np.dtype(dtype))
    if key not in _cells:
        _cells[key] = CELLS[name](dtype)
    return _cells[key]


# ---------------------------------------------------------------- running both backends


def parts(state):
    """The tensors of a state, final state or nest of them (Bidirectional, Stacked), in order."""
    if state is None:
        return []
    if isinstance(state, Tensor):
        return [state]
    return [t for s in state for t in parts(s)]


def leaves(state):
    """``state`` (arrays, nested tuples) as leaf Tensors that require grad, in its structure."""
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        return Tensor(state.copy(), requires_grad=True)
    return tuple(leaves(s) for s in state)


def random_state(owner, batch, rng, dtype=F64):
    """A random initial state for ``owner``'s cell sizes: an array or a tuple of them."""
    sizes = owner.state_size
    many = isinstance(sizes, tuple)
    states = tuple(rng.standard_normal((batch, n)).astype(dtype) for n in (sizes if many else (sizes,)))
    return states if many else states[0]


def padded(rng, lengths, dtype=F64, steps=T, features=I):
    """x (T, B, features) with NaN in every step past a sequence's length."""
    x = rng.standard_normal((steps, len(lengths), features)).astype(dtype)
    x[np.arange(steps)[:, None] >= np.asarray(lengths)[None, :]] = np.nan
    return x


def run(layer, x, state=None, lengths=None, packed=False):
    """Forward and backward of a weighted sum of the output and every final state.

    Returns ({name: array} of the output, the final states and the gradients of x, of each
    given state tensor and of each parameter; a gradient that never arrived reads zeros),
    and how many ``CompiledRecurrence`` nodes the graph holds.
    """
    params = dict(layer.named_parameters())
    for p in params.values():
        p.grad = None
    xt = Tensor(x.copy(), requires_grad=True)
    given = leaves(state)
    if packed:
        out, final = layer(pack_padded_sequence(xt, lengths, enforce_sorted=False), given)
        out = out.data
    else:
        out, final = layer(xt, given, lengths=lengths)
    finals = parts(final)
    compiled = count_nodes(out, CompiledRecurrence)  # before backward frees the graph
    weighted_sum([out, *finals]).backward()
    result = {"out": out.data}
    result.update((f"final {k}", f.data) for k, f in enumerate(finals))
    inputs = {"x": xt, **{f"state {k}": s for k, s in enumerate(parts(given))}, **params}
    result.update((f"d {name}", np.zeros(t.shape, t.dtype) if t.grad is None else t.grad.data.copy())
                  for name, t in inputs.items())
    return result, compiled


def assert_same(graph, fused, dtype=F64, what=""):
    """Two ``run`` results agree: the same names, dtypes and shapes, values to ``TOLERANCE`` (a NaN
    in both, as from a padded step, fails)."""
    assert list(fused) == list(graph), what
    tol = TOLERANCE[np.dtype(dtype)]
    for name, expected in graph.items():
        got = fused[name]
        assert got.dtype == expected.dtype == dtype, f"{what}: {name} is {got.dtype}, the graph's {expected.dtype}"
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, equal_nan=False, err_msg=f"{what}: {name}")


def both(make, x, state=None, lengths=None, packed=False, compiled=1, dtype=F64, what=""):
    """``make(backend)`` run on "graph" and on "numba" (see ``run``): asserts they agree and that
    the compiled run held ``compiled`` compiled nodes (the graph's none); returns the compiled result."""
    graph, on_graph = run(make("graph"), x, state, lengths, packed)
    fused, on_numba = run(make("numba"), x, state, lengths, packed)
    assert (on_graph, on_numba) == (0, compiled), what
    assert_same(graph, fused, dtype, what)
    return fused


def recurrent(owner, **options):
    """make(backend) -> ``nn.Recurrent(owner, backend=..., **options)``, for ``both``."""
    return lambda name: nn.Recurrent(owner, backend=name, **options)


def with_backend(module, name):
    """``module`` with every ``Recurrent`` inside it set to run on ``name``."""
    for m in module.modules():
        if isinstance(m, nn.Recurrent):
            m.backend = name
    return module


# ---------------------------------------------------------------- 1. the gallery


@pytest.mark.parametrize("name", list(CELLS))
def test_every_cell_compiled_equals_the_graph_in_float64(name):
    rng = np.random.default_rng(len(name))
    owner = cell(name)
    both(recurrent(owner), rng.standard_normal((T, B, I)), what=f"{name}, zero state")
    state = random_state(owner, B, rng)
    both(recurrent(owner), padded(rng, LENGTHS), state, LENGTHS, what=f"{name}, a state, lengths")
    both(recurrent(owner, reverse=True), padded(rng, LENGTHS), state, LENGTHS, what=f"{name}, reversed, lengths")


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_cells_compiled_in_float32_equal_the_graph(name):
    rng = np.random.default_rng(0)
    owner = cell(name, F32)
    state = random_state(owner, B, rng, F32)
    for reverse in (False, True):
        fused = both(recurrent(owner, reverse=reverse), padded(rng, LENGTHS, F32), state, LENGTHS, dtype=F32,
                     what=f"{name}, reverse={reverse}")
    assert compile_cell(owner, I).program.dtype == F32
    assert fused["out"].dtype == F32


@st.composite
def runs(draw):
    """A shared cell and a batch for it: sizes, lengths (or none), reverse, batch_first, a state (or none)."""
    name = draw(st.sampled_from(["lstm_peephole", "gru_classic", "mirnn", "narx_open_loop", "every_op", "unusual"]))
    steps, batch = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch).map(np.array))
    return name, steps, batch, lengths, draw(st.booleans()), draw(st.booleans()), draw(st.booleans())


@given(runs(), st.integers(0, 2**16))
def test_drawn_runs_compiled_equal_the_graph(drawn, seed):
    name, steps, batch, lengths, reverse, batch_first, given_state = drawn
    rng = np.random.default_rng(seed)
    owner = cell(name)
    x = padded(rng, np.full(batch, steps) if lengths is None else lengths, steps=steps)
    state = random_state(owner, batch, rng) if given_state else None
    both(recurrent(owner, reverse=reverse, batch_first=batch_first), x.transpose(1, 0, 2) if batch_first else x,
         state, lengths, what=str(drawn))


class RowNorm(nn.Cell):
    """h = tanh(a / (1 + |a|^2)), the squared norm summed without keepdims and reshaped back."""

    def __init__(self, inputs, hidden):
        self.state_size = hidden
        self.W = nn.Linear(inputs, hidden, dtype=np.float64)

    def forward(self, x, h):
        a = self.W(x) + h
        n = (a * a).sum(axis=-1).reshape((-1, 1))
        h = (a / (1.0 + n)).tanh()
        return h, h


def test_a_reshape_that_keeps_the_batch_axis_compiles():
    # CompileError lists "reshape that keeps the batch axis" as supported, and trace() takes
    # it, but schedule() refuses every reshape of a batched value.
    rng = np.random.default_rng(20)
    owner = RowNorm(I, 4)
    both(recurrent(owner), padded(rng, LENGTHS), random_state(owner, B, rng), LENGTHS, what="reshape")


# ---------------------------------------------------------------- 2. lengths, reverse, layouts, packing


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", ["lstm", "readout"])
def test_padded_steps_output_zeros_and_each_final_is_its_sequences_last_state(name, reverse):
    rng = np.random.default_rng(1)
    owner = cell(name)
    x, state = padded(rng, LENGTHS), random_state(owner, B, rng)
    fused = both(recurrent(owner, reverse=reverse), x, state, LENGTHS, what=f"{name}, reverse={reverse}")
    layer = nn.Recurrent(owner, reverse=reverse, backend="numba")
    finals = [v for k, v in fused.items() if k.startswith("final")]
    for b, length in enumerate(LENGTHS):
        assert np.all(fused["out"][length:, b] == 0), f"sequence {b}: outputs past its end"
        assert np.all(fused["d x"][length:, b] == 0), f"sequence {b}: gradient of its padded steps"
        alone_state = tuple(s[b:b + 1] for s in state) if isinstance(state, tuple) else state[b:b + 1]
        with ts.no_grad():
            out, final = layer(x[:length, b:b + 1], alone_state)
        tol = TOLERANCE[F64]
        np.testing.assert_allclose(fused["out"][:length, b], out.data[:, 0], rtol=tol, atol=tol)
        for whole, alone in zip(finals, parts(final)):
            np.testing.assert_allclose(whole[b], alone.data[0], rtol=tol, atol=tol, err_msg=f"sequence {b}")
    assert np.isfinite(fused["d x"]).all()


class NaNEmpty:
    """NumPy, but ``np.empty`` gives memory full of NaN: its contents are unspecified, and NaN
    is what memory a padded batch freed (NaN at its padded steps) often holds."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float):
        return np.full(shape, np.nan, dtype)


def test_padded_steps_leave_no_unwritten_memory_in_the_weight_gradients(monkeypatch):
    # The saved left operand of a per-step product that is not a state (MGU's t4 = f * h) is
    # np.empty and left unwritten at padded steps; the weight gradient after the loop,
    # dot(t4.T, d_t4_w), reads it there: 0 * NaN = NaN.
    rng = np.random.default_rng(21)
    owner = cell("mgu")
    x = padded(rng, LENGTHS)
    run(nn.Recurrent(owner, backend="numba"), x, None, LENGTHS)  # compiled or loaded before NumPy is swapped
    monkeypatch.setattr(compile_cell(owner, I, F64).module, "np", NaNEmpty())
    both(recurrent(owner), x, None, LENGTHS, what="np.empty full of NaN")


def test_batch_first_compiled_equals_the_graph_and_the_time_first_run():
    rng = np.random.default_rng(2)
    owner = cell("gru")
    x = padded(rng, LENGTHS)
    state = random_state(owner, B, rng)
    first = both(recurrent(owner, batch_first=True), x.transpose(1, 0, 2).copy(), state, LENGTHS, what="batch_first")
    time_first, _ = run(nn.Recurrent(owner, backend="numba"), x, state, LENGTHS)
    tol = TOLERANCE[F64]
    np.testing.assert_allclose(first["out"], time_first["out"].transpose(1, 0, 2), rtol=tol, atol=tol)
    np.testing.assert_allclose(first["final 0"], time_first["final 0"], rtol=tol, atol=tol)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_packed_sequence_compiled_equals_the_graph_and_lengths(reverse):
    rng = np.random.default_rng(3)
    owner = cell("mgu")
    x = rng.standard_normal((T, B, I))
    packed = both(recurrent(owner, reverse=reverse), x, None, LENGTHS, packed=True, what="packed")
    unpacked, _ = run(nn.Recurrent(owner, reverse=reverse, backend="numba"), x, None, LENGTHS)
    order = np.argsort(-LENGTHS, kind="stable")
    rows = [unpacked["out"][t, b] for t in range(T) for b in order if t < LENGTHS[b]]
    tol = TOLERANCE[F64]
    np.testing.assert_allclose(packed["out"], np.stack(rows), rtol=tol, atol=tol)
    np.testing.assert_allclose(packed["final 0"], unpacked["final 0"], rtol=tol, atol=tol)


# ---------------------------------------------------------------- 3. states, outputs, gradcheck


def test_a_given_tuple_state_gets_its_gradients_compiled_as_on_the_graph():
    rng = np.random.default_rng(4)
    owner = cell("lstm")
    fused = both(recurrent(owner), rng.standard_normal((T, B, I)), random_state(owner, B, rng), what="(h0, c0)")
    assert fused["d state 0"].shape == fused["d state 1"].shape == (B, 5)
    assert np.abs(fused["d state 0"]).min() > 0 and np.abs(fused["d state 1"]).min() > 0


@pytest.mark.parametrize("name, width", [("readout", I), ("jordan", 4)])
def test_an_output_other_than_the_hidden_state_compiles(name, width):
    rng = np.random.default_rng(5)
    owner = cell(name)
    fused = both(recurrent(owner), rng.standard_normal((T, B, I)), random_state(owner, B, rng), what=name)
    assert fused["out"].shape == (T, B, width)
    if name == "readout":  # y = sigmoid(V h), the state h: another width
        assert fused["final 0"].shape == (B, 4)
    else:  # Jordan's state is its output y, not its hidden layer
        np.testing.assert_array_equal(fused["final 0"], fused["out"][-1])


def test_a_compiled_layer_passes_gradcheck_with_lengths():
    rng = np.random.default_rng(6)
    owner = cell("elman")
    layer = nn.Recurrent(owner, reverse=True, backend="numba")
    lengths = np.array([3, 1])
    x, h0 = leaves((rng.standard_normal((3, 2, I)), rng.standard_normal((2, 4))))

    def f(x, h0, *params):
        out, h_n = layer(x, h0, lengths=lengths)
        return ops.cat([out.reshape(-1), h_n.reshape(-1)], 0)

    assert ts.gradcheck(f, [x, h0, *owner.parameters()], mode="full")
    assert count_nodes(f(x, h0), CompiledRecurrence) == 1  # what gradcheck checked ran compiled


# ---------------------------------------------------------------- 4. layers built on Recurrent, and tinyseq.bptt


@pytest.mark.parametrize("packed", [False, True])
def test_bidirectional_compiled_equals_the_graph(packed):
    rng = np.random.default_rng(7)
    forward_cell, backward_cell = cell("gru"), gallery.GRU(I, 4, dtype=F64, seed=3)
    state = (random_state(forward_cell, B, rng), random_state(backward_cell, B, rng))
    x = rng.standard_normal((T, B, I)) if packed else padded(rng, LENGTHS)
    fused = both(lambda name: with_backend(nn.Bidirectional(forward_cell, backward_cell), name), x, state, LENGTHS,
                 packed, compiled=2, what="Bidirectional")
    assert fused["out"].shape == ((LENGTHS.sum(), 8) if packed else (T, B, 8))


def test_stacked_with_variational_dropout_compiled_equals_the_graph():
    rng = np.random.default_rng(8)
    bottom, top = cell("readout"), cell("lstm")

    def stacked(name, dropout=0.5):
        layers = [nn.Recurrent(bottom, backend=name), nn.Recurrent(top, backend=name)]
        return nn.Stacked(layers, dropout=dropout, variational=True, generator=np.random.default_rng(9))

    x = padded(rng, LENGTHS)
    fused = both(stacked, x, None, LENGTHS, compiled=2, what="Stacked")
    undropped, _ = run(stacked("numba", dropout=0.0), x, None, LENGTHS)
    assert not np.allclose(fused["out"], undropped["out"])  # the masks did drop something


def test_one_cell_run_twice_in_one_graph_sums_both_gradients_as_the_graph():
    rng = np.random.default_rng(18)
    owner = cell("readout")  # I features in, I out: it can read its own output
    x = padded(rng, LENGTHS)
    state = (random_state(owner, B, rng), random_state(owner, B, rng))
    fused = both(lambda name: nn.Stacked([nn.Recurrent(owner, backend=name)] * 2), x, state, LENGTHS, compiled=2,
                 what="one cell twice")
    assert np.abs(fused["d state 0"]).max() > 0 and np.abs(fused["d state 1"]).max() > 0


def test_an_input_that_needs_no_gradient_compiled_equals_the_graph():
    rng = np.random.default_rng(19)
    owner = cell("lstm_coupled")
    x = padded(rng, LENGTHS)
    grads = []
    for name in ("graph", "numba"):
        owner.zero_grad()
        out, (h, c) = nn.Recurrent(owner, backend=name)(x, lengths=LENGTHS)
        weighted_sum([out, h, c]).backward()
        grads.append({k: p.grad.data for k, p in owner.named_parameters()})
    for k, expected in grads[0].items():
        np.testing.assert_allclose(grads[1][k], expected, rtol=1e-10, atol=1e-10, err_msg=k)


def test_truncated_bptt_trains_the_same_compiled_and_on_the_graph():
    rng = np.random.default_rng(10)
    owner = cell("lstm")
    start = owner.state_dict()
    xs, ys = rng.standard_normal((2, 8, B, I)), rng.standard_normal((2, 8, B, 5))

    def train(name):
        model = nn.Recurrent(owner, backend=name)
        tbptt = TBPTT(model, lambda out, y: ((out - y) ** 2).mean(), ts.optim.SGD(model.parameters(), lr=0.5), k1=3,
                      k2=2)
        losses = [tbptt.step(x, y) for x, y in zip(xs, ys)]  # the state carried from one call to the next
        return losses, tbptt.state, owner.state_dict()

    try:
        graph = train("graph")
        owner.load_state_dict(start)
        fused = train("numba")
    finally:
        owner.load_state_dict(start)
    tol = TOLERANCE[F64]
    np.testing.assert_allclose(fused[0], graph[0], rtol=tol, atol=tol)
    for got, expected in zip(parts(fused[1]), parts(graph[1])):
        np.testing.assert_allclose(got.data, expected.data, rtol=tol, atol=tol)
    for name, expected in graph[2].items():
        assert not np.allclose(expected, start[name])
        np.testing.assert_allclose(fused[2][name], expected, rtol=tol, atol=tol, err_msg=name)


def test_truncation_bias_and_evaluate_are_the_same_compiled_and_on_the_graph():
    rng = np.random.default_rng(23)
    owner = cell("gru_classic")
    x, y = rng.standard_normal((8, B, I)), rng.standard_normal((8, B, 5))

    def loss(out, target):
        return ((out - target) ** 2).mean()

    results = []
    for name in ("graph", "numba"):
        model = nn.Recurrent(owner, backend=name)
        biases = truncation_bias(model, loss, (x, y), [1, 3, 8])
        mean = evaluate(model, loss, [(x[:4], y[:4]), (x[4:], y[4:])])  # the state carried across the two
        results.append(([(b.cosine, b.relative_error) for b in biases], mean))
    graph, fused = results
    assert graph[0][-1] == pytest.approx((1.0, 0.0)) and graph[0][0][1] > 0
    np.testing.assert_allclose(fused[0], graph[0], rtol=1e-10, atol=1e-10)
    assert fused[1] == pytest.approx(graph[1], rel=1e-10)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradient_norms_through_time_are_the_same_compiled_and_on_the_graph(reverse):
    rng = np.random.default_rng(11)
    owner = cell("lstm")
    owner.zero_grad()
    x = padded(rng, LENGTHS)

    def loss(out, state):
        return weighted_sum([out, *state])

    flows = [grad_norms_through_time(nn.Recurrent(owner, reverse=reverse, backend=name), x, loss, lengths=LENGTHS)
             for name in ("graph", "numba")]
    tol = TOLERANCE[F64]
    for what in ("h", "c"):
        graph, fused = getattr(flows[0], what), getattr(flows[1], what)
        assert graph.shape == (1, T, B) and np.count_nonzero(graph) == LENGTHS.sum()
        np.testing.assert_allclose(fused, graph, rtol=tol, atol=tol, err_msg=what)
    assert flows[1].loss == pytest.approx(flows[0].loss, rel=tol)
    assert all(p.grad is None for p in owner.parameters())


def test_gradient_norms_of_a_bare_cell_run_compiled_unless_the_graph_is_chosen():
    rng = np.random.default_rng(12)
    owner = cell("mgu")
    x = rng.standard_normal((T, B, I))
    with backend.use_backend("auto"):
        fused = grad_norms_through_time(owner, x)
    with backend.use_backend("graph"):
        graph = grad_norms_through_time(owner, x)
    assert graph.c is None and fused.c is None
    np.testing.assert_allclose(fused.h, graph.h, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- 5. what compiling leaves alone


def test_compiling_leaves_the_state_dict_as_it_is():
    rng = np.random.default_rng(13)
    owner = cell("lstm_peephole")
    before = owner.state_dict()
    graph, fused = nn.Recurrent(owner, backend="graph"), nn.Recurrent(owner, backend="numba")
    run(fused, rng.standard_normal((T, B, I)))
    assert list(fused.state_dict()) == list(graph.state_dict()) == [f"cell.{k}" for k in before]
    assert list(owner.state_dict()) == list(before)
    for name, array in before.items():
        np.testing.assert_array_equal(owner.state_dict()[name], array)
        np.testing.assert_array_equal(fused.state_dict()[f"cell.{name}"], array)
    fused.load_state_dict(graph.state_dict())  # and a compiled layer loads the graph layer's


def test_a_float32_cell_moved_to_float64_compiles_in_float64():
    rng = np.random.default_rng(14)
    owner = CELLS["mgu"](F32)  # its own: .to changes it
    layer = nn.Recurrent(owner, backend="numba").to(np.float64)
    assert all(p.dtype == F64 for p in owner.parameters())
    fused = both(recurrent(owner), padded(rng, LENGTHS), random_state(owner, B, rng), LENGTHS, what="to(float64)")
    assert fused["out"].dtype == F64
    assert layer.kernel_source(I) == compile_cell(owner, I, F64).source
    assert compile_cell(owner, I).program.dtype == F64


# ---------------------------------------------------------------- 6. backends


class Refused(nn.Cell):
    """A cell whose forward does one thing the compiler refuses, chosen by ``how``."""

    def __init__(self, how):
        self.state_size, self.how = 4, how
        self.W = nn.Linear(I, 4, dtype=F64)

    def forward(self, x, h):
        a = self.W(x) + h
        if self.how == "maximum":
            a = ops.maximum(a, h)  # refused: maximum
        if self.how == "if":
            if a[:, :1].sum(axis=-1) > 0:  # refused: if
                a = a * 2
        if self.how == "float":
            a = a * float(self.W.bias[0])  # refused: float
        if self.how == "in_place":
            a.mul_(2.0)  # refused: in_place
        h = a.tanh()
        return h, h


def _line(marker):
    """The line of ``Refused.forward`` that ends in ``marker``."""
    lines, first = inspect.getsourcelines(Refused.forward)
    return first + next(k for k, line in enumerate(lines) if line.rstrip().endswith(marker))


def _names_the_line(message, how):
    return f"{__file__}:{_line(f'# refused: {how}')}:" in message and "Refused.forward cannot be compiled" in message


def test_auto_compiles_what_compiles_and_runs_the_rest_on_the_graph_saying_why():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((T, B, I))
    with backend.use_backend("auto"):
        compiled = nn.Recurrent(cell("elman"))
        assert run(compiled, x)[1] == 1 and compiled.fallback_reason is None
        owner = Refused("maximum")
        fallen = nn.Recurrent(owner)
        result, count = run(fallen, x)
    assert count == 0
    assert "the op Maximum is not supported" in fallen.fallback_reason
    assert _names_the_line(fallen.fallback_reason, "maximum"), fallen.fallback_reason
    assert_same(run(nn.Recurrent(owner, backend="graph"), x)[0], result, what="the fallback is the graph")


@pytest.mark.parametrize("how, words", [
    ("maximum", "the op Maximum is not supported"),
    ("if", "bool() reads a tensor's value"),
    ("float", "float() reads a tensor's value"),
    ("in_place", "in-place change mul_"),
])
def test_numba_refuses_what_does_not_compile_naming_the_construct_and_line(how, words):
    layer = nn.Recurrent(Refused(how), backend="numba")
    with pytest.raises(CompileError) as info:
        layer(np.zeros((T, B, I)))
    message = str(info.value)
    assert words in message and _names_the_line(message, how), message
    with pytest.raises(CompileError, match=re.escape(words)):
        layer.kernel_source()


def test_cuda_without_a_gpu_is_a_clear_error():
    """(On the simulator, tests/test_compiler_cuda.py runs compiled cells on backend="cuda".)"""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator runs kernels: tests/test_compiler_cuda.py")
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is here: tests/test_compiler_cuda.py")
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available"):
        nn.Recurrent(cell("elman"), backend="cuda")(np.zeros((T, B, I)))


def test_use_backend_graph_runs_an_auto_layer_on_the_graph():
    rng = np.random.default_rng(16)
    x = rng.standard_normal((T, B, I))
    layer = nn.Recurrent(cell("mgu"))
    with backend.use_backend("graph"):
        graph, on_graph = run(layer, x)
    with backend.use_backend("auto"):
        fused, on_numba = run(layer, x)
    assert (on_graph, on_numba) == (0, 1) and layer.fallback_reason is None
    assert_same(graph, fused, what="use_backend")


# ---------------------------------------------------------------- 7. compiled once


def test_a_cell_compiles_once_for_every_length_batch_and_instance():
    rng = np.random.default_rng(17)
    owner = CELLS["mgu"](F64)  # fresh: its modules never switched mode (see the test below)
    kernel = compile_cell(owner, I, F64)
    layer = nn.Recurrent(owner, backend="numba")
    for steps, batch, reverse in [(10, 5, False), (1000, 5, False), (10, 2, True), (1, 3, False)]:
        layer.reverse = reverse
        lengths = rng.integers(1, steps + 1, batch)
        run(layer, rng.standard_normal((steps, batch, I)), random_state(owner, batch, rng), lengths)
        assert compile_cell(owner, I, F64) is kernel
    signatures = (kernel.module._forward.signatures, kernel.module._backward.signatures)
    assert [len(s) for s in signatures] == [1, 1], signatures
    assert compile_cell(CELLS["mgu"](F64), I, F64) is kernel  # another cell of the same class and sizes
    assert compile_cell(gallery.MGU(I, 4, dtype=F64, seed=5), I, F64).module is kernel.module


def test_cells_that_differ_in_a_constant_array_each_run_their_own():
    # cache_key leaves array attributes out, so the second cell gets the kernel traced from
    # the first, with the first one's mask baked in as a constant.
    rng = np.random.default_rng(22)
    first, second = CELLS["every_op"](F64), CELLS["every_op"](F64)
    second.mask = ~first.mask
    x = rng.standard_normal((T, B, I))
    both(recurrent(first), x, what="the first cell")
    both(recurrent(second), x, what="the second cell, its mask the first's negation")


def test_a_cell_put_in_the_training_mode_it_is_in_keeps_its_kernel():
    owner, again = CELLS["mgu"](F64), CELLS["mgu"](F64)
    again.train()  # it was training already: nothing about its step changed
    assert cache_key(again, I, F64) == cache_key(owner, I, F64)
    assert compile_cell(again, I, F64) is compile_cell(owner, I, F64)


# ---------------------------------------------------------------- 8. the generated source


def test_the_kernel_source_reads_as_the_cell_and_is_the_cached_file():
    owner = cell("mgu")
    layer = nn.Recurrent(owner, backend="numba")
    layer(np.zeros((2, 1, I)))
    source = layer.kernel_source()
    kernel = compile_cell(owner, I, F64)
    assert source == kernel.source
    assert os.path.dirname(kernel.path) == cache_dir()
    with open(kernel.path, encoding="utf-8") as f:
        assert f.read() == source
    for words in ("f[t, b, j] = sigmoid(", "n[t, b, j] = tanh(", "h_1[b, j] = ", "d_h_1", "d_n_bias"):
        assert words in source, words
    lines, first = inspect.getsourcelines(gallery.MGU.forward)
    cell_lines = {first + k for k, line in enumerate(lines) if line.strip().startswith(("f =", "n =", "h ="))}
    assert cell_lines == {op.line for op in kernel.program.ops}
    code = source.split('"""', 2)[2]
    for line in sorted(cell_lines):
        assert code.count(f"# line {line}: ") >= 2, line  # in the forward and in the backward
    for op in kernel.program.ops:  # the step as the docstring shows it: one line per op
        assert source.count(f"\n        {op.name} = {op.expression()}  # line {op.line}: ") == 1, op.name


# ---------------------------------------------------------------- 9. what a call costs besides the kernels


@pytest.mark.parametrize("name", ["lstm", "mgu", "unusual"])
def test_a_weight_used_transposed_is_taken_as_the_parameter_itself(name):
    # x @ W.T: the generated module transposes W itself and gives W the gradient untransposed
    # (one product, several products' rows stacked, W.T in two products), so a call records
    # no engine op between the parameters and the compiled node (issue 24, S7's cost per call).
    owner = cell(name)
    kernel = compile_cell(owner, I, F64)
    assert set(kernel.module.WEIGHTS) == {n for n, _ in owner.named_parameters()}
    assert "transpose" in {op.kind for op in kernel.program.ops}
    sizes = owner.state_size if isinstance(owner.state_size, tuple) else (owner.state_size,)
    x = Tensor(np.random.default_rng(23).standard_normal((T, B, I)), requires_grad=True)
    out, final = nn.Recurrent(owner, backend="numba")(x)
    assert count_nodes(out, CompiledRecurrence) == 1
    assert count_nodes(out, ops.Permute) == count_nodes(out, ops.GetItem) - 1 == 0  # out is the one slice
    assert len(parts(final)) == len(sizes)


def test_weight_values_runs_only_the_ops_the_kernels_read():
    owner = cell("gru_classic")  # h @ weight_hh[:2H].T, (r * h) @ weight_hh[2H:].T, bias_hh's slices
    program = compile_cell(owner, I, F64).program
    params = dict(owner.named_parameters())
    made = [op.name for op in program.ops if not op.batched]
    wanted = next(op.name for op in program.ops if op.kind == "transpose" and op.inputs[0] != "weight_ih"
                  and program.op(op.inputs[0]).kind == "getitem")
    values = program.weight_values(params, (wanted,))
    got = [n for n in made if n in values]
    assert got == [program.op(wanted).inputs[0], wanted], (got, made)
    np.testing.assert_array_equal(values[wanted].data, program.weight_values(params)[wanted].data)
    assert set(program.weight_values(params)) >= set(made) | set(params)


def test_products_given_the_same_gradient_share_one_array_and_dx_is_one_gemm():
    # h = tanh(x W^T + b + h U^T + c): x W^T and h U^T get the same gradient at every step; the
    # backward loop writes it once, and reads no dx of its own (x reaches the step only through
    # its hoisted product). A GRU's two products get different gradients: two arrays.
    elman = compile_cell(cell("elman"), I, F64).source
    assert "d_h_w[" not in elman and "d_h_w =" not in elman and "d_x_w is d_h_w too" in elman
    assert "d_x = dot(" in elman and "np.zeros_like(x)" not in elman
    gru = compile_cell(cell("gru"), I, F64).source
    assert "d_h_w[t, b, j] = " in gru and "d_x_w[t, b, j] = " in gru
    for reverse in (False, True):  # the shared array's padded steps are zeros, as the graph's
        rng = np.random.default_rng(24)
        both(recurrent(cell("elman"), reverse=reverse), padded(rng, LENGTHS), random_state(cell("elman"), B, rng),
             LENGTHS, what=f"reverse={reverse}")


class Views(nn.Cell):
    """Weights read through views of parameters: two slices of W transposed (tiling it), a
    slice of U transposed (not all of U), the vector b and a one-feature slice of it."""

    def __init__(self, inputs, hidden, dtype=np.float64):
        self.state_size = hidden
        rng = np.random.default_rng(3)
        self.W = Parameter(rng.uniform(-0.5, 0.5, (2 * hidden, inputs)).astype(dtype))
        self.U = Parameter(rng.uniform(-0.5, 0.5, (hidden + 2, hidden)).astype(dtype))
        self.b = Parameter(rng.uniform(-0.5, 0.5, hidden).astype(dtype))

    def forward(self, x, h):
        H = self.state_size
        a = x @ self.W[:H].T + h @ self.U[1:H + 1].T + self.b
        h = (a * self.b[:1] + x @ self.W[H:].T).tanh()
        return h, h


@pytest.mark.parametrize("name", ["gru_classic", "views"])
def test_slices_and_transposes_of_parameters_are_views_the_compiled_node_takes(name):
    # weight_hh[:2 * H].T, bias_hh[2 * H:]: the node takes the parameters, hands the kernels
    # NumPy views of them and adds the views' gradients back: no engine op between them.
    owner = cell("gru_classic") if name == "gru_classic" else Views(I, 4)
    rng = np.random.default_rng(25)
    result = both(recurrent(owner), padded(rng, LENGTHS), random_state(owner, B, rng), LENGTHS, what=name)
    assert all(np.any(result[f"d cell.{n}"] != 0) for n, _ in owner.named_parameters())
    out, _ = nn.Recurrent(owner, backend="numba")(Tensor(rng.standard_normal((T, B, I)), requires_grad=True))
    assert count_nodes(out, ops.Permute) == count_nodes(out, ops.GetItem) - 1 == 0  # out is the one slice


def test_the_loops_copy_and_zero_rows_element_by_element():
    # Numba runs a row's slice operations (d_h_1[b] = d_h[b]; d_h[b] = 0.0) slower than a loop
    # over the features: 15 us of an Elman RNN's 100 us backward at T=200, B=1, H=64.
    source = compile_cell(cell("lstm"), I, F64).source
    loops = source[source.index("def _forward("):source.index("\ndef forward(")]
    assert not re.findall(r"\w+\[(?:t, )?b\] \+?= ", loops)
    assert not re.findall(r"\w+\[t\] = ", loops)
    assert "d_h_1[b, j] = d_h[b, j]  # the gradient carried from step t + 1" in loops


def test_a_slice_of_a_kept_row_is_read_in_place():
    # x_r, x_z, x_n = chunk(x W^T + b, 3): read at their columns of that row, with their
    # gradients written there, not copied into rows of their own every step.
    source = compile_cell(cell("gru"), I, F64).source
    loops = source[source.index("def _forward("):source.index("\ndef forward(")]
    assert "x_r[" not in loops and "t2[b, 4 + j]" in loops and "d_t2[b, 4 + j] = " in loops


class SlicesOfARow(nn.Cell):
    """Two slices of a row: one the left operand of a product mid-step (its own row: the
    product takes whole rows), one a column broadcast over the features (read in place)."""

    def __init__(self, inputs, hidden, dtype=np.float64):
        self.state_size = hidden
        rng = np.random.default_rng(5)
        self.W, self.U, self.V = (Parameter(rng.uniform(-0.6, 0.6, shape).astype(dtype)) for shape in
                                  [(hidden, inputs), (hidden, hidden), (hidden, 2)])

    def forward(self, x, h):
        a = (x @ self.W.T + h @ self.U.T).tanh()
        h = (a[:, 1:3] @ self.V.T + a[:, 0:1] * h).tanh()
        return h, h


def test_slices_of_a_row_into_a_product_and_broadcast_compile_and_agree():
    # found by the property: a slice read in place handed a product the whole row
    rng = np.random.default_rng(27)
    for dtype in (F64, F32):
        owner = SlicesOfARow(I, 4, dtype=dtype)
        both(recurrent(owner), padded(rng, LENGTHS, dtype), random_state(owner, B, rng, dtype), LENGTHS, dtype=dtype,
             what=str(dtype))


class ProductOfOneOfTwoProducts(nn.Cell):
    """a = h W1^T and b = h W2^T, then a V^T: a product of a value that is one of two products
    of the state (found by test_compiler_property's float64 property: its recipes draw it)."""

    def __init__(self, inputs, hidden, dtype=np.float64):
        self.state_size = hidden
        rng = np.random.default_rng(4)
        self.U, self.W1, self.W2, self.V = (Parameter(rng.uniform(-0.5, 0.5, shape).astype(dtype)) for shape in
                                            [(hidden, inputs), (hidden, hidden), (hidden, hidden), (hidden, hidden)])

    def forward(self, x, h):
        a = h @ self.W1.T
        b = h @ self.W2.T
        h = (x @ self.U.T + a @ self.V.T + b).tanh()
        return h, h


def test_a_product_of_one_of_two_products_of_the_state_is_refused_clearly():
    # A known limit (the property's recipes draw it, and accept this refusal): the two products
    # of h share one GEMM, and a product of one of them is not written. Written as its own
    # product (a = h @ W1.T in a cell without b), it compiles.
    owner = ProductOfOneOfTwoProducts(I, 4)
    with pytest.raises(CompileError, match="a product of a value that is one of several products of the same "
                                           "operand .write it as its own product."):
        nn.Recurrent(owner, backend="numba")(np.zeros((2, 1, I)))
    layer = nn.Recurrent(owner)  # "auto": the graph, saying why
    layer(np.zeros((2, 1, I)))
    assert "one of several products" in layer.fallback_reason