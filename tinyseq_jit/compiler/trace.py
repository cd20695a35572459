"""Trace one step of a recurrent cell into a ``StepProgram``.

``trace(cell, input_size)`` runs ``cell(x_t, state)`` once on small sample tensors inside
``tinyseq.tensor.tracing``: every op the engine records is reported with the Function (its
class and static attributes) and its output; a line tracer (``sys.settrace``) on the frame of
the cell's ``forward`` learns which local variable holds which tensor, so the program uses
the cell's own names. What cannot run as a fused step raises ``CompileError`` at the line of
``forward`` that did it.
"""

import dis
import inspect
import linecache
import sys

import numpy as np

from tinyseq import ops
from tinyseq.nn import Parameter
from tinyseq.tensor import Tensor, enable_grad, tracing

from .ir import Op, StepProgram, Value


class CompileError(TypeError, ValueError):
    """A cell's step cannot be compiled: the message names the op or construct, the file and
    line of the cell's ``forward``, and lists what is supported. (Both a TypeError and a
    ValueError, so either ``except`` catches it.)"""


#: the engine's Function classes the compiler takes, and their names in the IR
KINDS = {
    ops.Add: "add", ops.Sub: "sub", ops.Mul: "mul", ops.Div: "div", ops.Neg: "neg",
    ops.MatMul: "matmul",
    ops.Sigmoid: "sigmoid", ops.Tanh: "tanh", ops.Relu: "relu", ops.Exp: "exp", ops.Log: "log", ops.Abs: "abs",
    ops.Where: "where",
    ops.Concatenate: "cat", ops.GetItem: "getitem", ops.Sum: "sum", ops.Reshape: "reshape",
    ops.Permute: "transpose",
}
_COMPARED = ("lt", "le", "gt", "ge")
_UNARY = ("neg", "sigmoid", "tanh", "relu", "exp", "log", "abs")
_BINARY = ("add", "sub", "mul", "div")

SUPPORTED = (
    "+ - * / and unary - (numbers as constants); sigmoid, tanh, relu, exp, log, abs; "
    "x @ W with W a parameter or made from parameters (W.T, a slice), so nn.Linear; "
    "cat, split, chunk and slicing along the feature axis; sum over feature axes; "
    "where(cond, a, b) with cond a comparison (<, <=, >, >=) or a constant mask; "
    "reshape that keeps the batch axis"
)


