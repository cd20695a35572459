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


def _matching(name, x, dtype, what):
    """``x`` as a Tensor of ``dtype``; ``what`` says where that dtype comes from if not."""
    try:
        return as_input("Attention", x, dtype, name)
    except TypeError:
        if not what:
            raise
        got = np.asarray(x.data if hasattr(x, "data") else x).dtype
        raise TypeError(f"Attention: {name} has dtype {got} but the query is {dtype}{what}; convert one of them") from None


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
    steps at or past a sequence's length get weight 0, and what they hold is read as zeros.
    Returns ``(context, weights)``: context (B, V) and weights (B, S), each row summing to 1.

    Many queries against the same keys (a decoder's outputs at every target step, T of them):
    query (T, B, query_size), or (B, T, query_size) with ``batch_first``; then context is
    (T, B, V) (or (B, T, V)) and weights (B, T, S), as ``torch.nn.MultiheadAttention`` lays
    out its weights. The keys are projected once for all T queries. (A 2-D query is always
    one query per sequence, (B, Q): not PyTorch's unbatched (L, E) form, which has 2-D keys,
    refused here.)
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
        many = np.ndim(query) == 3
        query, keys, values = self._inputs(query, keys, values)  # (B, T, Q), (B, S, K), (B, S, V)
        batch, steps = keys.shape[0], keys.shape[1]
        if lengths is not None:
            lengths = valid_lengths("Attention", lengths, steps, batch)
            padding = np.arange(steps)[None, :] >= lengths[:, None]  # (B, S)
            # NOTE: zeroed, not only weighted 0: 0 * inf is NaN, and a NaN key's tanh' would
            # reach the weights' gradients (padding_value may be inf or NaN)
            keys = ops.masked_fill(keys, padding[:, :, None], 0.0)
            values = None if values is None else ops.masked_fill(values, padding[:, :, None], 0.0)
        values = keys if values is None else values
        scores = self._scores(query, keys)  # (B, T, S)
        if lengths is not None:
            scores = ops.masked_fill(scores, padding[:, None, :], -np.inf)
        weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(weights, values)  # (B, T, V)
        if not many:
            return context[:, 0], weights[:, 0]
        return (context if self.batch_first else ops.transpose(context, 0, 1)), weights

    def _inputs(self, query, keys, values):
        """query (B, T, Q) (T = 1 for one query (B, Q)), keys (B, S, K) and values (B, S, V) or
        None, checked, as Tensors of the parameters' dtype (for "dot": the query's)."""
        first_parameter = next(iter(self.parameters()), None)
        dtype = first_parameter.dtype if first_parameter is not None else _floating(query)
        what = "" if first_parameter is not None else " (for kind='dot': the query's dtype)"
        query = as_input("Attention", query, dtype, "query")
        if query.ndim not in (2, 3) or query.shape[-1] != self.query_size:
            many = f"(B, T, {self.query_size})" if self.batch_first else f"(T, B, {self.query_size})"
            raise ValueError(f"Attention: expected query of shape (B, {self.query_size}), or {many} for many "
                             f"queries, got {query.shape}")
        if query.ndim == 2:
            query = ops.unsqueeze(query, 1)
        elif not self.batch_first:
            query = ops.transpose(query, 0, 1)
        batch = query.shape[0]
        order = "(B, S, {})" if self.batch_first else "(S, B, {})"
        tensors = []
        for name, x, width in (("keys", keys, self.key_size), ("values", values, None)):
            if x is None:
                tensors.append(None)
                continue
            x = _matching(name, x, dtype, what)
            steps_axis, batch_axis = (1, 0) if self.batch_first else (0, 1)
            expected = order.format(self.key_size if width else "V")
            if (x.ndim != 3 or x.shape[batch_axis] != batch or (width and x.shape[2] != width)
                    or (tensors and x.shape[steps_axis] != tensors[0].shape[1])):
                steps = f", S = {tensors[0].shape[1]} (the keys')" if tensors else ""
                raise ValueError(f"Attention: expected {name} of shape {expected} with B = {batch} (the query's)"
                                 f"{steps}, got {x.shape}")
            if x.shape[steps_axis] == 0:
                raise ValueError(f"Attention: {name} has no steps (shape {x.shape}); attention needs at least one")
            tensors.append(x if self.batch_first else ops.transpose(x, 0, 1))
        return query, tensors[0], tensors[1]

    def _scores(self, query, keys):
        """(B, T, S) scores of each step of keys (B, S, K) against each query (B, T, Q); the
        keys projected once."""
        if self.kind == "additive":
            hidden = ops.tanh(ops.unsqueeze(self.key(keys), 1) + ops.unsqueeze(self.query(query), 2))  # (B, T, S, H)
            return ops.reshape(self.score(hidden), hidden.shape[:3])
        projected = self.key(keys) if self.kind == "multiplicative" else keys  # (B, S, Q)
        return ops.matmul(query, ops.transpose(projected, 1, 2))

    def extra_repr(self):
        hidden = f", hidden_size={self.hidden_size}" if self.kind == "additive" else ""
        return (f"query_size={self.query_size}, key_size={self.key_size}, kind={self.kind!r}{hidden}, "
                f"batch_first={self.batch_first}")
