"""Datasets and batches: PyTorch's ``Dataset``/``DataLoader``, and token streams for truncated BPTT.

Samples of a map-style dataset (``Dataset``, ``TensorDataset``, ``Subset``; anything with
``__getitem__`` and ``__len__``) are batched by a ``DataLoader``, which shuffles with tinyseq's
default generator (so ``ts.manual_seed`` fixes the order) and stacks the samples with
``default_collate``. Sequences of different lengths batch with ``pad_collate``, which returns the
``lengths=`` the recurrent layers take:

    loader = DataLoader(dataset, batch_size=32, shuffle=True, collate_fn=pad_collate)
    for x, lengths, y in loader:  # x: (T, 32, F) padded, lengths: (32,) int64, y: (32,)
        out, h_n = gru(x, lengths=lengths)

A language model reads one long stream instead. To train on B sequences at once,
``StreamBatches`` cuts the token array into B contiguous streams, one per batch row, and walks
all of them in step: chunk i holds tokens [i k, (i + 1) k) of every stream, and its targets are
the same positions shifted by one. Row b of chunk i + 1 continues row b of chunk i, so a
recurrent state carried from one chunk to the next (detached: truncated BPTT) is the
state of the same stream.

    vocab = Vocab.from_text(text)
    batches = StreamBatches(vocab.encode(text), batch_size=32, steps=64, batch_first=True)
    for x, y in batches:          # x, y: (32, 64) int64 arrays; y is x shifted by one
        ...

Both keep their state in plain values (``state_dict``), so a checkpoint can resume a run at
the chunk it stopped.
"""

import collections.abc
import math
import numbers

import numpy as np

from . import config, ops
from ._checks import check_int, is_int
from .nn.utils.rnn import pad_sequence
from .random import get_generator
from .tensor import Tensor


def _check_str(owner, value, what="the text"):
    if not isinstance(value, str):
        raise TypeError(f"{owner}: {what} must be a str, got {type(value).__name__}")
    return value


def _check_state(owner, source, state, keys):
    """``state`` must be a mapping holding ``keys`` (what ``source``, a state_dict method, gives)."""
    if not isinstance(state, collections.abc.Mapping):
        raise TypeError(f"{owner}: expected a dict from {source}, got {type(state).__name__}")
    for key in keys:
        if key not in state:
            raise ValueError(f"{owner}: the state has no {key!r} ({source} gives {', '.join(map(repr, keys))})")


