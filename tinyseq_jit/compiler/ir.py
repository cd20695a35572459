"""The step IR: one recurrent step as a list of SSA ops, and a NumPy interpreter for it.

A ``StepProgram`` is what ``trace`` makes of a cell's ``forward(x_t, state)``:

- ``inputs``: ``Value``s named ``x``, the state tensors (the cell's own names where the trace
  saw them) and every Parameter the step reads (its qualified name, e.g. ``f.weight``);
- ``ops``: ``Op``s in program order, each defining one new name from earlier names;
- ``outputs``: the name of y_t and the names of the new state tensors.

Every value is either *batched* (it has the batch axis first: x, the states, whatever
depends on them) or not (parameters and what is made from them alone: a transposed weight,
a slice of one). ``shape`` is the per-row shape for a batched value (the batch axis left
out) and the whole shape otherwise, so nothing in a program depends on the batch size B or
the sequence length T. Axes in attributes count from the end (``axis=-1``), which means the
same for a row and for the whole (B, ...) array.
"""

from dataclasses import dataclass, field

import numpy as np

from tinyseq._blas import matmul as _gemm


@dataclass(frozen=True)
class Value:
    """A program input: ``role`` is "x", "state" or "param"."""

    name: str
    role: str
    shape: tuple
    batched: bool


@dataclass(frozen=True)
class Op:
    """One SSA op: ``name = kind(*inputs, **attrs)``.

    ``inputs`` holds names (str) of earlier values, or Python floats for number constants.
    ``attrs`` is a tuple of (key, value) pairs, the op's static attributes (``axis``,
    ``index``, ``axes``, ``keepdims``; ``cond``, a constant mask array, for a ``where`` whose
    mask is not a comparison in the step, else the mask is its third input). ``fn`` is the
    engine's Function class the op was recorded as (None for a comparison, which is no
    Function); ``line``/``source`` the line of the cell's forward that made it.

    NOTE: compare programs with ``StepProgram.signature()``, not ops with ``==`` (a mask
    attribute is an array).
    """

    name: str
    kind: str
    inputs: tuple
    attrs: tuple
    shape: tuple
    batched: bool
    fn: type = field(compare=False)
    line: int = 0
    source: str = ""

    def attr(self, key, default=None):
        """The attribute ``key`` (``default`` if the op has none)."""
        return dict(self.attrs).get(key, default)

    def expression(self):
        """The right-hand side as Python-like code: ``a + b``, ``sigmoid(t3)``, ``gates[:, 0:16]``."""
        args = [_operand(a) for a in self.inputs]
        if self.kind in _INFIX:
            return f"{args[0]} {_INFIX[self.kind]} {args[1]}"
        if self.kind == "neg":
            return f"-{args[0]}"
        if self.kind == "getitem":
            lead = ":, " if self.batched else ""
            return f"{args[0]}[{lead}{', '.join(_index_text(i) for i in self.attr('index'))}]"
        if self.kind == "where":
            cond = args[2] if len(args) == 3 else f"<constant mask {self.attr('cond').shape}>"
            return f"where({cond}, {args[0]}, {args[1]})"
        if self.kind in _COMPARISONS:
            return f"{args[0]} {_COMPARISONS[self.kind]} {args[1]}"
        shown = [f"{k}={v!r}" for k, v in self.attrs]
        return f"{self.kind}({', '.join(args + shown)})"


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@"}
_COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _operand(a):
    return a if isinstance(a, str) else repr(a)


def _index_text(i):
    if isinstance(i, int):
        return str(i)
    start, stop, step = i
    return f"{start}:{stop}" + ("" if step == 1 else f":{step}")


