"""What the generated CUDA modules import besides ``gemm`` and ``launch``: which path runs a
pass and its launch shapes, and the column sums they take a bias's or a peephole's gradient
with (``tinyseq_jit/compiler/gpu.py`` writes the imports).

Every kernel is made per float dtype by a factory, so that its constants are of that dtype
(a float32 kernel holds no float64 literal).
"""

import numba
from numba import cuda

from ._gemm import FLOATS
from ._runtime import launch, simulated

#: threads per block of the point-wise kernels: units (x) by sequences (y)
BLOCK = (16, 4)
#: threads per block of the one-thread-per-row or -column kernels
LINE = 32

# ---------------------------------------------------------------- which path runs a pass
#
# The per-block path keeps the whole time loop inside one kernel: a block owns ROWS
# sequences and all H units (a thread per (sequence, unit)), keeps their state in shared
# memory and reads W_hh from global memory (L2-cached), with ``syncthreads`` between the
# steps; blocks never wait for each other, so the simulator runs its blocks as a GPU would
# (though it models neither memory ordering nor uninitialised memory).
# Its shared arrays are sized at compile time, so it takes H <= MAX_HIDDEN; a larger H
# runs the per-step path (a GEMM and a point-wise kernel per step). NOTE: the simulator
# runs each thread of a block as a Python thread, so there MAX_HIDDEN is 8 (the same code).

#: sequences per block on the per-block path
ROWS = 4
#: the largest H the per-block path's shared arrays hold
MAX_HIDDEN = 8 if simulated() else 64
#: the largest H that takes the per-block path (a tunable: 0 sends every shape per step)
BLOCK_PATH_MAX_HIDDEN = MAX_HIDDEN


def per_block(hidden):
    """True when a pass with H = ``hidden`` keeps its time loop in one kernel."""
    return 1 <= hidden <= min(BLOCK_PATH_MAX_HIDDEN, MAX_HIDDEN)


def block_grid(batch):
    """(grid, block) of the per-block path: ROWS sequences per block, MAX_HIDDEN units each."""
    return -(-batch // ROWS), (MAX_HIDDEN, ROWS)


def grid(batch, hidden):
    """(grid, block) for a point-wise kernel over (B, H): a thread per (sequence, unit)."""
    return (-(-hidden // BLOCK[0]), -(-batch // BLOCK[1])), BLOCK


def line(n):
    """(grid, block) for a kernel with a thread per row or column, n of them."""
    return -(-n // LINE), LINE


def _make_kernels(dtype):
    zero = dtype.type(0)

    def column_sums(m, out):
        """out[j] = the sum of m's column j (a bias's gradient), a thread per column."""
        j = cuda.grid(1)
        if j < m.shape[1]:
            total = zero
            for i in range(m.shape[0]):
                total += m[i, j]
            out[j] = total

    def product_column_sums(a, start, c, out):
        """out[j] = sum_i a[i, start + j] * c[i, j] (a peephole's gradient), a thread per column."""
        j = cuda.grid(1)
        if j < c.shape[1]:
            total = zero
            for i in range(c.shape[0]):
                total += a[i, start + j] * c[i, j]
            out[j] = total

    return named(dtype, column_sums, product_column_sums)


def named(dtype, *functions):
    """{name: kernel} for python kernel functions, each compiled as ``name_{dtype}``."""
    kernels = {}
    for fn in functions:
        name = fn.__name__
        fn.__name__ = f"{name}_{dtype.name}"
        kernels[name] = cuda.jit(fn)
    return kernels


KERNELS = {dtype.name: _make_kernels(dtype) for dtype in FLOATS}


def column_sums(m):
    """The sums of a (rows, n) device array's columns, (n,) on the device: one launch."""
    out = cuda.device_array(m.shape[1], m.dtype)
    launch(KERNELS[m.dtype.name]["column_sums"], *line(m.shape[1]), m, out)
    return out


def kernel_signatures():
    """(name, dtype, python function, argument types) of the kernels here, for compiling ahead of time."""
    found = []
    for dtype in FLOATS:
        f = numba.from_dtype(dtype)
        vector, matrix = f[::1], f[:, ::1]
        for name, signature in (("column_sums", (matrix, vector)),
                                ("product_column_sums", (matrix, numba.int64, matrix, vector))):
            kernel = KERNELS[dtype.name][name]
            found.append((kernel.py_func.__name__, dtype, kernel.py_func, signature))
    return found
