"""Size-generic kernels: one generated module per form of a cell, run at any sizes.

The writers (``cpu.py``, ``gpu.py``) write a module for one set of sizes: ``range(5)``,
``gates[b, 10 + j]``, ``x.reshape(steps * batch, 3)``. For a cell whose sizes are its
constructor's arguments (``LSTM(I, H)``), ``generic_source`` finds which of those integers
are sizes by differential emission: it writes the module at the base sizes, again with each
size symbol doubled in turn, and once more at unrelated sizes. The texts must be the same
but for their integers. Each integer that changes is an affine function of the symbols with
integer coefficients, solved from the doublings, checked against the last text and written
as an expression of them (``H``, ``4 * H``, ``I + 2 * H``); the others stay as they are.
Each function of the module then reads the symbols it uses from its own arguments, right
after its ``steps, batch = ...`` line (``I, H = x.shape[2], h_0.shape[1]``); a CUDA kernel
takes them as arguments after ``lengths``.

    kernel = compile_generic(lambda I, H: LSTM(I, H), {"I": 40, "H": 56}, {"I": "input", "H": 0},
                             key=("LSTM",))
    out, finals = run_compiled(bind(kernel, LSTM(3, 7), 3), x, states, params, lengths, reverse)

Where the module is not of that form (the writer chose something by size, a float made from
a size, an integer not affine in the sizes) a ``CompileError`` says the cell is not
size-generic.
"""

import keyword
import re

import numpy as np

from .kernels import load_source, remembered, writer
from .trace import CompileError, _state_sizes, trace

_INTEGER = re.compile(r"\b(\d+)\b")
_DEF = re.compile(r"def (\w+)\((.*)\):")
_kernels = {}  # (key, dtype, device) -> Kernel, or the CompileError the cell raised

#: what may stand right before / after an integer that a sum of symbols replaces unparenthesized
_OPEN_BEFORE = re.compile(r"(?:[(\[{,:=<>+]|\b(?:return|in|and|or|not|if|else))$")
_OPEN_AFTER = re.compile(r"(?:[)\]},:=<>+\-#]|(?:and|or|if|else|for)\b)")


def compile_generic(make_cell, sizes, provides, dtype=np.float32, device="numba", key=None):
    """The ``Kernel`` of a size-generic module for the cells ``make_cell(**sizes)`` makes, at
    any sizes; one per ``key`` (the cell's form: class, options; with ``dtype`` and
    ``device``) in this process, so a layer of new sizes costs nothing after the first.

    ``sizes`` maps each size symbol to the value traced at (at least 2; pick values that no
    two widths of the step share); ``provides`` says where the module reads each symbol:
    "input" (x's last axis) or a state's index (that state's width), e.g. ``{"I": "input",
    "H": 0}``. ``kernel.symbols`` is ``provides``; run it on a cell with ``bind``.
    A ``CompileError`` (remembered too) if the cell is not size-generic."""
    dtype = np.dtype(dtype)
    form = key if key is not None else (make_cell, tuple(sizes.items()), tuple(provides.items()))
    try:
        hash(form)
    except TypeError:
        raise TypeError(f"compile_generic: key must be hashable, got {key!r}") from None

    def make():
        program, source = _generic(make_cell, sizes, provides, dtype, device)
        return load_source(program, source, device, tag="generic", symbols=provides)

    return remembered(_kernels, (form, dtype.name, device), make)


def generic_source(make_cell, sizes, provides, dtype=np.float32, device="numba"):
    """The text of ``compile_generic``'s module, neither written nor imported (to commit it)."""
    return _generic(make_cell, sizes, provides, np.dtype(dtype), device)[1]


