"""Padding variable-length sequences into a batch (``torch.nn.utils.rnn``'s names).

tinyseq's recurrent layers take the padded batch with ``lengths=``, or the same batch packed
(``pack_padded_sequence``, ``PackedSequence``), so PyTorch code ports unchanged.
"""

import numbers
from typing import NamedTuple, Optional

import numpy as np

from ... import ops
from ...tensor import Tensor, as_array
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


# ---------------------------------------------------------------- packed sequences


class PackedSequence(NamedTuple):
    """A batch of variable-length sequences packed time step by time step, as PyTorch's.

    Make one with ``pack_padded_sequence`` or ``pack_sequence``, not by hand. The recurrent
    layers (``nn.RNN``/``LSTM``/``GRU``, ``nn.Recurrent``, ``Bidirectional``, ``Stacked``)
    take it in place of ``input`` and mean by it what ``lengths=`` means; they return their
    output packed the same way.

    Fields:
        data: (sum of the lengths, *) Tensor: step 0 of every sequence, then step 1 of every
            sequence that has one, ..., each step's sequences longest first.
        batch_sizes: (T,) int64 array: how many sequences have step t.
        sorted_indices: (B,) int64 array, the batch order longest first (``data``'s order
            within a step), or None when the batch came sorted (``enforce_sorted=True``).
        unsorted_indices: (B,) int64 array, its inverse permutation, or None.
    """

    data: Tensor
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch of sequences, as PyTorch's ``pack_padded_sequence``.

    Args:
        input: (T, B, *), or (B, T, *) with ``batch_first=True``; a Tensor or an array.
        lengths: B ints in [1, T], each sequence's length.
        batch_first: the layout of ``input``. Default: False.
        enforce_sorted: if True (default), ``lengths`` must be non-increasing (the batch
            comes sorted longest first) and ``sorted_indices`` is None; if False any order
            is sorted here, and the layers give their results back in the original order.

    Returns:
        A ``PackedSequence``. It is differentiable: gradients reach ``input`` (zero at the
        padded steps). Sequences of equal length keep their batch order (a stable sort;
        PyTorch's order among them is unspecified, so ``data`` may list them differently).
    """
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.ndim < 2:
        raise ValueError(f"pack_padded_sequence: expected an input of ({'B, T' if batch_first else 'T, B'}, *), "
                         f"got shape {x.shape}")
    if batch_first:
        x = ops.transpose(x, 0, 1)
    lengths = valid_lengths("pack_padded_sequence", lengths, *x.shape[:2])
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ValueError(f"pack_padded_sequence: with enforce_sorted=True the lengths must be sorted longest "
                             f"first, got {lengths.tolist()}; pass enforce_sorted=False to pack any order")
        sorted_indices = unsorted_indices = None
    else:
        sorted_indices = np.argsort(-lengths, kind="stable").astype(np.int64)
        unsorted_indices = np.argsort(sorted_indices).astype(np.int64)
    batch_sizes = (np.arange(lengths.max() if lengths.size else 0)[:, None] < lengths[None, :]).sum(axis=1)
    return _pack(x, batch_sizes.astype(np.int64), sorted_indices, unsorted_indices)


def valid_lengths(name, lengths, steps, batch):
    """``lengths`` as an integer array, checked: B of them, each in [1, T] (no empty sequence,
    none longer than the input); ``name`` is the caller, for the message."""
    lengths = as_array(lengths)
    if lengths.shape == (0,):
        lengths = lengths.astype(np.int64)  # NumPy reads [] as float64
    if lengths.dtype.kind not in "iu" or lengths.shape != (batch,):
        raise ValueError(f"{name}: lengths must be {batch} integers (one per sequence), "
                         f"got shape {lengths.shape} and dtype {lengths.dtype}")
    if batch and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"{name}: lengths must lie in [1, {steps}] (the number of time steps), "
                         f"got values from {lengths.min()} to {lengths.max()}")
    return lengths


def _pack(x, batch_sizes, sorted_indices, unsorted_indices):
    """``x`` (T, B, *) packed along ``batch_sizes`` with the batch in ``sorted_indices``'s order."""
    order = np.arange(x.shape[1]) if sorted_indices is None else sorted_indices
    starts = np.cumsum(batch_sizes) - batch_sizes
    steps = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
    rows = order[np.arange(int(batch_sizes.sum())) - starts[steps]]
    return PackedSequence(ops.getitem(x, (steps, rows)), batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo ``pack_padded_sequence``, as PyTorch's ``pad_packed_sequence``.

    Args:
        sequence: a ``PackedSequence``.
        batch_first: return (B, T, *) instead of (T, B, *). Default: False.
        padding_value: the value of the padded steps. Default: 0.
        total_length: pad to this many steps (at least the longest length) instead of the
            longest length, e.g. to give back the T a padded input had. Default: None.

    Returns:
        ``(padded, lengths)``: the padded batch in the original batch order (differentiable:
        gradients reach ``sequence.data``), and the lengths, an int64 array (B,) in that
        order, ready for the layers' ``lengths=``.
    """
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"pad_packed_sequence: expected a PackedSequence, got {type(sequence).__name__}")
    data, batch_sizes = sequence.data, np.asarray(sequence.batch_sizes, dtype=np.int64)
    if not isinstance(padding_value, numbers.Number):
        raise TypeError(f"pad_packed_sequence: padding_value must be a number, got {type(padding_value).__name__}")
    steps, batch = len(batch_sizes), int(batch_sizes[0])
    if total_length is not None:
        if total_length < steps:
            raise ValueError(f"pad_packed_sequence: total_length must be at least the longest length {steps}, "
                             f"got {total_length}")
        steps = total_length
    unsorted = sequence.unsorted_indices
    if unsorted is None:
        unsorted = np.arange(batch) if sequence.sorted_indices is None else np.argsort(sequence.sorted_indices)
    # rows[t, j]: the row of data holding step t of the j-th longest sequence, or the fill row
    fill = int(data.shape[0])
    j = np.arange(batch)
    starts = np.cumsum(batch_sizes) - batch_sizes
    rows = np.full((steps, batch), fill, dtype=np.int64)
    rows[: len(batch_sizes)] = np.where(j < batch_sizes[:, None], starts[:, None] + j, fill)
    filler = Tensor(np.full((1,) + data.shape[1:], padding_value, dtype=data.dtype))
    padded = ops.getitem(ops.concatenate([data, filler], axis=0), (rows[:, unsorted],))
    lengths = (batch_sizes[:, None] > j).sum(axis=0)[unsorted].astype(np.int64)
    return (ops.transpose(padded, 0, 1) if batch_first else padded), lengths


def pack_sequence(sequences, enforce_sorted=True):
    """Pack a list of sequences (L_i, *) directly, as PyTorch's ``pack_sequence``: ``pad_sequence``
    then ``pack_padded_sequence`` (see it for ``enforce_sorted``). Differentiable."""
    padded, lengths = pad_sequence(sequences, return_lengths=True)
    return pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)


def packed_input(name, x, lengths, batch_first):
    """What a recurrent layer ``name`` runs on: ``(x, lengths, repack)``.

    A ``PackedSequence`` ``x`` becomes the padded batch (in ``batch_first``'s layout) and its
    lengths, and ``repack(output)`` packs the layer's output the same way (same
    ``batch_sizes`` and indices, as PyTorch's layers return it); any other ``x`` passes
    through with ``repack`` the identity.
    """
    if not isinstance(x, PackedSequence):
        return x, lengths, lambda out: out
    if lengths is not None:
        raise ValueError(f"{name}: got a PackedSequence and lengths= at once; the PackedSequence already "
                         "holds the lengths, so pass lengths=None")
    padded, lengths = pad_packed_sequence(x, batch_first)

    def repack(out):
        return _pack(ops.transpose(out, 0, 1) if batch_first else out, x.batch_sizes, x.sorted_indices,
                     x.unsorted_indices)

    return padded, lengths, repack
