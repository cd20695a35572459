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
