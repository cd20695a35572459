"""tinyseq_jit's compiler: one step of a recurrent cell, traced into a small SSA IR and sorted.

    program = trace(cell, input_size)      # a StepProgram: inputs, ops, outputs
    print(program)                         # one line per op, the cell's own names and lines
    print(program.plan)                    # hoisted GEMMs, per-step stages, what backward saves
    y, h = program.run_numpy(params, x, h) # the IR run in NumPy: equals the cell's forward

``trace_cached`` traces a cell once per ``cache_key`` (the cell's class and structure, its
parameters' names and shapes, dtype, input size, state arity and sizes): the sequence
length and the batch size never enter it. ``compile_cell`` goes on to the kernels: the
schedule (``schedule.py``), the Numba module written out (``cpu.py``) and imported from a
cache directory (``kernels.py``)::

    kernel = compile_cell(cell, input_size)
    print(kernel.source)                   # the fused forward and BPTT, one line per op

``compile_generic`` makes one module for every size of a cell whose sizes are its
constructor's arguments (``generic.py``); ``bind`` runs it on one cell, ``generic_source``
gives its text and ``load_path`` imports a committed one::

    kernel = compile_generic(lambda I, H: LSTM(I, H), {"I": 40, "H": 56}, {"I": "input", "H": 0}, key=("LSTM",))
    bind(kernel, LSTM(3, 7), 3)            # the same module, this cell's program

This package imports tinyseq (it traces Tensors); tinyseq never imports it.
"""


import hashlib

import numpy as np

from tinyseq.nn import Parameter

from .ir import Op, StepProgram, Value
from . import generic
from .generic import bind, compile_generic, generic_source
from .kernels import Kernel, load, load_path, remembered
from .plan import HOISTED, PER_STEP, SPLIT, WEIGHT, Gemm, MergedGemm, Plan, Split, Stage, make_plan
from .trace import KINDS, SUPPORTED, CompileError, sample_batch, trace

__all__ = ["compile_cell", "compile_generic", "generic_source", "bind", "load_path", "Kernel", "trace", "trace_cached",
           "cache_key", "clear_cache", "CompileError", "StepProgram", "Op", "Value",
           "Plan", "Gemm", "MergedGemm", "Split", "Stage", "make_plan", "sample_batch", "KINDS", "SUPPORTED",
           "HOISTED", "PER_STEP", "SPLIT", "WEIGHT"]

_cache = {}
_kernels = {}  # cache_key -> Kernel, or the CompileError the cell raised

#: attribute types that count as a module's structure in ``cache_key`` (an activation's name, a depth)
_SIMPLE = (str, int, float, bool, type(None), np.generic)


def _attribute(value):
    """An attribute as ``cache_key`` keeps it: a simple value itself, a tuple or list of them,
    an array by its dtype, shape and bytes (a constant the step reads); None for the rest
    (modules and parameters, keyed apart; anything else)."""
    if isinstance(value, _SIMPLE):
        return value
    if isinstance(value, (tuple, list)):
        items = tuple(_attribute(v) for v in value)
        return (type(value).__name__, items) if all(i is not None for i in items) else None
    if isinstance(value, np.ndarray) and not isinstance(value, Parameter):
        return ("array", str(value.dtype), value.shape, hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest())
    return None


def cache_key(cell, input_size, dtype=None):
    """What a traced program depends on: the class and structure of every module in the cell
    (its attributes: an activation's name, a flag, a size, a tuple of them, a constant array
    by its contents; and whether it is training), the parameters' names and shapes, the
    dtype, the input size and the state's arity and sizes. Never T or B."""
    from .trace import _param_dtype, _state_sizes

    structure = []
    for name, m in cell.named_modules():
        attributes = ((k, _attribute(v)) for k, v in vars(m).items() if not k.startswith("_") and k != "training")
        structure.append((name, type(m).__name__, type(m).__module__, bool(getattr(m, "training", True)),
                          tuple(sorted(a for a in attributes if a[1] is not None))))
    params = tuple((name, p.shape) for name, p in cell.named_parameters())
    sizes, state_tuple = _state_sizes(cell)
    return (type(cell), tuple(structure), params, str(_param_dtype(cell, dtype)), int(input_size), sizes, state_tuple)


def trace_cached(cell, input_size, dtype=None):
    """``trace(cell, input_size, dtype)``, or the program traced before for the same ``cache_key``."""
    key = cache_key(cell, input_size, dtype)
    program = _cache.get(key)
    if program is None:
        program = _cache[key] = trace(cell, input_size, dtype)
    return program


def compile_cell(cell, input_size, dtype=None, device="numba"):
    """The ``Kernel`` of ``cell``'s step for ``device`` ("numba": the CPU, or "cuda"), traced,
    generated and imported once per ``cache_key``; a ``CompileError`` (remembered too) if the
    step cannot be compiled."""
    return remembered(_kernels, (cache_key(cell, input_size, dtype), device),
                      lambda: load(trace_cached(cell, input_size, dtype), device))


def clear_cache():
    """Forget every cached program and kernel, generic ones too."""
    _cache.clear()
    _kernels.clear()
    generic.clear_cache()


