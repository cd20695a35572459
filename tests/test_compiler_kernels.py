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
import sys

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, backend, nn, ops
from tinyseq.bptt import TBPTT, grad_norms_through_time
from tinyseq.nn import Parameter
from tinyseq.nn._fused import CompiledRecurrence
from tinyseq.nn.utils.rnn import pack_padded_sequence
from tinyseq_jit.compiler import CompileError, compile_cell
from tinyseq_jit.compiler.kernels import cache_dir

from helpers import EXAMPLES, count_nodes, weighted_sum

sys.path.insert(0, str(EXAMPLES))
import cell_gallery as gallery  # noqa: E402

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
    states = tuple(rng.standard_normal((batch, n)).astype(dtype) for n in (sizes if isinstance(sizes, tuple) else (sizes,)))
    return states if isinstance(sizes, tuple) else states[0]


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
    """Two ``run`` results agree: the same names, dtypes and shapes, values to ``TOLERANCE``."""
    assert list(fused) == list(graph), what
    tol = TOLERANCE[np.dtype(dtype)]
    for name, expected in graph.items():
        got = fused[name]
        assert got.dtype == expected.dtype == dtype, f"{what}: {name} is {got.dtype}, the graph's {expected.dtype}"
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=f"{what}: {name}")


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


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_cells_compiled_in_float32_equal_the_graph(name):
    rng = np.random.default_rng(0)
    owner = cell(name, F32)
    fused = both(recurrent(owner), padded(rng, LENGTHS, F32), random_state(owner, B, rng, F32), LENGTHS, dtype=F32,
                 what=name)
    assert compile_cell(owner, I).program.dtype == F32
    assert fused["out"].dtype == F32


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
