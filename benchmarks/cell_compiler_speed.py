"""Compiled cells (issue 23): cells written from ops, compiled by ``tinyseq_jit.compiler``, timed
against the hand-written kernels, the graph, eager PyTorch and torch.compile; and compile time.

Every time is one training step, float32: ``zero_grad()``; forward over T steps from a zero
state; ``out.sum().backward()``. The cells are ``examples/cell_gallery.py``'s. In each
measurement the compared variants are built in ONE child process (this script with
``--worker``), checked to compute the same once (outputs and gradients, ``check_same``), then
timed alternately (one step of each in turn, every other round in reverse order, after
``--warmup`` untimed steps of each; ``--repeats`` timed steps of each at least, more until
each variant's add up to ``--min-seconds``), so they see the same background load; medians
and their ratios. The children get the thread
variables (OpenBLAS / OpenMP / MKL / Numba) set to ``--threads`` and ``torch.set_num_threads``.

  1. kernels: at each S-shape of ``rnn_speed.py`` its cell written from ops, compiled
     (``nn.Recurrent(cell, backend="numba")``, weights copied by ``load_from``), against the
     kernels of ``nn.LSTM``/``GRU``/``RNN(backend="numba")`` (hand-written until issue 24;
     since, generated from ``nn.LSTMStep`` etc. as the gallery's are: the gap is then what
     the two steps' ops and the layer's wrapping cost; ``builtin_kernels.py`` times the
     layers against another tree's). At S7's (T, B, I, H)
     the LSTM and GRU too (S7's own cell is the Elman RNN). Goal (compiled / hand-written):
     <= 1.15 on S1-S6, <= 1.3 at S7's shape.
  2. cells without a hand-written kernel (MGU, IndRNN, MI-RNN, LiGRU) at S5's and S7's
     (T, B, I, H), compiled against the same cell on tinyseq's graph (``backend="graph"``;
     timed in the first ``--graph-repeats`` rounds only) and the same equations in eager
     PyTorch (``torch_cells``, a Python loop over time). Goals (time / compiled time): graph
     >= 3 at S5, >= 5 at S7; torch, a target only: >= 2 at S5, >= 10 at S7.
  3. torch.compile of the MGU step (``torch.compile(cell)``, the same Python time loop), at
     S5's and S7's shapes, each in a child killed after ``--torch-compile-timeout`` seconds
     (default 300): its compile time (the warm-up steps' time minus as many warm steps) and
     its step alternated with eager torch and tinyseq compiled; or "did not finish".
  4. compile time of a new cell (MGU, B=4, I=32, H=64) at T=10 and T=1000: seconds from
     constructing the cell to the end of its first forward + backward, minus that step's
     median when warm, in a fresh process with ``TINYSEQ_KERNEL_CACHE`` a new empty
     directory (cold: trace, generate, Numba compiles; Numba's in-memory code is gone with
     the process), then in another fresh process on the same directory (cached). Goals: cold
     <= 10 s, cached <= 0.5 s, and the same at both T. ``--rounds`` times, new directories
     each round. Numba's caches of tinyseq_jit's own helpers stay as they are (a user's
     second cell finds them compiled too); a first child on a throwaway directory compiles
     them if they are missing, and is not counted. Before the clock starts, each child
     imports Numba and tinyseq_jit's kernel modules and runs one 2x2 product (SciPy's BLAS
     loads): what the first compiled layer of any cell pays once per process, timed apart.

NOTE: with 2 threads on a loaded 2-core machine, OpenBLAS's and torch's worker threads wait on
descheduled siblings at every small per-step product (tens of ms a step where 1 thread takes
one): compare the load average the JSON records, and try ``--threads 1``.

    python benchmarks/cell_compiler_speed.py [--threads 2] [--repeats 7] [--only S5,S7] [--quick]

It measures the tree it lives in: the script puts that tree's root first on ``sys.path`` (the
cells come from its ``examples/``, so its ``tinyseq`` must be the one compiled), and so do
its children.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from statistics import median

HERE = pathlib.Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "examples", HERE.parent):
    sys.path.insert(0, str(_path))
from rnn_speed import SHAPES, THREAD_VARS  # noqa: E402  (both import the standard library only:
from train_speed import fmt_ms, print_rows, verdict, write_json  # noqa: E402  the parent stays small)

GALLERY_NAME = {"LSTM": "lstm", "GRU": "gru", "RNN": "elman"}
KERNEL_GOAL = {"S7": 1.3}  # compiled / hand-written train step; 1.15 elsewhere
KERNEL_GOAL_DEFAULT = 1.15
CELLS = ("mgu", "indrnn", "mirnn", "ligru")
CELL_SHAPES = ("S5", "S7")
GRAPH_GOAL = {"S5": 3.0, "S7": 5.0}  # graph / compiled train step
TORCH_TARGET = {"S5": 2.0, "S7": 10.0}  # eager torch / compiled train step (a target, not a bar)
COMPILE_SHAPE = (4, 32, 64)  # B, I, H
COMPILE_STEPS = (10, 1000)
COLD_GOAL_S, CACHED_GOAL_S = 10.0, 0.5
# Imported (timed apart, with the engine's first product, which loads SciPy's BLAS) before a
# compile-time child starts its clock: Numba and the modules every generated kernel module
# imports, which the first compiled layer in a process pays once, whatever its cell.
JIT_MODULES = ("tinyseq_jit.compiler", "tinyseq_jit.cpu._common", "tinyseq_jit.cpu._gemm", "tinyseq_jit.cpu._math")
MOST_REPEATS = 500  # timed steps of a variant, at the most
AGREE_RTOL = 2e-3  # float32: max |a - b| / max |b| over each output and gradient


# ---------------------------------------------------------------- the same cells in PyTorch


def torch_cells():
    """name -> a torch.nn.Module class with the gallery cell's equations and parameter names, so
    ``load_state_dict`` of the tinyseq cell's state dict loads it; ``forward(x_t, h) -> h``."""
    import torch
    from torch import nn

    class MGU(nn.Module):
        def __init__(self, inputs, hidden):
            super().__init__()
            self.f, self.n = nn.Linear(inputs + hidden, hidden), nn.Linear(inputs + hidden, hidden)

        def forward(self, x, h):
            f = torch.sigmoid(self.f(torch.cat([x, h], -1)))
            n = torch.tanh(self.n(torch.cat([x, f * h], -1)))
            return (1 - f) * h + f * n

    class IndRNN(nn.Module):
        def __init__(self, inputs, hidden):
            super().__init__()
            self.W, self.u = nn.Linear(inputs, hidden), nn.Parameter(torch.zeros(hidden))

        def forward(self, x, h):
            return torch.relu(self.W(x) + self.u * h)

    class MIRNN(nn.Module):
        def __init__(self, inputs, hidden):
            super().__init__()
            self.W, self.U = nn.Linear(inputs, hidden, bias=False), nn.Linear(hidden, hidden, bias=False)
            self.alpha, self.beta_u, self.beta_w, self.b = (nn.Parameter(torch.zeros(hidden)) for _ in range(4))

        def forward(self, x, h):
            wx, uh = self.W(x), self.U(h)
            return torch.tanh(self.alpha * wx * uh + self.beta_u * uh + self.beta_w * wx + self.b)

    class LiGRU(nn.Module):
        def __init__(self, inputs, hidden):
            super().__init__()
            self.W, self.U = nn.Linear(inputs, 2 * hidden), nn.Linear(hidden, 2 * hidden, bias=False)

        def forward(self, x, h):
            w_z, w_n = self.W(x).chunk(2, -1)
            u_z, u_n = self.U(h).chunk(2, -1)
            z = torch.sigmoid(w_z + u_z)
            return z * h + (1 - z) * torch.relu(w_n + u_n)

    return {"mgu": MGU, "indrnn": IndRNN, "mirnn": MIRNN, "ligru": LiGRU}


