"""The cell compiler against the graph on random step programs (issue 23).

Hypothesis draws a *recipe*: pure data naming the input and state widths, one or two
states, and a list of ops, each with its kind and the indices of its operands among the
values made so far (x, the states, then each op's result). ``RecipeCell.forward`` runs the
recipe with tinyseq ops: a wide gate value from x and the state, sliced; point-wise ops,
constants, comparisons feeding ``where``, a constant mask, ``cat``, sums, per-unit
parameter vectors, products with slices of weights and with an earlier product's weight
and, when drawn, a product ``value @ W`` of a value computed from the state (a GEMM
mid-step). The same cell runs once unrolled on the graph and once compiled
(``backend="numba"``, so it cannot fall back), forward or reversed, on a batch with lengths
and NaN in x's padded steps; the outputs, final states and the gradients of x, of every initial state and
of every parameter must agree: float64 to 1e-10, float32 to 1e-4.

Every value carries an interval that bounds it for any x and state in [-1, 1]; the drawing
keeps each interval inside [-LIMIT, LIMIT] (a tanh where it would not be), feeds log and /
only values bounded away from 0 and exp only values below 2, and keeps each new state
inside [-1, 1], so float32 agrees as well as float64 does over the steps.
"""

import math
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinyseq import Tensor, nn, ops
from tinyseq.nn import Parameter
from tinyseq.nn._fused import CompiledRecurrence
from tinyseq_jit.compiler import CompileError, trace

from helpers import count_nodes

#: the largest magnitude a value of the step may reach
LIMIT = 6.0
#: dtype -> (rtol, atol) of compiled against graph
TOLERANCE = {np.float64: (1e-10, 1e-10), np.float32: (1e-4, 1e-4)}

UNARY = ("sigmoid", "tanh", "relu", "abs", "neg", "exp", "log")
BINARY = ("add", "sub", "mul", "div")
COMPARE = ("lt", "le", "gt", "ge")
PRODUCTS = ("linear", "linear_x", "tied")


# ---------------------------------------------------------------- the cell that runs a recipe


