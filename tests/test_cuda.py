"""CUDA path: run in its own process under the simulator, NUMBA_ENABLE_CUDASIM=1 pytest -m cuda.

The simulator runs a kernel's threads on the CPU, so these shapes are tiny. The tiled GEMM
equals NumPy's product at ragged tile edges, in both dtypes and every transpose, writes
every element of its output and launches once; the RNN kernel pair equals the CPU pair
(outputs, every gradient, the gradient norms; with lengths, reverse, relu, partial biases;
float64 and float32) with every element written; the layers of every cell on
backend="cuda" equal the graph, and so do their gradient norms; each runs on both paths
(the time loop in one kernel, and a launch per step), whose launches per pass are counted;
the GPU benchmark runs end to end; without a GPU and without the simulator, and without
numba.cuda at all, the package imports and says why it cannot run.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tinyseq import nn
from tinyseq.bptt import grad_norms_through_time

from helpers import EXAMPLES, compare, layer_configs

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


@pytest.fixture(params=["per-block", "per-step"])
def path(request, monkeypatch):
    """Each test that takes it runs on both paths: the time loop in one kernel, and a launch a step."""
    from tinyseq_jit.cuda import _common

    if request.param == "per-step":
        monkeypatch.setattr(_common, "BLOCK_PATH_MAX_HIDDEN", 0)
    return request.param


@pytest.fixture
def poisoned(monkeypatch):
    """Every device array the kernels allocate starts as nan: an element they forget stays nan."""
    from numba import cuda

    def device_array(shape, dtype=np.float64, **kwargs):
        return cuda.to_device(np.full(shape, np.nan, dtype=dtype))

    monkeypatch.setattr(cuda, "device_array", device_array)


RNN_CASES = [  # nonlinearity, reverse, lengths, biases, dtype
    ("tanh", False, [4, 1, 3], ("b_ih", "b_hh"), np.float64),
    ("relu", True, [2, 4, 4], ("b_ih",), np.float64),
    ("tanh", True, None, (), np.float32),
    ("relu", False, [3, 3, 1], ("b_hh",), np.float32),
]


@runs_kernels
@pytest.mark.parametrize("nonlinearity,reverse,lengths,biases,dtype", RNN_CASES)
def test_rnn_kernels_equal_the_cpu_kernels(poisoned, path, nonlinearity, reverse, lengths, biases, dtype):
    """Outputs, every gradient and the gradient norms of the CUDA pair equal the CPU pair's
    (which equal the unrolled graph's, tests/test_backends.py), with every element written."""
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
    tc.reset_launches()
    grads = tc.rnn_backward(got.saved, d_out, d_h_n, grad_norms=norms)
    # per step: norms, point-wise, gemm; then 4 (dx, dW_ih, dW_hh, the bias sums); or all steps in one kernel
    assert sum(tc.reset_launches().values()) == (3 * steps + 4 if path == "per-step" else 1 + 4)
    for name, a in grads_cpu._asdict().items():
        b = getattr(grads, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol, err_msg=name)
    np.testing.assert_allclose(norms, norms_cpu, rtol=rtol, atol=rtol)


@runs_kernels
def test_rnn_launches_per_pass_do_not_depend_on_anything_but_T(poisoned, monkeypatch):
    from tinyseq_jit import cuda as tc
    from tinyseq_jit.cuda import _common

    monkeypatch.setattr(_common, "BLOCK_PATH_MAX_HIDDEN", 0)  # the per-step path
    rng = np.random.default_rng(2)
    for steps in (1, 3):
        x, h0 = rng.standard_normal((steps, 2, 3)), np.zeros((2, 4))
        weights = {"w_ih": rng.standard_normal((4, 3)), "w_hh": rng.standard_normal((4, 4))}
        tc.reset_launches()
        result = tc.rnn_forward(x, h0, weights)
        assert tc.reset_launches() == {"gemm_kernel_float64": steps + 1, "rnn_step_forward_float64": steps}
        grads = tc.rnn_backward(result.saved, np.ones((steps, 2, 4)), np.zeros((2, 4)), need_dx=False)
        assert tc.reset_launches() == {"gemm_kernel_float64": steps + 2, "rnn_step_backward_float64": steps,
                                       "column_sums_float64": 1}
        assert grads.x is None and grads.b_ih is None and grads.w_hh.shape == (4, 4)
    monkeypatch.setattr(_common, "BLOCK_PATH_MAX_HIDDEN", _common.MAX_HIDDEN)  # the per-block path: T-free
    for steps in (1, 3):
        result = tc.rnn_forward(rng.standard_normal((steps, 5, 3)), np.zeros((5, 4)), weights)
        assert tc.reset_launches() == {"gemm_kernel_float64": 1, "rnn_block_forward_float64": 1}
        tc.rnn_backward(result.saved, np.ones((steps, 5, 4)), np.zeros((5, 4)), need_dx=False)
        assert tc.reset_launches() == {"rnn_block_backward_float64": 1, "gemm_kernel_float64": 2,
                                       "column_sums_float64": 1}


# kernel, forward options, peepholes; launches forward, backward, backward recording norms
# (T steps) on the per-step path; forward and backward (recording or not) on the per-block path
PASSES = [
    ("lstm", {}, False, lambda t: 2 * t + 1, lambda t: 2 * t + 4, lambda t: 4 * t + 4, 2, 5),
    ("lstm", {"coupled": True}, True, lambda t: 2 * t + 1, lambda t: 2 * t + 6, lambda t: 4 * t + 6, 2, 7),
    ("lstm", {}, True, lambda t: 2 * t + 1, lambda t: 2 * t + 7, lambda t: 4 * t + 7, 2, 8),
    ("gru", {}, False, lambda t: 2 * t + 1, lambda t: 2 * t + 5, lambda t: 3 * t + 5, 2, 6),
    ("gru", {"reset_after": False}, False, lambda t: 4 * t + 1, lambda t: 4 * t + 5, lambda t: 5 * t + 5, 2, 6),
]


@runs_kernels
@pytest.mark.parametrize("kernel,options,peephole,forward,backward,recording,block_forward,block_backward", PASSES)
def test_launches_per_pass_grow_with_T_only_as_documented(path, kernel, options, peephole, forward, backward,
                                                          recording, block_forward, block_backward):
    if path == "per-block":
        forward, backward = (lambda t: block_forward), (lambda t: block_backward)
        recording = backward
    from tinyseq_jit import cuda as tc

    rng = np.random.default_rng(3)
    gates = {"lstm": 3 if options.get("coupled") else 4, "gru": 3}[kernel]
    for steps in (1, 2):
        weights = {"w_ih": rng.standard_normal((gates * 2, 2)), "w_hh": rng.standard_normal((gates * 2, 2))}
        if peephole:
            weights.update({k: np.ones(2) for k in (("cf", "co") if options.get("coupled") else ("ci", "cf", "co"))})
        states = (np.zeros((2, 2)),) * (2 if kernel == "lstm" else 1)
        tc.reset_launches()
        result = getattr(tc, f"{kernel}_forward")(rng.standard_normal((steps, 2, 2)), *states, weights, **options)
        assert sum(tc.reset_launches().values()) == forward(steps)
        backward_kernel = getattr(tc, f"{kernel}_backward")
        backward_kernel(result.saved, np.ones((steps, 2, 2)), *states)
        assert sum(tc.reset_launches().values()) == backward(steps)
        backward_kernel(result.saved, np.ones((steps, 2, 2)), *states, grad_norms=np.zeros((len(states), steps, 2)))
        assert sum(tc.reset_launches().values()) == recording(steps)


@runs_kernels
def test_the_gpu_benchmark_runs_end_to_end_at_tiny_shapes(tmp_path):
    path = EXAMPLES.parent / "benchmarks" / "cuda_speed.py"
    spec = importlib.util.spec_from_file_location("cuda_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--only", "S7,S6", "--no-grid", "--repeats", "1", "--warmup", "0",
                       "--out", str(tmp_path / "cuda.json")])
    assert [(r["id"], r["T"], r["B"], r["H"]) for r in rows] == [("S6", 3, 2, 4), ("S7", 3, 1, 4)]
    # RNN, H = 4: the per-block path (and the sum of the two biases), backward without dx
    assert rows[1]["launches_per_train_step"] == 3 + 4
    assert all(set(r["kernels_ms"]) == {"train", "fwd"} for r in rows)  # the kernels alone, on device arrays
    assert json.loads((tmp_path / "cuda.json").read_text())["where"] == "simulator"


