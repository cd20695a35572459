"""Loss modules over the functional losses, with masks for padded sequences."""

from . import functional as F
from .module import Module


class _ClassLoss(Module):
    """What CrossEntropyLoss and NLLLoss share: ``loss(input, target, mask=None)`` over integer
    class targets, with ``ignore_index`` and ``reduction``; ``loss`` is the functional form."""

    loss = None

    def __init__(self, ignore_index=-100, reduction="mean"):
        F._check_reduction(type(self).__name__, reduction)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target, mask=None):
        return self.loss(input, target, ignore_index=self.ignore_index, mask=mask, reduction=self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy over the last axis: ``loss(logits, target, mask=None)``.

    Args:
        ignore_index: positions whose target equals it count nothing. Default: -100.
        reduction: "mean" (default; over the counted positions, time steps and sequences
            together), "sum", or "none" (every position's loss, 0 where not counted).

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
        ignore_index: positions whose target equals it count nothing. Default: -100.
        reduction: "mean" (default; over the counted positions), "sum" or "none".

    Shape:
        - log_probs: (..., C), e.g. from ``log_softmax(logits, -1)`` (class axis last).
        - target: (...), integer class indices; mask (optional): (...), bool or float weights.
        - Output: a scalar, or (...) with ``reduction="none"``.
    """

    loss = staticmethod(F.nll_loss)


class MSELoss(Module):
    """Squared error: ``loss(input, target, mask=None)``.

    Args:
        reduction: "mean" (default; over the counted elements), "sum" or "none".

    Shape:
        - input and target: the same shape.
        - mask (optional): broadcastable to the input, e.g. (T, B, 1) for a (T, B, F) output;
          with ``reduction="mean"`` the sum is divided by the mask's total weight.
        - Output: a scalar, or the input's shape with ``reduction="none"``.
    """

    def __init__(self, reduction="mean"):
        F._check_reduction("MSELoss", reduction)
        self.reduction = reduction

    def forward(self, input, target, mask=None):
        return F.mse_loss(input, target, reduction=self.reduction, mask=mask)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
