"""What the CUDA kernel pairs share: the point-wise launch shape, device functions for the
activations, and the small kernels around the loops (gradient norms, column sums, a bias
sum, zeroing the padded steps of an input).

Every kernel is made per float dtype by a factory, so that its constants are of that dtype
(a float32 kernel holds no float64 literal) and its shared arrays know their type.
"""

import math
from types import SimpleNamespace

import numba
from numba import cuda

from ._gemm import FLOATS, gemm
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
#: the row of gate gradients the per-block backward keeps per sequence, up to four gates.
#: NOTE: a shared array's shape must be a literal or a global constant, not an expression
#: (the simulator takes one; compiling for a GPU does not: tests/test_cuda_ptx.py catches it)
GATES_HIDDEN = 4 * MAX_HIDDEN
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


def activations(dtype):
    """Device functions (sigmoid, tanh) for one dtype, inlined into the kernels that call them."""
    one = dtype.type(1)

    @cuda.jit(device=True, inline="always")
    def sigmoid(x):
        return one / (one + math.exp(-x))  # as the CPU kernels; exp(-x) = inf gives 0, no nan

    @cuda.jit(device=True, inline="always")
    def tanh(x):
        return math.tanh(x)

    return sigmoid, tanh


def block_norm(dtype):
    """The device function a per-block backward records ||dL/dh_t|| with: the norm of
    dh[row] + d_out[t, b] over the first ``hidden`` units, summed in a fixed order."""
    zero = dtype.type(0)

    @cuda.jit(device=True, inline="always")
    def state_grad_norm(dh, row, d_out, t, b, hidden):
        total = zero
        for k in range(hidden):
            g = dh[row, k] + d_out[t, b, k]
            total += g * g
        return math.sqrt(total)

    return state_grad_norm


def _make_kernels(dtype):
    zero = dtype.type(0)

    def row_norms(m, lengths, t, state, grad_norms):
        """grad_norms[state, t, b] = ||m[b]|| for the sequences inside their length at step t,
        0 for the others; a thread per sequence, summing in a fixed order."""
        b = cuda.grid(1)
        batch, hidden = m.shape
        if b < batch:
            total = zero
            if t < lengths[b]:
                for j in range(hidden):
                    total += m[b, j] * m[b, j]
            grad_norms[state, t, b] = math.sqrt(total)

    def sum_norms(dh, d_out, lengths, t, state, grad_norms):
        """As ``row_norms`` for dh + d_out[t]: all of dL/dh_t before a backward step."""
        b = cuda.grid(1)
        batch, hidden = dh.shape
        if b < batch:
            total = zero
            if t < lengths[b]:
                for j in range(hidden):
                    g = dh[b, j] + d_out[t, b, j]
                    total += g * g
            grad_norms[state, t, b] = math.sqrt(total)

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

    def vector_sum(a, b, out):
        """out = a + b for vectors (b_ih + b_hh), a thread per element."""
        j = cuda.grid(1)
        if j < out.shape[0]:
            out[j] = a[j] + b[j]

    def zero_padded(x, lengths, out):
        """out = x with its padded steps (t >= lengths[b]) zeroed, a thread per element."""
        k = cuda.grid(1)
        steps, batch, features = x.shape
        if k < steps * batch * features:
            t, b, i = k // (batch * features), k // features % batch, k % features
            out[t, b, i] = x[t, b, i] if t < lengths[b] else zero

    return named(dtype, row_norms, sum_norms, column_sums, product_column_sums, vector_sum, zero_padded)


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


def input_grads(inputs, d_xp, need_dx):
    """dx (None unless ``need_dx``), dW_ih and the bias gradient from the input projection's
    gradients d_xp (T, B, G*H), on the device: the CPU kernels' ``input_grads`` in three launches."""
    x = inputs.x
    steps, batch, features = x.shape
    flat = d_xp.reshape(steps * batch, d_xp.shape[2])
    dx = gemm(flat, inputs.w["w_ih"]).reshape(x.shape) if need_dx else None
    return dx, gemm(flat, x.reshape(steps * batch, features), trans_a=True), column_sums(flat)


def types(dtype):
    """The numba types the kernels' signatures are written in, for one dtype."""
    f = numba.from_dtype(dtype)
    return SimpleNamespace(vector=f[::1], matrix=f[:, ::1], cube=f[:, :, ::1], lengths=numba.int64[::1],
                           index=numba.int64, flag=numba.boolean)


def signatures(kernels, table):
    """(name, dtype, python function, argument types) of every kernel in ``kernels`` (``{dtype
    name: {name: kernel}}``), for compiling ahead of time; ``table(vector=..., matrix=...)``
    gives ``{name: argument types}`` in the types of ``types(dtype)``."""
    found = []
    for dtype in FLOATS:
        by_name = kernels[dtype.name]
        found += [(by_name[name].py_func.__name__, dtype, by_name[name].py_func, signature)
                  for name, signature in table(**vars(types(dtype))).items()]
    return found


def kernel_signatures():
    """(name, dtype, python function, argument types) of the kernels here."""
    return signatures(KERNELS, lambda vector, matrix, cube, lengths, index, flag: {
        "row_norms": (matrix, lengths, index, index, cube),
        "sum_norms": (matrix, cube, lengths, index, index, cube),
        "column_sums": (matrix, vector),
        "product_column_sums": (matrix, index, matrix, vector),
        "vector_sum": (vector, vector, vector),
        "zero_padded": (cube, lengths, cube),
    })
