"""End-to-end training-step speed of language models: tinyseq (numba, graph) vs PyTorch CPU.

Char-LMs: ``Embedding(96, 64) -> recurrent layer(s) (batch_first) -> Linear(H, 96)``, float32:
"lstm" LSTM(64, 256, 2 layers, the main model), "gru" GRU(64, 256, 2 layers), "small"
LSTM(64, 64, 1 layer). One training step, as a char-LM trains with truncated BPTT: detach the
state carried over from the previous step; ``opt.zero_grad()``; forward over B=32 sequences of
T=64 tokens; ``cross_entropy`` of the (B*T, 96) logits; ``loss.backward()``;
``clip_grad_norm_(params, 1.0)``; ``Adam(lr=1e-3).step()``; ``loss.item()``.

"word" (a large vocabulary, no goal: measured for the GEMM work), shaped as PyTorch's
word_language_model example trains: ``Embedding(18000, 200) -> LSTM(200, 200, 2 layers)
(sequence first) -> Linear(200, 18000)`` whose weight IS the embedding's (tied), over
T=35 (bptt) x B=20 tokens, ``cross_entropy`` of the (T*B, 18000) logits, ``model.zero_grad()``,
``clip_grad_norm_(params, 0.25)`` and the example's manual SGD (lr 20, see ``ManualSGD``).
Dropout 0 (the example's default is 0.2): with it the frameworks' first-step losses could not be
compared, and its three masks over (T, B, 200) are small beside the (700, 18000) logits. The
embedding and decoder bias start as the example's (uniform +-0.1, zeros). The tokens are random
ids: a step's cost does not depend on which words they are.

All frameworks start from the same weights (tinyseq's init after ``ts.manual_seed(0)``, saved
once by a child and loaded by every other) and cycle through the same 16 pre-generated int64
token batches.

Every measurement runs in child processes (this script with ``--worker``). No thread-count
variable is set for them, and the parent's THREAD_VARS are removed from their environment: the
main rows measure what a user gets with no environment tuning. ``torch.set_num_threads(--threads)``
runs in every process that imports torch. A torch-only child never imports tinyseq (whose import
tunes glibc's malloc for the whole process).

  1. separate processes: one child per framework and model, in alternating rounds (round r:
     numba, graph, torch, ...) so all see the same background load; each child builds its
     model, runs ``--warmup`` untimed steps (this absorbs numba's compile or cache load), then
     ``--steps`` timed steps (``--graph-steps`` for graph). Medians over all rounds' samples.
  2. interleaved: one child per model imports tinyseq and torch, builds the numba, graph and
     torch models, and runs each one first step: the three losses (before any update, same
     weights and data) must agree to LOSS_RTOL or the script stops with an error. Then, after
     warm-up, it alternates one numba step and one torch step, --rounds x --steps times,
     timing each.
  3. phase breakdown of one numba (and one graph) step per model, in its own child (the timing
     wrappers add a little overhead): median ms per phase over --steps steps (--graph-steps).
     The recurrent kernels are timed at their graph node, ``CompiledRecurrence.forward/backward`` (one call per
     layer; backward runs the top layer first); "rnn fwd, rest" is the recurrent module's
     forward minus its kernels, "bwd graph ops" the whole ``loss.backward()`` minus the kernel
     backwards, "Python/other" the whole step minus every phase above it.
  4. extra rows (not goals), numba only, in the same rounds as the main rows, each with the
     environment changes of one EXTRA_ENVS entry (None: the variable removed); the OpenBLAS
     thread variables for lstm only. This machine's image sets OPENBLAS_CORETYPE=Haswell (and
     OPENBLAS_L2_SIZE) on some processors, for older OpenBLAS builds; the row without both shows
     what a stock install runs there. The first row pins ``TINYSEQ_BLAS=openblas``: where the
     mkl extra is installed and chosen, it is OpenBLAS beside MKL. Each tinyseq child records
     the BLAS provider that ran (``tinyseq_jit.status()``) and the kernel set SciPy's OpenBLAS
     runs (``tinyseq_jit.cpu._gemm.blas_core``). ``--no-extras`` skips the rows.
  5. with ``--profile``: cProfile of --steps numba and graph steps per model in its own child,
     the PROFILE_TOP functions with the most own time (tottime).

Goals (numba time / torch time): lstm <= 1.0 (stretch 0.8) both separate and interleaved, gru
<= 0.7, small <= 0.5; graph / numba >= 2.0 on lstm.

    python benchmarks/train_speed.py [--threads 2] [--rounds 3] [--steps 10] [--only lstm,word] [--quick] [--profile]

The children import ``tinyseq`` as this script does: the installed one, unless ``PYTHONPATH``
names the tree to measure (``PYTHONPATH=. python benchmarks/train_speed.py`` from its root).
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

N_BATCHES = 16


class Config(NamedTuple):
    """One benchmarked model and how it trains (the defaults: the char-LMs)."""

    cell: str
    hidden: int
    layers: int
    vocab: int = 96
    embed: int = 64
    batch: int = 32
    seq: int = 64
    batch_first: bool = True
    tied: bool = False  # the head's weight is the embedding's (then embed == hidden)
    update: str = "adam"  # "adam": Adam(lr); "sgd": ManualSGD(lr)
    lr: float = 1e-3
    clip: float = 1.0


MODELS = {"lstm": Config("LSTM", 256, 2), "gru": Config("GRU", 256, 2), "small": Config("LSTM", 64, 1),
          "word": Config("LSTM", 200, 2, vocab=18000, embed=200, batch=20, seq=35, batch_first=False, tied=True,
                         update="sgd", lr=20.0, clip=0.25)}
PROFILE_TOP = 10
GOALS = {"lstm": 1.0, "gru": 0.7, "small": 0.5}  # numba / torch step time
STRETCH = {"lstm": 0.8}
GRAPH_GOALS = {"lstm": 2.0}  # graph / numba step time
FRAMEWORKS = ("numba", "graph", "torch")
LOSS_RTOL = 1e-5  # first-step losses, float32 mean over B*T positions
# One extra numba row per entry and model (the models named, else all), with these changes to
# the child's environment: a value is set, None removes the variable.
EXTRA_ENVS = (
    ({"TINYSEQ_BLAS": "openblas"}, None),  # where MKL is installed and chosen: OpenBLAS beside it
    ({"OPENBLAS_NUM_THREADS": "1"}, ("lstm",)),
    ({"OPENBLAS_THREAD_TIMEOUT": "4"}, ("lstm",)),
    ({"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}, None),
)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---------------------------------------------------------------- models and steps (children only)


def make_batches(config):
    """The N_BATCHES (inputs (B, T) or (T, B), targets (B*T,)) int64 pairs every framework trains on."""
    import numpy as np

    rng = np.random.default_rng(1234)
    batches = []
    for _ in range(N_BATCHES):
        tokens = rng.integers(0, config.vocab, (config.batch, config.seq + 1), dtype=np.int64)
        x, y = (tokens[:, :-1], tokens[:, 1:]) if config.batch_first else (tokens.T[:-1], tokens.T[1:])
        batches.append((np.ascontiguousarray(x), np.ascontiguousarray(y).reshape(-1)))
    return batches


def build_model(nn, config, **rnn_options):
    """The language model of ``config`` built from ``nn`` (``tinyseq.nn`` or ``torch.nn``): PyTorch's
    parameter names; a tied head shares the embedding's Parameter (``head.weight = embed.weight``)."""

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(config.vocab, config.embed)
            self.rnn = getattr(nn, config.cell)(config.embed, config.hidden, num_layers=config.layers,
                                                batch_first=config.batch_first, **rnn_options)
            self.head = nn.Linear(config.hidden, config.vocab)
            if config.tied:
                self.head.weight = self.embed.weight
                nn.init.uniform_(self.embed.weight, -0.1, 0.1)
                nn.init.zeros_(self.head.bias)

        def forward(self, x, state):
            out, state = self.rnn(self.embed(x), state)
            return self.head(out), state

    return LanguageModel()


