"""The one place that holds the kernels' compile options.

``cache=True`` writes compiled code next to the sources, so only the first run compiles.
``error_model="numpy"`` lets float division follow IEEE rules instead of raising, as NumPy
does. No ``fastmath``: reassociating sums would break the contract that the fused kernels
equal the unrolled graph to rounding error.
"""

import functools
import os

import numba

from tinyseq._blas import THREADED_MNK

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def jit(fn):
    """Compile ``fn`` with the project's options."""
    return numba.njit(**OPTIONS)(fn)

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
