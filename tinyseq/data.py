"""Text as token streams, batched for truncated backpropagation through time.

A language model reads one long stream. To train on B sequences at once, ``StreamBatches``
cuts the token array into B contiguous streams, one per batch row, and walks all of them
in step: chunk i holds tokens [i k, (i + 1) k) of every stream, and its targets are the
same positions shifted by one. Row b of chunk i + 1 continues row b of chunk i, so a
recurrent state carried from one chunk to the next (detached: truncated BPTT) is the
state of the same stream.

    vocab = Vocab.from_text(text)
    batches = StreamBatches(vocab.encode(text), batch_size=32, steps=64, batch_first=True)
    for x, y in batches:          # x, y: (32, 64) int64 arrays; y is x shifted by one
        ...

Both keep their state in plain values (``state_dict``), so a checkpoint can resume a run at
the chunk it stopped.
"""

import numpy as np


class Vocab:
    """The symbols (characters) of a text and their integer ids, in sorted order.

    ``encode`` maps a string to an int64 array, ``decode`` maps ids back; a character
    outside the vocabulary is an error that names it.
    """

    def __init__(self, symbols):
        symbols = list(symbols)
        if not symbols or not all(isinstance(s, str) and len(s) == 1 for s in symbols):
            raise ValueError(f"Vocab: expected a non-empty sequence of single characters, got {symbols[:5]!r}")
        if len(set(symbols)) != len(symbols):
            raise ValueError("Vocab: the symbols repeat")
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def from_text(cls, text):
        """The vocabulary of every distinct character in ``text``, sorted."""
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.symbols)

    def __repr__(self):
        return f"Vocab({len(self)} symbols)"

    def encode(self, text):
        """``text`` as an int64 array of ids."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            raise ValueError(f"Vocab.encode: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        """The string of a sequence of ids."""
        ids = np.asarray(ids)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"Vocab.decode: ids must be integers in [0, {len(self)}), got {ids.dtype} "
                             f"from {ids.min()} to {ids.max()}")
        return "".join(self.symbols[i] for i in ids.ravel().tolist())

    def state_dict(self):
        """The symbols as one string (what a checkpoint stores)."""
        return {"symbols": "".join(self.symbols)}

    @classmethod
    def from_state_dict(cls, state):
        """The vocabulary ``state_dict`` described."""
        return cls(state["symbols"])


class StreamBatches:
    """(input, target) chunks of ``steps`` tokens from ``batch_size`` parallel streams.

    Args:
        tokens: 1-D integer array, the whole corpus.
        batch_size: B, the number of streams (the corpus is cut into B equal, contiguous
            parts; the few tokens left over at the end are not used).
        steps: k, the length of a chunk (the last chunk of a pass may be shorter).
        batch_first: chunks of shape (B, k) if True, else (k, B) as the recurrent layers'
            default layout.

    Iterating yields the chunks from ``position`` to the end of the pass and leaves
    ``position`` after the last one it yielded; ``len`` is the number of chunks in a pass.
    A new pass starts from chunk 0: the streams start again, so a carried state must be
    reset there (``position == 0``).
    """

    def __init__(self, tokens, batch_size, steps, batch_first=False):
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"StreamBatches: tokens must be a 1-D integer array, got {tokens.dtype} {tokens.shape}")
        for name, value in (("batch_size", batch_size), ("steps", steps)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"StreamBatches: {name} must be a positive int, got {value!r}")
        length = (len(tokens) - 1) // batch_size  # tokens per stream; one more is read as a target
        if length < 1:
            raise ValueError(f"StreamBatches: {len(tokens)} tokens are too few for {batch_size} streams "
                             "(each needs at least 2)")
        rows = np.arange(batch_size)[:, None] * length + np.arange(length + 1)[None, :]
        self.streams = tokens.astype(np.int64)[rows]  # (B, length + 1): inputs and, shifted, targets
        self.batch_size, self.steps, self.batch_first = batch_size, steps, batch_first
        self.position = 0

    def __len__(self):
        return -(-(self.streams.shape[1] - 1) // self.steps)

    def __repr__(self):
        return (f"StreamBatches(batch_size={self.batch_size}, steps={self.steps}, chunks={len(self)}, "
                f"position={self.position})")

    def chunk(self, i):
        """Chunk ``i`` as (x, y), each (B, k) or (k, B) int64; y is x one token later."""
        if not 0 <= i < len(self):
            raise IndexError(f"StreamBatches.chunk: index {i} out of range for {len(self)} chunks")
        start = i * self.steps
        stop = min(start + self.steps, self.streams.shape[1] - 1)
        x, y = self.streams[:, start:stop], self.streams[:, start + 1:stop + 1]
        if not self.batch_first:
            x, y = x.T, y.T
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def __iter__(self):
        while self.position < len(self):
            i = self.position
            self.position += 1
            yield self.chunk(i)
        self.position = 0

    def state_dict(self):
        """The position in the pass: the next chunk to yield."""
        return {"position": self.position}

    def load_state_dict(self, state):
        """Continue from a saved ``state_dict``'s position (the corpus and sizes must match)."""
        position = state["position"]
        if not isinstance(position, (int, np.integer)) or not 0 <= position <= len(self):
            raise ValueError(f"StreamBatches.load_state_dict: position must be in [0, {len(self)}], got {position!r}")
        self.position = int(position)
