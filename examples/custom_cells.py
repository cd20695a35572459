"""Cells of your own, fused: five cells written from ops learn the adding problem compiled.

The minimal gated unit (MGU), the independently recurrent network (IndRNN), multiplicative
integration (MI-RNN), the light GRU (LiGRU) and an LSTM written from ops, all from
``cell_gallery.py``, each run as ``nn.Recurrent(cell, backend=...)``: with the default
``--backend auto`` the compiler traces the cell's step and runs its generated Numba forward
and BPTT (``--backend graph`` trains on the graph instead). Each one learns the adding problem of ``adding_problem.py`` (its batches, its
test set, its read-out of the last hidden state, Adam with clipping) at T = 100 until the
held-out MSE falls below 0.01 (always answering 1 scores about 0.167) or the step budget
runs out. The ops-written LSTM starts, as adding_problem.py's LSTM does, with forget-gate
bias +1 (``load_from`` an ``nn.LSTM`` so initialised).

Then the same training step is timed on both backends, graph (the step's ops unrolled over
time, BPTT by the engine) and compiled, from the same weights on the same batches, taking
steps alternately so both see the same background load: the median milliseconds of
``--time-steps`` steps after one untimed step (the compile, or the load from the kernel
cache), and the largest difference between the two runs' losses.

    python examples/custom_cells.py                       # the five cells, T = 100
    python examples/custom_cells.py --cells mgu,gru --steps 1000
    python examples/custom_cells.py --quick               # T = 20, a smoke run

Prints the first lines of one generated kernel (``--kernel``, whole in <out>/kernel_<cell>.py)
and a table (the step whose test MSE is below 0.01, the final test MSE, ms per training step
graph and compiled), writes <out>/results.json and <out>/custom_cells.png.
"""

import pathlib
import statistics
import time

import numpy as np

import adding_problem
import cell_gallery
import common
import tinyseq as ts
from tinyseq import nn

CELLS = ("mgu", "indrnn", "mirnn", "ligru", "lstm")
SOLVED = adding_problem.SOLVED


def make_cell(name, hidden, seed):
    """The gallery's cell ``name`` reading the adding problem's two features; the LSTM with
    forget-gate bias +1, as adding_problem.py starts its nn.LSTM."""
    cell = cell_gallery.GALLERY[name](2, hidden, seed=seed)
    if name == "lstm":
        cell.load_from(nn.init.lstm_forget_bias_(nn.LSTM(2, hidden), 1.0))
    return cell


class CellAdder(nn.Module):
    """A cell unrolled by ``nn.Recurrent`` on ``backend``, then a linear read-out of its last output."""

    def __init__(self, cell, hidden, backend):
        self.rnn = nn.Recurrent(cell, backend=backend)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-1])


def train_step(model, params, opt, x, y, clip):
    """One training step (forward, MSE, backward, clipping, Adam); returns the loss."""
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss.item()


def train(name, test, args):
    """Train one cell on ``args.backend`` until its test MSE is below SOLVED or ``args.steps``
    steps; return its curve, solving step, final test MSE, seconds and what it ran on."""
    ts.manual_seed(args.seed)
    model = CellAdder(make_cell(name, args.hidden, args.seed), args.hidden, args.backend)
    params = list(model.parameters())
    opt = ts.optim.Adam(params, lr=args.lr)
    rng = np.random.default_rng([args.seed, args.length])
    steps, test_mse, solved = [0], [adding_problem.evaluate(model, *test)], None
    with common.Timer() as timer:
        for step in range(1, args.steps + 1):
            train_step(model, params, opt, *adding_problem.make_batch(rng, args.batch, args.length), args.clip)
            if step % args.eval_every == 0 or step == args.steps:
                steps.append(step)
                test_mse.append(adding_problem.evaluate(model, *test))
                if test_mse[-1] < SOLVED:
                    solved = step
                    break
    ran_on = "graph" if model.rnn.fallback_reason or args.backend == "graph" else "compiled"
    if model.rnn.fallback_reason:
        print(f"  {name}: ran on the graph: {model.rnn.fallback_reason}")
    print(f"  {name:<7s} test MSE {test_mse[0]:.3f} -> {test_mse[-1]:.4f}  "
          f"{f'below {SOLVED} at step {solved}' if solved else f'not solved in {args.steps}'}  "
          f"({timer.seconds:.1f} s, {ran_on})", flush=True)
    return {"cell": name, "ran_on": ran_on, "solved_at": solved, "final_test_mse": test_mse[-1],
            "seconds": timer.seconds, "curve": {"step": steps, "test_mse": test_mse}}