class ManualSGD:
    """The update of PyTorch's word_language_model example, written as that code writes it (no
    optimizer): ``model.zero_grad()`` before the step, then after backward and clipping every
    parameter (a tied one once) moves by ``-lr * p.grad`` in place, with the same line in both
    frameworks: ``p.data.add_(p.grad, alpha=-lr)`` (a tinyseq Parameter's ``.data`` takes it)."""

    def __init__(self, model, lr):
        self.model, self.lr = model, lr
        self.update = lambda p: p.data.add_(p.grad, alpha=-lr)

    def zero_grad(self):
        """``model.zero_grad()``: every ``.grad`` to None (torch's default too)."""
        self.model.zero_grad()

    def step(self):
        """The in-place update of every parameter."""
        for p in self.model.parameters():
            self.update(p)


def detach(state):
    """The recurrent state cut from the graph: None, one tensor, or an LSTM's (h, c)."""
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


class Trainer:
    """One framework's model, optimizer (Adam or ``ManualSGD``), batches and carried state;
    ``step()`` trains one step."""

    def __init__(self, framework, model, weights_path):
        import numpy as np

        self.config = config = MODELS[model]
        weights = dict(np.load(weights_path))
        self.batches = make_batches(config)
        if framework == "torch":
            import torch

            self.model = build_model(torch.nn, config)
            self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
            self.batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in self.batches]
            adam = torch.optim.Adam
            self.cross_entropy, self.clip = torch.nn.functional.cross_entropy, torch.nn.utils.clip_grad_norm_
        else:
            import tinyseq as ts
            import tinyseq.nn.functional as F

            self.model = build_model(ts.nn, config, backend=framework)
            self.model.load_state_dict(weights)
            adam = ts.optim.Adam
            self.cross_entropy, self.clip = F.cross_entropy, ts.nn.utils.clip_grad_norm_
        self.opt = ManualSGD(self.model, config.lr) if config.update == "sgd" \
            else adam(self.model.parameters(), lr=config.lr)
        self.params = list(self.model.parameters())
        self.state, self.count = None, 0

    def step(self):
        """One truncated-BPTT training step on the next batch; returns the loss (before the update)."""
        x, y = self.batches[self.count % N_BATCHES]
        self.count += 1
        self.state = detach(self.state)
        self.opt.zero_grad()
        logits, self.state = self.model(x, self.state)
        loss = self.cross_entropy(logits.reshape(-1, self.config.vocab), y)
        loss.backward()
        self.clip(self.params, self.config.clip)
        self.opt.step()
        return loss.item()


