"""Every op: forward against the NumPy expression, backward against finite differences.

``check_op`` does both, so each property below is one call. Shapes and values are drawn
by hypothesis; values stay away from kinks (|x| at 0 for abs/relu, ties for max) so
that finite differences are meaningful. Failures hypothesis found are pinned with
``@example``.
"""

import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyseq as ts
from tinyseq import Tensor, gradcheck


def check_op(op, ref, *arrays, mode="full", grad=True):
    """op(*tensors) equals ref(*arrays) in float64, and its backward passes gradcheck."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = op(*tensors)
    expected = np.asarray(ref(*arrays))
    assert out.dtype == np.float64
    assert out.shape == expected.shape, (out.shape, expected.shape)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    if grad:
        assert gradcheck(op, tensors, mode=mode)


# ---------------------------------------------------------------- strategies

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonempty_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


def floats(shape, lo=-2.0, hi=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False))


def away_from_zero(shape, lo=0.3, hi=2.0):
    """Values with lo <= |x| <= hi and random signs."""
    return st.tuples(floats(shape, lo, hi), hnp.arrays(np.bool_, shape)).map(lambda t: np.where(t[1], t[0], -t[0]))


@st.composite
def distinct(draw, shape, spacing=0.1):
    """Values at least ``spacing`` apart (no ties), in random order."""
    n = int(np.prod(shape))
    order = draw(st.permutations(range(n)))
    shift = draw(st.floats(-1, 1))
    return (np.asarray(order, dtype=np.float64) * spacing * 3 + shift).reshape(shape) / max(n, 1) * 2


@st.composite
def shape_and_axis(draw, shape_strategy=nonempty_shapes):
    """A shape and an axis argument for a reduction: None, an int, or a tuple."""
    shape = draw(shape_strategy)
    nd = len(shape)
    axis = draw(
        st.one_of(
            st.none(),
            st.integers(-nd, nd - 1),
            st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(tuple),
        )
    )
    return shape, axis


# ---------------------------------------------------------------- elementwise binary

BINARY = [
    (ts.add, np.add),
    (ts.sub, np.subtract),
    (ts.mul, np.multiply),
    (lambda a, b: a + b, np.add),
    (lambda a, b: a - b, np.subtract),
    (lambda a, b: a * b, np.multiply),
]


@pytest.mark.parametrize("op,ref", BINARY)
@given(data=st.data(), shapes=broadcast_pairs)
@example(data=None, shapes=hnp.BroadcastableShapes(input_shapes=((), (2, 3)), result_shape=(2, 3)))
def test_binary(op, ref, data, shapes):
    sa, sb = shapes.input_shapes
    if data is None:
        a, b = np.full(sa, 0.5), np.arange(6.0).reshape(sb)
    else:
        a, b = data.draw(floats(sa)), data.draw(floats(sb))
    check_op(op, ref, a, b)


@given(data=st.data(), shapes=broadcast_pairs)
def test_div(data, shapes):
    sa, sb = shapes.input_shapes
    check_op(lambda a, b: a / b, np.divide, data.draw(floats(sa)), data.draw(away_from_zero(sb, 0.5, 2)))


@given(data=st.data(), shapes=broadcast_pairs)
def test_pow_tensor_exponent(data, shapes):
    sa, sb = shapes.input_shapes
    check_op(lambda a, b: a**b, np.power, data.draw(floats(sa, 0.5, 2)), data.draw(floats(sb, -2, 2)))


@given(a=floats((2, 3), 0.5, 2), p=st.sampled_from([2, 3, -1, 0.5, -1.5, 2.5]))
def test_pow_scalar_exponent(a, p):
    check_op(lambda x: x**p, lambda x: x**p, a)


def test_pow_zero_exponent_has_zero_gradient_at_zero():
    x = Tensor(np.array([0.0, 2.0]), requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    a, b = Tensor(np.array([0.0, 0.0, 2.0]), requires_grad=True), Tensor(np.array([0.0, 2.0, 0.0]), requires_grad=True)
    (a**b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.0, 0.0])  # PyTorch's values
    np.testing.assert_allclose(b.grad, [0.0, 0.0, np.log(2.0)])


def test_rpow_and_reflected_scalars():
    a = np.array([0.5, 1.0, 1.5])
    check_op(lambda x: 2.0**x, lambda x: 2.0**x, a)
    check_op(lambda x: 3.0 - x, lambda x: 3.0 - x, a)
    check_op(lambda x: 3.0 / x, lambda x: 3.0 / x, a)


@pytest.mark.parametrize("op,ref", [(ts.maximum, np.maximum), (ts.minimum, np.minimum)])
@given(data=st.data(), shape=shapes)
def test_maximum_minimum(op, ref, data, shape):
    a = data.draw(floats(shape))
    b = a + data.draw(away_from_zero(shape, 0.05, 1.0))
    check_op(op, ref, a, b)


@pytest.mark.parametrize("op,ref", [(ts.maximum, np.maximum), (ts.minimum, np.minimum)])
def test_maximum_minimum_ties_split_gradient(op, ref):
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 3.0]), requires_grad=True)
    op(a, b).sum().backward()
    assert a.grad[0] == b.grad[0] == 0.5


@given(data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
def test_where(data, shapes):
    sc, sa, sb = shapes.input_shapes
    cond = data.draw(hnp.arrays(np.bool_, sc))
    check_op(lambda a, b: ts.where(cond, a, b), lambda a, b: np.where(cond, a, b), data.draw(floats(sa)), data.draw(floats(sb)))


# ---------------------------------------------------------------- elementwise unary

UNARY = [
    ("neg", lambda x: -x, np.negative, floats),
    ("exp", ts.exp, np.exp, floats),
    ("log", ts.log, np.log, lambda s: floats(s, 0.2, 3)),
    ("sqrt", ts.sqrt, np.sqrt, lambda s: floats(s, 0.2, 3)),
    ("abs", ts.abs, np.abs, away_from_zero),
    ("tanh", ts.tanh, np.tanh, floats),
    ("sigmoid", ts.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda s: floats(s, -6, 6)),
    ("relu", ts.relu, lambda x: np.maximum(x, 0), away_from_zero),
    ("leaky_relu", lambda x: ts.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x), away_from_zero),
    ("clip", lambda x: ts.clip(x, -1.0, 1.0), lambda x: np.clip(x, -1, 1), lambda s: floats(s, -2, 2).map(lambda a: np.where(np.abs(np.abs(a) - 1) < 0.05, 0.5, a))),
    ("clamp_min", lambda x: ts.clamp(x, min=0.5), lambda x: np.maximum(x, 0.5), lambda s: floats(s, -2, 2).map(lambda a: np.where(np.abs(a - 0.5) < 0.05, 0.0, a))),
]


@pytest.mark.parametrize("name,op,ref,values", UNARY, ids=[u[0] for u in UNARY])
@given(data=st.data(), shape=shapes)
def test_unary(name, op, ref, values, data, shape):
    check_op(op, ref, data.draw(values(shape)))


def test_methods_match_functions():
    x = np.linspace(0.2, 1.8, 6).reshape(2, 3)
    for name in ["exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu"]:
        np.testing.assert_array_equal(getattr(Tensor(x), name)().data, getattr(ts, name)(Tensor(x)).data)


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for dtype in (np.float32, np.float64):
            x = Tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype), requires_grad=True)
            y = ts.sigmoid(x)
            y.sum().backward()
            assert np.all(np.isfinite(y.data)) and np.all(np.isfinite(np.asarray(x.grad)))
            assert y.data[0] == 0 and y.data[2] == 0.5 and y.data[-1] == 1


@given(a=floats((3, 2)))
def test_cast_round_trip(a):
    x = Tensor(a, requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, np.full((3, 2), 2.0))


# ---------------------------------------------------------------- matmul

@st.composite
def matmul_shapes(draw):
    """Operand shapes NumPy's matmul accepts: 1-D or matrices with broadcast batch dims."""
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    ba, bb = batch.input_shapes
    sa = (k,) if draw(st.booleans()) else ba + (m, k)
    sb = (k,) if draw(st.booleans()) else bb + (k, n)
    return sa, sb