def time_backends(name, args):
    """Median ms of a training step on the graph and compiled, the same weights and batches
    for both, and the largest |loss difference| between the two runs. The backends take
    their steps alternately, one each, so both see the same background load."""
    runs = {}
    for backend in ("graph", "numba"):
        ts.manual_seed(args.seed)
        model = CellAdder(make_cell(name, args.hidden, args.seed), args.hidden, backend)
        params = list(model.parameters())
        runs[backend] = (model, params, ts.optim.Adam(params, lr=args.lr))
    runs["numba"][0].load_state_dict(runs["graph"][0].state_dict())
    rng = np.random.default_rng([args.seed, args.length, 2])
    losses, times = {b: [] for b in runs}, {b: [] for b in runs}
    for _ in range(args.time_steps + 1):
        x, y = adding_problem.make_batch(rng, args.batch, args.length)
        for backend, (model, params, opt) in runs.items():
            start = time.perf_counter()
            losses[backend].append(train_step(model, params, opt, x, y, args.clip))
            times[backend].append(time.perf_counter() - start)
    ms = {b: 1000 * statistics.median(t[1:]) for b, t in times.items()}  # the first: compile or cache load
    gap = float(np.max(np.abs(np.subtract(losses["graph"], losses["numba"]))))
    print(f"  {name:<7s} graph {ms['graph']:.1f} ms  compiled {ms['numba']:.1f} ms per step  "
          f"(losses differ by at most {gap:.2g})", flush=True)
    return {"graph_ms": ms["graph"], "compiled_ms": ms["numba"], "max_loss_difference": gap,
            "losses": losses}


def show_kernel(name, args):
    """Print the first ``args.kernel_lines`` lines of the kernel generated for cell ``name``;
    write all of it to <out>/kernel_<name>.py. Returns the source."""
    layer = nn.Recurrent(make_cell(name, args.hidden, args.seed), backend="numba")
    source = layer.kernel_source(input_size=2)
    path = f"{args.out}/kernel_{name}.py"
    pathlib.Path(path).write_text(source)
    lines = source.splitlines()
    print(f"\nThe first {args.kernel_lines} of the {len(lines)} lines of {name}'s generated kernel "
          f"(all in {path}):\n")
    print("\n".join(lines[:args.kernel_lines]))
    print()
    return source


def plot(runs, timings, baseline, args, path):
    """Test MSE against step for each cell (log scale), and ms per step on each backend."""
    plt = common.pyplot()
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        c = run["curve"]
        curves.plot(c["step"], c["test_mse"], label=run["cell"])
    curves.axhline(baseline, color="gray", ls="--", label="always answer 1")
    curves.axhline(SOLVED, color="gray", ls=":", lw=0.8, label=f"solved ({SOLVED})")
    curves.set(yscale="log", xlabel="training step", ylabel="test MSE",
               title=f"Adding problem, T = {args.length} ({' and '.join(sorted({r['ran_on'] for r in runs}))})")
    curves.grid(alpha=0.3, which="both")
    curves.legend(fontsize=8)
    names = [run["cell"] for run in runs]
    at = np.arange(len(names))
    bars.bar(at - 0.2, [timings[n]["graph_ms"] for n in names], 0.4, label="graph", color="tab:gray")
    bars.bar(at + 0.2, [timings[n]["compiled_ms"] for n in names], 0.4, label="compiled", color="tab:blue")
    bars.set_xticks(at, names)
    bars.set(yscale="log", xlabel="cell", ylabel="ms per training step (median)",
             title=f"One training step, T = {args.length}, B = {args.batch}, H = {args.hidden}")
    bars.legend(fontsize=8)
    fig.suptitle("Cells written from ops, compiled by tinyseq_jit")
    fig.tight_layout()
    common.save_figure(fig, path)


