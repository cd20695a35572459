"""Write a step's ``Schedule`` out as a numba.cuda module, on two paths (those the project's
hand-written CUDA kernels had, which these replaced).

The same schedule and the same per-element lines as the CPU module (``cpu.py``). A thread
owns the columns j = jj, jj + U, jj + 2U, ... of every value of a sequence, U the width of
the widest state (the hidden size H): the columns of one unit in every gate block: a thread
computes all the gates of its unit.

- **per step** (any H): a step is its per-step GEMMs (``tinyseq_jit.cuda._gemm.gemm``) and,
  between them, point-wise kernels with a thread per (column jj, sequence). Consecutive
  groups of ops run in one kernel wherever each thread reads only what it wrote itself
  (slices at offsets that are multiples of U, no width-1 value broadcast); keeping the
  state for backward and writing the output and the next state go into the first and the
  last of them. Point-wise ops the next product does not need wait for the kernel after it.
  So an LSTM or a GRU step is a GEMM and one kernel.
- **per block** (H <= ``_common.MAX_HIDDEN``, chosen when the module runs): one kernel for all T steps, ROWS sequences per block, the states, the values read
  across threads and the products' results in shared memory (shapes in multiples of
  MAX_HIDDEN: compile-time constants), the per-step products computed inside the kernel
  from the weights in global memory, ``syncthreads`` where a thread reads what another
  wrote. Backward the same, one kernel.

Where threads add into the same element (a parameter's gradient summed over the batch, a
width-1 value's over the features, a slice's) the line is a ``cuda.atomic.add``. Every
kernel is launched through ``tinyseq_jit.cuda._runtime.launch``, which counts launches.

Layout of the module: the per-step kernels ``forward_<k>``/``backward_<k>`` (with
``begin_*``/``end_*`` kernels only where those lines cannot join a point-wise kernel),
``norm_*`` kernels for the gradient telemetry, ``block_forward``/``block_backward``, and
``forward`` / ``backward`` in Python, which pick the path and launch them.
"""

import re

from .cpu import Writer, _Lines
from .symbols import Sym, literals

#: the largest shared memory a block may ask for without opting in (bytes)
SHARED_BYTES = 48 * 1024