@given(data=st.data(), pair=matmul_shapes())
@example(data=None, pair=((1,), (1,)))
@example(data=None, pair=((3,), (2, 3, 4)))
def test_matmul(data, pair):
    sa, sb = pair
    if data is None:
        a, b = np.linspace(-1, 1, int(np.prod(sa))).reshape(sa), np.linspace(0.5, 2, int(np.prod(sb))).reshape(sb)
    else:
        a, b = data.draw(floats(sa)), data.draw(floats(sb))
    check_op(ts.matmul, np.matmul, a, b)
    check_op(lambda x, y: x @ y, np.matmul, a, b)


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3), (1, 3)])
def test_affine_is_matmul_then_add_as_one_node(shape):
    """ops.Affine (what linear makes inside a recurrence's unroll): a @ w + bias, checked
    against NumPy and finite differences, for every input."""
    rng = np.random.default_rng(7)
    a, w, bias = rng.standard_normal(shape), rng.standard_normal((3, 5)), rng.standard_normal(5)
    check_op(lambda x, y, b: ts.ops.Affine.apply(x, y, b), lambda x, y, b: x @ y + b, a, w, bias)


def test_matmul_shape_error_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(3, 4\) and \(5, 2\) are not aligned \(4 != 5\)"):
        ts.matmul(Tensor(np.ones((3, 4))), Tensor(np.ones((5, 2))))
    with pytest.raises(ValueError, match="matmul: batch dimensions"):
        ts.matmul(Tensor(np.ones((2, 3, 4))), Tensor(np.ones((3, 4, 2))))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        ts.matmul(Tensor(2.0), Tensor(np.ones(3)))


def _empty_matmul_pairs():
    """Operand shapes with a 0 somewhere, every form NumPy's matmul accepts: 1-D, matrix and
    batched, with m, k, n in {0, 2} and batch dims of 0, 1 and 2 broadcast against each other."""
    pairs = []
    for m, k, n in itertools.product((0, 2), repeat=3):
        forms_a = [(k,), (m, k), (0, m, k), (1, m, k), (2, m, k)]
        forms_b = [(k,), (k, n), (0, k, n), (1, k, n), (2, k, n), (1, 1, k, n)]
        for sa, sb in itertools.product(forms_a, forms_b):
            if 0 in sa + sb and (sa, sb) not in pairs:
                try:
                    np.broadcast_shapes(sa[:-2], sb[:-2])
                except ValueError:
                    continue
                pairs.append((sa, sb))
    return pairs


EMPTY_MATMUL_PAIRS = _empty_matmul_pairs()


@pytest.mark.parametrize("sa, sb", EMPTY_MATMUL_PAIRS, ids=str)
def test_matmul_with_a_zero_size_dimension(sa, sb):
    """A 0 anywhere (rows, the contracted k, columns, a batch dim) gives NumPy's result (zeros for
    k = 0), and gradients pass finite differences (zeros where the output is empty)."""
    rng = np.random.default_rng(0)
    check_op(ts.matmul, np.matmul, rng.standard_normal(sa), rng.standard_normal(sb))


def test_matmul_of_empty_matrices_in_float32_goes_through_blas_as_zeros():
    """(8, 0) @ (0, 8) (the issue's case) is an (8, 8) of zeros and so are its gradients' partners,
    also when every product goes to SciPy's gemm (THREADED_MNK 0)."""
    from tinyseq import _blas

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_blas, "THREADED_MNK", 0)
        for skinny in (64, 0):
            mp.setattr(_blas, "SKINNY_ROWS", skinny)
            a = Tensor(np.ones((8, 0), np.float32), requires_grad=True)
            b = Tensor(np.ones((0, 8), np.float32), requires_grad=True)
            out = a @ b
            assert out.shape == (8, 8) and out.dtype == np.float32 and not out.data.any()
            out.sum().backward()
            assert a.grad.shape == (8, 0) and b.grad.shape == (0, 8)
            c = Tensor(np.ones((0, 8), np.float32), requires_grad=True)
            d = Tensor(np.ones((8, 0), np.float32), requires_grad=True)
            (c @ d).sum().backward()
            assert c.grad.shape == (0, 8) and not c.grad.data.any() and not d.grad.data.any()


@pytest.mark.torch
def test_matmul_with_a_zero_size_dimension_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    for sa, sb in EMPTY_MATMUL_PAIRS:
        (xa, ta), (xb, tb) = _torch_pair(torch, rng.standard_normal(sa)), _torch_pair(torch, rng.standard_normal(sb))
        ours, theirs = ts.matmul(xa, xb), torch.matmul(ta, tb)
        assert ours.shape == tuple(theirs.shape), (sa, sb)
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
        weights = rng.standard_normal(ours.shape)
        (ours * weights).sum().backward()
        (theirs * torch.tensor(weights)).sum().backward()
        for x, t in ((xa, ta), (xb, tb)):
            np.testing.assert_allclose(x.grad.data, t.grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=str((sa, sb)))


