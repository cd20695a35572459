"""tinyseq_jit.compiler (issue 23, first slice): a cell's step traced into an SSA IR and sorted.

The gallery cells, written from ops, trace to the expected schedule (hoisted GEMMs, per-step
GEMMs, point-wise segments); the IR run by its NumPy interpreter equals the cell's forward
bit for bit (the proof that the IR holds the whole step); names and lines are the cell's
own; every refusal names the construct and the line; the cache key ignores T and B.
"""

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyseq
from tinyseq import Tensor, nn, ops
from tinyseq.nn import Parameter
from tinyseq_jit.compiler import HOISTED, PER_STEP, SPLIT, CompileError, cache_key, clear_cache, trace_cached
from tinyseq_jit.compiler import trace as compile_trace

from test_recurrent import OpsLSTM

F64 = np.float64


def trace(cell, input_size=3, **options):
    """``tinyseq_jit.compiler.trace`` with the gallery's input size."""
    return compile_trace(cell, input_size, **options)


# ---------------------------------------------------------------- the gallery


class Elman(nn.Cell):
    def __init__(self, i, h):
        self.state_size = h
        self.xh, self.hh = nn.Linear(i, h, dtype=F64), nn.Linear(h, h, bias=False, dtype=F64)

    def forward(self, x, h):
        h = (self.xh(x) + self.hh(h)).tanh()
        return h, h


class MGU(nn.Cell):
    """The issue's minimal gated unit: Linear over cat([x, h]), a GEMM mid-step."""

    def __init__(self, i, h):
        self.state_size = h
        self.f, self.n = nn.Linear(i + h, h, dtype=F64), nn.Linear(i + h, h, dtype=F64)

    def forward(self, x, h):
        f = self.f(ops.cat([x, h], -1)).sigmoid()
        n = self.n(ops.cat([x, f * h], -1)).tanh()
        h = (1 - f) * h + f * n
        return h, h


class ClassicGRU(nn.Cell):
    """GRU with reset_after=False: n = tanh(W_n x + b_in + U_n (r * h) + b_hn)."""

    def __init__(self, i, h):
        self.state_size, self.hidden = h, h
        rng = np.random.default_rng(1)
        self.weight_ih = Parameter(rng.normal(size=(3 * h, i)))
        self.weight_hh = Parameter(rng.normal(size=(3 * h, h)))
        self.bias_ih, self.bias_hh = Parameter(rng.normal(size=3 * h)), Parameter(rng.normal(size=3 * h))

    def forward(self, x, h):
        H = self.hidden
        gi = x @ self.weight_ih.T + self.bias_ih
        i_r, i_z, i_n = ops.chunk(gi, 3, axis=-1)
        gh = h @ self.weight_hh[:2 * H].T + self.bias_hh[:2 * H]
        h_r, h_z = ops.chunk(gh, 2, axis=-1)
        r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
        n = (i_n + (r * h) @ self.weight_hh[2 * H:].T + self.bias_hh[2 * H:]).tanh()
        h = (1 - z) * n + z * h
        return h, h


class IndRNN(nn.Cell):
    """h = relu(W x + u * h + b): no per-step GEMM."""

    def __init__(self, i, h):
        self.state_size = h
        self.W = nn.Linear(i, h, dtype=F64)
        self.u = Parameter(np.random.default_rng(2).uniform(-1, 1, h))

    def forward(self, x, h):
        h = (self.W(x) + self.u * h).relu()
        return h, h


class MIRNN(nn.Cell):
    """Multiplicative integration: h = tanh(W x * U h + b), the product inside the point-wise part."""

    def __init__(self, i, h):
        self.state_size = h
        self.W, self.U = nn.Linear(i, h, bias=False, dtype=F64), nn.Linear(h, h, bias=False, dtype=F64)
        self.b = Parameter(np.zeros(h))

    def forward(self, x, h):
        h = (self.W(x) * self.U(h) + self.b).tanh()
        return h, h


