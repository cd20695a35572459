"""The contract between the backends: the fused Numba kernels equal the unrolled graph.

For drawn configurations (cell, options, layers, directions, lengths, h0, bias,
batch_first) the numba backend's outputs, final states and the gradients of the input,
the initial states and every parameter equal the graph backend's (float64, rtol 1e-9;
float32 within 1e-4). Plus gradcheck on the fused op itself, backend selection, and the
kernels' argument checks.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyseq as ts
from tinyseq import Tensor, backend, gradcheck, nn
from tinyseq.nn._fused import CompiledRecurrence

from helpers import compare, count_nodes, layer_configs, layer_loss_and_inputs


@given(config=layer_configs(proj=True))
@example(config=("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": True,
                          "peephole": True, "coupled": True}, {"steps": 4, "batch": 3, "input_size": 2, "hidden": 3},
                 [4, 1, 2], True, 7))
@example(config=("GRU", {"num_layers": 1, "bidirectional": True, "bias": False, "batch_first": False,
                         "reset_after": False}, {"steps": 3, "batch": 2, "input_size": 1, "hidden": 2},
                 [1, 3], False, 3))
@example(config=("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": False,
                          "peephole": False, "coupled": False, "proj_size": 2},
                 {"steps": 4, "batch": 3, "input_size": 2, "hidden": 3}, [4, 1, 3], True, 11))
@example(config=("LSTM", {"num_layers": 2, "bidirectional": True, "bias": False, "batch_first": True,
                          "peephole": True, "coupled": True, "proj_size": 1},
                 {"steps": 3, "batch": 2, "input_size": 3, "hidden": 2}, [2, 3], False, 5))
def test_numba_equals_graph_float64(config):
    compare(config)


@given(config=layer_configs(proj=True))
def test_numba_equals_graph_float32(config):
    compare(config, dtype=np.float32, rtol=1e-4, atol=1e-5)


@given(config=layer_configs(proj=True))
def test_fused_layer_passes_gradcheck(config):
    layer, f, inputs = layer_loss_and_inputs(*config)
    layer.backend = "numba"
    assert gradcheck(f, inputs, mode="directional")


@pytest.mark.parametrize("mode,options", [("LSTM", {"peephole": True}), ("LSTM", {"coupled": True}),
                                          ("LSTM", {"proj_size": 1}), ("GRU", {"reset_after": False}),
                                          ("RNN", {"nonlinearity": "tanh"})])
def test_fused_layer_full_jacobian(mode, options):
    config = (mode, dict(num_layers=1, bidirectional=True, bias=True, batch_first=False, **options),
              {"steps": 3, "batch": 2, "input_size": 2, "hidden": 2}, [3, 2], True, 0)
    layer, f, inputs = layer_loss_and_inputs(*config)
    layer.backend = "numba"
    assert gradcheck(f, inputs, mode="full")


def test_a_fused_layer_direction_is_one_graph_node():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, backend="numba")
    out, _ = lstm(np.ones((5, 2, 3), np.float32))
    assert count_nodes(out, CompiledRecurrence) == 4


def test_fused_layer_mixes_with_other_ops():
    def model_loss(backend_name):
        nn.init.manual_seed(0)
        emb, gru, head = nn.Embedding(7, 3), nn.GRU(3, 5, backend=backend_name), nn.Linear(5, 7)
        for m in (emb, gru, head):
            m.double()
        tokens = np.array([[1, 2, 3], [4, 5, 6]]).T
        out, _ = gru(emb(tokens), lengths=np.array([3, 2]))
        loss = nn.functional.cross_entropy(head(out), tokens, mask=nn.utils.sequence_mask([3, 2]))
        loss.backward()
        return loss.item(), [p.grad for m in (emb, gru, head) for p in m.parameters()]

    (l_graph, g_graph), (l_fused, g_fused) = model_loss("graph"), model_loss("numba")
    assert abs(l_graph - l_fused) < 1e-12
    for a, b in zip(g_graph, g_fused):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_fused_forward_under_no_grad_records_nothing():
    lstm = nn.LSTM(2, 3, backend="numba")
    with ts.no_grad():
        out, (h, c) = lstm(np.ones((4, 1, 2), np.float32))
    assert not out.requires_grad and out._ctx is None


# ---------------------------------------------------------------- backend selection


def test_auto_picks_numba_and_the_global_setting_applies():
    assert backend.resolve("auto") == "numba"
    with backend.use_backend("graph"):
        assert backend.resolve("auto") == "graph"
        assert backend.resolve("numba") == "numba"
    assert backend.resolve("auto") == "numba"


def test_environment_variable_and_set_backend(monkeypatch):
    monkeypatch.setattr(backend, "_default", None)
    monkeypatch.setenv("TINYSEQ_BACKEND", "graph")
    assert backend.resolve("auto") == "graph"
    monkeypatch.setenv("TINYSEQ_BACKEND", "tpu")
    with pytest.raises(ValueError, match="TINYSEQ_BACKEND: backend must be one of"):
        backend.resolve("auto")
    backend.set_backend("graph")
    assert backend.get_backend() == "graph"
    with pytest.raises(ValueError, match="set_backend: backend must be one of"):
        backend.set_backend("fast")


def test_missing_numba_falls_back_for_auto_and_explains_for_numba(monkeypatch):
    monkeypatch.setattr(backend, "_jit", None)
    monkeypatch.setattr(backend, "_jit_error", ImportError("No module named 'numba'"))
    assert backend.resolve("auto") == "graph"
    with pytest.raises(RuntimeError, match=r"backend 'numba' is not available.*pip install numba scipy"):
        nn.LSTM(2, 3, backend="numba")
    out, _ = nn.GRU(2, 3)(np.ones((2, 1, 2), np.float32))
    assert out.shape == (2, 1, 3)


def test_cuda_backend_explains_it_is_not_available():
    from tinyseq_jit import cuda

    if cuda.status()[0] is not None:
        pytest.skip("numba.cuda can run here (a GPU or the simulator)")
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available: .*NUMBA_ENABLE_CUDASIM=1"):
        nn.RNN(2, 3, backend="cuda")


# ---------------------------------------------------------------- kernel argument checks


def test_kernel_argument_errors():
    from tinyseq_jit import cpu

    x, h0 = np.ones((3, 2, 4)), np.zeros((2, 5))
    w = dict(w_ih=np.ones((20, 4)), w_hh=np.ones((20, 5)))
    c0 = np.zeros((2, 5))
    with pytest.raises(TypeError, match="lstm_forward: w_ih has dtype float32, expected float64"):
        cpu.lstm_forward(x, h0, c0, dict(w, w_ih=w["w_ih"].astype(np.float32)))
    with pytest.raises(ValueError, match=r"lstm_forward: h0 has shape \(3, 5\), expected \(2, 5\)"):
        cpu.lstm_forward(x, np.zeros((3, 5)), c0, w)
    with pytest.raises(ValueError, match=r"lstm_forward: lengths must lie in \[1, 3\]"):
        cpu.lstm_forward(x, h0, c0, w, lengths=np.array([0, 3]))
    with pytest.raises(ValueError, match=r"gru_forward: w_hh must have shape \(3\*H, H\)"):
        cpu.gru_forward(x, h0, w)
    with pytest.raises(ValueError, match=r"gru_forward: weights must hold w_ih and w_hh and may hold"):
        cpu.gru_forward(x, h0, dict(w, ci=np.ones(5)))
    with pytest.raises(ValueError, match=r"rnn_forward: weights must hold w_ih and w_hh"):
        cpu.rnn_forward(x, h0, dict(w_ih=np.ones((5, 4))))
    with pytest.raises(TypeError, match="rnn_forward: x must be float32 or float64"):
        cpu.rnn_forward(x.astype(np.int64), h0, dict(w_ih=np.ones((5, 4)), w_hh=np.ones((5, 5))))
    with pytest.raises(ValueError, match="rnn_forward: nonlinearity must be 'tanh' or 'relu'"):
        cpu.rnn_forward(x, h0, dict(w_ih=np.ones((5, 4)), w_hh=np.ones((5, 5))), nonlinearity="gelu")
    coupled = dict(w_ih=np.ones((15, 4)), w_hh=np.ones((15, 5)), cf=np.ones(5), co=np.ones(5))
    with pytest.raises(ValueError, match="a coupled LSTM has no input gate"):
        cpu.lstm_forward(x, h0, c0, dict(coupled, ci=np.ones(5)), coupled=True)
    with pytest.raises(ValueError, match=r"a peephole LSTM needs the weights \['ci', 'cf', 'co'\], got \['cf'\]"):
        cpu.lstm_forward(x, h0, c0, dict(w, cf=np.ones(5)))
    with pytest.raises(ValueError, match=r"lstm_forward: co has shape \(4,\), expected \(5,\)"):
        cpu.lstm_forward(x, h0, c0, dict(coupled, co=np.ones(4)), coupled=True)


def test_kernel_gradients_are_named_as_the_arguments():
    """The contract: backward returns a Grads whose fields name the forward's arguments, None
    for what the forward did not get (and for x with need_dx=False)."""
    from tinyseq_jit import cpu

    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 5))
    w = dict(w_ih=rng.standard_normal((15, 4)), w_hh=rng.standard_normal((15, 5)), b_ih=rng.standard_normal(15),
             cf=rng.standard_normal(5), co=rng.standard_normal(5))
    result = cpu.lstm_forward(x, h0, h0, w, coupled=True)
    assert (result.out.shape, result.h_n.shape, result.c_n.shape) == ((3, 2, 5), (2, 5), (2, 5))
    grads = cpu.lstm_backward(result.saved, np.ones((3, 2, 5)), np.zeros((2, 5)), np.zeros((2, 5)), need_dx=False)
    given = {"h0", "c0", *w}
    assert {name for name, g in grads._asdict().items() if g is not None} == given
    for name in given - {"h0", "c0"}:
        assert getattr(grads, name).shape == w[name].shape, name
    result = cpu.gru_forward(x, h0, dict(w_ih=w["w_ih"], w_hh=w["w_hh"], b_hh=rng.standard_normal(15)))
    assert result.c_n is None
    grads = cpu.gru_backward(result.saved, np.ones((3, 2, 5)), np.zeros((2, 5)))
    assert {name for name, g in grads._asdict().items() if g is not None} == {"x", "h0", "w_ih", "w_hh", "b_hh"}


@pytest.mark.parametrize("kernel", ["rnn", "lstm", "gru", "gru_classic"])
def test_kernels_ignore_whatever_padded_steps_hold(kernel):
    """nan/inf in x and in d_out past each sequence's length reach no gradient (no 0 * nan)."""
    from tinyseq_jit import cpu

    rng = np.random.default_rng(0)
    steps, batch, inputs, hidden = 4, 3, 2, 3
    gates = {"rnn": 1, "lstm": 4}.get(kernel, 3)
    lengths = np.array([4, 1, 3])
    padded = np.arange(steps)[:, None] >= lengths
    x = rng.standard_normal((steps, batch, inputs))
    weights = [rng.standard_normal((gates * hidden, n)) for n in (inputs, hidden)]
    biases = dict(b_ih=rng.standard_normal(gates * hidden), b_hh=rng.standard_normal(gates * hidden))
    d_out, d_h = rng.standard_normal((steps, batch, hidden)), rng.standard_normal((batch, hidden))
    h0 = rng.standard_normal((batch, hidden))

    def grads(x, d_out):
        w = dict(w_ih=weights[0], w_hh=weights[1], **biases)
        if kernel == "lstm":
            result = cpu.lstm_forward(x, h0, h0, w, lengths=lengths)
            return cpu.lstm_backward(result.saved, d_out, d_h, d_h)
        forward, backward = (cpu.rnn_forward, cpu.rnn_backward) if kernel == "rnn" else \
            (cpu.gru_forward, cpu.gru_backward)
        extra = {"reset_after": False} if kernel == "gru_classic" else {}
        return backward(forward(x, h0, w, lengths=lengths, **extra).saved, d_out, d_h)

    expected = grads(np.where(padded[..., None], 0.0, x), d_out)
    x[padded] = np.nan
    x[1, 1, 0] = x[3, 2, 1] = np.inf
    got = grads(x, np.where(padded[..., None], np.nan, d_out))
    for a, b in zip(expected, got):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("limit,max_chunks,chunks,transposed", [
    (10**6, 4, 1, False),  # small enough for one call
    (40, 4, 4, False),  # 7 columns in chunks of 2, the last one padded
    (15, 7, 7, False),  # one column per chunk
    (40, 3, 1, True),  # would need too many chunks: transposed
    (0, 4, 1, True),  # splitting off: transposed
])
def test_planned_product_equals_numpy(limit, max_chunks, chunks, transposed):
    from tinyseq_jit.cpu import _gemm
    from tinyseq_jit.cpu._gemm import plan_product, product_into, product_scratch

    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((3, 5)), rng.standard_normal((5, 7))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_gemm, "SMALL_GEMM_MNK", limit)
        mp.setattr(_gemm, "MAX_CHUNKS", max_chunks)
        mp.setattr(_gemm, "TINY_GEMM_MNK", 0)
        plan = plan_product(w, len(a), _gemm.available()["openblas"])
    assert (plan[0].shape[0], plan[1], plan[2]) == (chunks, transposed, 0)
    out = np.full((3, 7), np.nan)
    product_into(a, plan, product_scratch(len(a), plan), out)
    np.testing.assert_allclose(out, a @ w, rtol=1e-13)