def _layouts(shape, rng, dtype):
    """The same matrix C-contiguous, F-contiguous (a transpose) and strided (a slice)."""
    m = rng.standard_normal(shape).astype(dtype)
    return [m, np.asfortranarray(m), rng.standard_normal((shape[0], 2 * shape[1])).astype(dtype)[:, ::2]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_matmul_equals_numpy_for_every_layout(dtype):
    """tinyseq's GEMM (``tinyseq._blas``: SciPy's BLAS, as the kernels) takes any layout."""
    from tinyseq import _blas

    rng = np.random.default_rng(0)
    # THREADED_MNK 0: every product through SciPy's gemm; SKINNY_ROWS: both of its layouts
    for threaded, skinny in ((_blas.THREADED_MNK, 64), (0, 64), (0, 0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_blas, "THREADED_MNK", threaded)
            mp.setattr(_blas, "SKINNY_ROWS", skinny)
            for a in _layouts((5, 3), rng, dtype):
                for b in _layouts((3, 4), rng, dtype):
                    got = _blas.matmul(a, b)
                    assert got.dtype == dtype and got.flags.c_contiguous
                    np.testing.assert_allclose(got, np.dot(a, b), rtol=1e-5 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("skinny", [64, 0])
def test_blas_matmul_falls_back_to_numpy_and_takes_empty_operands(skinny):
    from tinyseq import _blas

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_blas, "THREADED_MNK", 0)
        mp.setattr(_blas, "SKINNY_ROWS", skinny)
        ints = np.arange(6).reshape(2, 3)
        np.testing.assert_array_equal(_blas.matmul(ints, ints.T), ints @ ints.T)
        mixed = _blas.matmul(np.ones((2, 3), np.float32), np.ones((3, 2)))
        assert mixed.dtype == np.float64 and (mixed == 3).all()
        row, col = np.arange(3.0, dtype=np.float32)[None], np.arange(3.0, dtype=np.float32)[:, None]
        np.testing.assert_array_equal(_blas.matmul(row, col), row @ col)
        np.testing.assert_array_equal(_blas.matmul(col, row), col @ row)
        for sa, sb in [((2, 0), (0, 3)), ((0, 3), (3, 2)), ((2, 3), (3, 0))]:
            got = _blas.matmul(np.ones(sa, np.float32), np.ones(sb, np.float32))
            assert got.shape == (sa[0], sb[1]) and not got.any()
        with pytest.raises(ValueError, match=r"matmul: expected \(M, K\) and \(K, N\).*\(2, 3\) and \(2, 3\)"):
            _blas.matmul(np.ones((2, 3)), np.ones((2, 3)))


def test_blas_matmul_without_scipy_is_numpys():
    from tinyseq import _blas

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_blas, "_gemm", {})  # as _load_gemm leaves it when SciPy is missing
        mp.setattr(_blas, "THREADED_MNK", 0)
        a, b = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
        np.testing.assert_array_equal(_blas.matmul(a, b), np.dot(a, b))


# ---------------------------------------------------------------- reductions

REDUCTIONS = [
    ("sum", ts.sum, np.sum, floats),
    ("mean", ts.mean, np.mean, floats),
    ("amax", ts.amax, np.max, distinct),
    ("amin", ts.amin, np.min, distinct),
    ("logsumexp", ts.logsumexp, lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)), floats),
]


@pytest.mark.parametrize("name,op,ref,values", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@given(data=st.data(), sa=shape_and_axis(), keepdims=st.booleans())
def test_reduction(name, op, ref, values, data, sa, keepdims):
    shape, axis = sa
    check_op(lambda x: op(x, axis=axis, keepdims=keepdims), lambda x: ref(x, axis=axis, keepdims=keepdims), data.draw(values(shape)))


@given(data=st.data(), sa=shape_and_axis(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4)), keepdims=st.booleans(), correction=st.sampled_from([0, 1]))
def test_var(data, sa, keepdims, correction):
    shape, axis = sa
    check_op(
        lambda x: ts.var(x, axis=axis, keepdims=keepdims, correction=correction),
        lambda x: np.var(x, axis=axis, keepdims=keepdims, ddof=correction),
        data.draw(floats(shape)),
    )


def test_reductions_of_a_scalar():
    check_op(ts.sum, np.sum, np.array(1.5))
    check_op(ts.max, np.max, np.array(1.5))


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "logsumexp", "squeeze", "softmax", "log_softmax"])
def test_a_zero_dim_tensor_takes_dim_0_and_minus_1(name, dim):
    x = Tensor(np.array(1.5), requires_grad=True)
    y = getattr(x, name)(dim)
    assert y.shape == ()
    y.backward()
    assert x.grad.shape == ()
    values, indices = x.max(dim)
    assert values.item() == 1.5 and indices.item() == 0
    with pytest.raises(ValueError, match="axis 1 is out of range for a tensor with 0 dimensions"):
        getattr(x, name)(1)


def test_zero_dim_var_argmax_min():
    x = Tensor(np.array(2.5), requires_grad=True)
    with pytest.raises(ValueError, match=r"var: need more than 1 elements to reduce, got 1 \(shape \(\)\)"):
        x.var(0)
    assert x.var(dim=-1, correction=0).item() == 0.0
    assert ts.argmax(x, 0).item() == 0 and x.argmin(-1).item() == 0
    values, indices = x.min(0)
    assert values.item() == 2.5 and indices.item() == 0
    values.backward()
    assert x.grad == 1.0


def test_ambiguous_axes_are_refused():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"sum: axis=\(\) is ambiguous"):
        x.sum(dim=())  # NumPy: no axis; PyTorch: all axes
    with pytest.raises(ValueError, match="amax: axis True is out of range"):
        x.amax(True)
    with pytest.raises(TypeError, match="max: keepdims needs an axis"):
        ts.max(x, keepdim=True)


def test_an_integer_cast_carries_no_gradient():
    t = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    i = t.to(np.int64)
    assert i.dtype == np.int64 and not i.requires_grad and i.tolist() == [1, -2]
    (i * 1.0 + t).sum().backward()
    np.testing.assert_array_equal(t.grad, [1.0, 1.0])  # as PyTorch: only the float path counts


