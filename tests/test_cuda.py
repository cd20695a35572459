"""CUDA path, run in its own process under the simulator: NUMBA_ENABLE_CUDASIM=1 pytest -m cuda.

The numba.cuda kernels are the next piece of work; until they land these tests hold the
harness they will use (the simulator runs a kernel on the CPU) and the promise the
backend makes meanwhile: asking for "cuda" says clearly that it is not available.
"""

import os

import numpy as np
import pytest

from tinyseq import nn

pytestmark = pytest.mark.cuda

simulated = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                               reason="needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported")


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    from numba import cuda

    @cuda.jit
    def add_one(a):
        i = cuda.grid(1)
        if i < a.size:
            a[i] += 1.0


@simulated
def test_simulator_runs_a_kernel():
    a = np.arange(5.0)
    add_one[1, 8](a)
    np.testing.assert_array_equal(a, np.arange(5.0) + 1)


def test_cuda_backend_is_refused_with_a_reason():
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available"):
        nn.LSTM(3, 4, backend="cuda")
