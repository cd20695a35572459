"""tinyseq.bptt: truncated BPTT equals the hand-written loop, and full BPTT when k1 >= T."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import nn
from tinyseq.bptt import TBPTT, detach_state, evaluate
from tinyseq.nn import functional as F

V = 7


class CharModel(nn.Module):
    def __init__(self, cell="LSTM", backend="graph", bidirectional=False):
        super().__init__()
        self.embed = nn.Embedding(V, 5)
        self.rnn = getattr(nn, cell)(5, 6, num_layers=2, batch_first=True, backend=backend,
                                     bidirectional=bidirectional)
        self.head = nn.Linear(12 if bidirectional else 6, V)

    def forward(self, x, state):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def loss_fn(out, y):
    return F.cross_entropy(out.reshape(-1, V), np.asarray(y).reshape(-1))


def models(cell, backend):
    ts.manual_seed(0)
    a = CharModel(cell, backend).to(np.float64)
    b = CharModel(cell, backend).to(np.float64)
    b.load_state_dict(a.state_dict())
    return a, b


def data(steps=12, batch=3, seed=1):
    tokens = np.random.default_rng(seed).integers(0, V, (batch, steps + 1))
    return tokens[:, :-1], tokens[:, 1:]


def by_hand(model, opt, x, y, k1, k2, state=None, max_norm=None):
    """The loop TBPTT stands for, written out."""
    for start in range(0, x.shape[1], k1):
        stop = min(start + k1, x.shape[1])
        trained = max(start, stop - k2)
        state = detach_state(state)
        if trained > start:
            with ts.no_grad():
                _, state = model(x[:, start:trained], state)
        opt.zero_grad()
        out, state = model(x[:, trained:stop], state)
        loss_fn(out, y[:, trained:stop]).backward()
        if max_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
    return state


def assert_same_weights(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)


@pytest.mark.parametrize("backend", ["graph", "numba"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("k1", [12, 50])
def test_k1_at_least_T_is_one_full_bptt_update(cell, backend, k1):
    a, b = models(cell, backend)
    x, y = data()
    opt_a, opt_b = ts.optim.Adam(a.parameters(), lr=0.01), ts.optim.Adam(b.parameters(), lr=0.01)
    loss = TBPTT(a, loss_fn, opt_a, k1=k1, max_norm=0.5, batch_first=True).step(x, y)
    opt_b.zero_grad()
    out, _ = b(x, None)
    full = loss_fn(out, y)
    full.backward()
    nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    opt_b.step()
    assert loss == pytest.approx(full.item(), rel=1e-14)
    assert_same_weights(a, b)


@pytest.mark.parametrize("k1,k2", [(4, 4), (5, 2), (12, 1), (3, 3)])
def test_truncated_updates_match_the_loop_written_out_and_carry_the_state(k1, k2):
    a, b = models("LSTM", "graph")
    opt_a, opt_b = ts.optim.SGD(a.parameters(), lr=0.1), ts.optim.SGD(b.parameters(), lr=0.1)
    tbptt = TBPTT(a, loss_fn, opt_a, k1=k1, k2=k2, batch_first=True)
    state = None
    for seed in (1, 2):  # two consecutive chunks of the same streams: the state carries over
        x, y = data(seed=seed)
        tbptt.step(x, y)
        state = by_hand(b, opt_b, x, y, k1, k2, state)
        assert_same_weights(a, b)
    h, c = tbptt.state
    assert not h.requires_grad and not c.requires_grad
    np.testing.assert_array_equal(h.data, state[0].data)
    np.testing.assert_array_equal(c.data, state[1].data)
    tbptt.reset()
    assert tbptt.state is None


@pytest.mark.parametrize("backend", ["graph", "numba"])
def test_pieces_within_a_call_equal_calls_with_the_state_carried_and_the_loss_is_per_step(backend):
    """Independent of the loop: k1 = 5 over 12 steps is three one-piece calls of 5, 5 and 2
    steps; with lr = 0 the returned loss is the plain mean over all 12 steps' positions."""
    a, b = models("LSTM", backend)
    x, y = data()
    opt_a, opt_b = ts.optim.Adam(a.parameters(), lr=0.01), ts.optim.Adam(b.parameters(), lr=0.01)
    TBPTT(a, loss_fn, opt_a, k1=5, max_norm=0.5, batch_first=True).step(x, y)
    whole = TBPTT(b, loss_fn, opt_b, k1=100, max_norm=0.5, batch_first=True)
    for start in (0, 5, 10):
        whole.step(x[:, start:start + 5], y[:, start:start + 5])
    assert_same_weights(a, b)
    c, _ = models("LSTM", backend)
    loss = TBPTT(c, loss_fn, ts.optim.SGD(c.parameters(), lr=0.0), k1=10, batch_first=True).step(x, y)
    with ts.no_grad():
        expected = loss_fn(c(x, None)[0], y).item()
    assert loss == pytest.approx(expected, rel=1e-12)