def _ops_lstm(i, h):
    cell = OpsLSTM(i, h)
    rng = np.random.default_rng(3)
    for _, p in cell.named_parameters():
        p.data[...] = rng.normal(size=p.shape) * 0.5
    return cell


GALLERY = {
    "elman": lambda: Elman(3, 4),
    "lstm": lambda: _ops_lstm(3, 4),
    "classic_gru": lambda: ClassicGRU(3, 4),
    "mgu": lambda: MGU(3, 4),
    "indrnn": lambda: IndRNN(3, 4),
    "mirnn": lambda: MIRNN(3, 4),
    "jordan": lambda: nn.JordanCell(3, 5, 2).to(F64),
    "jordan_relu_tanh": lambda: nn.JordanCell(3, 5, 2, activation="relu", output_activation="tanh").to(F64),
    "deep_transition": lambda: nn.DeepTransitionCell(3, 4, depth=3).to(F64),
    "deep_transition_shortcut": lambda: nn.DeepTransitionCell(3, 4, depth=2, shortcut=True).to(F64),
}


def _schedule(program):
    """The plan in short: (number of merged hoisted GEMMs, the stages as "gemm:n" / "pw:n")."""
    plan = program.plan
    stages = [f"{'gemm' if s.kind == 'gemm' else 'pw'}:{len(s.items)}" for s in plan.stages]
    return len(plan.hoisted_gemms), stages


@pytest.mark.parametrize("name, hoisted, stages", [
    ("elman", 1, ["gemm:1", "pw:2"]),
    ("lstm", 1, ["gemm:1", "pw:15"]),
    ("classic_gru", 1, ["gemm:1", "pw:10", "gemm:1", "pw:5"]),
    ("mgu", 1, ["gemm:1", "pw:5", "gemm:1", "pw:4"]),
    ("indrnn", 1, ["pw:3"]),
    ("mirnn", 1, ["gemm:1", "pw:3"]),
    ("jordan", 1, ["gemm:1", "pw:2", "gemm:1", "pw:1"]),
    ("deep_transition", 1, ["gemm:1", "pw:2", "gemm:1", "pw:2", "gemm:1", "pw:2"]),
    ("deep_transition_shortcut", 1, ["gemm:2", "pw:2", "gemm:1", "pw:3"]),
])
def test_the_gallery_sorts_into_its_schedule(name, hoisted, stages):
    program = trace(GALLERY[name]())
    assert _schedule(program) == (hoisted, stages), f"{program}\n{program.plan}"
    # every hoisted GEMM's left operand is x, and no per-step GEMM reads x alone
    assert all(m.left == "x" for m in program.plan.hoisted_gemms)
    assert all(g.kind == PER_STEP and g.left != "x" for g in program.plan.per_step_gemms)


def test_elman_hoists_the_input_gemm_and_keeps_one_per_step_gemm():
    program = trace(Elman(3, 4))
    plan = program.plan
    (merged,) = plan.hoisted_gemms
    assert [(g.left, g.rows) for g in merged.products] == [("x", (0, 3))]
    (step,) = plan.per_step_gemms
    assert step.left == "h" and step.kind == PER_STEP
    assert sorted(plan.matmuls.values()) == [HOISTED, PER_STEP]
    assert plan.segments == (("t5", "h_1"),) and program.new_state == (program.y,) == ("h_1",)
    assert plan.hoisted == ("t1", "t2")  # x @ W^T and its bias, before the loop
    assert plan.saved == ("h", "h_1")  # the state (also the GEMM's left operand) and tanh's output
    assert plan.weights and all(program.op(n).kind == "transpose" for n in plan.weights)


