"""The kernels' matrix products on each BLAS provider (issue 25), against torch.mm.

What the fused CPU kernels multiply, float32, in GFLOP/s (2 M N K flops a product):

* ``step B=b``: the per-step recurrent product of the main model's LSTM layer,
  (b, 256) @ W_hh^T (256, 1024), as the forward kernel makes it: ``plan_product`` once, then
  ``product_into`` ``reps`` times in a compiled loop; ``back B=b``: the backward's
  (b, 1024) @ W_hh (1024, 256).
* ``hoisted``: the input projection of all T * B = 2048 rows before the loop,
  (2048, 256) @ (256, 1024); ``weight grad``: the weight gradient after it,
  d^T (1024, 2048) @ x (2048, 256); ``2048^3``: a large square product (the machine's peak
  is measured on it).

One child process per provider and thread count (this script with ``--worker``): each sets
``TINYSEQ_BLAS`` and limits the threads with threadpoolctl, so it runs the one library a user's
process runs; ``tinyseq_jit.status()`` is recorded. torch's children time ``torch.mm(a, b,
out=c)`` from a Python loop (the per-call overhead, about 2 us, is in its step times).
``--rounds`` rounds, the children's order alternating; each number is the median over the
rounds of the best of ``--repeats`` timings of about ``--seconds`` each.

Goals (issue 25): step B=32 >= 200 GFLOP/s with the fastest provider at the default threads;
the hoisted GEMMs >= 85% of the machine's fp32 peak (``--peak`` GFLOP/s, else not judged; the
2048^3 product's best rate over all providers is printed as the measured peak).

    python benchmarks/gemm.py [--threads 1,2] [--providers openblas,mkl,torch] [--peak 333] [--rounds 3]
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
from rnn_speed import THREAD_VARS  # noqa: E402  (the standard library only)
from train_speed import print_rows, verdict, write_json  # noqa: E402

K, N, ROWS = 256, 1024, 2048
BATCHES = (1, 4, 32, 64)
STEP_GOAL, PEAK_SHARE = 200.0, 0.85


def shapes():
    """name -> (M, K, N, how): the products timed."""
    out = {}
    for b in BATCHES:
        out[f"step B={b}"] = (b, K, N, "step")
    out["back B=32"] = (32, N, K, "back")
    out["hoisted"] = (ROWS, K, N, "dot")
    out["weight grad"] = (N, ROWS, K, "dot_t")
    out["2048^3"] = (2048, 2048, 2048, "dot")
    return out


def worker(provider, threads, seconds, repeats):
    """Time every shape on one provider; print one JSON line."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    rng = np.random.default_rng(0)
    info = {}
    if provider == "torch":
        import torch

        torch.set_num_threads(threads)
        info["torch"] = torch.__version__

        def runner(m, k, n, how):
            a = torch.from_numpy(rng.standard_normal((k, m) if how == "dot_t" else (m, k), dtype=np.float32))
            a = a.T if how == "dot_t" else a
            b = torch.from_numpy(rng.standard_normal((n, k) if how == "step" else (k, n), dtype=np.float32))
            b = b.T if how == "step" else b  # W_hh^T as torch's LSTM passes it
            c = torch.empty((m, n))

            def run(reps):
                for _ in range(reps):
                    torch.mm(a, b, out=c)
            return run
    else:
        os.environ["TINYSEQ_BLAS"] = provider
        import tinyseq_jit
        from tinyseq_jit.cpu import _gemm

        info = tinyseq_jit.status()  # loads the provider: a limit set before would not reach it
        limits = threadpool_limits(threads, user_api="blas")  # noqa: F841  (kept for the whole run)
        info["pools"] = [(i["internal_api"], i["num_threads"], os.path.basename(i["filepath"])) for i in threadpool_info()]

        def runner(m, k, n, how):
            if how in ("step", "back"):
                weight = rng.standard_normal((N, K), dtype=np.float32)  # W_hh as a layer keeps it
                w = weight.T if how == "step" else weight
                a = rng.standard_normal((m, k), dtype=np.float32)
                plan = _gemm.plan_product(w, m)
                scratch, out = _gemm.product_scratch(m, plan), np.empty((m, n), np.float32)
                return lambda reps: _gemm._repeat_product(a, plan, scratch, out, reps)
            a = rng.standard_normal((k, m) if how == "dot_t" else (m, k), dtype=np.float32)
            a = a.T if how == "dot_t" else a
            b = rng.standard_normal((k, n), dtype=np.float32)

            def run(reps):
                for _ in range(reps):
                    _gemm.dot(a, b)
            return run

    result = {}
    for name, (m, k, n, how) in shapes().items():
        run = runner(m, k, n, how)
        run(2)
        start = time.perf_counter()
        run(1)
        reps = max(1, int(seconds / max(time.perf_counter() - start, 1e-7)))
        best = min(_timed(run, reps) for _ in range(repeats))
        result[name] = {"us": best * 1e6, "gflops": 2 * m * k * n / best / 1e9}
    print(json.dumps({"info": info, "result": result}))


