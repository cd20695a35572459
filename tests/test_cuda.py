"""CUDA path: run in its own process under the simulator, NUMBA_ENABLE_CUDASIM=1 pytest -m cuda.

The simulator runs a kernel's threads on the CPU, so these shapes are tiny. The tiled GEMM
equals NumPy's product at ragged tile edges, in both dtypes and every transpose, writes
every element of its output and launches once; ``tinyseq_jit.cuda``'s entry points (which
run the generated kernels) equal the CPU ones (outputs, every gradient, the gradient norms;
with lengths, reverse, relu, partial biases, peepholes; float64 and float32) with every
element written, and refuse device arrays; the layers of every cell on backend="cuda" equal
the graph, and so do their gradient norms; each runs on both paths (the time loop in one
kernel, and a launch per step), whose launches per pass are pinned as functions of T; the
GPU benchmark runs end to end; without a GPU and without the simulator, and without
numba.cuda at all, the package imports and says why it cannot run."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tinyseq import Tensor, nn
from tinyseq.bptt import grad_norms_through_time

from helpers import EXAMPLES, compare, layer_configs, path, poisoned  # noqa: F401  (fixtures)

pytestmark = pytest.mark.cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _gpu_present():
    """True where numba.cuda finds a real GPU (never under the simulator)."""
    if SIMULATED:
        return False
    try:
        from numba import cuda
    except ImportError:
        return False
    return cuda.is_available()


GPU = _gpu_present()
#: the tests at tiny shapes: they run on the simulator, and on a real GPU too
runs_kernels = pytest.mark.skipif(not (SIMULATED or GPU), reason="needs a GPU, or NUMBA_ENABLE_CUDASIM=1 set "
                                                                 "before numba is imported")
#: the tests at full sizes, too slow for the simulator
gpu_only = pytest.mark.skipif(not GPU, reason="full sizes: needs a real GPU")


@runs_kernels
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_equals_numpy_at_ragged_tile_edges(dtype, rtol, trans_a, trans_b):
    from numba import cuda

    from tinyseq_jit import cuda as tc

    rng = np.random.default_rng(0)
    for rows, depth, cols in [(5, 33, 17), (17, 16, 1), (1, 1, 1)]:  # across tiles (8 or 16 wide), inside one
        a = rng.standard_normal((depth, rows) if trans_a else (rows, depth)).astype(dtype)
        b = rng.standard_normal((cols, depth) if trans_b else (depth, cols)).astype(dtype)
        expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
        out = cuda.to_device(np.full((rows, cols), np.nan, dtype=dtype))  # poisoned: every element must be written
        tc.reset_launches()
        tc.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
        assert tc.reset_launches() == {f"gemm_kernel_{np.dtype(dtype).name}": 1}
        np.testing.assert_allclose(out.copy_to_host(), expected, rtol=rtol, atol=rtol)
        tc.gemm(cuda.to_device(a), b, out, trans_a=trans_a, trans_b=trans_b, accumulate=True)  # device input too
        np.testing.assert_allclose(out.copy_to_host(), 2 * expected, rtol=rtol, atol=rtol)


RNN_CASES = [  # nonlinearity, reverse, lengths, biases, dtype
    ("tanh", False, [4, 1, 3], ("b_ih", "b_hh"), np.float64),
    ("relu", True, [2, 4, 4], ("b_ih",), np.float64),
    ("tanh", True, None, (), np.float32),
    ("relu", False, [3, 3, 1], ("b_hh",), np.float32),
]


@runs_kernels
@pytest.mark.parametrize("nonlinearity,reverse,lengths,biases,dtype", RNN_CASES)
def test_rnn_entry_points_equal_the_cpu_ones(poisoned, path, nonlinearity, reverse, lengths, biases, dtype):
    """Outputs, every gradient and the gradient norms of ``tinyseq_jit.cuda``'s RNN entry points
    equal ``tinyseq_jit.cpu``'s (which equal the unrolled graph's, tests/test_backends.py), with
    every element written."""
    from tinyseq_jit import cpu
    from tinyseq_jit import cuda as tc

    rng = np.random.default_rng(1)
    steps, batch, inputs, hidden = 4, 3, 2, 5
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    draw = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    x, h0 = draw(steps, batch, inputs), draw(batch, hidden)
    weights = {"w_ih": rng.standard_normal((hidden, inputs)), "w_hh": 0.5 * rng.standard_normal((hidden, hidden)),
               **{b: rng.standard_normal(hidden) for b in biases}}
    weights = {k: v.astype(dtype) for k, v in weights.items()}
    d_out, d_h_n = draw(steps, batch, hidden), draw(batch, hidden)
    options = dict(lengths=lengths, reverse=reverse, nonlinearity=nonlinearity)
    expected, got = cpu.rnn_forward(x, h0, weights, **options), tc.rnn_forward(x, h0, weights, **options)
    for name in ("out", "h_n"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=rtol, atol=rtol, err_msg=name)
    assert got.c_n is None
    norms_cpu, norms = np.zeros((1, steps, batch), dtype), np.full((1, steps, batch), np.nan, dtype)
    grads_cpu = cpu.rnn_backward(expected.saved, d_out, d_h_n, grad_norms=norms_cpu)
    grads = tc.rnn_backward(got.saved, d_out, d_h_n, grad_norms=norms)
    for name, a in grads_cpu._asdict().items():
        b = getattr(grads, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol, err_msg=name)
    np.testing.assert_allclose(norms, norms_cpu, rtol=rtol, atol=rtol)


# built-in layer form; launches per pass on the per-step path as functions of T: forward,
# backward, backward recording the gradient norms; on the per-block path: forward, backward
# (recording or not). Backwards with x's gradient (x requires grad); without it, one less.
PASSES = [
    ("RNN", {}, lambda t: 2 * t + 1, lambda t: 2 * t + 4, lambda t: 3 * t + 4, 2, 5),
    ("LSTM", {}, lambda t: 2 * t + 1, lambda t: 2 * t + 4, lambda t: 4 * t + 4, 2, 5),
    ("LSTM", {"coupled": True}, lambda t: 2 * t + 1, lambda t: 2 * t + 4, lambda t: 4 * t + 4, 2, 5),
    ("LSTM", {"peephole": True}, lambda t: 2 * t + 1, lambda t: 2 * t + 7, lambda t: 4 * t + 7, 2, 8),
    ("LSTM", {"peephole": True, "coupled": True}, lambda t: 2 * t + 1, lambda t: 2 * t + 6, lambda t: 4 * t + 6, 2,
     7),
    ("GRU", {}, lambda t: 2 * t + 1, lambda t: 2 * t + 5, lambda t: 3 * t + 5, 2, 6),
    ("GRU", {"reset_after": False}, lambda t: 4 * t + 1, lambda t: 4 * t + 5, lambda t: 5 * t + 5, 2, 6),
]


def _launches_per_pass(layer, steps, need_dx):
    """Launches of the layer's forward, its backward, and its backward recording the gradient norms."""
    from tinyseq_jit import cuda as tc

    x = Tensor(np.ones((steps, 2, 2)), requires_grad=need_dx)
    tc.reset_launches()
    out, _ = layer(x)
    forward = sum(tc.reset_launches().values())
    out.sum().backward()
    backward = sum(tc.reset_launches().values())
    out, _ = layer(x, grad_norms=[])
    tc.reset_launches()
    out.sum().backward()
    return forward, backward, sum(tc.reset_launches().values())