def torch_twin(ts_cell, name, inputs, hidden, dtype="float32"):
    """The torch cell of ``name`` holding a copy of ``ts_cell``'s parameters (same names)."""
    import torch

    cell = torch_cells()[name](inputs, hidden).to(getattr(torch, dtype))
    cell.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ts_cell.state_dict().items()})
    return cell


def torch_unroll(cell, x, hidden):
    """Run a torch cell over x (T, B, I) from a zero state: the (T, B, H) outputs."""
    import torch

    h, outs = torch.zeros(x.shape[1], hidden, dtype=x.dtype), []
    for t in range(x.shape[0]):
        h = cell(x[t], h)
        outs.append(h)
    return torch.stack(outs)


# ---------------------------------------------------------------- steps and checks (children only)


class Variant:
    """One way to run a layer: ``step()`` trains once; ``result()`` runs once more and returns
    the output and the gradients by parameter name, as NumPy arrays, for ``check_same``."""

    def __init__(self, module, run, grads):
        self.module, self.run, self.grads = module, run, grads

    def step(self):
        """``zero_grad``, forward, ``out.sum().backward()``; returns the output."""
        self.module.zero_grad()
        out = self.run()
        out.sum().backward()
        return out

    def result(self):
        """The output and the gradients (name -> array) of one training step."""
        out = self.step()
        return to_numpy(out), {k: to_numpy(v) for k, v in self.grads().items()}


