"""What a change to the engine costs a whole training step: two tinyseq trees in one process.

The step is train_speed.py's (by default the "small" char-LM: Embedding(96, 64) -> LSTM(64, 64) ->
Linear(64, 96), B=32, T=64; zero_grad, forward, cross_entropy, backward, clip_grad_norm_, Adam),
on the graph and the numba backend. The tree before the change is imported as the package
``tinyseq_before`` next to this tree's ``tinyseq`` (both use this tree's ``tinyseq_jit``); the
two models start from the same weights and take steps alternately, one each, so both see the
same background load. Each step is timed twice: wall time, and the process's CPU time (all
threads), which a busy shared machine disturbs less. Printed per backend and clock: the median
step time of each of ``--rounds`` rounds for each tree, the median over rounds, and the ratio
after / before.

    python benchmarks/grad_cost.py --base /tmp/tinyseq_before [--rounds 3] [--steps 10] [--model small|lstm|gru]

(``--base``: a checkout of the tree before the change, e.g. ``git archive HEAD~1 | tar -x -C DIR``.)
"""

import argparse
import importlib.util
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from train_speed import MODELS, N_BATCHES, build_model, detach, make_batches  # noqa: E402

BACKENDS = ("graph", "numba")
CLOCKS = ("wall", "cpu")


def load_tree(root, name):
    """The package ``root/tinyseq`` imported under ``name``."""
    init = pathlib.Path(root).resolve() / "tinyseq" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


class Trainer:
    """One tree's model and Adam optimizer; ``step()`` trains one truncated-BPTT step, timed."""

    def __init__(self, ts, backend, model="small", weights=None):
        import tinyseq.nn.functional  # noqa: F401  (this tree's; the other tree's F is looked up below)

        ts.manual_seed(0)
        self.ts, self.F = ts, sys.modules[ts.__name__ + ".nn.functional"]
        self.config = MODELS[model]
        self.model = build_model(ts.nn, self.config, backend=backend)
        if weights is not None:
            self.model.load_state_dict(weights)
        self.params = list(self.model.parameters())
        self.opt = ts.optim.Adam(self.params, lr=1e-3)
        self.batches, self.state, self.count = make_batches(self.config), None, 0

    def step(self):
        x, y = self.batches[self.count % N_BATCHES]
        self.count += 1
        start, cpu = time.perf_counter(), time.process_time()
        self.state = detach(self.state)
        self.opt.zero_grad()
        logits, self.state = self.model(x, self.state)
        loss = self.F.cross_entropy(logits.reshape(-1, self.config.vocab), y)
        loss.backward()
        self.ts.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        loss.item()
        return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the tree before the change (holds tinyseq/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per tree and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model", default="small", choices=[m for m, c in MODELS.items() if c.update == "adam"],
                        help="train_speed.py's model (default small)")
    args = parser.parse_args()
    import tinyseq

    trees = {"before": load_tree(args.base, "tinyseq_before"), "after": tinyseq}
    print(f"{'backend':14} {'before ms':>10} {'after ms':>10} {'after/before':>13}   round medians (ms) before / after")
    for backend in BACKENDS:
        before = Trainer(trees["before"], backend, args.model)
        after = Trainer(tinyseq, backend, args.model, weights=before.model.state_dict())
        for _ in range(args.warmup):
            before.step(), after.step()
        rounds = {(tree, clock): [] for tree in trees for clock in CLOCKS}
        for _ in range(args.rounds):
            times = {key: [] for key in rounds}
            for _ in range(args.steps):
                for tree, trainer in (("before", before), ("after", after)):
                    for clock, seconds in trainer.step().items():
                        times[tree, clock].append(seconds)
            for key in rounds:
                rounds[key].append(1e3 * statistics.median(times[key]))
        for clock in CLOCKS:
            b, a = (statistics.median(rounds[tree, clock]) for tree in trees)
            shown = " / ".join("[" + ", ".join(f"{x:.1f}" for x in rounds[tree, clock]) + "]" for tree in trees)
            print(f"{backend + ' ' + clock:14} {b:10.2f} {a:10.2f} {a / b:13.3f}   {shown}")


if __name__ == "__main__":
    main()
