"""Recurrent-layer speed: tinyseq graph vs numba backends vs PyTorch CPU, plus first-call time and memory.

For each shape (cell, T, B, I, H) times one training step (``layer.zero_grad()``; forward
over T steps; ``out.sum().backward()``) and one forward alone (under ``no_grad``) of
``tinyseq.nn.LSTM/GRU/RNN`` with ``backend="graph"`` and ``backend="numba"``, and of
``torch.nn.LSTM/GRU/RNN`` (if torch is installed), float32, at the same thread count
(OpenBLAS / OpenMP / MKL / Numba env vars and ``torch.set_num_threads``). Each backend runs
in its own child process (one library's spinning worker threads would steal the cores from
another's); rounds alternate between backends so all see the same background load, and the
median is over all rounds' samples, after warm-up steps in each child (warm-up also absorbs
numba's compile or cache load). The graph backend is slow on big shapes: with
``--skip-graph-large`` (default) it is timed only where the LSTM-equivalent train FLOPs
are <= 10 GFLOP (S3-S7), with ``--graph-repeats`` steps per round.

Train FLOPs (multiply-adds x 2 of the GEMMs): LSTM 24*B*H*(I+H)*T, GRU 3/4, RNN 1/4 of that.

Also measured, each in child processes:
  * first call: seconds from just before ``import tinyseq`` to the end of the first numba
    LSTM forward+backward (T=10, B=4, I=H=32), with NUMBA_CACHE_DIR set to a fresh
    temporary directory: the first child compiles (cold), a second child with the same
    directory loads the cache (warm). The parent's wall time per child is recorded too.
  * memory of one training step, LSTM T=1000, B=16, I=H=128, per backend, after a warm-up
    step at T=2: ``ru_maxrss`` delta over a first T=1000 step, then the ``tracemalloc`` peak
    over a second one (NumPy allocations are traced; arrays made inside njit code are not,
    but the kernels allocate their per-step buffers with NumPy outside njit). Linux keeps
    ru_maxrss across fork + exec, so the parent never imports numpy/torch: a large parent
    would raise the child's baseline and hide the step's growth.

    python benchmarks/rnn_speed.py [--threads 2] [--rounds 2] [--repeats 5] [--only S1,S5]
    python benchmarks/rnn_speed.py --device cuda [...]    # the GPU benchmark: cuda_speed.py
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

# id: (cell, T, B, I, H, goal for numba/torch time ratio)
SHAPES = {
    "S1": ("LSTM", 100, 64, 512, 512, 1.25),
    "S2": ("GRU", 100, 64, 512, 512, 1.0),
    "S3": ("LSTM", 25, 16, 512, 512, 1.25),
    "S4": ("LSTM", 150, 16, 256, 256, 1.0),
    "S5": ("LSTM", 150, 4, 256, 256, 1.0),
    "S6": ("GRU", 150, 4, 256, 256, 0.33),
    "S7": ("RNN", 200, 1, 32, 64, 0.1),
}
SPEEDUP_GOAL = {"S5": 10.0, "S6": 10.0, "S7": 10.0}  # graph/numba train-step time
GRAPH_MAX_GFLOP = 10.0  # --skip-graph-large: no graph timing above this many train GFLOP
FIRST_CALL_SHAPE = (10, 4, 32, 32)  # T, B, I, H
MEMORY_SHAPE = (1000, 16, 128, 128)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def train_gflop(cell, steps, batch, inputs, hidden):
    """GEMM FLOPs of one training step (forward + backward), in GFLOP."""
    return {"LSTM": 1.0, "GRU": 0.75, "RNN": 0.25}[cell] * 24 * batch * hidden * (inputs + hidden) * steps / 1e9


def make_steps(backend, cell, steps, batch, inputs, hidden):
    """Build a layer and input; return (train_step, forward_step) closures."""
    if backend == "torch":
        import torch

        layer = getattr(torch.nn, cell)(inputs, hidden)
        x = torch.randn(steps, batch, inputs)

        def train():
            layer.zero_grad()
            out, _ = layer(x)
            out.sum().backward()

        def forward():
            with torch.no_grad():
                layer(x)

        return train, forward
    import numpy as np

    import tinyseq

    layer = getattr(tinyseq.nn, cell)(inputs, hidden, backend=backend)
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs)).astype(np.float32)

    def train():
        layer.zero_grad()
        out, _ = layer(x)
        out.sum().backward()

    def forward():
        with tinyseq.no_grad():
            layer(x)

    return train, forward


def time_calls(fn, repeats, warmup):
    """Call ``fn`` ``warmup`` times untimed, then return the wall times (s) of ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def speed_worker(backend, shape_id, repeats, warmup, threads):
    """Child process: print {"train": [s...], "fwd": [s...]} for one backend and shape as JSON."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    train, forward = make_steps(backend, *SHAPES[shape_id][:5])
    print(json.dumps({"train": time_calls(train, repeats, warmup), "fwd": time_calls(forward, repeats, warmup)}))


def first_call_worker():
    """Child process: print seconds from ``import tinyseq`` to the end of the first numba LSTM step."""
    start = time.perf_counter()
    train, _ = make_steps("numba", "LSTM", *FIRST_CALL_SHAPE)
    train()
    print(json.dumps({"seconds": time.perf_counter() - start}))


def memory_worker(backend):
    """Child process: print the ru_maxrss delta and tracemalloc peak (MiB) of one LSTM train step."""
    import gc
    import resource
    import tracemalloc

    steps, batch, inputs, hidden = MEMORY_SHAPE
    make_steps(backend, "LSTM", 2, batch, inputs, hidden)[0]()  # compile / load kernels, warm code paths
    train, _ = make_steps(backend, "LSTM", steps, batch, inputs, hidden)
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    train()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    train()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"tracemalloc_peak_mib": peak / 2**20, "maxrss_delta_mib": (rss1 - rss0) / 1024}))


def run_child(args, *worker_args, env_extra=None):
    """Run this script as a child worker with the thread env vars set; return (parsed JSON, wall s)."""
    env = dict(os.environ, **{var: str(args.threads) for var in THREAD_VARS}, **(env_extra or {}))
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--worker", *worker_args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"child {worker_args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def has_torch():
    """True if torch is installed (found, not imported: the parent stays small, see module doc)."""
    return importlib.util.find_spec("torch") is not None


def measure_shape(sid, backends, args):
    """Alternating rounds of one child per backend; return the row dict of medians (ms) and ratios."""
    cell, steps, batch, inputs, hidden, goal = SHAPES[sid]
    gflop = train_gflop(cell, steps, batch, inputs, hidden)
    timed = [b for b in backends if b != "graph" or not args.skip_graph_large or gflop <= GRAPH_MAX_GFLOP]
    samples = {b: {"train": [], "fwd": []} for b in timed}
    for _ in range(args.rounds):
        for b in timed:
            reps = args.graph_repeats if b == "graph" else args.repeats
            out, _ = run_child(args, "speed", "--backend", b, "--shape", sid, "--repeats", str(reps),
                               "--warmup", str(args.warmup))
            for kind in ("train", "fwd"):
                samples[b][kind] += out[kind]
    med = {b: {k: 1e3 * sorted(v)[len(v) // 2] for k, v in s.items()} for b, s in samples.items()}
    row = {"id": sid, "cell": cell, "T": steps, "B": batch, "I": inputs, "H": hidden, "train_gflop": gflop,
           "ms": med, "n_samples": {b: len(s["train"]) for b, s in samples.items()},
           "goal_numba_over_torch": goal, "goal_graph_over_numba": SPEEDUP_GOAL.get(sid)}
    numba = med.get("numba")
    row["numba_train_gflops"] = gflop / (numba["train"] / 1e3) if numba else None
    if numba and "torch" in med:
        row["numba_over_torch"] = {k: numba[k] / med["torch"][k] for k in ("train", "fwd")}
        row["pass_numba_over_torch"] = {k: v <= goal for k, v in row["numba_over_torch"].items()}
    if numba and "graph" in med:
        row["graph_over_numba"] = {k: med["graph"][k] / numba[k] for k in ("train", "fwd")}
        if sid in SPEEDUP_GOAL:
            row["pass_graph_over_numba"] = row["graph_over_numba"]["train"] >= SPEEDUP_GOAL[sid]
    return row


def fmt(value, spec, width):
    """Format a number, or '-' for None, right-aligned in ``width``."""
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def print_table(rows, backends, args):
    """Print the per-shape table of medians, GFLOP/s, ratios and goal verdicts."""
    verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    print(f"train step (fwd+bwd) and fwd-only medians, ms; float32, {args.threads} threads; "
          f"{args.rounds} alternating rounds x {args.repeats} calls ({args.graph_repeats} for graph), one process each")
    print("tr = train step, GF/s = numba train GFLOP/s, n/t = numba/torch time, g/n = graph/numba time (speedup)")
    head = (f"{'id':<3}{'cell':<5}{'T':>4}{'B':>4}{'I':>5}{'H':>5} |"
            + "".join(f"{b + ' tr':>12}{b + ' fwd':>11}" for b in backends)
            + f" |{'GF/s':>6} | {'n/t tr':>6} {'n/t fwd':>7} {'goal':>6} {'tr':>4} {'fwd':>4} |"
            + f" {'g/n tr':>6} {'goal':>5} ok")
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['id']:<3}{r['cell']:<5}{r['T']:>4}{r['B']:>4}{r['I']:>5}{r['H']:>5} |"
        for b in backends:
            m = r["ms"].get(b)
            line += f"{m['train']:12.1f}{m['fwd']:11.1f}" if m else f"{'skipped':>12}{'skipped':>11}"
        line += f" |{fmt(r['numba_train_gflops'], '.1f', 6)} | "
        ratio, ok = r.get("numba_over_torch"), r.get("pass_numba_over_torch")
        if ratio:
            line += (f"{ratio['train']:6.2f} {ratio['fwd']:7.2f} {'<=' + str(r['goal_numba_over_torch']):>6} "
                     f"{verdict(ok['train'])} {verdict(ok['fwd'])} | ")
        else:
            line += f"{'-':>6} {'-':>7} {'<=' + str(r['goal_numba_over_torch']):>6} {'-':>4} {'-':>4} | "
        speed = r.get("graph_over_numba")
        line += fmt(speed["train"] if speed else None, ".1f", 6)
        if r["goal_graph_over_numba"]:
            line += f" {'>=' + format(r['goal_graph_over_numba'], 'g'):>5} "
            line += verdict(r.get("pass_graph_over_numba")) if speed else "-"
        print(line)


def main(argv=None):
    """Parse options; run as a child worker, or run every measurement and write the JSON.
    ``--device cuda`` runs ``cuda_speed.py`` instead, with the other options passed on."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--device" in argv:
        at = argv.index("--device")
        device = argv[at + 1] if at + 1 < len(argv) else None
        if device not in ("cpu", "cuda"):
            raise SystemExit(f"rnn_speed: --device must be cpu or cuda, got {device!r}")
        del argv[at:at + 2]
        if device == "cuda":
            sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
            import cuda_speed

            return cuda_speed.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / numba / torch threads (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per backend")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round (each of train, fwd)")
    parser.add_argument("--graph-repeats", type=int, default=3, help="timed calls per round for graph")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first, per child and kind")
    parser.add_argument("--only", help="comma-separated shape ids, e.g. S1,S5 (default all)")
    parser.add_argument("--skip-graph-large", action=argparse.BooleanOptionalAction, default=True,
                        help=f"time graph only where train GFLOP <= {GRAPH_MAX_GFLOP:g} (default on)")
    parser.add_argument("--no-extras", action="store_true", help="skip the first-call and memory measurements")
    parser.add_argument("--out", default="benchmarks/out/rnn_speed.json")
    parser.add_argument("--worker", choices=["speed", "firstcall", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "speed":
        return speed_worker(args.backend, args.shape, args.repeats, args.warmup, args.threads)
    if args.worker == "firstcall":
        return first_call_worker()
    if args.worker == "memory":
        return memory_worker(args.backend)

    began = time.perf_counter()
    ids = args.only.split(",") if args.only else list(SHAPES)
    unknown = [s for s in ids if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shape ids {unknown}; choose from {list(SHAPES)}")
    backends = ["graph", "numba"] + (["torch"] if has_torch() else [])
    rows = [measure_shape(sid, backends, args) for sid in ids]
    print_table(rows, backends, args)

    extras = {}
    if not args.no_extras:
        with tempfile.TemporaryDirectory(prefix="rnn_speed_numba_cache_") as cache:
            runs = [run_child(args, "firstcall", env_extra={"NUMBA_CACHE_DIR": cache}) for _ in range(2)]
        first = {name: {"import_to_step_end_s": out["seconds"], "process_wall_s": wall}
                 for name, (out, wall) in zip(("cold_cache", "warm_cache"), runs)}
        first.update(shape_T_B_I_H=FIRST_CALL_SHAPE, goal_warm_s=2.0,
                     pass_warm=first["warm_cache"]["import_to_step_end_s"] <= 2.0)
        memory = {b: run_child(args, "memory", "--backend", b)[0] for b in ("graph", "numba")}
        memory["shape"] = dict(cell="LSTM", T=MEMORY_SHAPE[0], B=MEMORY_SHAPE[1], I=MEMORY_SHAPE[2],
                               H=MEMORY_SHAPE[3])
        extras = {"first_call": first, "memory": memory}
        print(f"\nfirst numba LSTM fwd+bwd (T,B,I,H={FIRST_CALL_SHAPE}), s from `import tinyseq` "
              f"[child process wall]: cold cache {first['cold_cache']['import_to_step_end_s']:.2f} "
              f"[{first['cold_cache']['process_wall_s']:.2f}], warm cache "
              f"{first['warm_cache']['import_to_step_end_s']:.2f} [{first['warm_cache']['process_wall_s']:.2f}]"
              f" (goal warm <= 2 s: {'PASS' if first['pass_warm'] else 'MISS'})")
        print(f"one LSTM train step, T,B,I,H={MEMORY_SHAPE}, MiB:   tracemalloc peak   ru_maxrss delta")
        for b in ("graph", "numba"):
            print(f"  {b:<6}{memory[b]['tracemalloc_peak_mib']:37.1f}{memory[b]['maxrss_delta_mib']:18.1f}")

    total = time.perf_counter() - began
    print(f"total {total:.0f} s")

    meta = {"python": sys.version.split()[0], **{m: importlib.metadata.version(m) for m in ("numpy", "numba")},
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
            "graph_repeats": args.graph_repeats, "warmup": args.warmup, "skip_graph_large": args.skip_graph_large,
            "dtype": "float32", "total_s": total, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "torch" in backends:
        meta["torch"] = importlib.metadata.version("torch")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, **extras}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
