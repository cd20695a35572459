"""Compiled cells on numba.cuda: run under the simulator, NUMBA_ENABLE_CUDASIM=1 pytest -m cuda.

The compiler's CUDA module (``tinyseq_jit/compiler/gpu.py``) equals the graph for cells of
the gallery (examples/cell_gallery.py): outputs, final states, every gradient and the
gradient norms, with lengths and NaN in the padding, forward and reversed, on both paths
(the time loop in one kernel, and a launch a step). Tiny shapes: the simulator runs every
thread in Python. (The built-in layers' launches per pass are pinned in tests/test_cuda.py;
the kernels' offline compilation for real GPUs is tests/test_cuda_ptx.py's.)"""

import os

import numpy as np
import pytest

from tinyseq import Tensor, nn
from tinyseq.bptt import grad_norms_through_time
from tinyseq_jit.compiler import compile_cell

from helpers import load_example, path, poisoned  # noqa: F401  (fixtures)

pytestmark = pytest.mark.cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
runs_kernels = pytest.mark.skipif(not SIMULATED, reason="the compiled cells' CUDA tests run under "
                                                        "NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")
gallery = load_example("cell_gallery").GALLERY


def _run(cell, backend, x, lengths, reverse):
    """Outputs, final states and every gradient (x, h0, parameters) of a weighted sum."""
    for p in cell.parameters():
        p.grad = None
    rng = np.random.default_rng(7)
    x = Tensor(x, requires_grad=True)
    sizes = cell.state_size if isinstance(cell.state_size, tuple) else (cell.state_size,)
    h0 = tuple(Tensor(rng.normal(size=(x.shape[1], n)).astype(x.dtype), requires_grad=True) for n in sizes)
    layer = nn.Recurrent(cell, reverse=reverse, backend=backend)
    out, final = layer(x, h0 if isinstance(cell.state_size, tuple) else h0[0], lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * Tensor(rng.normal(size=out.shape))).sum()
    for f in finals:
        loss = loss + (f * Tensor(rng.normal(size=f.shape))).sum()
    loss.backward()
    grads = [x.grad.data] + [h.grad.data for h in h0] + [p.grad.data for p in cell.parameters()]
    return [out.data, *(f.data for f in finals)], grads


@runs_kernels
@pytest.mark.parametrize("name", ["lstm_peephole", "lstm_coupled", "gru_classic", "mgu", "indrnn", "mirnn", "ligru"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_compiled_cells_on_cuda_equal_the_graph(poisoned, path, name, dtype, tol):
    cell = gallery[name](3, 4, dtype=dtype)
    x = np.random.default_rng(1).normal(size=(4, 3, 3)).astype(dtype)
    lengths = np.array([4, 2, 1])
    x[2:, 1], x[1:, 2] = np.nan, np.nan  # padding: must not reach anything
    for reverse in (False, True):
        expected = _run(cell, "graph", x, lengths, reverse)
        got = _run(cell, "cuda", x, lengths, reverse)
        for a, b in zip(expected[0] + expected[1], got[0] + got[1]):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)


@runs_kernels
def test_compiled_cells_on_cuda_record_the_graphs_gradient_norms(path):
    cell = gallery["lstm"](3, 4, dtype=np.float64)
    x = np.random.default_rng(2).normal(size=(5, 3, 3))
    lengths = np.array([5, 3, 2])
    norms = {}
    for backend in ("graph", "cuda"):
        layer = nn.Recurrent(cell, backend=backend)
        norms[backend] = grad_norms_through_time(layer, x, lengths=lengths)
    graph, cuda = norms["graph"], norms["cuda"]
    assert graph.c is not None and graph.h.any()
    for a, b in ((graph.h, cuda.h), (graph.c, cuda.c)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@runs_kernels
def test_the_cuda_module_reads_as_the_cell():
    cell = gallery["mgu"](3, 4, dtype=np.float64)
    layer = nn.Recurrent(cell, backend="cuda")
    layer(np.zeros((2, 2, 3)))
    source = layer.kernel_source(device="cuda")
    assert "@cuda.jit" in source and "def forward(" in source and "def backward(" in source
    assert "f[t, b, j] = sigmoid(t3)" in source  # the cell's own names, one line per op
    # a bias's gradient: the sum over all steps of a gradient kept for the weights' GEMM, after the loop
    assert 'grads["f.bias"] = (sums_d_x_w[0:4])' in source and "atomic" not in source
    assert "def block_forward(" in source and "cuda.shared.array((ROWS, WIDE_1), FT)" in source


@runs_kernels
def test_a_parameter_gradient_no_kept_gradient_holds_is_summed_by_atomics():
    source = compile_cell(gallery["mirnn"](3, 4, dtype=np.float64), 3, np.float64, "cuda").source
    assert "cuda.atomic.add(d_alpha, j, d_t2 * x_w[t, b, j])" in source  # d_t2 is no kept array's column
    assert 'grads["alpha"] = d_alpha.copy_to_host()' in source


#: found by tests/test_compiler_property.py on the per-step path: states of widths 1 and 2 (a thread
#: owns columns j mod 2), a slice at offset 1 adds its gradient into another thread's column of a
#: row the same kernel zeroed and added into (its group now runs in a kernel of its own)
SLICE_ACROSS_THREADS = (1, (1, 2), (
    ("linear", 0, 2, 0, True), ("linear", 1, 2, 0, False), ("binary", "add", 3, 4), ("slice", 5, 0, 1),
    ("slice", 5, 1, 2), ("unary", "sigmoid", 0), ("binary", "add", 6, 7), ("binary", "add", 9, 8),
    ("unary", "tanh", 10), ("unary", "tanh", 5),
), (11, 12), 3)


#: found by the property on the per-step path: a group that the product after it reads (values_2)
#: also reads a value (values_3) of a group the product does not read, which must not wait for the
#: kernel after the product
READ_BEFORE_PRODUCT = (2, (1,), (
    ("linear_x", 1, 1), ("unary", "sigmoid", 0), ("linear", 2, 1, 0, True), ("slice", 3, 0, 1),
    ("binary", "add", 5, 4), ("unary", "tanh", 6),
), (7,), 2)


@runs_kernels
@pytest.mark.parametrize("case", [(SLICE_ACROSS_THREADS, 0, 1, 1, None, False, False),
                                  (READ_BEFORE_PRODUCT, 0, 1, 1, [1], False, False)], ids=["slice", "product"])
def test_cells_the_property_found_agree_with_the_graph(path, case):
    from test_compiler_property import check_compiled_equals_graph

    check_compiled_equals_graph(case, np.float64, "cuda")