@runs_kernels
@pytest.mark.parametrize("mode,options,forward,backward,recording,block_forward,block_backward", PASSES,
                         ids=[f"{p[0]}-{'-'.join(f'{k}={v}' for k, v in p[1].items())}" for p in PASSES])
def test_launches_per_pass_grow_with_T_only_as_pinned(path, mode, options, forward, backward, recording,
                                                      block_forward, block_backward):
    """The built-in layers' generated kernels launch, per pass, a pinned number of kernels: per
    step a GEMM and a point-wise kernel (two of each for the classic GRU) and a norm kernel per
    state when recording, plus the input projection and the weight, bias and peephole gradients
    around the loop; or one kernel for the whole loop. These equal the former hand-written
    kernels' counts except the forward, one less for the Elman and LSTM forms: the hand-written
    forward launched a separate b_ih + b_hh sum, the generated one adds each bias where the cell does."""
    if path == "per-block":
        forward, backward = (lambda t: block_forward), (lambda t: block_backward)
        recording = backward
    layer = getattr(nn, mode)(2, 3, backend="cuda", **options).double()
    for steps in (1, 3):
        assert _launches_per_pass(layer, steps, need_dx=True) == (forward(steps), backward(steps), recording(steps))
    assert _launches_per_pass(layer, 2, need_dx=False) == (forward(2), backward(2) - 1, recording(2) - 1)