class RecipeCell(nn.Cell):
    """A cell whose step is ``recipe`` = (input width, state widths, ops, new-state indices,
    y index). Value 0 is x, values 1.. the states, then one value per op. An op is a tuple
    (kind, ...): ("linear", a, width, extra_rows, bias), ("linear_x", a, width) (a product
    of cat([x, a])), ("tied", a, width, j) (a times the weight of op j, a "linear"), ("slice",
    a, start, stop), ("cat", a, b), ("sum", a), ("unary", name, a), ("binary", name, a, b),
    ("const", name, a, c) (a + c, a * c, c - a, a / c, c / a), ("where", cmp, a, b or None,
    c, p, q) (where(a cmp (b or c), p, q)), ("mask", bits, p, q) (a constant mask),
    ("vector", a) (a times a per-unit parameter vector).

    ``spec`` (a string) holds the recipe for the compiler's cache key, so two recipes never
    share a compiled program."""

    def __init__(self, recipe, dtype=np.float64, seed=0):
        inputs, widths, steps, self.new_state, self.y = recipe
        self.recipe, self.spec = steps, repr(recipe)
        self.state_size = widths if len(widths) > 1 else widths[0]
        rng = np.random.default_rng(seed)
        value_widths = [inputs, *widths]
        for k, op in enumerate(steps):
            self._parameters_of(k, op, value_widths, rng, np.dtype(dtype))
            value_widths.append(op_width(op, value_widths))

    def _parameters_of(self, k, op, widths, rng, dtype):
        def param(*shape, bound):
            return Parameter(rng.uniform(-bound, bound, shape).astype(dtype))

        if op[0] in ("linear", "linear_x"):
            fan_in = widths[op[1]] + (widths[0] if op[0] == "linear_x" else 0)
            rows = op[2] + (op[3] if op[0] == "linear" else 0)
            setattr(self, f"w{k}", param(rows, fan_in, bound=1 / math.sqrt(fan_in)))
            if op[0] == "linear_x" or op[4]:
                setattr(self, f"b{k}", param(rows, bound=1 / math.sqrt(fan_in)))
        elif op[0] == "vector":
            setattr(self, f"v{k}", param(widths[op[1]], bound=1.0))

    def forward(self, x, state):
        values = [x, *(state if isinstance(state, tuple) else (state,))]
        for k, op in enumerate(self.recipe):
            values.append(self._run(k, op, values))
        new = tuple(values[i] for i in self.new_state)
        return values[self.y], new if isinstance(state, tuple) else new[0]

    def _run(self, k, op, values):
        kind, args = op[0], op[1:]
        if kind == "linear":
            a, width, extra, bias = args
            w = getattr(self, f"w{k}")
            out = values[a] @ (w[:width] if extra else w).T
            return out + (getattr(self, f"b{k}")[:width] if extra else getattr(self, f"b{k}")) if bias else out
        if kind == "tied":
            a, _, j = args
            _, _, width, extra, _ = self.recipe[j]
            w = getattr(self, f"w{j}")
            return values[a] @ (w[:width] if extra else w).T
        if kind == "linear_x":
            return ops.cat([values[0], values[args[0]]], -1) @ getattr(self, f"w{k}").T + getattr(self, f"b{k}")
        if kind == "slice":
            return values[args[0]][:, args[1]:args[2]]
        if kind == "cat":
            return ops.cat([values[args[0]], values[args[1]]], -1)
        if kind == "sum":
            return values[args[0]].sum(axis=-1, keepdims=True)
        if kind == "unary":
            name, a = args
            return -values[a] if name == "neg" else getattr(ops, name)(values[a])
        if kind == "binary":
            name, a, b = args
            return getattr(values[a], f"__{'truediv' if name == 'div' else name}__")(values[b])
        if kind == "const":
            name, a, c = args
            return {"add": lambda v: v + c, "mul": lambda v: v * c, "rsub": lambda v: c - v, "div": lambda v: v / c,
                    "rdiv": lambda v: c / v}[name](values[a])
        if kind == "where":
            cmp, a, b, c, p, q = args
            cond = getattr(values[a], f"__{cmp}__")(c if b is None else values[b])
            return ops.where(cond, values[p], values[q])
        if kind == "mask":
            bits, p, q = args
            return ops.where(np.array(bits), values[p], values[q])
        if kind == "vector":
            return values[args[0]] * getattr(self, f"v{k}")
        raise AssertionError(kind)


def op_width(op, widths):
    """The feature width of ``op``'s result, given the widths of the values before it."""
    kind = op[0]
    if kind in PRODUCTS:
        return op[2]
    if kind == "slice":
        return op[3] - op[2]
    if kind == "cat":
        return widths[op[1]] + widths[op[2]]
    if kind == "sum":
        return 1
    if kind == "unary":
        return widths[op[2]]
    if kind == "binary":
        return max(widths[op[2]], widths[op[3]])
    if kind == "const":
        return widths[op[2]]
    if kind in ("where", "mask"):
        return widths[op[-2]]
    return widths[op[1]]  # vector


# ---------------------------------------------------------------- drawing a recipe