class _Tracer:
    """Receives the engine's reports while the step runs (see ``tinyseq.tensor.tracing``).

    Values are keyed by ``id`` of their tensor (every tensor is kept alive in ``keep`` so an
    id is never reused); names are given at the end, once the line tracer has seen them.
    """

    def __init__(self, cell, code, batch):
        self.cell, self.code, self.batch = cell, code, batch
        self.params = {id(p): name for name, p in cell.named_parameters()}
        self.inputs = []  # (key, role, default name, tensor)
        self.records = []  # (key, kind, fn class, input keys or floats, attrs, tensor, line)
        self.batched = {}  # key -> bool
        self.constants = {}  # key -> array
        self.masks = {}  # id of a comparison's bool array -> its key
        self.local_names = {}  # key -> the forward's local variable first bound to it
        self.direct = set()  # keys named by a plain binding (`h = ...`), not as an item of a list or tuple
        self.keep = {}  # key -> tensor: alive until the end, so no id is reused
        self.frame = None
        self.return_line = code.co_firstlineno
        self.data_lines = _data_lines(code)

    # ------------------------------------------------------------ inputs and lines

    def add_input(self, tensor, role, name):
        key = id(tensor)
        self.keep[key] = tensor
        self.inputs.append((key, role, name, tensor))
        self.batched[key] = role != "param"
        return key

    def line(self):
        """The line of the cell's forward that is running now (0 if none is)."""
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is self.code:
                return frame.f_lineno
            frame = frame.f_back
        return 0

    def refuse(self, what, line=None):
        line = self.line() if line is None else line
        source = linecache.getline(self.code.co_filename, line).strip()
        raise CompileError(
            f"{type(self.cell).__name__}.forward cannot be compiled: {what}, at {self.code.co_filename}:{line}: "
            f"`{source}`. Supported: {SUPPORTED}"
        )

    def global_trace(self, frame, event, arg):
        if event == "call" and frame.f_code is self.code and self.frame is None:
            self.frame = frame
            return self.local_trace
        return None

    def local_trace(self, frame, event, arg):
        if event == "line" and frame.f_lineno in self.data_lines:
            self.refuse("it reads .data (the array behind a tensor: what follows from its values, or a parameter's "
                        "values, cannot be traced; use the tensor itself, and where() for a choice per element)",
                        frame.f_lineno)
        known, names, direct = self.batched, self.local_names, self.direct
        for name, value in frame.f_locals.items():
            if isinstance(value, Tensor):
                if id(value) in known and id(value) not in direct:  # the first plain binding wins
                    names[id(value)] = name
                    direct.add(id(value))
            elif isinstance(value, (list, tuple)):  # `state` before `h, c = state`: a provisional name
                for i, v in enumerate(value):
                    if isinstance(v, Tensor) and id(v) in known and id(v) not in names:
                        names[id(v)] = f"{name}_{i}"
        if event == "return":
            self.return_line = frame.f_lineno
        return self.local_trace

    # ------------------------------------------------------------ the engine's reports

    def key(self, tensor):
        """The key of an op's input: a known value, a parameter (an input from now on), a
        number constant (a float) or a constant array (named); refuses anything else."""
        key = id(tensor)
        if key in self.batched:
            return key
        if isinstance(tensor, Parameter) and key in self.params:
            return self.add_input(tensor, "param", self.params[key])
        if tensor.requires_grad:
            self.refuse("it reads a tensor that requires grad but is not x, the state or a parameter of the cell "
                        "(a tensor kept from outside the step?)")
        if tensor.ndim == 0:
            return float(tensor.data)
        if tensor.shape[0] == self.batch:
            self.refuse(f"it uses a constant of shape {tensor.shape} made from the batch size or from values "
                        "outside the recorded graph (no_grad, .data or .detach() inside forward?)")
        self.keep[key] = tensor
        self.batched[key] = False
        self.constants[key] = tensor.data
        return key

    def op(self, fn, out):
        kind = KINDS.get(type(fn))
        if kind is None:
            self.refuse(f"the op {type(fn).__name__} is not supported")
        inputs = tuple(self.key(p) for p in fn.parents)
        attrs = self.attributes(kind, fn, inputs, out)
        if kind == "where" and not attrs:  # the mask is a comparison in the step: its third input
            inputs += (self.masks[id(fn.params["cond"])],)
        self.record(kind, type(fn), inputs, attrs, out)

    def record(self, kind, fn_class, inputs, attrs, out):
        key = id(out)
        self.keep[key] = out
        self.batched[key] = any(self.batched.get(k, False) for k in inputs if not isinstance(k, float))
        self.records.append((key, kind, fn_class, inputs, attrs, out, self.line()))
        return key

    def value_read(self, tensor, what):
        if id(tensor) in self.batched or id(tensor) in self.params:
            self.refuse(f"{what} reads a tensor's value in Python (control flow on values is not traced; use "
                        "where() for a choice per element)")

    def changed(self, op):
        self.refuse(f"the in-place change {op} during the step (use the out-of-place op)")

    def compared(self, name, a, b, out):
        tracked = [x for x in (a, b) if isinstance(x, Tensor) and (id(x) in self.batched or id(x) in self.params)]
        if not tracked:
            return  # a comparison of constants is a constant
        if name not in _COMPARED:
            self.refuse(f"the comparison {name} is not supported")
        inputs = tuple(self.key(x) if isinstance(x, Tensor) else float(x) for x in (a, b))
        self.check_elementwise(name, inputs, out)
        self.masks[id(out.data)] = self.record(name, None, inputs, (), out)

    # ------------------------------------------------------------ attributes and the batch axis

    def is_batched(self, k):
        return not isinstance(k, float) and self.batched[k]

    def check_elementwise(self, kind, inputs, out):
        for k in inputs:
            if isinstance(k, float):
                continue
            t = self.tensor(k)
            if self.batched[k] and t.ndim != out.ndim:
                self.refuse(f"{kind} broadcasts a batched value of shape {t.shape} to {out.shape} (it would mix "
                            "the batch axis with another)")
            if not self.batched[k] and any(self.is_batched(j) for j in inputs) and t.ndim == out.ndim \
                    and t.shape[0] != 1:
                self.refuse(f"{kind} combines a batched value with a constant or parameter of shape {t.shape} that "
                            "has an axis where the batch is")

    def tensor(self, key):
        return self.keep[key]

    def attributes(self, kind, fn, inputs, out):
        batched = any(self.is_batched(k) for k in inputs)
        params = fn.params
        if kind in _UNARY or kind in _BINARY:
            self.check_elementwise(kind, inputs, out)
            return ()
        if kind == "matmul":
            a, b = inputs
            if self.is_batched(b):
                self.refuse("a matmul whose right operand depends on x or the state mixes batch rows; write "
                            "value @ W with W a parameter")
            if batched and (self.tensor(a).ndim != 2 or self.tensor(b).ndim != 2):
                self.refuse(f"matmul of shapes {self.tensor(a).shape} @ {self.tensor(b).shape}: expected a "
                            "(B, K) value and a (K, N) weight")
            return ()
        if kind == "where":
            cond = params["cond"]
            self.check_elementwise(kind, inputs, out)
            if id(cond) in self.masks:
                return ()
            if batched and cond.ndim == out.ndim and cond.shape[0] != 1:
                self.refuse("where with a batch-shaped mask computed outside the graph (from .data or .numpy()?); "
                            "compare tensors with <, <=, >, >= inside forward")
            return ("cond", cond),
        if kind == "cat":
            if batched and not all(self.is_batched(k) for k in inputs):
                self.refuse("cat of batched values with constants or parameters")
            if batched and params["axis"] == 0:
                self.refuse("cat along the batch axis mixes batch rows")
            return ("axis", params["axis"] - out.ndim),
        if kind == "getitem":
            return ("index", self.row_index(params["index"], self.tensor(inputs[0]).shape, batched)),
        if kind == "sum":
            axes = params["axes"]
            if batched and 0 in axes:
                self.refuse("sum over the batch axis mixes batch rows")
            ndim = self.tensor(inputs[0]).ndim
            return ("axes", tuple(a - ndim for a in axes)), ("keepdims", bool(params["keepdims"]))
        if kind == "reshape":
            if batched and (out.ndim == 0 or out.shape[0] != self.batch):
                self.refuse(f"reshape to {out.shape} merges the batch axis with another")
            return ()
        if kind == "transpose":
            if batched:
                self.refuse("transpose of a batched value (only weights may be transposed)")
            return ("axes", tuple(params["axes"])),
        raise AssertionError(kind)

    def row_index(self, index, shape, batched):
        """A basic index as one (start, stop, step) or int per axis it names, the batch axis left out."""
        if any(i is Ellipsis for i in index):
            at = next(n for n, i in enumerate(index) if i is Ellipsis)
            index = index[:at] + (slice(None),) * (len(shape) - len(index) + 1) + index[at + 1:]
        out = []
        for axis, i in enumerate(index):
            if isinstance(i, slice):
                out.append(i.indices(shape[axis]))
            elif isinstance(i, (int, np.integer)) and not isinstance(i, bool):
                out.append(int(i) % shape[axis])
            else:
                self.refuse(f"indexing with {type(i).__name__} (only slices and ints along the feature axes)")
        if batched:
            if not out or out[0] != (0, shape[0], 1):
                self.refuse("indexing the batch axis mixes batch rows; index the features: value[:, a:b]")
            out = out[1:]
        return tuple(out)


