"""tinyseq_jit.cuda: the fused recurrences on an NVIDIA GPU, with numba-cuda (the ``cuda`` extra).

Work in progress (issue 13): the shared-memory tiled ``gemm`` that every path builds on is
here; the RNN, LSTM and GRU kernels, with the CPU kernels' entry points and contract, come
next, and until then ``backend="cuda"`` says so.

Importing this package never fails: without numba-cuda, its functions raise an error that
says how to install it; with it but without a GPU they raise one that says how to use the
simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported). ``status()`` tells
which, without raising.
"""

try:
    from numba import cuda as _cuda  # noqa: F401  (numba-cuda, or numba's own deprecated copy)
except ImportError as _error:  # no numba.cuda at all
    _missing = (f"numba.cuda cannot be imported ({_error}); install the cuda extra: "
                'pip install -e ".[cuda]"')

    def status():
        """(None, why): numba.cuda is not installed."""
        return None, _missing

    def gemm(*args, **kwargs):
        """Unavailable: numba.cuda is not installed."""
        raise RuntimeError(f"gemm: {_missing}")

else:
    from ._gemm import gemm
    from ._runtime import launches, reset_launches, status

__all__ = ["gemm", "status"]