class Vocab:
    """The symbols (characters) of a text and their integer ids, in sorted order.

    ``encode`` maps a string to an int64 array, ``decode`` maps ids back; a character
    outside the vocabulary is an error that names it.
    """

    def __init__(self, symbols):
        if not isinstance(symbols, collections.abc.Iterable):
            raise TypeError(f"Vocab: expected a str or a sequence of single characters, got {type(symbols).__name__}")
        symbols = list(symbols)
        if not symbols or not all(isinstance(s, str) and len(s) == 1 for s in symbols):
            raise ValueError(f"Vocab: expected a non-empty sequence of single characters, got {symbols[:5]!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("Vocab: the symbols repeat")
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def from_text(cls, text):
        """The vocabulary of every distinct character in ``text`` (a str), sorted."""
        return cls(sorted(set(_check_str("Vocab.from_text", text))))

    def __len__(self):
        return len(self.symbols)

    def __repr__(self):
        return f"Vocab({len(self)} symbols)"

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.symbols == other.symbols

    __hash__ = None

    def encode(self, text):
        """``text`` (a str) as an int64 array of ids."""
        _check_str("Vocab.encode", text)
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            raise ValueError(f"Vocab.encode: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        """The string of a 1-D sequence of integer ids (decode a (B, T) batch row by row)."""
        try:
            array = np.asarray(ids)
        except ValueError:  # a ragged nested list
            array = None
        if array is None or array.dtype == object:
            raise TypeError(f"Vocab.decode: expected a 1-D sequence of integer ids, got {type(ids).__name__} "
                            f"{ids!r:.60}")
        ids = array
        if ids.ndim > 1:
            raise ValueError(f"Vocab.decode: expected a 1-D sequence of ids, got shape {ids.shape}")
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"Vocab.decode: ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"Vocab.decode: ids must lie in [0, {len(self)}), got values from {ids.min()} "
                             f"to {ids.max()}")
        return "".join(self.symbols[i] for i in ids.ravel().tolist())

    def state_dict(self):
        """The symbols as one string (what a checkpoint stores)."""
        return {"symbols": "".join(self.symbols)}

    @classmethod
    def from_state_dict(cls, state):
        """The vocabulary ``state_dict`` described (a dict with the str ``"symbols"``)."""
        _check_state("Vocab.from_state_dict", "Vocab.state_dict()", state, ("symbols",))
        return cls(_check_str("Vocab.from_state_dict", state["symbols"], "'symbols'"))


class StreamBatches:
    """(input, target) chunks of ``steps`` tokens from ``batch_size`` parallel streams.

    Args:
        tokens: 1-D integer array, the whole corpus.
        batch_size: B, the number of streams (the corpus is cut into B equal, contiguous
            parts; the few tokens left over at the end are not used).
        steps: k, the length of a chunk (the last chunk of a pass may be shorter).
        batch_first: chunks of shape (B, k) if True, else (k, B) as the recurrent layers'
            default layout.

    Iterating yields the chunks from ``position`` to the end of the pass; while the chunk
    ``i`` is being used, ``position`` is ``i + 1`` (what a checkpoint taken then must resume
    from). Finishing a pass sets it back to 0 and adds one to ``passes``. ``len`` is the
    number of chunks in a pass.
    There is one position: two iterators at once share it. A new pass starts the streams
    again, so a carried state must be reset at its start.
    """

    def __init__(self, tokens, batch_size, steps, batch_first=False):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"StreamBatches: tokens must be a 1-D integer array, got {tokens.dtype} {tokens.shape}")
        batch_size, steps = check_int("StreamBatches", "batch_size", batch_size, 1), \
            check_int("StreamBatches", "steps", steps, 1)
        if tokens.size and tokens.min() < 0:
            raise ValueError(f"StreamBatches: tokens must be >= 0, got {tokens.min()}")
        length = (len(tokens) - 1) // batch_size  # tokens per stream; one more is read as a target
        if length < 1:
            raise ValueError(f"StreamBatches: {len(tokens)} tokens are too few for {batch_size} streams "
                             f"(at least {batch_size + 1})")
        tokens = tokens.astype(np.int64, copy=False)
        used = batch_size * length
        self.inputs = tokens[:used].reshape(batch_size, length)  # views: stream b is row b
        self.targets = tokens[1:used + 1].reshape(batch_size, length)
        self.batch_size, self.steps, self.batch_first = int(batch_size), int(steps), batch_first
        self.position = self.passes = 0

    def __len__(self):
        return -(-self.inputs.shape[1] // self.steps)

    def __repr__(self):
        return (f"StreamBatches(batch_size={self.batch_size}, steps={self.steps}, chunks={len(self)}, "
                f"position={self.position}, passes={self.passes})")

    def chunk(self, i):
        """Chunk ``i`` as (x, y), each (B, k) or (k, B) int64; y is x one token later.

        ``i`` is an int (a NumPy integer too, not a bool); a negative one counts from the end,
        as a list's index does, and one out of range raises ``IndexError``.
        """
        if not is_int(i):
            raise TypeError(f"StreamBatches.chunk: the index must be an int, got {type(i).__name__} {i!r}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"StreamBatches.chunk: index {i} out of range for {len(self)} chunks")
        start = int(i) % len(self) * self.steps
        x, y = self.inputs[:, start:start + self.steps], self.targets[:, start:start + self.steps]
        if not self.batch_first:
            x, y = x.T, y.T
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def __iter__(self):
        while self.position < len(self):
            i = self.position
            self.position += 1
            yield self.chunk(i)
        self.position = 0
        self.passes += 1

    def state_dict(self):
        """The position in the pass (the next chunk to yield), the passes finished and the
        sizes they belong to."""
        return {"position": self.position, "passes": self.passes, "batch_size": self.batch_size, "steps": self.steps,
                "stream_length": self.inputs.shape[1]}

    def load_state_dict(self, state):
        """Continue from a saved ``state_dict``'s position; the sizes must be the same.

        ``state`` is a dict with every key of ``state_dict()`` (``passes`` may be missing, as in
        states saved before passes were counted: 0); anything else raises a ValueError, or a
        TypeError if ``state`` is not a dict, and leaves these batches as they were.
        """
        owner, ours = "StreamBatches.load_state_dict", self.state_dict()
        sizes = ("batch_size", "steps", "stream_length")
        _check_state(owner, "StreamBatches.state_dict()", state, ("position",) + sizes)
        for key in sizes:
            value = state[key]
            if not is_int(value) or value != ours[key]:
                raise ValueError(f"{owner}: saved with {key}={value!r}, these batches have {ours[key]}")
        position = check_int(owner, "position", state["position"], 0)
        if position > len(self):
            raise ValueError(f"{owner}: position must be in [0, {len(self)}], got {position!r}")
        self.position, self.passes = position, check_int(owner, "passes", state.get("passes", 0), 0)


# ---------------------------------------------------------------- datasets


class Dataset:
    """A map-style dataset, as ``torch.utils.data.Dataset``: subclasses define ``__getitem__(i)``
    (one sample) and ``__len__``. Any object with both works with ``DataLoader`` as well."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Samples ``(t[i] for t in tensors)``: rows of tensors or arrays with one first dimension.

    Indexing a tensor gives a tensor, an array an array (``default_collate`` makes tensors of
    either).
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor or array")
        for i, t in enumerate(tensors):
            if not isinstance(t, (Tensor, np.ndarray)) or t.ndim == 0:
                got = f"a {t.ndim}-d {type(t).__name__}" if isinstance(t, (Tensor, np.ndarray)) else type(t).__name__
                raise TypeError(f"TensorDataset: argument {i} must be a Tensor or array with a first dimension, "
                                f"got {got}")
            if t.shape[0] != tensors[0].shape[0]:
                raise ValueError(f"TensorDataset: all tensors need the same first dimension; tensor 0 has "
                                 f"{tensors[0].shape[0]} rows, tensor {i} has {t.shape[0]}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


def _check_dataset(owner, dataset):
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise TypeError(f"{owner}: expected a map-style dataset (with __getitem__ and __len__), "
                        f"got {type(dataset).__name__}")
    return len(dataset)


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given lengths.

    ``lengths`` are ints summing to ``len(dataset)``, or fractions summing to 1: then each
    split gets ``floor(fraction * len(dataset))`` samples and the ones left over go one each
    to the first splits, in order (PyTorch's rule). The permutation comes from ``generator``
    (a ``numpy.random.Generator``), else tinyseq's default generator.
    """
    n = _check_dataset("random_split", dataset)
    lengths = list(lengths)
    if not lengths or not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in lengths):
        raise ValueError(f"random_split: lengths must be a non-empty list of ints or fractions, got {lengths!r}")
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(f"random_split: fraction {i} is {fraction!r}, not between 0 and 1")
        lengths = [math.floor(n * fraction) for fraction in lengths]
        for i in range(n - sum(lengths)):
            lengths[i % len(lengths)] += 1
    for i, length in enumerate(lengths):
        check_int("random_split", f"lengths[{i}]", length, 0)
    if sum(lengths) != n:
        raise ValueError(f"random_split: the lengths sum to {sum(lengths)}, the dataset has {n} samples")
    order = get_generator(generator, "random_split").permutation(n).tolist()
    ends = np.cumsum(lengths).tolist()
    return [Subset(dataset, order[end - length:end]) for length, end in zip(lengths, ends)]


# ---------------------------------------------------------------- batching


def _check_batch(owner, batch):
    if not isinstance(batch, (list, tuple)) or not batch:
        raise ValueError(f"{owner}: expected a non-empty list of samples, got {batch!r:.80}")


def default_collate(batch):
    """Stack a list of samples into a batch, as ``torch.utils.data.default_collate``.

    Tensors are stacked (``ops.stack``: differentiable), NumPy arrays and NumPy scalars become
    a Tensor of their dtype, Python floats a float64 Tensor, ints an int64 one, bools a bool
    one (a batch starting with an int or bool that also holds floats: float32, as PyTorch;
    ints and bools: int64); strings stay a list. Dicts collate key by key, named tuples field by field into the
    same type, other tuples and lists position by position into a list (each sample must have
    the same length).
    """
    _check_batch("default_collate", batch)
    first = batch[0]
    if isinstance(first, Tensor):
        return ops.stack(batch)
    if isinstance(first, (np.ndarray, np.generic)) and first.dtype.kind in "biufc":
        return Tensor(np.stack([np.asarray(x) for x in batch]))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, numbers.Number):
        if not isinstance(first, numbers.Integral):
            return Tensor(np.array(batch, dtype=np.float64))
        # NOTE: after an int or bool, the whole batch decides (torch.tensor's inference): [1, 2.5] is a
        # float32 batch, [True, 2] an int one; the first sample's type would cut 2.5 to 2 and 2 to True.
        values = np.array(batch)
        kind = values.dtype.kind
        return Tensor(values.astype(bool if kind == "b" else np.int64 if kind in "iu" else config.DEFAULT_DTYPE))
    if isinstance(first, collections.abc.Mapping):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, collections.abc.Sequence):
        if any(len(sample) != len(first) for sample in batch):
            raise ValueError("default_collate: the samples are sequences of different lengths; "
                             "pad them (pad_collate) or give a collate_fn")
        fields = [default_collate(list(samples)) for samples in zip(*batch)]
        return type(first)(*fields) if hasattr(first, "_fields") else fields
    raise TypeError(f"default_collate: samples must be Tensors, arrays, numbers, strings, dicts or sequences "
                    f"of them, got {type(first).__name__}")


def pad_collate(batch, batch_first=False, padding_value=0.0):
    """Batch sequences of different lengths for the recurrent layers' ``lengths=``.

    ``batch`` is a list of sequences (Tensors or arrays of shape (L_i, *)), or of tuples whose
    first item is such a sequence (``(sequence, target, ...)``). Returns ``(padded, lengths)``
    or ``(padded, lengths, *rest)``: ``padded`` (T, B, *) or, with ``batch_first``, (B, T, *)
    (``nn.utils.rnn.pad_sequence``), ``lengths`` an int64 array (B,), and the other items of the
    tuples collated with ``default_collate`` (so targets need one shape). To pass options to a
    ``DataLoader``: ``collate_fn=functools.partial(pad_collate, batch_first=True)``.
    """
    _check_batch("pad_collate", batch)
    if isinstance(batch[0], (Tensor, np.ndarray)):
        return pad_sequence(batch, batch_first, padding_value, return_lengths=True)
    if any(not isinstance(sample, (tuple, list)) or len(sample) != len(batch[0]) for sample in batch):
        raise ValueError("pad_collate: expected every sample to be a sequence, or a tuple (sequence, ...) "
                         "of one length")
    sequences, *rest = zip(*batch)
    padded, lengths = pad_sequence(sequences, batch_first, padding_value, return_lengths=True)
    return (padded, lengths, *(default_collate(list(items)) for items in rest))


class DataLoader:
    """Batches of a dataset's samples, as ``torch.utils.data.DataLoader`` (in this process).

    Args:
        dataset: a map-style dataset (``__getitem__`` and ``__len__``).
        batch_size: samples per batch. Default: 1.
        shuffle: visit the samples in a new random order each epoch (each ``iter``), drawn from
            ``generator``, else from tinyseq's default generator at the time the epoch starts
            (``ts.manual_seed`` makes the order reproducible). Default: False.
        sampler: an iterable of indices (with ``len``) giving the order instead; not with
            ``shuffle``.
        drop_last: drop the last batch if it is smaller than ``batch_size``. Default: False.
        collate_fn: makes a batch from a list of samples. Default: ``default_collate``.
        generator: a ``numpy.random.Generator`` for the shuffling.

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, drop_last=False, collate_fn=None,
                 generator=None):
        _check_dataset("DataLoader", dataset)
        self.batch_size = check_int("DataLoader", "batch_size", batch_size, 1)
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle are mutually exclusive (the sampler gives the order)")
        if sampler is not None and not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
            raise TypeError(f"DataLoader: sampler must be an iterable of indices with a len, "
                            f"got {type(sampler).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}")
        get_generator(generator, "DataLoader")
        self.dataset, self.shuffle, self.sampler, self.drop_last = dataset, bool(shuffle), sampler, bool(drop_last)
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.generator = generator

    def _indices(self):
        if self.sampler is not None:
            return list(self.sampler)
        n = len(self.dataset)
        return get_generator(self.generator, "DataLoader").permutation(n).tolist() if self.shuffle else range(n)

    def __iter__(self):
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            chunk = indices[start:start + self.batch_size]
            if len(chunk) < self.batch_size and self.drop_last:
                return
            yield self.collate_fn([self.dataset[i] for i in chunk])

    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
