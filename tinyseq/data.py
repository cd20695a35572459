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

from ._checks import check_int


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

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.symbols == other.symbols

    __hash__ = None

    def encode(self, text):
        """``text`` as an int64 array of ids."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as e:
            raise ValueError(f"Vocab.encode: character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids):
        """The string of a 1-D sequence of ids (decode a (B, T) batch row by row)."""
        ids = np.asarray(ids)
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
        """Chunk ``i`` as (x, y), each (B, k) or (k, B) int64; y is x one token later."""
        if not 0 <= i < len(self):
            raise IndexError(f"StreamBatches.chunk: index {i} out of range for {len(self)} chunks")
        start = i * self.steps
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
        """Continue from a saved ``state_dict``'s position; the sizes must be the same."""
        ours = self.state_dict()
        for key in ("batch_size", "steps", "stream_length"):
            if state.get(key) != ours[key]:
                raise ValueError(f"StreamBatches.load_state_dict: saved with {key}={state.get(key)!r}, "
                                 f"these batches have {ours[key]}")
        position = state["position"]
        if not isinstance(position, (int, np.integer)) or isinstance(position, bool) or not 0 <= position <= len(self):
            raise ValueError(f"StreamBatches.load_state_dict: position must be in [0, {len(self)}], got {position!r}")
        passes = state.get("passes", 0)
        passes = check_int("StreamBatches.load_state_dict", "passes", passes, 0)
        self.position, self.passes = int(position), int(passes)
