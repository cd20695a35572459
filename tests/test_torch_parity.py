"""Parity with PyTorch: same parameters, same outputs, same gradients.

A PyTorch recurrent module's state dict, converted with ``.numpy()``, loads unchanged
into the tinyseq module of the same sizes (and the reverse), and then both give the
same outputs and the same gradients with respect to the input, the initial states and
every parameter. Variable-length batches (tinyseq ``lengths=``) are compared with
PyTorch's ``pack_padded_sequence(..., enforce_sorted=False)`` + ``pad_packed_sequence``.

Run with ``pytest -m torch``; every test is skipped when torch is not installed.
"""

import numpy as np
import pytest

from tinyseq import Tensor, backend, nn

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

INPUT, HIDDEN, STEPS, BATCH = 3, 4, 5, 3

TOLERANCES = {
    np.float32: dict(atol=1e-5, rtol=1e-5),
    np.float64: dict(atol=1e-10, rtol=1e-10),
}
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]

# id -> (class name, extra constructor arguments)
MODES = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
}




@pytest.fixture(autouse=True, params=["graph", "numba"])
def layer_backend(request):
    """Every parity test runs on both backends (cells are always graph)."""
    with backend.use_backend(request.param):
        yield request.param


# ---------------------------------------------------------------- helpers


def torch_state(module):
    """A torch module's state dict as NumPy arrays, the way a user would convert it."""
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def assert_close(actual, expected, dtype, what):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOLERANCES[dtype])


def make_pair(mode, dtype, cell=False, seed=0, **kwargs):
    """(torch module, tinyseq module) of the same configuration, tinyseq loaded from torch."""
    cls, extra = MODES[mode]
    if cell:
        cls += "Cell"
    torch.manual_seed(seed)
    tm = getattr(torch.nn, cls)(INPUT, HIDDEN, **extra, **kwargs)
    sm = getattr(nn, cls)(INPUT, HIDDEN, **extra, **kwargs)
    if dtype == np.float64:
        tm.double()
        sm.double()
    missing, unexpected = sm.load_state_dict(torch_state(tm))
    assert (missing, unexpected) == ([], [])
    for name, p in sm.named_parameters():
        assert p.dtype == np.dtype(dtype), name
    return tm, sm


def assert_param_grads(tm, sm, dtype):
    torch_params = dict(tm.named_parameters())
    ours = dict(sm.named_parameters())
    assert list(ours) == list(torch_params)
    for name, p in ours.items():
        assert p.grad is not None, f"{name}: no gradient"
        assert_close(p.grad, torch_params[name].grad, dtype, f"grad of {name}")


def weighted_sum(outputs, weights, wrap):
    """sum_k (outputs[k] * weights[k]).sum(): a loss that touches every output unevenly."""
    total = None
    for out, w in zip(outputs, weights):
        term = (out * wrap(w)).sum()
        total = term if total is None else total + term
    return total


# ---------------------------------------------------------------- cells


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", list(MODES))
def test_cell_matches_torch(mode, bias, with_state, batched, dtype):
    tm, sm = make_pair(mode, dtype, cell=True, bias=bias)
    is_lstm = MODES[mode][0] == "LSTM"
    rng = np.random.default_rng(1)
    lead = (BATCH,) if batched else ()
    x = rng.standard_normal(lead + (INPUT,)).astype(dtype)
    states = [rng.standard_normal(lead + (HIDDEN,)).astype(dtype) for _ in range(2 if is_lstm else 1)]
    weights = [rng.standard_normal(lead + (HIDDEN,)).astype(dtype) for _ in range(2 if is_lstm else 1)]

    def run(module, wrap_leaf, wrap):
        xv = wrap_leaf(x)
        sv = [wrap_leaf(s) for s in states] if with_state else []
        if not with_state:
            out = module(xv)
        elif is_lstm:
            out = module(xv, tuple(sv))
        else:
            out = module(xv, sv[0])
        outs = list(out) if is_lstm else [out]
        loss = weighted_sum(outs, weights, wrap)
        loss.backward()
        return outs, loss, xv, sv

    t_outs, t_loss, t_x, t_s = run(tm, lambda a: torch.tensor(a, requires_grad=True), torch.from_numpy)
    s_outs, s_loss, s_x, s_s = run(sm, lambda a: Tensor(a, requires_grad=True), Tensor)

    for k, (so, to) in enumerate(zip(s_outs, t_outs)):
        assert_close(so.data, to, dtype, f"output {k}")
    assert_close(s_loss.data, t_loss, dtype, "loss")
    assert_close(s_x.grad, t_x.grad, dtype, "grad of x")
    for k, (ss, ts) in enumerate(zip(s_s, t_s)):
        assert_close(ss.grad, ts.grad, dtype, f"grad of state {k}")
    assert_param_grads(tm, sm, dtype)


