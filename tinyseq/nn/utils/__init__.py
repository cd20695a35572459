"""Gradient clipping and sequence masks; ``rnn``: padding and packing variable-length sequences."""

import math

import numpy as np

from ...tensor import Tensor, as_array


def _grads(parameters):
    """The gradient arrays of ``parameters`` (one Tensor or an iterable) that have one."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad.data for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so their joint norm is at most ``max_norm``.

    Returns the total norm before clipping (a float), as PyTorch. ``norm_type`` may be
    ``float("inf")``. With ``error_if_nonfinite=True`` a nan/inf norm raises instead.
    ``parameters`` may be a generator (``model.parameters()``): it is read once.
    """
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    grads = _grads(parameters)
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    elif norm_type == 2.0:  # the common case: squared straight into float64 (no overflow), then summed
        total = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads))
    else:
        total = float(sum(np.sum(np.abs(g.astype(np.float64)) ** norm_type) for g in grads) ** (1 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    scale = max_norm / (total + 1e-6)
    if not scale >= 1:  # NOTE: a nan norm scales by nan, as PyTorch's does: the nan is not hidden
        with np.errstate(invalid="ignore"):  # an inf gradient times 0 is nan, also as in PyTorch
            for g in grads:
                g *= g.dtype.type(scale)
    return total


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value] in place."""
    if clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)


def sequence_mask(lengths, max_len=None, batch_first=False):
    """Bool mask of valid steps: (T, B) (or (B, T) with ``batch_first``), True where t < length."""
    lengths = as_array(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise ValueError(f"sequence_mask: lengths must be a 1-D integer array, got shape {lengths.shape} "
                         f"and dtype {lengths.dtype}")
    if max_len is None:
        max_len = int(lengths.max()) if lengths.size else 0
    mask = np.arange(max_len)[:, None] < lengths[None, :]
    return mask.T if batch_first else mask


from . import rnn  # noqa: E402  (nn.utils.rnn.pad_sequence, as PyTorch; it uses sequence_mask above)