def _names(tracer, state_tuple):
    """key -> name: the forward's local variable names where the trace saw them (a second
    tensor under a name already taken gets ``name_1``, ...), parameters' qualified names, and
    t0, t1, ... for the rest."""
    names, taken = {}, set()

    def unique(base):
        name, n = base, 0
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        return name

    for key, role, default, _ in tracer.inputs:
        if role == "param":
            names[key] = unique(default)
    for key, role, default, _ in tracer.inputs:
        if role != "param":
            names[key] = unique(tracer.local_names.get(key, default))
    counter = 0
    taken_locals = set(tracer.local_names.values())
    for key in list(tracer.constants) + [r[0] for r in tracer.records]:
        if key in tracer.local_names:
            names[key] = unique(tracer.local_names[key])
        else:
            while f"t{counter}" in taken or f"t{counter}" in taken_locals:
                counter += 1
            names[key] = unique(f"t{counter}")
    return names


def sample_batch(cell, input_size):
    """The batch size a trace runs at when none is given: the smallest B >= 2 that is no
    dimension of a parameter, the input or the state, so that the batch axis is never
    mistaken for another."""
    sizes = _state_sizes(cell)[0]
    dims = {input_size, *sizes}
    for _, p in cell.named_parameters():
        dims.update(p.shape)
    batch = 2
    while batch in dims:
        batch += 1
    return batch


def _state_sizes(cell):
    size = getattr(cell, "state_size", None)
    if size is None:
        raise CompileError(f"trace: {type(cell).__name__} has no state_size (an int, or a tuple of ints for a tuple "
                        "state); the compiler builds the sample state from it")
    sizes = size if isinstance(size, tuple) else (size,)
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise CompileError(f"trace: {type(cell).__name__}.state_size must be a positive int or a tuple of them, "
                        f"got {size!r}")
    return tuple(int(s) for s in sizes), isinstance(size, tuple)


def _param_dtype(cell, dtype):
    dtypes = {p.dtype for _, p in cell.named_parameters()}
    if dtype is None:
        return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)
    dtype = np.dtype(dtype)
    if dtypes - {dtype}:
        raise TypeError(f"trace: {type(cell).__name__}'s parameters are {sorted(map(str, dtypes))}, not {dtype}; "
                        f"convert the cell with .to(np.{dtype.name}) or trace with dtype=None")
    return dtype