@runs_kernels
def test_the_gpu_benchmark_runs_end_to_end_at_tiny_shapes(tmp_path):
    path = EXAMPLES.parent / "benchmarks" / "cuda_speed.py"
    spec = importlib.util.spec_from_file_location("cuda_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--only", "S7,S6", "--no-grid", "--repeats", "1", "--warmup", "0",
                       "--out", str(tmp_path / "cuda.json")])
    assert [(r["id"], r["T"], r["B"], r["H"]) for r in rows] == [("S6", 3, 2, 4), ("S7", 3, 1, 4)]
    # RNN, H = 4: the per-block path, backward without dx (test_launches_per_pass_grow_with_T_only_as_pinned)
    assert rows[1]["launches_per_train_step"] == 2 + 4
    assert all(set(r["cuda_ms"]) == {"train", "fwd"} and "kernels_ms" not in r for r in rows)
    assert json.loads((tmp_path / "cuda.json").read_text())["where"] == "simulator"


@runs_kernels
def test_empty_batches_launch_nothing_empty(poisoned):
    """B = 0 gives empty results, as on the CPU, without launching an empty grid (a GPU refuses)."""
    from tinyseq_jit import cuda as tc

    out, h_n = nn.GRU(2, 3, backend="cuda")(np.ones((4, 0, 2), dtype=np.float32))
    assert out.shape == (4, 0, 3) and h_n.shape == (1, 0, 3)
    x, h0 = np.ones((3, 0, 2)), np.zeros((0, 2))
    result = tc.lstm_forward(x, h0, h0, {"w_ih": np.ones((8, 2)), "w_hh": np.ones((8, 2))})
    grads = tc.lstm_backward(result.saved, np.zeros((3, 0, 2)), h0, h0)
    assert result.out.shape == (3, 0, 2) and grads.x.shape == (3, 0, 2) and not grads.w_hh.any()


# kernel, forward options, the weights (other than w_ih and w_hh), the number of states, lengths
ENTRY_CASES = [
    ("rnn", {"nonlinearity": "relu", "reverse": True}, ("b_ih", "b_hh"), 1, None),
    ("lstm", {}, ("b_ih", "ci", "cf", "co"), 2, [3, 1]),
    ("lstm", {"coupled": True}, ("b_hh", "cf", "co"), 2, None),
    ("gru", {}, ("b_ih", "b_hh"), 1, [3, 1]),
    ("gru", {"reset_after": False}, ("b_hh",), 1, None),
]