def to_numpy(value):
    """A tinyseq or torch tensor (or a NumPy array) as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach()
    return value.numpy() if hasattr(value, "numpy") else value


def tinyseq_variant(layer, x, grads_of):
    """A ``Variant`` of a tinyseq layer over the array ``x``; ``grads_of()`` -> {name: Parameter}."""
    return Variant(layer, lambda: layer(x)[0], lambda: {k: p.grad for k, p in grads_of().items()})


def torch_variant(cell, x, hidden):
    """A ``Variant`` of a torch cell over ``x`` (an array), unrolled by ``torch_unroll``."""
    import torch

    xt = torch.from_numpy(x)
    return Variant(cell, lambda: torch_unroll(cell, xt, hidden),
                   lambda: {k: p.grad for k, p in cell.named_parameters()})


def check_same(label, variants, rtol=AGREE_RTOL):
    """Raise AssertionError unless every variant's output and gradients (matched by name) match
    the first variant's to ``rtol`` relative to the largest entry. Returns the largest difference."""
    (ref_name, ref), *others = [(name, v.result()) for name, v in variants.items()]
    worst = 0.0
    for name, (out, grads) in others:
        pairs = [("output", ref[0], out)] + [(k, ref[1][k], g) for k, g in grads.items()]
        for what, a, b in pairs:
            if a.shape != b.shape:
                raise AssertionError(f"{label}: {name}'s {what} has shape {b.shape}, {ref_name}'s {a.shape}")
            diff = float(abs(a - b).max()) / max(float(abs(a).max()), 1e-30)
            worst = max(worst, diff)
            if diff > rtol:
                raise AssertionError(f"{label}: {name}'s {what} differs from {ref_name}'s by {diff:.2e} "
                                     f"relative (> {rtol:g})")
    return worst


def alternate(variants, repeats, warmup, limited=(), limit=0, min_seconds=0.0, most=MOST_REPEATS):
    """Time ``step()`` of each variant in turn: ``warmup`` untimed rounds, then at least
    ``repeats`` timed rounds, more while a variant not in ``limited`` has been timed for less
    than ``min_seconds`` in all (fast steps get more samples), ``most`` at the most. Every
    other round runs in reverse order (no variant always runs right after another); the
    variants in ``limited`` run in the first ``limit`` timed rounds only. Returns
    {name: [seconds, ...]}."""
    times = {name: [] for name in variants}
    shortest = lambda: min(sum(t) for name, t in times.items() if name not in limited)  # noqa: E731
    timed = 0
    while timed < repeats or (timed < most and shortest() < min_seconds):
        for name, v in list(variants.items())[::-1 if (warmup + timed) % 2 else 1]:
            if name in limited and timed >= limit:
                continue
            start = time.perf_counter()
            v.step()
            if warmup == 0:
                times[name].append(time.perf_counter() - start)
        if warmup:
            warmup -= 1
        else:
            timed += 1
    return times


