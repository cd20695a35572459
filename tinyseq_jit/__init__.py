"""tinyseq_jit: a whole recurrent layer's forward and BPTT backward as fused Numba kernels.

``tinyseq_jit.cpu`` holds ``@njit`` kernels for RNN (tanh, relu), LSTM (also peephole and
coupled) and GRU (both ``reset_after`` forms). They take and return NumPy arrays and know
nothing of ``tinyseq.Tensor``; every pair speaks the contract in ``_contract.py``, and
``tinyseq.nn._fused`` wraps a pair as a single graph node.
"""

from . import cpu

__all__ = ["cpu"]
