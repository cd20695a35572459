"""tinyseq_jit.cuda: the fused recurrences on an NVIDIA GPU, with numba-cuda (the ``cuda`` extra).

``rnn_forward``, ``lstm_backward``, ... are the CPU pairs' entry points (``tinyseq_jit.cpu``),
contract and gradient-norm telemetry on the GPU: they run the CUDA kernels
``tinyseq_jit.compiler`` generates from each built-in cell's step, the same that
``backend="cuda"`` layers run, on NumPy arrays (host arrays in and out). A pass takes one of
two paths: the whole time loop in one kernel for H <= ``_common.MAX_HIDDEN``, a ``gemm`` and
point-wise kernels per step otherwise; ``gemm`` is the shared-memory tiled GEMM they are
built on, and ``launches`` counts every kernel launch.

Importing this package never fails: without numba-cuda, its functions raise an error that
says how to install it; with it but without a GPU they raise one that says how to use the
simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported). ``status()`` tells
which, without raising.
"""

import functools

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
    from .. import _pairs
    from . import _common, _gemm
    from ._gemm import gemm
    from ._runtime import launches, on_device, require, reset_launches, status

    def _host_arrays(name, *arguments):
        """Raise a TypeError if a device array is among ``arguments`` (or a dict's values among them)."""
        for a in arguments:
            for value in a.values() if isinstance(a, dict) else (a,):
                if on_device(value):
                    raise TypeError(f"{name}: device arrays are not supported (host arrays in and out); "
                                    "pass NumPy arrays (device_array.copy_to_host())")

    def rnn_forward(x, h0, weights, lengths=None, reverse=False, nonlinearity="tanh"):
        """Run one Elman RNN layer in one direction over all T steps on the GPU: x (T, B, I), h0
        (B, H), ``weights`` w_ih (H, I), w_hh (H, H), optionally b_ih and b_hh (H,); ``lengths``
        (B,) or None; ``reverse`` runs t = T-1 .. 0; ``nonlinearity`` "tanh" or "relu". A ``Forward``."""
        require("rnn_forward")
        _host_arrays("rnn_forward", x, h0, weights, lengths)
        return _pairs.rnn_forward(x, h0, weights, lengths, reverse, nonlinearity, device="cuda")

    def lstm_forward(x, h0, c0, weights, lengths=None, reverse=False, coupled=False):
        """Run one LSTM layer in one direction over all T steps on the GPU: x (T, B, I); h0, c0
        (B, H); ``weights`` w_ih (G*H, I) and w_hh (G*H, H) with G = 4 (3 when ``coupled``),
        optionally b_ih and b_hh (G*H,), the projection w_hr (P, H) (then w_hh is (G*H, P) and
        h0 (B, P)), and the peepholes ci, cf, co (H,) each (cf and co when coupled). A
        ``Forward``: out (T, B, H), h_n (B, H), c_n (B, H); out and h_n have P features with w_hr."""
        require("lstm_forward")
        _host_arrays("lstm_forward", x, h0, c0, weights, lengths)
        return _pairs.lstm_forward(x, h0, c0, weights, lengths, reverse, coupled, device="cuda")

    def gru_forward(x, h0, weights, lengths=None, reverse=False, reset_after=True):
        """Run one GRU layer in one direction over all T steps on the GPU: x (T, B, I), h0 (B, H),
        ``weights`` w_ih (3*H, I), w_hh (3*H, H), optionally b_ih and b_hh (3*H,);
        ``reset_after=False`` is Cho et al.'s form. A ``Forward``."""
        require("gru_forward")
        _host_arrays("gru_forward", x, h0, weights, lengths)
        return _pairs.gru_forward(x, h0, weights, lengths, reverse, reset_after, device="cuda")

    def _host_backward(backward):
        """``backward`` (a ``_pairs`` one, its signature and docstring) refusing device gradients."""
        @functools.wraps(backward)
        def checked(saved, *gradients, **options):
            _host_arrays(backward.__name__, *gradients)
            return backward(saved, *gradients, **options)

        return checked

    rnn_backward, lstm_backward, gru_backward = (_host_backward(b) for b in (
        _pairs.rnn_backward, _pairs.lstm_backward, _pairs.gru_backward))

    def kernel_signatures():
        """(name, dtype, python function, argument types) of the kernels this package holds (the
        GEMM and the column sums), for compiling ahead of time; the generated modules' own are
        their ``kernel_signatures``."""
        return _gemm.kernel_signatures() + _common.kernel_signatures()

__all__ = ["gemm", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "status", "launches", "reset_launches", "kernel_signatures"]