class _Builder:
    """Appends ops to a recipe and keeps, per value, its width, the interval that bounds it
    and whether it depends on the state."""

    def __init__(self, inputs, widths):
        self.widths = [inputs, *widths]
        self.bounds = [(-1.0, 1.0)] * (1 + len(widths))
        self.stateful = [False] + [True] * len(widths)
        self.parts = [()] * (1 + len(widths))  # the operands of a cat, () for anything else
        self.states = len(widths)
        self.ops = []

    def add(self, op):
        """Append ``op``; its index, after a tanh where its interval leaves [-LIMIT, LIMIT]."""
        index = self.append(op)
        lo, hi = self.bounds[index]
        return self.add(("unary", "tanh", index)) if max(-lo, hi) > LIMIT else index

    def append(self, op):
        """Append ``op`` as it is; its index."""
        operands = _operands(op)
        self.widths.append(op_width(op, self.widths))
        self.bounds.append(self._interval(op))
        self.stateful.append(any(self.stateful[i] for i in operands))
        self.parts.append(operands if op[0] == "cat" else ())
        self.ops.append(op)
        return len(self.ops) + self.states

    def computed(self):
        """The indices of the ops' values (x and the states left out)."""
        return range(1 + self.states, len(self.widths))

    def usable(self):
        """The values an op may read: those inside [-LIMIT, LIMIT]."""
        return [i for i, interval in enumerate(self.bounds) if _magnitude(interval) <= LIMIT]

    def can_multiply(self, i):
        """Whether ``value @ W`` compiles: x itself, or a value that depends on the state and is
        not a cat of a part made from x alone (the kernels hoist only products of x)."""
        if i == 0:
            return True
        return self.stateful[i] and all(p == 0 or self.stateful[p] for p in self.parts[i])

    def is_mid(self, op):
        """Whether the product ``op`` runs a GEMM mid-step: one of a value computed from the
        state (of cat([x, a]): of a; of a cat of x with such values: of them, as the plan
        splits it)."""
        a = op[1]
        if op[0] == "linear_x" or not self.parts[a] or all(self.stateful[p] for p in self.parts[a]):
            return a > self.states and self.stateful[a]
        return any(p > self.states and self.stateful[p] for p in self.parts[a])

    def positive(self, i, margin):
        """An index of value ``i``, or of sigmoid(value) + margin when it may come closer to 0 than ``margin``."""
        if self.bounds[i][0] >= margin:
            return i
        return self.add(("const", "add", self.add(("unary", "sigmoid", i)), margin))

    def below(self, i, top):
        """An index of value ``i``, or of tanh(value) when it may exceed ``top``."""
        return i if self.bounds[i][1] <= top else self.add(("unary", "tanh", i))

    def _interval(self, op):
        kind, b = op[0], self.bounds
        if kind in PRODUCTS:
            a = op[1]
            fan_in = self.widths[a] + (self.widths[0] if kind == "linear_x" else 0)
            bias = kind == "linear_x" or (kind == "linear" and op[4])
            m = math.sqrt(fan_in) * max(1.0, _magnitude(b[a])) + (1 / math.sqrt(fan_in) if bias else 0.0)
            return -m, m
        if kind in ("slice", "vector"):
            lo, hi = b[op[1]]
            return (lo, hi) if kind == "slice" else (-_magnitude((lo, hi)), _magnitude((lo, hi)))
        if kind == "cat":
            return min(b[op[1]][0], b[op[2]][0]), max(b[op[1]][1], b[op[2]][1])
        if kind == "sum":
            n = self.widths[op[1]]
            return n * b[op[1]][0], n * b[op[1]][1]
        if kind == "unary":
            return _unary_interval(op[1], b[op[2]])
        if kind == "binary":
            return _binary_interval(op[1], b[op[2]], b[op[3]])
        if kind == "const":
            name, a, c = op[1:]
            lo, hi = b[a]
            return _binary_interval({"rsub": "sub", "rdiv": "div"}.get(name, name), *(
                ((c, c), (lo, hi)) if name.startswith("r") else ((lo, hi), (c, c))))
        p, q = b[op[-2]], b[op[-1]]  # where, mask
        return min(p[0], q[0]), max(p[1], q[1])


def _operands(op):
    """The value indices an op reads."""
    kind = op[0]
    if kind in ("unary", "const"):
        return (op[2],)
    if kind == "binary":
        return op[2:4]
    if kind == "where":
        return tuple(i for i in (op[2], op[3], op[5], op[6]) if i is not None)
    if kind == "mask":
        return op[2:4]
    if kind == "cat":
        return op[1:3]
    return (op[1],)


def _magnitude(interval):
    """The largest |value| in ``interval``."""
    return max(-interval[0], interval[1])


def _unary_interval(name, interval):
    lo, hi = interval
    if name == "sigmoid":
        return 1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-hi))
    if name in ("tanh", "exp", "log"):
        f = getattr(math, name)
        return f(lo), f(hi)
    if name == "relu":
        return max(lo, 0.0), max(hi, 0.0)
    if name == "abs":
        return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), _magnitude(interval)
    return -hi, -lo  # neg