def test_pytorch_argument_names():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert x.sum(dim=1, keepdim=True).shape == (2, 1, 4)
    assert ts.mean(x, dim=(0, 2)).shape == (3,)
    assert x.amax(dim=-1).shape == (2, 3) and x.var(dim=0).shape == (3, 4)
    assert ts.logsumexp(x, dim=0, keepdim=True).shape == (1, 3, 4)
    assert x.softmax(dim=0).shape == x.log_softmax(dim=1).shape == (2, 3, 4)
    assert ts.cat([x, x], dim=1).shape == (2, 6, 4) and ts.stack([x, x], dim=3).shape == (2, 3, 4, 2)
    assert [p.shape for p in x.split(2, dim=2)] == [(2, 3, 2)] * 2 and len(ts.chunk(x, 3, dim=1)) == 3
    assert x.unsqueeze(dim=0).shape == (1, 2, 3, 4) and x.unsqueeze(0).squeeze(dim=0).shape == (2, 3, 4)
    assert x.transpose(dim0=0, dim1=2).shape == (4, 3, 2)
    with pytest.raises(TypeError, match="both axis= and dim="):
        x.sum(axis=0, dim=1)


def test_amax_ties_share_gradient():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    ts.amax(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])
    x.grad = None
    x.max().backward()  # no dim: PyTorch's max() also spreads over ties
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [0, 0, 0]])


@pytest.mark.parametrize("op,pick,arg", [(ts.max, np.max, np.argmax), (ts.min, np.min, np.argmin)])
@given(data=st.data(), shape=nonempty_shapes, keepdims=st.booleans())
def test_max_min_along_a_dim_return_values_and_indices(op, pick, arg, data, shape, keepdims):
    x = data.draw(distinct(shape))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    values, indices = op(Tensor(x), dim, keepdims)
    np.testing.assert_array_equal(values.data, pick(x, axis=dim, keepdims=keepdims))
    np.testing.assert_array_equal(indices.data, arg(x, axis=dim, keepdims=keepdims))
    assert indices.dtype == np.int64
    check_op(lambda t: op(t, dim=dim, keepdim=keepdims).values, lambda a: pick(a, axis=dim, keepdims=keepdims), x)


def test_max_along_a_dim_sends_the_gradient_to_the_returned_index():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    result = x.max(-1)
    _, idx = result  # the PyTorch idiom: values, indices
    assert result.indices is idx and idx.tolist() == [1, 0]
    result.values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 1, 0], [1, 0, 0]])


def test_max_min_other_forms():
    a, b = Tensor(np.array([1.0, 5.0])), Tensor(np.array([3.0, 2.0]))
    np.testing.assert_array_equal(ts.max(a, b).data, [3, 5])  # PyTorch's elementwise form
    np.testing.assert_array_equal(ts.min(a, b).data, [1, 2])
    assert ts.max(a).item() == 5 and a.min().item() == 1
    with pytest.raises(TypeError, match="amax"):
        a.max(dim=(0,))


def test_argmax_argmin():
    x = np.array([[1.0, 7.0, 7.0], [4.0, 0.0, 9.0]])
    assert ts.argmax(x).item() == 5 and Tensor(x).argmin().item() == 4
    np.testing.assert_array_equal(Tensor(x).argmax(dim=1).data, [1, 2])
    assert Tensor(x).argmin(0, keepdim=True).shape == (1, 3)
    assert Tensor(x).argmax(keepdim=True).shape == (1, 1)
    assert ts.argmax(Tensor(np.array(3.0)), 0).item() == 0


def test_reduction_errors():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="sum: axis 2 is out of range"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="max: cannot reduce over an empty axis"):
        Tensor(np.ones((0, 3))).max(axis=0)
    with pytest.raises(ValueError, match="var: need more than 1 elements"):
        Tensor(np.ones((1, 3))).var(axis=0)


def test_logsumexp_is_stable():
    x = Tensor(np.array([[1e4, 1e4 - 1.0], [-1e4, -1e4 + 1.0]]), requires_grad=True)
    y = ts.logsumexp(x, axis=1)
    np.testing.assert_allclose(y.data, [1e4 + np.log1p(np.exp(-1.0)), -1e4 + 1.0 + np.log1p(np.exp(-1.0))])
    y.sum().backward()
    assert np.all(np.isfinite(np.asarray(x.grad)))
    assert ts.logsumexp(Tensor(np.array([-np.inf, -np.inf]))).item() == -np.inf


# ---------------------------------------------------------------- softmax family


@pytest.mark.parametrize(
    "op,ref",
    [
        (ts.softmax, lambda x, axis: np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)),
        (ts.log_softmax, lambda x, axis: x - np.log(np.exp(x).sum(axis=axis, keepdims=True))),
    ],
    ids=["softmax", "log_softmax"],
)
@given(data=st.data(), shape=nonempty_shapes)
def test_softmax_family(op, ref, data, shape):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_op(lambda x: op(x, axis=axis), lambda x: ref(x, axis), data.draw(floats(shape, -3, 3)))


def test_softmax_family_is_stable():
    x = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(over="raise"):
        np.testing.assert_allclose(ts.softmax(Tensor(x)).data, [[1, 0, 0]])
        np.testing.assert_allclose(ts.log_softmax(Tensor(x)).data, [[0, -1000, -2000]])


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_softmax_nll(data, shape):
    """The fused cross-entropy op: -log softmax(x)[target] per position, and its gradient."""
    target = data.draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))

    def ref(x):
        log_p = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        return -np.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]

    check_op(lambda x: ts.ops.softmax_nll(x, target), ref, data.draw(floats(shape, -3, 3)))


def test_softmax_nll_is_stable_and_checks_targets():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    with np.errstate(over="raise"):
        loss = ts.ops.softmax_nll(x, np.array([1]))
        loss.backward()
    np.testing.assert_allclose(loss.data, [1000.0])
    np.testing.assert_allclose(x.grad, [[1, -1, 0]], atol=1e-300)
    with pytest.raises(ValueError, match=r"softmax_nll: targets must lie in \[0, 3\), got values from 3 to 3"):
        ts.ops.softmax_nll(x, np.array([3]))
    with pytest.raises(TypeError, match="softmax_nll: targets must be integers, got dtype float64"):
        ts.ops.softmax_nll(x, np.array([0.0]))
    with pytest.raises(ValueError, match=r"softmax_nll: expected targets of shape \(1,\), got \(2,\)"):
        ts.ops.softmax_nll(x, np.array([0, 1]))


# ---------------------------------------------------------------- shape


@given(data=st.data(), shape=shapes)
def test_reshape(data, shape):
    n = int(np.prod(shape))
    target = data.draw(st.sampled_from([(n,), (1, n), (n, 1), (-1,), (1, -1)]))
    check_op(lambda x: x.reshape(target), lambda x: x.reshape(target), data.draw(floats(shape)))


