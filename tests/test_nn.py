"""Module/Parameter plumbing, feed-forward layers, loss modules and nn.utils.

Forward passes are checked against NumPy, backward passes with ``gradcheck`` in float64,
and the PyTorch-mirroring parts against torch itself (``-m torch``).
"""

import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyseq import Tensor, gradcheck, ops
from tinyseq import nn
from tinyseq.nn import functional as F
from tinyseq.nn.utils import clip_grad_norm_, clip_grad_value_, sequence_mask


def rng(seed=0):
    return np.random.default_rng(seed)


def leaf(array):
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True)


def floats(shape, lo=-2.0, hi=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(lo, hi, allow_nan=False, allow_infinity=False))


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def params_of(module):
    return {name: p.data.copy() for name, p in module.named_parameters()}


def assert_params_equal(module, expected):
    actual = params_of(module)
    assert actual.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


class Block(nn.Module):
    def __init__(self):
        self.proj = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.proj(x))


class Net(nn.Module):
    def __init__(self):
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.block = Block()
        self.heads = [nn.Linear(4, 2), nn.Linear(4, 2, bias=False)]
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(self.block(x))
        return sum((head(h) for head in self.heads), self.scale)


class Tied(nn.Module):
    def __init__(self):
        self.encoder = nn.Linear(3, 3)
        self.decoder = nn.Linear(3, 3)
        self.decoder.weight = self.encoder.weight


NET_NAMES = ["scale", "block.proj.weight", "block.proj.bias", "block.norm.weight", "block.norm.bias",
             "heads.0.weight", "heads.0.bias", "heads.1.weight"]


# ---------------------------------------------------------------- Module: traversal


def test_named_parameters_dotted_names_in_definition_order():
    assert [name for name, _ in Net().named_parameters()] == NET_NAMES


def test_parameters_are_the_named_parameters_in_order():
    net = Net()
    params = list(net.parameters())
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert [id(p) for p in params] == [id(p) for _, p in net.named_parameters()]


def test_sequential_names_parameters_by_index():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.LayerNorm(4))
    assert [name for name, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq) == 3 and isinstance(seq[2], nn.LayerNorm)


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="Sequential"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)


def test_shared_parameter_listed_once():
    model = Tied()
    assert [name for name, _ in model.named_parameters()] == ["encoder.weight", "encoder.bias", "decoder.bias"]
    assert len(list(model.parameters())) == 3


def test_children_and_modules():
    net = Net()
    assert [name for name, _ in net.named_children()] == ["block", "heads.0", "heads.1", "drop"]
    assert list(net.children()) == [net.block, *net.heads, net.drop]
    assert [name for name, _ in net.named_modules()] == [
        "", "block", "block.proj", "block.norm", "heads.0", "heads.1", "drop"]
    assert list(net.modules())[:2] == [net, net.block]


def test_shared_module_listed_once_in_modules():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, shared)
    assert [name for name, _ in seq.named_modules()] == ["", "0"]
    assert len(list(seq.modules())) == 2


def test_train_and_eval_propagate_to_every_module():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.drop.training


def test_zero_grad_clears_every_parameter():
    net = Net()
    net(np.ones((5, 3), dtype=np.float32)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ---------------------------------------------------------------- Module: dtype


def test_to_double_and_float_convert_data_and_grads():
    net = Net()
    net(np.ones((2, 3), dtype=np.float32)).sum().backward()
    before = params_of(net)
    assert net.to(np.float64) is net
    for name, p in net.named_parameters():
        assert p.dtype == np.float64 and p.grad.dtype == np.float64
        np.testing.assert_array_equal(p.data, before[name])
    net.float()
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in net.parameters())
    net.zero_grad()
    net.double()
    assert all(p.dtype == np.float64 and p.grad is None for p in net.parameters())


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex128, np.float16])
def test_to_non_floating_dtype_raises(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Net().to(dtype)


# ---------------------------------------------------------------- Module: state dict


def test_state_dict_is_an_ordered_dict_of_copies():
    net = Net()
    state = net.state_dict()
    assert isinstance(state, OrderedDict)
    assert list(state) == NET_NAMES
    before = params_of(net)
    for arr in state.values():
        assert isinstance(arr, np.ndarray)
        arr += 1.0
    assert_params_equal(net, before)


def test_state_dict_lists_a_shared_parameter_under_each_name_as_torch():
    tied = Tied()
    state = tied.state_dict()
    assert list(state) == ["encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"]
    assert [n for n, _ in tied.named_parameters()] == ["encoder.weight", "encoder.bias", "decoder.bias"]
    state["decoder.weight"] = state["encoder.weight"] + 1.0
    state["encoder.weight"] = state["decoder.weight"]
    Tied().load_state_dict(state)


@pytest.mark.torch
def test_tied_weights_state_dict_round_trips_with_torch():
    torch = pytest.importorskip("torch")

    class TorchTied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
            self.decoder.weight = self.encoder.weight

    theirs, ours = TorchTied(), Tied()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    np.testing.assert_array_equal(ours.decoder.weight.data, theirs.decoder.weight.detach().numpy())


def test_a_list_of_parameters_is_found():
    class WithList(nn.Module):
        def __init__(self):
            self.ws = [nn.Parameter(np.zeros(2)), nn.Parameter(np.ones(3))]

    assert [n for n, _ in WithList().named_parameters()] == ["ws.0", "ws.1"]


def test_load_state_dict_round_trip():
    src, dst = Net(), Net()
    result = dst.load_state_dict(src.state_dict())
    assert tuple(result) == ([], [])
    assert_params_equal(dst, params_of(src))
    x = rng().standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(src.eval()(x).data, dst.eval()(x).data)


def test_load_state_dict_casts_to_parameter_dtype_and_copies():
    net = nn.Linear(3, 2)
    state = {"weight": rng().standard_normal((2, 3)), "bias": np.arange(2)}
    net.load_state_dict(state)
    assert net.weight.dtype == np.float32 and net.bias.dtype == np.float32
    np.testing.assert_allclose(net.weight.data, state["weight"], rtol=1e-6)
    np.testing.assert_array_equal(net.bias.data, [0.0, 1.0])
    state["weight"][...] = 7.0
    assert not np.any(net.weight.data == 7.0)


def test_load_state_dict_accepts_tensors():
    net = nn.Linear(2, 2)
    net.load_state_dict({"weight": Tensor(np.eye(2)), "bias": Tensor(np.zeros(2))})
    np.testing.assert_array_equal(net.weight.data, np.eye(2))


def test_load_state_dict_strict_reports_every_problem_in_one_error():
    net = Net()
    state = net.state_dict()
    del state["block.proj.bias"], state["heads.1.weight"]
    state["extra.weight"] = np.zeros(3)
    state["block.norm.weight"] = np.zeros(5)
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    for text in ["Net", "missing", "block.proj.bias", "heads.1.weight", "unexpected", "extra.weight",
                 "block.norm.weight", "(4,)", "(5,)"]:
        assert text in message


def test_failed_load_leaves_every_parameter_unchanged():
    net = nn.Linear(3, 2)
    before = params_of(net)
    with pytest.raises(ValueError, match="shape"):
        net.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)})
    assert_params_equal(net, before)
    with pytest.raises(ValueError, match="shape"):
        net.load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(3)}, strict=False)
    assert_params_equal(net, before)
    with pytest.raises(ValueError, match="missing"):
        net.load_state_dict({"weight": np.zeros((2, 3))})
    assert_params_equal(net, before)


