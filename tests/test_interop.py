"""tinyseq.interop: ``to_torch`` and ``from_torch`` build the equivalent module on the other side.

Every converted module is checked by running both sides on the same float64 input: the
same outputs, and after one backward the same gradients for the input and every
parameter. The recurrent layers run over every combination of their options, in both
directions. Then user trees (state dict keys identical, ``into=``), tied weights, modes
and requires_grad, the refusals, and that ``import tinyseq`` never imports torch.

Run with ``pytest -m torch``; every test is skipped when torch is not installed.
"""

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tinyseq import Tensor, backend, interop, nn

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

INPUT, HIDDEN, STEPS, BATCH = 3, 4, 5, 2
TOL = dict(atol=1e-10, rtol=1e-10)
ROOT = Path(__file__).resolve().parents[1]

# id -> (class name, extra constructor arguments)
MODES = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {}),
    "gru": ("GRU", {}),
}


@pytest.fixture(autouse=True)
def graph_backend():
    """The unrolled graph backend unless a test says otherwise (the fused one has its own parity tests)."""
    with backend.use_backend("graph"):
        yield


# ---------------------------------------------------------------- helpers


def randomise(module, seed=0):
    """Fill every parameter of a tinyseq or torch module with N(0, 0.5^2), so no default init hides a bug."""
    rng = np.random.default_rng(seed)
    if isinstance(module, torch.nn.Module):
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(torch.from_numpy(0.5 * rng.standard_normal(tuple(p.shape))))
    else:
        for p in module.parameters():
            p.data[...] = 0.5 * rng.standard_normal(p.shape)
    return module


def make_pair(direction, cls, args=(), kwargs=None, typed=True):
    """(tinyseq module, torch module): built float64 with random weights on one side, converted."""
    kwargs = dict(kwargs or {})
    if direction == "to_torch":
        sm = randomise(getattr(nn, cls)(*args, **kwargs, **({"dtype": np.float64} if typed else {})))
        tm = interop.to_torch(sm)
    else:
        tm = randomise(getattr(torch.nn, cls)(*args, **kwargs, **({"dtype": torch.float64} if typed else {})))
        sm = interop.from_torch(tm)
    assert type(sm) is getattr(nn, cls) and type(tm) is getattr(torch.nn, cls)
    assert_same_weights(sm, tm)
    return sm, tm


def assert_same_weights(sm, tm):
    """Same keys in the same order, same values and dtypes, and copies rather than shared memory."""
    ours, theirs = sm.state_dict(), tm.state_dict()
    assert list(ours) == list(theirs)
    for (name, p), (_, tp) in zip(sm._state_items(), tm.named_parameters(remove_duplicate=False)):
        assert p.dtype == tp.detach().numpy().dtype, name
        np.testing.assert_array_equal(p.data, tp.detach().numpy(), err_msg=name)
        assert not np.shares_memory(p.data, tp.detach().numpy()), f"{name} shares memory"
        assert p.requires_grad == tp.requires_grad, name