def bind(kernel, cell, input_size):
    """The generic ``kernel`` for one ``cell`` of its form: the same module with the cell's
    own program (traced once per structure, ``trace_cached``), from which ``run_compiled``
    takes the weights and the output's width. ``CompileError`` if the cell's step is not the
    one the module was made from (for a module loaded without its program, ``load_path``: if
    the cell's states and the values its step reads are not the module's STATES and WEIGHTS)."""
    from . import trace_cached

    made_from = kernel.program
    program = trace_cached(cell, input_size, None if made_from is None else made_from.dtype)
    if made_from is not None and _form(program) != _form(made_from):
        raise CompileError(f"bind: {type(cell).__name__}'s step is not the step the generic module "
                           f"{kernel.path} was made from ({made_from.cell_class.__name__}): another class, "
                           "other options or another dtype")
    readable = set(program.param_names) | {op.name for op in program.ops if not op.batched}
    if program.state_names != tuple(kernel.module.STATES) or not set(kernel.module.WEIGHTS) <= readable:
        raise CompileError(f"bind: {type(cell).__name__}'s step has states {program.state_names} and reads "
                           f"{sorted(readable)}; the module {kernel.path} takes states {kernel.module.STATES} and "
                           f"reads {kernel.module.WEIGHTS}")
    return kernel.with_program(program)


def _form(program):
    """What a program shares with the same cell's at other sizes: its names, kinds and operands."""
    return (program.cell_class, str(program.dtype), tuple((v.name, v.role, v.batched) for v in program.inputs),
            tuple((o.name, o.kind, o.inputs, o.batched) for o in program.ops), program.y, program.new_state,
            program.state_tuple)


def clear_cache():
    """Forget the generic kernels made in this process."""
    _kernels.clear()


# ---------------------------------------------------------------- differential emission


def _generic(make_cell, sizes, provides, dtype, device):
    """(the program at the base sizes, the generic module's text)."""
    _check(sizes, provides)
    variants = [dict(sizes)] + [dict(sizes, **{s: 2 * v}) for s, v in sizes.items()]
    variants.append({s: v * (k + 3) for k, (s, v) in enumerate(sizes.items())})
    emitted = [_emit(make_cell, v, provides, dtype, device) for v in variants]
    program, base_writer, base = emitted[0]
    name = program.cell_class.__name__
    parts = [_INTEGER.split(text) for _, _, text in emitted]
    for variant, text, split in zip(variants[1:], [e[2] for e in emitted[1:]], parts[1:]):
        if split[0::2] != parts[0][0::2]:
            raise CompileError(f"{name} is not size-generic: its {device} module at {variant} differs from the one at "
                               f"{sizes} in more than integers ({_first_difference(base, text)}): the writer chose "
                               "something by size (two widths equal, a width of 1?) or a float depends on a size")
    symbols = list(sizes)
    pieces, used = list(parts[0]), set()
    for i in range(1, len(pieces), 2):
        values = [int(p[i]) for p in parts]
        if len(set(values)) == 1:
            continue
        coefficients = _solve(name, values, sizes, variants[-1], pieces[i - 1], pieces[i + 1])
        pieces[i] = _expression(coefficients, symbols, pieces[i - 1], pieces[i + 1])
        used.update(s for s in symbols if coefficients[s])
    code = _code_lines(base.splitlines())
    for s in symbols:
        if any(re.search(rf"\b{s}\b", line) for line in code):
            raise CompileError(f"{name}: the size symbol {s!r} is a name in the generated code already; "
                               "call it something else")
    lines = "".join(pieces).splitlines()
    _check_fixed_shapes(name, lines, symbols)
    lines = _read_sizes(name, lines, [s for s in symbols if s in used], provides, base_writer)
    lines[0:1] = [lines[0], "", _sizes_note(provides, program)]
    return program, "\n".join(lines) + "\n"


def _check(sizes, provides):
    if not isinstance(sizes, dict) or not sizes:
        raise TypeError(f"compile_generic: sizes must be a dict of symbol -> size, got {sizes!r}")
    for s, v in sizes.items():
        if not isinstance(s, str) or not s.isidentifier() or keyword.iskeyword(s):
            raise ValueError(f"compile_generic: size symbol {s!r} is not a Python identifier")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"compile_generic: size {s}={v!r} must be an int >= 2 (a width of 1 is written apart)")
    if not isinstance(provides, dict) or set(provides) != set(sizes):
        raise ValueError(f"compile_generic: provides must name where each of {sorted(sizes)} is read, "
                         f"got {provides!r}")
    sources = list(provides.values())
    for s, where in provides.items():
        if where != "input" and (isinstance(where, bool) or not isinstance(where, int) or where < 0):
            raise ValueError(f"compile_generic: provides[{s!r}] must be \"input\" or a state's index, got {where!r}")
    if sources.count("input") != 1 or len(set(sources)) != len(sources):
        raise ValueError(f"compile_generic: provides must read one symbol from the input and each other from a "
                         f"state of its own, got {provides!r}")