def _timed(run, reps):
    start = time.perf_counter()
    run(reps)
    return (time.perf_counter() - start) / reps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=_counts, default="1,2", help="thread counts, comma-separated (default 1,2)")
    parser.add_argument("--providers", type=_providers, default="openblas,mkl,torch",
                        help="openblas, mkl (skipped if not installed), torch (skipped if not installed)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.05, help="length of one timing (default 0.05)")
    parser.add_argument("--peak", type=float, default=None, help="the machine's fp32 peak, GFLOP/s")
    parser.add_argument("--out", default=str(HERE / "out" / "gemm.json"))
    parser.add_argument("--quick", action="store_true", help="1 round, 1 repeat, short timings")
    parser.add_argument("--worker", nargs=2, metavar=("PROVIDER", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.repeats, args.seconds = 1, 1, 0.005
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.seconds, args.repeats)
        return 0
    threads = args.threads
    providers = [p for p in args.providers if _installed(p)]
    skipped = sorted(set(args.providers) - set(providers))
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS + ("TINYSEQ_BLAS",)}
    children = [(p, t) for t in threads for p in providers]
    samples, infos = {}, {}
    for r in range(args.rounds):
        for provider, t in (children if r % 2 == 0 else children[::-1]):
            command = [sys.executable, __file__, "--worker", provider, str(t), "--seconds", str(args.seconds),
                       "--repeats", str(args.repeats)]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"gemm.py: the {provider} child with {t} threads failed:\n{done.stderr[-2000:]}")
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            infos[f"{provider} {t}"] = answer["info"]
            for name, row in answer["result"].items():
                samples.setdefault((provider, t), {}).setdefault(name, []).append(row["gflops"])
    table = {f"{p} {t}": {name: median(v) for name, v in rows.items()} for (p, t), rows in samples.items()}
    names = list(shapes())
    print(f"\nGFLOP/s, float32, median of {args.rounds} rounds (best of {args.repeats} timings each)")
    print_rows(["provider threads"] + names, [[key] + [f"{row[n]:.0f}" for n in names] for key, row in table.items()])
    measured_peak = {t: max(table[f"{p} {t}"]["2048^3"] for p in providers) for t in threads}
    print("measured peak (the best 2048^3 rate): " + ", ".join(f"{v:.0f} GFLOP/s at {t} threads" for t, v in measured_peak.items()))
    goals = {}
    for t in threads:
        rows = {p: table[f"{p} {t}"] for p in providers if p != "torch"}
        if not rows:
            continue
        best = max(rows, key=lambda p: rows[p]["step B=32"])
        goals[f"step B=32, {t} threads"] = {"provider": best, "gflops": rows[best]["step B=32"], "goal": STEP_GOAL,
                                            "ok": rows[best]["step B=32"] >= STEP_GOAL}
        if args.peak:
            for name in ("hoisted", "weight grad", "2048^3"):
                share = rows[best][name] / (args.peak * t / max(threads))
                goals[f"{name}, {t} threads"] = {"provider": best, "share_of_peak": share, "goal": PEAK_SHARE,
                                                 "ok": share >= PEAK_SHARE}
    print("\ngoals (the fastest provider on step B=32 at each thread count; peak scaled by threads)")
    print_rows(["goal", "provider", "value", "bar", "ok"],
               [[g, v["provider"], f"{v.get('gflops', v.get('share_of_peak')):.2f}", str(v["goal"]), verdict(v["ok"])]
                for g, v in goals.items()])
    from tinyseq_jit.cpu._gemm import cpu_model

    meta = {"machine": platform.processor() or platform.machine(), "cpu": cpu_model(), "argv": sys.argv[1:],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "peak": args.peak}
    write_json(args.out, meta, {"gflops": table, "goals": goals, "measured_peak": measured_peak, "status": infos})
    return 0


def _counts(text):
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return counts


def _providers(text):
    names = text.split(",")
    unknown = sorted(set(names) - {"openblas", "mkl", "torch"})
    if unknown:
        raise argparse.ArgumentTypeError(f"expected openblas, mkl or torch, got {', '.join(unknown)}")
    return names


def _installed(provider):
    if provider == "torch":
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    if provider == "openblas":
        return True
    from tinyseq_jit.cpu import _gemm

    return provider in _gemm.available()


if __name__ == "__main__":
    sys.exit(main())
