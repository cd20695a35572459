"""The built-in layers' kernels against another tree's (issue 24: generated vs hand-written).

One training step of ``nn.LSTM``/``GRU``/``RNN(backend="numba")`` (or ``--backend graph``:
what the steps cost unrolled), float32: ``zero_grad()``;
forward over T steps from a zero state; ``out.sum().backward()``; at each S-shape of
``rnn_speed.py`` (its (T, B, I, H)), for each cell: RNN (tanh), LSTM, GRU and GRU
``reset_after=False``. Two child processes (this script with ``--worker``), one importing
this tree's tinyseq and one ``--baseline``'s (a git worktree of another commit, e.g. the
commit before the built-ins ran on generated kernels: ``git worktree add --detach
/tmp/base <commit>``), build the same layer from the same seed; their first steps must give
the same loss and gradients (max |a - b| / max |a| <= 1e-3) or the script stops. Then they
step alternately, one step each in turn, every other round the baseline first, after
``--warmup`` untimed steps each; ``--repeats`` timed steps each at least, more until each
side's add up to ``--min-seconds``. Medians and their ratio (this tree / baseline). Both
children get the thread variables (OpenBLAS / OpenMP / MKL / Numba) set to ``--threads``.

Goal (issue 24, numba): this tree / baseline <= 1.05 on S1-S6, <= 1.10 on S7. (The goals
are printed for ``--backend graph`` too; there they are no bar, only a yardstick.)

    python benchmarks/builtin_kernels.py --baseline /tmp/base [--only S5,S7] [--threads 1] [--quick]
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from statistics import median

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rnn_speed import SHAPES, THREAD_VARS  # noqa: E402  (the standard library only)
from train_speed import print_rows, verdict, write_json  # noqa: E402

CELLS = {"RNN": ("RNN", {}), "LSTM": ("LSTM", {}), "GRU": ("GRU", {}), "GRU-classic": ("GRU", {"reset_after": False})}
GOAL = {"S7": 1.10}
GOAL_DEFAULT = 1.05
SAME_RTOL = 1e-3


# ---------------------------------------------------------------- the child: one tree, one layer at a time


def worker():
    """Read one JSON command a line from stdin, answer one JSON line: build a layer, step it."""
    import numpy as np

    import tinyseq as ts
    from tinyseq import nn

    layer = x = None

    def step():
        layer.zero_grad()
        out, _ = layer(x)
        out.sum().backward()
        return out

    for line in sys.stdin:
        command = json.loads(line)
        if "build" in command:
            mode, options, (steps, batch, inputs, hidden), backend = command["build"]
            ts.manual_seed(0)
            layer = getattr(nn, mode)(inputs, hidden, backend=backend, **options)
            x = ts.Tensor(np.random.default_rng(1).standard_normal((steps, batch, inputs)).astype(np.float32))
            out = step()
            answer = {"loss": float(out.data.sum()), "grads": [p.grad.data.ravel()[:64].tolist()
                                                                for p in layer.parameters()]}
        else:
            times = []
            for _ in range(command["steps"]):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            answer = {"times": times}
        print(json.dumps(answer), flush=True)


class Child:
    def __init__(self, tree, threads):
        env = dict(os.environ, PYTHONPATH=str(tree), **{v: str(threads) for v in THREAD_VARS})
        self.proc = subprocess.Popen([sys.executable, str(HERE / "builtin_kernels.py"), "--worker"], cwd=tree,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"builtin_kernels: a worker died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _check_same(mine, base, what):
    import numpy as np

    for a, b in zip([mine["loss"]] + mine["grads"], [base["loss"]] + base["grads"]):
        a, b = np.asarray(a), np.asarray(b)
        if np.abs(a - b).max() > SAME_RTOL * max(np.abs(b).max(), 1e-30):
            raise SystemExit(f"builtin_kernels: {what}: the two trees compute different numbers")


def measure(children, shape_id, cell, args):
    """Median ms of one training step on each tree, alternated."""
    mode, options = CELLS[cell]
    _, steps, batch, inputs, hidden, _ = SHAPES[shape_id]
    answers = [c.ask(build=[mode, options, [steps, batch, inputs, hidden], args.backend]) for c in children]
    _check_same(*answers, f"{shape_id} {cell}")
    for c in children:
        c.ask(steps=args.warmup)
    times = [[], []]
    rounds = 0
    while rounds < args.repeats or min(sum(t) for t in times) < args.min_seconds:
        order = (0, 1) if rounds % 2 == 0 else (1, 0)
        for k in order:
            times[k] += children[k].ask(steps=1)["times"]
        rounds += 1
        if rounds >= args.max_repeats:
            break
    mine, base = (median(t) * 1e3 for t in times)
    goal = GOAL.get(shape_id, GOAL_DEFAULT)
    return {"id": shape_id, "cell": cell, "shape": f"{steps}, {batch}, {inputs}, {hidden}", "ms": mine,
            "baseline_ms": base, "ratio": mine / base, "goal": goal, "met": mine / base <= goal, "steps": rounds,
            "load": os.getloadavg()[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="the other tree (a git worktree)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=["numba", "graph"], default="numba")
    parser.add_argument("--only", help="comma-separated shape ids (default all)")
    parser.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, of {','.join(CELLS)}")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--max-repeats", type=int, default=500)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="S5 and S7, 3 steps each: a smoke run")
    parser.add_argument("--out", default="benchmarks/out/builtin_kernels.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()
    if not args.baseline or not (pathlib.Path(args.baseline) / "tinyseq").is_dir():
        parser.exit(2, "builtin_kernels: --baseline must be a tree with tinyseq/ in it (a git worktree)\n")
    if args.quick:
        args.only, args.repeats, args.min_seconds = args.only or "S5,S7", 3, 0.0
    ids = args.only.split(",") if args.only else list(SHAPES)
    cells = args.cells.split(",")
    for name in ids + cells:
        if name not in SHAPES and name not in CELLS:
            parser.exit(2, f"builtin_kernels: unknown shape or cell {name!r}; shapes {list(SHAPES)}, cells {list(CELLS)}\n")
    children = [Child(HERE.parent, args.threads), Child(pathlib.Path(args.baseline).resolve(), args.threads)]
    rows = []
    try:
        for shape_id in ids:
            for cell in cells:
                rows.append(measure(children, shape_id, cell, args))
                r = rows[-1]
                print(f"{r['id']} {r['cell']}: {r['ms']:.3g} vs {r['baseline_ms']:.3g} ms, "
                      f"{r['ratio']:.2f} ({verdict(r['met'])})", flush=True)
    finally:
        for c in children:
            c.close()
    print_rows(["id", "cell", "T, B, I, H", "this tree ms", "baseline ms", "ratio", "goal", "met"],
               [[r["id"], r["cell"], r["shape"], f"{r['ms']:.3g}", f"{r['baseline_ms']:.3g}", f"{r['ratio']:.2f}",
                 f"<= {r['goal']}", verdict(r["met"])] for r in rows])
    write_json(args.out, {"baseline": str(args.baseline), "backend": args.backend, "threads": args.threads,
                          "machine": platform.platform(),
                          "python": sys.version.split()[0]}, {"rows": rows})


if __name__ == "__main__":
    main()
