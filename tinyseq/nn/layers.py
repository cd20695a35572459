"""Feed-forward layers: Linear, Embedding, Dropout (standard and variational), LayerNorm, and
the activation modules."""

import math
import numbers

import numpy as np

from .. import ops
from .. import random as _random
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter, as_input, check_dtype, check_int


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


class Linear(Module):
    """Applies an affine map ``y = x W^T + b``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: if False, the layer has no additive bias. Default: True.
        dtype: float32 (default) or float64, the dtype of the parameters; the input must match.

    Shape:
        - Input: (*, in_features), any number of leading dimensions.
        - Output: (*, out_features).

    Attributes:
        weight: (out_features, in_features), initialised U(-1/sqrt(in_features), 1/sqrt(in_features)).
        bias: (out_features,), initialised the same way, or None.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        check_int("Linear", "in_features", in_features, 0)
        check_int("Linear", "out_features", out_features, 0)
        dtype = check_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = init.uniform_(Parameter(np.empty((out_features, in_features), dtype=dtype)), -bound, bound)
        self.bias = init.uniform_(Parameter(np.empty(out_features, dtype=dtype)), -bound, bound) if bias else None

    def forward(self, x):
        x = as_input("Linear", x, self.weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with last dimension {self.in_features}, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` is the vector for index ``i``.

    Args:
        num_embeddings: number of rows (the vocabulary size).
        embedding_dim: size of each vector.
        padding_idx: if given, that row starts at zero and gets no gradient (as PyTorch).
        dtype: float32 (default) or float64.

    Shape:
        - Input: integer indices of any shape (*), each in [0, num_embeddings).
        - Output: (*, embedding_dim).

    Attributes:
        weight: (num_embeddings, embedding_dim), initialised N(0, 1).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32):
        dtype = check_dtype("Embedding", dtype)
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
    """Zeroes inputs with probability ``p`` in training and scales the rest by 1 / (1 - p);
    the identity in eval mode.

    Args:
        p: probability of zeroing an element. Default: 0.5.
        variational: if True, draw one mask per sequence and reuse it at every time step
            (Gal & Ghahramani 2016); the mask has size 1 on the time axis. Default: False.
        batch_first: for ``variational``, whether the input is (B, T, F) rather than (T, B, F).
        generator: a ``numpy.random.Generator`` for the masks (default: the library's,
            which ``tinyseq.manual_seed`` seeds).

    Shape:
        - Input: any shape; (T, B, F) or (B, T, F) with ``variational=True``.
        - Output: the input's shape.
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
        rng = _random.get_generator(self.generator, "Dropout")
        if not self.variational:
            return ops.dropout(x, self.p, generator=rng)
        if x.ndim != 3:
            raise ValueError(f"Dropout(variational=True): expected a 3-D sequence batch, got shape {x.shape}")
        shape = (x.shape[0], 1, x.shape[2]) if self.batch_first else (1,) + x.shape[1:]
        return ops.dropout(x, mask=ops.dropout_mask(shape, self.p, x.dtype, rng))

    def extra_repr(self):
        return f"p={self.p}" + (", variational=True" if self.variational else "")


class LayerNorm(Module):
    """Normalises over the last ``len(normalized_shape)`` axes (mean 0, variance 1, the
    variance without correction), then scales by ``weight`` and shifts by ``bias``.

    Args:
        normalized_shape: int or tuple, the trailing shape to normalise over.
        eps: added to the variance. Default: 1e-5.
        elementwise_affine: if True (default), learnable ``weight`` (ones) and ``bias`` (zeros).
        dtype: float32 (default) or float64; with ``elementwise_affine`` the input must match.

    Shape:
        - Input: (*, *normalized_shape).
        - Output: the input's shape.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, dtype=np.float32):
        dtype = check_dtype("LayerNorm", dtype)
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        shape = tuple(check_int("LayerNorm", "normalized_shape entry", n, 1) for n in normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(np.ones(shape, dtype=dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape, dtype=dtype)) if elementwise_affine else None

    def forward(self, x):
        x = _as_tensor(x) if self.weight is None else as_input("LayerNorm", x, self.weight.dtype)
        if x.dtype.kind != "f":
            raise TypeError(f"LayerNorm: expected a floating-point input, got dtype {x.dtype}")
        n = len(self.normalized_shape)
        if x.shape[x.ndim - n :] != self.normalized_shape:
            raise ValueError(f"LayerNorm: expected input ending in {self.normalized_shape}, got shape {x.shape}")
        axes = tuple(range(x.ndim - n, x.ndim))
        centred = x - x.mean(axis=axes, keepdims=True)
        y = centred / ops.sqrt(ops.var(x, axis=axes, keepdims=True, correction=0) + self.eps)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


# ---------------------------------------------------------------- activations


class _Activation(Module):
    fn = None

    def forward(self, x):
        return self.fn(_as_tensor(x))


class ReLU(_Activation):
    """Applies max(x, 0) elementwise. Shape: any; the output has the input's shape."""

    fn = staticmethod(ops.relu)


class Tanh(_Activation):
    """Applies tanh elementwise. Shape: any; the output has the input's shape."""

    fn = staticmethod(ops.tanh)


class Sigmoid(_Activation):
    """Applies the logistic sigmoid 1 / (1 + e^-x) elementwise. Shape: any; the output has the input's shape."""

    fn = staticmethod(ops.sigmoid)


class GELU(Module):
    """Applies the Gaussian error linear unit x Φ(x) elementwise, as ``torch.nn.GELU``.

    Args:
        approximate: "none" (default: exact, with erf) or "tanh" (the tanh approximation);
            see ``functional.gelu``.

    Shape: any; the output has the input's shape.
    """

    def __init__(self, approximate="none"):
        F._check_approximate("GELU", approximate)
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Identity(Module):
    """Returns its input unchanged; any constructor arguments are ignored (as PyTorch)."""

    def __init__(self, *args, **kwargs):
        pass

    def forward(self, x):
        return x