def _binary_interval(name, a, b):
    if name == "add":
        return a[0] + b[0], a[1] + b[1]
    if name == "sub":
        return a[0] - b[1], a[1] - b[0]
    if name == "div":
        b = (1 / b[1], 1 / b[0])
    products = [p * q for p in a for q in b]
    return min(products), max(products)


@st.composite
def recipes(draw, mid=None, most=6, widest=3):
    """A recipe (see ``RecipeCell``): a gate value from x and the state, sliced, then 1 to
    ``most`` drawn ops, then each new state the sum of the values nothing reads yet (squashed into
    [-1, 1]). ``mid``: whether a product of a value computed from the state appears (None:
    drawn); ``widest``: the largest input and state width."""
    inputs = draw(st.integers(1, widest))
    widths = tuple(draw(st.lists(st.integers(1, widest), min_size=1, max_size=2)))
    b = _Builder(inputs, widths)
    n, gates = widths[0], draw(st.integers(1, 3))
    if draw(st.booleans()):
        gate = b.add(("linear_x", 1, gates * n))
    else:
        gate = b.add(("binary", "add", b.add(("linear", 0, gates * n, 0, True)),
                      b.add(("linear", 1, gates * n, draw(st.integers(0, 2)), draw(st.booleans())))))
        if len(widths) == 2 and draw(st.booleans()):
            gate = b.add(("binary", "add", gate, b.add(("linear", 2, gates * n, 0, False))))
    if gates > 1:
        for g in range(gates):
            b.add(("slice", gate, g * n, (g + 1) * n))
    mid = draw(st.booleans()) if mid is None else mid
    for _ in range(draw(st.integers(1, most))):
        _draw_op(draw, b, mid)
    if mid and not any(op[0] in PRODUCTS and b.is_mid(op) for op in b.ops):
        left = draw(st.sampled_from([i for i in b.usable() if b.can_multiply(i) and b.is_mid(("linear", i))]))
        b.add(("linear", left, n, 0, True))
    new_state = _new_states(b, widths)
    values = [i for i in b.usable() if i > len(widths)]
    y = new_state[0] if draw(st.booleans()) else draw(st.sampled_from(values))
    return inputs, widths, tuple(b.ops), new_state, y


def _draw_op(draw, b, mid):
    """Draw one op over the values so far and add it (with what keeps its operands in range)."""
    every = b.usable()
    kind = draw(st.sampled_from(["unary", "binary", "const", "where", "mask", "vector", "slice", "cat", "sum",
                                 "linear"]))
    a = draw(st.sampled_from(every))
    width = b.widths[a]
    same = [i for i in every if b.widths[i] == width]
    if kind == "unary":
        name = draw(st.sampled_from(UNARY))
        a = b.below(a, 2.0) if name == "exp" else b.positive(a, 0.5) if name == "log" else a
        b.add(("unary", name, a))
    elif kind == "binary":
        name = draw(st.sampled_from(BINARY))
        other = draw(st.sampled_from([i for i in every if b.widths[i] in (width, 1) or width == 1]))
        b.add(("binary", name, a, b.positive(other, 0.5) if name == "div" else other))
    elif kind == "const":
        name = draw(st.sampled_from(["add", "mul", "rsub", "div", "rdiv"]))
        c = draw(st.sampled_from([-1.5, 0.5, 1.0, 2.0]))
        b.add(("const", name, b.positive(a, 0.5) if name == "rdiv" else a, c))
    elif kind == "where":
        other = draw(st.none() | st.sampled_from(same))
        c = 0.0 if other is not None else draw(st.sampled_from([-0.5, 0.0, 0.3]))
        b.add(("where", draw(st.sampled_from(COMPARE)), a, other, c, draw(st.sampled_from(same)),
               draw(st.sampled_from(same))))
    elif kind == "mask":
        bits = tuple(draw(st.lists(st.booleans(), min_size=width, max_size=width)))
        b.add(("mask", bits, a, draw(st.sampled_from(same))))
    elif kind == "vector":
        b.add(("vector", a))
    elif kind == "slice":
        start = draw(st.integers(0, width - 1))
        b.add(("slice", a, start, draw(st.integers(start + 1, width))))
    elif kind == "cat":
        b.add(("cat", a, draw(st.sampled_from(every))))
    elif kind == "sum":
        b.add(("sum", a))
    else:
        out = draw(st.sampled_from(sorted({*b.widths[1:1 + b.states], 1, 2 * b.widths[1]})))
        extra, bias = draw(st.integers(0, 2)), draw(st.booleans())
        products = [("linear", i, out, extra, bias) for i in every if b.can_multiply(i)]
        products += [("linear_x", i, out) for i in every if i > 0 and b.stateful[i]]
        products += [("tied", i, op[2], j) for j, op in enumerate(b.ops) for i in every
                     if op[0] == "linear" and b.widths[op[1]] == b.widths[i] and b.can_multiply(i)]
        b.add(draw(st.sampled_from([op for op in products if mid or not b.is_mid(op)])))


