"""The engine contract of tinyseq.tensor: dtypes, graph traversal, accumulation,
graph freeing, grad mode, detach, hooks, deep graphs and custom Functions."""

import contextlib
import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import tinyseq
from tinyseq import Tensor
from tinyseq.tensor import Function


def rand(shape, seed=0, requires_grad=True, low=-1.0, high=1.0):
    data = np.random.default_rng(seed).uniform(low, high, shape)
    return Tensor(data, requires_grad=requires_grad)


def graph_functions(root):
    """Every Function reachable from ``root`` (walked iteratively)."""
    found, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        fn = node._ctx
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        found.append(fn)
        stack.extend(fn.parents)
    return found


@contextlib.contextmanager
def recursion_limit(limit):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


@pytest.fixture(autouse=True)
def restore_grad_mode():
    """Keep a test that leaves grad mode off from breaking the tests after it."""
    yield
    sys.modules["tinyseq.tensor"]._grad_enabled = True


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_array_keeps_dtype_and_shares_memory(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    t = Tensor(a)
    assert t.dtype == dtype
    assert np.shares_memory(t.data, a)
    assert t.numpy() is t.data


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tensor_function_copies(dtype):
    a = np.arange(6, dtype=dtype)
    t = tinyseq.tensor(a)
    assert t.dtype == dtype
    assert not np.shares_memory(t.data, a)
    a[0] = 100
    assert t.data[0] == 0


@pytest.mark.parametrize("data", [[1, 2, 3], [[1.5, 2.0]], 3, 2.5, [True, 1]])
def test_python_data_becomes_float32(data):
    assert Tensor(data).dtype == np.float32
    assert tinyseq.tensor(data).dtype == np.float32


def test_dtype_argument_casts():
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(np.arange(3.0), dtype="float32").dtype == np.float32
    assert Tensor(np.arange(3), dtype=np.float64).dtype == np.float64
    assert tinyseq.tensor([1, 2], dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_arrays_stay_integer(dtype):
    assert Tensor(np.arange(3, dtype=dtype)).dtype == dtype


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point.*int64"):
        Tensor(np.arange(3, dtype=np.int64), requires_grad=True)


def test_requires_grad_on_integer_tensor_raises():
    t = Tensor(np.arange(3))
    with pytest.raises(TypeError, match="floating-point"):
        t.requires_grad_()
    assert t.requires_grad is False


def test_bool_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array([True, False]), requires_grad=True)


@pytest.mark.parametrize("data", [[1, None], np.array([1.0, "x"], dtype=object), [{}]])
def test_object_data_raises(data):
    with pytest.raises(TypeError, match="numeric"):
        Tensor(data)


@pytest.mark.parametrize("data", [["a", "b"], np.array(["a", "b"])])
def test_string_data_raises(data):
    with pytest.raises(TypeError, match="numeric.*got dtype <U1"):
        Tensor(data)


def test_requires_grad_and_is_leaf():
    x = Tensor(np.ones(2), requires_grad=True)
    y = x * 2
    assert x.requires_grad and x.is_leaf
    assert y.requires_grad and not y.is_leaf
    assert Tensor(np.ones(2)).requires_grad is False


# ---------------------------------------------------------------- graph shapes


def test_node_reused_several_times():
    x = rand((2, 3))
    (x * x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data**2 + 1)


def test_intermediate_reused_several_times():
    x = rand((4,))
    y = x * 3
    (y * y + y).sum().backward()
    np.testing.assert_allclose(x.grad, 3 * (2 * 3 * x.data + 1))


def test_diamond_graph():
    x = rand((3, 2))
    a = x * 2
    b = a.tanh()
    c = a.exp()
    (b * c).sum().backward()
    ad = 2 * x.data
    expected = 2 * ((1 - np.tanh(ad) ** 2) * np.exp(ad) + np.tanh(ad) * np.exp(ad))
    np.testing.assert_allclose(x.grad, expected)


def test_same_leaf_in_two_branches():
    x = rand((5,))
    w = rand((5,), seed=1, requires_grad=False)
    loss = (x * w).sum() + (x**2).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad, w.data + 2 * x.data)


def test_only_leaves_requiring_grad_get_grad():
    x = rand((3,))
    c = rand((3,), seed=1, requires_grad=False)
    (x * c).sum().backward()
    np.testing.assert_allclose(x.grad, c.data)
    assert c.grad is None


# ---------------------------------------------------------------- accumulation