def timed_step(trainer):
    """Wall time (s) of one ``trainer.step()``."""
    start = time.perf_counter()
    trainer.step()
    return time.perf_counter() - start


# ---------------------------------------------------------------- child workers


def weights_worker(args):
    """Child: save the tinyseq model's initial state dict (seed 0) to ``args.weights``."""
    import numpy as np

    import tinyseq as ts

    ts.manual_seed(0)
    np.savez(args.weights, **build_model(ts.nn, MODELS[args.model], backend="graph").state_dict())
    print(json.dumps({"saved": args.weights}))


def speed_worker(args):
    """Child: print {"times": [s...]} of ``args.steps`` steps after ``args.warmup`` untimed ones."""
    if args.framework == "torch":
        import torch

        torch.set_num_threads(args.threads)
    trainer = Trainer(args.framework, args.model, args.weights)
    for _ in range(args.warmup):
        trainer.step()
    times = [timed_step(trainer) for _ in range(args.steps)]
    blas = None
    if args.framework == "numba":
        try:
            from tinyseq_jit.cpu._gemm import blas_core
        except ImportError:  # older tinyseq: in _jit, or unknown
            from tinyseq_jit import _jit
            blas_core = getattr(_jit, "blas_core", lambda: None)
        blas = blas_core()
        try:
            from tinyseq_jit import status
        except ImportError:  # older tinyseq: OpenBLAS only
            pass
        else:
            blas = f"{status()['provider']}, OpenBLAS core {blas}"
    print(json.dumps({"times": times, "blas_core": blas}))


def interleave_worker(args):
    """Child: first-step losses of numba, graph (and torch); then alternating numba / torch step times."""
    torch_ok = has_torch()
    if torch_ok:
        import torch

        torch.set_num_threads(args.threads)
    trainers = {f: Trainer(f, args.model, args.weights) for f in FRAMEWORKS if f != "torch" or torch_ok}
    losses = {f: t.step() for f, t in trainers.items()}
    del trainers["graph"]
    times = {f: [] for f in trainers}
    if torch_ok:
        for i in range(args.warmup + args.steps):
            for f, trainer in trainers.items():
                seconds = timed_step(trainer)
                if i >= args.warmup:
                    times[f].append(seconds)
    last = {f: t.step() for f, t in trainers.items()}  # informational: same data, same updates
    print(json.dumps({"first_loss": losses, "last_loss": last, "last_step": trainers["numba"].count,
                      "times": times}))


