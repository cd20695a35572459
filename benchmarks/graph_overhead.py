"""Per-op overhead of the graph backend: an unrolled LSTM layer vs a PyTorch eager cell loop.

Times one training step (forward over T steps + backward) of ``tinyseq.nn.LSTM`` with
the graph backend, and of a Python loop over ``torch.nn.LSTMCell`` (eager autograd),
at the same sizes, dtype (float32) and thread count. Prints a table of medians and
writes JSON.

Each framework runs in its own process: in one process, the worker threads one library
leaves spinning (OpenBLAS, OpenMP) steal the cores from the other. Rounds alternate
between the two so that both see the same background load on a shared machine; the
median is taken over all rounds' samples.

    python benchmarks/graph_overhead.py [--threads 2] [--rounds 3] [--repeats 9]
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

SHAPES = [(50, 32, 64, 128), (200, 1, 32, 64)]  # (T, B, I, H)


def tinyseq_step(shape):
    import numpy as np

    from tinyseq import nn

    steps, batch, inputs, hidden = shape
    lstm = nn.LSTM(inputs, hidden, backend="graph")
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)

    def step():
        lstm.zero_grad()
        out, _ = lstm(x)
        out.sum().backward()

    return step


def torch_step(shape):
    import torch

    steps, batch, inputs, hidden = shape
    cell = torch.nn.LSTMCell(inputs, hidden)
    x = torch.randn(steps, batch, inputs)

    def step():
        cell.zero_grad()
        h = torch.zeros(batch, hidden)
        c = torch.zeros(batch, hidden)
        outs = []
        for t in range(steps):
            h, c = cell(x[t], (h, c))
            outs.append(h)
        torch.stack(outs).sum().backward()

    return step


def worker(framework, shape, repeats, warmup, threads):
    """Run in a child process: print the wall times (s) of ``repeats`` steps as JSON."""
    if framework == "torch":
        import torch

        torch.set_num_threads(threads)
        step = torch_step(shape)
    else:
        step = tinyseq_step(shape)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps(times))


def run_worker(framework, shape, args):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, __file__, "--worker", framework, "--shape", ",".join(map(str, shape)),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per framework")
    parser.add_argument("--repeats", type=int, default=9, help="timed steps per round, after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/graph_overhead.json")
    parser.add_argument("--worker", choices=["tinyseq", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, tuple(int(n) for n in args.shape.split(",")), args.repeats, args.warmup, args.threads)
        return

    frameworks = ["tinyseq"] + (["torch"] if has_torch() else [])
    rows = []
    for shape in SHAPES:
        samples = {f: [] for f in frameworks}
        for _ in range(args.rounds):
            for f in frameworks:
                samples[f] += run_worker(f, shape, args)
        median = {f: 1e3 * sorted(s)[len(s) // 2] for f, s in samples.items()}
        theirs = median.get("torch")
        rows.append({"T": shape[0], "B": shape[1], "I": shape[2], "H": shape[3],
                     "tinyseq_graph_ms": median["tinyseq"], "torch_eager_ms": theirs,
                     "ratio": median["tinyseq"] / theirs if theirs else None})

    n = args.rounds * args.repeats
    print(f"graph-mode LSTM fwd+bwd vs torch eager LSTMCell loop; float32, {args.threads} threads, "
          f"median of {n} steps ({args.rounds} alternating rounds, one process each)")
    print(f"{'T':>4} {'B':>3} {'I':>4} {'H':>4} | {'tinyseq ms':>10} {'torch ms':>9} {'ratio':>6}")
    for r in rows:
        torch_ms = f"{r['torch_eager_ms']:9.1f}" if r["torch_eager_ms"] else f"{'n/a':>9}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'n/a':>6}"
        print(f"{r['T']:>4} {r['B']:>3} {r['I']:>4} {r['H']:>4} | {r['tinyseq_graph_ms']:10.1f} {torch_ms} {ratio}")

    import numpy as np

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "numpy": np.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
            "dtype": "float32"}
    if "torch" in frameworks:
        import torch

        meta["torch"] = torch.__version__
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