def test_grads_accumulate_across_backward_calls():
    x = rand((3,))
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)


def test_setting_grad_to_none_restarts_accumulation():
    x = rand((3,))
    (x * x).sum().backward()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))


def test_zero_grad_restarts_accumulation():
    x = rand((3,))
    (x * x).sum().backward()
    x.zero_grad()
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))


def test_backward_on_a_leaf():
    x = Tensor(np.array(2.0), requires_grad=True)
    x.backward()
    np.testing.assert_allclose(x.grad, 1.0)


# ---------------------------------------------------------------- backward arguments


def test_backward_on_non_scalar_without_grad_raises():
    y = rand((2, 3)) * 2
    with pytest.raises(RuntimeError, match=r"\(2, 3\)"):
        y.backward()


def test_backward_on_one_element_non_scalar():
    x = rand((1, 1))
    (x * 5).backward()
    np.testing.assert_allclose(x.grad, [[5.0]])


@pytest.mark.parametrize("wrap", [np.asarray, Tensor])
def test_backward_with_explicit_grad(wrap):
    x = rand((2, 3))
    g = np.random.default_rng(3).standard_normal((2, 3))
    (x * x).backward(wrap(g))
    np.testing.assert_allclose(x.grad, 2 * x.data * g)


@pytest.mark.parametrize("shape", [(3,), (3, 2), (1, 3), (), (2, 3, 1)])
def test_backward_with_wrong_shaped_grad_raises(shape):
    y = rand((2, 3)) * 2
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        y.backward(np.ones(shape))


def test_backward_on_tensor_not_requiring_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.array(1.0)).backward()


def test_backward_on_result_of_constants_raises():
    y = (Tensor(np.ones(3)) * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


# ---------------------------------------------------------------- retain_graph


def test_second_backward_through_freed_graph_raises():
    x = rand((3,))
    loss = (x.tanh() * x).sum()
    loss.backward()
    first = np.array(x.grad)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, first)


def test_backward_through_freed_shared_subgraph_raises():
    x = rand((3,))
    y = x.exp()
    y.sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (y * 2).sum().backward()


def test_retain_graph_allows_second_backward_and_doubles_grad():
    x = rand((3,))
    loss = (x.tanh() * x).sum()
    loss.backward(retain_graph=True)
    once = np.array(x.grad)
    loss.backward()
    np.testing.assert_allclose(x.grad, 2 * once)
    t = np.tanh(x.data)
    np.testing.assert_allclose(once, (1 - t**2) * x.data + t)


# ---------------------------------------------------------------- memory


def test_backward_releases_saved_values_and_parents():
    x = rand((3, 4))
    w = rand((4, 2), seed=1)
    a = x @ w
    loss = (a.tanh() * a.exp()).sum()
    fns = graph_functions(loss)
    assert len(fns) == 5
    assert all(fn.parents for fn in fns)
    loss.backward()
    for fn in fns:
        assert fn.saved is None, type(fn).__name__
        assert fn.parents == (), type(fn).__name__


def test_retain_graph_keeps_saved_values_and_parents():
    x = rand((3,))
    loss = (x * x).sum()
    fns = graph_functions(loss)
    loss.backward(retain_graph=True)
    assert all(fn.parents for fn in fns)
    assert any(fn.saved is not None for fn in fns)


def test_large_intermediate_is_freed_after_backward():
    x = Tensor(np.linspace(-1, 1, 1_000_000), requires_grad=True)
    big = x * 2.0
    ref = weakref.ref(big)
    loss = big.tanh().sum()
    del big
    gc.collect()
    assert ref() is not None
    loss.backward()
    gc.collect()
    assert ref() is None


def make_training_step(batch=256, features=32, hidden=128):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, features)))
    y = Tensor(rng.standard_normal((batch, 1)))
    w1 = Tensor(rng.standard_normal((features, hidden)) * 0.1, requires_grad=True)
    w2 = Tensor(rng.standard_normal((hidden, 1)) * 0.1, requires_grad=True)

    def step():
        h = (x @ w1).tanh()
        loss = ((h @ w2 - y) ** 2).mean()
        loss.backward()
        for p in (w1, w2):
            p.data -= 0.01 * p.grad.data
            p.grad = None
        return loss.item()

    return step


def test_training_loop_memory_does_not_grow():
    step = make_training_step()
    losses = [step() for _ in range(5)]
    tracemalloc.start()
    try:
        sizes = []
        for _ in range(50):
            losses.append(step())
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    one_activation = 256 * 128 * 8
    assert sizes[-1] - sizes[9] < one_activation, sizes
    assert losses[-1] < losses[0]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # isinstance on every live object pokes deprecated modules
