"""Attention over a sequence (Bahdanau et al. 2015; Luong et al. 2015): a query scores every
step of the keys, a softmax over the valid steps turns the scores into weights, and the context
is the weighted sum of the values. A decoder reads the encoder's outputs this way instead of
squeezing the whole input into its last state."""

import numpy as np

from .. import ops
from .layers import Linear
from .module import Module, as_input, check_dtype, check_int
from .utils.rnn import valid_lengths

KINDS = ("additive", "multiplicative", "dot")


def _floating(x):
    """The dtype "dot" attention computes in: the query's if it is float32 or float64."""
    dtype = np.asarray(x.data if hasattr(x, "data") else x).dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"Attention: query must be float32 or float64, got dtype {dtype}")
    return dtype


class Attention(Module):
    """Scores ``keys`` against ``query``, softmax over the steps, the weighted sum of ``values``.

    The score of step s, by ``kind``:

    - ``"additive"`` (Bahdanau): ``v . tanh(W_q q + W_k k_s)``, with ``query`` (W_q: hidden x
      query_size), ``key`` (W_k: hidden x key_size) and ``score`` (v: 1 x hidden) as bias-free
      ``Linear`` layers; ``hidden_size`` defaults to ``key_size``.
    - ``"multiplicative"`` (Luong's "general"): ``q . (W k_s)``, ``key`` (W: query_size x key_size).
    - ``"dot"`` (Luong's "dot"): ``q . k_s``; no parameters, ``query_size == key_size``.

    Args:
        query_size: the width of the query.
        key_size: the width of each key.
        kind: one of ``KINDS``. Default "additive".
        hidden_size: the additive score's width (other kinds take none).
        batch_first: keys and values are (B, S, *) instead of (S, B, *), as the recurrent
            layers' outputs are with the same flag.
        dtype: float32 (default) or float64, of the parameters; the inputs must match ("dot"
            has none: its inputs may be either, the keys and values in the query's).

    Call ``attention(query, keys, values=None, lengths=None)``: query (B, query_size), keys
    (S, B, key_size), values (S, B, V) (default: the keys), ``lengths`` (B,) ints in [1, S]:
    steps at or past a sequence's length get weight 0. Returns ``(context, weights)``: context
    (B, V) and weights (B, S), each row summing to 1.
    """

    def __init__(self, query_size, key_size, kind="additive", hidden_size=None, batch_first=False,
                 dtype=np.float32):
        check_int("Attention", "query_size", query_size, 1)
        check_int("Attention", "key_size", key_size, 1)
        if kind not in KINDS:
            raise ValueError(f"Attention: kind must be one of {KINDS}, got {kind!r}")
        if hidden_size is not None and kind != "additive":
            raise ValueError(f"Attention: hidden_size is the additive score's width; kind={kind!r} takes none")
        if kind == "dot" and query_size != key_size:
            raise ValueError(f"Attention: kind='dot' needs query_size == key_size, got {query_size} and {key_size}")
        self.query_size, self.key_size, self.kind, self.batch_first = query_size, key_size, kind, bool(batch_first)
        dtype = check_dtype("Attention", dtype)
        if kind == "additive":
            self.hidden_size = key_size if hidden_size is None else hidden_size
            check_int("Attention", "hidden_size", self.hidden_size, 1)
            self.query = Linear(query_size, self.hidden_size, bias=False, dtype=dtype)
            self.key = Linear(key_size, self.hidden_size, bias=False, dtype=dtype)
            self.score = Linear(self.hidden_size, 1, bias=False, dtype=dtype)
        elif kind == "multiplicative":
            self.key = Linear(key_size, query_size, bias=False, dtype=dtype)

    def forward(self, query, keys, values=None, lengths=None):
        weights = next(iter(self.parameters()), None)
        dtype = weights.dtype if weights is not None else _floating(query)
        query = as_input("Attention", query, dtype, "query")
        keys = as_input("Attention", keys, dtype, "keys")
        if query.ndim != 2 or query.shape[1] != self.query_size:
            raise ValueError(f"Attention: expected query of shape (B, {self.query_size}), got {query.shape}")
        layout = "(B, S, key_size)" if self.batch_first else "(S, B, key_size)"
        if keys.ndim != 3 or keys.shape[2] != self.key_size:
            raise ValueError(f"Attention: expected keys of shape {layout} with key_size {self.key_size}, "
                             f"got {keys.shape}")
        keys = keys if self.batch_first else ops.transpose(keys, 0, 1)  # (B, S, K)
        batch, steps = keys.shape[0], keys.shape[1]
        if query.shape[0] != batch:
            raise ValueError(f"Attention: query has {query.shape[0]} rows but keys a batch of {batch}")
        if values is None:
            values = keys
        else:
            values = as_input("Attention", values, dtype, "values")
            values = values if self.batch_first or values.ndim != 3 else ops.transpose(values, 0, 1)
            if values.ndim != 3 or values.shape[:2] != (batch, steps):
                raise ValueError(f"Attention: values must have the keys' batch and steps ({batch}, {steps}) and "
                                 f"one more axis, got shape {values.shape} (batch_first={self.batch_first})")
        scores = self._scores(query, keys)  # (B, S)
        if lengths is not None:
            lengths = valid_lengths("Attention", lengths, steps, batch)
            scores = ops.masked_fill(scores, np.arange(steps)[None, :] >= lengths[:, None], -np.inf)
        weights = ops.softmax(scores, axis=-1)
        context = ops.sum(ops.unsqueeze(weights, -1) * values, axis=1)
        return context, weights

    def _scores(self, query, keys):
        """(B, S) scores of each step of keys (B, S, K) against query (B, Q)."""
        if self.kind == "additive":
            hidden = ops.tanh(self.key(keys) + ops.unsqueeze(self.query(query), 1))  # (B, S, H)
            return ops.reshape(self.score(hidden), keys.shape[:2])
        projected = self.key(keys) if self.kind == "multiplicative" else keys  # (B, S, Q)
        return ops.sum(projected * ops.unsqueeze(query, 1), axis=-1)

    def extra_repr(self):
        hidden = f", hidden_size={self.hidden_size}" if self.kind == "additive" else ""
        return (f"query_size={self.query_size}, key_size={self.key_size}, kind={self.kind!r}{hidden}, "
                f"batch_first={self.batch_first}")