def gallery_cell(name, inputs, hidden, dtype="float32"):
    """A fresh ``examples/cell_gallery.py`` cell, its ``nn.Linear`` parts drawn after ``manual_seed(0)``."""
    import cell_gallery

    import tinyseq

    tinyseq.manual_seed(0)
    return cell_gallery.GALLERY[name](inputs, hidden, dtype=dtype)


def input_array(steps, batch, inputs, dtype="float32"):
    """The input every variant of a measurement takes: standard normal, seed 0."""
    import numpy as np

    return np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(dtype)


def kernel_variants(cell_type, steps, batch, inputs, hidden, dtype="float32"):
    """{"compiled": the gallery cell compiled, "handwritten": ``nn.<cell_type>(backend="numba")``},
    with the same weights."""
    from tinyseq import nn

    layer = getattr(nn, cell_type)(inputs, hidden, backend="numba").to(dtype)
    cell = gallery_cell(GALLERY_NAME[cell_type], inputs, hidden, dtype)
    cell.load_from(layer)
    compiled = nn.Recurrent(cell, backend="numba")
    x = input_array(steps, batch, inputs, dtype)
    return {"compiled": tinyseq_variant(compiled, x, lambda: dict(cell.named_parameters())),
            "handwritten": tinyseq_variant(layer, x, lambda: {k[:-len("_l0")]: p for k, p in layer.named_parameters()})}


def cell_variants(name, steps, batch, inputs, hidden, torch_compile=False):
    """{"compiled", "graph", "torch"[, "torch.compile"]}: the gallery cell ``name`` compiled and on
    the graph, and its torch twin eager (and under ``torch.compile``), the same weights, float32."""
    import torch

    from tinyseq import nn

    x = input_array(steps, batch, inputs)
    variants = {}
    for backend in ("numba", "graph"):
        cell = gallery_cell(name, inputs, hidden)
        if variants:
            cell.load_state_dict(variants["compiled"].module.cell.state_dict())
        layer = nn.Recurrent(cell, backend=backend)
        variants["compiled" if backend == "numba" else "graph"] = tinyseq_variant(
            layer, x, lambda cell=cell: dict(cell.named_parameters()))
    twin = torch_twin(variants["compiled"].module.cell, name, inputs, hidden)
    variants["torch"] = torch_variant(twin, x, hidden)
    if torch_compile:
        compiled_twin = torch.compile(twin)
        xt = torch.from_numpy(x)
        variants["torch.compile"] = Variant(twin, lambda: torch_unroll(compiled_twin, xt, hidden),
                                            lambda: {k: p.grad for k, p in twin.named_parameters()})
    return variants


def set_torch_threads(threads):
    """``torch.set_num_threads(threads)``."""
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------- child workers


def kernels_worker(args):
    """Child: compiled vs hand-written kernels of ``args.cell`` at ``args.shape``'s dims."""
    steps, batch, inputs, hidden = SHAPES[args.shape][1:5]
    variants = kernel_variants(args.cell, steps, batch, inputs, hidden)
    diff = check_same(f"{args.cell} at {args.shape}", variants)
    times = alternate(variants, args.repeats, args.warmup, min_seconds=args.min_seconds)
    print(json.dumps({"times": times, "max_rel_diff": diff}))


def cells_worker(args):
    """Child: one gallery cell at ``args.shape``'s dims, compiled vs graph vs eager torch."""
    set_torch_threads(args.threads)
    steps, batch, inputs, hidden = SHAPES[args.shape][1:5]
    variants = cell_variants(args.cell, steps, batch, inputs, hidden)
    diff = check_same(f"{args.cell} at {args.shape}", variants)
    times = alternate(variants, args.repeats, args.warmup, limited={"graph"}, limit=args.graph_repeats,
                      min_seconds=args.min_seconds)
    print(json.dumps({"times": times, "max_rel_diff": diff}))


