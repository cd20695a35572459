"""Tunables and tolerances in one place, so tests and users can patch them.

Everything here is read at call time, never copied at import, so
``monkeypatch.setattr(tinyseq.config, "GRADCHECK_ATOL", 1e-4)`` takes effect at once.
"""

import numpy as np

#: dtype given to Python scalars and lists turned into tensors.
DEFAULT_DTYPE = np.float32

# ---------------------------------------------------------------- gradcheck
#: central-difference step used by ``tinyseq.gradcheck``.
GRADCHECK_EPS = 1e-6
#: absolute and relative tolerance of ``tinyseq.gradcheck``.
GRADCHECK_ATOL = 1e-5
GRADCHECK_RTOL = 1e-3
#: inputs with more elements than this default to the directional check.
GRADCHECK_FULL_MAX_ELEMENTS = 2000