class CudaWriter(Writer):
    """Writes the numba.cuda module for one ``Schedule`` (``source()``)."""

    split_loops = False  # a thread computes one column of all of a group: nothing to cut

    def __init__(self, sched, module_doc=""):
        super().__init__(sched, module_doc)
        self.kernels = []  # (name, scalar arguments, the arrays it takes) of each kernel written
        self.block = False  # writing the per-block kernels: rows in shared memory, indexed by ``row``
        self.unit = max(self.width(n) for n in self.p.state_names)
        self.deferred = {}  # vector -> [(source blocks, value array or None)]: gradients summed after the loop
        self.zero_padded = []  # forward arrays a deferred gradient's product reads at every step
        self.crossing = False  # writing the backward of a group whose threads add into each other's columns
        self.stages = self._stages()

    # ------------------------------------------------------------ lines that differ on the GPU

    def _at(self, storage, ident, idx):
        if self.block and storage == "row":
            return f"{ident}[row, {idx}]"
        return Writer._at(storage, ident, idx)

    def write(self, out, name, target, expr, shared):
        if name in self.deferred:
            return  # summed after the loop (``sums``)
        if (shared or self.crossing) and self.assign(name) == "+=" and "[" in target:
            array, index = target[:-1].split("[", 1)
            out(f"cuda.atomic.add({array}, ({index}), {expr.text})" if "," in index else
                f"cuda.atomic.add({array}, {index}, {expr.text})")
        else:
            super().write(out, name, target, expr, shared)

    def carried(self, n, idx="j"):
        """Element ``idx`` of state ``n`` between steps (a (B, n) array, or shared per block)."""
        return self._at("row", self.name("carried@" + n), idx)

    def per_column(self, lines):
        """(width, line) pairs as ``columns`` blocks, one per run of the same width."""
        runs = []
        for width, line in lines:
            if runs and runs[-1][0] == width:
                runs[-1][1].append(line)
            else:
                runs.append((width, [line]))
        return [text for width, run in runs for text in self.columns(width, run)]

    def columns(self, width, lines):
        """``lines`` for each column j of ``width`` this thread owns (a loop of a constant count:
        a stepped ``range`` costs the kernels registers)."""
        u = self.unit
        if width == u:
            return ["j = jj"] + lines
        if width < u:
            return [f"if jj < {width}:", "    j = jj"] + ["    " + line for line in lines]
        if width % u == 0:
            return [f"for q in range({width} // {u}):", f"    j = jj + q * {u}"] + ["    " + line for line in lines]
        return ([f"for q in range(({width} + {u - 1}) // {u}):", f"    j = jj + q * {u}", f"    if j < {width}:"]
                + ["        " + line for line in lines])

    # ------------------------------------------------------------ the stages

    def _stages(self):
        """The step's stages as ("gemm", merged GEMMs) or ("pointwise", groups), with the groups
        of a point-wise stage that the next GEMM does not read moved to the point-wise stage after
        it (they then share its kernel)."""
        stages = [(st.kind, list(st.gemms) if st.kind == "gemm" else list(st.groups)) for st in self.s.steps]
        for k in range(len(stages) - 2):
            (kind, groups), (next_kind, gemms), (after, _) = stages[k], stages[k + 1], stages[k + 2]
            if kind != "pointwise" or next_kind != "gemm" or after != "pointwise":
                continue
            needed, todo = set(), [m.left for m in gemms]
            while todo:  # what the products read, and all else of the groups that compute it
                name = todo.pop()
                if name in self.s.ops and name not in needed:
                    needed.add(name)
                    todo += [a for a in self.s.ops[name].inputs if isinstance(a, str)]
                    todo += [n for g in groups if name in g.ops for n in g.ops]
            keep = [g for g in groups if needed & set(g.ops)]
            stages[k] = (kind, keep)
            stages[k + 2] = (after, [g for g in groups if g not in keep] + stages[k + 2][1])
        return [(kind, items) for kind, items in stages if items]

    def crosses(self, group):
        """True when a thread of ``group`` reads a value at a column another thread owns (a slice
        at an offset that is no multiple of U, a width-1 value broadcast, a sum, a cat); backward,
        such a read adds a gradient into another thread's column."""
        if group.kind != "loop":
            return True
        for name in group.ops:
            op = self.s.ops[name]
            for a in op.inputs:
                if not isinstance(a, str):
                    continue
                offset = self.s.alias[a][1] if a in self.s.alias else 0
                if op.kind == "getitem":
                    offset += op.attr("index")[0][0]
                if (self.width(a) == 1 and group.width != 1) or offset % self.unit:
                    return True
        return False

    def segments(self, groups):
        """The groups of a point-wise stage in runs that one kernel (one stretch between two
        ``syncthreads``) can compute: a group that reads across threads runs alone (a sum or a cat:
        one thread per sequence runs it)."""
        runs = []
        for g in groups:
            if not runs or self.crosses(runs[-1][-1]) or self.crosses(g):
                runs.append([])
            runs[-1].append(g)
        return runs

    # ------------------------------------------------------------ lines of a step

    def begin_lines(self):
        """Keep the states step t starts from (every sequence: the weight gradients read them all)."""
        lines = self.per_column([(self.width(n), f"{self.name(n)}[t, b, j] = {self.carried(n)}")
                                 for n in self.p.state_names])
        zeros = self.per_column([(self.seq_width(self.s_name(value)), f"{value}[t, b, j] = F(0.0)")
                                 for value in self.zero_padded])
        return lines + (["if t >= lengths[b]:  # a product summed over every step reads these"]
                        + ["    " + line for line in zeros] if zeros else [])

    def s_name(self, ident):
        """The program's name of a kept value's identifier."""
        return next(n for n in self.seq_values() if self.name(n) == ident)

    def end_lines(self):
        """Step t's output, and the states the next step starts from."""
        p = self.p
        lines = [(self.width(p.y), f"out[t, b, j] = {self.read(p.y, self.width(p.y)).text}")]
        lines += [(self.width(n), f"{self.carried(n)} = {self.read(new, self.width(new)).text}")
                  for n, new in zip(p.state_names, p.new_state) if new != n]
        return self.per_column(lines)

    def begin_back_lines(self):
        """Step t's gradients: zeroed, then the carried ones and the output's added."""
        p, s = self.p, self.s
        lines = []
        d_rows = [n for n in s.ops if s.d_storage[n] == "row" and n in s.grads and n not in self.single]
        for n in d_rows:
            lines.append((self.width(n), f"{self.d_target(n, self.width(n))[0]} = F(0.0)"))
        for n, new in zip(p.state_names, p.new_state):
            if new != n:
                self.cover(new)
                target, _ = self.d_target(new, self.width(n))
                lines.append((self.width(n), f"{target} {self.assign(new)} {self.d_target(n, self.width(n))[0]}"))
        for n, new in zip(p.state_names, p.new_state):
            if new != n:
                lines.append((self.width(n), f"{self.d_target(n, self.width(n))[0]} = F(0.0)"))
        if p.y in s.grads:
            self.cover(p.y)
            target, _ = self.d_target(p.y, self.width(p.y))
            lines.append((self.width(p.y), f"{target} {self.assign(p.y)} d_out[t, b, j]"))
        return self.per_column(lines)

    def raw_lines(self, group, backward=False):
        """A group's lines for the thread of one column j (a sum's or a cat's: with their own loops)."""
        body = _Lines()
        self.crossing = backward and group.kind == "loop" and self.crosses(group)  # every addition atomic
        (self.backward_group if backward else self.forward_group)(body, group)
        self.crossing = False
        if group.kind != "loop":
            return body.lines
        return [line[4:] if line.startswith("    ") else line for line in body.lines
                if not line.startswith("for j in range(")]

    def group_lines(self, group, backward=False):
        """A group's lines for one thread: its columns (a sum's or a cat's: its own loops)."""
        lines = self.raw_lines(group, backward)
        if group.kind != "loop":
            return lines
        return self.columns(group.width, lines) if lines else []

    def norm_lines(self, state, name):
        """grad_norms[state, t, b] = ||d name[b]||, by one thread of the sequence."""
        g, _ = self.d_target(name, self.width(name), index="k")
        return ["total = F(0.0)", f"for k in range({self.width(name)}):",
                f"    total += {g} * {g}", f"grad_norms[{state}, t, b] = math.sqrt(total)"]

    def state_norms(self, group):
        """(state index, new state) for each new state ``group`` computes."""
        return [(k, new) for k, new in enumerate(self.p.new_state) if new in group.ops]

    # ------------------------------------------------------------ the per-step kernels

    def kernel(self, out, name, doc, parts, threads="columns"):
        """A kernel ``name(t, lengths, <the arrays its body uses>)`` of ``parts`` ((lines, only
        where step t is inside the sequence)), with a thread per (column jj, sequence) or per
        sequence (``threads`` "batch"); returns how to launch it."""
        text = "\n".join(line.split("#")[0] for lines, _ in parts for line in lines)
        used = [a for a in self.arrays() if re.search(rf"\b{re.escape(a)}\b", text)]
        self.kernels.append((name, ("index", "lengths"), used))
        out("@cuda.jit")
        with out.block(f"def {name}({', '.join(['t', 'lengths'] + used)}):"):
            out(f'"""{doc}"""')
            if threads == "batch":
                out("b = cuda.grid(1)")
                guard = "b < lengths.shape[0]"
            else:
                out("jj, b = cuda.grid(2)")
                guard = f"b < lengths.shape[0] and jj < {self.unit}"
            if all(valid for _, valid in parts):
                guard, parts = guard + " and t < lengths[b]", [(lines, False) for lines, _ in parts]
            merged = []
            for lines, valid in parts:  # one ``if`` over consecutive parts under it
                if merged and valid and merged[-1][1]:
                    merged[-1] = (merged[-1][0] + lines, True)
                else:
                    merged.append((lines, valid))
            parts = merged
            with out.block(f"if {guard}:"):
                for lines, valid in parts:
                    if valid:
                        with out.block("if t < lengths[b]:"):
                            for line in lines:
                                out(line)
                    else:
                        for line in lines:
                            out(line)
                if not any(lines for lines, _ in parts):
                    out("pass")
        out()
        out()
        size = "line(batch)" if threads == "batch" else f"grid(batch, {self.unit})"
        return f"launch({name}, *{size}, t, lengths, {', '.join(used)})"

    def forward_launches(self, kernels):
        """The kernels of the per-step forward, written into ``kernels``; returns the launch
        lines of one step."""
        s, states = self.s, self.p.state_names
        launches, begun, ended, count = [], False, False, 0
        begin_doc, end_doc = "Keep the states step t starts from.", "Step t's output, and the next step's states."
        for k, (kind, items) in enumerate(self.stages):
            if kind == "gemm":
                for m in items:
                    r = s.gemm_result(m)
                    left = self.name("carried@" + m.left) if m.left in states else self.row_left(m.left)
                    launches.append(f"gemm({left}, {self.name(r + '@weights')}, "
                                    f"{self.name(r)}{'[t]' if s.storage[r] == 'seq' else ''})"
                                    f"  # {self.name(r)} = {self.name(m.left)} @ {self.products(m)}")
                continue
            runs = self.segments(items)
            for r, run in enumerate(runs):
                loop, parts = run[0].kind == "loop", []
                if not begun:
                    if not self.crosses(run[0]):
                        parts.append((self.begin_lines(), False))
                    else:
                        launches.append(self.kernel(kernels, "begin_forward", begin_doc, [(self.begin_lines(), False)]))
                    begun = True
                parts += [(self.group_lines(g), True) for g in run]
                if loop and k == len(self.stages) - 1 and r == len(runs) - 1:
                    parts.append((self.end_lines(), True))
                    ended = True
                doc = f"Step t, point-wise: {self.describe(run)}{'; ' + end_doc[:-1].lower() if ended else ''}."
                launches.append(self.kernel(kernels, f"forward_{count}", doc, parts, "columns" if loop else "batch"))
                count += 1
        if not begun:
            launches.insert(0, self.kernel(kernels, "begin_forward", begin_doc, [(self.begin_lines(), False)]))
        if not ended:
            launches.append(self.kernel(kernels, "end_forward", end_doc, [(self.end_lines(), True)]))
        return launches

    def backward_launches(self, kernels):
        """The kernels of the per-step backward, written into ``kernels``; returns the launch
        lines of one step."""
        p = self.p
        launches, begun, count = [], False, 0
        begin_doc = "Step t's gradients: zeroed, then the carried ones and the output's added."
        begin = self.begin_back_lines()
        for k in reversed(range(len(self.stages))):
            kind, items = self.stages[k]
            if kind == "gemm":
                if not begun:
                    launches.append(self.kernel(kernels, "begin_backward", begin_doc, [(begin, True)]))
                    begun = True
                for m in items:
                    launches += self.gemm_back(kernels, m)
                continue
            for run in reversed(self.segments(items)):
                loop, parts = run[0].kind == "loop", []
                if not begun:
                    if not self.crosses(run[0]):
                        parts.append((begin, True))
                    else:
                        launches.append(self.kernel(kernels, "begin_backward", begin_doc, [(begin, True)]))
                    begun = True
                parts += [(self.group_lines(g, backward=True), True) for g in reversed(run)]
                if any(lines for lines, _ in parts):
                    launches.append(self.kernel(kernels, f"backward_{count}", f"BPTT of step t: {self.describe(run)}.",
                                                parts, "columns" if loop else "batch"))
                    count += 1
                for g in reversed(run):
                    for state, new in self.state_norms(g):
                        launches.append(self.norm_kernel(kernels, f"norm_{count}_{state}", state, new))
        if not begun:
            launches.append(self.kernel(kernels, "begin_backward", begin_doc, [(begin, True)]))
        for state, (n, new) in enumerate(zip(p.state_names, p.new_state)):
            if n == new:
                launches.append(self.norm_kernel(kernels, f"norm_state_{state}", state, n))
        return launches

    def norm_kernel(self, kernels, name, state, value):
        """The launch line, under ``if record:``, of a kernel recording ||d value|| of every sequence."""
        return "if record:\n    " + self.kernel(kernels, name, f"grad_norms[{state}, t, b] = ||{self.d_ident(value)}[b]||.",
                                                  [(self.norm_lines(state, value), True)], "batch")

    def direct(self, m):
        """True when a product's left operand takes its gradient straight from the GEMM: its
        gradient is a (B, K) array of its own."""
        return m.left not in self.s.alias and (m.left in self.p.state_names or self.s.d_storage.get(m.left) == "row")

    def gemm_back(self, kernels, m):
        """The launch lines that add a per-step product's gradient into its left operand's."""
        s = self.s
        r = s.gemm_result(m)
        kk = m.products[0].rows[1] - m.products[0].rows[0]
        note = f"  # {self.d_ident(m.left)} += {self.d_ident(r)} @ ({self.products(m)}).T"
        self.cover(m.left)
        if self.direct(m):
            add = "True" if self.assign(m.left) == "+=" else "False"
            return [f"gemm({self.d_ident(r)}[t], {self.name(r + '@weights')}, {self.d_ident(m.left)}, trans_b=True, "
                    f"accumulate={add}){note}"]
        back_out = self.name(r + "@back@out")
        target, _ = self.d_target(m.left, kk)
        return [f"gemm({self.d_ident(r)}[t], {self.name(r + '@weights')}, {back_out}, trans_b=True){note}",
                self.kernel(kernels, f"backward_{self.name(r)}", f"{self.d_ident(m.left)} += the product's gradient.",
                            [(self.columns(kk, [f"{target} {self.assign(m.left)} {back_out}[b, j]"]), True)])]

    # ------------------------------------------------------------ parameters' gradients after the loop

    def defer(self):
        """Find the vectors (biases, peepholes) whose gradient can be summed after the loop, one
        launch each (``column_sums``, ``product_column_sums``): every term a thread adds
        into it is a value some (T, B, n) gradient array keeps column by column (``d_x_w[t, b, j] =
        d_t2``), or that value times a (T, B, n) array of the forward. Follows the copies of the
        backward's lines (``d_t5 = d_t6``, ``d_gates[b, 4 + j] = d_f``) in blocks of U columns;
        a vector with any other term keeps its atomics. Returns {vector: [(blocks, value)]},
        each block an (array, U-column) the term's block q is kept in."""
        u, s = self.unit, self.s
        stores = {self.d_ident(f"{s.x}@w")} if s.hoisted else set()
        stores |= {self.d_ident(s.gemm_result(m)) for m in self.gemm_weights()}
        values = {self.name(n) for n in self.seq_values()}
        zeroed = {self.name(n) for n in self.p.state_names} | {self.name(n) for n in self.padded_lefts()}
        vectors = {self.d_ident(v): v for v in s.vectors if v in self.trainable()}
        token = r"(\w+)(?:\[(t, )?b, (?:(\d+) \+ )?j\])?"
        writes, copies, kept, terms = {}, [], [], {}

        def atom(match, q):
            name, seq, offset = match.group(1), match.group(2), int(match.group(3) or 0)
            if not match.group(0).endswith("]"):
                return (name, q)
            return None if seq or offset % u else (name, offset // u + q)

        for line in self.begin_back_lines():  # the rows the step starts from: added into, no copies
            target = re.match(r"\s*(\w+)\[", line)
            if target:
                writes[target.group(1)] = 2
        lines = [(line, g.width if g.kind == "loop" else 0) for kind, items in self.stages
                 if kind == "pointwise" for g in items for line in self.raw_lines(g, backward=True)]
        for line, w in lines:
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#") or line.startswith("j ") or line.startswith("if "):
                continue
            blocks = range(w // u) if w and w % u == 0 else None
            atomic = re.fullmatch(r"cuda\.atomic\.add\((\w+), (.+?), (.+)\)", line)
            if atomic:
                target, index, expr = atomic.groups()
                if target in vectors:
                    product = re.fullmatch(rf"{token} \* (\w+)\[t, b, j\]", expr)
                    plain = re.fullmatch(token, expr)
                    ok = index == "j" and blocks is not None and (plain or product and product.group(4) in values)
                    terms.setdefault(vectors[target], []).append(
                        (line, [atom(product or plain, q) for q in blocks], product and product.group(4)) if ok else None)
                else:
                    writes[target] = writes.get(target, 0) + 2  # another thread's column: no copy
                continue
            assign = re.fullmatch(rf"{token} (\+?=) (.+)", line)
            if not assign or blocks is None:
                continue
            sign, right = assign.group(4), assign.group(5)
            lhs = re.fullmatch(token, line.split(f" {sign} ")[0])
            for q in blocks:
                a = atom(lhs, q)
                if a is not None:
                    writes[a] = writes.get(a, 0) + (1 if sign == "=" else 2)
            source = re.fullmatch(token, right)
            if sign != "=" or not source:
                continue
            if lhs.group(2) and lhs.group(1) in stores:
                kept += [(atom(source, q), (lhs.group(1), int(lhs.group(3) or 0) // u + q)) for q in blocks
                         if int(lhs.group(3) or 0) % u == 0]
            elif not lhs.group(2):
                copies += [(atom(lhs, q), atom(source, q)) for q in blocks]

        parent = {}

        def root(a):
            while parent.get(a, a) != a:
                a = parent[a]
            return a

        for a, b in copies:
            if a is not None and b is not None and writes.get(a) == 1 and (a[0] not in writes or writes[a[0]] < 2):
                parent[root(a)] = root(b)
        where = {}
        for a, place in kept:
            if a is not None:
                where.setdefault(root(a), []).append(place)
        deferred = {}
        for v, found in terms.items():
            if all(t is not None and all(a is not None and root(a) in where for a in t[1]) for t in found):
                deferred[v] = [([where[root(a)] for a in blocks], value) for _, blocks, value in found]
        for v, found in list(deferred.items()):  # a product's value must be zero at padded steps, its blocks adjacent
            for places, value in found:
                if value is not None and not self._adjacent(places):
                    deferred.pop(v)
                    break
        self.zero_padded = sorted({value for found in deferred.values() for _, value in found
                                   if value is not None and value not in zeroed})
        return deferred

    @staticmethod
    def _adjacent(places):
        """True when some choice of the blocks' places is one array's consecutive blocks."""
        return any(all((array, first + q) in options for q, options in enumerate(places))
                   for array, first in places[0])

    def sums(self, out):
        """The lines after the loop that sum the deferred vectors' gradients: one launch per
        gradient array summed (the fewest that hold every term) and per product."""
        chosen, needed = [], [set(p for p in options) for found in self.deferred.values() for places, value in found
                              if value is None for options in places]
        while needed:  # greedy: the array that holds the most blocks still needed
            arrays = {array for options in needed for array, _ in options}
            best = max(sorted(arrays), key=lambda a: sum(any(p[0] == a for p in o) for o in needed))
            chosen.append(best)
            needed = [o for o in needed if not any(p[0] == best for p in o)]
        u = self.unit
        for array in chosen:
            out(f"sums_{array} = column_sums({array}.reshape(steps * batch, {array}.shape[2])).copy_to_host()")
        for v, found in self.deferred.items():
            parts = []
            for places, value in found:
                if value is None:
                    runs = []  # (array, first block, blocks): consecutive blocks of one array in one slice
                    for a, c in [next(p for p in sorted(options) if p[0] in chosen) for options in places]:
                        if runs and runs[-1][0] == a and runs[-1][1] + runs[-1][2] == c:
                            runs[-1][2] += 1
                        else:
                            runs.append([a, c, 1])
                    slices = [f"sums_{a}[{c * u}:{(c + n) * u}]" for a, c, n in runs]
                    parts.append(slices[0] if len(slices) == 1 else f"np.concatenate(({', '.join(slices)}))")
                else:
                    array, first = next((a, f) for a, f in sorted(places[0])
                                        if all((a, f + q) in o for q, o in enumerate(places)))
                    parts.append(f"product_sums({array}, {first * u}, {value})")
            out(f'grads["{v}"] = ({" + ".join(parts)}).reshape({self.weight_shape(v)}).copy()')

    # ------------------------------------------------------------ the per-block kernels

    def shared_rows(self, backward):
        """(identifier, width) of the arrays a per-block kernel keeps in shared memory."""
        p, s = self.p, self.s
        if backward:
            rows = [(self.d_ident(n), self.width(n)) for n in p.state_names]
            rows += [(self.d_ident(n), self.width(n)) for n in s.ops if s.d_storage[n] == "row" and n in s.grads]
        else:
            rows = [(self.name("carried@" + n), self.width(n)) for n in p.state_names]
            rows += [(self.name(n), self.seq_width(n)) for n in self.rows()]
        return rows

    def multiple(self, width):
        """How many times U columns a shared array of ``width`` takes (its shape: that many times MAX_HIDDEN)."""
        return -(-width // self.unit)

    def shared_words(self):
        """The per-block kernels' shared arrays: the larger kernel's number of MAX_HIDDEN-wide
        rows per sequence, and every multiple they use."""
        words = [sum(self.multiple(w) for _, w in self.shared_rows(back)) for back in (False, True)]
        multiples = sorted({self.multiple(w) for back in (False, True) for _, w in self.shared_rows(back)})
        return max(words), multiples

    def block_kernel(self, out, name, doc, setup, body, finish, backward):
        """A per-block kernel over all steps: ``setup`` before the loop, ``body`` the step's
        lines (``syncthreads`` in them), ``finish`` after it; returns how to launch it."""
        rows = self.shared_rows(backward)
        io = {self.name("io@" + n): (self.d_ident(n) if backward else self.name("carried@" + n))
              for n in self.p.state_names}
        text = "\n".join(line.split("#")[0] for line in setup + body + finish)
        local = {ident for ident, _ in rows}
        candidates = [a for a in self.arrays() if a not in local] + list(io)
        used = [a for a in dict.fromkeys(candidates) if re.search(rf"\b{re.escape(a)}\b", text)]
        scalars = ["steps", "reverse"] + (["record"] if backward else [])
        self.kernels.append((name, ("index",) * len(scalars) + ("lengths",), used))
        out("@cuda.jit")
        with out.block(f"def {name}({', '.join(scalars + ['lengths'] + used)}):"):
            out(f'"""{doc}"""')
            for ident, width in rows:
                out(f"{ident} = cuda.shared.array((ROWS, WIDE_{self.multiple(width)}), FT)")
            out("jj, row = cuda.threadIdx.x, cuda.threadIdx.y")
            out("b = cuda.blockIdx.x * ROWS + row")
            out(f"mine = b < lengths.shape[0] and jj < {self.unit}")
            for line in setup:
                out(line)
            out("cuda.syncthreads()")
            with out.block("for s in range(steps):"):
                out(f"t = {'s if reverse else steps - 1 - s' if backward else 'steps - 1 - s if reverse else s'}")
                out("valid = mine and t < lengths[b]")
                for line in body:
                    out(line)
            for line in finish:
                out(line)
        out()
        out()
        args = ", ".join(io.get(a, a) for a in used)
        flags = "steps, int(reverse)" + (", int(record)" if backward else "")
        return f"launch({name}, *block_grid(batch), {flags}, lengths, {args})"

    @staticmethod
    def guarded(condition, lines):
        """``lines`` under ``if condition:`` (none for none)."""
        return [f"if {condition}:"] + ["    " + line for line in lines] if lines else []

    def block_gemm(self, m):
        """A per-step product inside the per-block kernel: each thread its columns."""
        s = self.s
        r = s.gemm_result(m)
        kk = m.products[0].rows[1] - m.products[0].rows[0]
        if m.left in self.p.state_names:
            left = self.carried(m.left, "k")
        else:
            left = self.read(m.left, kk, index="k").text
        target = self._at(s.storage[r], self.name(r), "j")
        return self.columns(m.columns[-1][1], ["total = F(0.0)", f"for k in range({kk}):",
                                                f"    total += {left} * {self.name(r + '@weights')}[k, j]",
                                                f"{target} = total  # {self.name(r)} = {self.name(m.left)} @ "
                                                f"{self.products(m)}"])

    def block_gemm_back(self, m):
        """A product's gradient into its left operand's inside the per-block kernel: each thread its columns."""
        s = self.s
        r = s.gemm_result(m)
        kk = m.products[0].rows[1] - m.products[0].rows[0]
        self.cover(m.left)
        target, _ = self.d_target(m.left, kk)
        return self.columns(kk, ["total = F(0.0)", f"for k in range({m.columns[-1][1]}):",
                                 f"    total += {self.d_ident(r)}[t, b, k] * {self.name(r + '@weights')}[j, k]",
                                 f"{target} {self.assign(m.left)} total  # {self.d_ident(m.left)} += "
                                 f"{self.d_ident(r)} @ ({self.products(m)}).T"])

    def block_items(self):
        """The step's items in order, ("gemm", a merged GEMM) or ("run", groups), each with
        whether the threads meet (``syncthreads``) before it."""
        items = []
        for kind, stage in self.stages:
            if kind == "gemm":
                fresh = any(m.left not in self.p.state_names for m in stage)  # the states met at the step's end
                items += [("gemm", m, i == 0 and fresh) for i, m in enumerate(stage)]
                continue
            for run in self.segments(stage):
                meet = self.crosses(run[0]) or (items and items[-1][0] == "run" and self.crosses(items[-1][1][-1]))
                items.append(("run", run, bool(meet)))
        return items

    def block_forward(self, out):
        """Write the per-block forward kernel; returns how to launch it."""
        self.block = True
        p = self.p
        setup = self.guarded("mine", self.per_column([(self.width(n), f"{self.carried(n)} = {self.name('io@' + n)}[b, j]")
                                                      for n in p.state_names]))
        body = self.guarded("mine", self.begin_lines())
        for kind, item, meet in self.block_items():
            body += ["cuda.syncthreads()"] if meet else []
            if kind == "gemm":
                body += self.guarded("valid", self.block_gemm(item))
            else:
                for g in item:
                    lines = self.group_lines(g)
                    body += self.guarded("valid" if g.kind == "loop" else "valid and jj == 0", lines)
        body += ["cuda.syncthreads()  # every thread has read the states step t started from"]
        body += self.guarded("valid", self.end_lines())
        body += ["cuda.syncthreads()"]
        finish = self.guarded("mine", self.per_column([(self.width(n), f"{self.name('io@' + n)}[b, j] = {self.carried(n)}")
                                                       for n in p.state_names]))
        launch = self.block_kernel(out, "block_forward", "The whole recurrence, ROWS sequences per block.", setup,
                                   body, finish, backward=False)
        self.block = False
        return launch

    def block_backward(self, out):
        """Write the per-block backward kernel; returns how to launch it."""
        self.block = True
        p = self.p
        setup = self.guarded("mine", self.per_column([(self.width(n), f"{self.d_target(n, self.width(n))[0]} = "
                                                      f"{self.name('io@' + n)}[b, j]") for n in p.state_names]))
        body = self.guarded("valid", self.begin_back_lines())
        items = self.block_items()
        for i in reversed(range(len(items))):
            kind, item, _ = items[i]
            after = items[i + 1][2] if i + 1 < len(items) else True
            if kind == "gemm" or after:
                body += ["cuda.syncthreads()"]
            if kind == "gemm":
                body += self.guarded("valid", self.block_gemm_back(item))
                continue
            for g in reversed(item):
                body += self.guarded("valid" if g.kind == "loop" else "valid and jj == 0",
                                     self.group_lines(g, backward=True))
                for state, new in self.state_norms(g):
                    body += ["cuda.syncthreads()"]
                    body += self.guarded("record and valid and jj == 0", self.norm_lines(state, new))
        for state, (n, new) in enumerate(zip(p.state_names, p.new_state)):
            if n == new:
                body += ["cuda.syncthreads()"]
                body += self.guarded("record and valid and jj == 0", self.norm_lines(state, n))
        body += ["cuda.syncthreads()"]
        finish = self.guarded("mine", self.per_column([(self.width(n), f"{self.name('io@' + n)}[b, j] = "
                                                       f"{self.d_target(n, self.width(n))[0]}") for n in p.state_names]))
        launch = self.block_kernel(out, "block_backward", "BPTT over all steps, ROWS sequences per block.", setup,
                                   body, finish, backward=True)
        self.block = False
        return launch

    # ------------------------------------------------------------ the arrays

    def arrays(self):
        """Every device array's identifier, in a fixed order (kernel arguments are picked from it)."""
        p, s = self.p, self.s
        names = [self.name(s.x)] + ([self.name(f"{s.x}@w")] if s.hoisted else [])
        names += [self.name("carried@" + n) for n in p.state_names]
        names += self.vector_args() + ["out"] + [self.name(n) for n in self.seq_values()] + [self.name(n) for n in self.rows()]
        names += [self.name(s.gemm_result(m) + "@weights") for m in self.gemm_weights()]
        names += [self.d_ident(n) for n in p.state_names] + [self.d_ident(s.x)]
        names += [self.d_ident(f"{s.x}@w")] if s.hoisted else []
        names += [self.d_ident(s.gemm_result(m)) for m in self.gemm_weights()]
        names += [self.d_ident(n) for n in s.ops if s.d_storage[n] == "row" and n in s.grads]
        names += [self.d_ident(v) for v in s.vectors if v in self.trainable()]
        names += [self.name(s.gemm_result(m) + "@back@out") for m in self.gemm_weights()]
        return list(dict.fromkeys(names + ["d_out", "grad_norms"]))

    def ranks(self):
        """Each device array's number of axes, by identifier."""
        p, s = self.p, self.s
        ranks = {a: 3 for a in self.arrays()}
        ranks.update((a, 1) for a in self.vector_args() + [self.d_ident(v) for v in s.vectors])
        ranks.update((a, 2) for a in [self.name("carried@" + n) for n in p.state_names] + [self.name(n) for n in self.rows()]
                     + [self.d_ident(n) for n in p.state_names] + [self.name(s.gemm_result(m) + "@back@out")
                                                                 for m in self.gemm_weights()]
                     + [self.name(s.gemm_result(m) + "@weights") for m in self.gemm_weights()]
                     + [self.d_ident(n) for n in s.ops if s.d_storage[n] == "row"]
                     + [self.name("io@" + n) for n in p.state_names])
        return ranks

    def describe(self, groups):
        """The widths and the cell's lines of the groups one kernel runs, for its docstring."""
        lines = sorted({self.s.ops[n].line for g in groups for n in g.ops})
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]}-{lines[-1]}"
        return f"{'+'.join(str(g.width) for g in groups)} features, {where}"

    # ------------------------------------------------------------ the module

    def source(self):
        with literals(lambda number: f"F({number!r})"):  # numbers in the program's dtype: no float64 in float32
            return self._source()

    def _source(self):
        self.coverage = {}
        self.backward_launches(_Lines())  # a dry run counts the writes into each gradient
        self.single = {key for key, columns in self.coverage.items() if all(c == 1 for c in columns)
                       and key not in self.p.state_names and key != self.s.x}
        self.coverage = None
        self.deferred = self.defer()
        self.kernels = []
        kernels = _Lines()
        launches = self.forward_launches(kernels), self.backward_launches(kernels)
        blocks = self.block_forward(kernels), self.block_backward(kernels)
        out = _Lines()
        self.header(out)
        out.lines += kernels.lines
        self.signatures(out)
        self.wrappers(out, launches, blocks)
        return "\n".join(out.lines) + "\n"

    def header(self, out):
        self.docstring(out)
        out("import math")
        out()
        out("import numba")
        out("import numpy as np")
        out("from numba import cuda")
        out()
        out("from tinyseq_jit.cuda._common import KERNELS, MAX_HIDDEN, ROWS, block_grid, column_sums, grid, line, "
            "per_block")
        out("from tinyseq_jit.cuda._gemm import gemm")
        out("from tinyseq_jit.cuda._runtime import launch")
        out()
        out(f"STATES = {self.p.state_names!r}")
        out(f"WEIGHTS = {self.weight_names()!r}  # what the step reads besides x and the state")
        out(f"F = np.{self.p.dtype.name}  # the numbers' type in the kernels")
        out("FT = numba.from_dtype(np.dtype(F))")
        words, multiples = self.shared_words()
        for m in multiples:
            out(f"WIDE_{m} = {m} * MAX_HIDDEN  # a shared array's row: up to {m} * {self.unit} columns")
        out()
        out()
        with out.block("def block_path(unit):"):
            out(f'"""True when a pass runs the per-block kernels: the widest state\'s size ``unit`` takes the per-block '
                f'path (``_common.per_block``) and the shared arrays ({words} rows of MAX_HIDDEN per sequence) fit."""')
            out(f"return per_block(unit) and ROWS * {words} * MAX_HIDDEN * np.dtype(F).itemsize <= {SHARED_BYTES}")
        out()
        out()
        if any(value is not None for found in self.deferred.values() for _, value in found):
            with out.block("def product_sums(a, start, c):"):
                out('"""The sums over all steps and sequences of a[t, b, start + j] * c[t, b, j] (a peephole\'s '
                    'gradient), on the host: one launch."""')
                out("flat = c.reshape(c.shape[0] * c.shape[1], c.shape[2])")
                out("sums = cuda.device_array(c.shape[2], c.dtype)")
                out('launch(KERNELS[c.dtype.name]["product_column_sums"], *line(c.shape[2]), '
                    'a.reshape(flat.shape[0], a.shape[2]), start, flat, sums)')
                out("return sums.copy_to_host()")
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

    def signatures(self, out):
        ranks = self.ranks()
        with out.block("def kernel_signatures(f):"):
            out('"""(name, python function, argument types) of every kernel here for the numba float type ``f``, '
                'for compiling ahead of time."""')
            out("vector, matrix, cube, index, lengths = f[::1], f[:, ::1], f[:, :, ::1], numba.int64, numba.int64[::1]")
            out("return [")
            for name, leading, used in self.kernels:
                types = ", ".join(list(leading) + [("vector", "matrix", "cube")[ranks[a] - 1] for a in used])
                out(f"    ({name!r}, {name}.py_func, ({types})),")
            out("]")
        out()
        out()

    def wrappers(self, out, launches, blocks):
        p, s = self.p, self.s
        forward, backward = launches
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
            with out.block(f"if block_path({self.unit}):  # the whole time loop in one kernel"):
                out(blocks[0])
            with out.block("else:  # a launch per GEMM and per point-wise kernel, a step at a time"):
                for n in self.rows():
                    out(f"{self.name(n)} = cuda.device_array((batch, {self.seq_width(n)}), dtype=dtype)")
                with out.block("for s in range(steps):"):
                    out("t = steps - 1 - s if reverse else s")
                    for line in forward:
                        out(line)
            finals = [f"{self.name('carried@' + n)}.copy_to_host()" for n in p.state_names]
            out(f"return out.copy_to_host(), ({', '.join(finals)},), ({', '.join(self.kept())}, lengths, reverse)")
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
            out("grad_norms_host = grad_norms")
            out(f"grad_norms = cuda.to_device(grad_norms if record else np.zeros(({len(p.state_names)}, 1, 1), dtype))")
            for k, n in enumerate(p.state_names):
                out(f"{self.d_ident(n)} = cuda.to_device(np.ascontiguousarray(d_states[{k}], dtype=dtype))")
            out(f"{self.d_ident(s.x)} = cuda.to_device(np.zeros({x}.shape, dtype=dtype))")
            if s.hoisted:
                out(f"{self.d_ident(f'{s.x}@w')} = cuda.to_device(np.zeros({self.name(f'{s.x}@w')}.shape, dtype=dtype))")
            for m in self.gemm_weights():
                r = s.gemm_result(m)
                out(f"{self.d_ident(r)} = cuda.to_device(np.zeros((steps, batch, {m.columns[-1][1]}), dtype=dtype))")
            for v in [v for v in s.vectors if v in self.trainable() and v not in self.deferred]:
                out(f"{self.d_ident(v)} = cuda.to_device(np.zeros({self.name(v)}.shape, dtype=dtype))")
            with out.block(f"if block_path({self.unit}):  # all steps in one kernel"):
                out(blocks[1])
            with out.block("else:"):
                for m in self.gemm_weights():
                    if not self.direct(m):
                        kk = m.products[0].rows[1] - m.products[0].rows[0]
                        out(f"{self.name(s.gemm_result(m) + '@back@out')} = cuda.device_array((batch, {kk}), dtype=dtype)")
                for n in [n for n in s.ops if s.d_storage[n] == "row" and n in s.grads]:
                    out(f"{self.d_ident(n)} = cuda.to_device(np.zeros((batch, {self.width(n)}), dtype=dtype))")
                with out.block("for s in range(steps):"):
                    out("t = s if reverse else steps - 1 - s  # BPTT runs the other way")
                    for line in backward:
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
            for v in [v for v in s.vectors if v in self.trainable() and v not in self.deferred]:
                out(f'grads["{v}"] = {self.d_ident(v)}.copy_to_host().reshape({self.weight_shape(v)})')
            if self.deferred:
                out("# the biases' and peepholes' gradients: sums over all steps of the gradients kept above")
                self.sums(out)
            d_initial = [f"{self.d_ident(n)}.copy_to_host()" for n in p.state_names]
            out(f"return ({self.d_ident(s.x)}.copy_to_host() if need_dx else None), ({', '.join(d_initial)},), grads")
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
