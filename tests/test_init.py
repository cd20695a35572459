import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyseq import Tensor
from tinyseq.nn import Parameter
from tinyseq.nn import init

NONLINEARITIES = [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None),
    ("conv_transpose1d", None), ("conv_transpose2d", None), ("conv_transpose3d", None),
    ("sigmoid", None), ("tanh", None), ("relu", None), ("selu", None),
    ("leaky_relu", None), ("leaky_relu", 0), ("leaky_relu", 0.2), ("leaky_relu", 1), ("leaky_relu", 3.5),
]
FAN_SHAPES = [(3, 5), (7, 1), (1, 9), (4, 3, 2), (2, 3, 4, 5), (0, 4), (5, 0, 3)]


def rng(seed=0):
    return np.random.default_rng(seed)


def fresh(shape, dtype=np.float64, kind="tensor"):
    arr = np.full(shape, np.nan, dtype=dtype)
    return {"tensor": Tensor, "parameter": Parameter, "array": lambda a: a}[kind](arr)


def data(t):
    return t.data if isinstance(t, Tensor) else t


def assert_orthonormal(q, atol):
    """Columns orthonormal for tall/square q, rows for wide q."""
    gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), rtol=0, atol=atol)


# Every fill, as (name, call) with a generator where it takes one; shapes suit all of them.
FILLS = [
    ("uniform_", lambda t, g: init.uniform_(t, -2.0, 3.0, generator=g)),
    ("normal_", lambda t, g: init.normal_(t, 1.0, 0.5, generator=g)),
    ("constant_", lambda t, g: init.constant_(t, 0.25)),
    ("zeros_", lambda t, g: init.zeros_(t)),
    ("ones_", lambda t, g: init.ones_(t)),
    ("default_rnn_", lambda t, g: init.default_rnn_(t, 4, generator=g)),
    ("xavier_uniform_", lambda t, g: init.xavier_uniform_(t, generator=g)),
    ("xavier_normal_", lambda t, g: init.xavier_normal_(t, generator=g)),
    ("kaiming_uniform_", lambda t, g: init.kaiming_uniform_(t, generator=g)),
    ("kaiming_normal_", lambda t, g: init.kaiming_normal_(t, generator=g)),
    ("orthogonal_", lambda t, g: init.orthogonal_(t, generator=g)),
    ("orthogonal_gates_", lambda t, g: init.orthogonal_gates_(t, 4, generator=g)),
    ("identity_", lambda t, g: init.identity_(t, 0.5, num_gates=4)),
]
RANDOM_FILLS = [f for f in FILLS if f[0] not in ("constant_", "zeros_", "ones_", "identity_")]


# ---------------------------------------------------------------- in-place semantics