def test_mgu_splits_linear_over_cat_and_merges_the_hoisted_products():
    program = trace(MGU(3, 4))
    plan = program.plan
    assert [s.kind for s in plan.stages] == ["gemm", "pointwise", "gemm", "pointwise"]
    assert len(plan.splits) == 2 and set(plan.matmuls.values()) == {SPLIT}
    for split in plan.splits:  # x @ W[:, :3]^T hoisted, the state part @ W[:, 3:]^T per step
        x_part, h_part = split.parts
        assert (x_part.left, x_part.rows, x_part.kind) == ("x", (0, 3), HOISTED)
        assert (h_part.rows, h_part.kind) == ((3, 7), PER_STEP)
        assert program.op(split.cat).kind == "cat"
    # both x-parts share x: one hoisted GEMM over both weights' columns
    (merged,) = plan.hoisted_gemms
    assert merged.left == "x" and len(merged.products) == 2 and merged.columns == ((0, 4), (4, 8))
    assert set(plan.folded) == {s.cat for s in plan.splits}  # the cats are no longer run per step
    assert str(plan).splitlines()[:2] == ["hoisted GEMM over T*B rows: x @ [t2.0 <- t1[0:3], t7.0 <- t6[0:3]]",
                                          "per-step GEMM: h @ [t2.1 <- t1[3:7]]"]
    assert plan.per_step_gemms[0].left == "h"
    assert program.op(plan.per_step_gemms[1].left).inputs == ("f", "h")  # f * h


def test_classic_gru_needs_a_gemm_mid_step():
    plan = trace(ClassicGRU(3, 4)).plan
    first, second = plan.per_step_gemms
    assert first.left == "h"
    assert plan.stages[2].items == (second,)
    assert second.left in plan.segments[0]  # r * h, made in the first segment


def test_indrnn_has_no_per_step_gemm():
    plan = trace(IndRNN(3, 4)).plan
    assert plan.per_step_gemms == () and len(plan.segments) == 1
    assert "u" in [v.name for v in trace(IndRNN(3, 4)).inputs]


def test_mi_rnn_keeps_the_product_of_the_two_gemms_point_wise():
    program = trace(MIRNN(3, 4))
    (segment,) = program.plan.segments
    products = [program.op(n) for n in segment if program.op(n).kind == "mul"]
    (product,) = products
    assert program.plan.classes[product.inputs[0]] == HOISTED  # W x, from before the loop
    assert product.inputs[1] == program.plan.per_step_gemms[0].result  # U h, this step's GEMM


def test_per_step_products_of_one_left_operand_merge_into_one_gemm():
    plan = trace(GALLERY["deep_transition_shortcut"]()).plan
    first = plan.stages[0]
    (merged,) = first.merged  # U h and S h: one GEMM of h over [U^T | S^T]
    assert merged.left == "h_prev" and len(merged.products) == 2 and merged.columns == ((0, 4), (4, 8))
    assert all(len(s.merged) == 1 for s in plan.stages if s.kind == "gemm")


def test_saved_values_are_the_states_and_what_the_derivatives_read():
    program = trace(_ops_lstm(3, 4))
    saved = program.plan.saved
    assert saved[:2] == ("h", "c")
    assert {program.op(n).kind for n in saved[2:]} == {"sigmoid", "tanh"}  # as the hand-written kernel's
    for op in program.ops:  # every sigmoid/tanh output of the step is kept
        if op.kind in ("sigmoid", "tanh"):
            assert op.name in saved
    assert "h" in saved  # the per-step GEMM's left operand, for the weight gradient


# ---------------------------------------------------------------- the IR is the whole step


def _run_both(cell, program, batch, seed):
    rng = np.random.default_rng(seed)
    sizes = cell.state_size if isinstance(cell.state_size, tuple) else (cell.state_size,)
    x = rng.normal(size=(batch, 3)).astype(program.dtype)
    states = tuple(rng.normal(size=(batch, n)).astype(program.dtype) for n in sizes)
    state = states if isinstance(cell.state_size, tuple) else states[0]
    params = {name: np.asarray(p.data) for name, p in cell.named_parameters()}
    y, new = cell(Tensor(x), tuple(map(Tensor, states)) if isinstance(state, tuple) else Tensor(state))
    y_ir, new_ir = program.run_numpy(params, x, state)
    return (y.data, tuple(s.data for s in (new if isinstance(new, tuple) else (new,)))), \
        (y_ir, new_ir if isinstance(new_ir, tuple) else (new_ir,))