def flatten(out):
    """Every tensor in a (nested) tuple of outputs, in order."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in flatten(o)]
    return [] if out is None else [out]


def wrap(inputs, leaf):
    """Each array of a nested tuple as a leaf tensor (float arrays require grad)."""
    if isinstance(inputs, tuple):
        return tuple(wrap(i, leaf) for i in inputs)
    return None if inputs is None else leaf(inputs)


def assert_same_run(sm, tm, *inputs, seed=1):
    """Run both modules on the same inputs: equal outputs, then after one backward of the same
    loss, equal gradients for every float input and every parameter."""
    leaves = {"ours": [], "torch": []}

    def ours(a):
        t = Tensor(a, requires_grad=a.dtype.kind == "f")
        leaves["ours"].append(t)
        return t

    def theirs(a):
        t = torch.tensor(a, requires_grad=a.dtype.kind == "f")
        leaves["torch"].append(t)
        return t

    out_s = flatten(sm(*wrap(inputs, ours)))
    out_t = flatten(tm(*wrap(inputs, theirs)))
    assert len(out_s) == len(out_t)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(o.shape) for o in out_s]
    for k, (a, b) in enumerate(zip(out_s, out_t)):
        np.testing.assert_allclose(a.data, b.detach().numpy(), err_msg=f"output {k}", **TOL)
    sum(((o * w).sum() for o, w in zip(out_s, weights)), Tensor(0.0)).backward()
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(out_t, weights)).backward()
    for k, (a, b) in enumerate(zip(leaves["ours"], leaves["torch"])):
        if a.requires_grad:
            np.testing.assert_allclose(a.grad, b.grad.numpy(), err_msg=f"gradient of input {k}", **TOL)
    theirs_params = dict(tm.named_parameters())
    for name, p in sm.named_parameters():
        assert p.grad is not None and theirs_params[name].grad is not None, f"{name}: no gradient"
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), err_msg=f"gradient of {name}", **TOL)


def normal(*shape, seed=2):
    return np.random.default_rng(seed).standard_normal(shape)


DIRECTIONS = ["to_torch", "from_torch"]


# ---------------------------------------------------------------- recurrent layers and cells


@pytest.mark.filterwarnings("ignore:dropout option adds dropout")
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodrop", "dropout"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tbf", "btf"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("mode", list(MODES))
def test_recurrent_layer_round_trip(mode, num_layers, bias, batch_first, bidirectional, dropout, direction):
    cls, extra = MODES[mode]
    options = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
                   bidirectional=bidirectional, **extra)
    sm, tm = make_pair(direction, cls, (INPUT, HIDDEN), options)
    for key, value in options.items():
        assert getattr(sm, key) == value and getattr(tm, key) == value, key
    assert sm.training and tm.training
    sm.eval()  # dropout masks come from two different generators
    tm.eval()
    x = normal(BATCH, STEPS, INPUT) if batch_first else normal(STEPS, BATCH, INPUT)
    states = [normal(num_layers * (1 + bidirectional), BATCH, HIDDEN, seed=3 + k) for k in range(2)]
    assert_same_run(sm, tm, x, tuple(states) if cls == "LSTM" else states[0])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", list(MODES))
def test_cell_round_trip(mode, bias, direction):
    cls, extra = MODES[mode]
    sm, tm = make_pair(direction, cls + "Cell", (INPUT, HIDDEN), dict(bias=bias, **extra))
    x, h, c = normal(BATCH, INPUT), normal(BATCH, HIDDEN, seed=3), normal(BATCH, HIDDEN, seed=4)
    assert_same_run(sm, tm, x, (h, c) if cls == "LSTM" else h)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("layer_backend", ["graph", "numba"])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_projected_lstm_round_trip(bidirectional, direction, layer_backend):
    """proj_size crosses over both ways: weight_hr_l{k} included, same keys, same run."""
    options = dict(num_layers=2, bidirectional=bidirectional, batch_first=True, proj_size=2)
    sm, tm = make_pair(direction, "LSTM", (INPUT, HIDDEN), options)
    assert sm.proj_size == tm.proj_size == 2 and "weight_hr_l1" in sm.state_dict()
    layers = 2 * (1 + bidirectional)
    states = (normal(layers, BATCH, 2, seed=3), normal(layers, BATCH, HIDDEN, seed=4))
    with backend.use_backend(layer_backend):
        assert_same_run(sm, tm, normal(BATCH, STEPS, INPUT), states)


def test_converted_layer_runs_on_the_fused_backend():
    tm = randomise(torch.nn.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, dtype=torch.float64))
    sm = interop.from_torch(tm)
    assert sm.backend == "auto"
    with backend.use_backend("numba"):
        assert_same_run(sm, tm, normal(STEPS, BATCH, INPUT))


# ---------------------------------------------------------------- feed-forward layers


INDICES = np.array([[0, 2, 6], [1, 2, 5]])

# id -> (class name, args, kwargs, inputs, whether the class takes a dtype)
LAYERS = {
    "linear": ("Linear", (3, 4), {}, (normal(2, 5, 3),), True),
    "linear_nobias": ("Linear", (3, 4), {"bias": False}, (normal(5, 3),), True),
    "embedding": ("Embedding", (7, 3), {}, (INDICES,), True),
    "embedding_padding": ("Embedding", (7, 3), {"padding_idx": 2}, (INDICES,), True),
    "embedding_negative_padding": ("Embedding", (7, 3), {"padding_idx": -1}, (INDICES,), True),
    "layernorm": ("LayerNorm", (4,), {}, (normal(2, 3, 4),), True),
    "layernorm_2d": ("LayerNorm", ((3, 4),), {"eps": 1e-3}, (normal(2, 3, 4),), True),
    "layernorm_plain": ("LayerNorm", (4,), {"elementwise_affine": False}, (normal(2, 3, 4),), True),
    "dropout": ("Dropout", (0.25,), {}, (normal(3, 4),), False),
    "relu": ("ReLU", (), {}, (normal(3, 4),), False),
    "tanh": ("Tanh", (), {}, (normal(3, 4),), False),
    "sigmoid": ("Sigmoid", (), {}, (normal(3, 4),), False),
    "identity": ("Identity", (), {}, (normal(3, 4),), False),
}


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", list(LAYERS))
def test_layer_round_trip(case, direction):
    cls, args, kwargs, inputs, typed = LAYERS[case]
    sm, tm = make_pair(direction, cls, args, kwargs, typed)
    if cls == "Embedding":
        assert sm.padding_idx == tm.padding_idx == (None if "padding_idx" not in kwargs else kwargs["padding_idx"] % 7)
    if cls == "LayerNorm":
        assert (sm.normalized_shape, sm.eps) == (tuple(tm.normalized_shape), tm.eps)
    if cls == "Dropout":
        assert sm.p == tm.p == 0.25
        sm.eval()
        tm.eval()
    assert_same_run(sm, tm, *inputs)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_containers_round_trip(direction):
    if direction == "to_torch":
        sm = randomise(nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.Tanh(), nn.Dropout(0.1),
                                     nn.LayerNorm(4, dtype=np.float64), nn.Linear(4, 2, dtype=np.float64)))
        tm = interop.to_torch(sm)
    else:
        tm = randomise(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                                           torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)).double())
        sm = interop.from_torch(tm)
    assert [type(m).__name__ for m in sm] == [type(m).__name__ for m in tm]
    assert_same_weights(sm, tm)
    sm.eval()
    tm.eval()
    assert_same_run(sm, tm, normal(5, 3))


def test_module_list_and_module_dict_keep_their_keys():
    sm = nn.ModuleDict({"enc": nn.ModuleList([nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3, bias=False)]),
                        "dec": nn.GRU(3, 2)})
    tm = interop.to_torch(sm)
    assert type(tm) is torch.nn.ModuleDict and type(tm["enc"]) is torch.nn.ModuleList
    assert_same_weights(sm, tm)
    back = interop.from_torch(tm)
    assert type(back) is nn.ModuleDict and type(back["enc"]) is nn.ModuleList
    assert_same_weights(back, tm)


def test_float32_stays_float32_both_ways():
    sm = nn.LSTM(INPUT, HIDDEN)
    tm = interop.to_torch(sm)
    assert tm.weight_ih_l0.dtype == torch.float32
    assert interop.from_torch(tm).weight_ih_l0.dtype == np.float32
    x = normal(STEPS, BATCH, INPUT).astype(np.float32)
    np.testing.assert_allclose(sm(x)[0].data, tm(torch.from_numpy(x))[0].detach().numpy(), atol=1e-6)


# ---------------------------------------------------------------- user trees


VOCAB, EMBED, TAGS = 11, 3, 5


class Tagger(nn.Module):
    """Embedding -> bidirectional LSTM -> LayerNorm -> heads, with a parameter of its own."""

    def __init__(self, dtype=np.float64):
        self.scale = nn.Parameter(np.ones(TAGS, dtype=dtype))
        self.embedding = nn.Embedding(VOCAB, EMBED, padding_idx=0, dtype=dtype)
        self.rnn = nn.LSTM(EMBED, HIDDEN, num_layers=2, batch_first=True, bidirectional=True, dtype=dtype)
        self.norms = [nn.LayerNorm(2 * HIDDEN, dtype=dtype), nn.Identity()]
        self.heads = nn.ModuleDict({"tag": nn.Linear(2 * HIDDEN, TAGS, dtype=dtype),
                                    "score": nn.Sequential(nn.Linear(2 * HIDDEN, 1, dtype=dtype), nn.Sigmoid())})

    def forward(self, idx):
        out, _ = self.rnn(self.embedding(idx))
        out = self.norms[1](self.norms[0](out))
        return self.heads["tag"](out) * self.scale, self.heads["score"](out)


class TorchTagger(torch.nn.Module):
    """Tagger, written in torch."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(TAGS, dtype=dtype))
        self.embedding = torch.nn.Embedding(VOCAB, EMBED, padding_idx=0, dtype=dtype)
        self.rnn = torch.nn.LSTM(EMBED, HIDDEN, num_layers=2, batch_first=True, bidirectional=True, dtype=dtype)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(2 * HIDDEN, dtype=dtype), torch.nn.Identity()])
        self.heads = torch.nn.ModuleDict({
            "tag": torch.nn.Linear(2 * HIDDEN, TAGS, dtype=dtype),
            "score": torch.nn.Sequential(torch.nn.Linear(2 * HIDDEN, 1, dtype=dtype), torch.nn.Sigmoid())})

    def forward(self, idx):
        out, _ = self.rnn(self.embedding(idx))
        out = self.norms[1](self.norms[0](out))
        return self.heads["tag"](out) * self.scale, self.heads["score"](out)


