"""Tensor creation and random sampling: ``ts.zeros`` ... ``ts.multinomial`` and ``ts.manual_seed``.

Dtypes and values follow PyTorch's (checked against torch itself with ``-m torch``).
"""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor


@pytest.mark.parametrize("fn,value", [(ts.zeros, 0.0), (ts.ones, 1.0)])
def test_zeros_ones_take_sizes_either_way(fn, value):
    for t in (fn(2, 3), fn((2, 3)), fn([2, 3])):
        assert t.shape == (2, 3) and t.dtype == np.float32 and (t.data == value).all()
    assert fn(2, dtype=np.float64).dtype == np.float64 and fn(()).shape == ()
    assert fn(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="size must be non-negative ints"):
        fn(2, -1)


def test_full_infers_its_dtype_as_pytorch():
    assert ts.full((2,), 3).dtype == np.int64 and ts.full((2,), 3.0).dtype == np.float32
    assert ts.full(2, True).dtype == np.bool_ and ts.full((1, 2), 7, dtype=np.float64).tolist() == [[7.0, 7.0]]


def test_like_functions_keep_shape_and_dtype():
    x = Tensor(np.ones((2, 3), np.float64))
    assert ts.zeros_like(x).dtype == np.float64 and ts.ones_like(x).shape == (2, 3)
    assert ts.zeros_like(np.ones(4, np.int32)).dtype == np.int32 and ts.ones_like(x, dtype=np.float32).dtype == np.float32


def test_arange():
    assert ts.arange(4).tolist() == [0, 1, 2, 3] and ts.arange(4).dtype == np.int64
    assert ts.arange(1, 7, 2).tolist() == [1, 3, 5]
    np.testing.assert_allclose(ts.arange(0, 1, 0.25).data, [0, 0.25, 0.5, 0.75])
    assert ts.arange(0, 1, 0.25).dtype == np.float32 and ts.arange(3.0).dtype == np.float32
    with pytest.raises(ValueError, match="step must be non-zero"):
        ts.arange(0, 3, 0)


def test_from_numpy_shares_memory():
    a = np.arange(3.0)
    t = ts.from_numpy(a)
    a[0] = 9
    assert t.data is a and t.tolist()[0] == 9
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        ts.from_numpy([1.0])


def test_rand_randn_follow_the_seed_and_take_a_generator():
    ts.manual_seed(3)
    a, b = ts.rand(2, 3), ts.randn((4,))
    ts.manual_seed(3)
    np.testing.assert_array_equal(ts.rand(2, 3).data, a.data)
    np.testing.assert_array_equal(ts.randn(4).data, b.data)
    assert a.dtype == np.float32 and (a.data >= 0).all() and (a.data < 1).all()
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(ts.randn(3, generator=g1).data, ts.randn(3, generator=g2).data)
    with pytest.raises(TypeError, match="randn: expected generator to be a numpy.random.Generator"):
        ts.randn(2, generator=5)


def test_multinomial_draws_in_proportion_and_never_a_zero_weight():
    ts.manual_seed(0)
    probs = np.array([0.2, 0.0, 0.8])
    draws = ts.multinomial(probs, 4000, replacement=True)
    assert draws.dtype == np.int64 and draws.shape == (4000,)
    counts = np.bincount(draws.data, minlength=3) / 4000
    assert counts[1] == 0 and abs(counts[2] - 0.8) < 0.03
    rows = ts.multinomial(Tensor(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])), 1)
    assert rows.shape == (2, 1) and rows.data[1, 0] == 2
    distinct = ts.multinomial(np.ones(5), 5).tolist()
    assert sorted(distinct) == [0, 1, 2, 3, 4]  # without replacement


def test_multinomial_of_no_rows_and_float_only_random_dtypes():
    out = ts.multinomial(np.zeros((0, 3)), 2)
    assert out.shape == (0, 2) and out.dtype == np.int64
    with pytest.raises(TypeError, match="rand: dtype must be a floating-point dtype, got int64"):
        ts.rand(2, dtype=np.int64)