@pytest.mark.parametrize("name", sorted(GALLERY))
@given(batch=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_ir_run_in_numpy_equals_the_forward_bit_for_bit(name, batch, seed):
    cell = GALLERY[name]()
    program = trace(cell)
    (y, new), (y_ir, new_ir) = _run_both(cell, program, batch, seed)
    np.testing.assert_array_equal(y_ir, y)
    assert len(new_ir) == len(new)
    for a, b in zip(new_ir, new):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["lstm", "mgu", "classic_gru", "jordan_relu_tanh"])
def test_float32_steps_trace_in_float32_and_equal_the_forward(name):
    cell = GALLERY[name]().to(np.float32)
    program = trace(cell)
    assert program.dtype == np.float32
    (y, new), (y_ir, new_ir) = _run_both(cell, program, 4, 0)
    assert y_ir.dtype == np.float32
    np.testing.assert_array_equal(y_ir, y)
    for a, b in zip(new_ir, new):
        np.testing.assert_array_equal(a, b)


def test_the_interpreter_reads_the_parameters_it_is_given():
    cell = Elman(3, 4)
    program = trace(cell)
    params = {name: np.asarray(p.data) for name, p in cell.named_parameters()}
    x, h = np.ones((2, 3)), np.ones((2, 4))
    y0, _ = program.run_numpy(params, x, h)
    params["xh.bias"] = params["xh.bias"] + 1.0  # parameters are inputs, never baked constants
    y1, _ = program.run_numpy(params, x, h)
    assert not np.array_equal(y0, y1)
    cell.xh.bias.data[...] = params["xh.bias"]
    np.testing.assert_array_equal(cell(Tensor(x), Tensor(h))[0].data, y1)


def test_a_comparison_mask_is_an_op_of_the_step():
    class Gated(nn.Cell):
        def __init__(self):
            self.state_size, self.W = 4, nn.Linear(3, 4, dtype=F64)

        def forward(self, x, h):
            a = self.W(x) + h
            h = ops.where(a > 0.25, a, h * 0.5)
            return h, h

    cell = Gated()
    program = trace(cell)
    (where,) = [op for op in program.ops if op.kind == "where"]
    assert program.op(where.inputs[2]).kind == "gt"
    (y, _), (y_ir, _) = _run_both(cell, program, 5, 0)
    np.testing.assert_array_equal(y_ir, y)


def test_constant_arrays_and_masks_made_in_the_step_are_kept_as_constants():
    class Masked(nn.Cell):
        def __init__(self):
            self.state_size, self.W = 4, nn.Linear(3, 4, dtype=F64)
            self.mask = np.array([True, False, True, False])

        def forward(self, x, h):
            a = self.W(x) * Tensor(np.arange(4.0))
            h = ops.where(self.mask, a, h)
            return h, h

    cell = Masked()
    program = trace(cell)
    (name,) = program.constants
    np.testing.assert_array_equal(program.constants[name], np.arange(4.0))
    (where,) = [op for op in program.ops if op.kind == "where"]
    np.testing.assert_array_equal(where.attr("cond"), cell.mask)
    assert "where(<constant mask (4,)>, " in str(program)
    (y, _), (y_ir, _) = _run_both(cell, program, 5, 1)
    np.testing.assert_array_equal(y_ir, y)


# ---------------------------------------------------------------- names and lines


def _line(cls, text):
    """The line number of the line of ``cls``'s source that contains ``text``."""
    lines, first = inspect.getsourcelines(cls)
    (hit,) = [first + i for i, line in enumerate(lines) if text in line]
    return hit


