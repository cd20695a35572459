import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinyseq import Tensor, gradcheck, nn
from tinyseq.nn import functional as F

REDUCTIONS = ["mean", "sum", "none"]
LEAD_SHAPES = [(5,), (4, 3), (2, 3, 4)]


def ref_cross_entropy(logits, target, ignore_index=-100, mask=None, reduction="mean"):
    logits = np.asarray(logits, dtype=np.float64)
    m = logits.max(axis=-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)))[..., 0]
    counted = target != ignore_index
    safe = np.where(counted, target, 0)
    nll = lse - np.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
    w = counted.astype(np.float64)
    if mask is not None:
        w = w * np.asarray(mask, dtype=np.float64)
    losses = nll * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    with np.errstate(invalid="ignore"):
        return losses.sum() / w.sum()


def make_case(lead, n_classes=5, seed=0, ignore_index=-100, ignore_frac=0.3):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal(lead + (n_classes,))
    target = rng.integers(0, n_classes, size=lead)
    ignored = rng.random(lead) < ignore_frac
    ignored.flat[0] = False
    ignored.flat[-1] = True
    target[ignored] = ignore_index
    return logits, target


def leaf(array):
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- cross_entropy forward


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("lead", LEAD_SHAPES)
@pytest.mark.parametrize("ignore_index", [-100, 7])
def test_cross_entropy_matches_reference(lead, reduction, ignore_index):
    logits, target = make_case(lead, ignore_index=ignore_index)
    kwargs = {} if ignore_index == -100 else {"ignore_index": ignore_index}
    out = F.cross_entropy(Tensor(logits), target, reduction=reduction, **kwargs)
    expected = ref_cross_entropy(logits, target, ignore_index, reduction=reduction)
    assert out.dtype == np.float64
    assert out.shape == (lead if reduction == "none" else ())
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


def test_cross_entropy_hand_computed_values():
    assert F.cross_entropy(Tensor(np.zeros((3, 4))), np.array([0, 1, 3])).item() == pytest.approx(np.log(4))
    logits = Tensor(np.array([[2.0, 0.0], [0.0, 0.0]]))
    expected = [np.log1p(np.exp(-2.0)), np.log(2.0)]
    np.testing.assert_allclose(F.cross_entropy(logits, np.array([0, 1]), reduction="none").data, expected)


def test_cross_entropy_one_dimensional_logits_take_a_scalar_target():
    logits = np.array([0.5, -1.0, 2.0])
    out = F.cross_entropy(Tensor(logits), np.array(2))
    np.testing.assert_allclose(out.data, ref_cross_entropy(logits, np.array(2)), rtol=1e-12)


def test_ignored_positions_count_neither_in_sum_nor_in_mean_denominator():
    logits, target = make_case((4, 3), ignore_index=-100)
    kept = target != -100
    full = F.cross_entropy(Tensor(logits), target)
    subset = F.cross_entropy(Tensor(logits[kept]), target[kept])
    np.testing.assert_allclose(full.data, subset.data, rtol=1e-12)
    per_position = F.cross_entropy(Tensor(logits), target, reduction="none").data
    assert np.all(per_position[~kept] == 0)
    assert np.all(per_position[kept] > 0)


def test_ignore_index_inside_the_class_range_ignores_that_class():
    logits, _ = make_case((6,), n_classes=3)
    target = np.array([0, 1, 2, 1, 0, 2])
    out = F.cross_entropy(Tensor(logits), target, ignore_index=1, reduction="none")
    np.testing.assert_allclose(out.data, ref_cross_entropy(logits, target, 1, reduction="none"), rtol=1e-12)
    assert np.all(out.data[target == 1] == 0)


def test_uint8_targets_with_ignore_index_255():
    logits, _ = make_case((4,), n_classes=3)
    target = np.array([0, 255, 2, 1], dtype=np.uint8)
    out = F.cross_entropy(Tensor(logits), target, ignore_index=255)
    np.testing.assert_allclose(out.data, ref_cross_entropy(logits, target.astype(np.int64), 255), rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["float", "bool"])
@pytest.mark.parametrize("with_ignore", [False, True])
def test_cross_entropy_with_mask_matches_reference(reduction, kind, with_ignore):
    logits, target = make_case((3, 4), ignore_frac=0.3 if with_ignore else 0.0)
    if not with_ignore:
        target[target == -100] = 1
    rng = np.random.default_rng(1)
    mask = rng.random((3, 4)) < 0.6 if kind == "bool" else rng.uniform(0.0, 2.0, (3, 4))
    mask.flat[0] = True if kind == "bool" else 1.5
    out = F.cross_entropy(Tensor(logits), target, mask=mask, reduction=reduction)
    expected = ref_cross_entropy(logits, target, mask=mask, reduction=reduction)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)