def trace(cell, input_size, dtype=None, batch=None):
    """Trace one step of ``cell`` (an ``nn.Cell``: ``forward(x_t, state) -> (y_t, new_state)``,
    with ``state_size``) into a ``StepProgram``, its ``plan`` filled in.

    ``input_size``: the features of x_t. ``dtype``: the parameters' dtype (None: theirs; a
    different one is a TypeError). ``batch``: the sample batch size (None: ``sample_batch``);
    the program does not depend on it. Raises ``CompileError`` for what cannot be compiled.
    """
    from .plan import make_plan

    sizes, state_tuple = _state_sizes(cell)
    dtype = _param_dtype(cell, dtype)
    batch = sample_batch(cell, input_size) if batch is None else int(batch)
    code = inspect.unwrap(type(cell).forward).__code__
    tracer = _Tracer(cell, code, batch)
    rng = np.random.default_rng(0)

    def sample(n):
        return Tensor(rng.uniform(0.1, 0.9, (batch, n)).astype(dtype), requires_grad=True)

    x = sample(input_size)
    states = tuple(sample(n) for n in sizes)
    tracer.add_input(x, "x", "x")
    for i, s in enumerate(states):
        tracer.add_input(s, "state", "h" if len(states) == 1 else f"s{i}")
    previous = sys.gettrace()
    frozen = [p for p in cell.parameters() if not p.requires_grad]  # traced as trained ones: the kernels are the same
    with enable_grad(), tracing(tracer), np.errstate(all="ignore"):
        sys.settrace(tracer.global_trace)
        try:
            for p in frozen:
                p.requires_grad = True
            result = cell(x, states if state_tuple else states[0])
        finally:
            sys.settrace(previous)
            for p in frozen:
                p.requires_grad = False
    y, new_state = _outputs(tracer, result, len(states), state_tuple)
    program = _program(tracer, dtype, y, new_state, state_tuple)
    program.plan = make_plan(program)
    return program


def _data_lines(code):
    """The lines of ``code`` that read an attribute ``.data``."""
    lines, line = set(), code.co_firstlineno
    for instruction in dis.get_instructions(code):
        line = instruction.starts_line or line
        if instruction.opname in ("LOAD_ATTR", "LOAD_METHOD") and instruction.argval == "data":
            lines.add(line)
    return lines


def _outputs(tracer, result, arity, state_tuple):
    line = tracer.return_line
    if not (isinstance(result, tuple) and len(result) == 2):
        tracer.refuse("forward must return the pair (y_t, new_state)", line)
    y, new = result
    new = new if state_tuple else (new,)
    if not isinstance(new, tuple) or len(new) != arity:
        tracer.refuse(f"the new state must have the state's structure ({arity} tensor(s))", line)
    for what, t in [("y_t", y)] + [("the new state", s) for s in new]:
        if not isinstance(t, Tensor) or id(t) not in tracer.batched or not tracer.batched[id(t)]:
            tracer.refuse(f"{what} is not derived from x or the state (a constant or a tensor made outside the "
                          "step has no batch axis to run over)", line)
    return id(y), tuple(id(s) for s in new)


def _program(tracer, dtype, y, new_state, state_tuple):
    """The ``StepProgram`` of the records that the outputs reach (dead ops are dropped)."""
    by_key = {r[0]: r for r in tracer.records}
    live, todo = set(), [y, *new_state]
    while todo:
        key = todo.pop()
        if key in live:
            continue
        live.add(key)
        if key in by_key:
            todo.extend(k for k in by_key[key][3] if not isinstance(k, float))
    names = _names(tracer, state_tuple)
    inputs = []
    for key, role, _, t in tracer.inputs:
        if role != "param" or key in live:
            inputs.append(Value(names[key], role, t.shape[1:] if role != "param" else t.shape, role != "param"))
    ops_ = []
    for key, kind, fn, in_keys, attrs, out, line in tracer.records:
        if key not in live:
            continue
        args = tuple(k if isinstance(k, float) else names[k] for k in in_keys)
        batched = tracer.batched[key]
        shape = out.shape[1:] if batched else out.shape
        source = linecache.getline(tracer.code.co_filename, line).strip()
        ops_.append(Op(names[key], kind, args, attrs, shape, batched, fn, line, source))
    constants = {names[k]: a for k, a in tracer.constants.items() if k in live}
    return StepProgram(type(tracer.cell), dtype, tuple(inputs), tuple(ops_), names[y],
                       tuple(names[k] for k in new_state), state_tuple, constants)
