"""tinyseq_jit: a whole recurrent layer's forward and BPTT backward as fused Numba kernels.

``compiler`` turns one step of a cell written from tinyseq's ops (the built-in
``tinyseq.nn.RNNStep``, ``LSTMStep``, ``GRUStep``, or yours) into a module of ``@njit``
(CPU) or numba.cuda kernels: the forward over all T steps and its BPTT backward, one line
per op of the step. ``generated`` holds the built-in cells' modules, committed. ``cpu`` and
``cuda`` hold what those modules call (the planned per-step products, the activations, the
time loop's helpers; the tiled GEMM and launches on the GPU) and the built-in cells' kernel
pairs as functions on arrays (``lstm_forward`` ...), speaking the contract in
``_contract.py``. The kernels take and return arrays and know nothing of
``tinyseq.Tensor``; ``tinyseq.nn._fused`` wraps a pair as a single graph node.

``status()`` says which BLAS makes the CPU kernels' (and the graph's) matrix products, and why.
"""

from . import cpu
from .cpu._gemm import status

__all__ = ["cpu", "status"]