def test_load_state_dict_rejects_non_numeric_arrays():
    net = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="weight"):
        net.load_state_dict({"weight": np.array([["a", "b"]]), "bias": np.zeros(1)})


def test_load_state_dict_non_strict_loads_the_rest():
    net = Net()
    before = params_of(net)
    new_weight = np.full((4, 3), 0.5)
    missing, unexpected = net.load_state_dict({"block.proj.weight": new_weight, "other": np.ones(2)}, strict=False)
    assert missing == [n for n in NET_NAMES if n != "block.proj.weight"]
    assert unexpected == ["other"]
    np.testing.assert_array_equal(net.block.proj.weight.data, new_weight)
    np.testing.assert_array_equal(net.heads[0].weight.data, before["heads.0.weight"])


# ---------------------------------------------------------------- Module: repr


def test_linear_repr():
    assert repr(nn.Linear(3, 4)) == "Linear(in_features=3, out_features=4, bias=True)"
    assert repr(nn.Linear(3, 4, bias=False)) == "Linear(in_features=3, out_features=4, bias=False)"


def test_nested_repr_is_indented_per_child():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Sequential(nn.LayerNorm(4)))
    assert repr(seq) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): Dropout(p=0.1)\n"
        "  (2): Sequential(\n"
        "    (0): LayerNorm((4,), eps=1e-05, elementwise_affine=True)\n"
        "  )\n"
        ")"
    )
    text = repr(Net())
    assert text.startswith("Net(\n  (block): Block(\n    (proj): Linear(")
    assert "  (heads.1): Linear(in_features=4, out_features=2, bias=False)\n" in text


def test_parameter_repr():
    assert repr(nn.Parameter(np.zeros(2))).startswith("Parameter containing:\ntensor(")


# ---------------------------------------------------------------- Linear


def linear64(in_features, out_features, bias=True, seed=0):
    layer = nn.Linear(in_features, out_features, bias=bias).double()
    g = rng(seed)
    layer.weight.data[...] = g.standard_normal(layer.weight.shape)
    if bias:
        layer.bias.data[...] = g.standard_normal(layer.bias.shape)
    return layer


@given(data=st.data(), lead=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
       sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)), bias=st.booleans())
def test_linear_forward_matches_numpy(data, lead, sizes, bias):
    layer = linear64(*sizes, bias=bias)
    x = data.draw(floats(lead + (sizes[0],)))
    expected = x @ layer.weight.data.T + (layer.bias.data if bias else 0.0)
    out = layer(x)
    assert out.shape == lead + (sizes[1],) and out.dtype == np.float64
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradcheck(lead, bias):
    layer = linear64(3, 2, bias=bias)
    x = leaf(rng(1).standard_normal(lead + (3,)))
    params = layer.parameters()
    assert gradcheck(lambda x, *_: layer(x), (x, *params), mode="full")


def test_linear_without_bias():
    layer = nn.Linear(3, 2, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((1, 3), dtype=np.float32)
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data.T, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 5), (5,), ()])
def test_linear_wrong_feature_size(shape):
    with pytest.raises(ValueError, match=r"Linear.*3.*" + re_shape(shape)):
        nn.Linear(3, 4)(np.zeros(shape, dtype=np.float32))


def test_linear_default_init_bounds():
    nn.init.manual_seed(0)  # the bias's mean over 500 draws has sd 0.026 * bound: 0.11 is over 4 sd
    layer = nn.Linear(16, 500)
    bound = 1 / math.sqrt(16)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.all(np.abs(p.data) <= bound)
        assert np.abs(p.data).max() > 0.95 * bound
        assert abs(p.data.mean()) < 0.11 * bound


@pytest.mark.torch
@pytest.mark.parametrize("lead", [(), (4,), (2, 3)])
def test_linear_matches_torch(lead):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Linear(3, 5, dtype=torch.float64)
    ours = nn.Linear(3, 5).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng().standard_normal(lead + (3,))
    u = rng(1).standard_normal(lead + (5,))
    xt = torch.tensor(x, requires_grad=True)
    (theirs(xt) * torch.tensor(u)).sum().backward()
    xo = leaf(x)
    out = ours(xo)
    (out * Tensor(u)).sum().backward()
    np.testing.assert_allclose(out.data, theirs(xt).detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- Embedding


def test_embedding_lookup():
    emb = nn.Embedding(6, 3)
    idx = np.array([[0, 5], [2, 2], [1, 4]])
    out = emb(idx)
    assert out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    assert repr(emb) == "Embedding(6, 3)"


def test_embedding_repeated_indices_accumulate_gradient():
    emb = nn.Embedding(4, 2).double()
    idx = np.array([1, 3, 1, 1])
    u = rng().standard_normal((4, 2))
    (emb(idx) * Tensor(u)).sum().backward()
    expected = np.zeros((4, 2))
    np.add.at(expected, idx, u)
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12)