@pytest.mark.parametrize("probs,n,match", [
    (np.array([0.5, -0.1]), 1, "finite and non-negative"),
    (np.array([0.0, 0.0]), 1, "positive sum"),
    (np.array([1.0, 0.0, 2.0]), 3, "without replacement"),
    (np.ones((2, 2, 2)), 1, "1-D or 2-D"),
    (np.ones(3), 0, "num_samples must be a positive int"),
])
def test_multinomial_errors(probs, n, match):
    with pytest.raises(ValueError, match=match):
        ts.multinomial(probs, n)


@pytest.mark.torch
def test_creation_dtypes_match_torch():
    torch = pytest.importorskip("torch")
    pairs = [(ts.arange(5), torch.arange(5)), (ts.arange(0, 2, 0.5), torch.arange(0, 2, 0.5)),
             (ts.arange(2.0), torch.arange(2.0)), (ts.full((2,), 3), torch.full((2,), 3)),
             (ts.full((2,), 3.0), torch.full((2,), 3.0)), (ts.full((2,), True), torch.full((2,), True)),
             (ts.zeros(2, 3), torch.zeros(2, 3)), (ts.ones((3,)), torch.ones((3,)))]
    for ours, theirs in pairs:
        assert ours.dtype == theirs.numpy().dtype and ours.shape == tuple(theirs.shape)
        np.testing.assert_array_equal(ours.data, theirs.numpy())


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    from tinyseq.serialization import load, save

    ts.manual_seed(3)
    ts.rand(5)
    save({"rng": ts.get_rng_state()}, tmp_path / "rng.npz")
    expected = ts.rand(4).data
    ts.manual_seed(99)
    ts.set_rng_state(load(tmp_path / "rng.npz")["rng"])
    np.testing.assert_array_equal(ts.rand(4).data, expected)
    with pytest.raises(ValueError, match="set_rng_state: expected a state from get_rng_state"):
        ts.set_rng_state({"bit_generator": "Nope"})
    with pytest.raises(ValueError, match="set_rng_state: the PCG64 state does not load"):
        ts.set_rng_state({"bit_generator": "PCG64", "state": {}})


# ---------------------------------------------------------------- randint


def test_randint_takes_pytorchs_forms_and_follows_the_seed():
    ts.manual_seed(4)
    a = ts.randint(10, (3, 4))
    ts.manual_seed(4)
    assert ts.randint(0, 10, (3, 4)).tolist() == a.tolist() and a.dtype == np.int64
    for t in (ts.randint(3, 5, (200,)), ts.randint(low=3, high=5, size=(200,)), ts.randint(3, 5, size=[200])):
        assert t.shape == (200,) and set(t.tolist()) == {3, 4}
    assert set(ts.randint(high=2, size=(100,)).tolist()) == {0, 1} and set(ts.randint(1, size=(5,)).tolist()) == {0}
    assert ts.randint(-3, -2, ()).item() == -3
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    assert ts.randint(100, (5,), generator=g1).tolist() == ts.randint(100, (5,), generator=g2).tolist()
    floats = ts.randint(5, (3,), dtype=ts.float32, requires_grad=True)
    assert floats.dtype == np.float32 and floats.requires_grad and (floats.data == np.round(floats.data)).all()
    assert ts.randint(0, 256, (4,), dtype=ts.uint8).dtype == np.uint8


@pytest.mark.parametrize("call,error,match", [
    (lambda: ts.randint(10), TypeError, r"randint: size \(a tuple\) is required"),
    (lambda: ts.randint(5, 5, (2,)), ValueError, "randint: expected low < high, got low=5 and high=5"),
    (lambda: ts.randint(2.5, (2,)), TypeError, "randint: high must be an int, got 2.5"),
    (lambda: ts.randint(3, (-1,)), ValueError, "randint: size must be non-negative ints"),
    (lambda: ts.randint(0, 300, (2,), dtype=ts.uint8), ValueError, r"randint: \[0, 300\) does not fit dtype uint8"),
    (lambda: ts.randint(2, (2,), dtype=ts.bool), TypeError, "randint: dtype must be an integer or floating-point dtype"),
    (lambda: ts.randint(2, (2,), generator=3), TypeError, "randint: expected generator to be a numpy.random.Generator"),
])
def test_randint_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- dtype names