@dataclass
class StepProgram:
    """One traced step of a recurrent cell (see the module docstring), and its ``plan``.

    ``state_names`` are the state inputs in the cell's order; ``state_tuple`` says whether the
    cell keeps its state as a tuple. ``y`` names y_t and ``new_state`` the new state tensors
    (a name may repeat, or be an input's: ``return h, h``). ``constants`` maps the names of
    constant arrays the step made (``ts.ones(H)``, a fixed mask) to their values.
    """

    cell_class: type
    dtype: np.dtype
    inputs: tuple
    ops: tuple
    y: str
    new_state: tuple
    state_tuple: bool
    constants: dict = field(default_factory=dict)
    plan: object = None

    @property
    def state_names(self):
        return tuple(v.name for v in self.inputs if v.role == "state")

    @property
    def param_names(self):
        return tuple(v.name for v in self.inputs if v.role == "param")

    def shape_of(self, name):
        """The (per-row) shape of the value ``name``, an input or an op's."""
        for v in self.inputs:
            if v.name == name:
                return v.shape
        return self.op(name).shape

    def op(self, name):
        """The op that defines ``name``."""
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"StepProgram: no op defines {name!r}")

    def signature(self):
        """The program without line numbers and source text: what two traces of the same cell
        must agree on (tested: it does not depend on B)."""
        ops = tuple((o.name, o.kind, o.inputs, _hashable(o.attrs), o.shape, o.batched) for o in self.ops)
        return (self.cell_class, str(self.dtype), self.inputs, ops, self.y, self.new_state, self.state_tuple)

    def __str__(self):
        head = ", ".join(v.name for v in self.inputs)
        lines = [f"def step({head}):  # {self.cell_class.__name__}, {self.dtype}"]
        for op in self.ops:
            lines.append(f"    {op.name} = {op.expression()}  # line {op.line}: {op.source}")
        state = ", ".join(self.new_state)
        lines.append(f"    return {self.y}, ({state}{',' if len(self.new_state) == 1 and self.state_tuple else ''})"
                     if self.state_tuple else f"    return {self.y}, {state}")
        return "\n".join(lines)

    # ------------------------------------------------------------ the reference interpreter

    def run_numpy(self, params, x, state):
        """Run the step on NumPy arrays, op by op over all B rows at once: ``params`` maps
        parameter names to arrays, ``x`` is (B, I), ``state`` an array or a tuple as the cell
        keeps it. Returns (y_t, new_state) as arrays, in the cell's structure.

        This is the proof that the IR holds the whole step: it must equal the cell's forward
        bit for bit (it makes the same NumPy calls in the same order).
        """
        env = {"x" if v.role == "x" else v.name: None for v in self.inputs}
        states = state if self.state_tuple else (state,)
        if len(states) != len(self.state_names):
            raise ValueError(f"run_numpy: expected {len(self.state_names)} state arrays, got {len(states)}")
        for v in self.inputs:
            if v.role == "x":
                env[v.name] = np.asarray(x, self.dtype)
            elif v.role == "param":
                env[v.name] = np.asarray(params[v.name])
        env.update(zip(self.state_names, (np.asarray(s, self.dtype) for s in states)))
        env.update(self.constants)
        for op in self.ops:
            args = [env[a] if isinstance(a, str) else np.asarray(a, self.dtype) for a in op.inputs]
            env[op.name] = _EVAL[op.kind](op, *args)
        new = tuple(env[n] for n in self.new_state)
        return env[self.y], new if self.state_tuple else new[0]

    def weight_values(self, params, names=None):
        """What the kernels read besides x and the state, by name: the parameters (``params``
        maps their names to Tensors), the values the step makes from parameters alone (a
        transposed weight, a slice of one) computed from them by the engine, so that their
        gradients reach the parameters, and the constants (arrays). ``names``: the values
        wanted (None: all); the engine runs only the ops they need."""
        from tinyseq import ops

        env = dict(self.constants)
        env.update((v.name, params[v.name]) for v in self.inputs if v.role == "param")
        wanted = None if names is None else set(names)
        for op in reversed(self.ops):
            if wanted is not None and op.name in wanted:
                wanted.update(a for a in op.inputs if isinstance(a, str))
        for op in self.ops:
            if op.batched or (wanted is not None and op.name not in wanted):
                continue
            args = [env[a] if isinstance(a, str) else a for a in op.inputs]
            env[op.name] = _ENGINE[op.kind](ops, op, *args)
        for op in self.ops:
            if op.kind == "where" and len(op.inputs) == 2:
                env.setdefault(f"{op.name}.mask", op.attr("cond"))
        return env