def test_training_loop_keeps_no_tensors_or_functions_alive():
    def live():
        gc.collect()
        # type(), not isinstance(): a dead weakref.proxy in gc's list raises on isinstance
        return sum(issubclass(type(o), (Tensor, Function)) for o in gc.get_objects())

    step = make_training_step()
    step()
    before = live()
    for _ in range(20):
        step()
    assert live() == before


# ---------------------------------------------------------------- grad mode


def test_no_grad_records_nothing():
    x = rand((3,))
    with tinyseq.no_grad():
        y = x * 2 + 1
        assert not tinyseq.is_grad_enabled()
    assert tinyseq.is_grad_enabled()
    assert y.requires_grad is False
    assert y._ctx is None
    assert y.is_leaf


def test_no_grad_as_decorator():
    @tinyseq.no_grad()
    def f(t):
        assert not tinyseq.is_grad_enabled()
        return t.tanh()

    y = f(rand((3,)))
    assert y.requires_grad is False and y._ctx is None
    assert tinyseq.is_grad_enabled()


def test_no_grad_decorator_on_recursive_function_restores_state():
    @tinyseq.no_grad()
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(3) == 3
    assert tinyseq.is_grad_enabled()


def test_nested_no_grad_restores_state():
    with tinyseq.no_grad():
        with tinyseq.no_grad():
            assert not tinyseq.is_grad_enabled()
        assert not tinyseq.is_grad_enabled()
    assert tinyseq.is_grad_enabled()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError):
        with tinyseq.no_grad():
            raise KeyError
    assert tinyseq.is_grad_enabled()


def test_enable_grad_inside_no_grad_records():
    x = rand((3,))
    with tinyseq.no_grad():
        with tinyseq.enable_grad():
            assert tinyseq.is_grad_enabled()
            y = x * 2
        assert not tinyseq.is_grad_enabled()
        z = x * 2
    assert y.requires_grad and y._ctx is not None
    assert not z.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 2.0))


def test_enable_grad_as_decorator_inside_no_grad():
    @tinyseq.enable_grad()
    def f(t):
        return t * 3

    x = rand((2,))
    with tinyseq.no_grad():
        y = f(x)
        assert not tinyseq.is_grad_enabled()
    assert y.requires_grad


def test_set_grad_enabled_called_alone_switches_until_switched_back():
    x = rand((3,))
    try:
        tinyseq.set_grad_enabled(False)
        assert not tinyseq.is_grad_enabled() and not (x * 2).requires_grad
        tinyseq.set_grad_enabled(True)
        assert tinyseq.is_grad_enabled() and (x * 2).requires_grad
    finally:
        tinyseq.set_grad_enabled(True)


def test_set_grad_enabled_as_a_block_restores_the_mode_before_it():
    x = rand((3,))
    with tinyseq.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert tinyseq.is_grad_enabled()
    with tinyseq.no_grad():
        with tinyseq.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not tinyseq.is_grad_enabled()
    with pytest.raises(KeyError):
        with tinyseq.set_grad_enabled(False):
            raise KeyError
    assert tinyseq.is_grad_enabled()


def test_set_grad_enabled_as_a_decorator_sets_the_mode_only_inside():
    @tinyseq.set_grad_enabled(False)
    def depth(n):
        assert not tinyseq.is_grad_enabled()
        return 0 if n == 0 else 1 + depth(n - 1)

    assert tinyseq.is_grad_enabled()  # decorating switched nothing
    assert depth(3) == 3
    assert tinyseq.is_grad_enabled()


def test_inference_mode_is_no_grad_and_its_tensors_are_ordinary():
    x, w = rand((3,)), rand((3,), seed=1)
    with tinyseq.inference_mode():
        y = x * 2
        assert not tinyseq.is_grad_enabled() and not y.requires_grad
    with tinyseq.no_grad():
        with tinyseq.inference_mode(False):  # records, as PyTorch's
            assert tinyseq.is_grad_enabled()

    @tinyseq.inference_mode
    def bare(t):
        return t * 2

    @tinyseq.inference_mode()
    def called(t):
        return t * 2

    assert not bare(x).requires_grad and not called(x).requires_grad and tinyseq.is_grad_enabled()
    (y * w).sum().backward()  # unlike PyTorch's inference tensors, y enters a graph later
    np.testing.assert_allclose(np.asarray(w.grad), 2 * x.data)


