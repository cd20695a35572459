"""Padding variable-length sequences into a batch (``torch.nn.utils.rnn``'s names).

tinyseq's recurrent layers take the padded batch with ``lengths=``; there is no packing step.
"""

import numbers

import numpy as np

from ... import ops
from ...tensor import Tensor
from . import sequence_mask  # noqa: F401  (re-exported: the (T, B) mask of valid steps)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right", *, return_lengths=False):
    """Stack sequences of different lengths into one padded batch, as PyTorch's ``pad_sequence``.

    Args:
        sequences: B tensors or arrays of shape (L_i, *), with one trailing shape and dtype.
        batch_first: output (B, T, *) instead of (T, B, *). Default: False.
        padding_value: the value of the padded positions. Default: 0.
        padding_side: "right" (default; what ``lengths=`` expects) or "left".
        return_lengths: also return the lengths, an int64 array (B,) for the layers'
            ``lengths=``. Default: False (PyTorch's return).

    Returns:
        The padded batch, (T, B, *) or (B, T, *) with T = max L_i; with ``return_lengths``,
        ``(padded, lengths)``. It is differentiable: gradients reach the sequences.
    """
    seqs = [s if isinstance(s, Tensor) else Tensor(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequence: expected a non-empty list of sequences")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got {padding_side!r}")
    if return_lengths and padding_side != "right":
        raise ValueError("pad_sequence: return_lengths needs padding_side='right' (the layers' lengths= "
                         "counts the steps at the start)")
    if not isinstance(padding_value, numbers.Number):
        raise TypeError(f"pad_sequence: padding_value must be a number, got {type(padding_value).__name__}")
    first = seqs[0]
    for i, s in enumerate(seqs):
        if s.ndim == 0 or s.shape[1:] != first.shape[1:] or s.dtype != first.dtype:
            raise ValueError(f"pad_sequence: sequence 0 has shape {first.shape} and dtype {first.dtype}, "
                             f"sequence {i} has shape {s.shape} and dtype {s.dtype}; all need shape (L, "
                             f"{', '.join(map(str, first.shape[1:]))}) and one dtype")
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    steps = int(lengths.max())
    padded = []
    for s in seqs:
        if s.shape[0] < steps:
            fill = Tensor(np.full((steps - s.shape[0],) + s.shape[1:], padding_value, dtype=s.dtype))
            s = ops.cat([s, fill] if padding_side == "right" else [fill, s], axis=0)
        padded.append(s)
    batch = ops.stack(padded, axis=0 if batch_first else 1)
    return (batch, lengths) if return_lengths else batch