def test_mask_mean_is_weighted_average():
    logits, target = make_case((5,), ignore_frac=0.0)
    target[-1] = 0
    w = np.array([1.0, 0.0, 0.5, 2.0, 0.25])
    per_position = ref_cross_entropy(logits, target, reduction="none")
    out = F.cross_entropy(Tensor(logits), target, mask=Tensor(w))
    np.testing.assert_allclose(out.data, (w * per_position).sum() / w.sum(), rtol=1e-12)


def test_bool_mask_is_the_same_as_dropping_positions():
    logits, target = make_case((6,), ignore_frac=0.0)
    target[-1] = 2
    mask = np.array([True, False, True, True, False, True])
    out = F.cross_entropy(Tensor(logits), target, mask=mask)
    np.testing.assert_allclose(out.data, F.cross_entropy(Tensor(logits[mask]), target[mask]).data, rtol=1e-12)


def test_all_ignored_mean_is_nan_sum_is_zero():
    logits = Tensor(np.zeros((2, 3)))
    target = np.array([-100, -100])
    assert np.isnan(F.cross_entropy(logits, target).item())
    assert F.cross_entropy(logits, target, reduction="sum").item() == 0
    assert np.all(F.cross_entropy(logits, target, reduction="none").data == 0)
    assert np.isnan(F.cross_entropy(logits, np.array([0, 1]), mask=np.zeros(2)).item())


def test_ignored_row_with_minus_inf_logit_contributes_zero():
    logits = leaf([[-np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]])
    target = np.array([-100, 2])
    per_position = F.cross_entropy(logits, target, reduction="none")
    np.testing.assert_allclose(per_position.data, [0.0, ref_cross_entropy(logits.data[1:], target[1:])])
    loss = F.cross_entropy(logits, target)
    loss.backward()
    assert np.isfinite(loss.item())
    assert np.all(np.asarray(logits.grad)[0] == 0) and np.all(np.isfinite(np.asarray(logits.grad)))


# ---------------------------------------------------------------- cross_entropy gradients


MASKS = {
    "plain": lambda shape: (None, 0.0),
    "ignore": lambda shape: (None, 0.4),
    "float_mask": lambda shape: (np.random.default_rng(2).uniform(0.1, 2.0, shape), 0.0),
    "bool_mask_and_ignore": lambda shape: (np.arange(np.prod(shape)).reshape(shape) % 3 != 1, 0.4),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(MASKS))
@pytest.mark.parametrize("lead", [(3,), (2, 3)])
def test_cross_entropy_gradcheck(reduction, case, lead):
    mask, ignore_frac = MASKS[case](lead)
    logits, target = make_case(lead, n_classes=4, seed=3, ignore_frac=ignore_frac)
    if ignore_frac == 0.0:
        target.flat[-1] = 1
    x = leaf(logits)
    assert gradcheck(lambda x: F.cross_entropy(x, target, mask=mask, reduction=reduction), [x], mode="full")


def test_cross_entropy_gradient_is_softmax_minus_one_hot_and_zero_when_ignored():
    logits, target = make_case((4, 3), n_classes=5)
    x = leaf(logits)
    F.cross_entropy(x, target, reduction="sum").backward()
    kept = target != -100
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    expected = (p - np.eye(5)[np.where(kept, target, 0)]) * kept[..., None]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(x.grad)[~kept] == 0)


