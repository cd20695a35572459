"""Functional forms: ``linear``, the losses, and the activation ops re-exported, so that
``F.relu`` etc. read as in PyTorch.

Losses are compositions of ops, so their gradients come from the engine. Their options are
keyword-only: PyTorch's third positional argument is a class-weight or legacy argument that
tinyseq does not take, and a silent mix-up would be worse than a TypeError.
"""

import numpy as np

from ..ops import (  # noqa: F401  (re-exported)
    dropout, embedding, leaky_relu, log_softmax, logsumexp, one_hot, relu, sigmoid, softmax, tanh,
)
from ..ops import SoftmaxNLL, getitem, matmul, reshape, sum as _sum, where as _where
from ..tensor import Tensor, as_array

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_unsupported(name, weight, label_smoothing):
    """Refuse PyTorch's class ``weight`` and ``label_smoothing`` options, which tinyseq lacks."""
    if weight is not None:
        raise ValueError(f"{name}: class weights (weight=) are not supported; use mask= to weight positions")
    if label_smoothing != 0:
        raise ValueError(f"{name}: label_smoothing is not supported")


def linear(input, weight, bias=None):
    """``input @ weight^T + bias``: input (*, in), weight (out, in), bias (out,) or None -> (*, out)."""
    input, weight = (t if isinstance(t, Tensor) else Tensor(t) for t in (input, weight))
    bias_shape = None if bias is None else np.shape(bias.data if isinstance(bias, Tensor) else bias)
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1] or \
            bias_shape not in (None, weight.shape[:1]):
        raise ValueError(f"linear: expected input (*, in), weight (out, in) and bias (out,) or None, got "
                         f"shapes {input.shape}, {weight.shape} and {bias_shape}")
    y = matmul(input, weight.T)
    return y if bias is None else y + bias


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
    _check_unsupported("nll_loss", weight, 0)
    return _nll("nll_loss", log_probs, target, ignore_index, mask, reduction)


def cross_entropy(logits, target, *, ignore_index=-100, mask=None, reduction="mean", weight=None,
                  label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (..., C) against integer ``target`` (...):
    ``nll_loss(log_softmax(logits, -1), target, ...)``; see ``nll_loss`` for the options and
    the class axis. PyTorch's ``weight`` and ``label_smoothing`` are refused (not supported)."""
    _check_unsupported("cross_entropy", weight, label_smoothing)
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits need a class axis, got a 0-d tensor")
    return _nll("cross_entropy", logits, target, ignore_index, mask, reduction, from_logits=True)


def _nll(name, log_probs, target, ignore_index, mask, reduction, from_logits=False):
    """``nll_loss``'s work; ``name`` is the function the user called, for the error messages.

    ``from_logits``: ``log_probs`` are logits, and log_softmax and the pick of the target are
    one op (``ops.softmax_nll``: fewer passes over the (..., C) scores, no scatter in backward).
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
    input = input if isinstance(input, Tensor) else Tensor(input)
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=input.dtype))
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    diff = input - target
    sq = diff * diff
    if mask is not None:
        m = as_array(mask).astype(input.dtype)
        try:
            m = np.broadcast_to(m, input.shape)
        except ValueError:
            raise ValueError(f"mse_loss: mask of shape {m.shape} does not broadcast to input shape {input.shape}") from None
        sq = sq * m
    if reduction == "none":
        return sq
    if reduction == "sum":
        return sq.sum()
    if mask is None:
        return sq.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return sq.sum() / np.asarray(m.sum(), dtype=input.dtype)
