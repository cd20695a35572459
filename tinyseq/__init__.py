"""tinyseq: a small reverse-mode autodiff framework for recurrent networks.

``Tensor`` wraps a NumPy array and records the ops applied to it; ``loss.backward()``
fills ``.grad`` on every leaf that requires it. The ops are in ``tinyseq.ops`` and are
re-exported here (``tinyseq.tanh(x)``, ``tinyseq.matmul(a, b)``, ...).
"""

import os as _os

from . import _malloc, bptt, config, data, dtypes, interop, nn, ops, optim, random, viz
from .creation import arange, empty, from_numpy, full, ones, ones_like, zeros, zeros_like
from .dtypes import (
    bool, cdouble, cfloat, complex64, complex128, double, float, float16, float32, float64, half, int, int8, int16,
    int32, int64, long, short, uint8,
)
from .gradcheck import GradcheckError, gradcheck
from .ops import (
    abs, add, amax, amin, argmax, argmin, broadcast_to, cast, cat, chunk, clamp, clip, clone, concatenate, cumsum,
    div, dropout, embedding, eq, exp, expand, flatten, ge, gt, le, leaky_relu, log, log_softmax, logsumexp, lt,
    masked_fill, matmul, max, maximum, mean, min, minimum, mul, narrow, ne, neg, one_hot, permute, pow, relu,
    reshape, sigmoid, softmax, sort, split, sqrt, squeeze, stack, std, sub, sum, t, tanh, topk, transpose,
    unsqueeze, var, where,
)
from .random import default_generator, get_rng_state, manual_seed, multinomial, rand, randint, randn, set_rng_state
from .serialization import CheckpointError, load, save
from .tensor import (
    Function, Tensor, enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled, tensor,
)

__version__ = "0.1.0"

if _os.environ.get("TINYSEQ_MALLOC_TUNING", "1") != "0":
    _malloc.tune()
