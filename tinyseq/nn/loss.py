"""Loss modules over the functional losses, with masks for padded sequences."""

import numbers

from . import functional as F
from .module import Module


class _ClassLoss(Module):
    """What CrossEntropyLoss and NLLLoss share: ``loss(input, target, mask=None)`` over integer
    class targets, with ``ignore_index`` and ``reduction``; ``loss`` is the functional form.

    PyTorch's first positional argument is ``weight`` (class weights), which tinyseq does not
    take; it is refused rather than mistaken for another option, and the rest are keyword-only.
    """

    loss = None

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        name = type(self).__name__
        F._check_unsupported(name, weight, label_smoothing)
        F._check_reduction(name, reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index, self.reduction = int(ignore_index), reduction

    def forward(self, input, target, mask=None):
        return self.loss(input, target, ignore_index=self.ignore_index, mask=mask, reduction=self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy over the last axis: ``loss(logits, target, mask=None)``.

    Args:
        weight: class weights, PyTorch's first argument: not supported, must be None.
        ignore_index: positions whose target equals it count nothing. Default: -100.
        reduction: "mean" (default; over the counted positions, time steps and sequences
            together), "sum", or "none" (every position's loss, 0 where not counted).
        label_smoothing: not supported, must be 0.

    Shape:
        - logits: (..., C), any leading shape, e.g. (T, B, C) or (B, T, C) (the class axis is
          the last one, not PyTorch's axis 1).
        - target: (...), integer class indices.
        - mask (optional): (...), bool or float weights, e.g. from ``nn.utils.sequence_mask``,
          to leave out padded positions.
        - Output: a scalar, or (...) with ``reduction="none"``.
    """

    loss = staticmethod(F.cross_entropy)


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities over the last axis: ``loss(log_probs, target, mask=None)``.

    Args:
        weight: class weights, PyTorch's first argument: not supported, must be None.
        ignore_index: positions whose target equals it count nothing. Default: -100.
        reduction: "mean" (default; over the counted positions), "sum" or "none".
        label_smoothing: not supported, must be 0.

    Shape:
        - log_probs: (..., C), e.g. from ``log_softmax(logits, -1)`` (class axis last).
        - target: (...), integer class indices; mask (optional): (...), bool or float weights.
        - Output: a scalar, or (...) with ``reduction="none"``.
    """

    loss = staticmethod(F.nll_loss)


class MSELoss(Module):
    """Squared error: ``loss(input, target, mask=None)``.

    Args:
        reduction (keyword-only): "mean" (default; over the counted elements), "sum" or "none".

    Shape:
        - input and target: the same shape.
        - mask (optional): broadcastable to the input, e.g. (T, B, 1) for a (T, B, F) output;
          with ``reduction="mean"`` the sum is divided by the mask's total weight.
        - Output: a scalar, or the input's shape with ``reduction="none"``.
    """

    def __init__(self, *, reduction="mean"):
        F._check_reduction("MSELoss", reduction)
        self.reduction = reduction

    def forward(self, input, target, mask=None):
        return F.mse_loss(input, target, reduction=self.reduction, mask=mask)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