def _kernel_arguments(kernel, options, extra, states, dtype=np.float64, seed=8, lengths=(3, 1)):
    """Host arguments of a small kernel call (T = 3, B = 2), with a nan in x's padded steps."""
    rng = np.random.default_rng(seed)
    steps, batch, inputs, hidden = 3, 2, 2, 3
    gates = {"rnn": 1, "lstm": 3 if options.get("coupled") else 4, "gru": 3}[kernel]
    x = rng.standard_normal((steps, batch, inputs))
    if lengths is not None:
        for b, n in enumerate(lengths):
            x[n:, b] = np.nan  # padding: the kernels must not read it
    shapes = {"w_ih": (gates * hidden, inputs), "w_hh": (gates * hidden, hidden), "b_ih": (gates * hidden,),
              "b_hh": (gates * hidden,)}
    weights = {k: 0.5 * rng.standard_normal(shapes.get(k, (hidden,))) for k in ("w_ih", "w_hh", *extra)}
    state = [rng.standard_normal((batch, hidden)) for _ in range(states)]
    grads = [rng.standard_normal((steps, batch, hidden))] + [rng.standard_normal((batch, hidden)) for _ in state]
    cast = lambda a: a.astype(dtype)  # noqa: E731
    return cast(x), [cast(a) for a in state], {k: cast(v) for k, v in weights.items()}, [cast(g) for g in grads]


@runs_kernels
@pytest.mark.parametrize("kernel,options,extra,states,lengths", ENTRY_CASES)
def test_entry_points_equal_the_cpu_ones(poisoned, path, kernel, options, extra, states, lengths):
    """Every cell's forward and backward on the GPU give the CPU entry points' outputs, final
    states and gradients (host arrays in and out); a padded step's nan in x is not read."""
    from tinyseq_jit import cpu
    from tinyseq_jit import cuda as tc

    x, state, weights, grads = _kernel_arguments(kernel, options, extra, states, lengths=lengths)
    results = []
    for package in (cpu, tc):
        forward, backward = getattr(package, f"{kernel}_forward"), getattr(package, f"{kernel}_backward")
        result = forward(x, *state, weights, lengths=lengths, **options)
        results.append({**result._asdict(), **backward(result.saved, *grads)._asdict()})
    expected, got = results
    for name, a in expected.items():
        b = got[name]
        if name == "saved":
            continue
        assert (a is None) == (b is None), name
        if a is not None:
            assert isinstance(b, np.ndarray), name
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=name)


@runs_kernels
def test_device_arrays_are_refused_and_host_arguments_checked():
    """The entry points take host arrays only: a device array anywhere is a TypeError that says
    so; host arguments are checked as the CPU entry points check them."""
    from numba import cuda

    from tinyseq_jit import cuda as tc

    x, (h0, c0), weights, (d_out, d_h, d_c) = _kernel_arguments("lstm", {}, ("b_ih",), 2, lengths=None)
    refused = "device arrays are not supported \\(host arrays in and out\\)"
    with pytest.raises(TypeError, match=f"lstm_forward: {refused}"):
        tc.lstm_forward(cuda.to_device(x), h0, c0, weights)
    with pytest.raises(TypeError, match=f"lstm_forward: {refused}"):
        tc.lstm_forward(x, h0, c0, {**weights, "w_hh": cuda.to_device(weights["w_hh"])})
    with pytest.raises(TypeError, match=f"rnn_forward: {refused}"):
        tc.rnn_forward(x, h0, {"w_ih": np.ones((3, 2)), "w_hh": np.ones((3, 3))}, lengths=cuda.to_device([3, 1]))
    saved = tc.lstm_forward(x, h0, c0, weights).saved
    with pytest.raises(TypeError, match=f"lstm_backward: {refused}"):
        tc.lstm_backward(saved, d_out, d_h, cuda.to_device(d_c))
    with pytest.raises(ValueError, match=r"lstm_forward: h0 has shape \(2, 2\), expected \(2, 3\)"):
        tc.lstm_forward(x, h0[:, :2].copy(), c0, weights)
    with pytest.raises(ValueError, match=r"lstm_forward: lengths must lie in \[1, 3\]"):
        tc.lstm_forward(x, h0, c0, weights, lengths=[4, 1])