TOKENS = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0], [5, 3, 5, 8, 9]])


def test_user_tree_to_torch_keeps_the_state_dict_keys_and_asks_for_a_forward():
    model = randomise(Tagger())
    converted = interop.to_torch(model)
    assert type(converted).__name__ == "Tagger" and isinstance(converted, torch.nn.Module)
    assert type(converted.rnn) is torch.nn.LSTM and type(converted.norms) is torch.nn.ModuleList
    assert_same_weights(model, converted)
    with pytest.raises(NotImplementedError, match=r"write Tagger as a torch.nn Module.*into="):
        converted(torch.from_numpy(TOKENS))

    ported = TorchTagger()
    ported.load_state_dict(converted.state_dict())
    assert_same_run(model, ported, TOKENS)


def test_user_tree_into_an_existing_torch_module():
    model, ported = randomise(Tagger()), TorchTagger()
    assert interop.to_torch(model, into=ported) is ported
    assert_same_weights(model, ported)
    assert_same_run(model, ported, TOKENS)


def test_user_tree_from_torch_both_ways():
    ported = randomise(TorchTagger())
    converted = interop.from_torch(ported)
    assert type(converted).__name__ == "TorchTagger" and isinstance(converted, nn.Module)
    assert type(converted.norms) is nn.ModuleList and type(converted.heads["score"]) is nn.Sequential
    assert_same_weights(converted, ported)
    with pytest.raises(NotImplementedError, match="write TorchTagger as a tinyseq Module"):
        converted(TOKENS)
    again = interop.to_torch(converted)  # a stand-in converts back
    assert_same_weights(converted, again)

    model = Tagger()
    assert interop.from_torch(ported, into=model) is model
    assert_same_weights(model, ported)
    assert_same_run(model, ported, TOKENS)


