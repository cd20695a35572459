"""From a step's plan to a kernel's schedule: loops, storage, and what backward keeps.

The plan (``plan.py``) says which products are hoisted, which run per step and how the
point-wise ops fall into segments between them. This module decides what the generated
loops need:

- **loops**: a point-wise segment runs as one loop over the batch; inside it, consecutive
  ops of one width share one loop over the features (``Group``). An op that reads a value
  of its own group at another index (a slice, a sum, a width-1 value broadcast) starts a
  new group.
- **storage** of each value: a scalar local of its group's loop ("scalar"), a (B, n) array
  rewritten every step ("row": it is read by another group, by a product, or is an
  output), or a (T, B, n) array ("seq": backward reads it). The input x, the hoisted
  product x_w and the states entering each step are always "seq".
- **what backward reads**: the rules of ``tinyseq.derivatives`` say what each op's
  derivative reads; a value it reads is kept over T ("seq") unless it is a scalar of the
  same group made by a cheap op (+, -, *, a comparison, ...), which backward recomputes
  from what it reads in turn.

Refusals here are the generator's (a value with more than one feature axis, a product of
a value computed from x that the plan could hoist but the generator cannot): ``CompileError``
naming the op and its line, as the trace's.
"""

import inspect
from dataclasses import dataclass, field

from tinyseq import derivatives

from .plan import HOISTED, PER_STEP, SPLIT
from .trace import SUPPORTED, CompileError

#: ops whose result backward recomputes instead of keeping it over T
CHEAP = ("add", "sub", "mul", "neg", "relu", "abs", "where", "lt", "le", "gt", "ge", "parts", "reshape")
#: ops computed element by element in a loop over the features
ELEMENTWISE = ("add", "sub", "mul", "div", "neg", "sigmoid", "tanh", "relu", "exp", "log", "abs", "where",
               "lt", "le", "gt", "ge", "reshape")


@dataclass
class Group:
    """Ops of one width run in one loop over the features: ``kind`` "loop" (elementwise
    ops and slices), "sum" or "cat" (one op, its own loops)."""

    kind: str
    width: int
    ops: list = field(default_factory=list)
    recompute: list = field(default_factory=list)  # values backward recomputes here, in order


@dataclass
class Step:
    """One per-step stage: "pointwise" (``groups``) or "gemm" (``gemms``: ``MergedGemm``s)."""

    kind: str
    groups: list = field(default_factory=list)
    gemms: tuple = ()


@dataclass
class Schedule:
    """What the generator emits (see the module docstring).

    ``ops``: name -> op for every op the loops run (a split product appears as an op of
    kind "parts" whose inputs are its parts' names); ``alias``: name -> (array, column) for
    products read straight from a GEMM's result; ``steps``: the per-step stages;
    ``hoisted``: the merged GEMM over x, or None; ``storage``, ``d_storage``: name ->
    "scalar", "row" or "seq"; ``group_of``: op name -> its ``Group``; ``grads``: the names
    that take a gradient; ``vectors``: the non-batched operands of point-wise ops (name ->
    width); ``widths``: each batched value's number of features.
    """

    program: object
    ops: dict
    alias: dict
    steps: list
    hoisted: object
    storage: dict
    d_storage: dict
    group_of: dict
    grads: set
    vectors: dict
    widths: dict

    @property
    def x(self):
        return next(v.name for v in self.program.inputs if v.role == "x")

    @property
    def states(self):
        return self.program.state_names

    def gemm_result(self, merged):
        """The key of the array a merged GEMM writes, ``<left>@w`` (written ``<left>_w``)."""
        return f"{merged.left}@w"


def refuse(program, op, what):
    """A ``CompileError`` for ``op`` of ``program`` (its line of the cell's forward)."""
    code = inspect.unwrap(program.cell_class.forward).__code__
    raise CompileError(f"{program.cell_class.__name__}.forward cannot be compiled to kernels: {what}, at "
                       f"{code.co_filename}:{op.line}: `{op.source}`. Supported: {SUPPORTED}")


def width(shape):
    """A row's number of features: n for (n,), 1 for () or (1,)."""
    return shape[-1] if shape else 1


