"""How a recurrent layer runs: "graph" (unrolled ops), "numba" (fused CPU kernels), "cuda", "auto".

A layer's ``backend=`` argument wins unless it is "auto"; "auto" defers to the process-wide
choice (``set_backend``, the ``use_backend`` context manager, or the ``TINYSEQ_BACKEND``
environment variable), and when that is "auto" too, to numba if ``tinyseq_jit`` imports,
else graph ("auto" never picks cuda: ask for it). Asking for a backend that cannot run
raises an error saying why and how to install it; "auto" falls back silently.

This module only chooses. How a fused layer-direction joins the graph is in
``nn/_fused.py``. ``tinyseq_jit`` is imported lazily: ``tinyseq`` itself needs only NumPy.
"""

import contextlib
import os

BACKENDS = ("auto", "graph", "numba", "cuda")

_default = None  # None: read TINYSEQ_BACKEND, else "auto"
_jit = None
_jit_error = None
_cuda = None


def check(name, where):
    """``name`` if it is one of ``BACKENDS``, else a ValueError naming ``where`` it came from."""
    if name not in BACKENDS:
        raise ValueError(f"{where}: backend must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend():
    """The process-wide backend choice ("auto" unless set)."""
    if _default is not None:
        return _default
    return check(os.environ.get("TINYSEQ_BACKEND", "auto"), "TINYSEQ_BACKEND")


def set_backend(name):
    """Set the process-wide backend used by layers whose ``backend`` is "auto"."""
    global _default
    _default = check(name, "set_backend")


@contextlib.contextmanager
def use_backend(name):
    """Context manager: ``with use_backend("graph"): ...`` runs "auto" layers on that backend."""
    global _default
    previous = _default
    _default = check(name, "use_backend")
    try:
        yield
    finally:
        _default = previous


def load_jit():
    """Import ``tinyseq_jit`` once; return it, or None (remembering why) if it cannot load."""
    global _jit, _jit_error
    if _jit is None and _jit_error is None:
        try:
            import tinyseq_jit
        except ImportError as e:  # numba or scipy missing
            _jit_error = e
        else:
            _jit = tinyseq_jit
    return _jit


def load_cuda():
    """``tinyseq_jit.cuda`` once it can run kernels here (a GPU, or the simulator); otherwise a
    RuntimeError saying why and what to do."""
    global _cuda
    if _cuda is None:
        jit = load_jit()
        if jit is None:
            raise RuntimeError(f"backend 'cuda' is not available: importing tinyseq_jit failed ({_jit_error}); "
                               "install the dependencies with: pip install numba scipy")
        from tinyseq_jit import cuda

        where, why = cuda.status()
        if where is None:
            raise RuntimeError(f"backend 'cuda' is not available: {why}")
        _cuda = cuda
    return _cuda


def resolve(name):
    """The backend a layer with ``backend=name`` runs on now: "graph", "numba" or "cuda"."""
    check(name, "backend")
    if name == "auto":
        name = get_backend()
    if name == "auto":
        return "numba" if load_jit() is not None else "graph"
    if name == "numba" and load_jit() is None:
        raise RuntimeError(
            f"backend 'numba' is not available: importing tinyseq_jit failed ({_jit_error}); "
            "install the dependencies with: pip install numba scipy"
        )
    if name == "cuda":
        load_cuda()
    return name