def _new_states(b, widths):
    """Each new state: the sum of the computed values of its width that nothing reads (shared
    out among the states of that width; state 0 also takes the width-1 ones and the first
    columns of wider ones), squashed into [-1, 1]."""
    read = {i for op in b.ops for i in _operands(op)}
    drawn = list(b.computed())
    terms = [[] for _ in widths]
    for i in (i for i in drawn if i not in read):
        fits = [k for k, w in enumerate(widths) if w == b.widths[i]]
        if fits:
            terms[min(fits, key=lambda k: len(terms[k]))].append(i)
        elif b.widths[i] == 1 or b.widths[i] > widths[0]:
            terms[0].append(i if b.widths[i] == 1 else b.add(("slice", i, 0, widths[0])))
    new = []
    for k, w in enumerate(widths):
        base = [i for i in terms[k] if b.widths[i] == w]
        if not base:
            same = [i for i in b.usable() if i in drawn and b.widths[i] == w and b.stateful[i]]
            base = [same[-1]] if same else [b.add(("linear", 1 + k, w, 0, True))]
        total = base[0]
        for i in base[1:] + [i for i in terms[k] if b.widths[i] != w]:
            total = b.add(("binary", "add", total, i))
        new.append(total if -1 <= b.bounds[total][0] and b.bounds[total][1] <= 1 else b.add(("unary", "tanh", total)))
    return tuple(new)


def bounds_of(recipe):
    """The interval of every value of ``recipe`` (x and the states in [-1, 1])."""
    inputs, widths, steps = recipe[:3]
    b = _Builder(inputs, widths)
    for op in steps:
        b.append(op)
    return b.bounds


@settings(max_examples=30, deadline=None)
@given(mid=st.booleans(), data=st.data())
def test_recipes_hold_what_they_promise(mid, data):
    """The drawing itself (traced, no kernels): a GEMM mid-step exactly when asked for; every
    value inside its interval at random x and states in [-1, 1]; y and what any op but tanh
    reads inside [-LIMIT, LIMIT]; the new states inside [-1, 1]. (So float32 can agree to 1e-4.)"""
    recipe = data.draw(recipes(mid))
    cell = RecipeCell(recipe, np.float64, data.draw(st.integers(0, 2**16)))
    program = trace(cell, recipe[0])
    mids = [g for g in program.plan.per_step_gemms if g.left not in program.state_names]
    assert bool(mids) == mid, program.plan
    bounds = bounds_of(recipe)
    rng = np.random.default_rng(0)
    values = [Tensor(rng.uniform(-1, 1, (64, w))) for w in (recipe[0], *recipe[1])]
    for k, op in enumerate(recipe[2]):
        values.append(cell._run(k, op, values))
    read = {i for op in recipe[2] if op[:2] != ("unary", "tanh") for i in _operands(op)} | {recipe[4]}
    for i, (v, (lo, hi)) in enumerate(zip(values, bounds)):
        assert i not in read or max(-lo, hi) <= LIMIT, (i, lo, hi)
        assert lo - 1e-12 <= v.data.min() and v.data.max() <= hi + 1e-12, (i, lo, hi, v.data.min(), v.data.max())
    for i in recipe[3]:
        assert -1 <= bounds[i][0] and bounds[i][1] <= 1, (i, bounds[i])