class Tied(nn.Module):
    """A language model whose decoder shares the embedding matrix, and a module shared under two names."""

    def __init__(self):
        self.embedding = nn.Embedding(VOCAB, EMBED, dtype=np.float64)
        self.decoder = nn.Linear(EMBED, VOCAB, dtype=np.float64)
        self.decoder.weight = self.embedding.weight
        self.act = nn.Tanh()
        self.blocks = [nn.Linear(EMBED, EMBED, dtype=np.float64)]
        self.blocks.append(self.blocks[0])
        self.taps = [nn.Parameter(normal(EMBED)), nn.Parameter(normal(EMBED, seed=5))]


def test_shared_parameters_and_modules_stay_shared_both_ways():
    model = Tied()
    converted = interop.to_torch(model)
    assert converted.decoder.weight is converted.embedding.weight
    assert converted.blocks[0] is converted.blocks[1]
    assert type(converted.taps) is torch.nn.ParameterList
    assert list(converted.state_dict()) == list(model.state_dict())
    assert_same_weights(model, converted)
    back = interop.from_torch(converted)
    assert back.decoder.weight is back.embedding.weight and back.blocks[0] is back.blocks[1]
    assert isinstance(back.taps, list) and len(back.taps) == 2
    assert list(back.state_dict()) == list(model.state_dict())


