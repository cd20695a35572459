"""A Parameter's ``.data`` (issue 22): the NumPy array of its values that also takes PyTorch's
in-place methods outside the graph, counts every in-place change for backward's version check,
and never spreads its subclass into results, state dicts, checkpoints or kernels."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, nn
from tinyseq.nn import functional as F
from tinyseq.tensor import ParameterData

VOCAB, HIDDEN, T, B = 20, 8, 6, 4


class WordLM(nn.Module):
    """The classic PyTorch word language model: embedding, 2-layer LSTM, tied decoder."""

    def __init__(self, backend="graph"):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, HIDDEN)
        self.rnn = nn.LSTM(HIDDEN, HIDDEN, num_layers=2, backend=backend)
        self.decoder = nn.Linear(HIDDEN, VOCAB)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens):
        out, _ = self.rnn(self.encoder(tokens))
        return self.decoder(out)


def _train(update, steps=8, backend="graph"):
    """Losses of ``steps`` steps on one fixed batch, ``update(model)`` after each backward."""
    ts.manual_seed(0)
    model = WordLM(backend)
    tokens = np.random.default_rng(0).integers(0, VOCAB, size=(T + 1, B))
    losses = []
    for _ in range(steps):
        model.zero_grad()
        logits = model(tokens[:-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[1:].reshape(-1))
        loss.backward()
        update(model)
        losses.append(loss.item())
    return losses, model


@pytest.mark.parametrize("backend", ["graph", "numba"])
def test_manual_sgd_word_lm_trains_and_equals_optim_sgd_bitwise(backend):
    lr = 0.5

    def manual(model):
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

    opt = {}

    def with_optimizer(model):
        opt.setdefault("sgd", ts.optim.SGD(model.parameters(), lr=lr)).step()

    losses, model = _train(manual, backend=backend)
    expected, reference = _train(with_optimizer, backend=backend)
    assert losses[-1] < 0.9 * losses[0]
    assert losses == expected
    assert model.decoder.weight is model.encoder.weight  # still tied
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


# ---------------------------------------------------------------- every in-place form

FORMS = [  # (what it does to x, the same on a plain array y)
    (lambda x: x.add_(Tensor(np.full(3, 2.0)), alpha=-0.5), lambda y: y - 1.0),
    (lambda x: x.add_(1), lambda y: y + 1),
    (lambda x: x.sub_(np.array([1.0, 2.0, 3.0]), alpha=2), lambda y: y - [2.0, 4.0, 6.0]),
    (lambda x: x.mul_(Tensor(np.array(3.0))), lambda y: y * 3),
    (lambda x: x.div_(4), lambda y: y / 4),
    (lambda x: x.clamp_(0.5, 1.5), lambda y: np.clip(y, 0.5, 1.5)),
    (lambda x: x.clamp_(max=Tensor(np.array(1.0))), lambda y: np.minimum(y, 1.0)),
    (lambda x: x.copy_([7, 8, 9]), lambda y: np.array([7.0, 8.0, 9.0])),
    (lambda x: x.fill_(Tensor(np.array(5.0))), lambda y: np.full(3, 5.0)),
    (lambda x: x.zero_(), lambda y: np.zeros(3)),
]


@pytest.mark.parametrize("form, expected", FORMS)
def test_every_in_place_method_on_data_changes_the_parameter_and_returns_the_array(form, expected):
    p = nn.Parameter(np.array([0.0, 1.0, 2.0]))
    data = p.data
    assert form(data) is data and p.data is data
    np.testing.assert_array_equal(p.data, expected(np.array([0.0, 1.0, 2.0])))
    assert p._version == 1 and p.requires_grad and p.grad_fn is None


@pytest.mark.torch
def test_in_place_methods_on_data_match_torch():
    torch = pytest.importorskip("torch")
    for form, _ in FORMS:
        ours, theirs = nn.Parameter(np.array([0.0, 1.0, 2.0])), torch.nn.Parameter(torch.tensor([0.0, 1.0, 2.0]))
        form(ours.data)
        form(_TorchArgs(theirs.data))
        np.testing.assert_array_equal(ours.data, theirs.data.numpy())


class _TorchArgs:
    """Calls a torch tensor's in-place method with tinyseq Tensors and arrays converted."""

    def __init__(self, t):
        self.t = t

    def __getattr__(self, name):
        import torch

        def convert(a):
            return torch.from_numpy(np.asarray(a, dtype=np.float32)) if isinstance(a, (Tensor, np.ndarray, list)) else a
        return lambda *args, **kwargs: getattr(self.t, name)(*map(convert, args),
                                                             **{k: convert(v) for k, v in kwargs.items()})