# ---------------------------------------------------------------- compiled against graph


@st.composite
def cases(draw, mid=None, most=6, widest=3):
    """(recipe, seed, T, B, lengths or None, reverse, whether x requires grad): a program and
    a batch to run it on."""
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    recipe, seed = draw(recipes(mid, most, widest)), draw(st.integers(0, 2**16))
    return recipe, seed, steps, batch, lengths, draw(st.booleans()), draw(st.booleans())


def run(cell, backend, x, states, lengths, reverse, x_grad=True):
    """Run ``cell`` under ``nn.Recurrent(backend=)`` and backpropagate a fixed weighted sum of
    its outputs and final states (x requires grad if ``x_grad``; if not, the kernels skip dx).
    Returns name -> array for the outputs, the final states and the gradients of x, the
    initial states and every parameter (zeros for a None)."""
    cell.zero_grad()
    layer = nn.Recurrent(cell, reverse=reverse, backend=backend)
    x = Tensor(x, requires_grad=x_grad)
    states = tuple(Tensor(s, requires_grad=True) for s in states)
    out, final = layer(x, states if len(states) > 1 else states[0], lengths=lengths)
    finals = final if isinstance(final, tuple) else (final,)
    assert count_nodes(out, CompiledRecurrence) == (backend != "graph"), "the compiled run must be one fused node"
    rng = np.random.default_rng(1)
    loss = 0
    for t in (out, *finals):
        loss = loss + (t * Tensor(rng.standard_normal(t.shape).astype(t.dtype))).sum()
    loss.backward()

    def grad(t):
        return np.zeros_like(t.data) if t.grad is None else np.asarray(getattr(t.grad, "data", t.grad))

    result = {"out": out.data, "d x": grad(x)}
    result.update((f"final {k}", f.data) for k, f in enumerate(finals))
    result.update((f"d state {k}", grad(s)) for k, s in enumerate(states))
    result.update((f"d {name}", grad(p)) for name, p in cell.named_parameters())
    return result


def check_compiled_equals_graph(case, dtype, backend="numba"):
    """The recipe's cell compiled (for ``backend``) and unrolled agree on everything ``run`` returns."""
    recipe, seed, steps, batch, lengths, reverse, x_grad = case
    inputs, widths = recipe[:2]
    cell = RecipeCell(recipe, dtype, seed)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (steps, batch, inputs)).astype(dtype)
    for b, n in enumerate(lengths or ()):
        x[n:, b] = np.nan
    states = [rng.uniform(-1, 1, (batch, w)).astype(dtype) for w in widths]
    assert_compiled_equals_graph(cell, x, states, lengths, reverse, x_grad, backend)


#: what the compiler refuses though the trace takes it (a product of one of several per-step
#: products of one operand: tests/test_compiler_kernels.py::ProductOfOneOfTwoProducts)
KNOWN_REFUSAL = "a product of a value that is one of several products of the same operand"


def assert_compiled_equals_graph(cell, x, states, lengths, reverse, x_grad=True, backend="numba"):
    """``run`` on the graph and compiled agree to ``TOLERANCE`` of x's dtype, and are finite."""
    want = run(cell, "graph", x, states, lengths, reverse, x_grad)
    try:
        got = run(cell, backend, x, states, lengths, reverse, x_grad)
    except CompileError as error:  # the one recipe shape the compiler refuses: a clear refusal is the contract
        assert KNOWN_REFUSAL in str(error), error
        return
    assert got.keys() == want.keys()
    rtol, atol = TOLERANCE[x.dtype.type]
    for name in want:
        assert np.isfinite(want[name]).all(), f"graph {name} is not finite: the recipe left its bounds"
        assert np.isfinite(got[name]).all(), f"compiled {name} is not finite"
        what = getattr(cell, "spec", type(cell).__name__)
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=f"{name} of\n{what}")


