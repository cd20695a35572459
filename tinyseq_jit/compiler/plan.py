"""Sort a step's ops by what they depend on: the schedule a fused kernel will follow.

"Depends on the state" is propagated from the carried state. Then every op is one of:

- WEIGHT: made from parameters alone (a transposed weight, a slice of one): once per call;
- HOISTED: batched but independent of the state (depends on x only): computed before the
  time loop over all T*B rows at once; its products with weights are the hoisted GEMMs, and
  products that share the left operand are merged into one GEMM over concatenated weights;
- per step: depends on the state. A product of a state-dependent value with a weight is a
  per-step GEMM; all else is point-wise, grouped into segments between the GEMMs.

A product whose left operand is ``cat([x-only parts, state parts], -1)`` (``Linear(cat([x,
h]))``) is *split*: each part times its rows of the weight, the x-only parts hoisted, the
state parts per step (``Split``); the cat is then needed only if something else reads it.

The plan also lists what a backward will need (``saved``): from each op, what its
derivative reads (``tinyseq.derivatives``, the rules the engine runs too; a product needs
its left operand for the weight gradient), plus every state input. The kernels' own
account of it (what they keep over T, what they recompute) is ``schedule.py``'s.
"""

from dataclasses import dataclass

from tinyseq import derivatives

HOISTED, PER_STEP, SPLIT, WEIGHT = "HOISTED", "PER_STEP", "SPLIT", "WEIGHT"

@dataclass(frozen=True)
class Gemm:
    """``result = left @ weight[rows[0]:rows[1]]``: one product (of a matmul op, or a part of
    a split one), HOISTED or PER_STEP. ``weight`` names the right operand (a parameter or a
    WEIGHT value), ``rows`` the weight rows (the K range) it uses."""

    result: str
    left: str
    weight: str
    rows: tuple
    kind: str


@dataclass(frozen=True)
class Split:
    """The matmul op ``op`` = ``cat(parts) @ weight`` computed as the sum of one ``Gemm`` per
    part of the cat ``cat`` (their results are named ``op.0``, ``op.1``, ...)."""

    op: str
    cat: str
    parts: tuple


@dataclass(frozen=True)
class MergedGemm:
    """One hoisted GEMM ``left @ [w_0 | w_1 | ...]`` over the products in ``products``;
    product k's result is columns ``columns[k]`` of it."""

    left: str
    products: tuple
    columns: tuple


@dataclass(frozen=True)
class Stage:
    """One stage of the step: ``kind`` "gemm" (``items``: per-step ``Gemm``s; ``merged``: the
    same grouped by left operand, one ``MergedGemm`` per group) or "pointwise" (``items``:
    names of the point-wise ops, fused into one loop)."""

    kind: str
    items: tuple
    merged: tuple = ()


@dataclass(frozen=True)
class Plan:
    """The schedule of one step (see the module docstring).

    ``classes``: op name -> WEIGHT, HOISTED or per step ("STEP"); ``matmuls``: matmul op name ->
    HOISTED, PER_STEP or SPLIT. ``weights``/``hoisted``: the ops done before the loop, in
    order. ``hoisted_gemms``: the merged GEMMs of the hoisted products. ``splits``: the split
    matmuls. ``stages``: the per-step stages in order, alternating point-wise segments and
    GEMMs (empty ones left out; a GEMM stage's products of one left operand merged). ``folded``: cat ops only split products read (not run per
    step). ``saved``: the per-step values backward needs (states included), in program
    order; ``kept``: the hoisted values it needs (already stored over all T).
    """

    classes: dict
    matmuls: dict
    weights: tuple
    hoisted: tuple
    hoisted_gemms: tuple
    splits: tuple
    stages: tuple
    folded: tuple
    saved: tuple
    kept: tuple

    @property
    def per_step_gemms(self):
        return tuple(g for s in self.stages if s.kind == "gemm" for g in s.items)

    @property
    def segments(self):
        return tuple(s.items for s in self.stages if s.kind == "pointwise")

    def __str__(self):
        lines = []
        for m in self.hoisted_gemms:
            parts = ", ".join(f"{g.result} <- {g.weight}[{g.rows[0]}:{g.rows[1]}]" for g in m.products)
            lines.append(f"hoisted GEMM over T*B rows: {m.left} @ [{parts}]")
        if self.hoisted:
            lines.append(f"hoisted ops: {', '.join(self.hoisted)}")
        for s in self.stages:
            if s.kind == "gemm":
                lines += [f"per-step GEMM: {m.left} @ [" + ", ".join(
                    f"{g.result} <- {g.weight}[{g.rows[0]}:{g.rows[1]}]" for g in m.products) + "]" for m in s.merged]
            else:
                lines.append(f"point-wise: {', '.join(s.items)}")
        lines.append(f"saved for backward: {', '.join(self.saved)}")
        return "\n".join(lines)


