"""Generated kernel modules: written to a cache directory, imported, kept.

Numba caches compiled code only for functions that live in a file, so each program's
module is written to ``cache_dir()`` under a name made of the cell's class and the hash of
the source (a new source is a new file; a file once written is never rewritten, so
Numba's cache for it stays valid), then imported from there.

    kernel = compile_cell(cell, input_size)     # trace (cached), generate, import
    kernel.source                               # the generated module's text
    out, finals, saved = kernel.module.forward(x, states, weights, lengths, reverse)
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass

from .cpu import generate
from .schedule import schedule

_modules = {}  # path -> imported module


def cache_dir():
    """Where generated modules go: ``$TINYSEQ_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/tinyseq/kernels``
    (``~/.cache/tinyseq/kernels``)."""
    given = os.environ.get("TINYSEQ_KERNEL_CACHE")
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinyseq", "kernels")


@dataclass
class Kernel:
    """A compiled step: its ``program``, the generated ``source``, the file it lives in and
    the imported ``module`` (``forward``, ``backward``, ``STATES``, ``WEIGHTS``)."""

    program: object
    source: str
    path: str
    module: object


def module_source(program, device="numba"):
    """The generated module's source for a traced ``StepProgram``: for the CPU (``device``
    "numba") or for numba.cuda ("cuda")."""
    cell = program.cell_class
    doc = (f"Fused forward and BPTT of {cell.__name__} ({cell.__module__}.{cell.__qualname__}), "
           f"{program.dtype}, for {'the CPU' if device == 'numba' else 'numba.cuda (the per-step path)'}.")
    if device == "cuda":
        from .gpu import generate_cuda

        return generate_cuda(schedule(program), doc)
    return generate(schedule(program), doc)


def load(program, device="numba"):
    """The ``Kernel`` of a ``StepProgram`` on ``device`` ("numba" or "cuda"): generate its
    source, write it once, import it once."""
    source = module_source(program, device)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    stem = f"{program.cell_class.__name__.lower()}{'_cuda' if device == 'cuda' else ''}_{digest}"
    path = os.path.join(cache_dir(), f"{stem}.py")
    module = _modules.get(path)
    if module is None:
        if not os.path.exists(path):
            _write(path, source)
        spec = importlib.util.spec_from_file_location(f"tinyseq_jit_kernels.{stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # numba's cache finds a function's module by name
        spec.loader.exec_module(module)
        _modules[path] = module
    return Kernel(program, source, path, module)


def _write(path, text):
    """Write ``text`` to ``path`` atomically (a temporary file in the same directory, renamed)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