#: two states of different widths, an output that is no state, a GEMM mid-step over r * h
#: with a slice of its weight, a sum broadcast back, where on a comparison with 0
TWO_STATES_MID_GEMM = (2, (3, 2), (
    ("linear_x", 1, 6),             # 3: cat([x, h]) @ W + b, the gates
    ("slice", 3, 0, 3),             # 4
    ("slice", 3, 3, 6),             # 5
    ("unary", "sigmoid", 4),        # 6: r
    ("binary", "mul", 6, 1),        # 7: r * h
    ("linear", 7, 3, 2, True),      # 8: (r * h) @ W[:3].T + b[:3], mid-step
    ("binary", "add", 5, 8),        # 9
    ("unary", "tanh", 9),           # 10: the new h
    ("linear", 2, 2, 0, False),     # 11: c @ U
    ("sum", 10),                    # 12: width 1
    ("binary", "mul", 11, 12),      # 13: broadcast
    ("where", "gt", 13, None, 0.0, 13, 2),  # 14: where(t13 > 0, t13, c)
    ("unary", "tanh", 14),          # 15: the new c
), (10, 15), 9)

#: one state that is the output, products of x and h only, and log, exp, /, a constant mask,
#: constants and a per-unit vector
ONE_STATE_POINTWISE = (3, (2,), (
    ("linear", 0, 4, 0, True),      # 2: x @ W + b
    ("linear", 1, 4, 0, False),     # 3: h @ U
    ("binary", "add", 2, 3),        # 4
    ("slice", 4, 0, 2),             # 5
    ("slice", 4, 2, 4),             # 6
    ("unary", "sigmoid", 5),        # 7: f
    ("const", "add", 7, 0.5),       # 8
    ("unary", "log", 8),            # 9
    ("unary", "tanh", 6),           # 10
    ("unary", "exp", 10),           # 11
    ("binary", "div", 11, 8),       # 12
    ("mask", (True, False), 12, 9),  # 13
    ("const", "rsub", 7, 1.0),      # 14: 1 - f
    ("binary", "mul", 14, 1),       # 15: (1 - f) * h
    ("vector", 13),                 # 16
    ("binary", "add", 15, 16),      # 17
    ("unary", "tanh", 17),          # 18: the new h, and y
), (18,), 18)


#: found by the property (shrunk): a product of a per-step product, (h @ U) @ W
PRODUCT_OF_PRODUCT = (1, (1,), (
    ("linear", 0, 1, 0, True), ("linear", 1, 1, 0, False), ("binary", "add", 2, 3), ("unary", "sigmoid", 0),
    ("linear", 3, 1, 0, True), ("binary", "add", 4, 5), ("binary", "add", 7, 6), ("unary", "tanh", 8),
), (9,), 2)


@settings(max_examples=8, deadline=None)
@given(case=cases())
@example(case=(PRODUCT_OF_PRODUCT, 0, 1, 1, None, False, True))
@example(case=(TWO_STATES_MID_GEMM, 0, 4, 3, [4, 1, 2], False, True))
@example(case=(ONE_STATE_POINTWISE, 1, 3, 2, [1, 3], True, False))
def test_compiled_equals_graph_float64(case):
    check_compiled_equals_graph(case, np.float64)


#: found by the property (shrunk): a comparison of a state (s0 < -0.5) before the products
COMPARE_BEFORE_PRODUCT = (3, (1, 1), (
    ("linear", 0, 3, 0, True), ("linear", 1, 3, 0, False), ("binary", "add", 3, 4), ("slice", 5, 0, 1),
    ("slice", 5, 1, 2), ("slice", 5, 2, 3), ("vector", 4), ("where", "lt", 1, None, -0.5, 1, 6), ("slice", 9, 0, 1),
    ("binary", "add", 7, 11), ("unary", "tanh", 12), ("binary", "add", 8, 10), ("unary", "tanh", 14),
), (13, 15), 3)