@pytest.mark.torch
def test_grad_mode_switches_match_torch():
    torch = pytest.importorskip("torch")
    seen = {}
    for lib, is_enabled in ((tinyseq, tinyseq.is_grad_enabled), (torch, torch.is_grad_enabled)):
        log = seen.setdefault(lib.__name__, [])

        @lib.set_grad_enabled(False)
        def inside():
            log.append(is_enabled())

        log.append(is_enabled())
        inside()
        with lib.no_grad():
            with lib.set_grad_enabled(True):
                log.append(is_enabled())
            log.append(is_enabled())
            with lib.inference_mode(False):
                log.append(is_enabled())
        lib.set_grad_enabled(False)
        log.append(is_enabled())
        lib.set_grad_enabled(True)
        with lib.inference_mode():
            log.append(is_enabled())
        log.append(is_enabled())
    assert seen["tinyseq"] == seen["torch"]


# ---------------------------------------------------------------- detach


def test_detach_shares_data_and_drops_grad():
    x = rand((3,))
    y = (x * 2).detach()
    d = x.detach()
    assert np.shares_memory(d.data, x.data)
    assert d.requires_grad is False and d.is_leaf
    assert y.requires_grad is False and y._ctx is None


def test_gradient_does_not_flow_through_detach():
    x = rand((4,))
    (x * x.detach()).sum().backward()
    np.testing.assert_allclose(x.grad, x.data)


# ---------------------------------------------------------------- hooks


def test_hook_on_intermediate_sees_its_gradient():
    x = rand((3,))
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(np.array(g)))
    (y**2).sum().backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * y.data)


def test_hook_replacement_changes_downstream_gradient():
    x = rand((3,))
    y = x * 3
    y.register_hook(lambda g: 2 * g)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 6.0))


def test_removed_hook_is_not_called():
    x = rand((3,))
    calls = []
    handle = x.register_hook(lambda g: calls.append(1) or 10 * g)
    handle.remove()
    handle.remove()
    (x * 3).sum().backward()
    assert calls == []
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))


def test_leaf_hook_runs_before_accumulation():
    x = rand((3,))
    seen = []
    x.register_hook(lambda g: seen.append(None if x.grad is None else np.array(x.grad)))
    (x * 2).sum().backward()
    (x * 5).sum().backward()
    assert seen[0] is None
    np.testing.assert_allclose(seen[1], np.full(3, 2.0))
    np.testing.assert_allclose(x.grad, np.full(3, 7.0))


def test_leaf_hook_replacement_is_what_accumulates():
    x = rand((3,))
    x.register_hook(lambda g: g * 0.5)
    (x * 4).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 2.0))


def wrong_shape_hook(g):
    return g[:1]


@pytest.mark.parametrize("leaf", [True, False])
def test_hook_returning_a_wrong_shape_names_the_hook(leaf):
    x = rand((3,))
    y = x if leaf else x * 2
    y.register_hook(wrong_shape_hook)
    with pytest.raises(RuntimeError, match=r"hook wrong_shape_hook returned a gradient of shape \(1,\) for a tensor of shape \(3,\)"):
        (y * 3).sum().backward()
    assert x.grad is None


def test_register_hook_without_requires_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).register_hook(lambda g: g)


def test_retain_grad_keeps_grad_on_non_leaf():
    x = rand((3,))
    y = x * 3
    z = x * 4
    y.retain_grad()
    (y * z).sum().backward()
    np.testing.assert_allclose(y.grad, z.data)
    assert z.grad is None
    np.testing.assert_allclose(x.grad, 3 * z.data + 4 * y.data)


# ---------------------------------------------------------------- deep graphs


def test_deep_affine_chain_has_no_recursion():
    n, c = 20_000, 0.9999
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    with recursion_limit(200):
        h = x
        for _ in range(n):
            h = h * c + x
        h.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, (1 - c ** (n + 1)) / (1 - c)), rtol=1e-9)