def test_ops_carry_the_cells_names_and_lines():
    program = trace(MGU(3, 4))
    text = str(program)
    line = _line(MGU, "f = self.f(ops.cat([x, h], -1)).sigmoid()")
    assert f"    f = sigmoid(t3)  # line {line}: f = self.f(ops.cat([x, h], -1)).sigmoid()" in text
    assert program.op("n").kind == "tanh" and program.op("f").line == line
    # the input h and the new h are two values: the new one is h_1
    assert program.state_names == ("h",) and program.y == "h_1" and program.new_state == ("h_1",)
    assert [v.name for v in program.inputs] == ["x", "h", "f.weight", "f.bias", "n.weight", "n.bias"]
    assert text.splitlines()[-1] == "    return h_1, h_1"
    names = [op.name for op in program.ops]
    assert len(set(names)) == len(names)


def test_a_tuple_state_takes_the_names_it_is_unpacked_into():
    program = trace(_ops_lstm(3, 4))
    assert program.state_names == ("h", "c") and program.state_tuple
    assert {"i", "f", "g", "o", "gates"} <= {op.name for op in program.ops}
    assert program.new_state == (program.y, "c_1")


def test_unnamed_values_are_numbered():
    program = trace(Elman(3, 4))
    assert [op.name for op in program.ops if op.name.startswith("t")] == ["t0", "t1", "t2", "t3", "t4", "t5"]


# ---------------------------------------------------------------- refusals


class Refused(nn.Cell):
    """A cell whose forward does one thing the compiler refuses, chosen by ``how``."""

    def __init__(self, how):
        self.state_size, self.how = 4, how
        self.W = nn.Linear(3, 4, dtype=F64)
        self.alpha = Parameter(np.ones(1))

    def forward(self, x, h):
        a = self.W(x) + h
        if self.how == "softmax":
            a = ops.softmax(a, -1)  # refused: softmax
        if self.how == "if":
            if a.sum(axis=-1, keepdims=True) > 0:  # refused: if
                a = a * 2
        if self.how == "float":
            a = a * float(self.alpha)  # refused: float
        if self.how == "item":
            a = a * a[:, :1].item()  # refused: item
        if self.how == "numpy":
            a = a * a.numpy().mean()  # refused: numpy
        if self.how == "asarray":
            a = a * np.asarray(a).mean()  # refused: asarray
        if self.how == "in_place":
            a.add_(1.0)  # refused: in_place
        if self.how == "param_in_place":
            self.W.weight.data.add_(1.0)  # refused: param_in_place
        if self.how == "batch_sum":
            a = a - a.sum(axis=0, keepdims=True)  # refused: batch_sum
        if self.how == "batch_index":
            a = a[::-1]  # refused: batch_index
        if self.how == "batch_cat":
            a = ops.cat([a, a], 0)[:2]  # refused: batch_cat
        if self.how == "no_grad":
            with tinyseq.no_grad():
                b = a * 2
            a = a + b  # refused: no_grad
        if self.how == "mixing_matmul":
            a = a @ self.W(x).T  # refused: mixing_matmul
        if self.how == "constant":
            return Tensor(np.zeros((x.shape[0], 4))), a  # refused: constant
        return a, a