@given(data=st.data(), shape=shapes)
def test_permute_and_transpose(data, shape):
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    a = data.draw(floats(shape))
    check_op(lambda x: ts.permute(x, axes), lambda x: np.transpose(x, axes), a)
    check_op(lambda x: x.T, lambda x: x.T, a)
    if len(shape) >= 2:
        check_op(lambda x: x.transpose(0, -1), lambda x: np.swapaxes(x, 0, -1), a)


@given(data=st.data(), shapes=broadcast_pairs)
def test_expand(data, shapes):
    sa, _ = shapes.input_shapes
    check_op(lambda x: ts.expand(x, shapes.result_shape), lambda x: np.broadcast_to(x, shapes.result_shape), data.draw(floats(sa)))


def test_expand_keeps_minus_one():
    check_op(lambda x: x.expand(4, -1, 3), lambda x: np.broadcast_to(x, (4, 2, 3)), np.ones((2, 1)))


@given(data=st.data(), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3))
def test_squeeze_unsqueeze(data, shape):
    a = data.draw(floats(shape))
    check_op(ts.squeeze, np.squeeze, a)
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_op(lambda x: ts.unsqueeze(x, axis), lambda x: np.expand_dims(x, axis), a)
    ones = [i for i, n in enumerate(shape) if n == 1]
    if ones:
        check_op(lambda x: x.squeeze(ones[0]), lambda x: np.squeeze(x, ones[0]), a)


def test_shape_errors():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\) into \(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="reshape"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 3\) to \(2, 4\)"):
        x.expand(2, 4)
    assert x.squeeze(1).shape == (2, 3)  # as PyTorch: an axis of another size than 1 stays
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        x + Tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"mul: shapes"):
        np.ones(4) * x


# ---------------------------------------------------------------- indexing

BASIC_INDICES = [
    (0,),
    (-1,),
    (slice(1, None),),
    (slice(None, None, 2),),
    (Ellipsis, 0),
    (None, slice(None)),
    (slice(None), None, 1),
]


@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=2, max_side=4), index=st.sampled_from(BASIC_INDICES))
def test_getitem_basic(data, shape, index):
    check_op(lambda x: x[index], lambda x: x[index], data.draw(floats(shape)))


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_getitem_integer_arrays_with_repeats(data, shape):
    idx = np.asarray(data.draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=6)))
    a = data.draw(floats(shape))
    check_op(lambda x: x[idx], lambda x: x[idx], a)
    if len(shape) >= 2:
        cols = np.asarray(data.draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(idx), max_size=len(idx))))
        check_op(lambda x: x[idx, cols], lambda x: x[idx, cols], a)
        check_op(lambda x: x[:, cols], lambda x: x[:, cols], a)


def test_getitem_repeated_index_accumulates():
    x = Tensor(np.arange(3.0), requires_grad=True)
    x[np.array([0, 2, 0, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3, 0, 1])


def test_getitem_bool_mask_and_errors():
    a = np.arange(6.0).reshape(2, 3)
    mask = a > 2
    check_op(lambda x: x[mask], lambda x: x[mask], a)
    with pytest.raises(IndexError, match="getitem"):
        Tensor(a)[5]
    with pytest.raises(TypeError, match="getitem: index arrays must be integer"):
        Tensor(a)[np.array([0.5])]


@given(data=st.data(), n=st.integers(1, 5), dim=st.integers(1, 3), idx_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=5))
def test_embedding(data, n, dim, idx_shape):
    idx = data.draw(hnp.arrays(np.int64, idx_shape, elements=st.integers(0, n - 1)))
    check_op(lambda w: ts.embedding(idx, w), lambda w: w[idx], data.draw(floats((n, dim))))


def test_embedding_repeats_accumulate_and_errors():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    ts.embedding(np.array([[1, 1], [1, 2]]), w).sum().backward()
    np.testing.assert_array_equal(w.grad, [[0, 0], [3, 3], [1, 1]])
    with pytest.raises(ValueError, match=r"embedding: indices must lie in \[0, 3\)"):
        ts.embedding(np.array([3]), w)
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        ts.embedding(np.array([0.0]), w)


@given(idx=hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), elements=st.integers(0, 4)))
def test_one_hot_property(idx):
    out = ts.one_hot(idx, 5, dtype=np.float64)
    np.testing.assert_array_equal(out.data, np.eye(5)[idx])


def test_one_hot():
    out = ts.one_hot(np.array([[0, 2], [1, 1]]), 3)
    assert out.dtype == np.float32 and not out.requires_grad
    np.testing.assert_array_equal(out.data, np.eye(3)[[[0, 2], [1, 1]]])
    with pytest.raises(ValueError, match="one_hot"):
        ts.one_hot(np.array([3]), 3)


# ---------------------------------------------------------------- joining and splitting


@given(data=st.data(), shape=nonempty_shapes, sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3))
def test_concatenate(data, shape, sizes):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = [data.draw(floats(shape[: axis % len(shape)] + (s,) + shape[axis % len(shape) + 1 :])) for s in sizes]
    check_op(lambda *xs: ts.concatenate(xs, axis=axis), lambda *xs: np.concatenate(xs, axis=axis), *parts)


@given(data=st.data(), shape=shapes, count=st.integers(1, 3))
def test_stack(data, shape, count):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    parts = [data.draw(floats(shape)) for _ in range(count)]
    check_op(lambda *xs: ts.stack(xs, axis=axis), lambda *xs: np.stack(xs, axis=axis), *parts)


@given(data=st.data(), shape=nonempty_shapes, size=st.integers(1, 4))
def test_split_and_chunk(data, shape, size):
    axis = data.draw(st.integers(0, len(shape) - 1))
    a = data.draw(floats(shape))
    n = shape[axis]
    bounds = list(range(size, n, size))
    # Weight each piece differently so a mix-up of pieces shows in the gradient.
    check_op(
        lambda x: ts.stack([p.sum() * (i + 1) for i, p in enumerate(ts.split(x, size, axis=axis))]),
        lambda x: np.stack([p.sum() * (i + 1) for i, p in enumerate(np.split(x, bounds, axis=axis))]),
        a,
    )
    pieces = x_pieces = ts.chunk(Tensor(a), size, axis=axis)
    assert len(pieces) <= size and sum(p.shape[axis] for p in x_pieces) == n


