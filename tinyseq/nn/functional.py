"""Functional forms: ``linear``, the losses, and the activation ops re-exported, so that
``F.relu`` etc. read as in PyTorch.

Losses are compositions of ops, so their gradients come from the engine. Their options are
keyword-only: PyTorch's third positional argument is a class-weight or legacy argument that
tinyseq does not take, and a silent mix-up would be worse than a TypeError.
"""

import contextlib
import math
import numbers

import numpy as np

from ..ops import (  # noqa: F401  (re-exported)
    dropout, embedding, erf, leaky_relu, log_softmax, logsumexp, one_hot, relu, sigmoid, softmax, tanh,
)
from ..ops import Affine, BinaryCrossEntropy, SoftmaxNLL, getitem, leaf_slices_once, matmul, reshape, sum as _sum
from ..ops import where as _where
from ..ops import softplus
from ..tensor import Tensor, as_array, is_tracing

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_no_class_weight(name, weight):
    """Refuse PyTorch's class ``weight`` option, which tinyseq lacks."""
    if weight is not None:
        raise ValueError(f"{name}: class weights (weight=) are not supported; use mask= to weight positions")


def _check_label_smoothing(name, label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) or \
            not 0 <= label_smoothing <= 1:
        raise ValueError(f"{name}: label_smoothing must be a number in [0, 1], got {label_smoothing!r}")


def linear(input, weight, bias=None):
    """``input @ weight^T + bias``: input (*, in), weight (out, in), bias (out,) or None -> (*, out)."""
    input = input if isinstance(input, Tensor) else Tensor(input)  # NOTE: no generator: a step calls this
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    bias_shape = None if bias is None else bias.shape if isinstance(bias, Tensor) else np.shape(bias)
    w_shape, x_shape = weight.shape, input.shape
    if len(w_shape) != 2 or not x_shape or x_shape[-1] != w_shape[1] or bias_shape not in (None, w_shape[:1]):
        raise ValueError(f"linear: expected input (*, in), weight (out, in) and bias (out,) or None, got "
                         f"shapes {x_shape}, {w_shape} and {bias_shape}")
    inside = _unrolled
    if inside is None:
        return _affine(input, weight, bias)
    if input is inside.x_t:  # x_t's projection: made for all T steps at once, read a step at a time
        key = (id(weight), id(bias))
        if key not in inside.projections:
            inside.projections[key] = (weight, bias, _affine(inside.xs, weight, bias, inside))
        return inside.projections[key][2][inside.t]
    return _affine(input, weight, bias, inside)


def _affine(input, weight, bias, inside=None):
    if inside is None:
        w_t = weight.T
    else:  # each weight transposed once per sequence
        if id(weight) not in inside.transposed:
            inside.transposed[id(weight)] = (weight, weight.T)
        w_t = inside.transposed[id(weight)][1]
        if bias is not None and not is_tracing():  # one node a step, not two (ops.Affine)
            return Affine.apply(input, w_t, bias)
    y = matmul(input, w_t)
    return y if bias is None else y + bias


class _Unrolled:
    """What ``linear`` knows while ``nn.recurrent.unroll`` runs a cell's steps: the input
    sequence ``xs`` (T, B, ...), the step ``t`` and its ``x_t`` (the tensor the cell got)."""

    def __init__(self, xs):
        self.xs, self.x_t, self.t = xs, None, 0
        self.transposed = {}  # id(weight) -> (weight, weight^T)
        self.projections = {}  # (id(weight), id(bias)) -> (weight, bias, xs W^T + b)


_unrolled = None  # the _Unrolled of the running unroll, if any


@contextlib.contextmanager
def unrolling(xs):
    """Inside it (``nn.recurrent.unroll`` runs a cell's steps in it, setting ``t`` and
    ``x_t``, the tensor step t gets, on what it yields) ``linear`` does what the fused kernels
    do before their time loop: ``linear(x_t, W, b)`` reads step t of ``xs W^T + b``, one
    product for all T steps, and every weight is transposed once per sequence, not once per
    step; a ``[]`` slice of a parameter is taken once per sequence too (``ops.leaf_slices_once``).
    The numbers are the same and so are the gradients (the engine sums the steps' gradients
    before the one product's, or slice's, backward)."""
    global _unrolled
    outer, _unrolled = _unrolled, _Unrolled(xs)
    try:
        with leaf_slices_once():
            yield _unrolled
    finally:
        _unrolled = outer