@pytest.mark.parametrize("how, words", [
    ("softmax", "Softmax is not supported"),
    ("if", "bool() reads a tensor's value"),
    ("float", "float() reads a tensor's value"),
    ("item", ".item() reads a tensor's value"),
    ("numpy", ".numpy() reads a tensor's value"),
    ("asarray", "np.asarray() reads a tensor's value"),
    ("in_place", "in-place change add_"),
    ("param_in_place", "it reads .data"),
    ("batch_sum", "sum over the batch axis"),
    ("batch_index", "indexing the batch axis"),
    ("batch_cat", "cat along the batch axis"),
    ("no_grad", "outside the recorded graph"),
    ("mixing_matmul", "transpose of a batched value"),
    ("constant", "y_t is not derived from x or the state"),
])
def test_each_refusal_names_the_construct_the_line_and_what_is_supported(how, words):
    with pytest.raises(CompileError) as info:
        trace(Refused(how))
    message = str(info.value)
    line = _line(Refused, f"# refused: {how}")
    assert words in message, message
    assert f"{__file__}:{line}:" in message, message
    assert "Refused.forward cannot be compiled" in message and "Supported: + - * /" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_tracing_leaves_nothing_behind_even_when_it_fails():
    before = sys.gettrace()
    with pytest.raises(CompileError):
        trace(Refused("softmax"))
    engine = importlib.import_module("tinyseq.tensor")  # (tinyseq.tensor is also a function)
    assert engine._tracer is None and sys.gettrace() is before
    trace(Elman(3, 4))
    assert engine._tracer is None and sys.gettrace() is before
    a = Tensor(np.ones(3), requires_grad=True)  # the engine works as before
    (a * 2).sum().backward()
    np.testing.assert_array_equal(a.grad.data, 2.0)


def test_a_cell_without_state_size_or_with_another_dtype_is_a_clear_error():
    class NoSize(nn.Module):
        def forward(self, x, h):
            return h, h

    with pytest.raises(TypeError, match="NoSize has no state_size"):
        trace(NoSize())
    with pytest.raises(TypeError, match="parameters are"):
        trace(nn.JordanCell(3, 4, 2), dtype=F64)


# ---------------------------------------------------------------- the cache


@pytest.mark.parametrize("name", ["mgu", "lstm", "classic_gru"])
def test_the_program_does_not_depend_on_the_batch_size(name):
    a, b = trace(GALLERY[name](), batch=2), trace(GALLERY[name](), batch=5)
    assert a.signature() == b.signature()
    assert str(a) == str(b)


def test_trace_cached_is_keyed_by_class_structure_shapes_and_dtype():
    clear_cache()
    first, second = MGU(3, 4), MGU(3, 4)  # other weights, same structure
    assert trace_cached(first, 3) is trace_cached(second, 3)
    assert trace_cached(MGU(3, 5), 3) is not trace_cached(first, 3)
    tanh, relu = nn.JordanCell(3, 4, 2), nn.JordanCell(3, 4, 2, activation="relu")
    assert cache_key(tanh, 3) != cache_key(relu, 3)
    assert trace_cached(relu, 3) is not trace_cached(tanh, 3)
    assert cache_key(tanh, 3) != cache_key(nn.JordanCell(3, 4, 2).to(F64), 3)
    assert "batch" not in repr(cache_key(first, 3))


def test_tinyseq_imports_without_the_compiler():
    code = "import sys, tinyseq; assert not any(m.startswith('tinyseq_jit') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- random step programs


def _check_schedule(program):
    """Run the plan's schedule symbolically: every stage finds its inputs ready (inputs,
    weights, hoisted values, earlier stages), nothing before the loop depends on the state,
    every per-step op runs exactly once (a cat folded into split products never), and the
    outputs are ready at the end."""
    plan, by_name = program.plan, {op.name: op for op in program.ops}
    stateful = set(program.state_names)
    for op in program.ops:
        if any(a in stateful for a in op.inputs if isinstance(a, str)):
            stateful.add(op.name)
    before_loop = set(plan.weights) | set(plan.hoisted)
    assert not before_loop & stateful
    ready = {v.name for v in program.inputs} | before_loop | set(program.constants)
    for op in program.ops:  # the hoisted ops, in program order, need only what is before the loop
        if op.name in before_loop:
            assert all(a in ready for a in op.inputs if isinstance(a, str)), op
    parts_left = {s.op: {g.result for g in s.parts if g.kind == PER_STEP} for s in plan.splits}
    ran = []
    for stage in plan.stages:
        for item in stage.items:
            if stage.kind == "gemm":
                assert item.left in ready and item.weight in ready, item
                matmul = item.result.split(".")[0] if item.result not in by_name else item.result
                ran.append(item.result)
                if matmul in parts_left:
                    parts_left[matmul].discard(item.result)
                    if not parts_left[matmul]:
                        ready.add(matmul)
                else:
                    ready.add(matmul)
            else:
                op = by_name[item]
                assert all(a in ready for a in op.inputs if isinstance(a, str)), (op, ready)
                ready.add(item)
                ran.append(item)
    step_ops = [op.name for op in program.ops if op.name in stateful and op.name not in plan.folded]
    ran_ops = {n.split(".")[0] for n in ran}
    assert ran_ops == set(step_ops), (ran_ops, step_ops)
    assert len(ran) == len(set(ran))  # nothing runs twice
    assert program.y in ready and all(s in ready for s in program.new_state)


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_the_gallery_schedules_run_in_order(name):
    _check_schedule(trace(GALLERY[name]()))