def test_split_sections_and_errors():
    a = np.arange(12.0).reshape(2, 6)
    check_op(lambda x: ts.concatenate(ts.split(x, [1, 3, 2], axis=1)[::-1], axis=1), lambda x: np.concatenate(np.split(x, [1, 4], axis=1)[::-1], axis=1), a)
    assert [p.shape for p in Tensor(a).chunk(4, axis=1)] == [(2, 2), (2, 2), (2, 2)]
    with pytest.raises(ValueError, match="split: sizes"):
        ts.split(Tensor(a), [1, 2], axis=1)
    with pytest.raises(ValueError, match=r"concatenate: tensor 0 has shape \(2, 6\) but tensor 1 has shape \(3, 5\)"):
        ts.concatenate([Tensor(a), Tensor(np.ones((3, 5)))], axis=1)
    with pytest.raises(ValueError, match="stack"):
        ts.stack([Tensor(a), Tensor(np.ones((2, 5)))])


# ---------------------------------------------------------------- dropout


@given(a=floats((3, 4)), seed=st.integers(0, 2**16), p=st.sampled_from([0.2, 0.5, 0.9]))
def test_dropout_with_generator(a, seed, p):
    x = Tensor(a, requires_grad=True)
    y = ts.dropout(x, p, generator=np.random.default_rng(seed))
    keep = np.random.default_rng(seed).random(a.shape) >= p
    np.testing.assert_allclose(y.data, np.where(keep, a / (1 - p), 0))
    check_op(lambda t: ts.dropout(t, p, generator=np.random.default_rng(seed)), lambda t: np.where(keep, t / (1 - p), 0), a)


@given(a=floats((2, 3, 4)), mask=hnp.arrays(np.bool_, (1, 3, 4)))
def test_dropout_with_given_mask_broadcasts(a, mask):
    m = mask / 0.5
    check_op(lambda t: ts.dropout(t, mask=m), lambda t: t * m, a)


def test_dropout_edge_cases():
    x = Tensor(np.ones((2, 2)))
    assert ts.dropout(x, 0.5, training=False) is x
    assert ts.dropout(x, 0.0) is x
    np.testing.assert_array_equal(ts.dropout(x, 1.0).data, 0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
        ts.dropout(x, 1.5)
    with pytest.raises(ValueError, match="dropout: mask of shape"):
        ts.dropout(x, mask=np.ones(3))
    rate = np.mean(ts.dropout(Tensor(np.ones(20000)), 0.3, generator=np.random.default_rng(0)).data == 0)
    assert abs(rate - 0.3) < 0.02


# ---------------------------------------------------------------- std, cumsum, sort, topk


@given(data=st.data(), sa=shape_and_axis(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4)), keepdims=st.booleans(), correction=st.sampled_from([0, 1]))
def test_std(data, sa, keepdims, correction):
    shape, axis = sa
    check_op(lambda x: x.std(dim=axis, keepdim=keepdims, correction=correction), lambda x: np.std(x, axis=axis, keepdims=keepdims, ddof=correction), data.draw(distinct(shape)))  # away from std 0, a kink


def test_std_of_equal_values_has_zero_gradient_and_checks_its_size():
    x = Tensor(np.full((2, 3), 1.5), requires_grad=True)
    ts.std(x, 1).sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), np.zeros((2, 3)))  # PyTorch's value, not 0/0
    with pytest.raises(ValueError, match=r"std: need more than 1 elements to reduce, got 1"):
        Tensor(np.ones((1, 3))).std(0)


@given(data=st.data(), shape=nonempty_shapes)
def test_cumsum(data, shape):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_op(lambda x: x.cumsum(dim=axis), lambda x: np.cumsum(x, axis=axis), data.draw(floats(shape)))


def test_cumsum_of_a_scalar_and_of_integers():
    check_op(lambda x: ts.cumsum(x, -1), lambda x: x, np.array(1.5))
    assert ts.cumsum(Tensor(np.array([200, 100], np.uint8)), 0).tolist() == [200, 300]  # int64, as PyTorch
    assert ts.cumsum(Tensor(np.array([True, True])), 0).dtype == np.int64


def _sorted_ref(x, axis, descending, count=None):
    """NumPy's sort along ``axis``, descending by flipping, its first ``count`` entries."""
    out = -np.sort(-x, axis=axis) if descending else np.sort(x, axis=axis)
    return np.take(out, range(x.shape[axis] if count is None else count), axis=axis)


@given(data=st.data(), shape=nonempty_shapes, descending=st.booleans())
def test_sort(data, shape, descending):
    x, axis = data.draw(distinct(shape)), data.draw(st.integers(-len(shape), len(shape) - 1))
    values, indices = ts.sort(Tensor(x), axis, descending)
    np.testing.assert_array_equal(np.take_along_axis(x, indices.data, axis), values.data)
    check_op(lambda t: t.sort(dim=axis, descending=descending).values, lambda a: _sorted_ref(a, axis, descending), x)


@given(data=st.data(), shape=nonempty_shapes, largest=st.booleans())
def test_topk(data, shape, largest):
    x, axis = data.draw(distinct(shape)), data.draw(st.integers(-len(shape), len(shape) - 1))
    k = data.draw(st.integers(0, shape[axis]))
    values, indices = ts.topk(Tensor(x), k, axis, largest)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(np.take_along_axis(x, indices.data, axis), values.data)
    check_op(lambda t: t.topk(k, dim=axis, largest=largest).values, lambda a: _sorted_ref(a, axis, largest, k), x)


def test_sort_and_topk_keep_tied_values_in_their_order():
    x = Tensor(np.array([3.0, 1.0, 3.0, 2.0, 1.0, 3.0]), requires_grad=True)
    assert x.sort().indices.tolist() == [1, 4, 3, 0, 2, 5]
    assert x.sort(descending=True).indices.tolist() == [0, 2, 5, 3, 1, 4]
    assert x.topk(2).indices.tolist() == [0, 2] and x.topk(2, largest=False).indices.tolist() == [1, 4]
    x.topk(2).values.sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), [1, 0, 1, 0, 0, 0])  # to the picked places only
    nan = Tensor(np.array([1.0, np.nan, 2.0]))
    assert nan.sort().indices.tolist() == [0, 2, 1] and nan.topk(1).indices.tolist() == [1]  # NaN is largest
    values, indices = ts.sort(Tensor(np.array(2.5)))
    assert values.item() == 2.5 and indices.item() == 0 and indices.dtype == np.int64


# ---------------------------------------------------------------- masked_fill, flatten, narrow, transposes


@given(data=st.data(), shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3))
def test_masked_fill(data, shapes):
    sa, sm = shapes.input_shapes
    mask = data.draw(hnp.arrays(np.bool_, sm))
    check_op(lambda x: x.masked_fill(mask, 0.5), lambda x: np.where(mask, 0.5, x), data.draw(floats(sa)))
    check_op(lambda x, v: ts.masked_fill(x, Tensor(mask), v), lambda x, v: np.where(mask, v, x), data.draw(floats(sa)), 1.5)


