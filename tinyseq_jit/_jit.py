"""The one place that holds the kernels' compile options.

``cache=True`` writes compiled code next to the sources, so only the first run compiles.
``error_model="numpy"`` lets float division follow IEEE rules instead of raising, as NumPy
does. No ``fastmath``: reassociating sums would break the contract that the fused kernels
equal the unrolled graph to rounding error.
"""

import numba

OPTIONS = dict(cache=True, nogil=True, error_model="numpy", fastmath=False)


def jit(fn):
    """Compile ``fn`` with the project's options."""
    return numba.njit(**OPTIONS)(fn)

#: The per-step recurrent product h (B, K) @ W (K, N) is a skinny GEMM. OpenBLAS has an
#: unpacked single-thread kernel for GEMMs with M*N*K <= 1e6 (its "small matrix" path on
#: AVX-512 builds) that runs such products 1.3-4x faster than its packed, threaded path:
#: (4, 256) x (256, 1024) took 19 us as four 256-column GEMMs against 84 us as one
#: (benchmarks/RESULTS.md). So W's columns are cut into chunks of at most SMALL_GEMM_MNK
#: multiply-adds each, when that leaves chunks of at least MIN_CHUNK_COLUMNS columns.
#: SMALL_GEMM_MNK = 0 turns the split off; tune both for other BLAS builds and machines.
SMALL_GEMM_MNK = 1_000_000
MIN_CHUNK_COLUMNS = 32