def nll_loss(log_probs, target, *, ignore_index=-100, mask=None, reduction="mean", weight=None):
    """Negative log-likelihood of integer ``target`` (...) under ``log_probs`` (..., C).

    NOTE: the class axis is the last one (PyTorch's is axis 1), so a (T, B, C) or (B, T, C)
    batch needs no transpose; for (N, C) the two agree. Positions where ``target ==
    ignore_index`` or where ``mask`` (bool or float, same shape as ``target``) is 0 count
    nothing (PyTorch's class ``weight`` is refused: not supported). ``reduction="mean"`` divides by the number of counted positions (the sum of the
    mask's weights), so padding does not dilute the loss; ``"sum"`` adds them; ``"none"``
    returns the per-position losses (0 where not counted). A mean over zero counted
    positions is nan, as PyTorch.
    """
    _check_no_class_weight("nll_loss", weight)
    return _nll("nll_loss", log_probs, target, ignore_index, mask, reduction)


def cross_entropy(logits, target, *, ignore_index=-100, mask=None, reduction="mean", weight=None,
                  label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (..., C) against integer ``target`` (...):
    ``nll_loss(log_softmax(logits, -1), target, ...)``; see ``nll_loss`` for the options and
    the class axis. PyTorch's class ``weight`` is refused (not supported).

    ``label_smoothing`` ε in [0, 1] (PyTorch's definition): each counted position's loss is
    (1 - ε) times its nll plus ε times the mean over the C classes of -log_softmax, i.e. the
    cross-entropy against the target mixed with the uniform distribution. Ignored and masked
    positions count nothing, and the mean divides by the counted positions, as without it.
    """
    _check_no_class_weight("cross_entropy", weight)
    _check_label_smoothing("cross_entropy", label_smoothing)
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits need a class axis, got a 0-d tensor")
    return _nll("cross_entropy", logits, target, ignore_index, mask, reduction, from_logits=True,
                label_smoothing=label_smoothing)


def _nll(name, log_probs, target, ignore_index, mask, reduction, from_logits=False, label_smoothing=0.0):
    """``nll_loss``'s work; ``name`` is the function the user called, for the error messages.

    ``from_logits``: ``log_probs`` are logits, and log_softmax and the pick of the target are
    one op (``ops.softmax_nll``: fewer passes over the (..., C) scores, no scatter in backward);
    then ``label_smoothing`` may mix in the uniform target (``cross_entropy``).
    """
    _check_reduction(name, reduction)
    if not isinstance(log_probs, Tensor):
        log_probs = Tensor(log_probs)
    if log_probs.ndim < 1:
        raise ValueError(f"{name}: the input needs a class axis, got a 0-d tensor")
    t = as_array(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != log_probs.shape[:-1]:
        hint = ""
        if log_probs.ndim > 2 and t.shape == log_probs.shape[:1] + log_probs.shape[2:]:
            hint = "; tinyseq's class axis is the last one, PyTorch's (N, C, d) layout needs .transpose(1, -1)"
        raise ValueError(f"{name}: target shape {t.shape} does not match input shape {log_probs.shape} "
                         f"without its class axis ({log_probs.shape[:-1]}){hint}")
    n_classes = log_probs.shape[-1]
    counted = t != ignore_index
    bad = counted & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise ValueError(
            f"{name}: target values must lie in [0, {n_classes}) or equal ignore_index={ignore_index}, "
            f"got {t[bad].ravel()[0]}"
        )
    weight = counted.astype(log_probs.dtype)
    if mask is not None:
        m = as_array(mask)
        if m.shape != t.shape:
            raise ValueError(f"{name}: mask shape {m.shape} does not match target shape {t.shape}")
        weight = weight * m.astype(log_probs.dtype)

    safe = np.where(counted, t, 0)
    if from_logits:
        picked = SoftmaxNLL.apply(log_probs, target=safe.astype(np.intp))  # targets checked above
        if label_smoothing:
            uniform = -log_softmax(log_probs, -1).mean(axis=-1)
            picked = (1 - label_smoothing) * picked + label_smoothing * uniform
    else:
        flat = reshape(log_probs, (-1, n_classes))
        picked = -reshape(getitem(flat, (np.arange(flat.shape[0]), safe.ravel())), t.shape)
    # NOTE: select rather than multiply by 0, so a -inf at an uncounted position gives 0, not nan.
    losses = _where(weight != 0, picked, 0.0) * weight
    if reduction == "none":
        return losses
    total = _sum(losses)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.asarray(weight.sum(), dtype=log_probs.dtype)


def mse_loss(input, target, *, reduction="mean", mask=None):
    """Mean (or sum, or none) of the squared differences; shapes must match.

    ``mask`` (optional, broadcastable to ``input``) weights each element; the mean then
    divides by the mask's total weight over the input's shape.
    """
    _check_reduction("mse_loss", reduction)
    input, target = _input_and_target("mse_loss", input, target)
    diff = input - target
    return _reduce("mse_loss", diff * diff, reduction, mask)


def binary_cross_entropy(input, target, weight=None, *, reduction="mean", mask=None):
    """-w (y log p + (1 - y) log(1 - p)) of probabilities ``input`` p against ``target`` y, as
    PyTorch's: each log clamped to >= -100, and PyTorch's gradient, finite at p = 0 or 1.

    Args:
        input: probabilities in [0, 1], any shape; target: the same shape, in [0, 1].
        weight: None, or weights broadcastable to ``input`` that multiply each element's loss.
        reduction: "mean" (default; over all elements, as PyTorch, unless ``mask``), "sum" or "none".
        mask: None, or broadcastable to ``input``: as ``mse_loss``'s (the mean then divides by
            its total weight).

    Prefer ``binary_cross_entropy_with_logits`` on logits: it is exact where sigmoid saturates.
    """
    _check_reduction("binary_cross_entropy", reduction)
    input, target = _input_and_target("binary_cross_entropy", input, target)
    if input.size and not (0 <= input.data.min() and input.data.max() <= 1):
        raise ValueError(f"binary_cross_entropy: input must hold probabilities in [0, 1], got values from "
                         f"{input.data.min()} to {input.data.max()}; for logits use "
                         "binary_cross_entropy_with_logits")
    losses = BinaryCrossEntropy.apply(input, target)
    return _reduce("binary_cross_entropy", _weighted("binary_cross_entropy", losses, weight, "weight"), reduction,
                   mask)


def binary_cross_entropy_with_logits(input, target, weight=None, *, reduction="mean", pos_weight=None, mask=None):
    """Binary cross-entropy of ``sigmoid(input)`` against ``target`` y, computed stably from the
    logits x, as PyTorch's: -w (pos_weight y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))).

    Args:
        input: logits, any shape; target: the same shape, in [0, 1].
        weight: None, or weights broadcastable to ``input`` that multiply each element's loss.
        reduction: "mean" (default; over all elements unless ``mask``), "sum" or "none".
        pos_weight: None, or weights of the positive term broadcastable to ``input``, e.g. (C,)
            for C labels: > 1 counts positives more (recall), < 1 less (precision).
        mask: None, or broadcastable to ``input``: as ``mse_loss``'s.
    """
    name = "binary_cross_entropy_with_logits"
    _check_reduction(name, reduction)
    input, target = _input_and_target(name, input, target)
    # -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x)
    positive = _weighted(name, target * softplus(-input), pos_weight, "pos_weight")
    losses = _weighted(name, positive + (1 - target) * softplus(input), weight, "weight")
    return _reduce(name, losses, reduction, mask)


def _input_and_target(name, input, target):
    """Both as Tensors (the target in the input's dtype when it is not a Tensor), of one shape."""
    input = input if isinstance(input, Tensor) else Tensor(input)
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"{name}: input shape {input.shape} and target shape {target.shape} differ")
    return input, target


def _check_broadcast(name, shape, to, what):
    try:
        fits = np.broadcast_shapes(shape, to) == to
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name}: {what} of shape {shape} does not broadcast to input shape {to}")