@runs_kernels
def test_gemm_refuses_what_it_cannot_multiply():
    from tinyseq_jit import cuda as tc

    a = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"op\(a\) is \(3, 4\) and op\(b\) is \(3, 2\): 4 != 3"):
        tc.gemm(a, np.ones((3, 2)))
    with pytest.raises(TypeError, match="share a float dtype"):
        tc.gemm(a, np.ones((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="accumulate=True needs an out"):
        tc.gemm(a, np.ones((4, 2)), accumulate=True)
    with pytest.raises(ValueError, match=r"out must be a C-contiguous \(3, 2\) float64 device array"):
        tc.gemm(a, np.ones((4, 2)), out=np.zeros((3, 2)))


@pytest.mark.skipif(SIMULATED, reason="checks the message where there is neither a GPU nor the simulator")
def test_without_a_gpu_the_package_imports_and_says_how_to_run():
    from tinyseq_jit import cuda as tc

    where, why = tc.status()
    if where == "gpu":
        pytest.skip("a real GPU is present")
    assert where is None and "NUMBA_ENABLE_CUDASIM=1" in why
    with pytest.raises(RuntimeError, match="gemm: numba.cuda finds no usable NVIDIA GPU"):
        tc.gemm(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="rnn_forward: numba.cuda finds no usable NVIDIA GPU"):
        tc.rnn_forward(np.ones((2, 1, 1)), np.zeros((1, 1)), {"w_ih": np.ones((1, 1)), "w_hh": np.ones((1, 1))})


def test_without_numba_cuda_the_package_imports_and_says_how_to_install():
    code = ("import sys; sys.modules['numba.cuda'] = None\n"  # as if numba-cuda were not installed
            "from tinyseq_jit import cuda\n"
            "print(cuda.status()[1])\n"
            "try:\n    cuda.gemm(None, None)\nexcept RuntimeError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "pip install -e \".[cuda]\"" in lines[0] and lines[1].startswith("gemm: numba.cuda cannot be imported")


@pytest.mark.skipif(SIMULATED, reason="the simulator can run backend='cuda'")
def test_cuda_backend_is_refused_with_a_reason():
    from tinyseq_jit import cuda as tc

    if tc.status()[0] == "gpu":
        pytest.skip("a real GPU is present")
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available: numba.cuda finds no usable NVIDIA GPU"):
        nn.LSTM(3, 4, backend="cuda")


# A few of tests/test_backends.py's configurations (mode, options, sizes, lengths, h0 given,
# seed), small enough for the simulator: every cell option, layers, directions, lengths.
LAYERS = [
    ("RNN", {"num_layers": 1, "bidirectional": True, "bias": True, "batch_first": False, "nonlinearity": "relu"},
     {"steps": 3, "batch": 2, "input_size": 2, "hidden": 3}, [3, 1], True, 1),
    ("LSTM", {"num_layers": 2, "bidirectional": False, "bias": True, "batch_first": True, "peephole": True,
              "coupled": True}, {"steps": 3, "batch": 2, "input_size": 2, "hidden": 2}, [2, 3], True, 2),
    ("LSTM", {"num_layers": 1, "bidirectional": True, "bias": False, "batch_first": False, "peephole": True,
              "coupled": False}, {"steps": 2, "batch": 3, "input_size": 1, "hidden": 2}, None, False, 3),
    ("GRU", {"num_layers": 1, "bidirectional": True, "bias": True, "batch_first": True, "reset_after": True},
     {"steps": 3, "batch": 2, "input_size": 2, "hidden": 3}, [1, 3], True, 4),
    ("GRU", {"num_layers": 2, "bidirectional": False, "bias": True, "batch_first": False, "reset_after": False},
     {"steps": 3, "batch": 2, "input_size": 2, "hidden": 2}, [3, 2], False, 5),
]


@runs_kernels
@pytest.mark.parametrize("config", LAYERS, ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYERS)])
def test_cuda_layers_equal_the_graph(poisoned, path, config):
    """backend="cuda", on both paths: the layer's outputs, final states and the gradients of its
    input, initial states and every parameter equal the graph backend's (float64 1e-9, float32 1e-4)."""
    compare(config, backend="cuda")
    compare(config, dtype=np.float32, rtol=1e-4, atol=1e-5, backend="cuda")


@runs_kernels
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=layer_configs())
def test_cuda_layers_equal_the_graph_on_drawn_configurations(poisoned, path, config):
    """tests/test_backends.py's property for backend="cuda", at the simulator's few examples."""
    compare(config, backend="cuda")
    compare(config, dtype=np.float32, rtol=1e-4, atol=1e-5, backend="cuda")