def torch_compile_worker(args):
    """Child: torch.compile of the MGU step at ``args.shape``'s dims; its warm-up steps' times,
    then its steps alternated with eager torch and tinyseq compiled."""
    set_torch_threads(args.threads)
    steps, batch, inputs, hidden = SHAPES[args.shape][1:5]
    start = time.perf_counter()
    variants = cell_variants("mgu", steps, batch, inputs, hidden, torch_compile=True)
    for name, v in variants.items():  # numba's kernels and torch's first steps, out of the compile time
        if name != "torch.compile":
            v.step()
    warmup = []
    for _ in range(args.warmup):
        began = time.perf_counter()
        variants["torch.compile"].step()
        warmup.append(time.perf_counter() - began)
    timed = {k: variants[k] for k in ("torch.compile", "torch", "compiled")}
    diff = check_same(f"torch.compile mgu at {args.shape}", timed)
    times = alternate(timed, args.repeats, 1, min_seconds=args.min_seconds)
    print(json.dumps({"times": times, "warmup": warmup, "max_rel_diff": diff,
                      "child_s": time.perf_counter() - start}))


def compile_worker(args):
    """Child: wall and CPU seconds from constructing an MGU cell to the end of its first compiled
    training step at T=``args.steps`` (and of the imports before it), and that step's when warm."""
    import importlib

    import numpy as np

    import tinyseq
    from tinyseq import nn

    batch, inputs, hidden = COMPILE_SHAPE
    x = input_array(args.steps, batch, inputs)
    gallery_cell("mgu", inputs, hidden)  # imports cell_gallery
    clocks = [(time.perf_counter(), time.process_time())]
    for name in JIT_MODULES:
        importlib.import_module(name)
    tinyseq.tensor(np.ones((2, 2), np.float32)) @ tinyseq.tensor(np.ones((2, 2), np.float32))  # loads the BLAS
    clocks.append((time.perf_counter(), time.process_time()))
    cell = gallery_cell("mgu", inputs, hidden)
    layer = nn.Recurrent(cell, backend="numba")
    variant = tinyseq_variant(layer, x, lambda: dict(cell.named_parameters()))
    variant.step()
    clocks.append((time.perf_counter(), time.process_time()))
    for _ in range(args.repeats):
        variant.step()
        clocks.append((time.perf_counter(), time.process_time()))
    spans = [(end[0] - begin[0], end[1] - begin[1]) for begin, end in zip(clocks, clocks[1:])]
    print(json.dumps({"imports_s": spans[0], "first_s": spans[1], "warm_s": spans[2:],
                      "modules": generated_modules()}))


def generated_modules():
    """The generated modules' file names in the kernel cache directory."""
    from tinyseq_jit.compiler.kernels import cache_dir

    return sorted(f for f in os.listdir(cache_dir()) if f.endswith(".py"))


# ---------------------------------------------------------------- parent


loads = []  # the 1-minute load average after each child


