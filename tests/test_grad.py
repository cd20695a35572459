"""`.grad` as a Tensor, `parameters()` as a generator, `norm`, in-place ops and the version
check that keeps an in-place change from giving a silently wrong gradient."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyseq as ts
from tinyseq import Tensor, gradcheck, nn


def leaf(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


# ---------------------------------------------------------------- .grad is a Tensor


def test_grad_is_a_tensor_without_graph_that_answers_tensor_methods():
    w = leaf([3.0, -4.0])
    (w * w).sum().backward()
    assert type(w.grad) is Tensor and not w.grad.requires_grad and w.grad.grad_fn is None
    assert w.grad.dtype == w.dtype and w.grad.shape == w.shape
    np.testing.assert_array_equal(np.asarray(w.grad), [6.0, -8.0])
    assert w.grad.norm().item() == 10.0 and w.grad.abs().max().item() == 8.0
    assert w.grad.zero_() is w.grad and not np.asarray(w.grad).any()


def test_backward_accumulates_into_the_same_grad_tensor():
    w = leaf([1.0, 2.0])
    (w * 3).sum().backward()
    first = w.grad
    (w * 2).sum().backward()
    assert w.grad is first  # added in place, as PyTorch
    np.testing.assert_array_equal(np.asarray(first), [5.0, 5.0])


def test_float32_grad_stays_float32_and_retained_non_leaf_grad_is_a_tensor():
    w = leaf([1.0, 2.0], np.float32)
    y = w * 2
    y.retain_grad()
    y.sum().backward()
    assert w.grad.dtype == np.float32 and type(y.grad) is Tensor
    np.testing.assert_array_equal(np.asarray(y.grad), [1.0, 1.0])


def test_assigning_grad_wraps_arrays_converts_their_dtype_and_checks_the_shape():
    w = leaf([1.0, 2.0], np.float32)
    g = np.array([0.5, 0.25], dtype=np.float32)
    w.grad = g
    assert type(w.grad) is Tensor and np.asarray(w.grad) is g  # wrapped, not copied
    w.grad = [1, 2]  # a list, converted to the tensor's dtype
    assert w.grad.dtype == np.float32
    t = Tensor(np.ones(2, np.float32))
    w.grad = t
    assert w.grad is t
    w.grad = None
    assert w.grad is None
    with pytest.raises(RuntimeError, match=r"shape \(3,\) to a tensor of shape \(2,\)"):
        w.grad = np.ones(3)
    with pytest.raises(TypeError, match="dtype float64 to a tensor of dtype float32"):
        w.grad = Tensor(np.ones(2))


@pytest.mark.torch
def test_grad_assignment_errors_match_torch():
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError):
        t.grad = torch.zeros(3)
    with pytest.raises(RuntimeError):  # torch: a RuntimeError for the dtype too; tinyseq a TypeError
        t.grad = torch.zeros(2, dtype=torch.float64)


def test_hooks_get_a_tensor_and_may_return_a_tensor_or_an_array():
    x = leaf([1.0, 2.0])
    y = x * 3
    seen = []
    y.register_hook(lambda g: seen.append(g) or g * 2)  # a Tensor back
    x.register_hook(lambda g: np.asarray(g) + 1)  # an array back
    y.sum().backward()
    assert type(seen[0]) is Tensor and not seen[0].requires_grad
    np.testing.assert_array_equal(np.asarray(x.grad), [7.0, 7.0])


# ---------------------------------------------------------------- parameters() is a generator


def test_parameters_is_a_generator_and_the_optimizers_and_clipping_take_one():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    assert next(model.parameters()) is model[0].weight
    assert len(list(model.parameters())) == 4
    opt = ts.optim.SGD(model.parameters(), lr=0.1)
    model(np.ones((2, 3), np.float32)).sum().backward()
    total = nn.utils.clip_grad_norm_(model.parameters(), 1e-3)
    assert total > 1e-3
    assert math.sqrt(sum(float(np.square(p.grad.data).sum()) for p in model.parameters())) == pytest.approx(1e-3)
    before = [p.data.copy() for p in model.parameters()]
    opt.step()
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))


def test_optimizer_groups_take_generators():
    encoder, decoder = nn.Linear(2, 2), nn.Linear(2, 1)
    opt = ts.optim.Adam([{"params": encoder.parameters()}, {"params": decoder.parameters(), "lr": 0.5}], lr=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[0]["lr"] == 0.1


# ---------------------------------------------------------------- norm

norm_orders = st.sampled_from([1, 2, 3, 1.5, math.inf])


@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=st.floats(0.2, 2.0) | st.floats(-2.0, -0.2), unique=True),
       p=norm_orders, data=st.data())
def test_norm_matches_numpy_and_finite_differences(a, p, data):
    if p == math.inf:  # the max-norm has a kink where two magnitudes tie (0.5 and -0.5, say)
        assume(np.diff(np.sort(np.abs(a), axis=None)).min(initial=1.0) > 1e-3)
    axis = data.draw(st.none() | st.integers(-a.ndim, a.ndim - 1))
    keepdims = data.draw(st.booleans())
    x = Tensor(a.copy(), requires_grad=True)
    out = x.norm(p, dim=axis, keepdim=keepdims)
    flat = a.reshape(-1) if axis is None else a
    expected = np.linalg.norm(flat, ord=p, axis=None if axis is None else axis, keepdims=keepdims and axis is not None)
    if axis is None and keepdims:
        expected = np.reshape(expected, (1,) * a.ndim)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    assert gradcheck(lambda t: t.norm(p, dim=axis, keepdim=keepdims), [x])


def test_norm_of_zeros_has_a_zero_gradient_and_bad_orders_are_refused():
    x = leaf(np.zeros((2, 3)))
    x.norm(dim=1).sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), 0.0)  # PyTorch's choice, not nan
    with pytest.raises(ValueError, match="norm: p must be"):
        x.norm(0.5)
    assert x.norm("fro").item() == 0.0


@pytest.mark.torch
@pytest.mark.parametrize("p", [1, 2, 3, math.inf])
def test_norm_matches_torch(p):
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).standard_normal((3, 4))
    ours, theirs = leaf(a), torch.tensor(a, requires_grad=True)
    ours.norm(p, dim=1).sum().backward()
    theirs.norm(p, dim=1).sum().backward()
    np.testing.assert_allclose(np.asarray(ours.grad), theirs.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- in-place ops


@pytest.mark.parametrize("call, expected", [
    (lambda t: t.add_(Tensor(np.array([1.0, 1.0, 1.0]))), [1.0, 3.0, 5.0]),
    (lambda t: t.add_(2.0, alpha=0.5), [1.0, 3.0, 5.0]),
    (lambda t: t.sub_(np.array([1.0, 1.0, 1.0]), alpha=2), [-2.0, 0.0, 2.0]),
    (lambda t: t.mul_(3), [0.0, 6.0, 12.0]),
    (lambda t: t.div_(2), [0.0, 1.0, 2.0]),
    (lambda t: t.clamp_(min=1.0), [1.0, 2.0, 4.0]),
    (lambda t: t.clamp_(1.0, 3.0), [1.0, 2.0, 3.0]),
    (lambda t: t.fill_(7), [7.0, 7.0, 7.0]),
    (lambda t: t.fill_(Tensor(np.array([7.0]))), [7.0, 7.0, 7.0]),
    (lambda t: t.zero_(), [0.0, 0.0, 0.0]),
    (lambda t: t.copy_([5, 6, 7]), [5.0, 6.0, 7.0]),
    (lambda t: t.copy_(np.float32(9.0)), [9.0, 9.0, 9.0]),
])
def test_in_place_ops_change_the_values_and_return_self(call, expected):
    t = Tensor(np.array([0.0, 2.0, 4.0]))
    data = t.data
    assert call(t) is t and t.data is data  # the same array, changed
    np.testing.assert_array_equal(t.data, expected)
    assert t._version == 1


@pytest.mark.torch
def test_in_place_ops_match_torch():
    torch = pytest.importorskip("torch")
    a, b = np.array([[0.5, -2.0, 3.0]]), np.array([[1.0], [2.0]])
    for name, args, kwargs in [("add_", (a,), {"alpha": 2}), ("sub_", (a,), {"alpha": 0.5}), ("mul_", (a,), {}),
                               ("div_", (b,), {}), ("clamp_", (-1.0, 1.0), {}), ("fill_", (4.0,), {}),
                               ("copy_", (a,), {}), ("zero_", (), {})]:
        ours, theirs = Tensor(np.arange(6.0).reshape(2, 3)), torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
        getattr(ours, name)(*args, **kwargs)
        getattr(theirs, name)(*(torch.tensor(x) if isinstance(x, np.ndarray) else x for x in args), **kwargs)
        np.testing.assert_array_equal(ours.data, theirs.numpy(), err_msg=name)


def test_in_place_on_a_leaf_that_requires_grad_is_refused_outside_no_grad():
    w = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="add_: a leaf tensor that requires grad is being used in an in-place"):
        w.add_(1)
    assert w._version == 0 and np.array_equal(w.data, [1.0, 2.0])
    with ts.no_grad():
        w.mul_(2)
    np.testing.assert_array_equal(w.data, [2.0, 4.0])


def test_in_place_on_a_non_leaf_or_with_a_grad_requiring_argument_is_refused():
    w = leaf([1.0, 2.0])
    y = w * 2
    with pytest.raises(RuntimeError, match=r"mul_: tinyseq does not record in-place .* \(`mul`\)"):
        y.mul_(2)
    with pytest.raises(RuntimeError, match="copy_: tinyseq does not record"):
        Tensor(np.zeros(2)).copy_(w)  # the gradient to w would be lost silently


def test_augmented_assignment_is_in_place_where_torch_is_and_never_loses_a_gradient():
    model = nn.Linear(3, 2)
    model(np.ones((4, 3), np.float32)).sum().backward()
    before = model.weight.data.copy()
    with ts.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad  # the hand-written SGD step: it must change the model's parameter
    np.testing.assert_allclose(model.weight.data, before - 0.5 * np.asarray(model.weight.grad))
    w = next(model.parameters())
    with pytest.raises(RuntimeError, match="sub_: a leaf tensor that requires grad"):
        w -= 1  # outside no_grad, as torch
    x = leaf([1.0, 2.0])
    y = x * 2
    alias = y
    y += x  # torch records this in the graph; tinyseq makes a new tensor, and the gradient is the same
    total = Tensor(np.zeros(()))
    total += y.sum()  # accumulating a loss into a plain tensor keeps the graph
    total.backward()
    assert alias is not y and total.requires_grad
    np.testing.assert_array_equal(np.asarray(x.grad), [3.0, 3.0])
    counts = Tensor(np.zeros(2))
    same = counts
    counts += 1
    counts *= 3
    counts /= 2
    counts -= 0.5
    assert counts is same and counts._version == 4
    np.testing.assert_array_equal(same.data, [1.0, 1.0])


def test_in_place_argument_errors_name_the_op():
    t = Tensor(np.zeros(3))
    with pytest.raises(ValueError, match=r"add_: cannot broadcast shape \(2,\) to this tensor's shape \(3,\)"):
        t.add_(np.ones(2))
    with pytest.raises(ValueError, match="fill_: expected a number"):
        t.fill_(np.ones(2))
    with pytest.raises(ValueError, match="clamp_: at least one"):
        t.clamp_()
    with pytest.raises(TypeError, match="add_: Cannot cast"):
        Tensor(np.zeros(3, np.int64)).add_(0.5)
    assert t._version == 0


# ---------------------------------------------------------------- the version check


def test_a_change_after_forward_would_give_a_wrong_gradient_and_backward_refuses_it():
    # d/dw sum(w * w) = 2w: after w += 1 between forward and backward, the saved w would be read
    # as its new value and the gradient would come out as 2(w + 1).
    w = leaf([1.0, 2.0])
    loss = (w * w).sum()
    with ts.no_grad():
        w.add_(1)
    with pytest.raises(RuntimeError, match=r"input 0 of Mul \(shape \(2,\)\) was changed by add_ .* at version 1"):
        loss.backward()
    # Without the check (the op's stamp moved past the change) the gradient is silently 2(w + 1):
    w = leaf([1.0, 2.0])
    loss = (w * w).sum()
    with ts.no_grad():
        w.add_(1)
    loss.grad_fn.parents[0].grad_fn.stamp += 1
    loss.backward()
    np.testing.assert_array_equal(np.asarray(w.grad), [4.0, 6.0])  # not 2w = [2, 4]


def test_changes_through_a_detached_copy_or_a_view_are_caught():
    for change in (lambda w: w.detach().mul_(2), lambda w: w.detach()[:1].fill_(5)):
        w = leaf([1.0, 2.0])
        loss = (w * w).sum()
        with ts.no_grad():
            change(w)
        assert w._version == 1
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            loss.backward()


def test_a_changed_output_that_backward_reads_is_caught():
    x = leaf([0.5, 1.0])
    y = x.tanh()  # tanh's backward reads its output
    with ts.no_grad():
        y.mul_(0)
    loss = (y * 2).sum()  # recorded after the change: only Tanh's own check can see it
    with pytest.raises(RuntimeError, match=r"the output of Tanh .* mul_"):
        loss.backward()


def test_a_changed_mask_or_index_argument_is_caught():
    # A mask or indices reach the op as a keyword argument, not an input; backward reads them.
    x = leaf([1.0, 2.0, 3.0])
    mask = Tensor(np.array([True, False, False]))
    loss = x.masked_fill(mask, 0.0).sum()
    mask.fill_(False)  # the gradient would be [1, 1, 1], not [0, 1, 1]
    with pytest.raises(RuntimeError, match=r"the cond argument of Where .* fill_"):
        loss.backward()
    emb = nn.Embedding(5, 2)
    tokens = Tensor(np.array([0, 1]))
    loss = emb(tokens).sum()
    tokens.copy_(np.array([3, 4]))  # a reused input buffer: rows 3, 4 would get rows 0, 1's gradient
    with pytest.raises(RuntimeError, match=r"the indices argument of Embedding .* copy_"):
        loss.backward()
    x = leaf([1.0, 2.0, 3.0])
    index = Tensor(np.array([0, 0]))
    loss = x[index].sum()
    index.fill_(2)
    with pytest.raises(RuntimeError, match=r"the index argument of GetItem"):
        loss.backward()


def test_an_optimizer_step_or_a_load_between_forward_and_backward_is_caught():
    layer = nn.Linear(2, 1).double()
    opt = ts.optim.SGD(layer.parameters(), lr=0.1)
    loss = layer(np.ones((1, 2))).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="changed by SGD.step"):
        loss.backward()
    loss = layer(np.ones((1, 2))).sum()
    layer.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="changed by load_state_dict"):
        loss.backward()


def test_an_init_fill_between_forward_and_backward_is_caught():
    # The fills write the parameter's array in place: backward would use the new weight.
    layer = nn.Linear(2, 2).double()
    x = leaf([[1.0, 2.0]])
    loss = layer(x).sum()
    nn.init.zeros_(layer.weight)  # dL/dx would come out 0
    with pytest.raises(RuntimeError, match="changed by init.constant_"):
        loss.backward()
    lstm = nn.LSTM(2, 3, backend="graph")
    loss = lstm(np.ones((2, 1, 2), np.float32))[0].sum()
    nn.init.lstm_forget_bias_(lstm)
    with pytest.raises(RuntimeError, match="changed by init.lstm_forget_bias_"):
        loss.backward()


def test_changes_elsewhere_and_before_the_forward_are_allowed():
    w = leaf([1.0, 2.0])
    with ts.no_grad():
        w.add_(1)  # before the forward: the forward sees the new values
    loss = (w * w).sum()
    other = Tensor(np.zeros(2))
    other.add_(1)  # an array the graph never saw
    loss.backward()
    np.testing.assert_array_equal(np.asarray(w.grad), [4.0, 6.0])


@pytest.mark.torch
def test_torch_refuses_the_same_cases():
    torch = pytest.importorskip("torch")
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1)
    loss = (w * w).sum()
    with torch.no_grad():
        w.detach()[0].fill_(5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
