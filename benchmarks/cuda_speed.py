"""Recurrent-layer speed on an NVIDIA GPU: tinyseq's backend="cuda" against PyTorch's cuDNN.

For each shape (cell, T, B, I, H), one training step (``zero_grad``; forward over T steps;
``out.sum().backward()``) and one forward alone of ``tinyseq.nn.LSTM/GRU/RNN`` with
``backend="cuda"`` and of ``torch.nn.LSTM/GRU/RNN`` on ``cuda`` (cuDNN; TF32 off, so both
compute in float32), float32; medians over ``--repeats`` calls after ``--warmup``, the GPU
synchronised around every timed call. Shapes: S1-S7 of ``rnn_speed.py``, LSTM T=25, B=64,
H=I=1024, and the grid B x H x T over {1, 8, 64, 256} x {64, 256, 1024} x {100, 1000}
(LSTM, I = H). Goals (cuda time / cuDNN time): S1 <= 2.0; S5, S6, S7 <= 1.0. The layers run
the kernels ``tinyseq_jit.compiler`` generates from their steps, on NumPy arrays: their
times include the copies to and from the GPU, which cuDNN's tensors (on the GPU) do not make.
Also counted: the kernel launches of one tinyseq training step.

Under numba's simulator (NUMBA_ENABLE_CUDASIM=1, no GPU needed) it runs the same code end to
end at tiny shapes (``--tiny``, the default there: each size cut to at most T=3, B=2, I=3,
H=4, and a few grid points), without torch: the times then mean nothing, the harness is
what is tested.

    python benchmarks/rnn_speed.py --device cuda [--repeats 10] [--only S1,S5] [--no-grid]
"""

import argparse
import json
import os
import pathlib
import time

import numpy as np

SHAPES = {  # id: (cell, T, B, I, H, goal for cuda/cuDNN time)
    "S1": ("LSTM", 100, 64, 512, 512, 2.0),
    "S2": ("GRU", 100, 64, 512, 512, None),
    "S3": ("LSTM", 25, 16, 512, 512, None),
    "S4": ("LSTM", 150, 16, 256, 256, None),
    "S5": ("LSTM", 150, 4, 256, 256, 1.0),
    "S6": ("GRU", 150, 4, 256, 256, 1.0),
    "S7": ("RNN", 200, 1, 32, 64, 1.0),
    "L1024": ("LSTM", 25, 64, 1024, 1024, None),
}
GRID = [(b, h, t) for b in (1, 8, 64, 256) for h in (64, 256, 1024) for t in (100, 1000)]
TINY = (3, 2, 3, 4)  # the largest T, B, I, H of a --tiny run
TINY_GRID = [(1, 64, 100), (8, 256, 1000)]


def shapes(args):
    """{id: (cell, T, B, I, H, goal)} to run, cut to tiny sizes with --tiny."""
    chosen = {k: v for k, v in SHAPES.items() if not args.only or k in args.only.split(",")}
    if args.grid:
        grid = TINY_GRID if args.tiny else GRID
        chosen.update({f"B{b}H{h}T{t}": ("LSTM", t, b, h, h, None) for b, h, t in grid})
    if args.tiny:
        chosen = {k: (cell, *(min(n, m) for n, m in zip(sizes, TINY)), goal)
                  for k, (cell, *sizes, goal) in chosen.items()}
    return chosen


def tinyseq_steps(cell, steps, batch, inputs, hidden):
    """(train, forward) closures of a tinyseq layer on backend="cuda"."""
    import tinyseq

    layer = getattr(tinyseq.nn, cell)(inputs, hidden, backend="cuda")
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)

    def train():
        layer.zero_grad()
        out, _ = layer(x)
        out.sum().backward()

    def forward():
        with tinyseq.no_grad():
            layer(x)

    return train, forward


def torch_steps(cell, steps, batch, inputs, hidden):
    """(train, forward) closures of torch.nn's layer on the GPU (cuDNN), TF32 off; None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    layer = getattr(torch.nn, cell)(inputs, hidden).cuda()
    x = torch.randn(steps, batch, inputs, device="cuda")

    def train():
        layer.zero_grad()
        out, _ = layer(x)
        out.sum().backward()
        torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            layer(x)
        torch.cuda.synchronize()

    return train, forward


def median_ms(fn, repeats, warmup):
    """The median wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def timed(closures, args):
    """{"train": ms, "fwd": ms}: the medians of a (train, forward) pair of closures."""
    return {k: median_ms(f, args.repeats, args.warmup) for k, f in zip(("train", "fwd"), closures)}


def launches_per_step(train):
    """Kernel launches of one tinyseq training step, by kernel."""
    from tinyseq_jit import cuda

    cuda.reset_launches()
    train()
    return cuda.reset_launches()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", help="comma-separated shape ids (default all)")
    parser.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True, help="the B x H x T grid")
    parser.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=None,
                        help="tiny shapes (the default under the simulator)")
    parser.add_argument("--out", default="benchmarks/out/cuda_speed.json")
    args = parser.parse_args(argv)
    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    args.tiny = simulated if args.tiny is None else args.tiny
    from tinyseq_jit import cuda

    where, why = cuda.status()
    if where is None:
        raise SystemExit(f"cuda_speed: {why}")
    rows = []
    for sid, (cell, steps, batch, inputs, hidden, goal) in shapes(args).items():
        sizes = (cell, steps, batch, inputs, hidden)
        ours = tinyseq_steps(*sizes)
        row = {"id": sid, "cell": cell, "T": steps, "B": batch, "I": inputs, "H": hidden, "goal": goal,
               "launches_per_train_step": sum(launches_per_step(ours[0]).values()),
               "cuda_ms": timed(ours, args)}
        theirs = None if simulated else torch_steps(*sizes)
        if theirs is not None:
            row["cudnn_ms"] = timed(theirs, args)
            row["cuda_over_cudnn"] = {k: row["cuda_ms"][k] / row["cudnn_ms"][k] for k in ("train", "fwd")}
        rows.append(row)
        print(_line(row), flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"where": where, "tiny": args.tiny, "repeats": args.repeats, "rows": rows}, indent=1)
                   + "\n")
    print(f"({where}{', tiny shapes: the times mean nothing' if args.tiny else ''}) wrote {out}")
    return rows


def _line(row):
    """One table line: sizes, launches, tinyseq cuda and cuDNN medians (ms), their ratio and the goal."""
    ratio = row.get("cuda_over_cudnn")
    cudnn = row.get("cudnn_ms")
    goal = f"<= {row['goal']}" if row["goal"] else ""
    verdict = ("PASS" if ratio["train"] <= row["goal"] else "MISS") if ratio and row["goal"] else ""
    ours = row["cuda_ms"]
    return (f"{row['id']:<12}{row['cell']:<5}{row['T']:>5}{row['B']:>5}{row['I']:>6}{row['H']:>6} | launches "
            f"{row['launches_per_train_step']:>6} | cuda tr {ours['train']:9.2f} fwd {ours['fwd']:9.2f}"
            + (f" | cudnn tr {cudnn['train']:8.2f} fwd {cudnn['fwd']:8.2f} | cuda/cudnn tr {ratio['train']:5.2f} "
               f"fwd {ratio['fwd']:5.2f} {goal} {verdict}"
               if cudnn else " | cudnn -"))


if __name__ == "__main__":
    main()