def test_clips_only_what_the_optimizer_updates_and_trains_in_training_mode():
    a, b = models("GRU", "graph")
    x, y = data()
    trained = lambda m: [p for name, p in m.named_parameters() if not name.startswith("embed")]  # noqa: E731
    opt_a, opt_b = ts.optim.SGD(trained(a), lr=0.1), ts.optim.SGD(trained(b), lr=0.1)
    tbptt = TBPTT(a, loss_fn, opt_a, k1=4, max_norm=0.01, batch_first=True)
    a.eval()
    tbptt.step(x, y)
    assert a.training
    state = None
    for start in range(0, 12, 4):  # the embedding's gradient piles up, unclipped and unused
        opt_b.zero_grad()
        out, state = b(x[:, start:start + 4], detach_state(state))
        loss_fn(out, y[:, start:start + 4]).backward()
        nn.utils.clip_grad_norm_(trained(b), 0.01)
        opt_b.step()
    assert_same_weights(a, b)


def test_detach_state_keeps_lists_and_namedtuples():
    from collections import namedtuple

    Pair = namedtuple("Pair", "h c")
    t = ts.Tensor(np.ones(2), requires_grad=True) * 2
    out = detach_state(Pair(t, [t, None]))
    assert type(out) is Pair and isinstance(out.c, list) and out.c[1] is None
    assert not out.h.requires_grad and not out.c[0].requires_grad


def test_time_first_layout():
    a, b = models("GRU", "graph")
    a.rnn.batch_first = b.rnn.batch_first = False
    x, y = (t.T for t in data())  # (T, B)
    opt_a, opt_b = ts.optim.SGD(a.parameters(), lr=0.1), ts.optim.SGD(b.parameters(), lr=0.1)
    TBPTT(a, loss_fn, opt_a, k1=5).step(x, y)
    state = None
    for start in range(0, 12, 5):
        opt_b.zero_grad()
        out, state = b(x[start:start + 5], detach_state(state))
        loss_fn(out, y[start:start + 5]).backward()
        opt_b.step()
    assert_same_weights(a, b)


def test_refuses_bidirectional_models_and_bad_arguments():
    ts.manual_seed(0)
    model = CharModel(bidirectional=True)
    opt = ts.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="TBPTT: rnn is bidirectional; truncated BPTT needs a causal model"):
        TBPTT(model, loss_fn, opt, k1=4)
    model = CharModel()
    for kwargs, match in [(dict(k1=0), "k1 must be a positive int, got 0"), (dict(k1=4, k2=5), r"k2 \(5\) must be at most k1 \(4\)"),
                          (dict(k1=2.0), "k1 must be a positive int, got 2.0"),
                          (dict(k1=4), "batch_first=False, but the model's rnn has batch_first=True")]:
        with pytest.raises(ValueError, match=match):
            TBPTT(model, loss_fn, opt, **kwargs)
    x, y = data()
    with pytest.raises(ValueError, match="TBPTT.step: x and y need the same, non-zero number of steps on axis 1"):
        TBPTT(model, loss_fn, opt, k1=4, batch_first=True).step(x, y[:, :5])
    with pytest.raises(ValueError, match="TBPTT.step: x and y need a time axis 1"):
        TBPTT(model, loss_fn, opt, k1=4, batch_first=True).step(x[0], y[0])
    with pytest.raises(TypeError, match="detach_state: expected None, a Tensor or a tuple or list of Tensors, got dict"):
        detach_state({"h": 1})


def test_carried_state_survives_a_checkpoint(tmp_path):
    """Resuming from a checkpoint mid-stream trains exactly as the run that went on."""
    from tinyseq.serialization import load, save

    a, b = models("LSTM", "graph")
    opt_a, opt_b = ts.optim.Adam(a.parameters(), lr=0.01), ts.optim.Adam(b.parameters(), lr=0.01)
    run = TBPTT(a, loss_fn, opt_a, k1=4, batch_first=True)
    run.step(*data(seed=1))
    save({"tbptt": run.state_dict(), "model": a.state_dict(), "opt": opt_a.state_dict()}, tmp_path / "ck.npz")
    run.step(*data(seed=2))

    saved = load(tmp_path / "ck.npz")
    b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    resumed = TBPTT(b, loss_fn, opt_b, k1=4, batch_first=True)
    resumed.load_state_dict(saved["tbptt"])
    assert isinstance(resumed.state, tuple) and resumed.state[0].shape == (2, 3, 6)
    resumed.step(*data(seed=2))
    assert_same_weights(a, b)
    assert TBPTT(b, loss_fn, opt_b, k1=4, batch_first=True).state_dict() == {"state": None}
    with pytest.raises(ValueError, match="TBPTT.load_state_dict: not a saved state"):
        resumed.load_state_dict({"state": {"oops": 1}})


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_evaluate_carries_the_state_weights_by_targets_and_restores_the_mode(cell):
    model, _ = models(cell, "graph")
    model.rnn.dropout = 0.5  # evaluate must turn it off
    x, y = data(steps=11)
    with ts.no_grad():
        model.eval()
        whole = loss_fn(model(x, None)[0], y).item()  # one pass over all 11 steps
    model.train()
    pieces = [(x[:, i:i + 4], y[:, i:i + 4]) for i in range(0, 11, 4)]  # 4 + 4 + 3 steps
    assert evaluate(model, loss_fn, pieces) == pytest.approx(whole, rel=1e-12)
    assert model.training and model.rnn.training
    model.eval()
    evaluate(model, loss_fn, pieces)
    assert not model.training
    with pytest.raises(ValueError, match="no targets"):
        evaluate(model, loss_fn, [])