@pytest.mark.parametrize("core,limit", [("SkylakeX", 1_000_000), ("Cooperlake", 1_000_000), ("Haswell", 0),
                                        ("Zen", 0), (None, 0)])
def test_product_plan_follows_the_blas_kernels(core, limit):
    """Column chunks only where OpenBLAS has its small-matrix path (AVX-512 kernels); a tiny
    product is one call, a large one transposed, on every core."""
    from tinyseq_jit.cpu import _gemm
    from tinyseq_jit.cpu._gemm import plan_product

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_gemm, "blas_core", lambda: core)
        mp.setattr(_gemm, "_chosen", (_gemm.available()["openblas"], "this test"))
        assert _gemm.small_gemm_mnk() == limit
        w = np.zeros((256, 1024), dtype=np.float32)
        chunks, transposed = plan_product(w, 4)[0].shape[0], plan_product(w, 4)[1]
        assert (chunks, transposed) == ((2, False) if limit else (1, True))
        assert plan_product(w, 32)[1] and not plan_product(np.zeros((64, 64)), 1)[1]
        mp.setattr(_gemm, "SMALL_GEMM_MNK", 5)
        assert _gemm.small_gemm_mnk() == 5


def test_blas_core_reads_scipys_openblas():
    """Unpatched: the kernel set of the OpenBLAS numba binds (SciPy's), not NumPy's."""
    from threadpoolctl import threadpool_info

    from tinyseq_jit.cpu import _gemm

    core = _gemm.blas_core()
    scipy_libs = [i for i in threadpool_info() if i.get("internal_api") == "openblas" and "scipy" in i["filepath"]
                  and "64_" not in i["filepath"]]
    if scipy_libs:
        assert core == scipy_libs[0]["architecture"]
    else:
        assert core is None or isinstance(core, str)


