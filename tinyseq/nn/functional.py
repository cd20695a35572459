"""Functional losses (and the activation ops, re-exported so ``F.relu`` etc. read as in PyTorch).

Losses are compositions of ops, so their gradients come from the engine.
"""

import numpy as np

from ..ops import (  # noqa: F401  (re-exported)
    dropout, embedding, leaky_relu, log_softmax, logsumexp, one_hot, relu, sigmoid, softmax, tanh,
)
from ..ops import getitem, log_softmax as _log_softmax, reshape, sum as _sum, where as _where
from ..tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def cross_entropy(logits, target, ignore_index=-100, mask=None, reduction="mean"):
    """Softmax cross-entropy of ``logits`` (..., C) against integer ``target`` (...).

    Positions where ``target == ignore_index`` or where ``mask`` (bool or float, same
    shape as ``target``) is 0 contribute nothing. ``reduction="mean"`` divides by the
    number of counted positions (the sum of the mask's weights), so padding does not
    dilute the loss; ``"sum"`` adds them; ``"none"`` returns the per-position losses
    (0 where not counted). NOTE: a mean over zero counted positions is nan, as PyTorch.
    """
    _check_reduction("cross_entropy", reduction)
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits need a class axis, got a 0-d tensor")
    t = np.asarray(target.data if isinstance(target, Tensor) else target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: target shape {t.shape} does not match logits shape {logits.shape} "
            f"without its class axis ({logits.shape[:-1]})"
        )
    n_classes = logits.shape[-1]
    counted = t != ignore_index
    bad = counted & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise ValueError(
            f"cross_entropy: target values must lie in [0, {n_classes}) or equal ignore_index={ignore_index}, "
            f"got {t[bad].ravel()[0]}"
        )
    weight = counted.astype(logits.dtype)
    if mask is not None:
        m = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
        if m.shape != t.shape:
            raise ValueError(f"cross_entropy: mask shape {m.shape} does not match target shape {t.shape}")
        weight = weight * m.astype(logits.dtype)

    flat = reshape(_log_softmax(logits, axis=-1), (-1, n_classes))
    rows = np.arange(flat.shape[0])
    picked = reshape(getitem(flat, (rows, np.where(counted, t, 0).ravel())), t.shape)
    # NOTE: select rather than multiply by 0, so a -inf logit at an uncounted position gives 0, not nan.
    losses = _where(weight != 0, -picked, 0.0) * weight
    if reduction == "none":
        return losses
    total = _sum(losses)
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.asarray(weight.sum(), dtype=logits.dtype)


def mse_loss(input, target, reduction="mean", mask=None):
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
        m = np.asarray(mask.data if isinstance(mask, Tensor) else mask).astype(input.dtype)
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