@pytest.mark.parametrize("padding_idx", [None, 3])
def test_embedding_wide_rows_accumulate_as_add_at(padding_idx):
    """Rows of 16 or more take the sorted path (``tensor._add_rows``); it must add like
    np.add.at, also into a gradient another lookup of the same weight already filled."""
    emb = nn.Embedding(7, 24, padding_idx=padding_idx).double()
    idx = rng().integers(0, 7, size=(5, 9))
    idx2 = np.array([6, 0, 6, 3])
    u, u2 = rng().standard_normal((5, 9, 24)), rng().standard_normal((4, 24))
    ((emb(idx) * Tensor(u)).sum() + (emb(idx2) * Tensor(u2)).sum()).backward()
    expected = np.zeros((7, 24))
    np.add.at(expected, idx, u)
    np.add.at(expected, idx2, u2)
    if padding_idx is not None:
        expected[padding_idx] = 0
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("index", [np.array([-1, 5, 5, -6]), np.array(3, dtype=np.uint8),
                                   np.array([[0, 2], [2, 0]], dtype=np.int32)])
def test_indexed_gradient_of_wide_rows_matches_add_at(index):
    """The sorted path of IndexedGrad for rows of 16+ elements: negative, 0-d, int32/uint8 indices."""
    from tinyseq.tensor import IndexedGrad

    values = rng().standard_normal(index.shape + (16,))
    expected = np.zeros((6, 16))
    np.add.at(expected, index, values)
    got = IndexedGrad(index, values, (6, 16), basic=False).add_into(np.zeros((6, 16)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_embedding_gradcheck():
    # The padding row's gradient is blocked on purpose (as PyTorch), so it is left out of idx.
    emb = nn.Embedding(4, 2, padding_idx=2).double()
    idx = np.array([[0, 1], [3, 0]])
    assert gradcheck(lambda w: emb(idx), emb.weight, mode="full")


@pytest.mark.parametrize("padding_idx", [2, -2])
def test_embedding_padding_row_is_zero_outputs_zero_and_gets_no_gradient(padding_idx):
    emb = nn.Embedding(4, 3, padding_idx=padding_idx)
    assert emb.padding_idx == 2
    np.testing.assert_array_equal(emb.weight.data[2], 0.0)
    idx = np.array([2, 0, 2, 1])
    out = emb(idx)
    np.testing.assert_array_equal(out.data[[0, 2]], 0.0)
    np.testing.assert_array_equal(out.data[1], emb.weight.data[0])
    (out * Tensor(np.ones((4, 3), dtype=np.float32))).sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[2], 0.0)
    np.testing.assert_array_equal(emb.weight.grad[[0, 1]], 1.0)
    assert repr(emb) == "Embedding(4, 3, padding_idx=2)"


@pytest.mark.parametrize("idx", [[0, 4], [-1, 0]])
def test_embedding_index_out_of_range(idx):
    with pytest.raises(ValueError, match=r"embedding.*\[0, 4\)"):
        nn.Embedding(4, 2)(np.array(idx))


def test_embedding_rejects_float_indices_and_bad_padding_idx():
    with pytest.raises(TypeError, match="integer"):
        nn.Embedding(4, 2)(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)


@pytest.mark.torch
@pytest.mark.parametrize("padding_idx", [None, 0, 3])
def test_embedding_matches_torch(padding_idx):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Embedding(5, 3, padding_idx=padding_idx, dtype=torch.float64)
    ours = nn.Embedding(5, 3, padding_idx=padding_idx).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    idx = np.array([[0, 3, 3], [4, 0, 1]])
    u = rng().standard_normal((2, 3, 3))
    out_t = theirs(torch.tensor(idx))
    (out_t * torch.tensor(u)).sum().backward()
    out = ours(idx)
    (out * Tensor(u)).sum().backward()
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12)


@pytest.mark.torch
def test_embedding_custom_padding_vector_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Embedding(4, 2, padding_idx=0, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight[0] = torch.tensor([0.5, -1.0], dtype=torch.float64)
    ours = nn.Embedding(4, 2, padding_idx=0).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    idx = np.array([0, 1, 0])
    np.testing.assert_allclose(ours(idx).data, theirs(torch.tensor(idx)).detach().numpy())


# ---------------------------------------------------------------- Dropout


def test_dropout_eval_and_p0_are_identity():
    x = Tensor(rng().standard_normal((3, 4)))
    assert nn.Dropout(0.5).eval()(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert nn.Dropout(0.5, variational=True).eval()(x) is x


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_scales_kept_elements_and_drops_at_rate_p(p):
    out = nn.Dropout(p, generator=rng(0))(Tensor(np.ones((200, 500))))
    kept = out.data != 0
    np.testing.assert_allclose(out.data[kept], 1 / (1 - p), rtol=1e-12)
    assert abs((1 - kept.mean()) - p) < 0.01
    assert abs(out.data.mean() - 1) < 0.02


def test_dropout_p1_zeroes_everything():
    x = Tensor(np.ones((2, 3, 4)))
    np.testing.assert_array_equal(nn.Dropout(1.0, generator=rng())(x).data, 0.0)
    np.testing.assert_array_equal(nn.Dropout(1.0, variational=True, generator=rng())(x).data, 0.0)


def test_dropout_generator_makes_masks_reproducible():
    x = Tensor(np.ones((10, 10)))
    a = nn.Dropout(0.5, generator=rng(3))(x).data
    b = nn.Dropout(0.5, generator=rng(3))(x).data
    np.testing.assert_array_equal(a, b)


def test_dropout_default_generator_follows_manual_seed():
    x = Tensor(np.ones((3, 5, 8)))
    for variational in (False, True):
        drop = nn.Dropout(0.5, variational=variational)
        nn.init.manual_seed(123)
        a = drop(x).data
        nn.init.manual_seed(123)
        b = drop(x).data
        c = drop(x).data
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(b, c)


def test_every_random_draw_follows_one_manual_seed():
    import tinyseq as ts

    def draws():
        x = Tensor(np.ones((4, 6)))
        lstm = nn.LSTM(2, 3, num_layers=2, dropout=0.5)
        out, _ = lstm(np.ones((3, 2, 2), np.float32))
        return [F.dropout(x, 0.5).data, nn.Dropout(0.3)(x).data, nn.Linear(3, 2).weight.data, out.data,
                ts.rand(3).data, ts.randn(2, 2).data, ts.multinomial(np.ones(5), 3).data]

    ts.manual_seed(7)
    first = draws()
    nn.init.manual_seed(7)  # the old name, kept as an alias
    for a, b in zip(first, draws()):
        np.testing.assert_array_equal(a, b)
    assert nn.init.manual_seed is ts.manual_seed


@pytest.mark.parametrize("batch_first", [False, True])
def test_variational_dropout_shares_mask_over_time(batch_first):
    time_axis = 1 if batch_first else 0
    shape = (6, 20, 40) if not batch_first else (20, 6, 40)
    out = nn.Dropout(0.5, variational=True, batch_first=batch_first, generator=rng())(Tensor(np.ones(shape))).data
    first = np.take(out, [0], axis=time_axis)
    np.testing.assert_array_equal(out, np.broadcast_to(first, shape))
    per_sequence = np.moveaxis(first, time_axis, 0)[0]
    assert len({row.tobytes() for row in per_sequence}) == 20
    assert set(np.unique(out)) == {0.0, 2.0}


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_gradient_passes_kept_elements_scaled(variational):
    p = 0.25
    x = leaf(rng().standard_normal((4, 3, 5)))
    out = nn.Dropout(p, variational=variational, generator=rng(1))(x)
    u = rng(2).standard_normal(x.shape)
    (out * Tensor(u)).sum().backward()
    kept = out.data != 0
    np.testing.assert_allclose(x.grad, np.where(kept, u / (1 - p), 0.0), rtol=1e-12)
    np.testing.assert_allclose(out.data, np.where(kept, x.data / (1 - p), 0.0), rtol=1e-12)


def test_dropout_gradcheck_with_fixed_mask():
    drop = nn.Dropout(0.3, variational=True, generator=rng())
    x = leaf(rng(1).standard_normal((3, 2, 2)))

    def fn(x):
        drop.generator = rng(5)
        return drop(x)

    assert gradcheck(fn, x, mode="full")


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5)])
def test_variational_dropout_needs_3d_input(shape):
    with pytest.raises(ValueError, match=r"Dropout.*3-D.*" + re_shape(shape)):
        nn.Dropout(0.5, variational=True)(Tensor(np.ones(shape)))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_invalid_p(p):
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(p)


