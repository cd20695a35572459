"""Write a step's ``Schedule`` out as a numba.cuda module: the per-step path on the GPU.

The same schedule and the same per-element lines as the CPU module (``cpu.py``): here each
group of point-wise ops is a kernel with a thread per (sequence, feature), launched once a
step; the products go through ``tinyseq_jit.cuda._gemm.gemm``. Where threads of one launch
add into the same element (a parameter's gradient summed over the batch, a width-1 value's
over the features, a slice's) the line is a ``cuda.atomic.add``.

Layout of the module: ``forward_<k>``/``backward_<k>`` kernels (one per group, in step
order), ``begin_forward``/``end_forward``/``begin_backward`` kernels for the state and the
output between steps, ``norm_<k>`` kernels for the gradient telemetry, and ``forward`` /
``backward`` in Python, which run the time loop on the host, launching them.
"""

import re

from .cpu import Writer, _Lines
from .symbols import Sym, literals


class CudaWriter(Writer):
    """Writes the numba.cuda module for one ``Schedule`` (``source()``)."""

    def __init__(self, sched, module_doc=""):
        super().__init__(sched, module_doc)
        self.kernels = []  # (name, the arrays it takes) of each kernel written

    # ------------------------------------------------------------ lines that differ on the GPU

    def write(self, out, name, target, expr, shared):
        if shared and self.assign(name) == "+=" and "[" in target:
            array, index = target[:-1].split("[", 1)
            out(f"cuda.atomic.add({array}, ({index}), {expr.text})" if "," in index else
                f"cuda.atomic.add({array}, {index}, {expr.text})")
        else:
            super().write(out, name, target, expr, shared)

    # ------------------------------------------------------------ the arrays

    def arrays(self):
        """Every device array's identifier, in a fixed order (kernel arguments are picked from it)."""
        p, s = self.p, self.s
        names = [self.name(s.x)] + ([self.name(f"{s.x}@w")] if s.hoisted else [])
        names += [self.name("carried@" + n) for n in p.state_names]
        names += self.vector_args() + ["out"] + [self.name(n) for n in self.seq_values()] + [self.name(n) for n in self.rows()]
        names += [self.d_ident(n) for n in p.state_names] + [self.d_ident(s.x)]
        names += [self.d_ident(f"{s.x}@w")] if s.hoisted else []
        names += [self.d_ident(s.gemm_result(m)) for m in self.gemm_weights()]
        names += [self.d_ident(n) for n in s.ops if s.d_storage[n] == "row" and n in s.grads]
        names += [self.d_ident(v) for v in s.vectors if v in self.trainable()]
        names += [self.name(s.gemm_result(m) + "@back@out") for m in self.gemm_weights()]
        return list(dict.fromkeys(names + ["d_out", "grad_norms"]))

    def kernel(self, out, name, doc, body_lines, threads, valid=True):
        """A kernel ``name(t, lengths, <the arrays its body uses>)`` over ``threads`` = (features,
        rows) or ("batch",) (a thread per sequence), run where step t is inside the sequence
        (``valid``) or everywhere; returns how to launch it."""
        text = "\n".join(line.split("#")[0] for line in body_lines)  # the code, not the comments
        used = [a for a in self.arrays() if re.search(rf"\b{re.escape(a)}\b", text)]
        args = ["t", "lengths"] + used
        self.kernels.append((name, used))
        out("@cuda.jit")
        with out.block(f"def {name}({', '.join(args)}):"):
            out(f'"""{doc}"""')
            if threads[0] == "batch":
                out("b = cuda.grid(1)")
                with out.block(f"if b < lengths.shape[0]{' and t < lengths[b]' if valid else ''}:"):
                    for line in body_lines:
                        out(line)
            else:
                out("j, b = cuda.grid(2)")
                with out.block(f"if b < lengths.shape[0] and j < {threads[0]}{' and t < lengths[b]' if valid else ''}:"):
                    for line in body_lines:
                        out(line)
        out()
        out()
        size = "line(batch)" if threads[0] == "batch" else f"grid(batch, {threads[0]})"
        return f"launch({name}, *{size}, t, lengths, {', '.join(used)})"

    # ------------------------------------------------------------ the module

    def source(self):
        with literals(lambda number: f"F({number!r})"):  # numbers in the program's dtype: no float64 in float32
            return self._source()

    def _source(self):
        self.coverage = {}
        self._steps(_Lines(), _Lines())  # a dry run counts the writes into each gradient
        self.single = {key for key, columns in self.coverage.items() if all(c == 1 for c in columns)
                       and key not in self.p.state_names and key != self.s.x}
        self.coverage = None
        self.kernels = []
        kernels, loops = _Lines(), _Lines()
        launches = self._steps(kernels, loops)
        out = _Lines()
        self.header(out)
        out.lines += kernels.lines
        self.signatures(out)
        self.wrappers(out, launches)
        return "\n".join(out.lines) + "\n"

    def header(self, out):
        self.docstring(out)
        out("import math")
        out()
        out("import numba")
        out("import numpy as np")
        out("from numba import cuda")
        out()
        out("from tinyseq_jit.cuda._common import grid, line")
        out("from tinyseq_jit.cuda._gemm import gemm")
        out("from tinyseq_jit.cuda._runtime import launch")
        out()
        out(f"STATES = {self.p.state_names!r}")
        out(f"WEIGHTS = {self.weight_names()!r}  # what the step reads besides x and the state")
        out(f"F = np.{self.p.dtype.name}  # the numbers' type in the kernels")
        out()
        out()
        for name, body in (("sigmoid", "F(1.0) / (F(1.0) + math.exp(-a))"), ("tanh", "math.tanh(a)"),
                           ("exp", "math.exp(a)"), ("log", "math.log(a)"),
                           ("sign", "F(1.0) if a > F(0.0) else (F(-1.0) if a < F(0.0) else a * F(0.0))")):
            out('@cuda.jit(device=True, inline="always")')
            with out.block(f"def {name}(a):"):
                out(f"return {body}")
            out()
            out()

    def _steps(self, kernels, loops):
        """Write every kernel into ``kernels``; return the launch lines of one forward step and
        one backward step: (begin, [per stage: list of lines], end) each way."""
        p, s = self.p, self.s
        forward = []
        for k, step in enumerate(s.steps):
            if step.kind == "gemm":
                lines = []
                for m in step.gemms:
                    r = s.gemm_result(m)
                    lines.append(f"gemm({self.row_left(m.left)}, {self.name(r + '@weights')}, "
                                 f"{self.name(r)}{'[t]' if s.storage[r] == 'seq' else ''})"
                                 f"  # {self.name(r)} = {self.name(m.left)} @ {self.products(m)}")
                forward.append(lines)
                continue
            lines = []
            for g, group in enumerate(step.groups):
                body = _Lines()
                self.forward_group_body(body, group)
                threads = ("batch",) if group.kind != "loop" else (group.width,)
                lines.append(self.kernel(kernels, f"forward_{k}_{g}", f"Step t, point-wise: {self.describe(group)}.",
                                         body.lines, threads))
            forward.append(lines)
        begin = [f"{self.name(n)}[t, b, j] = {self.name('carried@' + n)}[b, j]" for n in p.state_names]
        widths = [self.width(n) for n in p.state_names]
        begin_launch = self.kernel(kernels, "begin_forward", "Keep the states step t starts from.",
                                   self._guarded(begin, widths), (max(widths),), valid=False)
        end = [f"out[t, b, j] = {self.read(p.y, self.width(p.y)).text}"]
        end += [f"{self.name('carried@' + n)}[b, j] = {self.read(new, self.width(new)).text}"
                for n, new in zip(p.state_names, p.new_state) if new != n]
        widths = [self.width(p.y)] + [self.width(n) for n, new in zip(p.state_names, p.new_state) if new != n]
        end_launch = self.kernel(kernels, "end_forward", "Step t's output, and the states the next step starts from.",
                                 self._guarded(end, widths), (max(widths),))

        backward = []
        d_rows = [n for n in s.ops if s.d_storage[n] == "row" and n in s.grads and n not in self.single]
        start = [f"{self.d_ident(n)}[b, j] = 0.0" for n in d_rows]
        start_widths = [self.width(n) for n in d_rows]
        for n, new in zip(p.state_names, p.new_state):
            if new != n:
                self.cover(new)
                start.append(f"{self.d_ident(new)}[b, j] {self.assign(new)} {self.d_ident(n)}[b, j]")
                start_widths.append(self.width(n))
        for n, new in zip(p.state_names, p.new_state):
            if new != n:
                start.append(f"{self.d_ident(n)}[b, j] = 0.0")
                start_widths.append(self.width(n))
        if p.y in s.grads:
            self.cover(p.y)
            target, _ = self.d_target(p.y, self.width(p.y))
            start.append(f"{target} {self.assign(p.y)} d_out[t, b, j]")
            start_widths.append(self.width(p.y))
        begin_back = self.kernel(kernels, "begin_backward",
                                 "Step t's gradients: zeroed, then the carried ones and the output's added.",
                                 self._guarded(start, start_widths), (max(start_widths + [1]),))
        for k, step in reversed(list(enumerate(s.steps))):
            lines = []
            if step.kind == "gemm":
                for m in step.gemms:
                    for state, new in enumerate(p.new_state):
                        if new in {g.result for g in m.products}:  # made by this product: its gradient is whole here
                            lines.append("if record:\n    " + self.kernel(
                                kernels, f"norm_{k}_{state}", f"grad_norms[{state}, t, b] = ||{self.d_ident(new)}[b]||.",
                                self._norm_body(state, new), ("batch",)))
                    r = s.gemm_result(m)
                    back_out = self.name(r + "@back@out")
                    lines.append(f"gemm({self.d_ident(r)}[t], {self.name(r + '@weights')}, {back_out}, trans_b=True)"
                                 f"  # {self.d_ident(m.left)} += {self.d_ident(r)} @ ({self.products(m)}).T")
                    kk = m.products[0].rows[1] - m.products[0].rows[0]
                    target, _ = self.d_target(m.left, kk)
                    self.cover(m.left)
                    lines.append(self.kernel(kernels, f"backward_{k}_{self.name(r)}", f"{self.d_ident(m.left)} += the "
                                             "product's gradient.", [f"{target} {self.assign(m.left)} {back_out}[b, j]"],
                                             (kk,)))
                backward.append(lines)
                continue
            for g, group in reversed(list(enumerate(step.groups))):
                body = _Lines()
                self.backward_group_body(body, group)
                threads = ("batch",) if group.kind != "loop" else (group.width,)
                if body.lines:
                    lines.append(self.kernel(kernels, f"backward_{k}_{g}", f"BPTT of step t: {self.describe(group)}.",
                                             body.lines, threads))
                for state, new in enumerate(p.new_state):
                    if new in group.ops:
                        lines.append(f"if record:\n    " + self.kernel(
                            kernels, f"norm_{k}_{g}_{state}", f"grad_norms[{state}, t, b] = ||{self.d_ident(new)}[b]||.",
                            self._norm_body(state, new), ("batch",)))
            backward.append(lines)
        unchanged = [(state, n) for state, (n, new) in enumerate(zip(p.state_names, p.new_state)) if n == new]
        end_back = ["if record:\n    " + self.kernel(kernels, f"norm_state_{state}", f"grad_norms[{state}, t, b] = "
                                                    f"||{self.d_ident(n)}[b]||.", self._norm_body(state, n), ("batch",))
                    for state, n in unchanged]
        return (begin_launch, forward, end_launch), (begin_back, backward, end_back)

    def _guarded(self, lines, widths):
        """Lines of a (sequence, feature) kernel over the widest of ``widths``, each under ``j < its width``."""
        top, guarded = max(widths + [1]), []
        for line, w in zip(lines, widths):
            guarded += [line] if w == top else [f"if j < {w}:", f"    {line}"]
        return guarded or ["pass"]

    def _norm_body(self, state, name):
        g, _ = self.d_target(name, self.width(name), index="k")
        return ["total = F(0.0)", f"for k in range({self.width(name)}):",
                f"    total += {g} * {g}", f"grad_norms[{state}, t, b] = math.sqrt(total)"]

    def describe(self, group):
        lines = sorted({self.s.ops[n].line for n in group.ops})
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"
        return f"{group.width} features, {where}"

    def forward_group_body(self, out, group):
        """``forward_group``'s lines, for the thread of one (sequence, feature)."""
        lines = _Lines()
        self.forward_group(lines, group)
        self._unloop(out, lines, group)

    def backward_group_body(self, out, group):
        lines = _Lines()
        self.backward_group(lines, group)
        self._unloop(out, lines, group)

    @staticmethod
    def _unloop(out, lines, group):
        """The CPU's lines of a group without its feature loop, which the grid replaces (a sum's
        and a cat's loops stay: one thread per sequence runs them)."""
        if group.kind != "loop":
            out.lines += [line for line in lines.lines]
            return
        for line in lines.lines:
            if line.startswith("for j in range("):
                continue
            out.lines.append(line[4:] if line.startswith("    ") else line)

    def wrappers(self, out, launches):
        p, s = self.p, self.s
        (begin, forward, end), (begin_back, backward, end_back) = launches
        x = self.name(s.x)
        seq = self.seq_values()
        with out.block("def forward(x, states, w, lengths, reverse):"):
            out('"""The fused forward on the GPU: x (T, B, I) and ``states`` NumPy arrays, ``w`` maps WEIGHTS to '
                'arrays, ``lengths`` (B,) int64. Returns (out, final states, saved) on the host."""')
            out(f"{x} = cuda.to_device(np.ascontiguousarray(x))")
            out(f"steps, batch = {x}.shape[0], {x}.shape[1]")
            out(f"dtype = {x}.dtype")
            out("lengths = cuda.to_device(np.ascontiguousarray(lengths))")
            if s.hoisted:
                out(f"{self.name(f'{s.x}@weights')} = cuda.to_device(np.ascontiguousarray({self.merged(s.hoisted)}, "
                    "dtype=dtype))")
                n = s.hoisted.columns[-1][1]
                out(f"{self.name(f'{s.x}@w')} = gemm({x}.reshape(steps * batch, {self.width(s.x)}), "
                    f"{self.name(f'{s.x}@weights')}).reshape(steps, batch, {n})  # the hoisted GEMM over all steps")
            for v in s.vectors:
                out(f'{self.name(v)} = cuda.to_device(np.ascontiguousarray(w["{v}"], dtype=dtype).reshape(-1))')
            for m in self.gemm_weights():
                r = s.gemm_result(m)
                out(f"{self.name(r + '@weights')} = cuda.to_device(np.ascontiguousarray({self.merged(m)}, dtype=dtype))")
            for k, n in enumerate(p.state_names):
                out(f"{self.name('carried@' + n)} = cuda.to_device(np.ascontiguousarray(states[{k}], dtype=dtype))")
            out(f"out = cuda.to_device(np.zeros((steps, batch, {self.width(p.y)}), dtype=dtype))")
            for n in seq:
                shape = f"(steps, batch, {self.seq_width(n)})"
                out(f"{self.name(n)} = cuda.to_device(np.zeros({shape}, dtype=dtype))" if n in self.padded_lefts() else
                    f"{self.name(n)} = cuda.device_array({shape}, dtype=dtype)")
            for n in self.rows():
                out(f"{self.name(n)} = cuda.device_array((batch, {self.seq_width(n)}), dtype=dtype)")
            with out.block("for s in range(steps):"):
                out("t = steps - 1 - s if reverse else s")
                out(begin)
                for stage in forward:
                    for line in stage:
                        out(line)
                out(end)
            finals = [f"{self.name('carried@' + n)}.copy_to_host()" for n in p.state_names]
            kept = self.kept()
            out(f"return out.copy_to_host(), ({', '.join(finals)},), ({', '.join(kept)}, lengths, reverse)")
        out()
        out()
        with out.block("def backward(saved, d_out, d_states, need_dx=True, grad_norms=None):"):
            out('"""BPTT through ``forward`` on the GPU: from the gradients of out and of the final states (host '
                'arrays), returns (dx or None, the initial states\' gradients, {weight name: gradient}) on the host. '
                '``grad_norms``: None or a zeroed (S, T, B) array that gets ||dL/d state_t||."""')
            out(f"{', '.join(self.kept())}, lengths, reverse = saved")
            out(f"steps, batch = {x}.shape[0], {x}.shape[1]")
            out(f"dtype = {x}.dtype")
            out("d_out = cuda.to_device(np.ascontiguousarray(d_out, dtype=dtype))")
            out("record = grad_norms is not None")
            out(f"grad_norms_host = grad_norms")
            out(f"grad_norms = cuda.to_device(grad_norms if record else np.zeros(({len(p.state_names)}, 1, 1), dtype))")
            for k, n in enumerate(p.state_names):
                out(f"{self.d_ident(n)} = cuda.to_device(np.ascontiguousarray(d_states[{k}], dtype=dtype))")
            out(f"{self.d_ident(s.x)} = cuda.to_device(np.zeros({x}.shape, dtype=dtype))")
            if s.hoisted:
                out(f"{self.d_ident(f'{s.x}@w')} = cuda.to_device(np.zeros({self.name(f'{s.x}@w')}.shape, dtype=dtype))")
            for m in self.gemm_weights():
                r = s.gemm_result(m)
                out(f"{self.d_ident(r)} = cuda.to_device(np.zeros((steps, batch, {m.columns[-1][1]}), dtype=dtype))")
                kk = m.products[0].rows[1] - m.products[0].rows[0]
                out(f"{self.name(r + '@back@out')} = cuda.device_array((batch, {kk}), dtype=dtype)")
            for n in [n for n in s.ops if s.d_storage[n] == "row" and n in s.grads]:
                out(f"{self.d_ident(n)} = cuda.to_device(np.zeros((batch, {self.width(n)}), dtype=dtype))")
            for v in [v for v in s.vectors if v in self.trainable()]:
                out(f"{self.d_ident(v)} = cuda.to_device(np.zeros({self.name(v)}.shape, dtype=dtype))")
            with out.block("for s in range(steps):"):
                out("t = s if reverse else steps - 1 - s  # BPTT runs the other way")
                out(begin_back)
                for line in [line for stage in backward for line in stage] + end_back:
                    for part in line.split("\n"):  # a launch under ``if record:`` is two lines
                        out(part)
            out("if record:")
            out("    grad_norms_host[...] = grad_norms.copy_to_host()")
            out("# after the loop: each product's weight gradient as one GEMM over all steps")
            self.weight_grads(out, lambda d, left, n, k: f"gemm({d}.reshape(steps * batch, {n}), "
                              f"{left}.reshape(steps * batch, {k}), trans_a=True).copy_to_host()")
            rows = "steps * batch"
            if s.hoisted:
                out("if need_dx:")
                out(f"    gemm({self.d_ident(f'{s.x}@w')}.reshape({rows}, {s.hoisted.columns[-1][1]}), "
                    f"{self.name(f'{s.x}@weights')}, {self.d_ident(s.x)}.reshape({rows}, {self.width(s.x)}), "
                    "trans_b=True, accumulate=True)")
            for v in [v for v in s.vectors if v in self.trainable()]:
                out(f'grads["{v}"] = {self.d_ident(v)}.copy_to_host().reshape({self.weight_shape(v)})')
            d_initial = [f"{self.d_ident(n)}.copy_to_host()" for n in p.state_names]
            out(f"return ({self.d_ident(s.x)}.copy_to_host() if need_dx else None), ({', '.join(d_initial)},), grads")
        out()

    def ranks(self):
        """Each device array's number of axes, by identifier."""
        p, s = self.p, self.s
        ranks = {a: 3 for a in self.arrays()}
        ranks.update((a, 1) for a in self.vector_args() + [self.d_ident(v) for v in s.vectors])
        ranks.update((a, 2) for a in [self.name("carried@" + n) for n in p.state_names] + [self.name(n) for n in self.rows()]
                     + [self.d_ident(n) for n in p.state_names] + [self.name(s.gemm_result(m) + "@back@out")
                                                                 for m in self.gemm_weights()]
                     + [self.d_ident(n) for n in s.ops if s.d_storage[n] == "row"])
        return ranks

    def signatures(self, out):
        ranks = self.ranks()
        with out.block("def kernel_signatures(f):"):
            out('"""(name, python function, argument types) of every kernel here for the numba float type ``f``, '
                'for compiling ahead of time."""')
            out("vector, matrix, cube, index, lengths = f[::1], f[:, ::1], f[:, :, ::1], numba.int64, numba.int64[::1]")
            out("return [")
            for name, used in self.kernels:
                types = ", ".join(("vector", "matrix", "cube")[ranks[a] - 1] for a in used)
                out(f"    ({name!r}, {name}.py_func, (index, lengths, {types})),")
            out("]")
        out()
        out()

    def kept(self):
        s = self.s
        kept = [self.name(s.x)] + ([self.name(f"{s.x}@w"), self.name(f"{s.x}@weights")] if s.hoisted else [])
        kept += [self.name(n) for n in self.seq_values()]
        kept += [self.name(s.gemm_result(m) + "@weights") for m in self.gemm_weights()]
        kept += self.vector_args()
        return kept


def generate_cuda(sched, doc=""):
    """The numba.cuda module's source for a ``Schedule``."""
    return CudaWriter(sched, doc).source()


__all__ = ["CudaWriter", "generate_cuda", "Sym"]