@pytest.mark.parametrize("shape", [(1, 1), (33, 65), (1024, 256), (5, 100)])
def test_transposed_copy_across_tiles(shape):
    from tinyseq_jit.cpu._gemm import _transposed

    w = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    got = _transposed(w)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, w.T)


@pytest.mark.parametrize("max_chunks", [10**6, 0])
@given(config=layer_configs(proj=True))
def test_chunked_and_transposed_products_equal_graph(max_chunks, config):
    """The recurrent product in one-column chunks, or transposed, holds the contract too
    (at test sizes the kernels would otherwise always make it in one call)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tinyseq_jit.cpu._gemm.SMALL_GEMM_MNK", 1)
        mp.setattr("tinyseq_jit.cpu._gemm.MAX_CHUNKS", max_chunks)
        mp.setattr("tinyseq_jit.cpu._gemm.TINY_GEMM_MNK", 0)
        mp.setattr("tinyseq_jit.cpu._gemm._chosen", (_openblas(), "this test"))  # whatever the default
        compare(config)


def _openblas():
    from tinyseq_jit.cpu import _gemm

    return _gemm.available()["openblas"]


def _apply(fn):
    from numba import njit

    @njit
    def apply(values, out):
        for k in range(values.size):
            out[k] = fn(values[k])

    def run(values):
        out = np.empty_like(values)
        apply(values, out)
        return out
    return run


@pytest.fixture(scope="module")
def kernel_math():
    from tinyseq_jit.cpu import _math

    return {name: _apply(getattr(_math, name)) for name in ("exp", "sigmoid", "tanh")}


REFERENCE = {"exp": np.exp, "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "tanh": np.tanh}


@pytest.mark.parametrize("dtype,rtol,atol", [
    (np.float64, 4e-16, 5e-324),  # a few ulps; denormal results within one denormal step
    (np.float32, 3e-7, 1.2e-38),  # a few float32 ulps; results below float32's normal range may flush
])
@given(data=st.data())
def test_kernel_exp_sigmoid_tanh_match_numpy_to_a_few_ulps(kernel_math, dtype, rtol, atol, data):
    """The kernels' own vectorisable exp, sigmoid and tanh, over all floats of either width,
    against float64 NumPy (libm-based) results; same inf, nan and 0 limits."""
    values = data.draw(hnp.arrays(dtype, st.integers(1, 50), elements=st.floats(width=np.finfo(dtype).bits)))
    for name, fn in kernel_math.items():
        got = fn(values)
        assert got.dtype == dtype
        with np.errstate(over="ignore", invalid="ignore"):
            want = REFERENCE[name](values.astype(np.float64))
            if dtype == np.float32:
                want = np.where(np.abs(want) > np.finfo(np.float32).max, np.copysign(np.inf, want), want)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)
        assert np.array_equal(np.isnan(got), np.isnan(want)), name


def test_kernel_math_edges(kernel_math):
    edges = np.array([0.0, -0.0, 1e-300, -1e-300, 709.7, 709.8, -745.0, -746.0, 20.0, -20.0, np.inf, -np.inf])
    edges32 = np.float32([0.0, 1e-40, 88.7, 88.8, -103.0, -104.0, 9.0, -9.0, np.inf, -np.inf])
    with np.errstate(over="ignore"):
        for name, fn in kernel_math.items():
            np.testing.assert_allclose(fn(edges), REFERENCE[name](edges), rtol=4e-16, atol=5e-324, err_msg=name)
            want = REFERENCE[name](edges32.astype(np.float64)).astype(np.float32)
            np.testing.assert_allclose(fn(edges32), want, rtol=3e-7, atol=1.2e-38, err_msg=name)
    for dtype in (np.float64, np.float32):
        assert np.signbit(kernel_math["tanh"](np.array([-0.0], dtype=dtype))[0])


@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_empty_batch_works_on_both_backends(mode):
    x = Tensor(np.zeros((3, 0, 2)), requires_grad=True)
    for name in ("graph", "numba"):
        layer = getattr(nn, mode)(2, 4, backend=name).double()
        out, _ = layer(x)
        assert out.shape == (3, 0, 4)
        out.sum().backward()
        assert x.grad.shape == (3, 0, 2)


NUMPY_ONLY = """
import sys
for name in ("numba", "scipy", "threadpoolctl"):
    sys.modules[name] = None  # as if not installed: importing them raises ImportError
import numpy as np
import tinyseq as ts
from tinyseq import backend, nn
assert backend.resolve("auto") == "graph"
ts.manual_seed(0)
lstm, head = nn.LSTM(3, 8), nn.Linear(8, 1)
opt = ts.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.05)
x = np.random.default_rng(0).normal(size=(10, 4, 3)).astype(np.float32)
y = x.sum(0)[:, :1]
losses = []
for _ in range(30):
    out, _ = lstm(x)
    loss = ((head(out[-1]) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
assert losses[-1] < 0.1 * losses[0], losses
try:
    nn.LSTM(3, 8, backend="numba")
except RuntimeError as e:
    assert "pip install numba scipy" in str(e), e
else:
    raise AssertionError("backend='numba' was accepted without numba")
assert sys.modules["numba"] is None and sys.modules["scipy"] is None
print("ok")
"""


def test_tinyseq_imports_and_trains_with_numpy_alone():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", NUMPY_ONLY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