# ---------------------------------------------------------------- LayerNorm


def ref_layer_norm(x, n_axes, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y if weight is None else y * weight + bias


def layer_norm64(normalized_shape, elementwise_affine=True, seed=0):
    ln = nn.LayerNorm(normalized_shape, elementwise_affine=elementwise_affine).double()
    if elementwise_affine:
        ln.weight.data[...] = rng(seed).standard_normal(ln.weight.shape)
        ln.bias.data[...] = rng(seed + 1).standard_normal(ln.bias.shape)
    return ln


@given(data=st.data(), lead=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
       norm=hnp.array_shapes(min_dims=1, max_dims=2, min_side=2, max_side=4), affine=st.booleans())
def test_layer_norm_matches_numpy(data, lead, norm, affine):
    ln = layer_norm64(norm, affine)
    x = data.draw(floats(lead + norm, -3, 3))
    weights = (ln.weight.data, ln.bias.data) if affine else ()
    np.testing.assert_allclose(ln(x).data, ref_layer_norm(x, len(norm), *weights), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("normalized_shape,x_shape", [(4, (4,)), (4, (3, 4)), ((2, 3), (2, 2, 3))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(normalized_shape, x_shape, affine):
    ln = layer_norm64(normalized_shape, affine)
    x = leaf(rng(2).standard_normal(x_shape))
    assert gradcheck(lambda x, *_: ln(x), (x, *ln.parameters()), mode="full")


def test_layer_norm_parameters():
    ln = nn.LayerNorm((2, 3))
    assert ln.normalized_shape == (2, 3)
    assert ln.weight.shape == ln.bias.shape == (2, 3)
    np.testing.assert_array_equal(ln.weight.data, 1.0)
    np.testing.assert_array_equal(ln.bias.data, 0.0)
    plain = nn.LayerNorm(3, elementwise_affine=False)
    assert plain.weight is None and list(plain.parameters()) == []


@pytest.mark.parametrize("normalized_shape,x_shape", [(4, (2, 5)), ((2, 3), (3, 2)), ((2, 3), (3,))])
def test_layer_norm_shape_error(normalized_shape, x_shape):
    with pytest.raises(ValueError, match=r"LayerNorm.*" + re_shape(x_shape)):
        nn.LayerNorm(normalized_shape)(Tensor(np.ones(x_shape, dtype=np.float32)))


@pytest.mark.torch
@pytest.mark.parametrize("normalized_shape,x_shape", [(5, (3, 5)), ((2, 3), (4, 2, 3))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_torch(normalized_shape, x_shape, affine):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.LayerNorm(normalized_shape, elementwise_affine=affine, dtype=torch.float64)
    ours = layer_norm64(normalized_shape, affine)
    if affine:
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(ours.weight.data))
            theirs.bias.copy_(torch.tensor(ours.bias.data))
    x = rng(3).standard_normal(x_shape)
    u = rng(4).standard_normal(x_shape)
    xt = torch.tensor(x, requires_grad=True)
    out_t = theirs(xt)
    (out_t * torch.tensor(u)).sum().backward()
    xo = leaf(x)
    out = ours(xo)
    (out * Tensor(u)).sum().backward()
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    if affine:
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- loss modules


def sequence_batch(lengths, n_classes=4, seed=0):
    g = rng(seed)
    T, B = max(lengths), len(lengths)
    return g.standard_normal((T, B, n_classes)), g.integers(0, n_classes, size=(T, B))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_module_matches_functional(reduction):
    logits, target = sequence_batch([3, 1, 2])
    mask = sequence_mask(np.array([3, 1, 2]))
    target[0, 0] = -1
    loss = nn.CrossEntropyLoss(ignore_index=-1, reduction=reduction)
    for m in (None, mask):
        expected = F.cross_entropy(Tensor(logits), target, ignore_index=-1, mask=m, reduction=reduction)
        np.testing.assert_array_equal(loss(Tensor(logits), target, m).data, expected.data)
    assert repr(loss) == f"CrossEntropyLoss(ignore_index=-1, reduction={reduction!r})"


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_module_matches_functional(reduction):
    a, b = rng(0).standard_normal((3, 2, 4)), rng(1).standard_normal((3, 2, 4))
    mask = sequence_mask(np.array([3, 1]))[..., None]
    loss = nn.MSELoss(reduction=reduction)
    for m in (None, mask):
        expected = F.mse_loss(Tensor(a), Tensor(b), reduction=reduction, mask=m)
        np.testing.assert_array_equal(loss(Tensor(a), Tensor(b), m).data, expected.data)


@pytest.mark.parametrize("cls", [nn.CrossEntropyLoss, nn.MSELoss])
def test_loss_modules_reject_unknown_reduction(cls):
    with pytest.raises(ValueError, match="reduction"):
        cls(reduction="avg")


@given(lengths=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 100))
def test_sequence_cross_entropy_averages_over_valid_positions_only(lengths, seed):
    logits, target = sequence_batch(lengths, seed=seed)
    x = leaf(logits)
    loss = nn.CrossEntropyLoss()(x, target, sequence_mask(np.array(lengths)))
    manual = []
    for b, n in enumerate(lengths):
        for t in range(n):
            z = logits[t, b]
            manual.append(np.log(np.exp(z).sum()) - z[target[t, b]])
    np.testing.assert_allclose(loss.item(), np.mean(manual), rtol=1e-12)
    loss.backward()
    padded = ~sequence_mask(np.array(lengths))
    np.testing.assert_array_equal(x.grad[padded], 0.0)


def test_sequence_cross_entropy_gradcheck():
    lengths = np.array([3, 1])
    logits, target = sequence_batch(lengths.tolist())
    mask = sequence_mask(lengths)
    assert gradcheck(lambda z: nn.CrossEntropyLoss()(z, target, mask), leaf(logits), mode="full")


def test_masked_mse_over_valid_steps_only():
    lengths = np.array([4, 2, 3])
    a, b = rng(0).standard_normal((4, 3, 2)), rng(1).standard_normal((4, 3, 2))
    mask = sequence_mask(lengths)[..., None]
    x = leaf(a)
    loss = nn.MSELoss()(x, Tensor(b), mask)
    valid = sequence_mask(lengths)
    np.testing.assert_allclose(loss.item(), np.mean((a - b)[valid] ** 2), rtol=1e-12)
    loss.backward()
    np.testing.assert_array_equal(x.grad[~valid], 0.0)
    assert gradcheck(lambda x: nn.MSELoss()(x, Tensor(b), mask), x, mode="full")


# ---------------------------------------------------------------- clip_grad_norm_ / clip_grad_value_


def with_grads(*grads):
    params = []
    for g in grads:
        p = nn.Parameter(np.zeros(3) if g is None else np.zeros_like(g, dtype=np.asarray(g).dtype))
        p.grad = None if g is None else np.array(g)
        params.append(p)
    return params


def joint_norm(grads, norm_type=2.0):
    flat = np.concatenate([np.ravel(g) for g in grads])
    return np.max(np.abs(flat)) if norm_type == math.inf else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)


@given(data=st.data(), shapes=st.lists(hnp.array_shapes(max_dims=2, max_side=4), min_size=1, max_size=3),
       max_norm=st.floats(1.0, 5.0), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_clips_to_max_norm(data, shapes, max_norm, norm_type):
    grads = [data.draw(floats(s, -10, 10)) for s in shapes]
    total = joint_norm(grads, norm_type)
    params = with_grads(*grads)
    returned = clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(returned, float)
    assert returned == pytest.approx(total, rel=1e-12)
    new = [p.grad for p in params]
    for g, n in zip(grads, new):
        np.testing.assert_allclose(n, g * min(1.0, max_norm / (total + 1e-6)), rtol=1e-12)
    if total > max_norm:
        assert joint_norm(new, norm_type) == pytest.approx(max_norm, rel=1e-6)


def test_clip_grad_norm_noop_under_limit():
    params = with_grads(np.array([0.3, 0.4]))
    assert clip_grad_norm_(params, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(params[0].grad, [0.3, 0.4])


def test_clip_grad_norm_of_float32_does_not_overflow():
    (p,) = with_grads(np.full((3, 4), 1e30, dtype=np.float32))
    assert clip_grad_norm_(p, 1.0) == pytest.approx(1e30 * math.sqrt(12), rel=1e-6)
    np.testing.assert_allclose(p.grad, np.full((3, 4), 1 / math.sqrt(12)), rtol=1e-6)


def test_clip_grad_norm_inf_norm():
    params = with_grads(np.array([1.0, -4.0]), np.array([[2.0, 3.0]]))
    assert clip_grad_norm_(params, 2.0, norm_type="inf") == 4.0
    np.testing.assert_allclose(params[0].grad, [0.5, -2.0], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad, [[1.0, 1.5]], rtol=1e-6)


def test_clip_grad_norm_skips_params_without_grad():
    params = with_grads(np.array([3.0, 4.0]), None)
    assert clip_grad_norm_(params, 1.0) == pytest.approx(5.0)
    assert params[1].grad is None
    np.testing.assert_allclose(params[0].grad, [0.6, 0.8], rtol=1e-6)
    assert clip_grad_norm_(with_grads(None), 1.0) == 0.0


def test_clip_grad_norm_accepts_a_single_tensor_and_generators():
    (p,) = with_grads(np.array([6.0, 8.0]))
    assert clip_grad_norm_(p, 5.0) == pytest.approx(10.0)
    np.testing.assert_allclose(p.grad, [3.0, 4.0], rtol=1e-6)
    net = nn.Linear(2, 2)
    net(np.ones((1, 2), dtype=np.float32)).sum().backward()
    clip_grad_norm_((q for q in net.parameters()), 0.1)
    assert joint_norm([q.grad for q in net.parameters()]) == pytest.approx(0.1, rel=1e-5)


def test_clip_grad_norm_keeps_grad_dtype():
    (p,) = with_grads(np.full(4, 10.0, dtype=np.float32))
    clip_grad_norm_([p], 1.0)
    assert p.grad.dtype == np.float32
    assert joint_norm([p.grad]) == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_errors():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(with_grads(np.ones(2)), -1.0)
    with pytest.raises(RuntimeError, match="nan|inf"):
        clip_grad_norm_(with_grads(np.array([np.nan, 1.0])), 1.0, error_if_nonfinite=True)


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    g = rng()
    grads = [g.standard_normal((3, 4)), g.standard_normal(5), 3 * g.standard_normal((2, 2, 2))]
    ours = with_grads(*grads)
    theirs = [torch.zeros(x.shape, dtype=torch.float64, requires_grad=True) for x in grads]
    for t, x in zip(theirs, grads):
        t.grad = torch.tensor(x)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert clip_grad_norm_(ours, max_norm, norm_type) == pytest.approx(expected.item(), rel=1e-12)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)


@pytest.mark.torch
def test_clip_grad_norm_of_a_nan_or_inf_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    for bad in (np.nan, np.inf):
        grads = [np.array([bad, 1.0]), np.array([2.0, -3.0])]
        ours = with_grads(*grads)
        theirs = [torch.zeros(2, dtype=torch.float64, requires_grad=True) for _ in grads]
        for t, x in zip(theirs, grads):
            t.grad = torch.tensor(x)
        torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        clip_grad_norm_(ours, 1.0)  # a nan norm must not leave the gradients as they were
        for p, t in zip(ours, theirs):
            np.testing.assert_array_equal(np.asarray(p.grad), t.grad.numpy())


def test_a_read_only_array_assigned_to_grad_is_copied_so_clipping_can_write():
    (p,) = with_grads(np.ones(3))
    p.grad = np.broadcast_to(np.float64(10.0), (3,))
    clip_grad_norm_([p], 1.0)
    clip_grad_value_([p], 0.1)
    np.testing.assert_allclose(np.asarray(p.grad), 0.1)


def test_clip_grad_value_():
    params = with_grads(np.array([-3.0, 0.5, 2.0]), None)
    clip_grad_value_(params, 1.0)
    np.testing.assert_array_equal(params[0].grad, [-1.0, 0.5, 1.0])
    assert params[1].grad is None
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(params, -1.0)


@pytest.mark.torch
def test_clip_grad_value_matches_torch():
    torch = pytest.importorskip("torch")
    grad = rng().standard_normal((4, 4)) * 2
    (p,) = with_grads(grad)
    t = torch.zeros(4, 4, dtype=torch.float64, requires_grad=True)
    t.grad = torch.tensor(grad)
    torch.nn.utils.clip_grad_value_([t], 0.7)
    clip_grad_value_([p], 0.7)
    np.testing.assert_array_equal(p.grad, t.grad.numpy())


# ---------------------------------------------------------------- sequence_mask


@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5), extra=st.integers(0, 2),
       batch_first=st.booleans())
def test_sequence_mask(lengths, extra, batch_first):
    max_len = max(lengths) + extra
    mask = sequence_mask(np.array(lengths), max_len=max_len if extra else None, batch_first=batch_first)
    tb = mask.T if batch_first else mask
    assert mask.dtype == np.bool_
    assert tb.shape == (max_len if extra else max(lengths), len(lengths))
    for b, n in enumerate(lengths):
        assert tb[:, b].tolist() == [t < n for t in range(tb.shape[0])]


def test_sequence_mask_accepts_lists_and_tensors():
    expected = [[True, True], [True, False], [True, False]]
    assert sequence_mask([3, 1]).tolist() == expected
    assert sequence_mask(Tensor(np.array([3, 1]))).tolist() == expected
    assert sequence_mask([3, 1], batch_first=True).tolist() == np.array(expected).T.tolist()


@pytest.mark.parametrize("lengths", [np.array([[1, 2]]), np.array([1.0, 2.0]), np.array(3)])
def test_sequence_mask_rejects_bad_lengths(lengths):
    with pytest.raises(ValueError, match="sequence_mask"):
        sequence_mask(lengths)


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Linear(-1, 3), "Linear: in_features must be an int >= 0, got -1"),
    (lambda: nn.Linear(2.5, 3), "Linear: in_features must be an int"),
    (lambda: nn.Dropout("0.5"), r"Dropout: p must be in \[0, 1\]"),
    (lambda: nn.Embedding(5, 3, padding_idx=1.5), "Embedding: padding_idx must be an int"),
    (lambda: nn.Embedding(5, 3, padding_idx=5), r"padding_idx must lie in \[-5, 5\)"),
    (lambda: nn.LayerNorm((3, 0)), "LayerNorm: normalized_shape entry must be a positive int"),
])
def test_layer_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_layernorm_accepts_a_numpy_int():
    assert nn.LayerNorm(np.int64(4)).normalized_shape == (4,)


