"""tinyseq.bptt.rtrl and RTRL: real-time recurrent learning gives BPTT's gradient, forward in time."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyseq import bptt, nn, ops, optim
from tinyseq.gradcheck import numerical_jacobian
from tinyseq.tensor import Tensor

F64 = np.float64


class Leaky(nn.Cell):
    """A user cell with two state tensors and an output that is neither of them."""

    def __init__(self, inputs, hidden):
        self.state_size = (hidden, hidden)
        self.xh = nn.Linear(inputs + hidden, hidden, dtype=F64)
        self.mix = nn.Linear(hidden, hidden, bias=False, dtype=F64)

    def forward(self, x, state):
        h, m = state
        h = (self.xh(ops.concatenate([x, h], axis=1)) + m).tanh()
        m = 0.5 * m + self.mix(h).sigmoid()
        return h * m, (h, m)


CELLS = {
    "rnn": lambda i, h: nn.RNNCell(i, h, dtype=F64),
    "rnn_relu": lambda i, h: nn.RNNCell(i, h, nonlinearity="relu", dtype=F64),
    "lstm": lambda i, h: nn.LSTMCell(i, h, dtype=F64),
    "gru": lambda i, h: nn.GRUCell(i, h, dtype=F64),
    "user": Leaky,
}


def problem(kind, steps=5, batch=3, inputs=3, hidden=4, seed=0, with_lengths=True):
    """A cell, its readout, x, the per-step loss and lengths (the first sequence runs all steps)."""
    rng = np.random.default_rng(seed)
    cell, readout = CELLS[kind](inputs, hidden), nn.Linear(hidden, 2, dtype=F64)
    x, target = rng.standard_normal((steps, batch, inputs)), rng.standard_normal((steps, batch, 2))
    lengths = np.r_[steps, rng.integers(1, steps + 1, batch - 1)] if with_lengths else None

    def loss_fn(y, t):
        return ((readout(y) - target[t]) ** 2).sum()

    return cell, readout, x, loss_fn, lengths


def bptt_grads(cell, readout, x, loss_fn, hx=None, lengths=None):
    """The reference: the graph unrolled by nn.Recurrent, the per-step losses summed, backward."""
    output, final = nn.Recurrent(cell, backend="graph")(x, hx, lengths)
    loss = sum(loss_fn(output[t], t) for t in range(x.shape[0]))
    loss.backward()
    return loss.item(), final, grads_of(cell, readout)


def grads_of(*modules):
    grads = {f"{k}.{name}": p.grad.data.copy() for k, m in enumerate(modules) for name, p in m.named_parameters()}
    for m in modules:
        m.zero_grad()
    return grads


def assert_equal_grads(got, want):
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("kind", CELLS)
def test_rtrl_gradient_equals_bptt_with_lengths(kind):
    cell, readout, x, loss_fn, lengths = problem(kind)
    assert lengths.min() < x.shape[0]  # some sequences end early
    loss, final, want = bptt_grads(cell, readout, x, loss_fn, lengths=lengths)
    result = bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    assert_equal_grads(grads_of(cell, readout), want)
    assert result.loss == pytest.approx(loss, rel=1e-12)
    for a, b in zip(final if isinstance(final, tuple) else (final,),
                    result.state if isinstance(result.state, tuple) else (result.state,)):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-12, atol=1e-12)
        assert not b.requires_grad


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(sorted(CELLS)), steps=st.integers(1, 6), batch=st.integers(1, 3),
       hidden=st.integers(1, 4), seed=st.integers(0, 2**16), given_state=st.booleans())
def test_rtrl_equals_bptt_on_drawn_problems(kind, steps, batch, hidden, seed, given_state):
    cell, readout, x, loss_fn, lengths = problem(kind, steps, batch, 2, hidden, seed)
    hx = None
    if given_state:
        rng = np.random.default_rng(seed + 1)
        parts = [rng.standard_normal((batch, hidden)) for _ in range(2 if kind in ("lstm", "user") else 1)]
        hx = tuple(parts) if len(parts) == 2 else parts[0]
    _, _, want = bptt_grads(cell, readout, x, loss_fn, hx, lengths)
    bptt.rtrl(cell, x, loss_fn, hx=hx, lengths=lengths)
    assert_equal_grads(grads_of(cell, readout), want)


def test_rtrl_against_finite_differences():
    """The gradient itself, not only its agreement with BPTT: central differences in float64."""
    cell, readout, x, loss_fn, lengths = problem("user", steps=4, batch=2, hidden=3)
    weight = cell.xh.weight

    def loss_of(w):
        weight.data[...] = w.data
        return Tensor(np.array(bptt.rtrl(cell, x, loss_fn, lengths=lengths).loss, dtype=F64))

    w0 = weight.data.copy()
    numerical = numerical_jacobian(loss_of, (Tensor(w0),), 0).reshape(w0.shape)
    weight.data[...] = w0
    cell.zero_grad()
    bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    np.testing.assert_allclose(weight.grad.data, numerical, rtol=1e-6, atol=1e-8)


def test_layers_and_recurrent_are_taken_with_their_layout():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3))  # (B, T, I)
    for layer in (nn.LSTM(3, 4, batch_first=True, dtype=F64),
                  nn.Recurrent(nn.GRUCell(3, 4, dtype=F64), batch_first=True)):
        output, _ = layer(x)
        (output ** 2).sum().backward()
        want = grads_of(layer)
        bptt.rtrl(layer, x, lambda y, t: (y ** 2).sum())
        assert_equal_grads(grads_of(layer), want)


def test_losses_at_some_steps_and_grads_accumulate_as_backward_does():
    cell, readout, x, loss_fn, _ = problem("gru", with_lengths=False)
    last = x.shape[0] - 1
    only_last = lambda y, t: loss_fn(y, t) if t == last else None  # noqa: E731
    output, _ = nn.Recurrent(cell, backend="graph")(x)
    loss_fn(output[last], last).backward()
    want = grads_of(cell, readout)
    for m in (cell, readout):  # a gradient already there is added to, as backward adds
        for p in m.parameters():
            p.grad = np.ones(p.shape)
    result = bptt.rtrl(cell, x, only_last)
    got = grads_of(cell, readout)
    assert_equal_grads({k: v - 1 for k, v in got.items()}, want)
    assert result.loss == pytest.approx(loss_fn(output[last], last).item(), rel=1e-12)


def test_memory_is_constant_in_time_over_an_online_run_with_updates():
    cell = nn.GRUCell(2, 3, dtype=F64)
    learner = bptt.RTRL(cell, batch=1)
    n_params = sum(p.data.size for p in cell.parameters())
    assert learner.sensitivity.shape == (1, 3, n_params) and not learner.sensitivity.any()
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((40, 1, 2))
    readout = nn.Linear(3, 1, dtype=F64)
    optimizer = optim.SGD(list(cell.parameters()) + list(readout.parameters()), lr=0.05)
    losses = []
    for t in range(1, 40):  # predict the input one step back: needs the state
        target = xs[t - 1, :, :1]
        losses.append(learner.step(xs[t], lambda y: ((readout(y) - target) ** 2).sum()))
        optimizer.step()
        optimizer.zero_grad()
        assert learner.sensitivity.shape == (1, 3, n_params)
    assert learner.t == 39 and np.isfinite(losses).all()
    learner.reset()
    assert learner.t == 0 and not learner.sensitivity.any() and not learner.state.data.any()


def test_bad_arguments_are_refused():
    cell = nn.GRUCell(2, 3, dtype=F64)
    x = np.zeros((4, 2, 2))
    with pytest.raises(TypeError, match="pass that layer"):
        bptt.rtrl(nn.Sequential(nn.LSTM(2, 3), nn.Linear(3, 1)), x, lambda y, t: y.sum())
    with pytest.raises(ValueError, match="reverse"):
        bptt.rtrl(nn.Recurrent(cell, reverse=True), x, lambda y, t: y.sum())
    with pytest.raises(ValueError, match="one-layer, one-direction"):
        bptt.rtrl(nn.GRU(2, 3, num_layers=2), x, lambda y, t: y.sum())
    with pytest.raises(ValueError, match=r"expected x of \(T, B, \.\.\.\)"):
        bptt.rtrl(cell, x[0], lambda y, t: y.sum())
    with pytest.raises(ValueError, match="no time steps"):
        bptt.rtrl(cell, x[:0], lambda y, t: y.sum())
    with pytest.raises(ValueError, match="lengths"):
        bptt.rtrl(cell, x, lambda y, t: y.sum(), lengths=[5, 1])
    with pytest.raises(ValueError, match="one-element Tensor"):
        bptt.rtrl(cell, x, lambda y, t: y)
    with pytest.raises(ValueError, match=r"x_t must be \(B, \.\.\.\) with B = 2"):
        bptt.RTRL(cell, batch=2).step(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="keep must be 2 booleans"):
        bptt.RTRL(cell, batch=2).step(np.zeros((2, 2)), keep=[1, 0])
    with pytest.raises(ValueError, match="batch"):
        bptt.RTRL(cell, batch=0)
    with pytest.raises(ValueError, match=r"RTRL\(GRUStep\): state= must fit the cell's state_size 3"):
        bptt.RTRL(cell, batch=2, state=np.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"RTRL\(GRUStep\): state has dtype int64 but the parameters are float64"):
        bptt.RTRL(cell, batch=2, state=np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match=r"RTRL\(GRUStep\): x_t has dtype float32 but the parameters are float64"):
        bptt.rtrl(cell, x.astype(np.float32), lambda y, t: y.sum())

    def fails_at_3(y, t):
        return y if t == 3 else y.sum()

    with pytest.raises(ValueError, match="one-element Tensor"):  # after three steps' gradients
        bptt.rtrl(cell, x, fails_at_3)
    grads = [p.grad for p in cell.parameters()]
    assert grads == [None] * len(grads)  # a refused call leaves the cell no gradient (fails_at_3 too)


@pytest.mark.parametrize("kind", ["lstm", "user"])
def test_sensitivity_is_the_final_states_jacobian(kind):
    """P_T = ds_T/dtheta, each sequence's own, also for one that ended early (its state kept)."""
    cell, _, x, _, lengths = problem(kind, steps=4, batch=2, hidden=2)
    lengths = np.array([4, 2])
    mask = np.arange(4)[:, None] < lengths
    learner = bptt.RTRL(cell, batch=2)
    for t in range(4):
        learner.step(x[t], keep=mask[t])
    params = list(cell.parameters())
    for b in range(2):
        for k in range(2):
            for i in range(2):
                _, final = nn.Recurrent(cell, backend="graph")(x, lengths=lengths)
                final[k][b, i].backward()
                want = np.concatenate([p.grad.data.ravel() for p in params])
                cell.zero_grad()
                np.testing.assert_allclose(learner.sensitivity[b, 2 * k + i], want, rtol=1e-10, atol=1e-12)