class Phases:
    """Seconds per phase of the current step, filled by the timing wrappers of ``install_timers``."""

    def __init__(self):
        self.reset()

    def reset(self):
        """Start a new step."""
        self.seconds, self.fused_calls = {}, 0

    def add(self, label, seconds):
        """Add ``seconds`` to ``label``."""
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds


def install_timers(trainer, phases):
    """Wrap the step's parts (modules' forward, loss, backward, clip, optimizer, fused kernels) with timers."""
    import tinyseq as ts
    try:
        from tinyseq.nn._fused import CompiledRecurrence as FusedRecurrence  # the layers' kernels' node
    except ImportError:  # a tree before the built-in cells ran on generated kernels
        from tinyseq.nn._fused import FusedRecurrence

    def wrap(owner, attr, label):
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases.add(label, time.perf_counter() - start)

        setattr(owner, attr, timed)

    model = trainer.model
    for owner, attr, label in ((model.embed, "forward", "embedding fwd"), (model.rnn, "forward", "rnn fwd"),
                               (model.head, "forward", "head fwd"), (trainer, "cross_entropy", "loss fwd"),
                               (ts.Tensor, "backward", "backward"), (trainer, "clip", "clip"),
                               (trainer.opt, "zero_grad", "optimizer"), (trainer.opt, "step", "optimizer")):
        wrap(owner, attr, label)
    kernel_forward, kernel_backward = FusedRecurrence.forward, FusedRecurrence.backward

    def forward(self, *arrays, **params):
        self.bench_layer = phases.fused_calls  # one call per layer, bottom first
        phases.fused_calls += 1
        start = time.perf_counter()
        out = kernel_forward(self, *arrays, **params)
        phases.add(f"layer {self.bench_layer} fwd", time.perf_counter() - start)
        return out

    def backward(self, grad):
        start = time.perf_counter()
        grads = kernel_backward(self, grad)
        phases.add(f"layer {self.bench_layer} bwd", time.perf_counter() - start)
        return grads

    FusedRecurrence.forward, FusedRecurrence.backward = forward, backward


def breakdown_worker(args):
    """Child: print {"phase": median ms} of ``args.steps`` instrumented steps (see the module doc)."""
    trainer = Trainer(args.framework, args.model, args.weights)
    phases = Phases()
    install_timers(trainer, phases)
    layers = MODELS[args.model].layers if args.framework == "numba" else 0
    fwd = [f"layer {k} fwd" for k in range(layers)]
    bwd = [f"layer {k} bwd" for k in reversed(range(layers))]
    order = (["embedding fwd"] + fwd + ["rnn fwd, rest", "head fwd", "loss fwd"] + bwd
             + ["bwd graph ops", "clip", "optimizer", "Python/other", "step total"])
    samples = {label: [] for label in order}
    for i in range(args.warmup + args.steps):
        phases.reset()
        total = timed_step(trainer)
        if i < args.warmup:
            continue
        s = dict(phases.seconds)
        s["rnn fwd, rest"] = s.pop("rnn fwd") - sum(s[k] for k in fwd)
        s["bwd graph ops"] = s.pop("backward") - sum(s[k] for k in bwd)
        s["Python/other"] = total - sum(s.values())
        s["step total"] = total
        for label in order:
            samples[label].append(s[label])
    print(json.dumps({label: 1e3 * statistics.median(v) for label, v in samples.items()}))


def profile_worker(args):
    """Child: cProfile ``args.steps`` steps after the warm-up; print {"step_ms", "top": the PROFILE_TOP
    functions by own time, per step}."""
    import cProfile
    import pstats

    trainer = Trainer(args.framework, args.model, args.weights)
    for _ in range(args.warmup):
        trainer.step()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(lambda: [trainer.step() for _ in range(args.steps)])
    step_ms = 1e3 * (time.perf_counter() - start) / args.steps
    rows = sorted(pstats.Stats(profiler).stats.items(), key=lambda item: item[1][2], reverse=True)
    top = [{"function": name if file == "~" else f"{pathlib.Path(file).name}:{line}({name})",
            "calls": calls / args.steps, "own_ms": 1e3 * own / args.steps, "cum_ms": 1e3 * cum / args.steps}
           for (file, line, name), (_, calls, own, cum, _) in rows[:PROFILE_TOP]]
    print(json.dumps({"step_ms": step_ms, "top": top}))