#: kind -> f(ops module, op, *input Tensors): the non-batched part of a step run by the engine
_ENGINE = {
    "add": lambda ops, op, a, b: ops.add(a, b),
    "sub": lambda ops, op, a, b: ops.sub(a, b),
    "mul": lambda ops, op, a, b: ops.mul(a, b),
    "div": lambda ops, op, a, b: ops.div(a, b),
    "neg": lambda ops, op, a: ops.neg(a),
    "matmul": lambda ops, op, a, b: ops.matmul(a, b),
    "sigmoid": lambda ops, op, a: ops.sigmoid(a),
    "tanh": lambda ops, op, a: ops.tanh(a),
    "relu": lambda ops, op, a: ops.relu(a),
    "exp": lambda ops, op, a: ops.exp(a),
    "log": lambda ops, op, a: ops.log(a),
    "abs": lambda ops, op, a: ops.abs(a),
    "where": lambda ops, op, a, b, *cond: ops.where(cond[0] if cond else op.attr("cond"), a, b),
    "cat": lambda ops, op, *tensors: ops.concatenate(list(tensors), axis=op.attr("axis")),
    "getitem": lambda ops, op, a: a[tuple(i if isinstance(i, int) else slice(*i) for i in op.attr("index"))],
    "sum": lambda ops, op, a: ops.sum(a, axis=op.attr("axes"), keepdims=op.attr("keepdims")),
    "reshape": lambda ops, op, a: ops.reshape(a, op.shape),
    "transpose": lambda ops, op, a: ops.permute(a, op.attr("axes")),
    "lt": lambda ops, op, a, b: ops.lt(a, b),
    "le": lambda ops, op, a, b: ops.le(a, b),
    "gt": lambda ops, op, a, b: ops.gt(a, b),
    "ge": lambda ops, op, a, b: ops.ge(a, b),
}


def _hashable(attrs):
    return tuple((k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in attrs)


def _sigmoid(a):
    out = np.tanh(a * 0.5)  # as ops.Sigmoid, so the interpreter equals the engine bit for bit
    out *= 0.5
    out += 0.5
    return out


def _matmul(op, a, b):
    if a.ndim >= 2 and b.ndim == 2:  # as ops.MatMul: one GEMM over the rows
        return _gemm(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + b.shape[-1:])
    return a @ b


def _getitem(op, a):
    index = tuple(i if isinstance(i, int) else slice(*i) for i in op.attr("index"))
    return a[((slice(None),) if op.batched else ()) + index]


def _where(op, a, b, *cond):
    return np.where(cond[0] if cond else op.attr("cond"), a, b)


def _sum(op, a):
    return a.sum(axis=op.attr("axes"), keepdims=op.attr("keepdims"))


def _reshape(op, a):
    return a.reshape(((a.shape[0],) if op.batched else ()) + op.shape)


#: kind -> f(op, *input arrays): the interpreter's one rule per op kind
_EVAL = {
    "add": lambda op, a, b: a + b,
    "sub": lambda op, a, b: a - b,
    "mul": lambda op, a, b: a * b,
    "div": lambda op, a, b: a / b,
    "neg": lambda op, a: -a,
    "matmul": _matmul,
    "sigmoid": lambda op, a: _sigmoid(a),
    "tanh": lambda op, a: np.tanh(a),
    "relu": lambda op, a: np.maximum(a, 0),
    "exp": lambda op, a: np.exp(a),
    "log": lambda op, a: np.log(a),
    "abs": lambda op, a: np.abs(a),
    "where": _where,
    "cat": lambda op, *arrays: np.concatenate(arrays, axis=op.attr("axis")),
    "getitem": _getitem,
    "sum": _sum,
    "reshape": _reshape,
    "transpose": lambda op, a: a.transpose(op.attr("axes")),
    "lt": lambda op, a, b: a < b,
    "le": lambda op, a, b: a <= b,
    "gt": lambda op, a, b: a > b,
    "ge": lambda op, a, b: a >= b,
}