def _emit(make_cell, sizes, provides, dtype, device):
    """(program, writer, module text) of ``make_cell(**sizes)``."""
    cell = make_cell(**sizes)
    widths, _ = _state_sizes(cell)
    for s, where in provides.items():
        if where != "input" and (where >= len(widths) or widths[where] != sizes[s]):
            raise ValueError(f"compile_generic: provides says state {where} is {s} wide, but "
                             f"{type(cell).__name__} made with {sizes} has states of widths {widths}")
    input_size = next(sizes[s] for s, where in provides.items() if where == "input")
    program = trace(cell, input_size, dtype)
    out = writer(program, device)
    return program, out, out.source()


def _first_difference(a, b):
    for k, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
        if _INTEGER.sub("0", x) != _INTEGER.sub("0", y):
            return f"line {k + 1}: {x.strip()!r} vs {y.strip()!r}"
    return "one is longer"


def _solve(name, values, sizes, check, before, after):
    """The integer coefficients (symbol -> int, and None -> the constant) of the integer whose
    values in the emissions are ``values``; CompileError if there are none."""
    where = f"{name} is not size-generic: the integer after {before[-40:]!r}"
    if before.endswith(".") or after.startswith(".") or re.search(r"[eE][-+]$", before):
        raise CompileError(f"{where} is part of a float that depends on the sizes ({values[0]} at {sizes})")
    base, coefficients = values[0], {}
    for (s, v), changed in zip(sizes.items(), values[1:-1]):
        if (changed - base) % v:
            raise CompileError(f"{where} is no integer multiple of {s}: {base} at {s}={v}, {changed} at {s}={2 * v}")
        coefficients[s] = (changed - base) // v
    coefficients[None] = base - sum(c * sizes[s] for s, c in coefficients.items() if s is not None)
    if coefficients[None] + sum(c * check[s] for s, c in coefficients.items() if s is not None) != values[-1]:
        raise CompileError(f"{where} is not affine in the sizes: {base} at {sizes}, {values[-1]} at {check}")
    return coefficients


def _expression(coefficients, symbols, before, after):
    """The text of an affine integer: the positive terms in the order of ``symbols``, the
    constant, the negative terms (``I + 2 * H - 1``); in parentheses unless the neighbours
    ``before`` and ``after`` it bind weaker than its own + or *."""
    terms = [(coefficients[s], s) for s in symbols if coefficients[s]] + [(coefficients[None], None)]
    terms = [t for t in terms if t[0] > 0] + [t for t in terms if t[0] < 0]
    text = ""
    for c, s in terms:
        word = str(abs(c)) if s is None else (s if abs(c) == 1 else f"{abs(c)} * {s}")
        text += (("-" if c < 0 else "") if not text else (" - " if c < 0 else " + ")) + word
    prev, nxt = before.rstrip(), after.lstrip()
    if " " not in text and not text.startswith("-"):
        return text
    product = len(terms) == 1 and terms[0][0] > 0
    if (prev == "" or _OPEN_BEFORE.search(prev) or product and prev.endswith(("*", "-")) and not prev.endswith("**")) \
            and (nxt == "" or _OPEN_AFTER.match(nxt) or product and nxt.startswith("*") and not nxt.startswith("**")):
        return text
    return f"({text})"


# ---------------------------------------------------------------- where each function reads the sizes


def _check_fixed_shapes(name, lines, symbols):
    """A CUDA shared or local array's shape must be a number: CompileError where it is a size."""
    for line in _code_lines(lines):
        if re.search(r"\b(?:shared|local)\.array\(", line) and any(re.search(rf"\b{s}\b", line) for s in symbols):
            raise CompileError(f"{name} is not size-generic on this path: a CUDA array's shape must be a number, "
                               f"and here it is a size: {line.strip()!r}")


