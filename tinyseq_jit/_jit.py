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

#: The per-step recurrent product uses a hand-written loop instead of BLAS when the batch
#: has at most SMALL_BATCH rows and W_hh takes at least SMALL_MIN_WEIGHT_BYTES: then
#: OpenBLAS's repacking of a W_hh that no longer fits a core's L2 dominates. Measured on a
#: 2-core VM with 1 MiB L2 per core (benchmarks/RESULTS.md); tune for other machines.
SMALL_BATCH = 8
SMALL_MIN_WEIGHT_BYTES = 800 * 1024
