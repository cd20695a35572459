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

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean"):
        name = type(self).__name__
        F._check_no_class_weight(name, weight)
        F._check_reduction(name, reduction)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index, self.reduction = int(ignore_index), reduction

    def forward(self, input, target, mask=None):
        return self.loss(input, target, ignore_index=self.ignore_index, mask=mask, reduction=self.reduction,
                         **self._options())

    def _options(self):
        return {}

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy over the last axis: ``loss(logits, target, mask=None)``.

    Args:
        weight: class weights, PyTorch's first argument: not supported, must be None.
        ignore_index: positions whose target equals it count nothing. Default: -100.
        reduction: "mean" (default; over the counted positions, time steps and sequences
            together), "sum", or "none" (every position's loss, 0 where not counted).
        label_smoothing: ε in [0, 1]: the target mixed with the uniform distribution,
            (1 - ε) nll + ε mean_c(-log_softmax), as PyTorch's. Default: 0.

    Shape:
        - logits: (..., C), any leading shape, e.g. (T, B, C) or (B, T, C) (the class axis is
          the last one, not PyTorch's axis 1).
        - target: (...), integer class indices.
        - mask (optional): (...), bool or float weights, e.g. from ``nn.utils.sequence_mask``,
          to leave out padded positions.
        - Output: a scalar, or (...) with ``reduction="none"``.
    """

    loss = staticmethod(F.cross_entropy)

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight, ignore_index=ignore_index, reduction=reduction)
        F._check_label_smoothing("CrossEntropyLoss", label_smoothing)
        self.label_smoothing = label_smoothing

    def _options(self):
        return {"label_smoothing": self.label_smoothing}

    def extra_repr(self):
        smoothing = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + smoothing


class NLLLoss(_ClassLoss):
    """Negative log-likelihood of log-probabilities over the last axis: ``loss(log_probs, target, mask=None)``.

    Args:
        weight: class weights, PyTorch's first argument: not supported, must be None.
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


class BCELoss(Module):
    """Binary cross-entropy of probabilities: ``loss(input, target, mask=None)``, as PyTorch's
    (each log clamped to >= -100); see ``functional.binary_cross_entropy``.

    Args:
        weight: None, or weights broadcastable to the input, multiplying each element's loss.
        reduction (keyword-only): "mean" (default; over all elements, or over the mask's total
            weight with a mask), "sum" or "none".

    Shape: input (probabilities in [0, 1]) and target of one shape; mask (optional)
    broadcastable to it; output a scalar, or the input's shape with ``reduction="none"``.
    """

    def __init__(self, weight=None, *, reduction="mean"):
        F._check_reduction("BCELoss", reduction)
        self.weight, self.reduction = weight, reduction

    def forward(self, input, target, mask=None):
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction, mask=mask)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy of ``sigmoid(input)``, computed stably from the logits:
    ``loss(input, target, mask=None)``, as PyTorch's; see
    ``functional.binary_cross_entropy_with_logits``.

    Args:
        weight: None, or weights broadcastable to the input, multiplying each element's loss.
        reduction (keyword-only): "mean" (default), "sum" or "none", as ``BCELoss``'s.
        pos_weight (keyword-only): None, or the positive term's weights broadcastable to the
            input, e.g. (C,) for C labels.

    Shape: input (logits) and target of one shape; mask (optional) broadcastable to it;
    output a scalar, or the input's shape with ``reduction="none"``.
    """

    def __init__(self, weight=None, *, reduction="mean", pos_weight=None):
        F._check_reduction("BCEWithLogitsLoss", reduction)
        self.weight, self.reduction, self.pos_weight = weight, reduction, pos_weight

    def forward(self, input, target, mask=None):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                  pos_weight=self.pos_weight, mask=mask)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