# ---------------------------------------------------------------- one dtype rule for every module


@pytest.mark.parametrize("make,x", [
    (lambda: nn.Linear(3, 2), np.ones((4, 3))),
    (lambda: nn.Linear(3, 2), np.ones((4, 3), np.int64)),
    (lambda: nn.Linear(3, 2).double(), Tensor(np.ones((4, 3), np.float32))),
    (lambda: nn.LayerNorm(3), np.ones((4, 3))),
    (lambda: nn.LSTM(3, 2), np.ones((4, 1, 3))),
    (lambda: nn.GRUCell(3, 2), np.ones((1, 3), np.int32)),
])
def test_an_input_of_another_dtype_than_the_parameters_is_refused(make, x):
    module = make()
    name = type(module).__name__
    with pytest.raises(TypeError, match=rf"{name}: input has dtype {np.asarray(x).dtype} but the parameters are"):
        module(x)


def test_the_dtype_hint_suggests_only_conversions_that_work():
    with pytest.raises(TypeError) as info:
        nn.Linear(2, 1)(np.ones((1, 2), np.int64))
    assert str(info.value).endswith("convert the input to float32")
    with pytest.raises(TypeError, match=r"convert the input to float32 or the module with .to\(np.float64\)"):
        nn.Linear(2, 1)(np.ones((1, 2)))