def test_training_mode_and_requires_grad_carry_over_both_ways():
    model = Tagger()
    model.rnn.eval()
    model.heads["score"].train()
    model.embedding.weight.requires_grad_(False)
    converted = interop.to_torch(model)
    assert converted.training and not converted.rnn.training and converted.heads.score.training
    assert not converted.embedding.weight.requires_grad and converted.rnn.weight_hh_l0.requires_grad
    back = interop.from_torch(converted.eval())
    assert not any(m.training for m in back.modules())
    assert not back.embedding.weight.requires_grad and back.rnn.weight_hh_l0.requires_grad

    into = interop.to_torch(model, into=TorchTagger())
    assert into.training and not into.rnn.training and not into.embedding.weight.requires_grad
    model2 = interop.from_torch(converted, into=Tagger())
    assert not model2.training and not model2.embedding.weight.requires_grad


# ---------------------------------------------------------------- into= mismatches


def test_into_refuses_other_keys_and_shapes_and_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.Linear(4, 2, dtype=np.float64))
    target = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2, bias=False), torch.nn.Tanh(),
                                 torch.nn.Linear(2, 2))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError) as info:
        interop.to_torch(model, into=target)
    message = str(info.value)
    assert "keys only in the tinyseq module: ['1.bias']" in message
    assert "keys only in the torch module: ['3.weight', '3.bias']" in message
    assert "0.weight (4, 3) vs (5, 3)" in message and "0.bias (4,) vs (5,)" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())

    ours = nn.Linear(3, 4)
    data = ours.weight.data.copy()
    with pytest.raises(ValueError, match=r"keys only in the torch module: \['bias'\].*weight \(4, 3\) vs \(4, 2\)"):
        interop.from_torch(torch.nn.Linear(3, 4), into=nn.Linear(2, 4, bias=False))
    with pytest.raises(ValueError, match=r"keys only in the tinyseq module: \['bias'\]"):
        interop.from_torch(torch.nn.Linear(3, 4, bias=False), into=ours)
    np.testing.assert_array_equal(ours.weight.data, data)


def test_into_casts_to_the_target_dtype():
    model = randomise(nn.GRU(INPUT, HIDDEN, dtype=np.float64))
    target = interop.to_torch(model, into=torch.nn.GRU(INPUT, HIDDEN))
    assert target.weight_hh_l0.dtype == torch.float32
    np.testing.assert_allclose(target.weight_hh_l0.detach().numpy(), model.weight_hh_l0.data, rtol=1e-7)
    back = interop.from_torch(target.half(), into=nn.GRU(INPUT, HIDDEN))
    assert back.weight_hh_l0.dtype == np.float32


