"""tinyseq_jit.cuda: the fused recurrences on an NVIDIA GPU, with numba-cuda (the ``cuda`` extra).

The RNN, LSTM and GRU kernel pairs, with the CPU pairs' entry points (``rnn_forward``,
``lstm_backward``, ...), contract and gradient-norm telemetry, on two paths: the whole time
loop in one kernel for H <= ``_common.MAX_HIDDEN``, a ``gemm`` and a point-wise kernel per
step otherwise; ``gemm`` is the shared-memory tiled GEMM they are built on. ``backend="cuda"``
runs the layers on them.

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

    def _unavailable(name):
        def stub(*args, **kwargs):
            raise RuntimeError(f"{name}: {_missing}")

        stub.__name__ = name
        stub.__doc__ = f"Unavailable: numba.cuda is not installed ({name} needs it)."
        return stub

    gemm, rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward, kernel_signatures = (
        _unavailable(name) for name in ("gemm", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
                                        "gru_forward", "gru_backward", "kernel_signatures"))
    launches = {}

    def reset_launches():
        """No launches without numba.cuda: returns {}."""
        return {}

else:
    from . import _common, _gemm, gru, lstm, rnn
    from ._gemm import gemm
    from ._runtime import launches, reset_launches, status
    from .gru import gru_backward, gru_forward
    from .lstm import lstm_backward, lstm_forward
    from .rnn import rnn_backward, rnn_forward

    def kernel_signatures():
        """(name, dtype, python function, argument types) of every kernel, for compiling ahead of time."""
        return (_gemm.kernel_signatures() + _common.kernel_signatures() + rnn.kernel_signatures()
                + lstm.kernel_signatures() + gru.kernel_signatures())

__all__ = ["gemm", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "status"]
