"""The matrix product every CUDA path is built on: a shared-memory tiled GEMM in numba.cuda.

    out = op(a) @ op(b)        (out += ... with accumulate=True; op(m) is m or m^T)

One thread computes one element of ``out``; a block of TILE x TILE threads walks the K
dimension one TILE-wide slab at a time, each thread loading one element of a's and one of
b's slab into shared memory, so each input element is read from global memory once per
block instead of once per thread. Elements past the matrices' edges load as zeros, so any
M, N, K works. The sum runs in a fixed order (no atomics): the same inputs give the same
bits, launch after launch.

The input projection x W_ih^T (a = x, b = W_ih, trans_b), the per-step recurrent product
h W_hh^T and the weight gradients after the loop (d_gates^T x: trans_a) are all this one
kernel.
"""

import numba
import numpy as np
from numba import cuda

from ._runtime import launch, on_device, require, simulated

#: threads per block side, and the side of the shared tiles: a compile-time constant. NOTE:
#: the simulator runs every thread of a block as a Python thread, so there it is 8 (the
#: same code at smaller, still ragged, tiles); what is compiled for GPUs is 16.
TILE = 8 if simulated() else 16
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _make_gemm_kernel(dtype):
    """The tiled GEMM kernel for one float dtype (shared arrays need their type when compiled)."""
    scalar = numba.from_dtype(dtype)
    zero = dtype.type(0)  # a float32 zero in the float32 kernel: no silent float64

    def gemm_kernel(a, b, out, trans_a, trans_b, accumulate):
        """out (M, N) = op(a) (M, K) @ op(b) (K, N), or out += it; a, b 2-D (views too), out C-contiguous."""
        a_slab = cuda.shared.array((TILE, TILE), scalar)
        b_slab = cuda.shared.array((TILE, TILE), scalar)
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        i = cuda.blockIdx.x * TILE + ty  # the row of out this thread computes (rows on the grid's x:
        j = cuda.blockIdx.y * TILE + tx  # T*B rows may pass the y axis's 65535 blocks) and its column
        rows, cols = out.shape
        depth = a.shape[0] if trans_a else a.shape[1]
        total = zero
        for k0 in range(0, depth, TILE):
            ka, kb = k0 + tx, k0 + ty  # this thread loads a[i, ka] and b[kb, j] (in op's indices)
            if i < rows and ka < depth:
                a_slab[ty, tx] = a[ka, i] if trans_a else a[i, ka]
            else:
                a_slab[ty, tx] = zero
            if j < cols and kb < depth:
                b_slab[ty, tx] = b[j, kb] if trans_b else b[kb, j]
            else:
                b_slab[ty, tx] = zero
            cuda.syncthreads()
            for k in range(TILE):
                total += a_slab[ty, k] * b_slab[k, tx]
            cuda.syncthreads()  # before the next slab overwrites these
        if i < rows and j < cols:
            out[i, j] = out[i, j] + total if accumulate else total

    gemm_kernel.__name__ = f"gemm_kernel_{dtype.name}"
    return cuda.jit(gemm_kernel)


#: the GEMM kernel of each dtype, by dtype name
GEMM_KERNELS = {dtype.name: _make_gemm_kernel(dtype) for dtype in FLOATS}


def kernel_signatures():
    """(name, dtype, python function, argument types) of every kernel here, for compiling ahead of time."""
    found = []
    flag = numba.boolean
    for dtype in FLOATS:
        matrix, view = numba.from_dtype(dtype)[:, ::1], numba.from_dtype(dtype)[:, :]
        kernel = GEMM_KERNELS[dtype.name]
        for a, b in ((matrix, matrix), (view, matrix)):  # a column slice of the gate gradients as a
            found.append((kernel.py_func.__name__, dtype, kernel.py_func, (a, b, matrix, flag, flag, flag)))
    return found


def _device(name, what, m):
    """``m`` as a 2-D float device array (uploading a NumPy array); a device view stays a view."""
    if on_device(m):
        if m.ndim != 2:
            raise ValueError(f"{name}: {what} must be a 2-D device array, got shape {m.shape}")
        return m
    arr = np.asarray(m)
    if arr.ndim != 2:
        raise ValueError(f"{name}: {what} must be 2-D, got shape {arr.shape}")
    return cuda.to_device(np.ascontiguousarray(arr))


def gemm(a, b, out=None, trans_a=False, trans_b=False, accumulate=False):
    """op(a) @ op(b) on the GPU, into the device array ``out`` (made if None); returns ``out``.

    a, b: NumPy or device arrays (device views such as column slices too), 2-D, of one float
    dtype (float32 or float64); op(a) is
    (M, K) and op(b) (K, N), transposed first where ``trans_a`` / ``trans_b``. With
    ``accumulate`` the product is added to ``out``. NumPy inputs are uploaded; the result
    stays on the device (``out.copy_to_host()`` brings it back).
    """
    require("gemm")
    a, b = _device("gemm", "a", a), _device("gemm", "b", b)
    if a.dtype != b.dtype or np.dtype(a.dtype) not in FLOATS:
        raise TypeError(f"gemm: a and b must share a float dtype (float32 or float64), got {a.dtype} and {b.dtype}")
    rows, depth = (a.shape[1], a.shape[0]) if trans_a else a.shape
    depth_b, cols = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if depth != depth_b:
        raise ValueError(f"gemm: op(a) is ({rows}, {depth}) and op(b) is ({depth_b}, {cols}): {depth} != {depth_b}")
    if out is None:
        if accumulate:
            raise ValueError("gemm: accumulate=True needs an out to add into")
        out = cuda.device_array((rows, cols), dtype=a.dtype)
    elif not on_device(out) or out.shape != (rows, cols) or out.dtype != a.dtype or not out.is_c_contiguous():
        raise ValueError(f"gemm: out must be a C-contiguous ({rows}, {cols}) {np.dtype(a.dtype)} device array, got "
                         f"{type(out).__name__} of shape {getattr(out, 'shape', None)}")
    grid = ((rows + TILE - 1) // TILE, (cols + TILE - 1) // TILE)
    if rows and cols:
        launch(GEMM_KERNELS[np.dtype(a.dtype).name], grid, (TILE, TILE), a, b, out, trans_a, trans_b, accumulate)
    return out