@settings(max_examples=4, deadline=None)
@given(case=cases())
@example(case=(COMPARE_BEFORE_PRODUCT, 0, 1, 1, None, False, True))
@example(case=(TWO_STATES_MID_GEMM, 2, 4, 3, [2, 4, 1], True, True))
def test_compiled_equals_graph_float32(case):
    check_compiled_equals_graph(case, np.float32)


#: found by the property on the CUDA simulator: y wider than the state (the step's first
#: kernel ran over y's width and read past the state's)
OUTPUT_WIDER_THAN_STATE = (1, (1,), (
    ("linear", 0, 2, 0, True), ("linear", 1, 2, 0, False), ("binary", "add", 2, 3), ("slice", 4, 0, 1),
    ("slice", 4, 1, 2), ("unary", "sigmoid", 0), ("binary", "add", 5, 6), ("binary", "add", 8, 7),
    ("unary", "tanh", 9),
), (10,), 2)


@pytest.mark.cuda
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                    reason="the CUDA kernels run under NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@settings(max_examples=5, deadline=None)
@given(case=cases(most=4))
@example(case=(OUTPUT_WIDER_THAN_STATE, 0, 1, 1, None, False, False))
def test_compiled_equals_graph_on_cuda(dtype, case):
    """The same property for the CUDA module, on the simulator (tiny shapes: every thread runs in Python)."""
    check_compiled_equals_graph(case, dtype, "cuda")


# ---------------------------------------------------------------- bugs the property found, as small cells


def assert_small_cell_agrees(cell):
    """``assert_compiled_equals_graph`` for a float64 cell of input and state width 2, T = 3, B = 2."""
    rng = np.random.default_rng(0)
    assert_compiled_equals_graph(cell, rng.uniform(-1, 1, (3, 2, 2)), [rng.uniform(-1, 1, (2, 2))], [3, 2], False)


class _SmallCell(nn.Cell):
    """A state of width 2 and a (2, 2) weight U."""

    def __init__(self):
        self.state_size = 2
        self.U = Parameter(np.random.default_rng(1).uniform(-1, 1, (2, 2)))


class ProductOfProduct(_SmallCell):
    """h = tanh(x + (h @ U) @ W): a per-step product whose left operand is another's result."""

    def __init__(self):
        super().__init__()
        self.W = Parameter(np.random.default_rng(2).uniform(-1, 1, (2, 2)))

    def forward(self, x, h):
        u = h @ self.U
        h = (x + u @ self.W).tanh()
        return h, h


def test_a_product_of_a_per_step_product_compiles_and_agrees():
    """The generated forward multiplies ``u`` by W, but ``u`` is the array of the first
    product (``h_w``) and is never defined: numba's TypingError "name 'u' is not defined"."""
    assert_small_cell_agrees(ProductOfProduct())


class CompareBeforeProduct(_SmallCell):
    """h = tanh(x + where(h < 0, h, h @ U)): a comparison of the state before the step's product."""

    def forward(self, x, h):
        h = (x + ops.where(h < 0, h, h @ self.U)).tanh()
        return h, h


def test_a_comparison_before_a_per_step_product_compiles_and_agrees():
    """The comparison makes a loop of its own before the product; backward writes that loop
    with no line in it (a comparison has no gradient): the generated module is an
    IndentationError ("expected an indented block after 'for' statement")."""
    assert_small_cell_agrees(CompareBeforeProduct())


class SumOutput(_SmallCell):
    """y = the sum of h over its features, shape (B,): the layer's output is (T, B)."""

    def forward(self, x, h):
        h = (x + h @ self.U).tanh()
        return h.sum(-1), h


def test_an_output_without_a_feature_axis_compiles_and_agrees():
    """The step compiles (the kernel's out is (T, B, 1)), then ``run_compiled`` takes the
    width of y as ``shape_of(y)[-1]`` of its shape (): an IndexError, which
    ``backend="auto"`` does not catch either."""
    assert_small_cell_agrees(SumOutput())