@st.composite
def cross_entropy_cases(draw):
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    n_classes = draw(st.integers(2, 6))
    logits = draw(hnp.arrays(np.float64, lead + (n_classes,), elements=st.floats(-8, 8)))
    target = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, n_classes - 1)))
    ignore_index = draw(st.sampled_from([-100, -1, 0]))
    ignored = draw(hnp.arrays(np.bool_, lead))
    target = np.where(ignored, ignore_index, target)
    mask = draw(st.none() | hnp.arrays(np.float64, lead, elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    reduction = draw(st.sampled_from(REDUCTIONS))
    return logits, target, ignore_index, mask, reduction


@given(cross_entropy_cases())
def test_cross_entropy_property(case):
    logits, target, ignore_index, mask, reduction = case
    fn = lambda x: F.cross_entropy(x, target, ignore_index=ignore_index, mask=mask, reduction=reduction)  # noqa: E731
    x = leaf(logits)
    expected = ref_cross_entropy(logits, target, ignore_index, mask, reduction)
    np.testing.assert_allclose(fn(x).data, expected, rtol=1e-10, atol=1e-12)
    if np.all(np.isfinite(expected)):
        assert gradcheck(fn, [x], mode="full")


# ---------------------------------------------------------------- numerical stability


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_huge_logits(dtype):
    logits = Tensor(np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]], dtype=dtype), requires_grad=True)
    per_position = F.cross_entropy(logits, np.array([0, 2]), reduction="none")
    assert per_position.dtype == dtype
    np.testing.assert_allclose(per_position.data, [0.0, 2e4])
    loss = F.cross_entropy(logits, np.array([0, 2]))
    loss.backward()
    assert loss.item() == pytest.approx(1e4)
    assert np.all(np.isfinite(np.asarray(logits.grad)))
    np.testing.assert_allclose(logits.grad, [[0.0, 0.0, 0.0], [0.5, 0.0, -0.5]], atol=1e-6)


# ---------------------------------------------------------------- cross_entropy errors


def test_non_integer_target_is_a_type_error():
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0.0, 1.0]))
    with pytest.raises(TypeError):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([True, False]))


def test_target_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        F.cross_entropy(Tensor(np.zeros((4, 3))), np.zeros((4, 1), dtype=np.int64))
    assert "(4, 1)" in str(info.value) and "(4, 3)" in str(info.value)


@pytest.mark.parametrize("bad", [3, -1, -100])
def test_target_out_of_range_is_a_value_error(bad):
    target = np.array([0, bad])
    with pytest.raises(ValueError, match="target values"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), target, ignore_index=255)


def test_mask_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="mask shape"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1]), mask=np.ones((1, 2)))


def test_bad_reduction_is_a_value_error():
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(Tensor(np.zeros(2)), np.zeros(2), reduction="max")


def test_zero_dimensional_logits_are_a_value_error():
    with pytest.raises(ValueError, match="0-d"):
        F.cross_entropy(Tensor(np.float64(1.0)), np.array(0))


# ---------------------------------------------------------------- mse_loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_numpy(reduction):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    sq = (a - b) ** 2
    expected = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    np.testing.assert_allclose(F.mse_loss(Tensor(a), Tensor(b), reduction=reduction).data, expected, rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_gradcheck_input_and_target(reduction):
    rng = np.random.default_rng(5)
    x, y = leaf(rng.standard_normal((2, 3))), leaf(rng.standard_normal((2, 3)))
    assert gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [x, y], mode="full")


def test_mse_loss_accepts_numpy_target_and_keeps_input_dtype():
    x = leaf([1.0, 2.0, 4.0])
    loss = F.mse_loss(x, np.array([0, 2, 2]))
    assert loss.dtype == np.float64
    assert loss.item() == pytest.approx(5 / 3)
    loss.backward()
    np.testing.assert_allclose(x.grad, [2 / 3, 0.0, 4 / 3])


def test_mse_loss_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(3,\).*\(3, 1\)"):
        F.mse_loss(Tensor(np.zeros(3)), np.zeros((3, 1)))


# ---------------------------------------------------------------- parity with PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_parity_with_torch(reduction):
    torch = pytest.importorskip("torch")
    logits, target = make_case((4, 3), ignore_index=-1)
    x = leaf(logits)
    ours = F.cross_entropy(x, target, ignore_index=-1, reduction=reduction)
    ours.backward(np.ones(ours.shape))
    tx = torch.tensor(logits, requires_grad=True)
    theirs = torch.nn.functional.cross_entropy(
        tx.reshape(-1, 5), torch.tensor(target.ravel()), ignore_index=-1, reduction=reduction
    )
    theirs.sum().backward()
    np.testing.assert_allclose(ours.data.ravel(), theirs.detach().numpy().ravel(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)

    rng = np.random.default_rng(6)
    a, b = leaf(rng.standard_normal((3, 2))), leaf(rng.standard_normal((3, 2)))
    ours = F.mse_loss(a, b, reduction=reduction)
    ours.backward(np.ones(ours.shape))
    ta, tb = torch.tensor(a.data, requires_grad=True), torch.tensor(b.data, requires_grad=True)
    theirs = torch.nn.functional.mse_loss(ta, tb, reduction=reduction)
    theirs.sum().backward()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.grad, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad, tb.grad.numpy(), rtol=1e-12)


# ---------------------------------------------------------------- label smoothing