def test_deep_tanh_chain_matches_numpy_reverse_loop():
    n = 20_000
    w = rand((2, 3), seed=1, low=0.3, high=0.7)
    x = rand((2, 3), seed=2)
    with recursion_limit(200):
        h = Tensor(np.zeros((2, 3)))
        for _ in range(n):
            h = (h * w + x).tanh()
        h.sum().backward()

    hs = [np.zeros((2, 3))]
    for _ in range(n):
        hs.append(np.tanh(hs[-1] * w.data + x.data))
    gh, gw, gx = np.ones((2, 3)), np.zeros((2, 3)), np.zeros((2, 3))
    for t in range(n, 0, -1):
        da = gh * (1 - hs[t] ** 2)
        gw += da * hs[t - 1]
        gx += da
        gh = da * w.data
    np.testing.assert_allclose(h.data, hs[-1])
    np.testing.assert_allclose(w.grad, gw, rtol=1e-10)
    np.testing.assert_allclose(x.grad, gx, rtol=1e-10)


def test_dropping_a_deep_unbackpropagated_graph():
    x = rand((3,))
    h = x
    for _ in range(20_000):
        h = h * 0.5 + x
    ref = weakref.ref(h._ctx.parents[0])
    with recursion_limit(200):
        del h
        gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- custom Functions


class Double(Function):
    def forward(self, a):
        return 2 * a

    def backward(self, g):
        return 2 * g


class BadShapeGrad(Function):
    def forward(self, a):
        return 2 * a

    def backward(self, g):
        return np.ones(g.shape[1:])


class TooManyGrads(Function):
    def forward(self, a):
        return 2 * a

    def backward(self, g):
        return 2 * g, 2 * g


class TooFewGrads(Function):
    def forward(self, a, b):
        return a * b

    def backward(self, g):
        return g


def test_custom_function():
    x = rand((2, 3))
    y = Double.apply(x)
    assert isinstance(y._ctx, Double)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 2.0))


def test_custom_function_wrong_grad_shape_raises():
    x = rand((2, 3))
    with pytest.raises(RuntimeError, match=r"BadShapeGrad.*\(3,\).*\(2, 3\)"):
        BadShapeGrad.apply(x).sum().backward()


def test_custom_function_too_many_grads_raises():
    x = rand((2, 3))
    with pytest.raises(RuntimeError, match="TooManyGrads.*2.*1"):
        TooManyGrads.apply(x).sum().backward()


def test_custom_function_too_few_grads_raises():
    a, b = rand((3,)), rand((3,), seed=1)
    with pytest.raises(RuntimeError, match="TooFewGrads.*1.*2"):
        TooFewGrads.apply(a, b).sum().backward()


# ---------------------------------------------------------------- mixed dtypes


def test_float32_leaf_times_float64_array_keeps_float32_grad():
    x = Tensor(np.arange(1, 4, dtype=np.float32), requires_grad=True)
    c = np.array([0.5, 1.5, 2.5])
    (x * c).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, c, rtol=1e-6)


def test_mixed_precision_leaves_keep_their_grad_dtypes():
    a = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = Tensor(np.full(3, 2.0), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == np.float32
    assert b.grad.dtype == np.float64


def test_retained_non_leaf_grad_has_its_dtype():
    x = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = x * 2
    y.retain_grad()
    (y * np.full(3, 3.0)).sum().backward()
    assert y.grad.dtype == np.float32


@pytest.mark.parametrize(
    "op",
    [
        lambda x: x * 2.0,
        lambda x: 2.0 * x,
        lambda x: 2.0 - x,
        lambda x: x + 1,
        lambda x: x / 3,
        lambda x: 3 / x,
        lambda x: x**2,
        lambda x: x**0.5,
        lambda x: 2.0**x,
        lambda x: -x,
    ],
)
def test_python_scalar_arithmetic_keeps_float32(op):
    x = Tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_numpy_array_on_the_left_gives_a_tensor():
    x = rand((3,))
    for y in (np.ones(3) * x, np.ones(3) + x, np.ones(3) - x, np.ones(3) / x, np.ones((2, 3)) @ x):
        assert isinstance(y, Tensor)
        assert y.requires_grad
    (np.full(3, 4.0) * x).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 4.0))


# ---------------------------------------------------------------- item and repr


def test_item():
    assert Tensor(np.array([[2.5]])).item() == 2.5
    assert isinstance(Tensor(np.array(3.0)).item(), float)


def test_item_on_multi_element_tensor_raises():
    with pytest.raises(ValueError, match=r"\(2,\)"):
        Tensor(np.ones(2)).item()


def test_repr_shows_requires_grad():
    assert "requires_grad=True" in repr(Tensor(np.ones(2), requires_grad=True))
    assert "requires_grad" not in repr(Tensor(np.ones(2)))
    assert "float64" in repr(Tensor(np.ones(2)))