def test_hooks_see_the_whole_gradient_once_and_float32_and_layer_states_are_taken():
    cell, readout, x, loss_fn, lengths = problem("gru")
    calls = []

    def clip(g):
        calls.append(1)
        return np.clip(np.asarray(g), -0.05, 0.05)

    handle = cell.weight_hh.register_hook(clip)
    _, _, want = bptt_grads(cell, readout, x, loss_fn, lengths=lengths)
    bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    assert len(calls) == 2  # once for BPTT's backward, once for RTRL's whole gradient
    assert_equal_grads(grads_of(cell, readout), want)
    handle.remove()
    fixed = np.ones(cell.weight_hh.shape)  # a hook's array is copied into .grad, as backward does
    handle = cell.weight_hh.register_hook(lambda g: fixed)
    bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    first = cell.weight_hh.grad
    assert not np.shares_memory(first.data, fixed)
    bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    assert cell.weight_hh.grad is first and (first.data == 2).all() and (fixed == 1).all()
    handle.remove()
    grads_of(cell, readout)

    layer = nn.LSTM(3, 4)  # float32, its state given as the layer takes it, (1, B, H)
    x32 = x.astype(np.float32)
    hx = tuple(np.random.default_rng(5).standard_normal((1, 3, 4)).astype(np.float32) for _ in range(2))
    output, _ = layer(x32, hx)
    (output ** 2).sum().backward()
    want = grads_of(layer)
    bptt.rtrl(layer, x32, lambda y, t: (y ** 2).sum(), hx=hx)
    got = grads_of(layer)
    for name in want:
        assert got[name].dtype == np.float32
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=2e-5, err_msg=name)