# ---------------------------------------------------------------- parent


def has_torch():
    """True if torch is installed (found, not imported: the parent stays small)."""
    return importlib.util.find_spec("torch") is not None


def run_child(args, worker, model, framework="", steps=0, env_extra=None):
    """Run this script as a child ``--worker`` without thread env vars (plus ``env_extra``); return its JSON."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    for k, v in (env_extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    cmd = [sys.executable, __file__, "--worker", worker, "--model", model, "--framework", framework,
           "--weights", args.weights, "--threads", str(args.threads), "--steps", str(steps),
           "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child {worker} {model} {framework} {env_extra or ''} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stats(times, model):
    """Median / min / max ms, count, tokens/s (B*T / median step time; characters for the char-LMs) and every
    sample (ms) of a ``model``'s step times in s."""
    med = statistics.median(times)
    return {"median_ms": 1e3 * med, "min_ms": 1e3 * min(times), "max_ms": 1e3 * max(times), "n": len(times),
            "tokens_per_s": MODELS[model].batch * MODELS[model].seq / med, "samples_ms": [round(1e3 * t, 3) for t in times]}


def ratios(model, ms):
    """numba/torch and graph/numba ratios of a model's {framework: stats}, with goals and verdicts."""
    out = {}
    if "numba" in ms and "torch" in ms:
        r = ms["numba"]["median_ms"] / ms["torch"]["median_ms"]
        out["numba_over_torch"] = r
        if model in GOALS:
            out.update(goal=GOALS[model], pass_goal=r <= GOALS[model])
        if model in STRETCH:
            out.update(stretch=STRETCH[model], pass_stretch=r <= STRETCH[model])
    if "numba" in ms and "graph" in ms:
        r = ms["graph"]["median_ms"] / ms["numba"]["median_ms"]
        out["graph_over_numba"] = r
        if model in GRAPH_GOALS:
            out.update(graph_goal=GRAPH_GOALS[model], pass_graph_goal=r >= GRAPH_GOALS[model])
    return out


def measure_separate(args, model, frameworks):
    """Alternating rounds of one child per framework (and extra env row); return {row: stats}."""
    rows = [(f, f, None) for f in frameworks]
    if not args.no_extras and "numba" in frameworks:
        rows += [(f"{model} numba " + " ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in env.items()),
                  "numba", env) for env, models in EXTRA_ENVS if models is None or model in models]
    samples, blas = {name: [] for name, _, _ in rows}, {}
    for _ in range(args.rounds):
        for name, framework, env in rows:
            steps = args.graph_steps if framework == "graph" else args.steps
            out = run_child(args, "speed", model, framework, steps, env)
            samples[name] += out["times"]
            blas[name] = out["blas_core"]
    return {name: dict(stats(times, model), blas_core=blas[name]) for name, times in samples.items()}


def check_and_interleave(args, model):
    """Run the interleaved child; stop the script if the first-step losses disagree; return its row."""
    out = run_child(args, "interleave", model, steps=args.rounds * args.steps)
    loss, last = out["first_loss"], out["last_loss"]
    ref = loss.get("torch", loss["graph"])
    rel = max(abs(v - ref) / abs(ref) for v in loss.values())
    print(f"{model}: first-step losses {loss} (max rel diff {rel:.1e})", flush=True)
    if rel > LOSS_RTOL:
        raise SystemExit(f"LOSS MISMATCH for {model}: first-step losses {loss} differ by {rel:.2e} "
                         f"relative (> {LOSS_RTOL:g})")
    ms = {f: stats(t, model) for f, t in out["times"].items() if t}
    last_rel = abs(last["numba"] - last["torch"]) / abs(last["torch"]) if "torch" in last else None
    return {"ms": ms, "ratios": ratios(model, ms), "first_loss": loss, "loss_max_rel_diff": rel,
            "loss_ok": rel <= LOSS_RTOL, "last_loss": last, "last_step": out["last_step"],
            "last_loss_rel_diff": last_rel}


def verdict(ok):
    """PASS / MISS, or '-' where there is no verdict."""
    return "-" if ok is None else ("PASS" if ok else "MISS")


def fmt_ms(s):
    """'median [min-max]' ms of a stats dict, or '-'."""
    return f"{s['median_ms']:.1f} [{s['min_ms']:.1f}-{s['max_ms']:.1f}]" if s else "-"