def _code_lines(lines):
    """Each line's code: '' for the module's and the functions' docstrings, comments cut off."""
    code, in_doc = [], False
    for k, line in enumerate(lines):
        stripped = line.strip()
        if k == 0 and stripped.startswith('"""'):
            in_doc = not (len(stripped) > 3 and stripped.endswith('"""'))
            code.append("")
        elif in_doc:
            in_doc = not stripped.endswith('"""')
            code.append("")
        elif stripped.startswith('"""'):
            code.append("")
        else:
            code.append(line.split("#")[0])
    return code


def _functions(lines):
    """(name, arguments, index of the def line, index past the body) of each top-level function."""
    found = []
    for k, line in enumerate(lines):
        match = _DEF.fullmatch(line)
        if match:
            end = k + 1
            while end < len(lines) and (not lines[end] or lines[end][0] == " "):
                end += 1
            found.append((match[1], [a.strip() for a in match[2].split(",") if a.strip()], k, end))
    return found


def _read_sizes(name, lines, symbols, provides, base_writer):
    """``lines`` with each function reading the symbols it uses: a CUDA kernel as arguments
    right after its ``lengths`` (its launches and signature pass them), the others from their own
    arguments right after their ``steps, batch = ...`` line."""
    for fn, args, start, end in _functions(lines):
        used = _uses(lines[start + 1:end], symbols)
        if used and lines[start - 1] == "@cuda.jit" and "lengths" in args:
            names, before = ", ".join(used), args.index("lengths")
            lines[start] = lines[start].replace("lengths, ", f"lengths, {names}, ", 1)
            launch = re.compile(rf"(launch\({fn}, \*\w+\([^()]*\), (?:[^,()]+(?:\([^()]*\))?, ){{{before}}}lengths)")
            signature = re.compile(rf"(\({fn!r}, {fn}\.py_func, \((?:\w+, ){{{before}}}lengths, )")
            for k, line in enumerate(lines):
                lines[k] = signature.sub(rf"\1{'index, ' * len(used)}", launch.sub(rf"\1, {names}", line))
    inserted = 0
    for fn, args, start, end in _functions(lines):
        start, end = start + inserted, end + inserted
        used = [s for s in _uses(lines[start + 1:end], symbols) if s not in args]
        if not used:
            continue
        body = _code_lines(lines)[start + 1:end]
        steps = next((k for k, line in enumerate(body) if line.strip().startswith("steps, batch = ")), None)
        if steps is None or _uses(body[:steps], used):
            raise CompileError(f"{name}: the generic module's function {fn} uses the sizes {used} and has no "
                               "'steps, batch = ...' line before them to read them after")
        known = set(args)
        for line in body[:steps]:
            if " = " in line:
                known.update(n.strip() for n in line.split(" = ")[0].split(","))
        readers = [_reader(name, fn, s, provides[s], known, base_writer) for s in used]
        indent = body[steps][:len(body[steps]) - len(body[steps].lstrip())]
        lines.insert(start + 1 + steps + 1, f"{indent}{', '.join(used)} = {', '.join(readers)}  # the sizes")
        inserted += 1
    return lines


def _uses(lines, symbols):
    code = "\n".join(_code_lines([""] + list(lines)))
    return [s for s in symbols if re.search(rf"\b{s}\b", code)]


def _reader(name, fn, symbol, where, known, w):
    """How function ``fn`` (whose names so far are ``known``) reads ``symbol`` from ``where``."""
    ident = w.name.of.get
    if where == "input":
        candidates = [f"{x}.shape[2]" for x in (ident(w.s.x), "x")]
    else:
        state = w.p.state_names[where]
        candidates = [f"states[{where}].shape[1]", f"d_states[{where}].shape[1]"]
        candidates += [f"{ident(k)}.shape[1]" for k in (state + "@0", "d@" + state, "carried@" + state)]
        candidates += [f"{ident(state)}.shape[2]"]
    for c in candidates:
        if c.split(".")[0].split("[")[0] in known:
            return c
    raise CompileError(f"{name}: the generic module's function {fn} uses {symbol} but has no argument to read "
                       f"it from ({'x' if where == 'input' else f'state {where}'})")


def _sizes_note(provides, program):
    """The docstring's line on the sizes."""
    parts = [f"{s} = x's features" if where == "input" else
             f"{s} = the width of state {program.state_names[where]} (states[{where}])"
             for s, where in provides.items()]
    return f"For any sizes: {'; '.join(parts)}."
