"""CUDA path: run in its own process under the simulator, NUMBA_ENABLE_CUDASIM=1 pytest -m cuda.

The simulator runs a kernel's threads on the CPU, so these shapes are tiny. What is here so
far (issue 13, in progress): the tiled GEMM equals NumPy's product at ragged tile edges,
in both dtypes and every transpose, writes every element of its output and launches once;
without a GPU and without the simulator, and without numba.cuda at all, the package
imports and says why it cannot run; ``backend="cuda"`` is still refused with a reason.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from tinyseq import nn

pytestmark = pytest.mark.cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
simulated = pytest.mark.skipif(not SIMULATED, reason="needs NUMBA_ENABLE_CUDASIM=1 set before numba is imported")


@simulated
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_equals_numpy_at_ragged_tile_edges(dtype, rtol, trans_a, trans_b):
    from numba import cuda

    from tinyseq_jit import cuda as tc

    rng = np.random.default_rng(0)
    for rows, depth, cols in [(5, 33, 17), (17, 16, 1), (1, 1, 1)]:  # across, at and inside one 16-wide tile
        a = rng.standard_normal((depth, rows) if trans_a else (rows, depth)).astype(dtype)
        b = rng.standard_normal((cols, depth) if trans_b else (depth, cols)).astype(dtype)
        expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
        out = cuda.to_device(np.full((rows, cols), np.nan, dtype=dtype))  # poisoned: every element must be written
        tc.reset_launches()
        tc.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
        assert tc.reset_launches() == {f"gemm_kernel_{np.dtype(dtype).name}": 1}
        np.testing.assert_allclose(out.copy_to_host(), expected, rtol=rtol, atol=rtol)
        tc.gemm(cuda.to_device(a), b, out, trans_a=trans_a, trans_b=trans_b, accumulate=True)  # device input too
        np.testing.assert_allclose(out.copy_to_host(), 2 * expected, rtol=rtol, atol=rtol)


@simulated
def test_gemm_refuses_what_it_cannot_multiply():
    from tinyseq_jit import cuda as tc

    a = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"op\(a\) is \(3, 4\) and op\(b\) is \(3, 2\): 4 != 3"):
        tc.gemm(a, np.ones((3, 2)))
    with pytest.raises(TypeError, match="share a float dtype"):
        tc.gemm(a, np.ones((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="accumulate=True needs an out"):
        tc.gemm(a, np.ones((4, 2)), accumulate=True)
    with pytest.raises(ValueError, match=r"out must be a C-contiguous \(3, 2\) float64 device array"):
        tc.gemm(a, np.ones((4, 2)), out=np.zeros((3, 2)))


@pytest.mark.skipif(SIMULATED, reason="checks the message where there is neither a GPU nor the simulator")
def test_without_a_gpu_the_package_imports_and_says_how_to_run():
    from tinyseq_jit import cuda as tc

    where, why = tc.status()
    if where == "gpu":
        pytest.skip("a real GPU is present")
    assert where is None and "NUMBA_ENABLE_CUDASIM=1" in why
    with pytest.raises(RuntimeError, match="gemm: numba.cuda finds no usable NVIDIA GPU"):
        tc.gemm(np.ones((2, 2)), np.ones((2, 2)))


def test_without_numba_cuda_the_package_imports_and_says_how_to_install():
    code = ("import sys; sys.modules['numba.cuda'] = None\n"  # as if numba-cuda were not installed
            "from tinyseq_jit import cuda\n"
            "print(cuda.status()[1])\n"
            "try:\n    cuda.gemm(None, None)\nexcept RuntimeError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "pip install -e \".[cuda]\"" in lines[0] and lines[1].startswith("gemm: numba.cuda cannot be imported")


def test_cuda_backend_is_refused_with_a_reason():
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available"):
        nn.LSTM(3, 4, backend="cuda")