def ratio_cells(r):
    """Table cells for a ratios dict: n/t, goal, verdict, stretch verdict, g/n, goal, verdict."""
    cells = [f"{r['numba_over_torch']:.2f}" if "numba_over_torch" in r else "-"]
    cells += [f"<={r['goal']}", verdict(r["pass_goal"])] if "goal" in r else ["-", "-"]
    cells.append(verdict(r["pass_stretch"]) if "stretch" in r else "")
    cells.append(f"{r['graph_over_numba']:.2f}" if "graph_over_numba" in r else "-")
    cells += [f">={r['graph_goal']}", verdict(r["pass_graph_goal"])] if "graph_goal" in r else ["", ""]
    return cells


def print_rows(head, rows):
    """Print a header and rows of string cells in aligned columns."""
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    for i, r in enumerate([head] + rows):
        print("  ".join(f"{str(c):>{w}}" if j else f"{str(c):<{w}}" for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))


def print_results(result, frameworks, args):
    """Print the separate-process, interleaved, loss, extras and breakdown tables."""
    print(f"\n1. separate processes: ms/step median [min-max], {args.rounds} rounds x {args.steps} steps "
          f"({args.graph_steps} for graph), torch threads {args.threads}, no thread env vars")
    head = ["model"] + [f"{f} ms" for f in frameworks] + [f"{f} tok/s" for f in frameworks if f != "graph"]
    head += ["n/t", "goal", "ok", "stretch", "g/n", "goal", "ok"]
    rows = []
    for model, r in result["separate"].items():
        rows.append([model] + [fmt_ms(r["ms"].get(f)) for f in frameworks]
                    + [f"{r['ms'][f]['tokens_per_s']:.0f}" for f in frameworks if f != "graph"]
                    + ratio_cells(r["ratios"]))
    print_rows(head, rows)

    print(f"\n2. interleaved in one process (numba step, torch step, ...), {args.rounds * args.steps} steps each; "
          f"first-step losses (rtol {LOSS_RTOL:g})")
    rows = []
    for model, r in result["interleaved"].items():
        loss = r["first_loss"]
        rows.append([model, fmt_ms(r["ms"].get("numba")), fmt_ms(r["ms"].get("torch"))]
                    + ratio_cells(r["ratios"])[:4]
                    + [f"{loss.get(f, float('nan')):.7f}" for f in FRAMEWORKS]
                    + [f"{r['loss_max_rel_diff']:.1e}", verdict(r["loss_ok"]),
                       f"{r['last_loss_rel_diff']:.1e}" if r["last_loss_rel_diff"] is not None else "-"])
    print_rows(["model", "numba ms", "torch ms", "n/t", "goal", "ok", "stretch"]
               + [f"loss {f}" for f in FRAMEWORKS] + ["max rel", "loss", f"rel@{r['last_step']}"], rows)

    for model, per in result["breakdown"].items():
        print(f"\n3. breakdown, {model}: median ms per phase (instrumented child; "
              f"{args.steps} steps numba, {args.graph_steps} graph)")
        labels = list(dict.fromkeys(label for fw in per.values() for label in fw))
        rows = [[label] + [c for fw in per.values() for c in
                           ((f"{fw[label]:.2f}", f"{100 * fw[label] / fw['step total']:.0f}%")
                            if label in fw else ("-", ""))] for label in labels]
        print_rows(["phase"] + [c for fw in per for c in (f"{fw} ms", "%")], rows)

    if result["extras"]:
        print("\n4. extra rows (not goals): numba, separate processes, same rounds as table 1; -VAR: removed; "
              "BLAS: the kernels SciPy's OpenBLAS ran (main rows: "
              + ", ".join(f"{m} {r['ms']['numba']['blas_core']}" for m, r in result["separate"].items()
                          if "numba" in r["ms"]) + ")")
        rows = []
        for name, s in result["extras"].items():
            base = result["separate"][name.split()[0]]["ms"]
            rows.append([name, fmt_ms(s), s["blas_core"], f"{s['median_ms'] / base['numba']['median_ms']:.2f}",
                         f"{s['median_ms'] / base['torch']['median_ms']:.2f}" if "torch" in base else "-"])
        print_rows(["row", "ms/step", "BLAS", "/ numba", "/ torch"], rows)

    for model, per in result["profile"].items():
        for framework, out in per.items():
            print(f"\n5. cProfile, {model} {framework}: {args.steps} steps, {out['step_ms']:.1f} ms/step profiled; "
                  f"the {PROFILE_TOP} functions with the most own time, per step")
            print_rows(["function", "calls", "own ms", "own %", "cum ms"],
                       [[t["function"], f"{t['calls']:g}", f"{t['own_ms']:.2f}",
                         f"{100 * t['own_ms'] / out['step_ms']:.0f}%", f"{t['cum_ms']:.2f}"] for t in out["top"]])


