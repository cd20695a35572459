"""Whether numba.cuda can run kernels here, and the one place kernels are launched from.

``status()`` tells a real GPU, the simulator (``NUMBA_ENABLE_CUDASIM=1`` set before numba
is imported) and why neither; ``launch`` counts every kernel launch, so that tests and
benchmarks can say how many launches a layer's pass takes.
"""

import numba
from numba import cuda

INSTALL = 'pip install -e ".[cuda]"'


def simulated():
    """True when numba.cuda is its CPU simulator (as numba decided when it was imported)."""
    return bool(numba.config.ENABLE_CUDASIM)


def status():
    """("gpu" or "simulator", "") where kernels can run, else (None, the reason and what to do)."""
    if simulated():
        return "simulator", ""
    if cuda.is_available():
        return "gpu", ""
    return None, ("numba.cuda finds no usable NVIDIA GPU and driver here (numba.cuda.is_available() is "
                  "False); on a machine without one, set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run "
                  "the kernels on numba's simulator (slow: tiny shapes only)")


def require(owner):
    """Raise a RuntimeError naming ``owner`` unless kernels can run here."""
    where, why = status()
    if where is None:
        raise RuntimeError(f"{owner}: {why}")
    return where


def on_device(m):
    """True for a numba.cuda device array (the simulator's too, which has no ``is_cuda_array``)."""
    return hasattr(m, "copy_to_host")


#: kernel launches since the last ``reset_launches()``, by kernel name
launches = {}


def reset_launches():
    """Start counting launches again; returns the counts so far."""
    counts = dict(launches)
    launches.clear()
    return counts


def launch(kernel, grid, block, *args):
    """Launch ``kernel[grid, block](*args)`` and count it; nothing for an empty grid (B or H 0),
    which a GPU refuses to launch."""
    if 0 in (grid if isinstance(grid, tuple) else (grid,)):
        return
    name = kernel.py_func.__name__
    launches[name] = launches.get(name, 0) + 1
    kernel[grid, block](*args)