def test_python_numbers_and_lists_take_the_parameters_dtype():
    assert nn.Linear(2, 1)([[1, 2]]).dtype == np.float32
    assert nn.Linear(2, 1).double()([[1.0, 2.0]]).dtype == np.float64


# ---------------------------------------------------------------- containers and activations


def test_module_list_registers_and_names_its_modules():
    class Stack(nn.Module):
        def __init__(self):
            self.blocks = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 3)])
            self.blocks.append(nn.Linear(3, 1))

    net = Stack()
    assert [n for n, _ in net.named_parameters()] == [f"blocks.{i}.{w}" for i in range(3) for w in ("weight", "bias")]
    assert len(net.blocks) == 3 and isinstance(net.blocks[1:], nn.ModuleList) and len(net.blocks[1:]) == 2
    x = Tensor(np.ones((1, 2), np.float32))
    for block in net.blocks:
        x = block(x)
    assert x.shape == (1, 1)
    net.blocks[0] = nn.Linear(2, 3)
    net.blocks.insert(0, nn.Identity())
    net.blocks.extend([nn.ReLU()])
    assert [type(m).__name__ for m in net.blocks] == ["Identity", "Linear", "Linear", "Linear", "ReLU"]
    with pytest.raises(TypeError, match="ModuleList: expected Modules, got function"):
        net.blocks.append(lambda x: x)
    assert "(blocks): ModuleList(" in repr(net)