OPERATORS = [
    lambda p: p.data.__isub__(0.1 * p.grad),  # `p.data -= lr * p.grad`, a Tensor operand
    lambda p: p.data.__iadd__(np.ones(3)),
    lambda p: p.data.__imul__(2),
    lambda p: p.data.__itruediv__(2),
    lambda p: p.data.__setitem__(Ellipsis, 0.0),
    lambda p: p.data.__setitem__(0, 5.0),
    lambda p: np.add.at(p.data, [0, 0], 1.0),
    lambda p: np.multiply(p.data, 3, out=p.data),
    lambda p: np.copyto(p.data, 5.0),  # NumPy functions that write into their first argument
    lambda p: np.putmask(p.data, p.data > 1, 0.0),
    lambda p: np.place(p.data, p.data > 1, 0.0),
    lambda p: np.put(p.data, [0], 7.0),
    lambda p: p.data.fill(0.0),
]


@pytest.mark.parametrize("change", OPERATORS)
def test_numpy_in_place_operators_on_data_count_a_change(change):
    p = nn.Parameter(np.array([1.0, 2.0, 3.0]))
    p.grad = Tensor(np.array([1.0, 1.0, 1.0]))
    data = p.data
    change(p)
    assert p.data is data and p._version >= 1


def test_p_data_minus_equals_is_in_place_and_counted():
    p = nn.Parameter(np.array([1.0, 2.0]))
    p.grad = Tensor(np.array([10.0, 20.0]))
    data = p.data
    p.data -= 0.1 * p.grad
    assert p.data is data and p._version == 1
    np.testing.assert_array_equal(p.data, [0.0, 0.0])


@pytest.mark.parametrize("change", OPERATORS + [lambda p, form=form: form(p.data) for form, _ in FORMS])
def test_changing_data_between_forward_and_backward_raises(change):
    p = nn.Parameter(np.array([1.0, 2.0, 3.0]))
    p.grad = Tensor(np.array([1.0, 1.0, 1.0]))
    loss = (p * p).sum()
    change(p)
    with pytest.raises(RuntimeError, match=r"input 0 of Mul .* was changed by .*data"):
        loss.backward()


def test_without_the_check_p_data_minus_equals_gives_a_silently_wrong_gradient():
    # What happened before .data counted changes: d/dp sum(p * p) = 2p, but backward reads the
    # saved p after the update and returns 2(p - 1).
    p = nn.Parameter(np.array([1.0, 2.0]))
    loss = (p * p).sum()
    p.data -= 1
    loss.grad_fn.parents[0].grad_fn.stamp += 1  # move the op past the change: the check is blind to it
    loss.backward()
    np.testing.assert_array_equal(np.asarray(p.grad), [0.0, 2.0])  # not 2p = [2, 4]


def test_in_place_method_errors_on_data_name_the_method():
    p = nn.Parameter(np.zeros(3))
    with pytest.raises(ValueError, match=r"data.add_: cannot broadcast shape \(2,\) to this tensor's shape \(3,\)"):
        p.data.add_(np.ones(2))
    with pytest.raises(ValueError, match="clamp_: at least one"):
        p.data.clamp_()
    assert p._version == 0


