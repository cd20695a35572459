"""Recurrent cells and layers of the graph backend: gradients, semantics, errors, training.

Gradients are checked in float64 against finite differences, with respect to the input,
the initial states and every parameter at once. Cells use the full Jacobian check;
layers (many more parameters) the directional one, plus a few full checks pinned below.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import tinyseq as ts
from tinyseq import Tensor, backend, gradcheck, nn

from helpers import layer_configs, layer_loss_and_inputs, randn, weighted_sum


@pytest.fixture(autouse=True)
def graph_backend():
    """These tests are about the unrolled graph; test_backends.py holds the fused kernels to it."""
    with backend.use_backend("graph"):
        yield

CELL_OPTIONS = [
    ("RNNCell", {}),
    ("RNNCell", {"nonlinearity": "relu"}),
    ("RNNCell", {"bias": False}),
    ("LSTMCell", {}),
    ("LSTMCell", {"peephole": True}),
    ("LSTMCell", {"coupled": True}),
    ("LSTMCell", {"peephole": True, "coupled": True, "bias": False}),
    ("GRUCell", {}),
    ("GRUCell", {"reset_after": False}),
    ("GRUCell", {"reset_after": False, "bias": False}),
]


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize("cls,options", CELL_OPTIONS, ids=[f"{c}-{o}" for c, o in CELL_OPTIONS])
@given(batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden=st.integers(1, 3), seed=st.integers(0, 2**16),
       given_state=st.booleans())
def test_cell_gradients(cls, options, batch, input_size, hidden, seed, given_state):
    rng = np.random.default_rng(seed)
    cell = getattr(nn, cls)(input_size, hidden, **options).double()
    x = randn(rng, batch, input_size)
    states = [randn(rng, batch, hidden) for _ in range(2 if cls == "LSTMCell" else 1)] if given_state else []

    def f(x, *rest):
        s = rest[: len(states)]
        if cls == "LSTMCell":
            out = cell(x, tuple(s) if s else None)
        else:
            out = [cell(x, s[0] if s else None)]
        return weighted_sum(out, seed)

    assert gradcheck(f, [x, *states, *cell.parameters()], mode="full")


def test_cell_equations_by_hand():
    rng = np.random.default_rng(0)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731

    lstm = nn.LSTMCell(3, 4, peephole=True).double()
    p = {k: v.data for k, v in lstm.named_parameters()}
    i, f, g, o = np.split(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"], 4, axis=1)
    i, f = sig(i + p["weight_ci"] * c), sig(f + p["weight_cf"] * c)
    c_new = f * c + i * np.tanh(g)
    h_new = sig(o + p["weight_co"] * c_new) * np.tanh(c_new)
    out_h, out_c = lstm(Tensor(x), (Tensor(h), Tensor(c)))
    np.testing.assert_allclose(out_h.data, h_new, atol=1e-12)
    np.testing.assert_allclose(out_c.data, c_new, atol=1e-12)

    coupled = nn.LSTMCell(3, 4, coupled=True).double()
    p = {k: v.data for k, v in coupled.named_parameters()}
    assert p["weight_ih"].shape == (12, 3)
    f, g, o = np.split(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"], 3, axis=1)
    c_new = sig(f) * c + (1 - sig(f)) * np.tanh(g)
    np.testing.assert_allclose(coupled(Tensor(x), (Tensor(h), Tensor(c)))[1].data, c_new, atol=1e-12)

    gru = nn.GRUCell(3, 4, reset_after=False).double()
    p = {k: v.data for k, v in gru.named_parameters()}
    xr, xz, xn = np.split(x @ p["weight_ih"].T + p["bias_ih"], 3, axis=1)
    wr, wz, wn = np.split(p["weight_hh"], 3)
    br, bz, bn = np.split(p["bias_hh"], 3)
    r, z = sig(xr + h @ wr.T + br), sig(xz + h @ wz.T + bz)
    n = np.tanh(xn + (r * h) @ wn.T + bn)
    np.testing.assert_allclose(gru(Tensor(x), Tensor(h)).data, (1 - z) * n + z * h, atol=1e-12)


def test_cells_default_state_is_zero_and_unbatched_input_works():
    for cell in (nn.RNNCell(3, 2), nn.GRUCell(3, 2)):
        x = np.ones((1, 3), dtype=np.float32)
        np.testing.assert_array_equal(cell(x).data, cell(x, np.zeros((1, 2), np.float32)).data)
        assert cell(np.ones(3, np.float32)).shape == (2,)
    h, c = nn.LSTMCell(3, 2)(np.ones(3, np.float32))
    assert h.shape == c.shape == (2,)


# ---------------------------------------------------------------- layers


@given(config=layer_configs(proj=True))
def test_layer_gradients(config):
    _, f, inputs = layer_loss_and_inputs(*config)
    assert gradcheck(f, inputs, mode="directional")


@pytest.mark.parametrize(
    "config",
    [
        ("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": False, "peephole": True,
                  "coupled": False}, {"steps": 3, "batch": 2, "input_size": 2, "hidden": 2}, [3, 1], True, 0),
        ("GRU", {"num_layers": 1, "bidirectional": True, "bias": True, "batch_first": True, "reset_after": False},
         {"steps": 4, "batch": 3, "input_size": 2, "hidden": 2}, [2, 4, 1], True, 1),
        ("RNN", {"num_layers": 2, "bidirectional": False, "bias": False, "batch_first": False,
                 "nonlinearity": "tanh"}, {"steps": 3, "batch": 2, "input_size": 3, "hidden": 2}, None, False, 2),
        ("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": True, "peephole": False,
                  "coupled": False, "proj_size": 1}, {"steps": 3, "batch": 2, "input_size": 2, "hidden": 2},
         [3, 2], True, 3),
    ],
    ids=["lstm-peephole-bidir-lengths", "gru-classic-bidir-batch-first", "rnn-2-layers", "lstm-proj-2-layers-bidir"],
)
def test_layer_gradients_full_jacobian(config):
    _, f, inputs = layer_loss_and_inputs(*config)
    assert gradcheck(f, inputs, mode="full")


@pytest.mark.parametrize("cls,options", CELL_OPTIONS, ids=[f"{c}-{o}" for c, o in CELL_OPTIONS])
def test_layer_equals_its_cell_unrolled(cls, options):
    rng = np.random.default_rng(0)
    mode = cls[:-len("Cell")]
    layer = getattr(nn, mode)(3, 4, **options).double()
    cell = getattr(nn, cls)(3, 4, **options).double()
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})  # weight_ih_l0 -> weight_ih
    x = rng.standard_normal((5, 2, 3))
    out, last = layer(Tensor(x))
    state = None
    for t in range(5):
        state = cell(Tensor(x[t]), state)
        h = state[0] if mode == "LSTM" else state
        np.testing.assert_allclose(out.data[t], h.data, atol=1e-12)
    for final, ours in zip(last if mode == "LSTM" else [last], state if mode == "LSTM" else [state]):
        np.testing.assert_allclose(final.data[0], ours.data, atol=1e-12)


@given(config=layer_configs(proj=True))
@example(config=("LSTM", {"num_layers": 1, "bidirectional": True, "bias": True, "batch_first": False,
                          "peephole": False, "coupled": False}, {"steps": 4, "batch": 2, "input_size": 2, "hidden": 3},
                 [4, 2], True, 0))
def test_lengths_match_running_each_sequence_alone(config):
    mode, options, sizes, lengths, given_state, seed = config
    if lengths is None:
        lengths = [sizes["steps"]] * sizes["batch"]
    layer, _, inputs = layer_loss_and_inputs(mode, options, sizes, lengths, given_state, seed)
    x = inputs[0].data
    states = [s.data for s in inputs[1 : 1 + ((2 if mode == "LSTM" else 1) if given_state else 0)]]
    hx = (tuple(Tensor(s) for s in states) if mode == "LSTM" else Tensor(states[0])) if states else None
    out, h_n = layer(Tensor(x), hx, lengths=np.array(lengths))
    h_n = h_n if mode == "LSTM" else (h_n,)
    time_axis = 1 if options["batch_first"] else 0
    for b, n in enumerate(lengths):
        xb = np.take(x, [b], axis=1 - time_axis)
        xb = xb[:, :n] if options["batch_first"] else xb[:n]
        hb = tuple(Tensor(s[:, b : b + 1]) for s in states)
        hb = (hb if mode == "LSTM" else hb[0]) if states else None
        out_b, h_b = layer(Tensor(xb), hb)
        h_b = h_b if mode == "LSTM" else (h_b,)
        got = np.take(out.data, [b], axis=1 - time_axis)
        np.testing.assert_allclose(np.take(got, range(n), axis=time_axis), out_b.data, atol=1e-12)
        assert np.all(np.take(got, range(n, sizes["steps"]), axis=time_axis) == 0)
        for mine, alone in zip(h_n, h_b):
            np.testing.assert_allclose(mine.data[:, b : b + 1], alone.data, atol=1e-12)


def test_layer_shapes_and_batch_first():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    out, (h, c) = lstm(np.ones((2, 5, 3), np.float32))
    assert out.shape == (2, 5, 8) and h.shape == c.shape == (4, 2, 4)
    out, h = nn.GRU(3, 4)(np.ones((5, 3), np.float32))
    assert out.shape == (5, 4) and h.shape == (1, 4)


def test_dropout_between_layers_only_in_training():
    gru = nn.GRU(3, 4, num_layers=2, dropout=0.5, generator=np.random.default_rng(0))
    x = np.ones((4, 2, 3), np.float32)
    a, b = gru(x)[0].data, gru(x)[0].data
    assert not np.array_equal(a, b)
    gru.eval()
    np.testing.assert_array_equal(gru(x)[0].data, gru(x)[0].data)
    single = nn.GRU(3, 4, num_layers=1, dropout=0.5)
    np.testing.assert_array_equal(single(x)[0].data, single(x)[0].data)


def test_parameter_names_and_repr():
    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert names[4] == "weight_ih_l0_reverse" and len(names) == 16
    assert lstm.weight_ih_l1.shape == (80, 40)
    assert repr(lstm) == "LSTM(10, 20, num_layers=2, bidirectional=True)"
    assert repr(nn.GRU(3, 4, reset_after=False)) == "GRU(3, 4, reset_after=False)"
    assert [n for n, _ in nn.LSTM(2, 3, peephole=True, coupled=True).named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_cf_l0", "weight_co_l0"]
    bound = 1 / np.sqrt(20)
    assert all(np.abs(p.data).max() <= bound for p in lstm.parameters())


def test_truncated_bptt_with_detach():
    lstm = nn.LSTM(2, 3).double()
    x = np.random.default_rng(0).standard_normal((6, 1, 2))
    out, (h, c) = lstm(Tensor(x[:3]))
    out2, _ = lstm(Tensor(x[3:]), (h.detach(), c.detach()))
    out2.sum().backward()
    grads = [np.array(p.grad) for p in lstm.parameters()]
    lstm.zero_grad()
    out2, _ = lstm(Tensor(x[3:]), (Tensor(h.data), Tensor(c.data)))
    out2.sum().backward()
    for g, p in zip(grads, lstm.parameters()):
        np.testing.assert_array_equal(g, p.grad)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m(np.ones((2, 3, 4, 5), np.float32)), r"LSTM: expected a 3-D input"),
        (lambda m: m(np.ones((2, 3, 5), np.float32)), r"LSTM: expected input feature size 4, got 5"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), (np.zeros((1, 3, 6), np.float32),) * 2), r"expected h0 of shape \(2, 3, 6\)"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), np.zeros((2, 3, 6), np.float32)), r"hx must be a tuple \(h0, c0\)"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), lengths=[1, 2, 3]), r"lengths must lie in \[1, 2\]"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), lengths=[1, 0, 2]), r"lengths must lie in \[1, 2\]"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), lengths=[1, 2]), r"lengths must be 3 integers"),
        (lambda m: m(np.ones((2, 3, 4), np.float32), lengths=[1.0, 2.0, 2.0]), r"lengths must be 3 integers"),
        (lambda m: m(np.ones((0, 3, 4), np.float32)), r"no time steps"),
    ],
)
def test_layer_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(nn.LSTM(4, 6, num_layers=2))


def test_construction_and_dtype_errors():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        nn.LSTM(2, 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        nn.LSTM(2, 3, backend="tpu")
    with pytest.raises(TypeError, match="LSTM: input has dtype float64 but the parameters are float32"):
        nn.LSTM(2, 3)(np.ones((2, 1, 2)))
    with pytest.raises(ValueError, match=r"GRUCell: expected input of shape \(batch, 2\)"):
        nn.GRUCell(2, 3)(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRUCell: expected h of shape \(1, 3\)"):
        nn.GRUCell(2, 3)(np.ones((1, 2), np.float32), np.ones((2, 3), np.float32))


@pytest.mark.parametrize("layer", [nn.RNN(2, 3), nn.GRU(2, 3), nn.RNNCell(2, 3), nn.GRUCell(2, 3)],
                         ids=["RNN", "GRU", "RNNCell", "GRUCell"])
def test_a_tuple_state_is_refused_where_only_lstm_takes_one(layer):
    is_cell = "Cell" in type(layer).__name__
    x = np.ones((1, 2) if is_cell else (4, 1, 2), np.float32)
    h = Tensor(np.zeros((1, 3) if is_cell else (1, 1, 3), np.float32))
    name = type(layer).__name__
    with pytest.raises(TypeError, match=rf"{name}: expected (h|h0) to be one Tensor or array, got a tuple of them; only an LSTM"):
        layer(x, (h, h))


@pytest.mark.parametrize("backend_name", ["graph", "numba"])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_an_empty_batch_runs_with_and_without_lengths(backend_name, mode):
    layer = getattr(nn, mode)(2, 3, num_layers=2, bidirectional=True, backend=backend_name)
    x = Tensor(np.zeros((4, 0, 2), np.float32), requires_grad=True)
    for lengths in (None, [], np.array([], dtype=np.int64)):
        out, h_n = layer(x, lengths=lengths)
        assert out.shape == (4, 0, 6)
        out.sum().backward()
        assert x.grad.shape == x.shape


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.complex64, "not-a-dtype"])
@pytest.mark.parametrize("cls", ["LSTM", "GRUCell", "Linear", "Embedding", "LayerNorm"])
def test_only_float32_and_float64_parameters(cls, dtype):
    args = (3, 4) if cls != "LayerNorm" else (3,)
    with pytest.raises(TypeError, match=rf"{cls}: dtype must be float32 or float64, got"):
        getattr(nn, cls)(*args, dtype=dtype)
    with pytest.raises(TypeError, match=rf"{cls}.to: (dtype must be float32 or float64|expected a dtype or 'cpu')"):
        getattr(nn, cls)(*args).to(dtype)


@pytest.mark.parametrize("cls", ["LSTM", "LSTMCell", "Linear"])
def test_load_state_dict_of_none_names_the_module(cls):
    with pytest.raises(TypeError, match=rf"{cls}.load_state_dict: expected a dict of name -> array, got NoneType"):
        getattr(nn, cls)(3, 4).load_state_dict(None)


@pytest.mark.parametrize("backend_name", ["graph", "numba"])
@pytest.mark.parametrize("mode,options", [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
                                          ("LSTM", {"peephole": True, "coupled": True}), ("GRU", {}),
                                          ("GRU", {"reset_after": False})])
def test_padded_steps_influence_nothing(mode, options, backend_name):
    """nan and inf in the padded part of x, and nan in the incoming gradient at padded
    output positions, change no output, state or gradient (PyTorch's packed sequences
    give the same)."""
    rng = np.random.default_rng(0)
    layer = getattr(nn, mode)(2, 3, num_layers=2, bidirectional=True, backend=backend_name, **options).double()
    lengths = np.array([5, 2, 4])
    valid = (np.arange(5)[:, None] < lengths)[:, :, None]
    clean = np.where(valid, rng.standard_normal((5, 3, 2)), 0.0)
    poisoned = np.where(valid, clean, np.where(rng.random((5, 3, 2)) < 0.5, np.nan, np.inf))
    out_grad = rng.standard_normal((5, 3, 6))

    def run(x, g_out):
        layer.zero_grad()
        xt = Tensor(x, requires_grad=True)
        out, h_n = layer(xt, lengths=lengths)
        finals = list(h_n) if mode == "LSTM" else [h_n]
        out.backward(g_out, retain_graph=True)
        sum(f.sum() for f in finals).backward()
        results = {"output": out.data, "dx": np.asarray(xt.grad),
                   **{f"final {k}": f.data for k, f in enumerate(finals)}}
        return {**results, **{name: np.asarray(p.grad) for name, p in layer.named_parameters()}}

    expected = run(clean, out_grad)
    got = run(poisoned, np.where(valid, out_grad, np.nan))
    for name, value in got.items():
        assert np.isfinite(value).all(), name
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    assert (got["dx"][~valid[..., 0]] == 0).all()


def test_lstm_forget_bias_on_a_module_sets_every_layer_and_direction():
    for options in ({}, {"coupled": True}, {"coupled": True, "peephole": True}):
        lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=True, **options)
        before = lstm.state_dict()
        assert nn.init.lstm_forget_bias_(lstm, 1.5) is lstm
        f = ts.gates.gate_slice("LSTM", "f", 3, options.get("coupled", False))
        for name, value in lstm.state_dict().items():
            expected = before[name].copy()
            if name.startswith("bias_"):
                expected[f] = 1.5 if name.startswith("bias_ih") else 0.0
            np.testing.assert_array_equal(value, expected, err_msg=name)
    cell = nn.init.lstm_forget_bias_(nn.LSTMCell(2, 3, coupled=True), 2.0)
    np.testing.assert_array_equal(cell.bias_ih.data[:3] + cell.bias_hh.data[:3], 2.0)  # f comes first when coupled
    with pytest.raises(ValueError, match="bias=False"):
        nn.init.lstm_forget_bias_(nn.LSTM(2, 3, bias=False))
    with pytest.raises(ValueError, match="holds no LSTM"):
        nn.init.lstm_forget_bias_(nn.GRU(2, 3))


def test_states_as_nested_lists_of_numbers_are_converted():
    x = np.ones((3, 1, 2), np.float32)
    out, h = nn.RNN(2, 3)(x, [[[0.5, 0.5, 0.5]]])
    assert h.shape == (1, 1, 3)
    assert nn.GRUCell(2, 3)(x[0], [[0.0, 0.0, 0.0]]).shape == (1, 3)


def test_lstm_forget_bias_changes_nothing_when_one_lstm_has_no_bias():
    model = nn.Sequential(nn.LSTM(2, 3), nn.LSTM(3, 3, bias=False))
    before = model.state_dict()
    with pytest.raises(ValueError, match="bias=False"):
        nn.init.lstm_forget_bias_(model, 1.0)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_mismatched_state_dict_is_rejected_whole():
    lstm = nn.LSTM(3, 4)
    before = lstm.state_dict()
    bad = nn.LSTM(3, 5).state_dict()
    with pytest.raises(ValueError, match=r"shape mismatch for weight_ih_l0: expected \(16, 3\), got \(20, 3\)"):
        lstm.load_state_dict(bad)
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"missing keys: \['weight_ih_l0_reverse'"):
        nn.LSTM(3, 4, bidirectional=True).load_state_dict(before)


# ---------------------------------------------------------------- training


def test_lstm_learns_to_echo():
    """Output at step t is the symbol seen at t - 2 (steps 0 and 1 ignored)."""
    nn.init.manual_seed(0)
    rng = np.random.default_rng(0)
    vocab, steps, batch, delay = 4, 10, 16, 2
    lstm, head = nn.LSTM(vocab, 24), nn.Linear(24, vocab)
    opt = ts.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.03)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(300):
        symbols = rng.integers(0, vocab, size=(steps, batch))
        target = np.full_like(symbols, -100)
        target[delay:] = symbols[:-delay]
        out, _ = lstm(ts.one_hot(symbols, vocab))
        loss = loss_fn(head(out), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()
