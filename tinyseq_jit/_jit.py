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

#: The per-step recurrent product a (B, K) @ W (K, N) is a skinny GEMM, and how OpenBLAS
#: is called for it matters more than anything else in the loop (measured per step on the
#: 2-core VM, benchmarks/RESULTS.md):
#:
#: * OpenBLAS has an unpacked single-thread kernel for GEMMs of M*N*K <= 1e6 multiply-adds
#:   (its "small matrix" path on AVX-512 builds). A product up to SMALL_GEMM_MNK is one call;
#:   a larger one is cut into at most MAX_CHUNKS column chunks within SMALL_GEMM_MNK each if
#:   that is enough: (4, 256) x (256, 1024) took 23 us as two 512-column calls, 71 us as one.
#: * Otherwise it runs transposed, out^T = W^T a^T, which OpenBLAS splits over both cores
#:   better for a short a: (16, 2048) x (2048, 512) took 320 us against 493 us.
#:
#: SMALL_GEMM_MNK = 0 sends every product the transposed way. Tune both for other machines.
SMALL_GEMM_MNK = 1_000_000
MAX_CHUNKS = 4
