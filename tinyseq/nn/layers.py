"""Feed-forward layers: Linear, Embedding, Dropout (standard and variational), LayerNorm, Sequential."""

import math
import numbers

import numpy as np

from .. import ops
from ..tensor import Tensor
from . import init
from .module import Module, Parameter, check_int


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


class Linear(Module):
    """y = x W^T + b with ``weight`` (out_features, in_features) and ``bias`` (out_features,).

    Initialised as PyTorch: U(-1/sqrt(in_features), 1/sqrt(in_features)) for both.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        check_int("Linear", "in_features", in_features, 0)
        check_int("Linear", "out_features", out_features, 0)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = init.uniform_(Parameter(np.empty((out_features, in_features), dtype=dtype)), -bound, bound)
        self.bias = init.uniform_(Parameter(np.empty(out_features, dtype=dtype)), -bound, bound) if bias else None

    def forward(self, x):
        x = _as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with last dimension {self.in_features}, got shape {x.shape}")
        y = ops.matmul(x, self.weight.T)
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` rows of size ``embedding_dim``, initialised N(0, 1).

    ``padding_idx`` (optional): that row starts at zero and gets no gradient, as in PyTorch.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32):
        check_int("Embedding", "num_embeddings", num_embeddings, 1)
        check_int("Embedding", "embedding_dim", embedding_dim, 0)
        if padding_idx is not None:
            check_int("Embedding", "padding_idx", padding_idx, -num_embeddings)
            if padding_idx >= num_embeddings:
                raise ValueError(f"Embedding: padding_idx must lie in [-{num_embeddings}, {num_embeddings}), "
                                 f"got {padding_idx}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.weight = init.normal_(Parameter(np.empty((num_embeddings, embedding_dim), dtype=dtype)))
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, indices):
        return ops.embedding(indices, self.weight, padding_idx=self.padding_idx)

    def extra_repr(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Zero inputs with probability ``p`` in training, scaling the rest by 1 / (1 - p).

    ``variational=True`` draws one mask per sequence and reuses it at every time step
    (Gal & Ghahramani 2016): the input is (T, B, F), or (B, T, F) with
    ``batch_first=True``, and the mask has size 1 on the time axis. ``generator`` is a
    ``numpy.random.Generator`` (default: the one ``tinyseq.nn.init.manual_seed`` seeds).
    """

    def __init__(self, p=0.5, variational=False, batch_first=False, generator=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.variational, self.batch_first = p, variational, batch_first
        self.generator = generator

    def forward(self, x):
        x = _as_tensor(x)
        if not self.training or self.p == 0:
            return x
        rng = self.generator if self.generator is not None else init.default_generator()
        if not self.variational:
            return ops.dropout(x, self.p, generator=rng)
        if x.ndim != 3:
            raise ValueError(f"Dropout(variational=True): expected a 3-D sequence batch, got shape {x.shape}")
        shape = (x.shape[0], 1, x.shape[2]) if self.batch_first else (1,) + x.shape[1:]
        keep = rng.random(shape) >= self.p
        scale = 0.0 if self.p == 1 else 1 / (1 - self.p)
        return ops.dropout(x, mask=(keep * scale).astype(x.dtype))

    def extra_repr(self):
        return f"p={self.p}" + (", variational=True" if self.variational else "")


class LayerNorm(Module):
    """Normalise over the last ``len(normalized_shape)`` axes, then scale and shift."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=np.float32):
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        shape = tuple(check_int("LayerNorm", "normalized_shape entry", n, 1) for n in normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(np.ones(shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype=dtype)) if elementwise_affine else None

    def forward(self, x):
        x = _as_tensor(x)
        n = len(self.normalized_shape)
        if x.shape[x.ndim - n :] != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input ending in {self.normalized_shape}, got shape {x.shape}")
        axes = tuple(range(x.ndim - n, x.ndim))
        centred = x - x.mean(axis=axes, keepdims=True)
        y = centred / ops.sqrt(ops.var(x, axis=axes, keepdims=True, correction=0) + self.eps)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class Sequential(Module):
    """Modules applied one after another; their parameters are named ``0.weight``, ``1.bias``, ..."""

    def __init__(self, *modules):
        for m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: expected Modules, got {type(m).__name__}")
        self.layers = list(modules)

    def _members(self, kind):
        return ((str(i), m) for i, m in enumerate(self.layers) if isinstance(m, kind))

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        for m in self.layers:
            x = m(x)
        return x