def schedule(program):
    """The ``Schedule`` of a traced ``StepProgram``."""
    plan, by_name = program.plan, {op.name: op for op in program.ops}
    x = next(v.name for v in program.inputs if v.role == "x")
    widths = {v.name: width(v.shape) for v in program.inputs if v.batched}
    for op in program.ops:
        if op.batched and len(op.shape) > 1:
            refuse(program, op, f"a value of shape (B, {', '.join(map(str, op.shape))}): the kernels take rows "
                                "of one feature axis")
        if op.batched and op.kind == "reshape" and width(op.shape) != width(program.shape_of(op.inputs[0])):
            refuse(program, op, "a reshape of a batched value that changes its number of features")
        if op.batched and op.kind == "transpose":
            refuse(program, op, "a transpose of a batched value")
        if op.batched and op.kind == "getitem" and (len(op.attr("index")) != 1 or isinstance(op.attr("index")[0], int)
                                                    or op.attr("index")[0][2] != 1):
            refuse(program, op, "an index other than a slice of the features with step 1")
        if op.batched:
            widths[op.name] = width(op.shape)

    # products: hoisted over x, or per step; a split one is the sum of its parts
    alias, ops = {}, {}
    hoisted = None
    for m in plan.hoisted_gemms:
        if m.left != x:
            refuse(program, by_name[m.products[0].result.split(".")[0]],
                   "a product of a value computed from x (the kernels hoist products of x itself)")
        hoisted = m
    for m in plan.hoisted_gemms:
        for g, (c0, _) in zip(m.products, m.columns):
            alias[g.result] = (f"{x}@w", c0)
    gemm_stages = [s for s in plan.stages if s.kind == "gemm"]
    for s in gemm_stages:
        for m in s.merged:
            for g, (c0, _) in zip(m.products, m.columns):
                alias[g.result] = (f"{m.left}@w", c0)
    array_width = {f"{m.left}@w": m.columns[-1][1] for s in gemm_stages for m in s.merged}
    array_width[f"{x}@w"] = hoisted.columns[-1][1] if hoisted else 0
    for s in gemm_stages:  # a product of a product's result reads that result's array
        for m in s.merged:
            if m.left in alias and (alias[m.left][1] != 0 or array_width[alias[m.left][0]] != widths[m.left]):
                refuse(program, by_name[m.left], "a product of a value that is one of several products of the same "
                                                 "operand (write it as its own product)")
    for split in plan.splits:
        op = by_name[split.op]
        ops[split.op] = _Parts(split.op, tuple(g.result for g in split.parts), op)
        for g in split.parts:
            widths[g.result] = widths[split.op]

    # the per-step stages, with the x-only point-wise ops first
    hoisted_ops = [n for n in plan.hoisted if n not in alias and n not in plan.folded]
    steps = [Step("gemm", gemms=s.merged) if s.kind == "gemm" else Step("pointwise", groups=list(s.items))
             for s in plan.stages]  # a point-wise step's groups hold its op names until _group
    if hoisted_ops:
        first = next((k for k, s in enumerate(steps) if s.kind == "pointwise"), None)
        if first is None:
            steps.append(Step("pointwise", groups=[]))
            first = len(steps) - 1
        steps[first].groups = hoisted_ops + steps[first].groups
    # a split product's sum runs first in the segment after its parts
    level_of_split = {}
    for k, s in enumerate(steps):
        if s.kind == "gemm":
            for m in s.gemms:
                for g in m.products:
                    op_name = g.result.rsplit(".", 1)[0]
                    if op_name in ops and ops[op_name].kind == "parts":
                        level_of_split[op_name] = max(k, level_of_split.get(op_name, k))
    for name, k in level_of_split.items():
        after = next((i for i in range(k + 1, len(steps)) if steps[i].kind == "pointwise"), None)
        if after is None:
            steps.append(Step("pointwise", groups=[]))
            after = len(steps) - 1
        steps[after].groups.insert(0, name)
    for s in steps:
        if s.kind == "pointwise":
            for name in s.groups:
                ops.setdefault(name, by_name[name])

    vectors = {}
    for name in [n for s in steps if s.kind == "pointwise" for n in s.groups]:
        op = ops[name]
        for a in op.inputs:
            if isinstance(a, str) and a not in widths:
                vectors[a] = _vector_width(program, by_name, a, op)
        if op.kind == "where" and len(op.inputs) == 2:
            vectors[f"{name}.mask"] = width(op.attr("cond").shape)

    sched = Schedule(program, ops, alias, steps, hoisted, {}, {}, {}, set(), vectors, widths)
    _group(sched)
    _grads(sched)
    _storage(sched)
    return sched


class _Parts:
    """A split product: the sum of its parts (kind "parts")."""

    kind = "parts"

    def __init__(self, name, parts, op):
        self.name, self.inputs, self.op = name, parts, op
        self.shape, self.batched, self.line, self.source = op.shape, True, op.line, op.source
        self.attrs = ()

    def attr(self, key, default=None):
        return default


def _vector_width(program, by_name, name, op):
    """The width of a non-batched operand ``name`` of a point-wise op: it must broadcast
    along the features, as (n,), (1, n), (1,) or ()."""
    shape = by_name[name].shape if name in by_name else next(
        (v.shape for v in program.inputs if v.name == name), None)
    if shape is None:
        shape = program.constants[name].shape
    if len(shape) > 2 or (len(shape) == 2 and shape[0] != 1):
        refuse(program, op, f"an operand of shape {shape} that is not a row of features")
    return width(shape)