def write_json(path, meta, result):
    """Write ``{"meta": meta + the versions of NumPy, SciPy, numba and torch, **result}`` to ``path``."""
    for package in ("numpy", "scipy", "numba", "torch"):
        try:
            meta[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            meta[package] = None
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, **result}, indent=2))
    print(f"wrote {out}")


def main(argv=None):
    """Parse options; run as a child worker, or run every measurement, print the tables and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of child processes")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per child and round")
    parser.add_argument("--graph-steps", type=int, default=5, help="timed steps per round for graph")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, in every child")
    parser.add_argument("--only", help=f"comma-separated models (default all: {','.join(MODELS)})")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="for the separate-process rows")
    parser.add_argument("--no-extras", action="store_true", help="skip the extra env rows")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the phase breakdown")
    parser.add_argument("--profile", action="store_true", help="cProfile numba and graph steps per model")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2 steps, 1 warm-up, no extras")
    parser.add_argument("--out", default="benchmarks/out/train_speed.json")
    parser.add_argument("--worker", choices=["weights", "speed", "interleave", "breakdown", "profile"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = {"weights": weights_worker, "speed": speed_worker, "interleave": interleave_worker,
               "breakdown": breakdown_worker, "profile": profile_worker}
    if args.worker:
        return workers[args.worker](args)
    if args.quick:
        args.rounds, args.steps, args.graph_steps, args.warmup, args.no_extras = 1, 2, 2, 1, True

    began = time.perf_counter()
    models = args.only.split(",") if args.only else list(MODELS)
    frameworks = args.frameworks.split(",")
    for name, given, allowed in (("model", models, MODELS), ("framework", frameworks, FRAMEWORKS)):
        if [x for x in given if x not in allowed]:
            parser.error(f"unknown {name}s {[x for x in given if x not in allowed]}; choose from {list(allowed)}")
    if not has_torch():
        print("torch is not installed: no torch rows or numba/torch ratios")
        frameworks = [f for f in frameworks if f != "torch"]
    stripped = [v for v in THREAD_VARS if v in os.environ]
    if stripped:
        print(f"removed from the children's environment: {stripped}")

    result = {"separate": {}, "interleaved": {}, "extras": {}, "breakdown": {}, "profile": {}}
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        for model in models:
            args.weights = os.path.join(tmp, f"{model}.npz")
            run_child(args, "weights", model)
            result["interleaved"][model] = check_and_interleave(args, model)
            rows = measure_separate(args, model, frameworks)
            ms = {f: rows.pop(f) for f in frameworks}
            result["separate"][model] = {"ms": ms, "ratios": ratios(model, ms)}
            result["extras"].update(rows)
            if not args.no_breakdown:
                result["breakdown"][model] = {
                    f: run_child(args, "breakdown", model, f, args.graph_steps if f == "graph" else args.steps)
                    for f in ("numba", "graph")}
            if args.profile:
                result["profile"][model] = {f: run_child(args, "profile", model, f, args.steps)
                                            for f in ("numba", "graph")}
            print(f"{model}: done at {time.perf_counter() - began:.0f} s", flush=True)
    print_results(result, frameworks, args)

    total = time.perf_counter() - began
    print(f"\ntotal {total:.0f} s")
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "total_s": total,
            "options": {k: getattr(args, k) for k in ("threads", "rounds", "steps", "graph_steps", "warmup",
                                                       "only", "no_extras", "no_breakdown", "quick", "profile")},
            "frameworks": frameworks, "models": {m: MODELS[m]._asdict() for m in models}, "dtype": "float32",
            "loss_rtol": LOSS_RTOL,
            "thread_env_removed": stripped, "extra_envs": EXTRA_ENVS}
    write_json(args.out, meta, result)


if __name__ == "__main__":
    main()