def test_container_edge_cases():
    assert len(nn.ModuleList(None)) == 0 and len(nn.ModuleList()) == 0
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and head(np.ones((1, 2), np.float32)).shape == (1, 3)
    with pytest.raises(TypeError, match="ModuleDict: keys must be strings, got int"):
        nn.ModuleDict({1: nn.ReLU()})


def test_module_to_takes_pytorchs_forms():
    net = nn.Linear(2, 3)
    assert net.to("cpu") is net and net.to("cpu", np.float64).weight.dtype == np.float64
    assert net.to(dtype=np.float32).weight.dtype == np.float32
    with pytest.raises(ValueError, match="Linear.to: tinyseq arrays live in host memory"):
        net.to("cuda")


def test_module_dict_registers_by_key():
    heads = nn.ModuleDict({"char": nn.Linear(4, 10), "word": nn.Linear(4, 7)})
    heads["tag"] = nn.Linear(4, 3, bias=False)
    assert list(heads) == ["char", "word", "tag"] and "word" in heads and len(heads) == 3
    assert [n for n, _ in heads.named_parameters()] == ["char.weight", "char.bias", "word.weight", "word.bias",
                                                        "tag.weight"]
    del heads["word"]
    assert list(heads.keys()) == ["char", "tag"]
    assert [type(m).__name__ for m in heads.values()] == ["Linear", "Linear"]
    restored = nn.ModuleDict([("char", nn.Linear(4, 10)), ("tag", nn.Linear(4, 3, bias=False))])
    restored.load_state_dict(heads.state_dict())
    with pytest.raises(ValueError, match="without dots"):
        heads["a.b"] = nn.Linear(1, 1)


@pytest.mark.parametrize("cls,ref", [(nn.ReLU, lambda x: np.maximum(x, 0)), (nn.Tanh, np.tanh),
                                     (nn.Sigmoid, lambda x: 1 / (1 + np.exp(-x))), (nn.Identity, lambda x: x)])
def test_activation_modules(cls, ref):
    x = np.array([[-1.5, 0.3], [2.0, -0.2]])
    np.testing.assert_allclose(cls()(Tensor(x)).data, ref(x), rtol=1e-12)
    assert gradcheck(cls(), [leaf(x)])
    assert nn.Sequential(nn.Linear(2, 2), cls())(np.ones((1, 2), np.float32)).shape == (1, 2)


def test_functional_linear():
    x, w, b = leaf(rng().standard_normal((3, 4))), leaf(rng(1).standard_normal((2, 4))), leaf([0.5, -1.0])
    np.testing.assert_allclose(F.linear(x, w, b).data, x.data @ w.data.T + b.data, rtol=1e-12)
    assert gradcheck(F.linear, [x, w, b]) and F.linear(x, w).shape == (3, 2)
    with pytest.raises(ValueError, match=r"linear: expected .* got shapes \(3, 4\), \(2, 4\) and \(5,\)"):
        F.linear(x, w, np.ones(5))


def test_layer_norm_without_affine_refuses_an_integer_input():
    with pytest.raises(TypeError, match="LayerNorm: expected a floating-point input, got dtype int64"):
        nn.LayerNorm(3, elementwise_affine=False)(np.ones((2, 3), np.int64))


def test_nll_loss_module():
    log_probs, target = Tensor(np.log(np.full((4, 3), 1 / 3))), np.array([0, 2, -100, 1])
    assert nn.NLLLoss()(log_probs, target).item() == pytest.approx(np.log(3))
    assert nn.NLLLoss(reduction="none")(log_probs, target).shape == (4,)
    assert repr(nn.NLLLoss()) == "NLLLoss(ignore_index=-100, reduction='mean')"


def test_nll_loss_is_cross_entropy_of_log_softmax():
    logits, target = leaf(rng().standard_normal((2, 3, 5))), np.array([[0, 4, 2], [1, -100, 3]])
    for reduction in ("mean", "sum", "none"):
        a = F.nll_loss(F.log_softmax(logits, -1), target, reduction=reduction)
        b = F.cross_entropy(logits, target, reduction=reduction)
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12)
    assert gradcheck(lambda t: F.nll_loss(t, target), [leaf(rng(2).standard_normal((2, 3, 5)))])


@pytest.mark.parametrize("make", [lambda: nn.CrossEntropyLoss(np.ones(4)), lambda: nn.NLLLoss(np.ones(4))])
def test_pytorchs_class_weight_is_refused_not_misread(make):
    with pytest.raises(ValueError, match="not supported"):
        make()  # PyTorch's first positional argument is weight, not ignore_index


def test_label_smoothing_is_checked_and_only_cross_entropy_takes_it():
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be a number in \[0, 1\]"):
            nn.CrossEntropyLoss(label_smoothing=bad)
    with pytest.raises(TypeError):
        nn.NLLLoss(label_smoothing=0.1)  # as PyTorch's NLLLoss


def test_loss_module_options_are_checked():
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        nn.CrossEntropyLoss(ignore_index=np.ones(3))
    with pytest.raises(TypeError):
        nn.MSELoss("sum")  # PyTorch's first positional argument is size_average
    with pytest.raises(ValueError, match="cross_entropy: class weights"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1]), weight=np.ones(3))


def test_loss_options_are_keyword_only():
    logits, target = Tensor(np.zeros((2, 3))), np.array([0, 1])
    with pytest.raises(TypeError):
        F.cross_entropy(logits, target, np.ones(3))  # PyTorch's third argument is a class weight
    with pytest.raises(TypeError):
        F.nll_loss(logits, target, np.ones(3))
    with pytest.raises(ValueError, match=r"class axis is the last one.*transpose\(1, -1\)"):
        F.cross_entropy(Tensor(np.zeros((2, 5, 3))), np.zeros((2, 3), np.int64))  # PyTorch's (N, C, d) layout