def run_child(args, worker, *worker_args, env_extra=None, timeout=None):
    """Run this script as a child worker; return (parsed JSON, wall s), or (None, wall) if it
    ran past ``timeout``. Appends the load average to ``loads``."""
    env = dict(os.environ, **{var: str(args.threads) for var in THREAD_VARS}, **(env_extra or {}))
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--min-seconds", str(args.min_seconds),
           "--warmup", str(args.warmup), "--graph-repeats", str(args.graph_repeats), "--worker", worker, *worker_args]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - start
    wall = time.perf_counter() - start
    loads.append(os.getloadavg()[0])
    if proc.returncode:
        raise RuntimeError(f"child {worker} {worker_args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def ms_stats(times):
    """{"median_ms", "min_ms", "max_ms", "n"} of a list of seconds."""
    return {"median_ms": 1e3 * median(times), "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times),
            "n": len(times)}


def dims(sid):
    """(T, B, I, H) of an S-shape."""
    return dict(zip("TBIH", SHAPES[sid][1:5]))


def measure_kernels(args, ids):
    """Section 1: a row per (S-shape, cell)."""
    rows = []
    for sid in ids:
        cells = [SHAPES[sid][0]] + (["LSTM", "GRU"] if sid == "S7" else [])
        for cell in cells:
            out, wall = run_child(args, "kernels", "--shape", sid, "--cell", cell)
            ms = {k: ms_stats(v) for k, v in out["times"].items()}
            ratio = ms["compiled"]["median_ms"] / ms["handwritten"]["median_ms"]
            goal = KERNEL_GOAL.get(sid, KERNEL_GOAL_DEFAULT)
            rows.append({"id": sid, "cell": cell, **dims(sid), "ms": ms, "compiled_over_handwritten": ratio,
                         "goal": goal, "pass": ratio <= goal, "max_rel_diff": out["max_rel_diff"],
                         "child_wall_s": wall})
            print(f"kernels {sid} {cell}: {ratio:.2f} (child {wall:.0f} s)", flush=True)
    return rows


def measure_cells(args, ids, cells):
    """Section 2: a row per (gallery cell, S-shape)."""
    rows = []
    for sid in ids:
        for cell in cells:
            out, wall = run_child(args, "cells", "--shape", sid, "--cell", cell)
            ms = {k: ms_stats(v) for k, v in out["times"].items()}
            compiled = ms["compiled"]["median_ms"]
            graph, torch = ms["graph"]["median_ms"] / compiled, ms["torch"]["median_ms"] / compiled
            rows.append({"id": sid, "cell": cell, **dims(sid), "ms": ms, "graph_over_compiled": graph,
                         "graph_goal": GRAPH_GOAL[sid], "pass_graph": graph >= GRAPH_GOAL[sid],
                         "torch_over_compiled": torch, "torch_target": TORCH_TARGET[sid],
                         "meets_torch_target": torch >= TORCH_TARGET[sid], "max_rel_diff": out["max_rel_diff"],
                         "child_wall_s": wall})
            print(f"cells {sid} {cell}: graph/compiled {graph:.1f}, torch/compiled {torch:.1f} "
                  f"(child {wall:.0f} s)", flush=True)
    return rows


def measure_torch_compile(args, ids):
    """Section 3: a row per S-shape, or "did not finish" within the timeout."""
    rows = []
    for sid in ids:
        out, wall = run_child(args, "torch_compile", "--shape", sid, timeout=args.torch_compile_timeout)
        row = {"id": sid, "cell": "mgu", **dims(sid), "child_wall_s": wall, "finished": out is not None}
        if out:
            ms = {k: ms_stats(v) for k, v in out["times"].items()}
            warm = median(out["times"]["torch.compile"])
            row.update(ms=ms, warmup_s=out["warmup"], compile_s=sum(out["warmup"]) - len(out["warmup"]) * warm,
                       max_rel_diff=out["max_rel_diff"],
                       torch_compile_over_compiled=ms["torch.compile"]["median_ms"] / ms["compiled"]["median_ms"],
                       torch_over_torch_compile=ms["torch"]["median_ms"] / ms["torch.compile"]["median_ms"])
        rows.append(row)
        print(f"torch.compile {sid}: " + (f"compile {row['compile_s']:.1f} s" if out else "did not finish")
              + f" (child {wall:.0f} s)", flush=True)
    return rows


def measure_compile_time(args):
    """Section 4: cold and cached compile of MGU at each T in COMPILE_STEPS, ``args.rounds`` times;
    wall and CPU seconds (the child's threads together)."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="cell_compiler_speed_") as tmp:
        prime, prime_wall = run_child(args, "compile", "--steps", "10",
                                      env_extra={"TINYSEQ_KERNEL_CACHE": os.path.join(tmp, "prime")})
        for r in range(args.rounds):
            for steps in COMPILE_STEPS:
                cache = os.path.join(tmp, f"round{r}_T{steps}")
                for kind in ("cold", "cached"):
                    out, wall = run_child(args, "compile", "--steps", str(steps),
                                          env_extra={"TINYSEQ_KERNEL_CACHE": cache})
                    warm = [median([w[i] for w in out["warm_s"]]) for i in (0, 1)]
                    runs.append({"round": r, "T": steps, "kind": kind, "imports_s": out["imports_s"][0],
                                 "imports_cpu_s": out["imports_s"][1], "first_s": out["first_s"][0],
                                 "warm_s": warm[0], "compile_s": out["first_s"][0] - warm[0],
                                 "compile_cpu_s": out["first_s"][1] - warm[1], "child_wall_s": wall,
                                 "modules": out["modules"]})
                    print(f"compile T={steps} {kind}: {runs[-1]['compile_s']:.2f} s, "
                          f"cpu {runs[-1]['compile_cpu_s']:.2f} s (child {wall:.0f} s)", flush=True)
    summary = {}
    for steps in COMPILE_STEPS:
        for kind in ("cold", "cached"):
            mine = [run for run in runs if run["T"] == steps and run["kind"] == kind]
            values = [run["compile_s"] for run in mine]
            goal = COLD_GOAL_S if kind == "cold" else CACHED_GOAL_S
            summary[f"{kind}_T{steps}"] = {
                "median_s": median(values), "all_s": values, "goal_s": goal, "pass": median(values) <= goal,
                "cpu_median_s": median([run["compile_cpu_s"] for run in mine]),
                "imports_median_s": median([run["imports_s"] for run in mine])}
    return {"cell": "mgu", "B_I_H": COMPILE_SHAPE, "prime_first_s": prime["first_s"][0],
            "prime_child_wall_s": prime_wall, "runs": runs, "summary": summary}


def print_results(result, args):
    """Print the four sections' tables."""
    print(f"\nfloat32, {args.threads} threads; train step (zero_grad, fwd, sum().backward()) medians [min-max], ms; "
          f"variants alternated in one child after {args.warmup} warm-up steps, {args.repeats} timed steps each or "
          f"more, until each has {args.min_seconds:g} s (n: the compiled variant's count)")
    if result["kernels"]:
        print("\n1. compiled gallery cell vs hand-written numba kernel (c/h: compiled / hand-written)")
        print_rows(["id", "cell", "T", "B", "I", "H", "n", "compiled ms", "hand-written ms", "c/h", "goal", "ok",
                    "max diff"],
                   [[r["id"], r["cell"], r["T"], r["B"], r["I"], r["H"], r["ms"]["compiled"]["n"],
                     fmt_ms(r["ms"]["compiled"]), fmt_ms(r["ms"]["handwritten"]),
                     f"{r['compiled_over_handwritten']:.2f}", f"<={r['goal']}", verdict(r["pass"]),
                     f"{r['max_rel_diff']:.0e}"] for r in result["kernels"]])
    if result["cells"]:
        print(f"\n2. compiled vs graph ({args.graph_repeats} steps) vs eager torch (g/c, t/c: their time / compiled)")
        print_rows(["id", "cell", "n", "compiled ms", "graph ms", "torch ms", "g/c", "goal", "ok", "t/c", "target",
                    "met", "max diff"],
                   [[r["id"], r["cell"], r["ms"]["compiled"]["n"], fmt_ms(r["ms"]["compiled"]),
                     fmt_ms(r["ms"]["graph"]), fmt_ms(r["ms"]["torch"]),
                     f"{r['graph_over_compiled']:.1f}", f">={r['graph_goal']:g}", verdict(r["pass_graph"]),
                     f"{r['torch_over_compiled']:.1f}", f">={r['torch_target']:g}",
                     "yes" if r["meets_torch_target"] else "no", f"{r['max_rel_diff']:.0e}"] for r in result["cells"]])
    if result["torch_compile"]:
        print(f"\n3. torch.compile(MGU step), timeout {args.torch_compile_timeout} s per shape "
              "(compile: its warm-up steps minus as many warm steps)")
        rows = []
        for r in result["torch_compile"]:
            if r["finished"]:
                rows.append([r["id"], f"{r['compile_s']:.1f}", fmt_ms(r["ms"]["torch.compile"]),
                             fmt_ms(r["ms"]["torch"]), fmt_ms(r["ms"]["compiled"]),
                             f"{r['torch_over_torch_compile']:.2f}", f"{r['torch_compile_over_compiled']:.1f}"])
            else:
                rows.append([r["id"], f"did not finish in {r['child_wall_s']:.0f} s"] + ["-"] * 5)
        print_rows(["id", "compile s", "torch.compile ms", "torch ms", "tinyseq compiled ms", "torch/tc",
                    "tc/compiled"], rows)
    comp = result["compile_time"]
    if comp:
        print(f"\n4. compile time of a new cell (MGU, B, I, H = {comp['B_I_H']}), s: construction to the end of "
              f"the first fwd+bwd minus the warm step; fresh process each; {args.rounds} rounds "
              f"(helpers' priming child: {comp['prime_first_s']:.1f} s, not counted)")
        print(f"   (before the clock, timed apart: import of {', '.join(JIT_MODULES)} and a first 2x2 product)")
        print_rows(["T", "kind", "median s", "all s", "goal", "ok", "cpu s", "imports s"],
                   [[key.split("_T")[1], key.split("_T")[0], f"{s['median_s']:.2f}",
                     " ".join(f"{v:.2f}" for v in s["all_s"]), f"<={s['goal_s']:g}", verdict(s["pass"]),
                     f"{s['cpu_median_s']:.2f}", f"{s['imports_median_s']:.2f}"] for key, s in comp["summary"].items()])


def main(argv=None):
    """Parse options; run as a child worker, or run every measurement, print the tables, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / numba / torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps of each variant per child")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help=f"more timed steps while a variant's add up to less (at most {MOST_REPEATS})")
    parser.add_argument("--graph-repeats", type=int, default=3, help="timed graph steps per child (section 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each variant first")
    parser.add_argument("--rounds", type=int, default=2, help="cold + cached compile-time rounds (section 4)")
    parser.add_argument("--only", help="comma-separated S-shape ids for section 1 (default all); "
                                       "sections 2-3 run those of S5, S7 named")
    parser.add_argument("--cells", default=",".join(CELLS), help="gallery cells of section 2")
    parser.add_argument("--sections", default="1,2,3,4", help="which sections to run (default all)")
    parser.add_argument("--torch-compile-timeout", type=int, default=300, help="seconds per torch.compile child")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: S7 only, 2 timed steps (no --min-seconds), 1 warm-up, 1 compile round, "
                             "120 s torch.compile limit")
    parser.add_argument("--out", default="benchmarks/out/cell_compiler_speed.json")
    parser.add_argument("--worker", choices=["kernels", "cells", "torch_compile", "compile"], help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = {"kernels": kernels_worker, "cells": cells_worker, "torch_compile": torch_compile_worker,
               "compile": compile_worker}
    if args.worker:
        return workers[args.worker](args)
    if args.quick:
        args.only, args.repeats, args.graph_repeats, args.warmup, args.rounds = "S7", 2, 1, 1, 1
        args.min_seconds = 0.0
        args.torch_compile_timeout = min(args.torch_compile_timeout, 120)

    ids = args.only.split(",") if args.only else list(SHAPES)
    cells, sections = args.cells.split(","), args.sections.split(",")
    for name, given, allowed in (("shape id", ids, SHAPES), ("cell", cells, CELLS), ("section", sections, "1234")):
        if [x for x in given if x not in allowed]:
            parser.error(f"unknown {name}s {[x for x in given if x not in allowed]}; choose from {list(allowed)}")
    with_torch = importlib.util.find_spec("torch") is not None
    if not with_torch and {"2", "3"} & set(sections):
        parser.error("sections 2 and 3 need torch (pip install -e \".[interop]\"); run --sections 1,4")

    began = time.perf_counter()
    cell_ids = [sid for sid in CELL_SHAPES if sid in ids]
    result = {"kernels": measure_kernels(args, ids) if "1" in sections else [],
              "cells": measure_cells(args, cell_ids, cells) if "2" in sections else [],
              "torch_compile": measure_torch_compile(args, cell_ids) if "3" in sections else [],
              "compile_time": measure_compile_time(args) if "4" in sections else None}
    print_results(result, args)
    total = time.perf_counter() - began
    print(f"\ntotal {total:.0f} s; 1-minute load average after the children: {min(loads):.1f}-{max(loads):.1f}")

    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "total_s": total, "dtype": "float32",
            "options": {k: getattr(args, k) for k in ("threads", "repeats", "min_seconds", "graph_repeats", "warmup",
                                                       "rounds", "only", "cells", "sections", "torch_compile_timeout",
                                                       "quick")},
            "load_after_each_child": loads}
    write_json(args.out, meta, result)


if __name__ == "__main__":
    main()