# ---------------------------------------------------------------- layers


def run_layer_pair(mode, dtype, *, num_layers=1, bidirectional=False, batch_first=False, bias=True,
                   with_state=True, lengths=None, unbatched=False, dropout=0.0, eval_mode=False, seed=0,
                   nan_padding=False, proj_size=0):
    """Run the same layer in torch and tinyseq, backprop a weighted loss, compare everything.

    ``nan_padding``: x holds nan at the padded positions (t >= lengths[b]) in both.
    ``proj_size``: an LSTM's (h, so the output and h_0/h_n, then has that many features)."""
    cls = MODES[mode][0]
    is_lstm = cls == "LSTM"
    tm, sm = make_pair(mode, dtype, num_layers=num_layers, bias=bias, batch_first=batch_first,
                       bidirectional=bidirectional, dropout=dropout, seed=seed,
                       **({"proj_size": proj_size} if proj_size else {}))
    if eval_mode:
        tm.eval()
        sm.eval()
    dirs = 2 if bidirectional else 1
    rng = np.random.default_rng(seed + 1)
    h_size = proj_size or HIDDEN
    if unbatched:
        x_shape, s_shapes = (STEPS, INPUT), [(num_layers * dirs, size) for size in (h_size, HIDDEN)]
    else:
        x_shape = (BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)
        s_shapes = [(num_layers * dirs, BATCH, size) for size in (h_size, HIDDEN)]
    s_shapes = s_shapes[: 2 if is_lstm else 1]
    x = rng.standard_normal(x_shape).astype(dtype)
    if nan_padding:
        padded = np.arange(STEPS)[:, None] >= np.asarray(lengths)  # (T, B)
        x[padded.T if batch_first else padded] = np.nan
    states = [rng.standard_normal(shape).astype(dtype) for shape in s_shapes]
    weights = [rng.standard_normal(x_shape[:-1] + (dirs * h_size,)).astype(dtype)]
    weights += [rng.standard_normal(shape).astype(dtype) for shape in s_shapes]

    # torch
    t_x = torch.tensor(x, requires_grad=True)
    t_s = [torch.tensor(s, requires_grad=True) for s in states] if with_state else []
    hx = None if not with_state else (tuple(t_s) if is_lstm else t_s[0])
    if lengths is None:
        t_out, t_fin = tm(t_x, hx)
    else:
        packed = pack_padded_sequence(t_x, torch.tensor(lengths, dtype=torch.int64), batch_first=batch_first,
                                      enforce_sorted=False)
        t_out, t_fin = tm(packed, hx)
        t_out, t_len = pad_packed_sequence(t_out, batch_first=batch_first, total_length=STEPS)
        assert t_len.tolist() == list(lengths)
    t_outs = [t_out] + (list(t_fin) if is_lstm else [t_fin])
    t_loss = weighted_sum(t_outs, weights, torch.from_numpy)
    t_loss.backward()

    # tinyseq
    s_x = Tensor(x, requires_grad=True)
    s_s = [Tensor(s, requires_grad=True) for s in states] if with_state else []
    hx = None if not with_state else (tuple(s_s) if is_lstm else s_s[0])
    s_out, s_fin = sm(s_x, hx) if lengths is None else sm(s_x, hx, lengths=list(lengths))
    s_outs = [s_out] + (list(s_fin) if is_lstm else [s_fin])
    s_loss = weighted_sum(s_outs, weights, Tensor)
    s_loss.backward()

    names = ["output", "h_n", "c_n"]
    for name, so, to in zip(names, s_outs, t_outs):
        assert_close(so.data, to, dtype, name)
    assert_close(s_loss.data, t_loss, dtype, "loss")
    assert_close(s_x.grad, t_x.grad, dtype, "grad of x")
    for name, ss, ts in zip(["h0", "c0"], s_s, t_s):
        assert_close(ss.grad, ts.grad, dtype, f"grad of {name}")
    assert_param_grads(tm, sm, dtype)

    if lengths is not None:
        # outputs (and the input's gradient) past each sequence's end are exactly zero in both
        for b, n in enumerate(lengths):
            for out, grad in ((s_out.data, np.asarray(s_x.grad)), (t_out.detach().numpy(), t_x.grad.numpy())):
                tail = out[b, n:] if batch_first else out[n:, b]
                gtail = grad[b, n:] if batch_first else grad[n:, b]
                assert not tail.any(), f"sequence {b} (length {n}): nonzero output past its end"
                assert not gtail.any(), f"sequence {b} (length {n}): nonzero input gradient past its end"
    return tm, sm, s_outs


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_layer_matches_torch_float64(mode, num_layers, bidirectional, batch_first, bias):
    """The full option grid, h0 (and c0) given, float64."""
    run_layer_pair(mode, np.float64, num_layers=num_layers, bidirectional=bidirectional,
                   batch_first=batch_first, bias=bias, with_state=True)