@runs_kernels
def test_cuda_gradient_norms_equal_the_graph_s(poisoned, path):
    layer = nn.LSTM(2, 3, num_layers=2, bidirectional=True, peephole=True).double()
    x = np.random.default_rng(6).standard_normal((3, 2, 2))
    flows = {}
    for backend in ("graph", "cuda"):
        layer.backend = backend
        flows[backend] = grad_norms_through_time(layer, x, lengths=[3, 2])
    np.testing.assert_allclose(flows["cuda"].h, flows["graph"].h, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(flows["cuda"].c, flows["graph"].c, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- full sizes, on a real GPU only

FULL_LAYERS = [  # as LAYERS, at sizes for both paths (H <= 64 runs per block, H > 64 per step)
    ("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": False, "peephole": True,
              "coupled": False}, {"steps": 40, "batch": 37, "input_size": 33, "hidden": 64}, "ragged", True, 11),
    ("LSTM", {"num_layers": 1, "bidirectional": False, "bias": True, "batch_first": True, "peephole": False,
              "coupled": True}, {"steps": 30, "batch": 64, "input_size": 100, "hidden": 130}, None, False, 12),
    ("GRU", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": False, "reset_after": True},
     {"steps": 50, "batch": 9, "input_size": 17, "hidden": 200}, "ragged", True, 13),
    ("GRU", {"num_layers": 1, "bidirectional": False, "bias": False, "batch_first": False, "reset_after": False},
     {"steps": 25, "batch": 70, "input_size": 64, "hidden": 48}, "ragged", True, 14),
    ("RNN", {"num_layers": 3, "bidirectional": True, "bias": True, "batch_first": False, "nonlinearity": "tanh"},
     {"steps": 100, "batch": 5, "input_size": 8, "hidden": 257}, None, True, 15),
]


@gpu_only
@pytest.mark.parametrize("config", FULL_LAYERS, ids=[f"{c[0]}-{c[2]['hidden']}" for c in FULL_LAYERS])
def test_cuda_layers_equal_the_graph_at_full_size(poisoned, config):
    mode, options, sizes, lengths, given_state, seed = config
    if lengths == "ragged":
        lengths = list(np.random.default_rng(seed).integers(1, sizes["steps"] + 1, sizes["batch"]))
    config = (mode, options, sizes, lengths, given_state, seed)
    compare(config, backend="cuda")
    # NOTE: float32 to 1e-3: over 100 steps of 3 layers the CPU kernels too are 4e-4 from the graph
    compare(config, dtype=np.float32, rtol=1e-3, atol=1e-4, backend="cuda")


@gpu_only
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_gemm_equals_numpy_at_full_size(dtype, rtol):
    from tinyseq_jit import cuda as tc

    rng = np.random.default_rng(16)
    a, b = rng.standard_normal((1000, 777)).astype(dtype), rng.standard_normal((1025, 777)).astype(dtype)
    np.testing.assert_allclose(tc.gemm(a, b, trans_b=True).copy_to_host(), a @ b.T, rtol=rtol, atol=rtol * 30)