@pytest.mark.parametrize("kind", ["tensor", "parameter", "array"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,fill", FILLS, ids=[f[0] for f in FILLS])
def test_fills_in_place_keeping_dtype(name, fill, dtype, kind):
    t = fresh((16, 4), dtype, kind)
    before = data(t)
    out = fill(t, rng())
    assert out is t
    assert data(t) is before
    assert before.dtype == dtype and before.shape == (16, 4)
    assert np.isfinite(before).all()


def test_parameter_keeps_requires_grad():
    p = Parameter(np.zeros((3, 3)))
    init.orthogonal_(p)
    assert p.requires_grad and isinstance(p, Parameter)


def test_non_contiguous_view_is_filled_in_place():
    base = np.zeros((6, 8))
    init.ones_(base[:, ::2])
    np.testing.assert_array_equal(base[:, ::2], 1.0)
    np.testing.assert_array_equal(base[:, 1::2], 0.0)
    init.orthogonal_(base[::2, 1::2], generator=rng())
    assert_orthonormal(base[::2, 1::2], 1e-12)


def test_lstm_forget_bias_in_place():
    b = Parameter(np.zeros(8, dtype=np.float32))
    before = b.data
    assert init.lstm_forget_bias_(b) is b
    assert b.data is before and b.dtype == np.float32


# ---------------------------------------------------------------- basic fills


def test_constant_zeros_ones():
    t = Tensor(np.empty((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(init.constant_(t, -1.5).data, -1.5)
    np.testing.assert_array_equal(init.zeros_(t).data, 0.0)
    np.testing.assert_array_equal(init.ones_(t).data, 1.0)
    np.testing.assert_array_equal(init.constant_(t, 2).data, 2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_bounds_and_moments(dtype):
    a, b = -0.3, 0.7
    x = init.uniform_(fresh((1000, 1000), dtype), a, b, generator=rng(1)).data
    assert x.min() >= dtype(a) and x.max() <= dtype(b)
    assert x.min() < a + 1e-3 and x.max() > b - 1e-3
    assert abs(x.mean() - (a + b) / 2) < 0.01 * (b - a)
    assert x.var() == pytest.approx((b - a) ** 2 / 12, rel=0.02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_moments(dtype):
    x = init.normal_(fresh((1000, 1000), dtype), mean=2.0, std=0.3, generator=rng(2)).data
    assert x.mean() == pytest.approx(2.0, abs=0.01 * 0.3)
    assert x.std() == pytest.approx(0.3, rel=0.02)


def test_uniform_degenerate_interval_and_zero_std():
    np.testing.assert_array_equal(init.uniform_(np.empty(5), 2.0, 2.0), 2.0)
    np.testing.assert_array_equal(init.normal_(np.empty(5), 3.0, 0.0), 3.0)


@pytest.mark.parametrize("hidden_size", [1, 20, 256])
def test_default_rnn_bounds(hidden_size):
    bound = 1 / math.sqrt(hidden_size)
    x = init.default_rnn_(fresh((4 * hidden_size, 300), np.float32), hidden_size, generator=rng(3)).data
    assert np.abs(x).max() <= np.float32(bound)
    assert np.abs(x).max() > 0.99 * bound
    assert x.var() == pytest.approx(bound**2 / 3, rel=0.03)


# ---------------------------------------------------------------- gain and fans


@pytest.mark.parametrize("nonlinearity,param,expected", [
    ("linear", None, 1.0), ("sigmoid", None, 1.0), ("conv2d", None, 1.0), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("selu", None, 0.75), ("relu", 0.5, math.sqrt(2)),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))), ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
    ("leaky_relu", 0, math.sqrt(2)), ("leaky_relu", 1, 1.0),
])
def test_calculate_gain_values(nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("shape", FAN_SHAPES)
def test_fan_in_and_fan_out(shape):
    receptive = math.prod(shape[2:])
    assert init.calculate_fan_in_and_fan_out(np.empty(shape)) == (shape[1] * receptive, shape[0] * receptive)
    assert init.calculate_fan_in_and_fan_out(Tensor(np.empty(shape))) == (shape[1] * receptive, shape[0] * receptive)


@pytest.mark.torch
@pytest.mark.parametrize("nonlinearity,param", NONLINEARITIES)
def test_calculate_gain_matches_torch(nonlinearity, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


@pytest.mark.torch
@pytest.mark.parametrize("shape", FAN_SHAPES)
def test_fans_match_torch(shape):
    torch = pytest.importorskip("torch")
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(np.empty(shape, dtype=np.float32)) == expected


# ---------------------------------------------------------------- xavier and kaiming


def kaiming_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(np.empty(shape))
    fan = fan_in if mode.lower() == "fan_in" else fan_out
    return init.calculate_gain(nonlinearity, a) / math.sqrt(fan)


def check_uniform(x, bound):
    assert np.abs(x).max() <= x.dtype.type(bound)
    assert np.abs(x).max() > 0.99 * bound
    assert x.var() == pytest.approx(bound**2 / 3, rel=0.03)


def check_normal(x, std):
    assert abs(x.mean()) < 0.02 * std
    assert x.std() == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("shape", [(400, 600), (64, 32, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_xavier(shape, gain, dtype):
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(np.empty(shape))
    std = gain * math.sqrt(2 / (fan_in + fan_out))
    check_uniform(init.xavier_uniform_(fresh(shape, dtype), gain, generator=rng(4)).data, math.sqrt(3) * std)
    check_normal(init.xavier_normal_(fresh(shape, dtype), gain, generator=rng(5)).data, std)


KAIMING_CASES = [
    (0, "fan_in", "leaky_relu"), (0.2, "fan_in", "leaky_relu"), (0, "fan_out", "relu"),
    (0, "FAN_OUT", "tanh"), (0, "fan_in", "linear"), (0, "fan_in", "selu"),
]


@pytest.mark.parametrize("a,mode,nonlinearity", KAIMING_CASES)
@pytest.mark.parametrize("shape", [(300, 700), (64, 32, 3, 3)])
def test_kaiming(a, mode, nonlinearity, shape):
    std = kaiming_std(shape, a, mode, nonlinearity)
    x = init.kaiming_uniform_(fresh(shape), a, mode, nonlinearity, generator=rng(6)).data
    check_uniform(x, math.sqrt(3) * std)
    x = init.kaiming_normal_(fresh(shape, np.float32), a, mode, nonlinearity, generator=rng(7)).data
    check_normal(x, std)


@pytest.mark.torch
@pytest.mark.parametrize("a,mode,nonlinearity", KAIMING_CASES)
def test_kaiming_matches_torch_distribution(a, mode, nonlinearity):
    torch = pytest.importorskip("torch")
    shape = (300, 200, 3)
    torch.manual_seed(0)
    ours_u = init.kaiming_uniform_(fresh(shape), a, mode, nonlinearity, generator=rng(8)).data
    theirs_u = torch.nn.init.kaiming_uniform_(torch.empty(shape, dtype=torch.float64), a, mode, nonlinearity).numpy()
    assert np.abs(ours_u).max() == pytest.approx(np.abs(theirs_u).max(), rel=1e-3)
    ours_n = init.kaiming_normal_(fresh(shape), a, mode, nonlinearity, generator=rng(9)).data
    theirs_n = torch.nn.init.kaiming_normal_(torch.empty(shape, dtype=torch.float64), a, mode, nonlinearity).numpy()
    assert ours_n.std() == pytest.approx(theirs_n.std(), rel=0.01)


@pytest.mark.torch
def test_xavier_matches_torch_distribution():
    torch = pytest.importorskip("torch")
    shape, gain = (300, 200, 3), 1.7
    torch.manual_seed(0)
    ours = init.xavier_uniform_(fresh(shape), gain, generator=rng(10)).data
    theirs = torch.nn.init.xavier_uniform_(torch.empty(shape, dtype=torch.float64), gain).numpy()
    assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=1e-3)
    ours = init.xavier_normal_(fresh(shape), gain, generator=rng(11)).data
    theirs = torch.nn.init.xavier_normal_(torch.empty(shape, dtype=torch.float64), gain).numpy()
    assert ours.std() == pytest.approx(theirs.std(), rel=0.01)


@pytest.mark.parametrize("fill", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
                                  init.kaiming_normal_, init.orthogonal_])
@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 0), (3, 0, 2)])
def test_zero_element_tensors_are_a_no_op(fill, shape):
    t = Tensor(np.empty(shape))
    assert fill(t) is t


# ---------------------------------------------------------------- orthogonal


@pytest.mark.parametrize("shape", [(50, 50), (80, 30), (30, 80), (1, 7), (7, 1)])
def test_orthogonal_float64(shape):
    q = init.orthogonal_(fresh(shape), generator=rng(12)).data
    assert_orthonormal(q, 1e-10)


@pytest.mark.parametrize("shape", [(40, 40), (60, 20), (20, 60)])
def test_orthogonal_float32(shape):
    q = init.orthogonal_(fresh(shape, np.float32), generator=rng(13)).data.astype(np.float64)
    assert_orthonormal(q, 1e-5)


@pytest.mark.parametrize("shape", [(30, 30), (40, 10), (10, 40)])
def test_orthogonal_gain_scales(shape):
    gain = 1.7
    q = init.orthogonal_(fresh(shape), gain, generator=rng(14)).data
    assert_orthonormal(q / gain, 1e-10)
    plain = init.orthogonal_(fresh(shape), generator=rng(14)).data
    np.testing.assert_allclose(q, gain * plain, rtol=1e-15)


@pytest.mark.parametrize("shape", [(6, 4, 5), (30, 2, 3), (4, 3, 2, 2)])
def test_orthogonal_flattens_trailing_dims(shape):
    q = init.orthogonal_(fresh(shape), generator=rng(15)).data
    assert q.shape == shape
    assert_orthonormal(q.reshape(shape[0], -1), 1e-10)


@pytest.mark.parametrize("shape", [(5, 5), (8, 3), (3, 8)])
def test_orthogonal_follows_torch_recipe(shape):
    """QR of a standard normal (transposed when wide), columns signed by diag(R)."""
    rows, cols = shape
    flat = rng(16).standard_normal(shape)
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    expected = q.T if rows < cols else q
    np.testing.assert_allclose(init.orthogonal_(fresh(shape), generator=rng(16)).data, expected, atol=1e-14)


@given(rows=st.integers(1, 30), cols=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_orthogonal_any_shape(rows, cols, seed):
    assert_orthonormal(init.orthogonal_(np.empty((rows, cols)), generator=rng(seed)), 1e-10)


@pytest.mark.parametrize("num_gates", [1, 3, 4])
@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_orthogonal_gates_square_blocks(num_gates, dtype, atol):
    hidden, gain = 24, 1.3
    w = init.orthogonal_gates_(fresh((num_gates * hidden, hidden), dtype), num_gates, gain, generator=rng(17)).data
    blocks = w.astype(np.float64).reshape(num_gates, hidden, hidden)
    for block in blocks:
        assert_orthonormal(block / gain, atol)
    # Each block contributes gain**2 * I to W^T W.
    np.testing.assert_allclose(w.T.astype(np.float64) @ w, num_gates * gain**2 * np.eye(hidden), atol=10 * atol)
    if num_gates > 1:
        assert not np.allclose(blocks[0], blocks[1])


def test_orthogonal_gates_non_square_blocks():
    hidden = 8
    w_wide = init.orthogonal_gates_(fresh((4 * hidden, 20)), 4, generator=rng(18)).data
    w_tall = init.orthogonal_gates_(fresh((3 * hidden, 5)), 3, generator=rng(19)).data
    for w, g in [(w_wide, 4), (w_tall, 3)]:
        for block in np.split(w, g):
            assert_orthonormal(block, 1e-10)


def test_orthogonal_gates_one_gate_is_orthogonal():
    a = init.orthogonal_gates_(fresh((12, 7)), 1, generator=rng(20)).data
    b = init.orthogonal_(fresh((12, 7)), generator=rng(20)).data
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- identity


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identity(dtype):
    t = Parameter(np.full((5, 5), 7.0, dtype=dtype))
    np.testing.assert_array_equal(init.identity_(t).data, np.eye(5))
    np.testing.assert_array_equal(init.identity_(t, scale=0.5).data, 0.5 * np.eye(5))
    assert t.dtype == dtype


def test_identity_gates():
    hidden = 6
    w = init.identity_(fresh((4 * hidden, hidden)), scale=0.9, num_gates=4).data
    for block in np.split(w, 4):
        np.testing.assert_array_equal(block, 0.9 * np.eye(hidden))


def test_eye_fills_any_2d_shape_like_torch():
    w = fresh((3, 5))
    assert init.eye_(w) is w
    np.testing.assert_array_equal(w.data, np.eye(3, 5))
    with pytest.raises(ValueError, match="init.eye_: expected a 2-D tensor"):
        init.eye_(fresh((2, 2, 2)))


# ---------------------------------------------------------------- LSTM forget bias


@pytest.mark.parametrize("hidden_size", [None, 5])
def test_lstm_forget_bias_sets_only_forget_slice(hidden_size):
    H = 5
    original = rng(21).standard_normal(4 * H)
    b = Tensor(original.copy())
    init.lstm_forget_bias_(b, 2.0, hidden_size=hidden_size)
    np.testing.assert_array_equal(b.data[H:2 * H], 2.0)
    np.testing.assert_array_equal(b.data[:H], original[:H])
    np.testing.assert_array_equal(b.data[2 * H:], original[2 * H:])


def test_lstm_forget_bias_of_a_coupled_lstm_bias():
    b = np.zeros(9)  # f, g, o with H = 3: the f block comes first
    init.lstm_forget_bias_(b, 1.0, coupled=True)
    np.testing.assert_array_equal(b, [1, 1, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="not divisible by 4.*coupled=True"):
        init.lstm_forget_bias_(np.zeros(9))


def test_lstm_forget_bias_default_value_and_doc():
    b = init.lstm_forget_bias_(np.zeros(8))
    np.testing.assert_array_equal(b, [0, 0, 1, 1, 0, 0, 0, 0])
    assert "bias_ih" in init.lstm_forget_bias_.__doc__ and "bias_hh" in init.lstm_forget_bias_.__doc__


# ---------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("name,fill", RANDOM_FILLS, ids=[f[0] for f in RANDOM_FILLS])
def test_generator_reproducible(name, fill):
    a = data(fill(fresh((16, 4)), rng(22)))
    b = data(fill(fresh((16, 4)), rng(22)))
    c = data(fill(fresh((16, 4)), rng(23)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name,fill", RANDOM_FILLS, ids=[f[0] for f in RANDOM_FILLS])
def test_manual_seed_reproducible(name, fill):
    init.manual_seed(123)
    a = data(fill(fresh((16, 4)), None))
    a2 = data(fill(fresh((16, 4)), None))
    init.manual_seed(123)
    b = data(fill(fresh((16, 4)), None))
    b2 = data(fill(fresh((16, 4)), None))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a, a2)


def test_explicit_generator_leaves_default_untouched():
    init.manual_seed(7)
    expected = init.normal_(np.empty(10)).copy()
    init.manual_seed(7)
    init.normal_(np.empty(10), generator=rng(0))
    np.testing.assert_array_equal(init.normal_(np.empty(10)), expected)


def test_manual_seed_returns_generator():
    g = init.manual_seed(5)
    assert isinstance(g, np.random.Generator)
    np.testing.assert_array_equal(g.random(3), np.random.default_rng(5).random(3))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("fill", [
    lambda t: init.uniform_(t), lambda t: init.zeros_(t), lambda t: init.xavier_uniform_(t),
    lambda t: init.orthogonal_(t), lambda t: init.identity_(t), lambda t: init.lstm_forget_bias_(t),
])
@pytest.mark.parametrize("bad", [
    np.zeros((4, 4), dtype=np.int64), Tensor(np.zeros((4, 4), dtype=np.int32)),
    np.zeros((4, 4), dtype=np.complex128), [[0.0, 1.0], [2.0, 3.0]], 1.0,
])
def test_non_float_or_non_tensor_is_type_error(fill, bad):
    with pytest.raises(TypeError, match="init"):
        fill(bad)


@pytest.mark.parametrize("fill", [
    init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_, init.kaiming_normal_,
    init.orthogonal_, lambda t: init.orthogonal_gates_(t, 1), init.identity_,
    init.calculate_fan_in_and_fan_out,
])
@pytest.mark.parametrize("shape", [(), (5,)])
def test_fewer_than_two_dims_is_value_error(fill, shape):
    with pytest.raises(ValueError, match="2"):
        fill(np.zeros(shape))


def test_read_only_array_is_value_error():
    arr = np.zeros((3, 3))
    arr.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        init.normal_(arr)


def test_bad_generator_is_type_error():
    with pytest.raises(TypeError, match="generator"):
        init.uniform_(np.zeros(3), generator=0)
    with pytest.raises(TypeError, match="generator"):
        init.orthogonal_(np.zeros((3, 3)), generator=np.random.RandomState(0))


def test_bad_nonlinearity_mode_and_slope():
    with pytest.raises(ValueError, match="unsupported nonlinearity 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.kaiming_uniform_(np.zeros((3, 3)), nonlinearity="softplus")
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(np.zeros((3, 3)), mode="fan_avg")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "0.1")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", True)


def test_bad_interval_and_std():
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(np.zeros(3), 1.0, 0.0)
    with pytest.raises(ValueError, match="std >= 0"):
        init.normal_(np.zeros(3), 0.0, -1.0)
    with pytest.raises(TypeError, match="value"):
        init.constant_(np.zeros(3), "1")
    with pytest.raises(ValueError, match="hidden_size"):
        init.default_rnn_(np.zeros(3), 0)


def test_identity_errors():
    with pytest.raises(ValueError, match="square"):
        init.identity_(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="square"):
        init.identity_(np.zeros((12, 4)), num_gates=4)
    with pytest.raises(ValueError, match="divisible by num_gates=5"):
        init.identity_(np.zeros((12, 4)), num_gates=5)
    with pytest.raises(ValueError, match="2-D"):
        init.identity_(np.zeros((2, 2, 2)))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_gates"):
            init.identity_(np.zeros((4, 4)), num_gates=bad)


def test_orthogonal_gates_errors():
    with pytest.raises(ValueError, match="divisible by num_gates=4"):
        init.orthogonal_gates_(np.zeros((10, 5)), 4)
    with pytest.raises(ValueError, match="num_gates"):
        init.orthogonal_gates_(np.zeros((8, 4)), 0)


def test_lstm_forget_bias_errors():
    with pytest.raises(ValueError, match="not divisible by 4"):
        init.lstm_forget_bias_(np.zeros(10))
    with pytest.raises(ValueError, match="4\\*hidden_size = 12"):
        init.lstm_forget_bias_(np.zeros(16), hidden_size=3)
    with pytest.raises(ValueError, match="1-D"):
        init.lstm_forget_bias_(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="hidden_size"):
        init.lstm_forget_bias_(np.zeros(0))
