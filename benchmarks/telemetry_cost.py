"""What the backward kernels' gradient-norm telemetry costs: off (the default) and on.

For each shape, one process times a backward kernel called without ``grad_norms`` (off) and
with it (recording ||dL/dh_t||, and ||dL/dc_t|| for an LSTM), the calls interleaved so that
both see the same background load; median and minimum over the calls, float32.
``--baseline DIR`` also loads another copy of ``tinyseq_jit`` (say a git worktree of an
earlier commit: ``git worktree add /tmp/before <commit>``) under another name, and times its
backward in the same interleaving: off against that baseline is what the telemetry costs
when nobody asks for it.

    python benchmarks/telemetry_cost.py [--baseline /tmp/before] [--calls 40]

NOTE: with a baseline, set NUMBA_CACHE_DIR to a fresh directory: two copies of the kernels
loaded from numba's cache in one process failed here ("NRT_adapt_ndarray_to_python").
"""

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import numpy as np

# id: (kernel, T, B, I, H)
SHAPES = {
    "S4": ("lstm", 150, 16, 256, 256),
    "S5": ("lstm", 150, 4, 256, 256),
    "S6": ("gru", 150, 4, 256, 256),
    "S7": ("rnn", 200, 1, 32, 64),
    "S7-lstm": ("lstm", 200, 1, 32, 64),
    "S7-gru": ("gru", 200, 1, 32, 64),
}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def load_baseline(tree):
    """``tinyseq_jit`` from another source tree, imported as ``tinyseq_jit_baseline``."""
    package = pathlib.Path(tree) / "tinyseq_jit"
    spec = importlib.util.spec_from_file_location("tinyseq_jit_baseline", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def calls(jits, kernel, steps, batch, inputs, hidden):
    """{label: a no-argument call of that backward} over one forward's saved values."""
    rng = np.random.default_rng(0)
    g = GATES[kernel]
    weights = {"w_ih": 0.05 * rng.standard_normal((g * hidden, inputs)),
               "w_hh": 0.05 * rng.standard_normal((g * hidden, hidden)),
               "b_ih": np.zeros(g * hidden), "b_hh": np.zeros(g * hidden)}
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    states = (np.zeros((batch, hidden), np.float32),) * (2 if kernel == "lstm" else 1)
    d_out = np.ones((steps, batch, hidden), np.float32)
    d_states = [np.zeros((batch, hidden), np.float32)] * len(states)
    found = {}
    for label, jit, record in jits:
        saved = getattr(jit.cpu, f"{kernel}_forward")(x, *states, weights).saved
        backward = getattr(jit.cpu, f"{kernel}_backward")
        extra = {"grad_norms": np.empty((len(states), steps, batch), np.float32)} if record else {}
        found[label] = lambda run=backward, saved=saved, extra=extra: run(saved, d_out, *d_states, **extra)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a source tree whose tinyseq_jit to time beside this one")
    parser.add_argument("--calls", type=int, default=40, help="timed calls per label (x10 for the small shapes)")
    parser.add_argument("--only", help="comma-separated shape ids (default all)")
    parser.add_argument("--out", default="benchmarks/out/telemetry_cost.json")
    args = parser.parse_args(argv)
    import tinyseq_jit

    jits = [("off", tinyseq_jit, False), ("on", tinyseq_jit, True)]
    if args.baseline:
        jits.insert(0, ("baseline", load_baseline(args.baseline), False))
    shapes = {k: v for k, v in SHAPES.items() if not args.only or k in args.only.split(",")}
    results = {}
    for name, shape in shapes.items():
        found = calls(jits, *shape)
        for call in found.values():  # compile or load, then warm
            call()
            call()
        times = {label: [] for label in found}
        small = shape[1] * shape[2] * shape[4] <= 200 * 64
        for _ in range(args.calls * (10 if small else 1)):
            for label, call in found.items():
                start = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - start)
        results[name] = {"shape": shape}
        for label, t in times.items():
            results[name][label] = {"median_ms": 1e3 * float(np.median(t)), "min_ms": 1e3 * float(np.min(t))}
    labels = [label for label, _, _ in jits]
    print("backward kernel alone, float32; median / min ms over interleaved calls")
    header = f"{'id':8s} {'kernel':6s} {'T':>4s} {'B':>3s} {'H':>4s} | "
    header += " | ".join(f"{label:>15s}" for label in labels)
    header += " | on/off" + (" | off/baseline" if args.baseline else "")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        kernel, steps, batch, _, hidden = r["shape"]
        cells = " | ".join(f"{r[label]['median_ms']:7.3f}/{r[label]['min_ms']:7.3f}" for label in labels)
        ratio = r["on"]["median_ms"] / r["off"]["median_ms"]
        line = f"{name:8s} {kernel:6s} {steps:4d} {batch:3d} {hidden:4d} | {cells} | {ratio:6.3f}"
        if args.baseline:
            line += f" | {r['off']['median_ms'] / r['baseline']['median_ms']:13.3f}"
        print(line)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"baseline": args.baseline, "results": results}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
