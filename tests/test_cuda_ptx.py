"""Offline compilation, "PTX lint": every numba.cuda kernel compiles for real GPUs
(compute capability 8.0 and 9.0) with no GPU present (the GEMM and column sums of
``tinyseq_jit.cuda``, the built-in layers' generated modules in every committed form, and
those the cell compiler generates for cells of examples/cell_gallery.py), which catches the
typing errors the simulator lets through, and a float32 kernel has no float64 instruction in it.

It needs the CUDA compiler libraries (``pip install -e ".[ptx]"``, large: CI installs them)
and numba's real CUDA target, so it runs with the simulator off: ``pytest -m ptx``. Where
the libraries are missing it skips, unless TINYSEQ_REQUIRE_PTX=1 (CI), where it fails.
With ``ptxas`` on PATH it also assembles each kernel and prints its registers, spills and
shared memory.
"""

import os
import re
import shutil
import subprocess

import numba
import numpy as np
import pytest

pytestmark = pytest.mark.ptx

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compile_ptx needs numba's real CUDA target, not the simulator", allow_module_level=True)

from numba import cuda  # noqa: E402

from tinyseq_jit import cuda as tinyseq_cuda  # noqa: E402
from tinyseq_jit import generated  # noqa: E402

KERNELS = tinyseq_cuda.kernel_signatures()
CAPABILITIES = [(8, 0), (9, 0)]


@pytest.fixture(scope="module")
def compiler():
    """compile_ptx, once it has compiled a trivial kernel; skip (or fail in CI) without the libraries."""
    def probe(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(probe, (numba.float32[::1],), cc=(8, 0))
    except Exception as e:  # the missing library's error type differs between versions
        reason = f"the CUDA compiler libraries are not installed ({type(e).__name__}: {str(e)[:160]})"
        if os.environ.get("TINYSEQ_REQUIRE_PTX") == "1":
            pytest.fail(reason + '; pip install -e ".[ptx]"')
        pytest.skip(reason)
    return cuda.compile_ptx


@pytest.mark.parametrize("cc", CAPABILITIES, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("name,dtype,fn,signature", KERNELS, ids=[f"{k[0]}-{i}" for i, k in enumerate(KERNELS)])
def test_kernel_compiles_for_real_gpus(compiler, name, dtype, fn, signature, cc, tmp_path):
    ptx, _ = compiler(fn, signature, cc=cc)
    assert ".entry" in ptx
    if dtype == np.float32:
        f64 = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)]
        assert not f64, f"{name}: float64 instructions in a float32 kernel: {f64[:3]}"
    assemble(ptx, name, cc, tmp_path)


def assemble(ptx, name, cc, tmp_path):
    """With ``ptxas`` on PATH: assemble the kernel, print its registers, spills and shared memory,
    and return ptxas's report (None without ptxas)."""
    ptxas = shutil.which("ptxas")
    if not ptxas:
        return None
    path = tmp_path / f"{name}.ptx"
    path.write_text(ptx)
    done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", str(path), "-o", os.devnull],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    used = re.findall(r"Used \d+ registers.*|\d+ bytes spill.*", done.stderr)
    print(f"{name} sm_{cc[0]}{cc[1]}: {'; '.join(used)}")
    return done.stderr


# ---------------------------------------------------------------- kernels the compiler generates


@pytest.mark.parametrize("cc", CAPABILITIES, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(generated.FORMS))
def test_built_in_layers_kernels_compile_for_real_gpus(compiler, name, dtype, cc, tmp_path):
    """The size-generic module a built-in layer of this form runs on backend="cuda" (any H: at
    H = 64, the benchmarks' S7, it takes the per-block path; above, the per-step one), both
    paths' kernels: no float64 in a float32 kernel, and (with ptxas) no register spilled."""
    step_form = generated.form(name)[:-1] + (np.dtype(dtype).name,)
    lint(compiler, name, generated.kernel(step_form, "cuda").module, dtype, cc, tmp_path)


@pytest.mark.parametrize("cc", CAPABILITIES, ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["mgu", "ligru"])
def test_compiled_cells_kernels_compile_for_real_gpus(compiler, name, dtype, cc, tmp_path):
    """Both paths' kernels of cells with no built-in layer, at the hidden size of the benchmarks'
    S7 (64, the per-block path's largest)."""
    from helpers import load_example
    from tinyseq_jit.compiler import compile_cell

    cell = load_example("cell_gallery").GALLERY[name](32, 64, dtype=dtype)
    lint(compiler, name, compile_cell(cell, 32, dtype, "cuda").module, dtype, cc, tmp_path)


def lint(compiler, name, module, dtype, cc, tmp_path):
    """Compile every kernel of a generated CUDA module for ``cc``: both paths' kernels are there,
    no float64 in a float32 kernel, and (with ptxas) no register spilled to local memory."""
    kernels = module.kernel_signatures(numba.from_dtype(dtype))
    names = [kernel for kernel, _, _ in kernels]
    assert "block_forward" in names and "block_backward" in names and any(n.startswith("norm_") for n in names)
    assert any(n.startswith("forward_") for n in names) and any(n.startswith("backward_") for n in names)
    for kernel, fn, signature in kernels:
        ptx, _ = compiler(fn, signature, cc=cc)
        assert ".entry" in ptx
        if dtype == np.float32:
            f64 = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line)]
            assert not f64, f"{name}.{kernel}: float64 instructions in a float32 kernel: {f64[:3]}"
        report = assemble(ptx, f"{name}.{kernel}", cc, tmp_path)
        if report is not None:
            assert re.search(r"\b0 bytes spill stores, 0 bytes spill loads", report), f"{name}.{kernel}: {report}"
            assert not re.search(r"[1-9]\d* bytes spill", report), f"{name}.{kernel} spills: {report}"
