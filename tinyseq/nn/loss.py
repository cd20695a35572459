"""Loss modules over the functional losses, with masks for padded sequences."""

from . import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """``loss(logits, target, mask=None)``: softmax cross-entropy over the last axis.

    ``logits`` (..., C) and integer ``target`` (...) of any leading shape, e.g. (T, B)
    for a sequence batch; ``mask`` (same shape as ``target``; e.g. from
    ``nn.utils.sequence_mask``) and ``ignore_index`` drop padded positions. With
    ``reduction="mean"`` the loss is averaged over the counted positions (time steps
    and sequences together); ``"sum"`` adds them; ``"none"`` returns them all.
    """

    def __init__(self, ignore_index=-100, reduction="mean"):
        F._check_reduction("CrossEntropyLoss", reduction)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits, target, mask=None):
        return F.cross_entropy(logits, target, self.ignore_index, mask, self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class MSELoss(Module):
    """``loss(input, target, mask=None)``: squared error, optionally over the masked positions only.

    ``mask`` broadcasts against ``input`` (e.g. (T, B, 1) for a (T, B, F) output); with
    ``reduction="mean"`` the sum is divided by the number of counted elements.
    """

    def __init__(self, reduction="mean"):
        F._check_reduction("MSELoss", reduction)
        self.reduction = reduction

    def forward(self, input, target, mask=None):
        return F.mse_loss(input, target, self.reduction, mask=mask)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
