"""The built-in cells' fused kernels on the CPU, as functions on NumPy arrays: one call runs a
layer-direction's forward over all T steps, one call its whole BPTT backward (the contract of
``tinyseq_jit/_contract.py``). They run the ``@njit`` kernels ``tinyseq_jit.compiler``
generates from each cell's step; ``_gemm``, ``_math`` and ``_common`` are what those kernels
share (the planned per-step products, the activations, the time loop's helpers)."""

from .._pairs import gru_backward, gru_forward, lstm_backward, lstm_forward, rnn_backward, rnn_forward

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward"]
