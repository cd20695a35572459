"""PyTorch's dtype names, as the NumPy scalar types they stand for.

``tinyseq.float32`` *is* ``np.float32`` (and ``tinyseq.long`` is ``np.int64``, ...), so a name
is accepted wherever a dtype is: ``Tensor(x, dtype=ts.float64)``, ``ts.zeros(2, dtype=ts.long)``,
``t.to(ts.double)``, ``model.to(ts.float64)``. ``ts.float16``/``ts.half`` exist for ops and
casts; modules refuse them (their parameters are float32 or float64).

``Tensor.type()`` names a tensor's dtype PyTorch's legacy way with a ``tinyseq.`` prefix
(``'tinyseq.FloatTensor'`` where PyTorch says ``'torch.FloatTensor'``); ``type_name`` and
``from_type_name`` convert.
"""

import numpy as np

float16 = half = np.float16
float32 = float = np.float32
float64 = double = np.float64
complex64 = cfloat = np.complex64
complex128 = cdouble = np.complex128
int8 = np.int8
int16 = short = np.int16
int32 = int = np.int32
int64 = long = np.int64
uint8 = np.uint8
bool = np.bool_

# dtype -> PyTorch's legacy tensor type name, without its module prefix
_TYPE_NAMES = {np.dtype(dt): name for dt, name in (
    (float16, "HalfTensor"), (float32, "FloatTensor"), (float64, "DoubleTensor"),
    (complex64, "ComplexFloatTensor"), (complex128, "ComplexDoubleTensor"),
    (int8, "CharTensor"), (int16, "ShortTensor"), (int32, "IntTensor"), (int64, "LongTensor"),
    (uint8, "ByteTensor"), (np.uint16, "UInt16Tensor"), (np.uint32, "UInt32Tensor"),
    (np.uint64, "UInt64Tensor"), (bool, "BoolTensor"),
)}
_DTYPES = {name: dt for dt, name in _TYPE_NAMES.items()}


def type_name(dtype):
    """``'tinyseq.FloatTensor'`` for float32, ``'tinyseq.LongTensor'`` for int64, ... (PyTorch's
    names with a ``tinyseq.`` prefix); a dtype PyTorch lacks (float128) gives ``'tinyseq.float128'``."""
    dtype = np.dtype(dtype)
    return "tinyseq." + _TYPE_NAMES.get(dtype, dtype.name)


def from_type_name(name, owner):
    """The dtype a type name stands for: ``'tinyseq.LongTensor'`` (or PyTorch's
    ``'torch.LongTensor'``) -> int64; an unknown name is a ValueError naming ``owner``."""
    module, _, short_name = name.rpartition(".")
    if module not in ("tinyseq", "torch") or short_name not in _DTYPES:
        raise ValueError(f"{owner}: expected a dtype or a type name such as 'tinyseq.FloatTensor', got {name!r}")
    return _DTYPES[short_name]
