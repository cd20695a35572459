"""Write a step's ``Schedule`` out as a Numba module: the fused forward and its BPTT.

The module reads as the step does: one line per op, the cell's own names, a comment with
the line of ``forward`` it came from; the backward lines are the rules of
``tinyseq.derivatives`` written out on the same names (``d_f = ...``). Its layout:

- ``_forward`` (``@jit``): the time loop. Per step: the per-step GEMMs through
  ``cpu/_gemm.py``'s planned product, and per point-wise segment one loop over the batch
  (padded steps skipped: the state is kept, the output stays zero) with one loop over
  the features per group of ops.
- ``_backward`` (``@jit``): the same steps in reverse order, each segment's ops in reverse,
  the gradients of the states carried between steps; the GEMMs' left operands get their
  gradients through the transposed planned product, the weights' are deferred.
- ``forward``/``backward``: the Python around them: the hoisted GEMM over all T*B rows of
  x before the loop; after it, the weight gradients as one GEMM per product over all steps.

Naming: ``h[t, b, j]`` is a value kept for every step, ``t4[b, j]`` one rewritten every step,
``f`` a scalar of the loop; ``d_<name>`` its gradient; ``<left>_w`` the product of ``<left>``
with the weights; ``carried_<state>`` the state between steps.
"""

import keyword
import re

from tinyseq import derivatives

from .schedule import width
from .symbols import Sym, call, sym

