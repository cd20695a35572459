"""Print (or write) the kernels the compiler generates for a cell: ``python -m tinyseq_jit.generate``.

    python -m tinyseq_jit.generate examples/cell_gallery.py:MGU 32 64
    python -m tinyseq_jit.generate tinyseq.nn:JordanCell 3 5 2 --input-size 3 --dtype float64
    python -m tinyseq_jit.generate examples/cell_gallery.py:LSTM 32 64 --out lstm_kernels.py

The cell is ``FILE.py:Class`` or ``module:Class``, built with the integer arguments that
follow; the input size is the first of them unless ``--input-size`` says otherwise.
"""

import argparse
import importlib
import importlib.util
import os
import sys

import numpy as np


class UsageError(ValueError):
    """A mistake on the command line: reported on one line, exit status 2."""


def load_class(spec):
    """The class named by ``FILE.py:Class`` or ``module:Class``."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise UsageError(f"cell {spec!r}: expected FILE.py:Class or module:Class, e.g. examples/cell_gallery.py:MGU")
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise UsageError(f"cell {spec!r}: no file {where}")
        module_name = os.path.splitext(os.path.basename(where))[0]
        spec_ = importlib.util.spec_from_file_location(module_name, where)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module
        spec_.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise UsageError(f"cell {spec!r}: cannot import {where} ({e})") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise UsageError(f"cell {spec!r}: {where} has no class {name}")
    return cls


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinyseq_jit.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", help="FILE.py:Class or module:Class")
    parser.add_argument("args", nargs="*", type=int, help="the integer arguments the cell is built with")
    parser.add_argument("--input-size", type=int, help="the features of x (default: the first argument)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--out", help="write the module here instead of printing it")
    options = parser.parse_args(argv)
    try:
        from tinyseq_jit.compiler import CompileError, compile_cell

        cls = load_class(options.cell)
        input_size = options.input_size if options.input_size is not None else (options.args or [None])[0]
        if input_size is None:
            raise UsageError("--input-size is needed when the cell takes no arguments")
        try:
            cell = cls(*options.args)
        except TypeError as e:
            raise UsageError(f"cell {options.cell}{tuple(options.args)}: {e}") from None
        cell = cell.to(np.dtype(options.dtype))
        try:
            source = compile_cell(cell, input_size, np.dtype(options.dtype)).source
        except CompileError as e:
            raise UsageError(str(e)) from None
        if options.out:
            with open(options.out, "w", encoding="utf-8") as f:
                f.write(source)
        else:
            sys.stdout.write(source)
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
