"""What a change to the engine costs a whole training step: two tinyseq trees, back to back.

The step is train_speed.py's (the "small" char-LM: Embedding(96, 64) -> LSTM(64, 64) ->
Linear(64, 96), B=32, T=64; zero_grad, forward, cross_entropy, backward, clip_grad_norm_, Adam),
on the graph and the numba backend. Each measurement is a child process that imports tinyseq
from one tree (``PYTHONPATH``), runs ``--warmup`` untimed steps and ``--steps`` timed ones and
prints the median; the trees alternate within each of ``--rounds`` rounds, so both see the same
background load. Printed: the median over rounds for each tree and backend, and their ratio.

    python benchmarks/grad_cost.py --base /tmp/tinyseq_before [--rounds 3] [--steps 10]

(``--base``: a checkout of the tree before the change, e.g. ``git archive HEAD~1 | tar -x -C DIR``.)
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
BACKENDS = ("graph", "numba")


def worker(backend, steps, warmup):
    """Child: the median wall time (ms) of one training step on ``backend``."""
    sys.path.insert(0, str(HERE))
    import tinyseq as ts
    import tinyseq.nn.functional as F
    from train_speed import N_BATCHES, VOCAB, build_model, detach, make_batches

    ts.manual_seed(0)
    model = build_model(ts.nn, "small", backend=backend)
    params = list(model.parameters())
    opt = ts.optim.Adam(params, lr=1e-3)
    batches, state, times = make_batches(), None, []
    for i in range(warmup + steps):
        x, y = batches[i % N_BATCHES]
        start = time.perf_counter()
        state = detach(state)
        opt.zero_grad()
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y)
        loss.backward()
        ts.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[warmup:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the tree before the change (holds tinyseq/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup)))
        return
    trees = {"before": pathlib.Path(args.base).resolve(), "after": HERE.parent}
    results = {(tree, b): [] for tree in trees for b in BACKENDS}
    for _ in range(args.rounds):
        for backend in BACKENDS:
            for tree, root in trees.items():
                env = {**os.environ, "PYTHONPATH": str(root)}
                out = subprocess.run([sys.executable, __file__, "--base", args.base, "--worker", backend,
                                      "--steps", str(args.steps), "--warmup", str(args.warmup)],
                                     env=env, cwd=root, check=True, capture_output=True, text=True).stdout
                results[tree, backend].append(json.loads(out.splitlines()[-1]))
    print(f"{'backend':8} {'before ms':>10} {'after ms':>10} {'after/before':>13}   (medians of {args.rounds} rounds)")
    for backend in BACKENDS:
        before, after = (statistics.median(results[tree, backend]) for tree in trees)
        print(f"{backend:8} {before:10.2f} {after:10.2f} {after / before:13.3f}   "
              f"rounds: {results['before', backend]} / {results['after', backend]}")


if __name__ == "__main__":
    main()