@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_layer_matches_torch_float32(mode, num_layers, bidirectional, with_state):
    """Default dtype, with and without initial states."""
    run_layer_pair(mode, np.float32, num_layers=num_layers, bidirectional=bidirectional, with_state=with_state)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("mode", list(MODES))
def test_layer_batch_first_with_and_without_states(mode, batch_first, with_state, dtype):
    """batch_first with and without initial states in both dtypes (2 layers, bidirectional)."""
    run_layer_pair(mode, dtype, num_layers=2, bidirectional=True, batch_first=batch_first, with_state=with_state)


@pytest.mark.parametrize("lengths", [(2, 5, 1), (3, 1, 4)], ids=["maxT", "allshort"])
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_lengths_match_packed_sequence_float64(mode, num_layers, bidirectional, batch_first, with_state, lengths):
    """``lengths=`` equals pack_padded_sequence(enforce_sorted=False) + pad_packed_sequence."""
    assert len(lengths) == BATCH and max(lengths) <= STEPS
    run_layer_pair(mode, np.float64, num_layers=num_layers, bidirectional=bidirectional,
                   batch_first=batch_first, with_state=with_state, lengths=lengths)


@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", list(MODES))
def test_nan_in_the_padding_is_ignored_as_packed_sequence_ignores_it(mode, bidirectional, batch_first):
    """Packed sequences never read the padding; ``lengths=`` must not let it reach a gradient."""
    run_layer_pair(mode, np.float64, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
                   lengths=(2, 5, 3), nan_padding=True)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", list(MODES))
def test_lengths_match_packed_sequence_float32(mode, bidirectional, bias):
    run_layer_pair(mode, np.float32, num_layers=2, bidirectional=bidirectional, bias=bias,
                   with_state=True, lengths=(4, 2, 5))


UNBATCHED_GRID = [
    pytest.param(num_layers, bidirectional, batch_first, with_state, np.float64,
                 id=f"L{num_layers}-{'bi' if bidirectional else 'uni'}-{'btf' if batch_first else 'tbf'}-"
                    f"{'state' if with_state else 'nostate'}-float64")
    for num_layers in (1, 2) for bidirectional in (False, True) for batch_first in (False, True)
    for with_state in (True, False)
] + [
    pytest.param(2, bidirectional, False, with_state, np.float32,
                 id=f"L2-{'bi' if bidirectional else 'uni'}-tbf-{'state' if with_state else 'nostate'}-float32")
    for bidirectional in (False, True) for with_state in (True, False)
]


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, with_state, dtype", UNBATCHED_GRID)
@pytest.mark.parametrize("mode", list(MODES))
def test_unbatched_input_matches_torch(mode, num_layers, bidirectional, batch_first, with_state, dtype):
    """A 2-D (T, I) input with (layers*dirs, H) states; batch_first does not apply to it."""
    _, _, outs = run_layer_pair(mode, dtype, num_layers=num_layers, bidirectional=bidirectional,
                                batch_first=batch_first, with_state=with_state, unbatched=True)
    dirs = 2 if bidirectional else 1
    assert outs[0].shape == (STEPS, dirs * HIDDEN)
    assert all(s.shape == (num_layers * dirs, HIDDEN) for s in outs[1:])


# ---------------------------------------------------------------- dropout in eval mode


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_is_identity_in_eval_mode(mode, num_layers, bidirectional, dtype):
    _, sm, outs = run_layer_pair(mode, dtype, num_layers=num_layers, bidirectional=bidirectional,
                                 dropout=0.5, eval_mode=True)
    # the same weights without dropout give the same output
    cls, extra = MODES[mode]
    plain = getattr(nn, cls)(INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional, **extra)
    plain.to(dtype).load_state_dict(sm.state_dict())
    x = np.random.default_rng(2).standard_normal((STEPS, BATCH, INPUT)).astype(dtype)
    out_drop, out_plain = sm(Tensor(x))[0], plain(Tensor(x))[0]
    np.testing.assert_array_equal(out_drop.data, out_plain.data)


