"""One BLAS for every matrix product tinyseq makes.

NumPy and SciPy wheels each bundle their own OpenBLAS, and each keeps its own pool of worker
threads that spin for a while after every product. The fused kernels use one BLAS provider
(``tinyseq_jit.cpu._gemm.provider()``: SciPy's OpenBLAS, the one numba's ``np.dot`` calls, or
oneMKL where it is installed and measured faster), so if the graph ops used NumPy's, a training
step would keep two pools spinning on the same cores: on the 2-core machine of
benchmarks/RESULTS.md that made a whole LSTM training step 1.8x slower. So the graph's 2-D
products (``ops.matmul``, hence ``nn.Linear``) go through ``matmul`` below, which calls the
kernels' provider (MKL through numba, with the GIL released), or SciPy's OpenBLAS, or NumPy's
when SciPy is not installed: one library, one pool.

Products below ``THREADED_MNK`` multiply-adds stay with ``np.dot``: OpenBLAS runs them on the
calling thread, so they wake no pool, and NumPy calls them faster (0.5 us against 2 us for
SciPy's wrapper; the graph backend makes three such products per step and layer).

NOTE: SciPy's Python wrappers hold the GIL during the product (np.dot and numba's calls
release it), so another Python thread waits while a large ``Linear`` runs on OpenBLAS.
"""

import functools

import numpy as np

#: OpenBLAS runs a GEMM of fewer multiply-adds (M*N*K) than this on one thread
#: (65536 x GEMM_MULTITHREAD_THRESHOLD, 4 by default).
THREADED_MNK = 262_144
#: products with at most this many rows are computed untransposed (see ``matmul``)
SKINNY_ROWS = 64

_gemm = None  # {dtype: matmul(a, b) for that dtype}, filled on first use


def _load_gemm():
    """The products above ``THREADED_MNK``: without SciPy, ``np.dot`` (no kernels either: they
    need SciPy's BLAS); else the kernels' BLAS provider's (``tinyseq_jit.cpu._gemm``, imported
    here so the graph and the kernels share one library) if it is not OpenBLAS; else SciPy's."""
    global _gemm
    try:
        from scipy.linalg import blas
    except ImportError:
        _gemm = {}
        return _gemm
    try:
        from tinyseq_jit.cpu import _gemm as kernels
    except ImportError:  # numba missing or broken: the graph runs on its own
        kernels = None
    if kernels is not None and kernels.provider().gemm:
        _gemm = {np.dtype(np.float32): kernels.dot, np.dtype(np.float64): kernels.dot}
    else:
        _gemm = {np.dtype(np.float32): functools.partial(_scipy_matmul, blas.sgemm),
                 np.dtype(np.float64): functools.partial(_scipy_matmul, blas.dgemm)}
    return _gemm


def _column_major(m):
    """(array, transpose flag) giving m^T to a column-major BLAS without copying m if it is
    C- or F-contiguous: a C-contiguous m^T is m.T as stored; an F-contiguous m is passed as is,
    transposed."""
    if m.flags.c_contiguous:
        return m.T, False
    if m.flags.f_contiguous:
        return m, True
    return np.ascontiguousarray(m).T, False


def matmul(a, b):
    """a @ b for 2-D arrays, through the kernels' BLAS provider or SciPy's OpenBLAS (see the
    module note).

    Float32 and float64 operands of one dtype go to the BLAS; anything else, or a product under
    ``THREADED_MNK``, to ``np.dot``. The result is C-contiguous, as ``np.dot`` returns it.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: expected (M, K) and (K, N) arrays, got shapes {a.shape} and {b.shape}")
    if not (a.size and b.size):  # NOTE: k = 0 is all zeros; never leave it to a BLAS's beta = 0 handling
        return np.zeros((a.shape[0], b.shape[1]), np.result_type(a, b))
    gemm = (_gemm if _gemm is not None else _load_gemm()).get(a.dtype)
    if gemm is None or b.dtype != a.dtype or a.shape[0] * a.shape[1] * b.shape[1] < THREADED_MNK:
        return np.dot(a, b)
    return gemm(a, b)


def _scipy_matmul(gemm, a, b):
    """a @ b through SciPy's ``gemm`` (``sgemm`` or ``dgemm``), C-contiguous."""
    if a.shape[0] <= SKINNY_ROWS:
        # NOTE: OpenBLAS splits a product over its threads along its column-major M: with few
        # rows, c itself (M small) in Fortran order and a copy into C order beat c^T by a
        # quarter ((32, 256) x (256, 1024): 106 against 131 us).
        at, trans_a = _column_major(a.T)
        bt, trans_b = _column_major(b.T)
        return np.ascontiguousarray(gemm(1.0, at, bt, trans_a=trans_a, trans_b=trans_b))
    # A column-major BLAS writes c^T = b^T a^T into Fortran order, which is c in C order.
    bt, trans_b = _column_major(b)
    at, trans_a = _column_major(a)
    return gemm(1.0, bt, at, trans_a=trans_b, trans_b=trans_a).T