NAMES = {"float16": np.float16, "half": np.float16, "float32": np.float32, "float": np.float32,
         "float64": np.float64, "double": np.float64, "complex64": np.complex64, "cfloat": np.complex64,
         "complex128": np.complex128, "cdouble": np.complex128, "int8": np.int8, "int16": np.int16,
         "short": np.int16, "int32": np.int32, "int": np.int32, "int64": np.int64, "long": np.int64,
         "uint8": np.uint8, "bool": np.bool_}


@pytest.mark.parametrize("name", NAMES)
def test_dtype_names_are_accepted_wherever_a_dtype_is(name):
    dtype, expected = getattr(ts, name), np.dtype(NAMES[name])
    x = Tensor(np.array([1.0, 0.0]))
    made = [Tensor([1, 0], dtype=dtype), ts.tensor([1, 0], dtype=dtype), ts.zeros(2, dtype=dtype),
            ts.ones(2, dtype=dtype), ts.empty(2, dtype=dtype), ts.full((2,), 1, dtype=dtype),
            ts.zeros_like(x, dtype=dtype), ts.ones_like(x, dtype=dtype), ts.arange(2, dtype=dtype),
            x.to(dtype), x.to("cpu", dtype), x.to(dtype=dtype), x.astype(dtype), ts.cast(x, dtype), x.type(dtype),
            x.new_zeros(2, dtype=dtype), ts.one_hot(np.array([1]), 2, dtype=dtype)]
    if expected.kind in "iu":
        made.append(ts.randint(2, (2,), dtype=dtype))
    if expected.kind == "f":
        made += [ts.rand(2, dtype=dtype), ts.randn(2, dtype=dtype)]
    for t in made:
        assert t.dtype == expected


@pytest.mark.parametrize("name", ["float32", "float", "float64", "double"])
def test_modules_and_init_take_the_float_names(name):
    from tinyseq import nn

    layer = nn.Linear(2, 3).to(getattr(ts, name))
    assert all(p.dtype == np.dtype(NAMES[name]) for p in layer.parameters())
    weight = nn.init.xavier_uniform_(ts.empty(3, 2, dtype=getattr(ts, name)))
    assert weight.dtype == np.dtype(NAMES[name]) and np.isfinite(weight.data).all()
    made = [nn.Parameter(np.zeros(2), dtype=getattr(ts, name)), nn.Linear(2, 3, dtype=getattr(ts, name)).weight,
            nn.Embedding(4, 3, dtype=getattr(ts, name)).weight, nn.LayerNorm(3, dtype=getattr(ts, name)).weight,
            nn.LSTMCell(2, 3, dtype=getattr(ts, name)).weight_ih, nn.GRU(2, 3, dtype=getattr(ts, name)).weight_hh_l0]
    assert all(p.dtype == np.dtype(NAMES[name]) for p in made)


def test_ops_take_half_and_modules_refuse_it_and_integer_names():
    from tinyseq import nn

    x = Tensor([1.0, 2.0], dtype=ts.half, requires_grad=True)
    (x * x).sum().backward()
    assert np.asarray(x.grad).dtype == np.float16 and np.asarray(x.grad).tolist() == [2.0, 4.0]

    with pytest.raises(TypeError, match="dtype must be float32 or float64, got float16"):
        nn.Linear(2, 3).to(ts.half)
    with pytest.raises(TypeError, match="init.uniform_: expected a floating-point tensor, got dtype int64"):
        nn.init.uniform_(ts.zeros(2, dtype=ts.long))


@pytest.mark.torch
def test_dtype_names_and_randint_match_torch():
    torch = pytest.importorskip("torch")
    for name in NAMES:
        theirs = torch.zeros(1, dtype=getattr(torch, name))
        assert np.dtype(getattr(ts, name)) == theirs.numpy().dtype, name
        assert ts.zeros(1, dtype=getattr(ts, name)).type() == theirs.type().replace("torch.", "tinyseq."), name
    for args, kwargs in [((10, (2, 3)), {}), ((3, 10, (4,)), {}), ((), {"high": 5, "size": (2,)}),
                         ((5, (2,)), {"dtype": "float32"}), ((0, 200, (2,)), {"dtype": "uint8"})]:
        ours = ts.randint(*args, **{k: getattr(ts, v) if k == "dtype" else v for k, v in kwargs.items()})
        theirs = torch.randint(*args, **{k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()})
        assert ours.dtype == theirs.numpy().dtype and ours.shape == tuple(theirs.shape)