_CALLS = {"sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "abs": "abs"}
_INFIX = {"add": "__add__", "sub": "__sub__", "mul": "__mul__", "div": "__truediv__",
          "lt": "__lt__", "le": "__le__", "gt": "__gt__", "ge": "__ge__"}
_RESERVED = {"t", "s", "b", "j", "k", "steps", "batch", "lengths", "reverse", "out", "np", "jit", "dot", "sigmoid",
             "tanh", "exp", "abs", "max", "min", "range", "time_step", "record_norm", "plan_product",
             "product_into", "product_scratch", "grad_norms", "record", "d_out", "total", "forward", "backward",
             "w", "saved", "need_dx", "d_states", "grads", "dtype", "states", "log", "sign", "math", "cuda", "gemm",
             "launch", "grid", "line", "padding", "finals", "d_initial", "F", "numba", "vector", "matrix", "cube",
             "index"}


class _Names:
    """Python identifiers for the program's names: dots become underscores, and a name that
    is taken (a keyword, the loops' own variables, another name) gets a trailing ``_``."""

    def __init__(self):
        self.of, self.taken = {}, set(_RESERVED)

    def __call__(self, name):
        if name not in self.of:
            ident = re.sub(r"\W", "_", name)
            while ident in self.taken or keyword.iskeyword(ident):
                ident += "_"
            self.of[name] = ident
            self.taken.add(ident)
        return self.of[name]


class _Lines:
    def __init__(self):
        self.lines, self.depth = [], 0

    def __call__(self, text=""):
        self.lines.append("    " * self.depth + text if text else "")

    def block(self, header):
        self(header)
        return _Indent(self)


class _Indent:
    def __init__(self, lines):
        self.lines = lines

    def __enter__(self):
        self.lines.depth += 1

    def __exit__(self, *exc):
        self.lines.depth -= 1


def _docstring_safe(text):
    """``text`` as it may stand inside a module docstring: backslashes doubled, a triple
    quote broken (a cell's source line can hold either)."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


_ELEMENT = re.compile(r"\w+\[[\w ,*+]+\]")  # one element of an array: d_gates[b, H + j]


def _code(lines):
    """Whether ``lines`` hold more than comments."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in lines)


def _names(lines):
    """The identifiers ``lines`` use (comments left out)."""
    return {n for line in lines for n in re.findall(r"[A-Za-z_]\w*", line.split("#")[0])}


def _split(pieces):
    """The ops of one backward loop, ``pieces`` = [(op, lines, the scalars it defines)], cut
    into consecutive loops wherever no scalar made before the cut is read after it (the
    arrays carry all that crosses). Each loop then writes fewer arrays at offsets only known
    at run time (``d_gates[b, 3 * H + j]``), which LLVM compiles to faster code: measured on
    the LSTM's backward at B = 4, 10.05 against 10.51 ms uncut (RESULTS, issue 24)."""
    loops, later = [[]], []
    for k in range(len(pieces)):
        later.append(_names([line for _, lines, _ in pieces[k + 1:] for line in lines]))
    made = set()
    for k, piece in enumerate(pieces):
        loops[-1].append(piece)
        made |= piece[2]
        rest = pieces[k + 1:]
        if (not made & later[k] and any(_code(lines) for _, lines, _ in loops[-1])
                and any(_code(lines) for _, lines, _ in rest)):
            loops.append([])
    return [loop for loop in loops if loop]


def _index(offset, index):
    return index if not offset else (str(offset) if index == "0" else f"{offset} + {index}")


class Writer:
    """Writes the module for one ``Schedule`` (``source()``)."""

    split_loops = True  # cut backward loops where nothing scalar crosses (``_split``); not on a GPU

    def __init__(self, sched, module_doc=""):
        self.s, self.p = sched, sched.program
        self.doc = module_doc
        self.name = _Names()
        for v in self.p.inputs:
            self.name(v.name)
        for name in sched.ops:
            self.name(name)
        self.defined = set()  # the scalar gradients written so far in the loop being emitted
        self.coverage = None  # while counting: gradient key -> writes per column and step
        self.single = set()  # gradient arrays each of whose elements one line writes once a step
        self.transposes = self.transposed()
        self.dx_in_loop = True  # whether the backward loop writes x's gradient (known after the dry run)
        self.same = {}  # product result -> the one whose gradient array it shares (equal gradients)
        self.writes = None  # while counting: gradient key -> [(index, value)] of every write, None if not traced
        self.values = {}  # a scalar gradient of the loop being emitted -> what value it holds now
        self.slice_grads = {}  # a slice -> (array, column): its gradient written in its source's (``slice_gradients_in_place``)

    # ------------------------------------------------------------ reading values

    def width(self, name):
        return self.s.widths[name] if name in self.s.widths else self.s.vectors[name]

    def index(self, name, loop_width, offset=0):
        """The feature index of ``name`` in a loop of ``loop_width``: j, or 0 for a width-1 value."""
        return _index(offset, "0" if self.width(name) == 1 and loop_width != 1 else "j")

    def read(self, name, loop_width, offset=0, index=None):
        """One element of ``name`` (a name or a number) as a symbol."""
        if not isinstance(name, str):
            return sym(name)
        idx = index if index is not None else self.index(name, loop_width, offset)
        if name in self.s.alias:
            array, column = self.s.alias[name]
            return Sym(self._at(self.s.storage[array], self.name(array), _index(column, idx)))
        if name in self.s.vectors:
            return Sym(f"{self.name(name)}[{idx}]")
        storage = self.s.storage.get(name, "seq")
        return Sym(self._at(storage, self.name(name), idx))

    @staticmethod
    def _at(storage, ident, idx):
        return {"scalar": ident, "row": f"{ident}[b, {idx}]", "seq": f"{ident}[t, b, {idx}]"}[storage]

    def row(self, name):
        """The whole row of ``name`` for sequence b (an array expression)."""
        if name in self.s.alias:
            array, column = self.s.alias[name]
            cols = f"{column}:{column + self.width(name)}"
            at = self.s.storage[array]
            return f"{self.name(array)}[{'t, ' if at == 'seq' else ''}b, {cols}]"
        storage = self.s.storage.get(name, "seq")
        return f"{self.name(name)}[{'t, ' if storage == 'seq' else ''}b]"

    # ------------------------------------------------------------ gradients

    def d_alias(self, name):
        """(array, column) where ``name``'s gradient lives in another's gradient array, or None:
        a slice read in place (``s.alias``), or a slice whose gradient is written at its columns
        of its source's (``slice_gradients_in_place``)."""
        return self.s.alias.get(name) or self.slice_grads.get(name)

    def d_ident(self, name):
        key = self.d_key(name)
        return self.name("d@" + self.same.get(key, key))

    def d_target(self, name, loop_width, offset=0, index=None):
        """Where the gradient of one element of ``name`` accumulates: (text, is_scalar_local)."""
        idx = index if index is not None else self.index(name, loop_width, offset)
        ident = self.d_ident(name)
        if self.d_alias(name):
            array, column = self.d_alias(name)
            return self._at(self.s.d_storage.get(array, "seq"), ident, _index(column, idx)), False
        if name in self.s.vectors:
            return f"{ident}[{idx}]", False
        storage = self.s.d_storage.get(name, "seq")
        if storage == "scalar":
            return ident, True
        return self._at(storage, ident, idx), False

    def accumulate(self, out, name, expr, loop_width, offset=0, index=None, shared=False):
        target, local = self.d_target(name, loop_width, offset, index)
        text = sym(expr).text
        if local and target not in self.defined:
            self.defined.add(target)
            self.values[target] = self.value(text)
            out(f"{target} = {text}")
            return
        idx = index if index is not None else self.index(name, loop_width, offset)
        broadcast = "j" not in idx and loop_width != 1
        if local:
            self.values[target] = object()  # += changed it
        else:
            ident = self.d_ident(name)
            for read in [r for r in self.values if r.startswith(ident + "[")]:
                del self.values[read]  # an element of this array changes: what its reads held is gone
            self.cover(name, offset, loop_width, broadcast)
            if self.writes is not None and name not in self.s.vectors:  # what cover counted: this write
                self.writes[self.d_key(name)][-1] = (loop_width, target[len(self.d_ident(name)):], self.values.get(text))
        if self.d_key(name) not in self.same:  # else the array it shares gets the same value on its own line
            self.write(out, name, target, sym(expr), shared or broadcast or name in self.s.vectors)

    def value(self, text):
        """What the expression ``text`` holds, as a token equal for equal values: a scalar
        gradient's current value, one token per array element read until that array is written
        (``d_t2 = d_gates[b, j]`` and ``d_t5 = d_gates[b, j]`` hold the same), else a new one."""
        if text in self.values:
            return self.values[text]
        if _ELEMENT.fullmatch(text):
            return self.values.setdefault(text, object())
        return object()

    def write(self, out, name, target, expr, shared):
        """The line that adds ``expr`` into ``target``, the gradient of ``name`` (``shared``: other
        loop iterations write the same element: a parameter's, a broadcast value's, a slice's)."""
        named = f"  # d_{self.name(name)}" if name in self.slice_grads else ""  # the slice's gradient, by its name
        out(f"{target} {self.assign(name)} {expr.text}{named}")

    def assign(self, name):
        """``=`` where one write a step covers each element of ``name``'s gradient, else ``+=``."""
        return "=" if self.d_key(name) in self.single else "+="

    def d_key(self, name):
        """What a gradient is written into: the product's array for a product, else the name."""
        return self.d_alias(name)[0] if self.d_alias(name) else name

    def cover(self, name, offset=0, count=None, broadcast=False):
        """Count (while counting) one write a step of ``count`` columns of ``name``'s gradient
        from ``offset`` (all of them by default); ``broadcast``: all into one column."""
        if self.coverage is None or name in self.s.vectors:
            return
        key = self.d_key(name)
        if self.writes is not None:
            self.writes.setdefault(key, []).append(None)  # a write; accumulate says what it writes
        base = self.d_alias(name)[1] if self.d_alias(name) else 0
        size = self.seq_width(key) if self.d_alias(name) else self.width(name)
        columns = self.coverage.setdefault(key, [0] * size)
        count = self.width(name) if count is None else count
        for c in ([base + offset] * count if broadcast else range(base + offset, base + offset + count)):
            columns[c] += 1

    def d_read(self, name, loop_width):
        target, local = self.d_target(name, loop_width)
        if local and target not in self.defined:
            return None  # nothing reached it
        return Sym(target)

    def d_row(self, name):
        if self.d_alias(name):
            array, column = self.d_alias(name)
            at = self.s.d_storage.get(array, "seq")
            return f"{self.d_ident(name)}[{'t, ' if at == 'seq' else ''}b, {column}:{column + self.width(name)}]"
        storage = self.s.d_storage.get(name, "seq")
        return f"{self.d_ident(name)}[{'t, ' if storage == 'seq' else ''}b]"

    # ------------------------------------------------------------ one op

    def expression(self, name, w):
        op = self.s.ops[name]
        if op.kind == "parts":
            total = self.read(op.inputs[0], w)
            for part in op.inputs[1:]:
                total = total + self.read(part, w)
            return total
        if op.kind == "getitem":
            (start, _, _), = op.attr("index")
            return self.read(op.inputs[0], w, offset=start)
        if op.kind == "reshape":  # of a row to a row of as many features: the same numbers
            return self.read(op.inputs[0], w)
        args = [self.read(a, w) for a in op.inputs]
        if op.kind in _INFIX:
            return getattr(args[0], _INFIX[op.kind])(args[1])
        if op.kind == "neg":
            return -args[0]
        if op.kind == "relu":
            return call("max", args[0], 0.0)
        if op.kind == "where":
            cond = args[2] if len(args) == 3 else self.read(f"{name}.mask", w)
            return cond.select(args[0], args[1])
        return call(_CALLS[op.kind], args[0])

    def define(self, out, name, w):
        """The forward line of op ``name`` in a loop of width ``w``."""
        expr = self.expression(name, w)
        storage = self.s.storage[name]
        out(f"{self._at(storage, self.name(name), 'j')} = {expr.text}")

    def derivative(self, out, name, w):
        """The backward lines of op ``name`` (its inputs' gradients from its own)."""
        op = self.s.ops[name]
        if name not in self.s.grads or self.d_alias(name):  # a slice's gradient written in its source's: nothing to add
            return
        g = self.d_read(name, w)
        if g is None:
            return
        if op.kind in ("parts", "reshape"):
            for part in op.inputs:
                self.accumulate(out, part, g, w)
            return
        if op.kind == "getitem":
            (start, _, _), = op.attr("index")
            self.accumulate(out, op.inputs[0], g, w, offset=start, shared=True)  # slices may overlap
            return
        for position, (a, rule) in enumerate(zip(op.inputs, derivatives.RULES[op.kind])):
            if not isinstance(a, str) or a not in self.s.grads or (op.kind == "where" and position == 2):
                continue
            values = {"g": g, "out": self.read(name, w)}
            for what in derivatives.reads(op.kind, position):
                if what in "ab":
                    values[what] = self.read(op.inputs["ab".index(what)], w)
                elif what == "cond":
                    values[what] = self.read(op.inputs[2], w) if len(op.inputs) == 3 else self.read(f"{name}.mask", w)
            rule_args = [values[p] for p in _parameters(rule)]
            self.accumulate(out, a, rule(*rule_args), w)

    # ------------------------------------------------------------ the module

    def slices_in_place(self):
        """Let a slice of the features kept in an array for the step (a row, or kept over T) be
        read in place, at its columns of that array, as a product's result is, and its gradient
        be written there: no row of its own to copy into and out of every step. (Not a slice a
        product takes, nor one backward reads from a row: that keeps only its own columns over T.)"""
        s = self.s
        lefts = {m.left for m in self.gemm_weights()}  # a product takes its left operand's whole rows
        for op in self.p.ops:
            name = op.name
            if op.kind != "getitem" or name not in s.ops or s.storage.get(name) not in ("row", "seq") or name in lefts:
                continue
            source = op.inputs[0]
            if source in s.alias:
                array, column = s.alias[source]
            elif s.storage.get(source) in ("row", "seq") and source in s.ops:
                array, column = source, 0
            else:
                continue
            if s.storage[name] == "seq" and s.storage[array] != "seq":
                continue  # backward reads it: kept over T, and only its columns
            (start, _, _), = op.attr("index")
            s.alias[name] = (array, column + start)
            s.storage[name] = "alias"

    def slice_gradients_in_place(self):
        """Let the gradient of a slice that lives in one loop (no row of its own) be written at
        its columns of its source's gradient array as it is made, not kept in a scalar and
        copied there by the slice's own line at the end: ``d_gates[b, 3 * H + j] = ...`` where
        ``d_o_in`` is made. Then nothing made early in the loop is carried to its end, and the
        loop can be split there (``backward_group``)."""
        s = self.s
        for op in self.p.ops:
            name = op.name
            if op.kind != "getitem" or name not in s.ops or name in s.alias or name not in s.grads:
                continue
            source = op.inputs[0]
            if s.d_storage.get(name) != "scalar" or source not in s.grads:
                continue
            array, column = self.d_alias(source) or (source, 0)
            if s.d_storage.get(array) not in ("row", "seq") or array == s.x:
                continue
            (start, _, _), = op.attr("index")
            self.slice_grads[name] = (array, column + start)

    def source(self):
        self.slices_in_place()
        if self.split_loops:
            self.slice_gradients_in_place()
        self.coverage, self.writes = {}, {}
        self.backward_loop(_Lines())  # a dry run counts the writes into each gradient
        self.single = {key for key, columns in self.coverage.items() if all(c == 1 for c in columns)
                       and key not in self.p.state_names and key != self.s.x}
        self.dx_in_loop = self.s.x in self.coverage
        self.same = self.same_gradients()
        self.coverage = self.writes = None
        out = _Lines()
        self.header(out)
        self.forward_loop(out)
        self.backward_loop(out)
        self.wrappers(out)
        return "\n".join(out.lines) + "\n"

    def docstring(self, out):
        """The module's docstring: what it is, and the traced step it was generated from."""
        out('"""' + self.doc.strip())
        out()
        out("Generated by tinyseq_jit.compiler from this step (do not edit: the cell is the source):")
        out()
        for line in str(self.p).splitlines():
            out("    " + _docstring_safe(line))
        out('"""')
        out()

    def header(self, out):
        self.docstring(out)
        out("import math")
        out()
        out("import numpy as np")
        out()
        out("from tinyseq_jit._jit import jit")
        out("from tinyseq_jit.cpu._common import record_norm, time_step")
        out("from tinyseq_jit.cpu._gemm import dot, plan_product, product_into, product_scratch")
        out("from tinyseq_jit.cpu._math import exp, sigmoid, tanh")
        out()
        out("log, sign = math.log, np.sign")
        out()
        out(f"STATES = {self.p.state_names!r}")
        out(f"WEIGHTS = {self.weight_names()!r}  # what the step reads besides x and the state")
        out()

    # what the kernels read besides x and the state

    def gemm_weights(self):
        gemms = [m for s in self.s.steps if s.kind == "gemm" for m in s.gemms]
        return gemms

    def product_weights(self):
        """The weights the products read, as the step names them."""
        merged = ([self.s.hoisted] if self.s.hoisted else []) + self.gemm_weights()
        return tuple(dict.fromkeys(g.weight for m in merged for g in m.products))

    def transposed(self):
        """{weight: parameter} for the products' weights that the step makes as ``W.T`` of a
        parameter W read nowhere else (one W may be transposed for several products): the
        kernels take W and transpose it themselves, so the engine records no transpose per
        call, and W's gradient is the products', untransposed."""
        params = {v.name for v in self.p.inputs if v.role == "param"}
        weights = self.product_weights()
        found = {}
        for op in self.p.ops:
            if (op.kind == "transpose" and not op.batched and len(op.shape) == 2 and op.inputs[0] in params
                    and op.name in weights and op.name not in self.s.vectors):
                found[op.name] = op.inputs[0]
        readers = [a for op in self.p.ops if op.name not in found for a in op.inputs]
        readers += [w for w in weights if w not in found] + list(self.s.vectors)
        return {w: param for w, param in found.items() if param not in readers}

    def weight_source(self, weight):
        """(what the kernels take for a product's ``weight``, whether it is transposed)."""
        param = self.transposes.get(weight)
        return (weight, False) if param is None else (param, True)

    def weight_names(self):
        names = [self.weight_source(w)[0] for w in self.product_weights()]
        names += [n for n in self.s.vectors if not n.endswith(".mask")]
        return tuple(dict.fromkeys(names))

    def trainable(self):
        """The weights that take a gradient (not constants)."""
        return tuple(n for n in self.weight_names() if n not in self.p.constants)

    def vector_args(self):
        return [self.name(n) for n in self.s.vectors]

    def plan_args(self, back=False):
        suffix = "@back" if back else "@plan"
        return [self.name(self.s.gemm_result(m) + suffix) for m in self.gemm_weights()]

    def seq_values(self):
        """The (T, B, n) arrays the forward fills for backward, by name: the states entering
        each step, products and values backward reads."""
        names = list(self.p.state_names)
        names += [self.s.gemm_result(m) for m in self.gemm_weights() if self.s.storage[self.s.gemm_result(m)] == "seq"]
        names += [n for n in self.s.ops if self.s.storage[n] == "seq"]
        return names

    def same_gradients(self):
        """{product result: an earlier one} for the products whose gradient arrays would hold the
        same numbers (the dry run's writes): each written whole once a step, by lines of the same
        loops that write the same scalar at the same columns, as x_w and h_w of x W + h U + b.
        Backward keeps one array for them."""
        s, first, same = self.s, {}, {}
        for key in ([f"{s.x}@w"] if s.hoisted else []) + [s.gemm_result(m) for m in self.gemm_weights()]:
            writes = self.writes.get(key)
            if key in self.single and writes and all(w is not None and w[2] is not None for w in writes):
                same[key] = first.setdefault((self.seq_width(key), tuple(writes)), key)
        return {key: kept for key, kept in same.items() if key != kept}

    def d_seq_keys(self):
        """The (T, B, n) gradient arrays the backward loop writes, by key: x's (unless only the
        hoisted product reads x: then dx is one GEMM after the loop) and the products' results'."""
        s = self.s
        keys = [s.x] if self.dx_in_loop or not s.hoisted else []
        keys += ([f"{s.x}@w"] if s.hoisted else []) + [s.gemm_result(m) for m in self.gemm_weights()]
        return list(dict.fromkeys(self.same.get(key, key) for key in keys))

    def padded_lefts(self):
        """The left operands of per-step products made by the step: kept over T for the weight
        gradient's GEMM, which reads their padded steps too (the loops leave them unwritten)."""
        return {m.left for m in self.gemm_weights() if m.left in self.s.ops}

    def seq_width(self, name):
        if name == f"{self.s.x}@w":
            return self.s.hoisted.columns[-1][1]
        for m in self.gemm_weights():
            if self.s.gemm_result(m) == name:
                return m.columns[-1][1]
        return self.width(name)

    def rows(self):
        """The (B, n) arrays a step rewrites: op values read across loops, per-step products."""
        names = [self.s.gemm_result(m) for m in self.gemm_weights() if self.s.storage[self.s.gemm_result(m)] == "row"]
        names += [n for n in self.s.ops if self.s.storage[n] == "row"]
        return names

    def forward_loop(self, out):
        p, s = self.p, self.s
        x = self.name(s.x)
        states = [self.name(n) for n in p.state_names]
        args = ([x] + ([self.name(f"{s.x}@w")] if s.hoisted else []) + [self.name(n + "@0") for n in p.state_names]
                + self.vector_args() + self.plan_args() + ["lengths", "reverse", "out"]
                + [self.name(n) for n in self.seq_values()])
        out("@jit")
        with out.block(f"def _forward({', '.join(args)}):"):
            out('"""The recurrence over all steps; returns the final states and fills out and the kept values."""')
            out(f"steps, batch = {x}.shape[0], {x}.shape[1]")
            for n in p.state_names:
                out(f"{self.name('carried@' + n)} = {self.name(n + '@0')}.copy()")
            for n in self.rows():
                out(f"{self.name(n)} = np.empty((batch, {self.seq_width(n)}), dtype={x}.dtype)")
            for m in self.gemm_weights():
                r = self.s.gemm_result(m)
                out(f"{self.name(r + '@scratch')} = product_scratch(batch, {self.name(r + '@plan')})")
            with out.block("for s in range(steps):"):
                out("t = time_step(s, steps, reverse)")
                with out.block("for b in range(batch):"):
                    self.feature_loops(out, [(self.width(n), f"{self.name(n)}[t, b, j] = {self.name('carried@' + n)}[b, j]"
                                                             "  # the state step t starts from, kept for backward")
                                             for n in p.state_names])
                for step in s.steps:
                    if step.kind == "gemm":
                        for m in step.gemms:
                            r = self.s.gemm_result(m)
                            out(f"product_into({self.row_left(m.left)}, {self.name(r + '@plan')}, "
                                f"{self.name(r + '@scratch')}, {self.name(r)}{'[t]' if s.storage[r] == 'seq' else ''})"
                                f"  # {self.name(r)} = {self.name(m.left)} @ {self.products(m)}")
                        continue
                    with out.block("for b in range(batch):"):
                        with out.block("if t >= lengths[b]:"):
                            out("continue")
                        for group in step.groups:
                            self.forward_group(out, group)
                with out.block("for b in range(batch):"):
                    with out.block("if t < lengths[b]:"):
                        lines = [(self.width(p.y), f"out[t, b, j] = {self.read(p.y, self.width(p.y)).text}")]
                        lines += [(self.width(n), f"{self.name('carried@' + n)}[b, j] = {self.read(new, self.width(n)).text}")
                                  for n, new in zip(p.state_names, p.new_state) if new != n]
                        self.feature_loops(out, lines)
            carried = [self.name('carried@' + n) for n in p.state_names]
            out(f"return {', '.join(carried)}{',' if len(carried) == 1 else ''}")
        out()
        out()

    @staticmethod
    def feature_loops(out, lines):
        """(width, line) pairs of element j of sequence b, in order: one ``for j`` loop per run
        of one width (Numba runs such a loop faster than the same row's slice operations: 15 us
        of 100 in a small Elman RNN's backward)."""
        runs = []
        for w, line in lines:
            if runs and runs[-1][0] == w:
                runs[-1][1].append(line)
            else:
                runs.append((w, [line]))
        for w, texts in runs:
            with out.block(f"for j in range({w}):"):
                for line in texts:
                    out(line)

    def row_left(self, left):
        """The (B, K) left operand of a product at step t (a product's result: its array)."""
        if left in self.s.alias:
            left = self.s.alias[left][0]
        storage = self.s.storage.get(left, "seq")
        return f"{self.name(left)}[t]" if storage == "seq" else self.name(left)

    def comment(self, out, name, last):
        op = self.s.ops[name]
        if op.line != last[0]:
            out(f"# line {op.line}: {op.source}")
            last[0] = op.line

    def forward_group(self, out, group):
        last = [None]
        if group.kind == "sum":
            (name,) = group.ops
            op = self.s.ops[name]
            self.comment(out, name, last)
            src = op.inputs[0]
            n = self.width(src)
            out("total = 0.0")
            with out.block(f"for j in range({n}):"):
                out(f"total += {self.read(src, n).text}")
            out(f"{self._at(self.s.storage[name], self.name(name), '0')} = total")
            return
        if group.kind == "cat":
            (name,) = group.ops
            self.comment(out, name, last)
            offset = 0
            for part in self.s.ops[name].inputs:
                n = self.width(part)
                with out.block(f"for j in range({n}):"):
                    out(f"{self._at(self.s.storage[name], self.name(name), _index(offset, 'j'))} = "
                        f"{self.read(part, n).text}")
                offset += n
            return
        made = [name for name in group.ops if name not in self.s.alias]  # a slice read in place needs no line
        if made:
            with out.block(f"for j in range({group.width}):"):
                for name in made:
                    self.comment(out, name, last)
                    self.define(out, name, group.width)

    def backward_group(self, out, group):
        self.defined, self.values = set(), {}
        last = [None]
        if group.kind == "sum":
            (name,) = group.ops
            if name not in self.s.grads:
                return
            src = self.s.ops[name].inputs[0]
            n = self.width(src)
            g = self.d_target(name, 1, index="0")[0]
            with out.block(f"for j in range({n}):"):
                self.accumulate(out, src, Sym(g), n)
            return
        if group.kind == "cat":
            (name,) = group.ops
            if name not in self.s.grads:
                return
            offset = 0
            for part in self.s.ops[name].inputs:
                n = self.width(part)
                if part in self.s.grads:
                    g = self.d_target(name, n, offset=offset)[0]
                    with out.block(f"for j in range({n}):"):
                        self.accumulate(out, part, Sym(g), n)
                offset += n
            return
        pieces = []  # per op, last first: (op, its lines, the scalars it defines)
        for name in reversed(group.ops):
            before, lines = set(self.defined), _Lines()
            self.comment(lines, name, last)
            self.derivative(lines, name, group.width)
            pieces.append((name, lines.lines, self.defined - before))
        if not any(_code(lines) for _, lines, _ in pieces):
            return  # nothing here takes a gradient (a comparison)
        recomputed = {self.name(n): f"{self.name(n)} = {self.expression(n, group.width).text}  # recomputed"
                      for n in group.recompute}
        for loop in _split(pieces) if self.split_loops else [pieces]:
            with out.block(f"for j in range({group.width}):"):
                body = [line for _, lines, _ in loop for line in lines]
                body = [line for k, line in enumerate(body)  # not a comment over no line of its own
                        if not line.startswith("#") or (k + 1 < len(body) and not body[k + 1].startswith("#"))]
                if not body[0].startswith("#"):  # a loop split within one line of the cell
                    first = self.s.ops[next(name for name, lines, _ in loop if _code(lines))]
                    body.insert(0, f"# line {first.line}: {first.source}")
                needed = _names(body)
                for ident in reversed(list(recomputed)):  # the values it reads, and theirs
                    if ident in needed:
                        needed |= _names([recomputed[ident]])
                for ident, line in recomputed.items():
                    if ident in needed:
                        out(line)
                out.lines += ["    " * out.depth + line for line in body]

    def backward_loop(self, out):
        p, s = self.p, self.s
        x = self.name(s.x)
        states = [self.name(n) for n in p.state_names]
        d_seq = [self.d_ident(key) for key in self.d_seq_keys()]
        args = (["d_out"] + [self.d_ident(n) for n in p.state_names] + self.vector_args() + self.plan_args(back=True)
                + ["lengths", "reverse"] + [self.name(n) for n in self.seq_values()]
                + ([self.name(f"{s.x}@w")] if s.hoisted else []) + [x] + d_seq
                + [self.d_ident(n) for n in self.s.vectors if not n.endswith(".mask") and n in self.trainable()]
                + ["grad_norms"])
        out("@jit")
        with out.block(f"def _backward({', '.join(args)}):"):
            out('"""BPTT over all steps: takes the final states\' gradients in d_<state> and returns the '
                'initial states\'; fills the gradient arrays."""')
            out("steps, batch = d_out.shape[0], d_out.shape[1]")
            out("record = grad_norms.shape[1] > 0")
            d_rows = [n for n in self.s.ops if self.s.d_storage[n] == "row" and n in self.s.grads and n not in self.s.alias]
            for n in d_rows:
                out(f"{self.d_ident(n)} = np.zeros((batch, {self.width(n)}), dtype=d_out.dtype)")
            d_rows = [n for n in d_rows if n not in self.single]  # the others are written whole every step
            for m in self.gemm_weights():
                r = self.s.gemm_result(m)
                out(f"{self.name(r + '@back@out')} = np.empty((batch, {m.products[0].rows[1] - m.products[0].rows[0]}), "
                    "dtype=d_out.dtype)")
                out(f"{self.name(r + '@back@scratch')} = product_scratch(batch, {self.name(r + '@back')})")
            with out.block("for s in range(steps):"):
                out("t = time_step(s, steps, not reverse)  # BPTT runs the other way")
                with out.block("for b in range(batch):"):
                    with out.block("if t >= lengths[b]:"):
                        out("continue")
                    firsts = [new for n, new in zip(p.state_names, p.new_state) if new != n]
                    firsts += [p.y] if p.y in self.s.grads else []
                    whole = {name for name in firsts if name in d_rows}  # written whole first: no zeros needed
                    lines = [(self.width(n), f"{self.d_target(n, self.width(n))[0]} = 0.0") for n in d_rows
                             if n not in whole]
                    written = set()
                    for n, new in zip(p.state_names, p.new_state):
                        if new != n:
                            self.cover(new)
                            assign = "=" if new in whole - written else self.assign(new)
                            written.add(new)
                            w = self.width(n)
                            lines.append((w, f"{self.d_target(new, w)[0]} {assign} {self.d_target(n, w)[0]}"
                                             "  # the gradient carried from step t + 1"))
                    lines += [(self.width(n), f"{self.d_target(n, self.width(n))[0]} = 0.0")
                              for n, new in zip(p.state_names, p.new_state) if new != n]
                    if p.y in self.s.grads:
                        self.cover(p.y)
                        assign = "=" if p.y in whole - written else self.assign(p.y)
                        lines.append((self.width(p.y), f"{self.d_target(p.y, self.width(p.y))[0]} {assign} d_out[t, b, j]"))
                    self.feature_loops(out, lines)
                for step in reversed(s.steps):
                    if step.kind == "gemm":
                        for m in step.gemms:
                            made = [(k, new) for k, new in enumerate(p.new_state) if new in {g.result for g in m.products}]
                            if made:  # a new state this product makes: its gradient is whole here
                                with out.block("if record:"):
                                    with out.block("for b in range(batch):"):
                                        with out.block("if t < lengths[b]:"):
                                            for k, new in made:
                                                out(f"record_norm(grad_norms, {k}, t, b, {self.d_row(new)})")
                            self.backward_gemm(out, m)
                        continue
                    with out.block("for b in range(batch):"):
                        with out.block("if t >= lengths[b]:"):
                            out("continue")
                        for group in reversed(step.groups):
                            self.backward_group(out, group)
                            for k, new in enumerate(p.new_state):
                                if new in group.ops:
                                    with out.block("if record:"):
                                        out(f"record_norm(grad_norms, {k}, t, b, {self.d_row(new)})")
                unchanged = [(k, n) for k, (n, new) in enumerate(zip(p.state_names, p.new_state)) if n == new]
                if unchanged:
                    with out.block("if record:"):
                        with out.block("for b in range(batch):"):
                            with out.block("if t < lengths[b]:"):
                                for k, n in unchanged:
                                    out(f"record_norm(grad_norms, {k}, t, b, {self.d_row(n)})")
            d_states = [self.d_ident(n) for n in p.state_names]
            out(f"return {', '.join(d_states)}{',' if len(d_states) == 1 else ''}")
        out()
        out()

    def backward_gemm(self, out, m):
        r = self.s.gemm_result(m)
        back = self.name(r + "@back")
        k = m.products[0].rows[1] - m.products[0].rows[0]
        back_out, back_scratch = self.name(r + "@back@out"), self.name(r + "@back@scratch")
        out(f"product_into({self.d_ident(r)}[t], {back}, {back_scratch}, {back_out})  "
            f"# {self.d_ident(m.left)} += {self.d_ident(r)} @ ({self.products(m)}).T")
        with out.block("for b in range(batch):"):
            with out.block("if t < lengths[b]:"):
                with out.block(f"for j in range({k}):"):
                    target, _ = self.d_target(m.left, k)
                    self.cover(m.left)
                    out(f"{target} {self.assign(m.left)} {back_out}[b, j]")

    def wrappers(self, out):
        p, s = self.p, self.s
        x = self.name(s.x)
        states = [self.name(n) for n in p.state_names]
        seq = self.seq_values()
        with out.block("def forward(x, states, w, lengths, reverse):"):
            out('"""The fused forward over x (T, B, I) from ``states`` (the tuple of (B, n) arrays); ``w`` maps '
                'WEIGHTS to arrays, ``lengths`` (B,) int64. Returns (out, final states, saved)."""')
            if x != "x":
                out(f"{x} = x")
            out(f"steps, batch = {x}.shape[0], {x}.shape[1]")
            out(f"dtype = {x}.dtype")
            if s.hoisted:
                xw = self.name(f"{s.x}@w")
                out(f"{self.name(f'{s.x}@weights')} = {self.merged(s.hoisted)}")
                n = s.hoisted.columns[-1][1]
                out(f"{xw} = dot({x}.reshape(steps * batch, {self.width(s.x)}), {self.name(f'{s.x}@weights')})"
                    f".reshape(steps, batch, {n})  # the hoisted GEMM over all steps")
            for v in s.vectors:
                source = f'w["{v}"]' if not v.endswith(".mask") else f'w["{v}"]'
                out(f"{self.name(v)} = np.ascontiguousarray({source}, dtype=dtype).reshape(-1)")
            for m in self.gemm_weights():
                r = s.gemm_result(m)
                out(f"{self.name(r + '@weights')} = {self.merged(m)}")
                out(f"{self.name(r + '@plan')} = plan_product({self.name(r + '@weights')}, batch)")
            out(f"out = np.zeros((steps, batch, {self.width(p.y)}), dtype=dtype)")
            for n in seq:
                make = "zeros" if n in self.padded_lefts() else "empty"  # a weight GEMM reads every step
                out(f"{self.name(n)} = np.{make}((steps, batch, {self.seq_width(n)}), dtype=dtype)")
            args = ([x] + ([self.name(f"{s.x}@w")] if s.hoisted else []) + [f"states[{k}]" for k in range(len(states))]
                    + self.vector_args() + self.plan_args() + ["lengths", "reverse", "out"] + [self.name(n) for n in seq])
            out(f"finals = _forward({', '.join(args)})")
            kept = [x] + ([self.name(f"{s.x}@w"), self.name(f"{s.x}@weights")] if s.hoisted else [])
            kept += [self.name(n) for n in seq] + [self.name(s.gemm_result(m) + "@weights") for m in self.gemm_weights()]
            kept += self.vector_args()
            out(f"return out, finals, ({', '.join(kept)}, lengths, reverse)")
        out()
        out()
        with out.block("def backward(saved, d_out, d_states, need_dx=True, grad_norms=None):"):
            out('"""BPTT through ``forward``: from the gradients of out (T, B, n) and of the final states, '
                'returns (dx or None, the initial states\' gradients, {weight name: gradient}). '
                '``grad_norms``: None or a zeroed (S, T, B) array that gets ||dL/d state_t||."""')
            kept = [x] + ([self.name(f"{s.x}@w"), self.name(f"{s.x}@weights")] if s.hoisted else [])
            kept += [self.name(n) for n in seq] + [self.name(s.gemm_result(m) + "@weights") for m in self.gemm_weights()]
            kept += self.vector_args()
            out(f"{', '.join(kept)}, lengths, reverse = saved")
            out(f"steps, batch = {x}.shape[0], {x}.shape[1]")
            out(f"d_out = np.ascontiguousarray(d_out, dtype={x}.dtype)")
            out(f"if grad_norms is None:")
            out(f"    grad_norms = np.empty(({len(states)}, 0, 0), dtype={x}.dtype)")
            for k, n in enumerate(p.state_names):
                out(f"{self.d_ident(n)} = np.array(d_states[{k}], dtype={x}.dtype)")
            keys = self.d_seq_keys()
            whole = [self.d_ident(key) for key in keys if key in self.single]
            for key in keys:
                d, make = self.d_ident(key), "empty" if key in self.single else "zeros"
                for other in [k for k, kept in self.same.items() if kept == key]:
                    out(f"# {d} is {self.name('d@' + other)} too: the step gives {self.name(key)} and {self.name(other)} "
                        "the same gradient")
                if key == s.x:
                    out(f"{d} = np.{make}_like({x})")
                elif key == f"{s.x}@w":
                    out(f"{d} = np.{make}_like({self.name(key)})")
                else:
                    out(f"{d} = np.{make}((steps, batch, {self.seq_width(key)}), dtype={x}.dtype)")
            if whole:
                with out.block("if (lengths < steps).any():"):
                    out("padding = np.arange(steps)[:, None] >= lengths[None, :]  # the loops leave these steps unwritten")
                    for d in whole:
                        out(f"{d}[padding] = 0.0")
            trainable_vectors = [v for v in s.vectors if not v.endswith(".mask") and v in self.trainable()]
            for v in trainable_vectors:
                out(f"{self.d_ident(v)} = np.zeros_like({self.name(v)})")
            for m in self.gemm_weights():
                r = s.gemm_result(m)
                out(f"{self.name(r + '@back')} = plan_product({self.name(r + '@weights')}.T, batch)")
            args = (["d_out"] + [self.d_ident(n) for n in p.state_names] + self.vector_args() + self.plan_args(back=True)
                    + ["lengths", "reverse"] + [self.name(n) for n in seq]
                    + ([self.name(f"{s.x}@w")] if s.hoisted else []) + [x] + [self.d_ident(key) for key in keys]
                    + [self.d_ident(v) for v in trainable_vectors] + ["grad_norms"])
            out(f"d_initial = _backward({', '.join(args)})")
            out("# after the loop: each product's weight gradient as one GEMM over all steps")
            self.weight_grads(out, lambda d, left, n, k: f"dot({d}.reshape(steps * batch, {n}).T, "
                              f"{left}.reshape(steps * batch, {k}))  # transposed: OpenBLAS runs d^T a faster than a^T d")
            rows = "steps * batch"
            if s.hoisted:
                out("if need_dx:")
                out(f"    {self.d_ident(s.x)} {'+=' if s.x in keys else '='} dot({self.d_ident(f'{s.x}@w')}.reshape({rows}, "
                    f"{s.hoisted.columns[-1][1]}), {self.name(f'{s.x}@weights')}.T).reshape({x}.shape)")
            for v in trainable_vectors:
                out(f'grads["{v}"] = {self.d_ident(v)}.reshape({self.weight_shape(v)})')
            out(f"return ({self.d_ident(s.x)} if need_dx else None), d_initial, grads")
        out()

    def weight_grads(self, out, product):
        """The lines after the loop that give each product's weights their gradient: one GEMM
        per product, ``product(d, left, n, k)`` the text of d^T left, (n, k), then each weight's
        rows taken from it (one product's rows as they are, several stacked, or added where they
        overlap)."""
        s, x = self.s, self.name(self.s.x)
        out("grads = {}")
        pieces = {}  # weight -> [((first row, last row), text)]
        for m, left in ([(s.hoisted, s.x)] if s.hoisted else []) + [(m, m.left) for m in self.gemm_weights()]:
            r = f"{s.x}@w" if m is s.hoisted else s.gemm_result(m)
            d_w = self.name(f"d@{r}@weights")
            k = m.products[0].rows[1] - m.products[0].rows[0]
            array = self.s.alias[left][0] if left in self.s.alias else left  # a product's result: its array
            out(f"{d_w} = {product(self.d_ident(r), self.name(array), m.columns[-1][1], k)}")
            for g, (c0, c1) in zip(m.products, m.columns):
                source, transposed = self.weight_source(g.weight)
                if source in self.trainable():
                    pieces.setdefault(source, []).append((g.rows, f"{d_w}[{c0}:{c1}]" + ("" if transposed else ".T")))
        for weight, parts in pieces.items():
            parts.sort()
            transposed = weight in self.transposes.values()  # the product's rows are W's columns
            shape = self.weight_shape(weight)
            tiled = [r for r, _ in parts] == list(zip([0] + [r[1] for r, _ in parts[:-1]], [r[1] for r, _ in parts])) \
                and parts[-1][0][1] == shape[1 if transposed else 0]
            if tiled:
                texts = [text for _, text in parts]
                out(f'grads["{weight}"] = ' + (texts[0] if len(texts) == 1 else
                                               f"np.concatenate(({', '.join(texts)}), axis={int(transposed)})"))
            else:
                out(f'grads["{weight}"] = np.zeros({shape}, dtype={x}.dtype)')
                for (r0, r1), text in parts:
                    out(f'grads["{weight}"][{":, " if transposed else ""}{r0}:{r1}] += {text}')

    def products(self, m):
        """The weights of a merged product as text: ``t1[3:7]`` or ``[t1[3:7] | t6[3:7]]``."""
        parts = [f"{self.weight_text(g.weight, self.name)}[{g.rows[0]}:{g.rows[1]}]" for g in m.products]
        return parts[0] if len(parts) == 1 else f"[{' | '.join(parts)}]"

    def weight_text(self, weight, text):
        """A product's weight as code: ``text(name)`` of what the kernels take, ``.T`` added if
        they take the parameter it transposes."""
        source, transposed = self.weight_source(weight)
        return text(source) + (".T" if transposed else "")

    def weight_shape(self, name):
        for v in self.p.inputs:
            if v.name == name:
                return v.shape
        return self.p.op(name).shape

    def merged(self, m):
        parts = [f"{self.weight_text(g.weight, _item)}[{g.rows[0]}:{g.rows[1]}]" for g in m.products]
        if len(parts) == 1:
            return parts[0]
        return f"np.concatenate(({', '.join(parts)}), axis=1)"


def _item(name):
    return f'w["{name}"]'


def _parameters(rule):
    import inspect

    return tuple(inspect.signature(rule).parameters)


def generate(sched, doc=""):
    """The module's source for a ``Schedule``."""
    return Writer(sched, doc).source()