def test_masked_fill_keeps_the_dtype_and_checks_its_arguments():
    ints = Tensor(np.arange(3))
    out = ints.masked_fill(ints > 0, 1.5)
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 1]  # as PyTorch: the value is cast
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    assert x.masked_fill(np.array([True, False, False]), Tensor(np.array(2.0))).dtype == np.float32
    with pytest.raises(TypeError, match="masked_fill: mask must be a bool array, got dtype int64"):
        x.masked_fill(np.array([1, 0, 1]), 0.0)
    with pytest.raises(ValueError, match=r"masked_fill: shapes \(2,\) \(mask\), \(\) and \(3,\) cannot be broadcast"):
        x.masked_fill(np.array([True, False]), 0.0)
    with pytest.raises(ValueError, match=r"masked_fill: value must be a number or a 0-d tensor, got shape \(3,\)"):
        x.masked_fill(np.array([True, False, True]), x)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3))
def test_flatten(data, shape):
    start = data.draw(st.integers(-len(shape), len(shape) - 1))
    end = data.draw(st.integers(start % len(shape), len(shape) - 1))
    s, e = start % len(shape), end
    check_op(lambda x: x.flatten(start, end), lambda x: x.reshape(shape[:s] + (-1,) + shape[e + 1:]), data.draw(floats(shape)))


@given(data=st.data(), shape=nonempty_shapes)
def test_narrow(data, shape):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    start = data.draw(st.integers(-n, n))
    first = start + n if start < 0 else start
    length = data.draw(st.integers(0, n - first))
    check_op(lambda x: x.narrow(axis, start, length), lambda x: np.take(x, range(first, first + length), axis=axis), data.draw(floats(shape)))


@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3))
def test_mT_and_t(data, shape):
    a = data.draw(floats(shape))
    check_op(lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2), a)
    check_op(lambda x: ts.t(x.reshape(-1, shape[-1])), lambda x: x.reshape(-1, shape[-1]).T, a)


def test_shape_ops_of_small_ranks_and_errors():
    v = Tensor(np.arange(3.0))
    assert v.t() is v and Tensor(np.array(1.0)).flatten().shape == (1,) and ts.flatten(v, 0, 0).shape == (3,)
    x = Tensor(np.ones((2, 3, 4)))
    for call, match in [(lambda: x.flatten(2, 1), "flatten: start_dim 2 comes after end_dim 1"),
                        (lambda: x.flatten(0, 3), "flatten: axis 3 is out of range for a tensor with 3 dimensions"),
                        (lambda: x.narrow(1, 2, 2), r"narrow: start \(2\) \+ length \(2\) exceeds the size 3 of axis 1"),
                        (lambda: x.narrow(1, -4, 1), "narrow: start must be an int >= -3, got -4"),
                        (lambda: x.narrow(3, 0, 1), "narrow: axis 3 is out of range"),
                        (lambda: x.t(), r"t: expected a tensor with at most 2 dimensions, got shape \(2, 3, 4\)"),
                        (lambda: v.mT, r"mT: expected a tensor with at least 2 dimensions, got shape \(3,\)"),
                        (lambda: x.sort(3), "sort: axis 3 is out of range"),
                        (lambda: x.cumsum(-4), "cumsum: axis -4 is out of range"),
                        (lambda: x.std(5), "std: axis 5 is out of range"),
                        (lambda: x.topk(5), r"topk: k=5 is more than the 4 entries along axis -1 \(shape \(2, 3, 4\)\)"),
                        (lambda: x.topk(-1), "topk: k must be an int >= 0, got -1"),
                        (lambda: x.topk(1, dim=3), "topk: axis 3 is out of range")]:
        with pytest.raises(ValueError, match=match):
            call()


def test_contiguous_copies_only_a_strided_array_and_stays_in_the_graph():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert x.contiguous() is x and x.cpu() is x
    y = x.T.contiguous()
    assert y.data.flags.c_contiguous and y.requires_grad
    check_op(lambda t: t.T.contiguous(), lambda a: a.T, x.data)


# ---------------------------------------------------------------- comparisons and casts


@pytest.mark.parametrize("name,op", [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)])
@given(data=st.data(), shapes=broadcast_pairs)
def test_comparisons(name, op, data, shapes):
    sa, sb = shapes.input_shapes
    a, b = data.draw(hnp.arrays(np.int64, sa, elements=st.integers(0, 2))), data.draw(hnp.arrays(np.int64, sb, elements=st.integers(0, 2)))
    for got in (getattr(Tensor(a), name)(Tensor(b)), getattr(ts, name)(a, b), getattr(ts, name)(Tensor(a), 1)):
        assert got.dtype == np.bool_ and not got.requires_grad
    np.testing.assert_array_equal(getattr(Tensor(a), name)(b).data, op(a, b))
    np.testing.assert_array_equal(getattr(ts, name)(Tensor(a), 1).data, op(a, 1))


def test_comparison_errors_name_the_op():
    with pytest.raises(ValueError, match=r"lt: shapes \(2,\) and \(3,\) cannot be broadcast together"):
        Tensor(np.ones(2)) < np.ones(3)
    with pytest.raises(ValueError, match="eq: shapes"):
        Tensor(np.ones(2)).eq(Tensor(np.ones(3)))


def test_casts_and_type_names():
    x = Tensor(np.array([1.5, -2.0, 0.0]), requires_grad=True)
    assert x.int().dtype == np.int32 and x.int().tolist() == [1, -2, 0] and not x.int().requires_grad
    assert x.long().dtype == np.int64 and x.bool().tolist() == [True, True, False]
    assert x.type() == "tinyseq.DoubleTensor" and x.float().type() == "tinyseq.FloatTensor"
    assert x.long().type() == "tinyseq.LongTensor" and x.bool().type() == "tinyseq.BoolTensor"
    assert x.type(ts.float64) is x and x.type(np.float64) is x
    assert x.type(ts.long).dtype == np.int64 and x.type("torch.IntTensor").dtype == np.int32
    assert x.type(x.float().type()).dtype == np.float32
    assert Tensor(np.ones(1, np.longdouble)).type() == "tinyseq." + np.dtype(np.longdouble).name  # no PyTorch name
    y = x.type(ts.float32)
    (y * 2).sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="Tensor.type: expected a dtype or a type name such as 'tinyseq.FloatTensor', got 'Long'"):
        x.type("Long")