def _group(sched):
    """Turn each point-wise step's op names into ``Group``s (see ``Group``)."""
    for step in sched.steps:
        if step.kind != "pointwise":
            continue
        names, groups, current, defined = step.groups, [], None, set()
        for name in names:
            op = sched.ops[name]
            w = sched.widths[name]
            if op.kind in ("sum", "cat"):
                current = Group(op.kind, w, [name])
                groups.append(current)
                current, defined = None, set()
                continue
            if op.kind not in ELEMENTWISE and op.kind not in ("getitem", "parts"):
                refuse(sched.program, op, f"the op {op.kind} in the loop of a step")
            reads_own = any(isinstance(a, str) and a in defined and (op.kind == "getitem" or sched.widths[a] != w)
                            for a in op.inputs)
            if current is None or current.width != w or reads_own:
                current = Group("loop", w)
                groups.append(current)
                defined = set()
            current.ops.append(name)
            defined.add(name)
        step.groups = groups
        for g in groups:
            for name in g.ops:
                sched.group_of[name] = g


def _grads(sched):
    """The names that take a gradient: x, the states, parameters and what is made from them."""
    program = sched.program
    grads = {v.name for v in program.inputs if v.role in ("x", "state", "param")}
    for op in program.ops:
        if op.kind not in ("lt", "le", "gt", "ge") and any(isinstance(a, str) and a in grads for a in op.inputs):
            grads.add(op.name)
    for name, op in sched.ops.items():
        if op.kind == "parts":
            grads.add(name)
            grads.update(op.inputs)
    sched.grads = grads


def _storage(sched):
    """Fill ``storage`` and ``d_storage`` and each group's ``recompute`` list."""
    program, ops, group_of = sched.program, sched.ops, sched.group_of
    x, states = sched.x, set(sched.states)
    storage = {x: "seq", **{s: "seq" for s in states}}
    shared = set(program.new_state) | {program.y}
    for s in sched.steps:
        if s.kind == "gemm":
            shared.update(m.left for m in s.gemms)
    for name, op in ops.items():
        g = group_of[name]
        for a in op.inputs:
            if not isinstance(a, str) or a not in group_of:
                continue
            if group_of[a] is not g or op.kind in ("getitem", "sum", "cat") or sched.widths[a] != sched.widths[name]:
                shared.add(a)
    for name in ops:
        storage[name] = "row" if name in shared else "scalar"
    for name, (array, _) in sched.alias.items():
        storage[name] = "alias"

    # what backward reads: kept over T, or recomputed in its group
    needed = []  # (value, the group of the op that reads it)
    for name, op in ops.items():
        if name not in sched.grads:
            continue
        for position, a in enumerate(op.inputs):
            if isinstance(a, str) and a in sched.grads and op.kind in derivatives.RULES:
                for what in derivatives.reads(op.kind, position):
                    needed.append((_operand(op, name, what), group_of[name]))
    for s in sched.steps:  # the weight gradients need each product's left operand at every step
        if s.kind == "gemm":
            needed += [(m.left, None) for m in s.gemms]
    arrays = set()  # GEMM result arrays kept over T
    seen = set()
    while needed:
        value, group = needed.pop()
        if value is None or (value, id(group)) in seen:
            continue
        seen.add((value, id(group)))
        if value in sched.alias:
            arrays.add(sched.alias[value][0])
        elif value in ops:
            op = ops[value]
            if storage[value] == "scalar" and op.kind in CHEAP and group_of[value] is group:
                if value not in group.recompute:
                    group.recompute.append(value)
                needed += [(a, group) for a in op.inputs if isinstance(a, str)]
            else:
                storage[value] = "seq"
    for g in {id(g): g for g in group_of.values()}.values():
        order = list(g.ops)
        g.recompute.sort(key=order.index)
    for array in arrays:
        storage[array] = "seq"
    for s in sched.steps:
        if s.kind == "gemm":
            for m in s.gemms:
                storage.setdefault(sched.gemm_result(m), "row")
    storage.setdefault(f"{x}@w", "seq")
    sched.storage = storage
    d_storage = {x: "seq", **{s: "row" for s in states}}
    for name in ops:
        d_storage[name] = "row" if name in shared else "scalar"
    sched.d_storage = d_storage


def _operand(op, name, what):
    """The value a rule's parameter ``what`` ("a", "b", "out", "cond") stands for in ``op``."""
    if what == "out":
        return name
    if what == "cond":
        return op.inputs[2] if len(op.inputs) == 3 else None  # a constant mask is always there
    value = op.inputs["ab".index(what)]
    return value if isinstance(value, str) else None
