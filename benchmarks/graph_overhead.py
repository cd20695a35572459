"""Per-op overhead of the graph backend: an unrolled LSTM layer vs a PyTorch eager cell loop.

Times one training step (forward over T steps + backward) of ``tinyseq.nn.LSTM`` with
the graph backend, and of a Python loop over ``torch.nn.LSTMCell`` (eager autograd),
at the same sizes, dtype (float32) and thread count. Prints a table of medians and
writes JSON.

    python benchmarks/graph_overhead.py [--threads 2] [--repeats 15] [--out benchmarks/out/graph_overhead.json]
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

SHAPES = [(50, 32, 64, 128), (200, 1, 32, 64)]  # (T, B, I, H)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/graph_overhead.json")
    return parser.parse_args(argv)


def median_ms(fn, repeats, warmup):
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e3 * times[len(times) // 2]


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


def main(argv=None):
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, None
    import numpy as np

    rows = []
    for shape in SHAPES:
        ours = median_ms(tinyseq_step(shape), args.repeats, args.warmup)
        theirs = median_ms(torch_step(shape), args.repeats, args.warmup) if torch else None
        rows.append({"T": shape[0], "B": shape[1], "I": shape[2], "H": shape[3], "tinyseq_graph_ms": ours,
                     "torch_eager_ms": theirs, "ratio": ours / theirs if theirs else None})

    print(f"graph-mode LSTM fwd+bwd vs torch eager LSTMCell loop; float32, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'T':>4} {'B':>3} {'I':>4} {'H':>4} | {'tinyseq ms':>10} {'torch ms':>9} {'ratio':>6}")
    for r in rows:
        torch_ms = f"{r['torch_eager_ms']:9.1f}" if r["torch_eager_ms"] else f"{'n/a':>9}"
        ratio = f"{r['ratio']:6.2f}" if r["ratio"] else f"{'n/a':>6}"
        print(f"{r['T']:>4} {r['B']:>3} {r['I']:>4} {r['H']:>4} | {r['tinyseq_graph_ms']:10.1f} {torch_ms} {ratio}")

    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "numpy": np.__version__, "torch": torch_version,
            "machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
            "repeats": args.repeats, "dtype": "float32"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