# ---------------------------------------------------------------- parameter names, shapes, order


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", list(MODES))
def test_cell_parameter_names_shapes_order_match_torch(mode, bias):
    cls, extra = MODES[mode]
    tm = getattr(torch.nn, cls + "Cell")(INPUT, HIDDEN, bias=bias, **extra)
    sm = getattr(nn, cls + "Cell")(INPUT, HIDDEN, bias=bias, **extra)
    t_sd, s_sd = tm.state_dict(), sm.state_dict()
    assert list(s_sd) == list(t_sd)
    assert [v.shape for v in s_sd.values()] == [tuple(v.shape) for v in t_sd.values()]
    assert [n for n, _ in sm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert all(v.dtype == np.float32 for v in s_sd.values())


@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_layer_parameter_names_shapes_order_match_torch(mode, num_layers, bidirectional, bias, batch_first):
    cls, extra = MODES[mode]
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias, batch_first=batch_first, **extra)
    tm = getattr(torch.nn, cls)(INPUT, HIDDEN, **kwargs)
    sm = getattr(nn, cls)(INPUT, HIDDEN, **kwargs)
    t_sd, s_sd = tm.state_dict(), sm.state_dict()
    assert list(s_sd) == list(t_sd)
    assert [v.shape for v in s_sd.values()] == [tuple(v.shape) for v in t_sd.values()]
    assert [n for n, _ in sm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert all(v.dtype == np.float32 for v in s_sd.values())


# ---------------------------------------------------------------- tinyseq -> torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
@pytest.mark.parametrize("mode", list(MODES))
def test_tinyseq_state_dict_loads_into_torch(mode, num_layers, bidirectional, bias, dtype):
    cls, extra = MODES[mode]
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias, **extra)
    sm = getattr(nn, cls)(INPUT, HIDDEN, **kwargs)
    tm = getattr(torch.nn, cls)(INPUT, HIDDEN, **kwargs)
    if dtype == np.float64:
        sm.double()
        tm.double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sm.state_dict().items()}, strict=True)
    for name, p in tm.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), getattr(sm, name).data)

    x = np.random.default_rng(3).standard_normal((STEPS, BATCH, INPUT)).astype(dtype)
    s_out, s_fin = sm(Tensor(x))
    with torch.no_grad():
        t_out, t_fin = tm(torch.from_numpy(x))
    assert_close(s_out.data, t_out, dtype, "output")
    s_fin = list(s_fin) if cls == "LSTM" else [s_fin]
    t_fin = list(t_fin) if cls == "LSTM" else [t_fin]
    for name, so, to in zip(["h_n", "c_n"], s_fin, t_fin):
        assert_close(so.data, to, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", list(MODES))
def test_tinyseq_cell_state_dict_loads_into_torch(mode, bias, dtype):
    cls, extra = MODES[mode]
    sm = getattr(nn, cls + "Cell")(INPUT, HIDDEN, bias=bias, **extra)
    tm = getattr(torch.nn, cls + "Cell")(INPUT, HIDDEN, bias=bias, **extra)
    if dtype == np.float64:
        sm.double()
        tm.double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in sm.state_dict().items()}, strict=True)
    x = np.random.default_rng(4).standard_normal((BATCH, INPUT)).astype(dtype)
    s_out = sm(Tensor(x))
    with torch.no_grad():
        t_out = tm(torch.from_numpy(x))
    s_out = list(s_out) if cls == "LSTM" else [s_out]
    t_out = list(t_out) if cls == "LSTM" else [t_out]
    for k, (so, to) in enumerate(zip(s_out, t_out)):
        assert_close(so.data, to, dtype, f"output {k}")


# ---------------------------------------------------------------- LSTM with a projection (proj_size)

PROJ = 2  # < HIDDEN


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths", [None, (2, 5, 1)], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=lambda n: f"L{n}")
def test_projected_lstm_matches_torch(num_layers, bidirectional, batch_first, lengths, dtype):
    """torch.nn.LSTM(proj_size=P): h_t = W_hr (o * tanh(c_t)), weight_hr_l{k}, h (L*D, B, P)."""
    run_layer_pair("lstm", dtype, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                   lengths=lengths, proj_size=PROJ)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
def test_projected_lstm_unbatched_and_without_states_matches_torch(with_state):
    _, _, outs = run_layer_pair("lstm", np.float64, num_layers=2, bidirectional=True, with_state=with_state,
                                unbatched=True, proj_size=PROJ)
    assert [o.shape for o in outs] == [(STEPS, 2 * PROJ), (4, PROJ), (4, HIDDEN)]


def test_projected_lstm_parameters_are_torchs():
    """The same names in the same order with the same shapes, from construction on."""
    tm = torch.nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, proj_size=PROJ)
    sm = nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, proj_size=PROJ)
    assert [(k, tuple(v.shape)) for k, v in tm.state_dict().items()] == [
        (k, v.shape) for k, v in sm.state_dict().items()]


@pytest.mark.parametrize("proj_size", [-1, HIDDEN, HIDDEN + 1])
def test_proj_size_out_of_range_is_refused_as_torch_refuses_it(proj_size):
    with pytest.raises(ValueError):
        torch.nn.LSTM(INPUT, HIDDEN, proj_size=proj_size)
    with pytest.raises(ValueError, match="LSTM: proj_size must be"):
        nn.LSTM(INPUT, HIDDEN, proj_size=proj_size)