def make_plan(program):
    """The ``Plan`` of a ``StepProgram``."""
    ops = program.ops
    by_name = {op.name: op for op in ops}
    users = {}
    for op in ops:
        for a in op.inputs:
            if isinstance(a, str):
                users.setdefault(a, []).append(op.name)
    stateful = set(program.state_names)
    for op in ops:
        if any(a in stateful for a in op.inputs if isinstance(a, str)):
            stateful.add(op.name)
    classes = {op.name: WEIGHT if not op.batched else "STEP" if op.name in stateful else HOISTED for op in ops}

    def width(name):
        return by_name[name].shape[-1] if name in by_name else _input(program, name).shape[-1]

    matmuls, splits, hoisted_products, step_products = {}, [], [], {}  # step_products: gemm -> left
    for op in ops:
        if op.kind != "matmul" or not op.batched:
            continue
        left, weight = op.inputs
        k = width(left)
        if left not in stateful:
            matmuls[op.name] = HOISTED
            hoisted_products.append(Gemm(op.name, left, weight, (0, k), HOISTED))
            continue
        cat = by_name.get(left)
        if cat is not None and cat.kind == "cat" and cat.attr("axis") == -1 and \
                any(p not in stateful for p in cat.inputs):
            parts, start = [], 0
            for i, part in enumerate(cat.inputs):
                kind = PER_STEP if part in stateful else HOISTED
                parts.append(Gemm(f"{op.name}.{i}", part, weight, (start, start + width(part)), kind))
                start += width(part)
            matmuls[op.name] = SPLIT
            splits.append(Split(op.name, left, tuple(parts)))
            hoisted_products += [g for g in parts if g.kind == HOISTED]
            step_products.update((g, op.name) for g in parts if g.kind == PER_STEP)
            continue
        matmuls[op.name] = PER_STEP
        step_products[Gemm(op.name, left, weight, (0, k), PER_STEP)] = op.name

    folded = tuple(s.cat for s in splits if all(u in matmuls and matmuls[u] == SPLIT for u in users.get(s.cat, ())))
    stages = _stages(ops, classes, stateful, step_products, folded)
    stages = tuple(Stage(s.kind, s.items, _merge(s.items, program, by_name)) if s.kind == "gemm" else s
                   for s in stages)
    saved, kept = _needs(program, ops, classes, stateful, {s.op: s for s in splits})
    return Plan(
        classes=classes, matmuls=matmuls,
        weights=tuple(op.name for op in ops if classes[op.name] == WEIGHT),
        hoisted=tuple(op.name for op in ops if classes[op.name] == HOISTED),
        hoisted_gemms=_merge(hoisted_products, program, by_name),
        splits=tuple(splits), stages=stages, folded=folded, saved=saved, kept=kept,
    )


def _input(program, name):
    for v in program.inputs:
        if v.name == name:
            return v
    raise KeyError(name)


def _merge(products, program, by_name):
    """Products grouped by left operand (in order of first appearance), each group one GEMM
    whose columns are the products' outputs side by side (hoisted ones, or one stage's)."""
    groups = {}
    for g in products:
        groups.setdefault(g.left, []).append(g)
    merged = []
    for left, group in groups.items():
        columns, start = [], 0
        for g in group:
            w = by_name[g.weight].shape if g.weight in by_name else _input(program, g.weight).shape
            columns.append((start, start + w[-1]))
            start += w[-1]
        merged.append(MergedGemm(left, tuple(group), tuple(columns)))
    return tuple(merged)


def _stages(ops, classes, stateful, step_products, folded):
    """The per-step ops in stages. A value's level is the number of per-step GEMMs on the
    longest path from the state to it; point-wise ops of level k form segment k, and the
    GEMMs whose left operand has level k run between segments k and k + 1."""
    level = {}

    def lv(name):
        return level.get(name, 0) if name in stateful else 0

    gemm_of = {}  # matmul op name -> its per-step products
    for g, op_name in step_products.items():
        gemm_of.setdefault(op_name, []).append(g)
    gemm_levels = {}
    for op in ops:
        if classes[op.name] != "STEP":
            continue
        if op.name in gemm_of:
            left_level = max(lv(g.left) for g in gemm_of[op.name])
            for g in gemm_of[op.name]:
                gemm_levels[g] = left_level
            level[op.name] = left_level + 1
        else:
            level[op.name] = max((lv(a) for a in op.inputs if isinstance(a, str)), default=0)
    top = max(level.values(), default=0)
    stages = []
    for k in range(top + 1):
        pointwise = tuple(op.name for op in ops if classes[op.name] == "STEP" and op.name not in gemm_of
                          and op.name not in folded and level[op.name] == k)
        gemms = tuple(g for g, at in gemm_levels.items() if at == k)
        stages += [Stage("pointwise", pointwise)] if pointwise else []
        stages += [Stage("gemm", gemms)] if gemms else []
    return tuple(stages)


def _needs(program, ops, classes, stateful, splits):
    """(per-step values backward needs, states first; hoisted values or x it needs). A split
    product needs its parts' left operands, not the cat."""
    needed = []
    for op in ops:
        if classes[op.name] == WEIGHT:
            continue
        if op.kind == "matmul":
            needed += [g.left for g in splits[op.name].parts] if op.name in splits else [op.inputs[0]]
            continue
        for what in derivatives.reads(op.kind) if op.kind in derivatives.RULES else ():
            position = {"out": None, "a": 0, "b": 1, "cond": 2}[what]
            if position is None:
                needed.append(op.name)
            elif position < len(op.inputs) and isinstance(op.inputs[position], str):
                needed.append(op.inputs[position])
    batched = {v.name for v in program.inputs if v.batched} | {op.name for op in ops if op.batched}
    needed = [n for n in dict.fromkeys(needed) if n in batched]
    saved = tuple(dict.fromkeys(list(program.state_names) + [n for n in needed if n in stateful]))
    kept = tuple(n for n in needed if n not in stateful)
    return saved, kept