def test_into_must_be_a_module_of_the_other_library():
    with pytest.raises(TypeError, match="into must be a torch.nn.Module"):
        interop.to_torch(nn.Linear(2, 2), into=nn.Linear(2, 2))
    with pytest.raises(TypeError, match="into must be a tinyseq Module"):
        interop.from_torch(torch.nn.Linear(2, 2), into=torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expected a tinyseq Module"):
        interop.to_torch(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        interop.from_torch(nn.Linear(2, 2))


# ---------------------------------------------------------------- refusals


class Holder(nn.Module):
    """A user module holding one part under the attribute ``rnn``."""

    def __init__(self, part):
        self.rnn = part


class TorchHolder(torch.nn.Module):
    def __init__(self, part):
        super().__init__()
        self.rnn = part


@pytest.mark.parametrize("part, option", [
    (lambda: nn.LSTM(3, 4, peephole=True), "peephole=True"),
    (lambda: nn.LSTM(3, 4, coupled=True), "coupled=True"),
    (lambda: nn.LSTM(3, 4, peephole=True, coupled=True), "peephole=True"),
    (lambda: nn.GRU(3, 4, reset_after=False), "reset_after=False"),
    (lambda: nn.LSTMCell(3, 4, peephole=True), "peephole=True"),
    (lambda: nn.LSTMCell(3, 4, coupled=True), "coupled=True"),
    (lambda: nn.GRUCell(3, 4, reset_after=False), "reset_after=False"),
    (lambda: nn.Dropout(0.2, variational=True), "variational=True"),
], ids=["peephole", "coupled", "both", "classic_gru", "peephole_cell", "coupled_cell", "classic_gru_cell",
        "variational_dropout"])
def test_to_torch_refuses_options_torch_lacks_naming_the_part(part, option):
    with pytest.raises(ValueError, match=rf"to_torch: 'rnn' \(\w+\) has {option}, which has no PyTorch equivalent"):
        interop.to_torch(Holder(part()))


@pytest.mark.parametrize("part, option", [
    (lambda: torch.nn.Embedding(5, 3, max_norm=1.0), "max_norm=1.0"),
    (lambda: torch.nn.Embedding(5, 3, scale_grad_by_freq=True), "scale_grad_by_freq=True"),
    (lambda: torch.nn.LayerNorm(4, bias=False), "bias=False"),
    (lambda: torch.nn.Sequential(OrderedDict(first=torch.nn.Tanh())), r"named children \['first'\]"),
], ids=["max_norm", "scale_grad_by_freq", "layernorm_nobias", "named_sequential"])
def test_from_torch_refuses_options_tinyseq_lacks_naming_the_part(part, option):
    with pytest.raises(ValueError, match=rf"from_torch: 'rnn' \(\w+\) has {option}, which has no tinyseq equivalent"):
        interop.from_torch(TorchHolder(part()))


def test_refusals_name_the_full_path():
    model = nn.ModuleDict({"enc": nn.Sequential(nn.Linear(2, 3), nn.LSTM(3, 4, coupled=True))})
    with pytest.raises(ValueError, match=r"'enc\.1' \(LSTM\) has coupled=True"):
        interop.to_torch(model)
    with pytest.raises(ValueError, match=r"the top-level GRU has reset_after=False"):
        interop.to_torch(nn.GRU(2, 3, reset_after=False))
    torch_model = torch.nn.ModuleList([torch.nn.Tanh(), TorchHolder(torch.nn.Embedding(5, 3, max_norm=1.0))])
    with pytest.raises(ValueError, match=r"'1\.rnn' \(Embedding\) has max_norm=1.0"):
        interop.from_torch(torch_model)


def test_uncovered_types_are_type_errors_listing_the_covered_ones():
    with pytest.raises(TypeError, match=r"'rnn' \(CrossEntropyLoss\).*not covered.*LSTM, GRU.*ModuleDict"):
        interop.to_torch(Holder(nn.CrossEntropyLoss()))
    with pytest.raises(TypeError, match=r"the top-level MSELoss: tinyseq\.nn\.loss\.MSELoss is not covered"):
        interop.to_torch(nn.MSELoss())
    with pytest.raises(TypeError, match=r"'rnn' \(Conv1d\): torch\.nn\.modules\.conv\.Conv1d is not covered.*LSTM"):
        interop.from_torch(TorchHolder(torch.nn.Conv1d(2, 3, 1)))
    with pytest.raises(TypeError, match=r"'0' \(Dropout1d\).*not covered"):
        interop.from_torch(torch.nn.Sequential(torch.nn.Dropout1d()))


def test_from_torch_refuses_buffers_and_half_precision():
    holder = TorchHolder(torch.nn.Linear(2, 2))
    holder.register_buffer("steps", torch.zeros(()))
    with pytest.raises(ValueError, match=r"top-level TorchHolder has the buffer 'steps'"):
        interop.from_torch(holder)
    holder.register_buffer("steps", torch.zeros(()), persistent=False)  # not in the state dict: fine
    assert list(interop.from_torch(holder).state_dict()) == ["rnn.weight", "rnn.bias"]
    with pytest.raises(TypeError, match=r"'rnn' \(LSTM\) has torch.float16 parameters.*\.float\(\)"):
        interop.from_torch(TorchHolder(torch.nn.LSTM(2, 3).half()))


def test_a_list_mixing_modules_and_other_values_is_refused():
    model = Holder(nn.Linear(2, 2))
    model.parts = [nn.Tanh(), "not a module", nn.ReLU()]
    with pytest.raises(ValueError, match="the list 'parts' mixes Modules with other values"):
        interop.to_torch(model)


# ---------------------------------------------------------------- torch stays optional


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_tinyseq_does_not_import_torch():
    done = run_python("import sys, tinyseq, tinyseq.interop, tinyseq.nn\n"
                      "assert 'torch' not in sys.modules, 'torch was imported'\nprint('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_without_torch_the_functions_say_how_to_install_it():
    done = run_python("import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
                      "from tinyseq import interop, nn\n"
                      "for call in (lambda: interop.to_torch(nn.Linear(2, 2)), lambda: interop.from_torch(None)):\n"
                      "    try:\n        call()\n    except ImportError as e:\n        print(e)\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install torch" in line for line in lines), done.stdout
