"""tinyseq_jit.cuda: the fused recurrences on an NVIDIA GPU, with numba-cuda (the ``cuda`` extra).

Work in progress (issue 13): the shared-memory tiled ``gemm`` that every path builds on,
and the RNN's kernel pair on the per-step path (``rnn_forward``/``rnn_backward``, the CPU
pair's entry points, contract and gradient-norm telemetry) are here; the LSTM and GRU pairs
and the paths that keep the time loop inside one kernel come next, and until the layers
can use them ``backend="cuda"`` says it is not available.

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

    gemm, rnn_forward, rnn_backward, lstm_forward, lstm_backward, gru_forward, gru_backward = (
        _unavailable(name) for name in ("gemm", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
                                        "gru_forward", "gru_backward"))

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