@pytest.mark.parametrize("batch_first", [False, True])
def test_pad_sequence(batch_first):
    from tinyseq.nn.utils.rnn import pad_sequence

    seqs = [leaf(rng(i).standard_normal((n, 2))) for i, n in enumerate((3, 1, 4))]
    padded, lengths = pad_sequence(seqs, batch_first=batch_first, padding_value=-1.0, return_lengths=True)
    assert lengths.tolist() == [3, 1, 4] and lengths.dtype == np.int64
    batch = padded.data if batch_first else padded.data.transpose(1, 0, 2)
    assert batch.shape == (3, 4, 2)
    for b, s in enumerate(seqs):
        np.testing.assert_array_equal(batch[b, : len(s)], s.data)
        np.testing.assert_array_equal(batch[b, len(s):], -1.0)
    padded.sum().backward()
    assert all(np.array_equal(s.grad, np.ones(s.shape)) for s in seqs)
    out, _ = nn.GRU(2, 3, batch_first=batch_first).double()(padded, lengths=lengths)  # what lengths= takes
    left = pad_sequence([np.ones(2), np.ones(1)], padding_side="left").data
    np.testing.assert_array_equal(left, [[1, 0], [1, 1]])
    with pytest.raises(ValueError, match="sequence 1 has shape"):
        pad_sequence([np.ones((2, 3)), np.ones((2, 4))])


@pytest.mark.torch
@pytest.mark.parametrize("batch_first,side", [(False, "right"), (True, "right"), (True, "left")])
def test_pad_sequence_matches_torch(batch_first, side):
    torch = pytest.importorskip("torch")
    from tinyseq.nn.utils.rnn import pad_sequence

    seqs = [rng(i).standard_normal((n, 2, 3)) for i, n in enumerate((2, 5, 1))]
    ours = pad_sequence(seqs, batch_first, 0.5, side).data
    theirs = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(s) for s in seqs], batch_first, 0.5, side).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.torch
def test_nll_loss_matches_torch():
    torch = pytest.importorskip("torch")
    log_probs, target = rng().standard_normal((6, 4)), np.array([0, 3, -100, 1, 2, 3])
    for reduction in ("mean", "sum", "none"):
        ours = F.nll_loss(Tensor(log_probs), target, reduction=reduction).data
        theirs = torch.nn.functional.nll_loss(torch.from_numpy(log_probs), torch.from_numpy(target),
                                              reduction=reduction).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


# ---------------------------------------------------------------- docstrings

PUBLIC_LAYERS = ["Linear", "Embedding", "Dropout", "LayerNorm", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell",
                 "GRUCell", "ModuleList", "ModuleDict", "Sequential", "CrossEntropyLoss", "NLLLoss", "MSELoss",
                 "BCELoss", "BCEWithLogitsLoss", "GELU"]


@pytest.mark.parametrize("name", PUBLIC_LAYERS)
def test_every_public_layer_documents_its_arguments_and_shapes(name):
    import inspect

    cls = getattr(nn, name)
    doc = inspect.getdoc(cls)
    assert "Args:" in doc, doc
    args_section = doc.split("Args:")[1]
    for param in inspect.signature(cls.__init__).parameters:
        if param not in ("self", "args", "kwargs"):
            assert f"{param}" in args_section, f"{name} does not document {param}"
    if name not in ("ModuleList", "ModuleDict", "Sequential"):
        assert "Shape:" in doc or ("Inputs:" in doc and "Outputs:" in doc), name
    if name in ("RNN", "LSTM", "GRU"):
        for words in ("batch_first=True", "lengths", "h_n", "(T, B, I)", "(B, T, I)"):
            assert words in doc, f"{name}: {words}"


# ---------------------------------------------------------------- GELU and erf


def test_erf_op_values_and_gradient():
    x = leaf(np.linspace(-4, 4, 17) + 0.01)
    np.testing.assert_allclose(ops.erf(x).data, [math.erf(v) for v in x.data], rtol=1e-15, atol=1e-16)
    assert gradcheck(ops.erf, [x], mode="full")
    assert ops.erf(np.ones(2, np.float32)).dtype == np.float32


def test_softplus_op_values_and_gradient():
    x = leaf([-800.0, -40.0, -1.0, 0.0, 0.5, 30.0, 800.0])
    y = ops.softplus(x)
    np.testing.assert_allclose(y.data, [0, math.exp(-40), math.log1p(math.exp(-1)), math.log(2),
                                        math.log1p(math.exp(0.5)), 30 + math.exp(-30), 800], rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), np.exp(-np.logaddexp(0, -x.data)), rtol=1e-14)  # sigmoid
    assert gradcheck(ops.softplus, [leaf(rng(6).standard_normal(5) * 3)], mode="full")


def test_erf_without_scipy_is_the_standard_librarys(monkeypatch):
    import sys

    x = np.array([[-2.5, -0.3], [0.0, 1.7]])
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import scipy.special now raises ImportError
    np.testing.assert_array_equal(ops.erf(x).data, np.vectorize(math.erf)(x))
    assert ops.erf(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_values_and_gradient(approximate):
    x = leaf(rng(3).standard_normal((3, 4)) * 3)
    v = x.data
    phi = 0.5 * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))
    expected = v * phi if approximate == "none" else \
        0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
    np.testing.assert_allclose(nn.GELU(approximate)(x).data, expected, rtol=1e-14, atol=1e-15)
    assert gradcheck(lambda x: F.gelu(x, approximate=approximate), [x], mode="full")
    if approximate == "none":  # d/dx x Φ(x) = Φ(x) + x φ(x)
        F.gelu(x).sum().backward()
        np.testing.assert_allclose(np.asarray(x.grad), phi + v * np.exp(-v * v / 2) / math.sqrt(2 * math.pi),
                                   rtol=1e-13)
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh', got 'erf'"):
        nn.GELU("erf")
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')"


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate, dtype):
    torch = pytest.importorskip("torch")
    data = (rng(4).standard_normal((5, 6)) * 4).astype(dtype)
    x, tx = Tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    weights = rng(5).standard_normal((5, 6)).astype(dtype)
    y, ty = F.gelu(x, approximate=approximate), torch.nn.functional.gelu(tx, approximate=approximate)
    (y * Tensor(weights)).sum().backward()
    (ty * torch.from_numpy(weights)).sum().backward()
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.data, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(np.asarray(x.grad), tx.grad.numpy(), **tol)
