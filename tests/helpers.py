"""Helpers shared by several test files: layer configurations and losses for gradient
checks, and a loader for the example scripts."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import strategies as st

import tinyseq as ts
from tinyseq import Tensor, nn

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def weighted_sum(outputs, seed=1):
    """A scalar touching every output with a different fixed weight."""
    rng = np.random.default_rng(seed)
    total = 0
    for out in outputs:
        if out is not None:
            total = total + (out * rng.standard_normal(out.shape)).sum()
    return total


def count_nodes(out, function):
    """How many nodes of the graph that produced ``out`` are ``function`` (a Function class)."""
    seen, stack, count = set(), [out], 0
    while stack:
        node = stack.pop()
        if id(node) in seen or node._ctx is None:
            continue
        seen.add(id(node))
        count += isinstance(node._ctx, function)
        stack.extend(node._ctx.parents)
    return count


def randn(rng, *shape):
    """A float64 leaf tensor of standard normals that requires grad."""
    return Tensor(rng.standard_normal(shape), requires_grad=True)


@st.composite
def layer_configs(draw, proj=False):
    """A recurrent layer drawn with its options, sizes, lengths, whether a state is given, a seed;
    with ``proj``, an LSTM also draws a ``proj_size`` (0 included; the CUDA kernels have none)."""
    mode = draw(st.sampled_from(["RNN", "LSTM", "GRU"]))
    options = {
        "num_layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
    }
    if mode == "RNN":
        options["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if mode == "LSTM":
        options["peephole"] = draw(st.booleans())
        options["coupled"] = draw(st.booleans())
    if mode == "GRU":
        options["reset_after"] = draw(st.booleans())
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    sizes = {"steps": steps, "batch": batch, "input_size": draw(st.integers(1, 3)), "hidden": draw(st.integers(1, 3))}
    if proj and mode == "LSTM":
        options["proj_size"] = draw(st.integers(0, sizes["hidden"] - 1))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    return mode, options, sizes, lengths, draw(st.booleans()), draw(st.integers(0, 2**16))


def layer_loss_and_inputs(mode, options, sizes, lengths, given_state, seed):
    """A float64 layer of a ``layer_configs`` draw, a scalar loss ``f(x, *states, *params)`` of its
    outputs, and those inputs (for gradcheck)."""
    rng = np.random.default_rng(seed)
    layer = getattr(nn, mode)(sizes["input_size"], sizes["hidden"], **options).double()
    steps, batch = sizes["steps"], sizes["batch"]
    shape = (batch, steps) if options.get("batch_first") else (steps, batch)
    x = randn(rng, *shape, sizes["input_size"])
    n_states = (2 if mode == "LSTM" else 1) if given_state else 0
    states = [randn(rng, *shape) for shape in state_shapes(mode, options, sizes)[:n_states]]
    lengths = None if lengths is None else np.asarray(lengths)

    def f(x, *rest):
        s = rest[:n_states]
        hx = (tuple(s) if mode == "LSTM" else s[0]) if s else None
        out, h_n = layer(x, hx, lengths=lengths)
        return weighted_sum([out, *(h_n if mode == "LSTM" else [h_n])], seed)

    return layer, f, [x, *states, *layer.parameters()]


def state_shapes(mode, options, sizes):
    """The shapes of a ``layer_configs`` layer's states: [h] or [h, c], (L*D, B, H) each, but
    h (L*D, B, P) with an LSTM's ``proj_size`` P > 0."""
    layers = options["num_layers"] * (2 if options["bidirectional"] else 1)
    h_size = options.get("proj_size") or sizes["hidden"]
    return [(layers, sizes["batch"], size) for size in ((h_size, sizes["hidden"]) if mode == "LSTM" else (h_size,))]


def load_example(name):
    """Import ``examples/<name>.py`` as the module ``name``, as a script would (the examples
    import their ``common`` helpers; worker processes re-import them by name)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(layer, backend_name, x, states, lengths, weights, mode):
    """Forward + backward of a weighted sum on one backend; returns (values, grads)."""
    layer.backend = backend_name
    layer.zero_grad()
    xt = Tensor(x.copy(), requires_grad=True)
    st_t = [Tensor(s.copy(), requires_grad=True) for s in states]
    hx = (tuple(st_t) if mode == "LSTM" else st_t[0]) if st_t else None
    out, h_n = layer(xt, hx, lengths=lengths)
    finals = list(h_n) if mode == "LSTM" else [h_n]
    total = 0
    for t, w in zip([out, *finals], weights):
        total = total + (t * w).sum()
    total.backward()
    values = [t.data for t in [out, *finals]]
    grads = [xt.grad, *(s.grad for s in st_t), *(p.grad for p in layer.parameters())]
    return values, grads


def compare(config, dtype=np.float64, rtol=1e-9, atol=1e-12, backend="numba"):
    """A ``layer_configs`` draw's outputs and gradients on ``backend`` equal the graph's."""
    mode, options, sizes, lengths, given_state, seed = config
    layer, _, inputs = layer_loss_and_inputs(*config)
    layer.to(dtype)
    x = inputs[0].data.astype(dtype)
    n_states = (2 if mode == "LSTM" else 1) if given_state else 0
    states = [s.data.astype(dtype) for s in inputs[1 : 1 + n_states]]
    lengths = None if lengths is None else np.asarray(lengths)
    rng = np.random.default_rng(seed)
    with ts.no_grad():
        probe, _ = layer(Tensor(x), None, lengths=lengths)
    weights = [rng.standard_normal(shape).astype(dtype) for shape in [probe.shape, *state_shapes(mode, options, sizes)]]
    graph = run(layer, "graph", x, states, lengths, weights, mode)
    fused = run(layer, backend, x, states, lengths, weights, mode)
    for kind, ref, got in (("value", graph[0], fused[0]), ("grad", graph[1], fused[1])):
        for k, (a, b) in enumerate(zip(ref, got)):
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=f"{kind} {k} of {config}")


# ---------------------------------------------------------------- fixtures of the CUDA tests


@pytest.fixture(params=["per-block", "per-step"])
def path(request, monkeypatch):
    """Each test that takes it runs on both CUDA paths: the time loop in one kernel, and a
    launch a step (import it into a test module to use it)."""
    from tinyseq_jit.cuda import _common

    if request.param == "per-step":
        monkeypatch.setattr(_common, "BLOCK_PATH_MAX_HIDDEN", 0)
    return request.param


@pytest.fixture
def poisoned(monkeypatch):
    """Every device array the kernels allocate uninitialised starts as nan: an element a kernel
    forgets to write, and reads, stays nan."""
    from numba import cuda

    def device_array(shape, dtype=np.float64, **kwargs):
        return cuda.to_device(np.full(shape, np.nan, dtype=dtype))

    monkeypatch.setattr(cuda, "device_array", device_array)