def test_a_plain_tensor_data_stays_a_plain_array():
    # Only a Parameter's .data takes the in-place methods (Tensor.data keeps its fast slot): on
    # another tensor write `t.add_(...)` (inside `with ts.no_grad():` if it requires grad).
    t = Tensor(np.zeros(2), requires_grad=True)
    assert type(t.data) is np.ndarray and not hasattr(t.data, "add_")
    with ts.no_grad():
        t.add_(1)
    np.testing.assert_array_equal(t.data, [1.0, 1.0])


# ---------------------------------------------------------------- the subclass stays inside .data


def test_results_of_numpy_on_data_are_plain_arrays():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3))
    x = np.ones((3, 2))
    for result in (p.data * 2, 1 - p.data, np.tanh(p.data), p.data @ x, p.data.sum(0), p.data.copy(),
                   p.data.astype(np.float32), np.array(p.data), np.asarray(p), p.detach().data, (p * 2).data,
                   Tensor(p.data).data):
        assert type(result) is np.ndarray
    assert repr(p.data).startswith("array(")


def test_assigning_data_keeps_it_a_parameter_data():
    model = nn.Linear(3, 2)
    model.weight.data = np.ones((2, 3), np.float32)
    assert type(model.weight.data) is ParameterData and model.weight.data.dtype == np.float32
    model.double()
    assert all(type(p.data) is ParameterData and p.dtype == np.float64 for p in model.parameters())
    before = model.weight.data
    model.load_state_dict({k: np.zeros_like(v) for k, v in model.state_dict().items()})
    assert model.weight.data is before and not model.weight.data.any()


def test_state_dict_and_checkpoints_hold_plain_arrays(tmp_path):
    model = WordLM()
    state = model.state_dict()
    assert all(type(v) is np.ndarray for v in state.values())
    ts.save(state, tmp_path / "lm.npz")
    loaded = ts.load(tmp_path / "lm.npz")
    assert all(type(v) is np.ndarray for v in loaded.values())
    for name in state:
        np.testing.assert_array_equal(loaded[name], state[name])


@pytest.mark.torch
def test_torch_from_numpy_shares_a_parameters_data():
    torch = pytest.importorskip("torch")
    p = nn.Parameter(np.zeros(2, np.float32))
    t = torch.from_numpy(p.data)
    p.data.add_(1)
    assert t.tolist() == [1.0, 1.0]


def test_numba_types_a_parameters_data_as_a_plain_array():
    numba = pytest.importorskip("numba")
    p = nn.Parameter(np.arange(3.0, dtype=np.float32))
    assert numba.typeof(p.data) == numba.typeof(np.asarray(p.data))
    assert numba.njit(lambda a: a.sum())(p.data) == 3.0


def test_numpy_functions_on_data_give_plain_arrays_and_out_counts_a_change():
    p = nn.Parameter(np.array([1.0, -2.0]))
    for result in (np.zeros_like(p.data), np.full_like(p.data, 3.0), np.concatenate([p.data, p.data]),
                   np.stack((p.data, np.ones(2))), np.where(p.data > 0, p.data, 0.0)):
        assert type(result) is np.ndarray
    data = p.data
    assert np.clip(p.data, 0.0, 1.0, out=p.data) is data and p._version == 1
    np.testing.assert_array_equal(p.data, [1.0, 0.0])


def test_optimizer_state_made_from_data_is_plain():
    model = nn.Linear(3, 2)
    opt = ts.optim.Adam(model.parameters())
    model(Tensor(np.ones((1, 3), np.float32))).sum().backward()
    opt.step()
    arrays = [v for state in opt.state.values() for v in state.values() if isinstance(v, np.ndarray)]
    assert arrays and all(type(v) is np.ndarray for v in arrays)
    assert all(type(p.data) is ParameterData for p in model.parameters())
