"""Generated kernel modules: written to a cache directory, imported, kept.

Numba caches compiled code only for functions that live in a file, so each program's
module is written to ``cache_dir()`` under a name made of the cell's class and the hash of
the source (a new source is a new file; a file once written is never rewritten, so
Numba's cache for it stays valid), then imported from there.

    kernel = compile_cell(cell, input_size)     # trace (cached), generate, import
    kernel.source                               # the generated module's text
    out, finals, saved = kernel.module.forward(x, states, weights, lengths, reverse)

``load_source`` writes and imports a given text (``generic.py``'s size-generic modules);
``load_path`` imports a module from a file of its own (a committed one).
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, replace

from .cpu import Writer
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
    the imported ``module`` (``forward``, ``backward``, ``STATES``, ``WEIGHTS``). ``symbols``:
    for a size-generic module (``generic.py``), each size symbol and where the module reads
    it ("input" or a state's index); None for a module of fixed sizes."""

    program: object
    source: str
    path: str
    module: object
    symbols: dict = None

    def with_program(self, program):
        """This kernel with another ``program`` (a generic module's, traced at other sizes)."""
        return replace(self, program=program)


def writer(program, device="numba"):
    """The writer of ``program``'s module for ``device`` ("numba": ``cpu.Writer``, "cuda":
    ``gpu.CudaWriter``); its ``source()`` is the module's text."""
    cell = program.cell_class
    doc = (f"Fused forward and BPTT of {cell.__name__} ({cell.__module__}.{cell.__qualname__}), "
           f"{program.dtype}, for {'the CPU' if device == 'numba' else 'numba.cuda'}.")
    if device == "cuda":
        from .gpu import CudaWriter

        return CudaWriter(schedule(program), doc)
    return Writer(schedule(program), doc)


def module_source(program, device="numba"):
    """The generated module's source for a traced ``StepProgram``: for the CPU (``device``
    "numba") or for numba.cuda ("cuda")."""
    return writer(program, device).source()


def load(program, device="numba"):
    """The ``Kernel`` of a ``StepProgram`` on ``device`` ("numba" or "cuda"): generate its
    source, write it once, import it once."""
    return load_source(program, module_source(program, device), device)


def load_source(program, source, device="numba", tag="", symbols=None):
    """The ``Kernel`` of the module text ``source`` made for ``program`` (and ``symbols``: see
    ``Kernel``): written once to ``cache_dir()`` as ``<cell><_cuda><_tag>_<sha of the
    text>.py``, imported once."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    parts = [program.cell_class.__name__.lower()] + (["cuda"] if device == "cuda" else []) + ([tag] if tag else [])
    path = os.path.join(cache_dir(), f"{'_'.join(parts)}_{digest}.py")
    if path not in _modules and not os.path.exists(path):
        _write(path, source)
    return Kernel(program, source, path, _import(path), None if symbols is None else dict(symbols))


def load_path(path, program=None, symbols=None):
    """The ``Kernel`` of the module in the file ``path`` (a committed generated module), with
    the ``program`` and ``symbols`` it was made for if given; imported once per path."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_path: no generated module at {path}")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return Kernel(program, source, path, _import(path), None if symbols is None else dict(symbols))


def _import(path):
    """The module in ``path``, imported once under ``tinyseq_jit_kernels.<file name>``."""
    module = _modules.get(path)
    if module is None:
        stem = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(f"tinyseq_jit_kernels.{stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # numba's cache finds a function's module by name
        spec.loader.exec_module(module)
        _modules[path] = module
    return module


def remembered(cache, key, make):
    """``cache[key]``, made by ``make()`` the first time; a ``CompileError`` it raised is kept
    and raised again (a new one, with its message) on every call for ``key``."""
    from .trace import CompileError

    kernel = cache.get(key)
    if kernel is None:
        try:
            kernel = make()
        except CompileError as error:
            kernel = error
        cache[key] = kernel
    if isinstance(kernel, CompileError):
        raise CompileError(str(kernel))
    return kernel


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