def ref_smoothed(logits, target, eps, ignore_index=-100, reduction="mean"):
    """PyTorch's definition written out: (1 - eps) nll + eps * mean over classes of -log_softmax."""
    logits = np.asarray(logits, dtype=np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
    counted = target != ignore_index
    nll = -np.take_along_axis(log_p, np.where(counted, target, 0)[..., None], -1)[..., 0]
    losses = np.where(counted, (1 - eps) * nll - eps * log_p.mean(-1), 0.0)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.sum() / counted.sum()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_label_smoothing_matches_reference_and_finite_differences(eps, reduction):
    logits, target = make_case((3, 4), ignore_index=-1)
    x = leaf(logits)
    out = F.cross_entropy(x, target, ignore_index=-1, reduction=reduction, label_smoothing=eps)
    np.testing.assert_allclose(out.data, ref_smoothed(logits, target, eps, -1, reduction), rtol=1e-13, atol=1e-15)
    assert gradcheck(lambda x: F.cross_entropy(x, target, ignore_index=-1, reduction=reduction,
                                               label_smoothing=eps), [x], mode="full")
    module = nn.CrossEntropyLoss(ignore_index=-1, reduction=reduction, label_smoothing=eps)
    np.testing.assert_array_equal(module(Tensor(logits), target).data, out.data)


def test_label_smoothing_with_a_mask_weights_each_position():
    logits, target = make_case((6,), ignore_frac=0.0)
    mask = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 0.0])
    out = F.cross_entropy(Tensor(logits), target, mask=mask, label_smoothing=0.2, reduction="none")
    np.testing.assert_allclose(out.data, ref_smoothed(logits, target, 0.2, reduction="none") * mask, rtol=1e-13)


# ---------------------------------------------------------------- binary cross-entropy


