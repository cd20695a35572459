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
import inspect

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

    def _on_gpu(forward):
        """``forward`` (a ``_pairs`` one, its signature and docstring) run with ``device="cuda"``,
        refusing device arrays."""
        @functools.wraps(forward)
        def on_gpu(*arguments, **options):
            require(forward.__name__)
            _host_arrays(forward.__name__, *arguments, *options.values())
            return forward(*arguments, **options, device="cuda")

        on_gpu.__doc__ = f"{forward.__doc__}\n\n    On the GPU (numba.cuda): host arrays in and out."
        signature = inspect.signature(forward)
        on_gpu.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values()
                                                             if p.name != "device"])
        return on_gpu

    def _host_backward(backward):
        """``backward`` (a ``_pairs`` one, its signature and docstring) refusing device gradients."""
        @functools.wraps(backward)
        def checked(saved, *gradients, **options):
            _host_arrays(backward.__name__, *gradients)
            return backward(saved, *gradients, **options)

        return checked

    rnn_forward, lstm_forward, gru_forward = (_on_gpu(f) for f in (
        _pairs.rnn_forward, _pairs.lstm_forward, _pairs.gru_forward))
    rnn_backward, lstm_backward, gru_backward = (_host_backward(b) for b in (
        _pairs.rnn_backward, _pairs.lstm_backward, _pairs.gru_backward))

    def kernel_signatures():
        """(name, dtype, python function, argument types) of the kernels this package holds (the
        GEMM and the column sums), for compiling ahead of time; the generated modules' own are
        their ``kernel_signatures``."""
        return _gemm.kernel_signatures() + _common.kernel_signatures()

__all__ = ["gemm", "rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "status", "launches", "reset_launches", "kernel_signatures"]