def test_sliced_gradients_accumulate_without_touching_caller_arrays():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    g = np.array([10.0, 20.0])
    (x + x[0]).backward(g)
    np.testing.assert_array_equal(g, [10.0, 20.0])
    np.testing.assert_array_equal(x.grad, [40.0, 20.0])


def test_every_row_sliced_and_used_densely():
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    w = x * 1.0
    out = sum((w[t] * (t + 1)).sum() for t in range(3)) + (w * 5.0).sum() + w[np.array([2, 2])].sum()
    out.backward()
    np.testing.assert_array_equal(x.grad, [[6, 6], [7, 7], [10, 10]])


def test_zero_dim_node_used_many_times_accumulates_every_use():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    s = x.sum()
    (s * 2.0 + s * 3.0 + s * 4.0 + s).backward()
    np.testing.assert_array_equal(x.grad, [10.0, 10.0])


# ---------------------------------------------------------------- PyTorch's Tensor methods


def test_size_numel_dim():
    t = Tensor(np.zeros((2, 3, 4)))
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and t.dim() == 3 and t.ndim == 3
    with pytest.raises(ValueError, match="size: axis 3 is out of range"):
        t.size(3)


def test_grad_fn_is_the_recording_function():
    x = rand((3,))
    assert x.grad_fn is None
    y = x * 2
    assert type(y.grad_fn).__name__ == "Mul"
    with tinyseq.no_grad():
        assert (x * 2).grad_fn is None


def test_numpy_sees_the_data():
    t = Tensor(np.array([[1.0, 5.0], [7.0, 2.0]]))
    assert np.asarray(t) is t.data
    assert np.argmax(t) == 2
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert np.array(t, copy=True) is not t.data
    np.testing.assert_array_equal(np.asarray([Tensor(np.array(1.0)), Tensor(np.array(2.0))]), [1.0, 2.0])


def test_clone_copies_and_keeps_the_graph():
    x = rand((3,))
    y = x.clone()
    assert y.data is not x.data and np.array_equal(y.data, x.data)
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 2.0))


def test_float_double_to():
    x = rand((2,))
    assert x.float().dtype == np.float32 and x.double().dtype == np.float64
    assert x.to(np.float32).dtype == np.float32 and x.to("cpu") is x and x.to(np.float64) is x
    x.to(np.float32).sum().backward()
    assert x.grad.dtype == np.float64
    with pytest.raises(ValueError, match="host memory"):
        x.to("cuda")
    with pytest.raises(TypeError, match="a dtype or 'cpu'"):
        x.to(3.5)


def test_tolist():
    assert Tensor(np.array([[1.0, 2.0]])).tolist() == [[1.0, 2.0]]


def test_a_list_of_tensors_is_refused_not_silently_detached():
    a = rand((2,))
    b = a * 2
    with pytest.raises(TypeError, match="list of Tensors; join them with ts.stack"):
        a + [a, b]
    with pytest.raises(TypeError, match="list of Tensors"):
        tinyseq.tensor([[a], [b]])


def test_equality_is_elementwise_as_pytorch():
    y = Tensor(np.array([[1, 2, 0], [3, 0, 0]]))
    mask = y != 0
    assert mask.dtype == np.bool_ and mask.tolist() == [[True, True, False], [True, False, False]]
    assert (y == 0).tolist() == [[False, False, True], [False, True, True]]
    assert (y == Tensor(np.array([1, 0, 0]))).tolist() == [[True, False, True], [False, True, True]]
    x = Tensor(np.array([1.0, 0.0]))
    assert tinyseq.where(x == 0, 10.0, x).tolist() == [1.0, 10.0]
    assert len({x, y}) == 2  # still hashable (by identity)
    assert Tensor(np.array([1.7, 2.2])).long().tolist() == [1, 2]


def test_to_takes_pytorchs_forms():
    t = rand((2,))
    assert t.to("cpu", np.float32).dtype == np.float32 and t.to(dtype=np.float32).dtype == np.float32
    assert t.to("cpu:0") is t
    with pytest.raises(TypeError, match="a dtype and/or 'cpu'"):
        t.to(None)


def test_python_scalars_and_truth_of_one_element():
    assert float(Tensor(np.array([2.5]))) == 2.5 and int(Tensor(np.array(3.0))) == 3
    assert bool(Tensor(np.array(1.0))) and not Tensor(np.array([0.0]))
    with pytest.raises(ValueError, match="truth value of a tensor with 2 elements is ambiguous"):
        bool(Tensor(np.array([1.0, 2.0])))