def main(argv=None):
    """Show a kernel, train and time every cell; print the table, write the JSON and PNG, return the results."""
    p = common.parser(__doc__.splitlines()[0], out="runs/custom_cells")
    p.add_argument("--cells", default=",".join(CELLS),
                   help=f"comma-separated, from cell_gallery's {', '.join(cell_gallery.GALLERY)} (default {','.join(CELLS)})")
    p.add_argument("--length", type=int, default=None, help="sequence length T (default 100, quick 20)")
    p.add_argument("--steps", type=int, default=None, help="step budget per cell (default 1500, as adding_problem.py; quick 300)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default 64, quick 16)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--eval-every", type=int, default=50, help="steps between test evaluations (default 50)")
    p.add_argument("--test-size", type=int, default=1000, help="held-out sequences")
    p.add_argument("--time-steps", type=int, default=None, help="timed training steps per backend (default 20, quick 3)")
    p.add_argument("--kernel", default=None, help="the cell whose generated kernel is printed (default the first)")
    p.add_argument("--kernel-lines", type=int, default=40, help="how many of its lines are printed")
    args = p.parse_args(argv)
    common.defaults(args, length=(100, 20), steps=(1500, 300), hidden=(64, 16), time_steps=(20, 3))
    cells = common.names(args.cells, list(cell_gallery.GALLERY), "--cells")
    args.kernel = args.kernel or cells[0]
    if args.kernel not in cells:
        raise common.UsageError(f"--kernel {args.kernel}: not among --cells {','.join(cells)}; pick one of them")
    if args.length < 2:
        raise common.UsageError(f"--length: must be at least 2 (one marker per half), got {args.length}")
    for flag, value in (("--steps", args.steps), ("--hidden", args.hidden), ("--batch", args.batch),
                        ("--eval-every", args.eval_every), ("--test-size", args.test_size),
                        ("--time-steps", args.time_steps), ("--kernel-lines", args.kernel_lines)):
        if value < 1:
            raise common.UsageError(f"{flag}: must be a positive integer, got {value}")
    if not (args.lr > 0 and args.clip > 0):
        raise common.UsageError(f"--lr and --clip must be positive, got {args.lr} and {args.clip}")
    if args.backend == "cuda":
        raise common.UsageError("--backend cuda: the compiler generates CPU kernels only; use auto, numba or graph")
    common.start(args)

    source = show_kernel(args.kernel, args)
    test = adding_problem.make_batch(np.random.default_rng([args.seed, args.length, 1]), args.test_size, args.length)
    baseline = float(np.mean((test[1] - 1.0) ** 2))
    print(f"T={args.length}: always answering 1 scores test MSE {baseline:.4f}; solved below {SOLVED}")
    runs = [train(name, test, args) for name in cells]
    print(f"\nA training step on each backend (median of {args.time_steps} after one untimed step; they alternate):")
    timings = {name: time_backends(name, args) for name in cells}

    headers = ["cell", "trained on", f"step MSE < {SOLVED}", "final test MSE", "seconds",
               "graph ms/step", "compiled ms/step", "speed-up"]
    rows = [[r["cell"], r["ran_on"], r["solved_at"] or f"not in {args.steps}", r["final_test_mse"],
             f"{r['seconds']:.1f}", f"{timings[r['cell']]['graph_ms']:.1f}", f"{timings[r['cell']]['compiled_ms']:.1f}",
             f"{timings[r['cell']]['graph_ms'] / timings[r['cell']]['compiled_ms']:.1f}x"] for r in runs]
    print()
    common.summary(args, headers, rows)
    config = {k: getattr(args, k) for k in ("length", "steps", "hidden", "batch", "lr", "clip", "eval_every",
                                           "test_size", "time_steps", "kernel", "seed", "backend", "quick")}
    results = {"config": {**config, "cells": cells, "optimizer": "Adam", "solved_below": SOLVED},
               "baseline": baseline, "runs": runs, "timings": timings,
               "kernel": {"cell": args.kernel, "lines": len(source.splitlines())}}
    common.write_json(f"{args.out}/results.json", results)
    plot(runs, timings, baseline, args, f"{args.out}/custom_cells.png")
    return results


if __name__ == "__main__":
    common.run(main)