STEPS = ("add", "sub", "mul", "div", "sigmoid", "tanh", "relu", "abs", "gemm", "cat_linear", "cat_slice",
         "constants", "sum")


class RandomCell(nn.Cell):
    """A step drawn from a recipe: each entry makes a new (B, H) value from earlier ones (x's
    projection, the states, the values made before), through one kind of op."""

    def __init__(self, recipe, states, hidden=4, inputs=3):
        self.recipe, self.hidden = recipe, hidden
        self.state_size = (hidden,) * states if states > 1 else hidden
        rng = np.random.default_rng(len(recipe))
        self.proj = nn.Linear(inputs, hidden, dtype=F64)
        self.weights = nn.ModuleList([nn.Linear((2 if kind == "cat_linear" else 1) * hidden, hidden, bias=False,
                                                dtype=F64) for kind, _, _ in recipe])
        self.scale = Parameter(rng.uniform(0.5, 1.5, hidden))

    def forward(self, x, state):
        pool = [self.proj(x), *(state if isinstance(state, tuple) else (state,))]
        for (kind, i, j), linear in zip(self.recipe, self.weights):
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            if kind in ("add", "sub", "mul"):
                v = getattr(ops, kind)(a, b)
            elif kind == "div":
                v = a / (b * b + 1)
            elif kind in ("sigmoid", "tanh", "relu", "abs"):
                v = getattr(a, kind)()
            elif kind in ("gemm", "cat_linear"):
                v = linear(a if kind == "gemm" else ops.cat([a, b], -1))
            elif kind == "cat_slice":
                v = ops.cat([a, b], -1)[:, self.hidden // 2:self.hidden // 2 + self.hidden]
            elif kind == "constants":
                v = 0.5 * a * self.scale - 1.0
            else:
                v = a * a.sum(axis=-1, keepdims=True)
            pool.append(v)
        states = len(pool) - len(self.recipe) - 1
        new = tuple(pool[-1 - k].tanh() for k in range(states))
        return pool[-1], new if states > 1 else new[0]


# GEMMs drawn more often, so that splits and mid-step GEMMs are common
recipes = st.lists(st.tuples(st.sampled_from(STEPS + ("gemm", "cat_linear") * 3), st.integers(0, 30),
                             st.integers(0, 30)),
                   min_size=1, max_size=8)


@given(recipe=recipes, states=st.integers(1, 2), batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_random_steps_trace_to_programs_that_equal_the_forward_and_schedule_in_order(recipe, states, batch, seed):
    cell = RandomCell(recipe, states)
    program = trace(cell)
    (y, new), (y_ir, new_ir) = _run_both(cell, program, batch, seed)
    np.testing.assert_array_equal(y_ir, y)
    for a, b in zip(new_ir, new):
        np.testing.assert_array_equal(a, b)
    _check_schedule(program)
    assert trace(cell, batch=7).signature() == program.signature()