def test_new_tensors_take_this_dtype():
    x = Tensor(np.ones(2, np.float64))
    for made in (x.new_zeros(2, 3), x.new_ones((2, 3)), x.new_empty(2, 3), x.new_full((2, 3), 7)):
        assert made.shape == (2, 3) and made.dtype == np.float64 and not made.requires_grad
    assert x.new_zeros(2).tolist() == [0, 0] and x.new_ones(2).tolist() == [1, 1] and x.new_full((1,), 7).tolist() == [7.0]
    assert x.new_tensor([1, 2]).dtype == np.float64 and x.new_zeros(2, dtype=ts.long).dtype == np.int64
    assert x.new_ones(2, requires_grad=True).requires_grad
    data = np.array([1.0, 2.0])
    made = x.new_tensor(data)
    data[0] = 9.0
    assert made.tolist() == [1.0, 2.0]  # a copy
    assert Tensor(np.arange(2)).new_tensor([1.5]).dtype == np.int64


# ---------------------------------------------------------------- PyTorch's values


@pytest.mark.torch
def test_max_min_argmax_and_pow_match_torch():
    torch = pytest.importorskip("torch")
    x = np.array([[1.0, 3.0, 3.0, -2.0], [2.0, 0.0, 1.0, 2.0]])
    for name in ("max", "min"):
        for dim, keep in ((0, False), (-1, True)):
            ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            (v, i), (tv, ti) = getattr(ours, name)(dim, keep), getattr(theirs, name)(dim, keep)
            np.testing.assert_array_equal(v.data, tv.detach().numpy())
            np.testing.assert_array_equal(i.data, ti.numpy())
            v.sum().backward()
            tv.sum().backward()
            np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())
        ours, theirs = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        getattr(ours, name)().backward()
        getattr(theirs, name)().backward()
        np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())  # ties share
    for dim in (None, 0, 1):
        np.testing.assert_array_equal(ts.argmax(x, dim=dim).data, torch.argmax(torch.tensor(x), dim=dim).numpy())
    a, b = np.array([0.0, 0.0, 2.0, 0.0]), np.array([0.0, 2.0, 0.0, 0.5])
    ours = [Tensor(v, requires_grad=True) for v in (a, b)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a, b)]
    (ours[0] ** ours[1]).sum().backward()
    (theirs[0] ** theirs[1]).sum().backward()
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-12)


def _torch_pair(torch, x):
    return Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)


TIES = np.array([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.5, 0.5, -1.0, 2.0, 2.0, 0.5]])
MASK = np.array([True, False, True, False, False, True])
# name -> (input, our op, torch's op); each returns a tensor or a (values, indices) pair
TORCH_OPS = {
    "std": (TIES, lambda x: x.std(1, keepdim=True), lambda x: x.std(1, keepdim=True)),
    "std_all_equal": (np.ones((2, 3)), lambda x: x.std(0, correction=0), lambda x: x.std(0, correction=0)),
    "cumsum": (TIES, lambda x: x.cumsum(dim=0), lambda x: x.cumsum(dim=0)),
    "sort": (TIES, lambda x: x.sort(stable=True), lambda x: x.sort(stable=True)),
    "sort_descending": (TIES, lambda x: ts.sort(x, 0, descending=True, stable=True), lambda x: x.sort(dim=0, descending=True, stable=True)),
    "topk": (np.array([[0.3, -1.0, 2.0, 0.7], [1.0, 0.0, -0.5, 4.0]]), lambda x: x.topk(3), lambda x: x.topk(3)),
    "topk_smallest": (np.array([[0.3, -1.0, 2.0, 0.7], [1.0, 0.0, -0.5, 4.0]]), lambda x: ts.topk(x, 1, 0, largest=False), lambda x: x.topk(1, 0, largest=False)),
    "masked_fill": (TIES, lambda x: x.masked_fill(MASK, -2.0), lambda x: x.masked_fill(torch_tensor(MASK), -2.0)),
    "masked_fill_broadcast": (TIES[0], lambda x: x.masked_fill(np.array([[True], [False]]), 1.0), lambda x: x.masked_fill(torch_tensor([[True], [False]]), 1.0)),
    "flatten": (np.arange(24.0).reshape(2, 3, 4), lambda x: x.flatten(1), lambda x: x.flatten(1)),
    "narrow": (TIES, lambda x: x.narrow(1, -4, 3), lambda x: x.narrow(1, -4, 3)),
    "mT": (np.arange(24.0).reshape(2, 3, 4), lambda x: x.mT, lambda x: x.mT),
    "t": (TIES, lambda x: x.t(), lambda x: x.t()),
}


def torch_tensor(array):
    return pytest.importorskip("torch").tensor(array)


@pytest.mark.torch
@pytest.mark.parametrize("name", TORCH_OPS)
def test_new_ops_match_torch(name):
    """Values, index dtypes and gradients (sort's ties with stable=True too) as PyTorch's."""
    torch = pytest.importorskip("torch")
    x, ours_op, theirs_op = TORCH_OPS[name]
    ours, theirs = _torch_pair(torch, x)
    out, tout = ours_op(ours), theirs_op(theirs)
    if isinstance(tout, tuple):
        np.testing.assert_array_equal(out.indices.data, tout.indices.numpy())
        assert out.indices.dtype == tout.indices.numpy().dtype == np.int64
        out, tout = out.values, tout.values
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12)
    weights = np.random.default_rng(0).standard_normal(out.shape)
    (out * weights).sum().backward()
    (tout * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(np.asarray(ours.grad), theirs.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.torch
def test_masked_fill_value_gradient_comparisons_and_casts_match_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = _torch_pair(torch, TIES)
    value, tvalue = _torch_pair(torch, np.array(2.0))
    ours.masked_fill(MASK, value).sum().backward()
    theirs.masked_fill(torch.tensor(MASK), tvalue).sum().backward()
    assert value.grad == tvalue.grad.item() and np.array_equal(np.asarray(ours.grad), theirs.grad.numpy())
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        got, expected = getattr(ours, name)(3.0), getattr(theirs, name)(3.0)
        assert got.dtype == expected.numpy().dtype and np.array_equal(got.data, expected.numpy())
    for name in ("int", "long", "bool", "float", "double"):
        got, expected = getattr(ours, name)(), getattr(theirs.detach(), name)()
        assert got.dtype == expected.numpy().dtype and np.array_equal(got.data, expected.numpy())
        assert got.type() == expected.type().replace("torch.", "tinyseq.")
    assert ts.cumsum(Tensor(np.array([1, 2], np.uint8)), 0).dtype == torch.cumsum(torch.tensor([1, 2], dtype=torch.uint8), 0).numpy().dtype