@runs_kernels
def test_empty_batches_and_zero_units_launch_nothing_empty(poisoned):
    """B = 0 or H = 0 give empty results, as on the CPU, without launching an empty grid (a GPU refuses)."""
    from tinyseq_jit import cuda as tc

    out, h_n = nn.GRU(2, 3, backend="cuda")(np.ones((4, 0, 2), dtype=np.float32))
    assert out.shape == (4, 0, 3) and h_n.shape == (1, 0, 3)
    x, h0 = np.ones((3, 2, 2)), np.zeros((2, 0))
    result = tc.lstm_forward(x, h0, h0, {"w_ih": np.ones((0, 2)), "w_hh": np.ones((0, 0))})
    grads = tc.lstm_backward(result.saved, np.zeros((3, 2, 0)), h0, h0)
    assert result.out.shape == (3, 2, 0) and grads.x.shape == (3, 2, 2) and not grads.x.any()


# kernel, forward options, the weights (other than w_ih and w_hh), the number of states, lengths
DEVICE_CASES = [
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
@pytest.mark.parametrize("kernel,options,extra,states,lengths", DEVICE_CASES)
def test_device_arrays_in_give_device_arrays_out_with_the_same_numbers(poisoned, path, kernel, options, extra,
                                                                       states, lengths):
    """Device arguments are read in place (never written), the results stay on the device,
    equal to the NumPy call's, and are the caller's to write into before the backward; a
    padded step's nan in x is not read."""
    from numba import cuda

    from tinyseq_jit import cuda as tc

    x, state, weights, grads = _kernel_arguments(kernel, options, extra, states, lengths=lengths)
    forward, backward = getattr(tc, f"{kernel}_forward"), getattr(tc, f"{kernel}_backward")
    expected = forward(x, *state, weights, lengths=lengths, **options)
    expected_grads = backward(expected.saved, *grads)
    on_gpu = [cuda.to_device(a) for a in (x, *state)]
    weights_gpu = {k: cuda.to_device(v) for k, v in weights.items()}
    got = forward(*on_gpu, weights_gpu, lengths=lengths, **options)
    assert all(a is None or tc._runtime.on_device(a) for a in got[:3])
    results = {name: None if a is None else a.copy_to_host() for name, a in zip(got._fields[:3], got[:3])}
    for a in got[:3]:
        if a is not None:
            a.copy_to_device(np.zeros(a.shape, a.dtype))  # the caller's own: the backward must not read them
    got_grads = backward(got.saved, *(cuda.to_device(g) for g in grads))
    for name, a in [*expected._asdict().items(), *expected_grads._asdict().items()]:
        if name == "saved":
            continue
        b = results[name] if name in results else getattr(got_grads, name)
        assert (a is None) == (b is None), name
        if a is not None:
            if name not in results:
                assert tc._runtime.on_device(b), name
                b = b.copy_to_host()
            np.testing.assert_array_equal(b, a, err_msg=name)
    for a, b in zip(on_gpu, (x, *state)):  # the caller's arguments are as they were
        np.testing.assert_array_equal(a.copy_to_host(), b)
    for k, v in weights_gpu.items():
        np.testing.assert_array_equal(v.copy_to_host(), weights[k], err_msg=k)


@runs_kernels
def test_device_arguments_are_checked_as_host_ones():
    from numba import cuda

    from tinyseq_jit import cuda as tc

    x, (h0, c0), weights, (d_out, d_h, d_c) = _kernel_arguments("lstm", {}, ("b_ih",), 2, lengths=None)
    gpu = {k: cuda.to_device(v) for k, v in weights.items()}
    x_gpu, h_gpu, c_gpu = (cuda.to_device(a) for a in (x, h0, c0))
    with pytest.raises(TypeError, match=r"lstm_forward: x, the states and the weights must be all NumPy arrays or "
                                        r"all device arrays, got device arrays and NumPy ones \(c0\)"):
        tc.lstm_forward(x_gpu, h_gpu, c0, gpu)
    with pytest.raises(ValueError, match=r"lstm_forward: h0 has shape \(2, 2\), expected \(2, 3\)"):
        tc.lstm_forward(x_gpu, cuda.to_device(h0[:, :2].copy()), c_gpu, gpu)
    with pytest.raises(TypeError, match="lstm_forward: w_ih has dtype float32, expected float64"):
        tc.lstm_forward(x_gpu, h_gpu, c_gpu, {**gpu, "w_ih": cuda.to_device(weights["w_ih"].astype(np.float32))})
    with pytest.raises(ValueError, match="lstm_forward: the device array x must be C-contiguous"):
        tc.lstm_forward(cuda.to_device(np.zeros((2, 3, 2)))[:, :2], h_gpu, c_gpu, gpu)
    with pytest.raises(TypeError, match="lstm_forward: lengths must be a host array or a list"):
        tc.lstm_forward(x_gpu, h_gpu, c_gpu, gpu, lengths=cuda.to_device(np.array([3, 1])))
    with pytest.raises(ValueError, match=r"lstm_forward: lengths must lie in \[1, 3\]"):
        tc.lstm_forward(x_gpu, h_gpu, c_gpu, gpu, lengths=[4, 1])
    with pytest.raises(ValueError, match=r"lstm_forward: the CUDA kernels have no projection \(proj_size\), got w_hr"):
        tc.lstm_forward(x, h0[:, :1].copy(), c0, {**weights, "w_hr": np.ones((1, 3))})
    saved = tc.lstm_forward(x_gpu, h_gpu, c_gpu, gpu, lengths=[3, 1]).saved
    with pytest.raises(TypeError, match=r"lstm_backward: d_out and the final states' gradients must be all NumPy "
                                        r"arrays or all device arrays, got device arrays and NumPy ones \(d_h_n, d_c_n\)"):
        tc.lstm_backward(saved, cuda.to_device(d_out), d_h, d_c)
    with pytest.raises(TypeError, match="lstm_backward: the device array d_c_n must be C-contiguous and of x's "
                                        "dtype float64, got float32"):
        tc.lstm_backward(saved, *(cuda.to_device(g) for g in (d_out, d_h)), cuda.to_device(d_c.astype(np.float32)))
    with pytest.raises(ValueError, match=r"lstm_backward: d_out has shape \(2, 2, 3\), expected \(3, 2, 3\)"):
        tc.lstm_backward(saved, d_out[:2], d_h, d_c)


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
