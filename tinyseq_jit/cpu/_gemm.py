"""The matrix products of the kernels: the per-step recurrent product, planned for the BLAS
it runs on, and ``dot`` for the big GEMMs before and after the loop.

The per-step product's weight (W_hh^T forward, W_hh backward) is passed to the loops as
``plan_product``'s plan, not as an array; ``product_into`` runs it.
"""

import functools
import os

import numpy as np

from tinyseq._blas import THREADED_MNK

from .._jit import jit

#: The per-step recurrent product a (B, K) @ W (K, N) is a skinny GEMM, and how OpenBLAS
#: is called for it matters more than anything else in the loop (measured per step on the
#: 2-core VM, benchmarks/RESULTS.md):
#:
#: * OpenBLAS's AVX-512 kernels (SkylakeX and later) have an unpacked single-thread path for
#:   GEMMs of M*N*K <= 1e6 multiply-adds (its "small matrix" path). There a product up to
#:   SMALL_GEMM_MNK is one call, and a larger one is cut into at most MAX_CHUNKS column
#:   chunks within SMALL_GEMM_MNK each if that is enough: (4, 256) x (256, 1024) took 14 us
#:   as two 512-column calls, 24 us transposed (below).
#: * Otherwise it runs transposed, out^T = W^T a^T, which OpenBLAS splits over both cores
#:   better for a short a: (32, 256) x (256, 1024) took 102 us against 133 us as one call.
#:   Its AVX2 (Haswell) kernels have no small path, and chunking there cost 3x: the same
#:   (4, 256) x (256, 1024) took 90 us in chunks and 30 us transposed.
#: * Up to TINY_GEMM_MNK the product is one call whatever the kernels: OpenBLAS runs it on
#:   one thread either way, and the transposed layout only adds a copy: (1, 128) x (128, 512)
#:   took 2.5 us against 3.8 us transposed.
#:
#: SMALL_GEMM_MNK None picks 1_000_000 or 0 (no chunks) from the kernels the BLAS runs
#: (``blas_core``); set a number to override. Tune all three for other machines.
SMALL_GEMM_MNK = None
MAX_CHUNKS = 4
TINY_GEMM_MNK = THREADED_MNK  # OpenBLAS's own threading threshold
#: the OpenBLAS kernel sets (``blas_core``, lower case) with the small-matrix path
SMALL_GEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")


@functools.cache
def blas_core():
    """The kernel set of the OpenBLAS numba calls (SciPy's), as OpenBLAS names it
    ("Haswell", "SkylakeX", ...), or None if that cannot be told (no threadpoolctl, not
    OpenBLAS)."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library numba binds)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    found = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    # SciPy's wheels keep it in scipy.libs (Linux) or scipy/.dylibs (macOS); a conda SciPy
    # shares the environment's one OpenBLAS with NumPy.
    home = os.path.dirname(scipy.__file__)
    ours = [i for i in found if i["filepath"].startswith((home + os.sep, home + ".libs"))]
    ours = ours or (found if len(found) == 1 else [])
    return ours[0].get("architecture") if ours else None


def small_gemm_mnk():
    """``SMALL_GEMM_MNK`` if set, else the limit that suits ``blas_core()``."""
    if SMALL_GEMM_MNK is not None:
        return SMALL_GEMM_MNK
    core = blas_core()
    return 1_000_000 if core is not None and core.lower() in SMALL_GEMM_CORES else 0


def plan_product(w, rows):
    """W (K, N) laid out for ``product_into`` with a (rows, K) left factor, per the rules
    above: returns (w3, transposed) with w3 one of
    (1, K, N) (one call), (C, K, width) column chunks (the last one zero-padded) or
    (1, N, K) = W^T with ``transposed`` True."""
    inner, cols = w.shape
    work, limit = rows * inner * cols, small_gemm_mnk()
    if work <= max(limit, TINY_GEMM_MNK):
        return np.ascontiguousarray(w).reshape(1, inner, cols), False
    chunks = -(-cols // max(limit // (rows * inner), 1)) if limit > 0 else cols + 1
    if chunks > MAX_CHUNKS:
        w_t = w.T if w.T.flags.c_contiguous else _transposed(np.ascontiguousarray(w))
        return w_t.reshape(1, cols, inner), True
    width = -(-cols // chunks)  # chunks of equal width
    out = np.zeros((chunks, inner, width), dtype=w.dtype)
    for c in range(chunks):
        part = w[:, c * width : (c + 1) * width]
        out[c, :, : part.shape[1]] = part
    return out, False


@jit
def _transposed(w):
    """w.T as a new C-contiguous array, copied in 32 x 32 tiles (about 2x NumPy's speed at
    W_hh's size: 144-177 against 332-356 us for 1024 x 256 float32)."""
    rows, cols = w.shape
    out = np.empty((cols, rows), dtype=w.dtype)
    for i0 in range(0, rows, 32):
        for j0 in range(0, cols, 32):
            for j in range(j0, min(j0 + 32, cols)):
                row = out[j]
                for i in range(i0, min(i0 + 32, rows)):
                    row[i] = w[i, j]
    return out


@jit
def product_scratch(rows, plan):
    """The scratch array ``product_into`` needs for this plan."""
    w3, transposed = plan
    chunks, inner, width = w3.shape
    if transposed:
        return np.empty((1, inner, rows), dtype=w3.dtype)
    return np.empty((chunks if chunks > 1 else 0, rows, width), dtype=w3.dtype)


@jit
def product_into(a, plan, scratch, out):
    """out = a @ W for ``plan = plan_product(W, len(a))``, ``scratch`` from ``product_scratch``."""
    w3, transposed = plan
    chunks, _, width = w3.shape
    if transposed:
        np.dot(w3[0], a.T, scratch[0])
        out[:] = scratch[0].T
    elif chunks == 1:
        np.dot(a, w3[0], out)
    else:
        for c in range(chunks):
            np.dot(a, w3[c], scratch[c])
            start = c * width
            stop = min(start + width, out.shape[1])
            out[:, start:stop] = scratch[c, :, : stop - start]


@jit
def _dot(a, b):
    return np.dot(a, b)


def dot(a, b):
    """a @ b for 2-D arrays through numba's BLAS, SciPy's OpenBLAS: the library of the loops'
    products and of ``tinyseq._blas`` (one thread pool), called with the GIL released."""
    return _dot(_blas_layout(a), _blas_layout(b))


def _blas_layout(a):
    """``a`` itself when C- or F-contiguous (a transpose is passed to BLAS as such), else a copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)