def _weighted(name, losses, weight, what):
    """``losses`` times ``weight`` (None: unchanged), which must broadcast to their shape."""
    if weight is None:
        return losses
    if not isinstance(weight, Tensor):
        weight = Tensor(np.asarray(weight, dtype=losses.dtype))
    _check_broadcast(name, weight.shape, losses.shape, what)
    return losses * weight


def _reduce(name, losses, reduction, mask):
    """Elementwise ``losses`` weighted by ``mask`` (None, or broadcastable to them) and reduced:
    "none" returns them, "sum" adds them, "mean" divides the sum by the mask's total weight
    (by their number without a mask)."""
    if mask is not None:
        m = as_array(mask).astype(losses.dtype)
        _check_broadcast(name, m.shape, losses.shape, "mask")
        m = np.broadcast_to(m, losses.shape)
        losses = losses * m
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if mask is None:
        return losses.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return losses.sum() / np.asarray(m.sum(), dtype=losses.dtype)


def gelu(input, approximate="none"):
    """The Gaussian error linear unit x Φ(x), Φ the standard normal CDF (Hendrycks & Gimpel), as
    PyTorch's: ``approximate="none"`` (default) is exact, 0.5 x (1 + erf(x / sqrt 2));
    ``"tanh"`` is 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    _check_approximate("gelu", approximate)
    x = input if isinstance(input, Tensor) else Tensor(input)
    if approximate == "tanh":
        return 0.5 * x * (1 + tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))


def _check_approximate(name, approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{name}: approximate must be 'none' or 'tanh', got {approximate!r}")