def ref_bce(p, y, weight=1.0):
    return -weight * (y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def ref_bce_logits(x, y, weight=1.0, pos_weight=1.0):
    p = 1 / (1 + np.exp(-x))
    return -weight * (pos_weight * y * np.log(p) + (1 - y) * np.log1p(-p))


def bce_case(seed=0, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal(shape)
    return x, 1 / (1 + np.exp(-x)), rng.uniform(0, 1, shape), rng.uniform(0.5, 2, shape[-1:])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_numpy_and_finite_differences(reduction):
    _, p, y, w = bce_case()
    expected = ref_bce(p, y, w)
    expected = {"none": expected, "sum": expected.sum(), "mean": expected.mean()}[reduction]
    out = F.binary_cross_entropy(leaf(p), y, w, reduction=reduction)
    np.testing.assert_allclose(out.data, expected, rtol=1e-13)
    assert gradcheck(lambda p, y: F.binary_cross_entropy(p, y, w, reduction=reduction), [leaf(p), leaf(y)],
                     mode="full")
    np.testing.assert_array_equal(nn.BCELoss(w, reduction=reduction)(Tensor(p), y).data, out.data)


def test_binary_cross_entropy_clamps_its_logs_and_keeps_gradients_finite_at_0_and_1():
    p, y = leaf([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.0, 1.0])
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(loss.data, [0, 100, 100, 0])
    loss.sum().backward()
    np.testing.assert_array_equal(np.asarray(p.grad), [0, -1e12, 1e12, 0])  # (p - y) / max(p (1 - p), 1e-12)
    with pytest.raises(ValueError, match=r"binary_cross_entropy: input must hold probabilities in \[0, 1\], got "
                                         r"values from -0.5 to 1.0; for logits use binary_cross_entropy_with_logits"):
        F.binary_cross_entropy(np.array([-0.5, 1.0]), np.array([0.0, 1.0]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_binary_cross_entropy_with_logits_matches_numpy_and_finite_differences(weighted, reduction):
    x, _, y, w = bce_case(1)
    weight, pos_weight = (w, w[::-1] * 1.5) if weighted else (None, None)
    expected = ref_bce_logits(x, y, 1.0 if weight is None else weight, 1.0 if pos_weight is None else pos_weight)
    expected = {"none": expected, "sum": expected.sum(), "mean": expected.mean()}[reduction]
    options = dict(reduction=reduction, pos_weight=pos_weight)
    out = F.binary_cross_entropy_with_logits(leaf(x), y, weight, **options)
    np.testing.assert_allclose(out.data, expected, rtol=1e-13)
    assert gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight, **options), [leaf(x), leaf(y)],
                     mode="full")
    np.testing.assert_array_equal(nn.BCEWithLogitsLoss(weight, **options)(Tensor(x), y).data, out.data)


def test_binary_cross_entropy_with_logits_is_stable_and_exact_at_zero():
    x, y = leaf([-800.0, 0.0, 800.0, 40.0]), np.array([1.0, 0.25, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.data, [800, np.log(2), 800, np.log1p(np.exp(-40.0))], rtol=1e-15)
    loss.sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), [-1, 0.25, 1, 1 / (1 + np.exp(-40.0)) - 1], atol=1e-15)


def test_binary_losses_with_a_mask_and_their_errors():
    x, p, y, _ = bce_case(2, (3, 2))
    mask = np.array([[1.0], [0.0], [2.0]])
    for fn, inp, ref in ((F.binary_cross_entropy, p, ref_bce), (F.binary_cross_entropy_with_logits, x, ref_bce_logits)):
        np.testing.assert_allclose(fn(Tensor(inp), y, mask=mask).data, (ref(inp, y) * mask).sum() / 6, rtol=1e-13)
        with pytest.raises(ValueError, match=rf"{fn.__name__}: input shape \(3, 2\) and target shape \(2,\) differ"):
            fn(Tensor(inp), y[0])
        with pytest.raises(ValueError, match=rf"{fn.__name__}: weight of shape \(3,\) does not broadcast to input "
                                             r"shape \(3, 2\)"):
            fn(Tensor(inp), y, np.ones(3))
        with pytest.raises(ValueError, match=rf"{fn.__name__}: mask of shape \(2, 1\) does not broadcast"):
            fn(Tensor(inp), y, mask=np.ones((2, 1)))
        with pytest.raises(ValueError, match="reduction must be one of"):
            fn(Tensor(inp), y, reduction="avg")


# ---------------------------------------------------------------- parity with PyTorch: the new losses


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.1, 0.7])
def test_label_smoothing_matches_torch(eps, reduction):
    torch = pytest.importorskip("torch")
    logits, target = make_case((6,), n_classes=5, ignore_index=2)
    x, tx = leaf(logits), torch.tensor(logits, requires_grad=True)
    ours = nn.CrossEntropyLoss(ignore_index=2, reduction=reduction, label_smoothing=eps)(x, target)
    theirs = torch.nn.CrossEntropyLoss(ignore_index=2, reduction=reduction, label_smoothing=eps)(
        tx, torch.from_numpy(target))
    ours.backward(np.arange(1.0, 1.0 + np.prod(ours.shape)).reshape(ours.shape))
    theirs.backward(torch.arange(1.0, 1.0 + theirs.numel(), dtype=torch.float64).reshape(theirs.shape))
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("logits", [False, True], ids=["BCELoss", "BCEWithLogitsLoss"])
def test_binary_cross_entropy_matches_torch(logits, weighted, reduction):
    torch = pytest.importorskip("torch")
    x, p, y, w = bce_case(3)
    inp = x if logits else p
    options = dict(weight=w if weighted else None, reduction=reduction)
    if logits and weighted:
        options["pos_weight"] = w[::-1] * 2
    torch_options = {k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    name = "BCEWithLogitsLoss" if logits else "BCELoss"
    a, b = leaf(inp), leaf(y)
    ta, tb = torch.tensor(inp, requires_grad=True), torch.tensor(y, requires_grad=True)
    ours, theirs = getattr(nn, name)(**options)(a, b), getattr(torch.nn, name)(**torch_options)(ta, tb)
    seed = np.random.default_rng(4).standard_normal(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.from_numpy(seed))
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
    for what, mine, torchs in (("input", a, ta), ("target", b, tb)):
        np.testing.assert_allclose(np.asarray(mine.grad), torchs.grad.numpy(), rtol=1e-11, atol=1e-13, err_msg=what)


@pytest.mark.torch
def test_mse_loss_module_reduction_matches_torch():
    torch = pytest.importorskip("torch")
    a, b = np.random.default_rng(7).standard_normal((2, 3, 4))
    for reduction in REDUCTIONS:
        x, tx = leaf(a), torch.tensor(a, requires_grad=True)
        ours, theirs = nn.MSELoss(reduction=reduction)(x, b), torch.nn.MSELoss(reduction=reduction)(tx, torch.from_numpy(b))
        ours.backward(np.ones(ours.shape))
        theirs.backward(torch.ones(theirs.shape, dtype=torch.float64))
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-13)
        np.testing.assert_allclose(np.asarray(x.grad), tx.grad.numpy(), rtol=1e-13)
