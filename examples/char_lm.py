"""Train a character-level language model on Python's own source code, then write with it.

An embedding feeds a 2-layer LSTM (or GRU, or tanh RNN) whose outputs a linear layer turns
into next-character logits. The corpus is read as B parallel streams; truncated BPTT walks
them k characters at a time and carries the detached state from one chunk to the next
(``tinyseq.data``, ``tinyseq.bptt``). Validation loss is in bits per character (bpc), next to
a unigram model's; samples use temperature and top-k.

    python examples/char_lm.py                       # about 3 minutes on 2 cores
    python examples/char_lm.py --quick               # under a minute
    python examples/char_lm.py --data book.txt --cell gru --steps 3000
    python examples/char_lm.py --resume --steps 4000 # continue the last run, exactly
    python examples/char_lm.py --sample-only --prompt "def " --temperature 0.6

The default corpus is the standard library's top-level modules on this machine (the ASCII
ones, files sorted), a few MB. Everything goes to --out (default runs/char_lm):
checkpoint.npz (every --save-every steps, at the end, on Ctrl-C and on any error after a
finished step), loss.png and results.json. A run stopped at any step and resumed reaches
bitwise the weights of the run that was never stopped; --resume without --steps trains on to
the step count the run was started with. A new run does not replace an earlier run's
checkpoint unless --overwrite is given. --sample-only takes any sampling option, --seed
included (it then seeds only the sampling). The default prompt falls back to the corpus's
first characters where the corpus lacks them; a --prompt given with characters the corpus
lacks is refused before training. A mistake in the flags or files is one line on stderr and
exit status 2 (``TINYSEQ_DEBUG=1`` shows its traceback).
"""

import contextlib
import hashlib
import math
import os
import pathlib
import signal
import sys
import sysconfig
import time

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn
from tinyseq.bptt import TBPTT, evaluate
from tinyseq.data import StreamBatches, Vocab
from tinyseq.nn import functional as F

# What defines a run: saved in the checkpoint, and --resume refuses to change it.
RUN_OPTIONS = ("data", "max_chars", "val_fraction", "cell", "embed", "hidden", "layers", "dropout",
               "batch_size", "bptt", "lr", "clip", "seed")
# What --sample-only may change freely (the seed then seeds only the sampling).
SAMPLING_OPTIONS = ("seed",)
DEFAULT_PROMPT = "def "
DEFAULT_STEPS = {False: 1600, True: 120}  # by --quick


# ---------------------------------------------------------------- data


def load_corpus(path=None, max_chars=None):
    """The text of ``path`` (UTF-8), or by default the standard library's top-level modules
    that are pure ASCII, in sorted order. ``max_chars`` keeps only the start. A file that
    is missing, not a file, not UTF-8 or too short is a UsageError naming --data."""
    if path is not None:
        try:
            text = pathlib.Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise common.UsageError(f"--data {path}: no such file; give a UTF-8 text file") from None
        except IsADirectoryError:
            raise common.UsageError(f"--data {path} is a directory; give a UTF-8 text file") from None
        except UnicodeDecodeError as e:
            raise common.UsageError(f"--data {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                                    f"{e.start}); give a UTF-8 text file (convert one with e.g. "
                                    f"iconv -f latin1 -t utf-8)") from None
        except OSError as e:
            raise common.UsageError(f"--data {path}: cannot read it ({e.strerror})") from None
    else:
        stdlib = pathlib.Path(sysconfig.get_path("stdlib"))
        sources = (f.read_bytes() for f in sorted(stdlib.glob("*.py")))
        text = "".join(s.decode("ascii") for s in sources if s.isascii())
    cut = f" (--max-chars {max_chars} of {len(text)})" if max_chars and len(text) > max_chars else ""
    text = text[:max_chars] if max_chars else text
    if len(text) < 1000:
        raise common.UsageError(f"--data {path or '(the standard library)'}: the corpus has {len(text)} "
                                f"characters{cut}; it needs at least 1000: give a longer text")
    return text


def unigram_bpc(train, val, vocab):
    """Bits per character of ``val`` under the train split's character frequencies (add-one
    smoothing): the score a model that ignores context gets."""
    counts = np.bincount(train, minlength=len(vocab)) + 1.0
    return float(-np.log2(counts / counts.sum())[val].mean())


# ---------------------------------------------------------------- model


class CharLM(nn.Module):
    """Embedding -> recurrent layers -> linear: next-character logits, (T, B) in, (T, B, V) out."""

    def __init__(self, vocab_size, cell="lstm", embed=64, hidden=256, layers=2, dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = common.CELLS[cell](embed, hidden, num_layers=layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def loss_fn(logits, y):
    """Mean cross-entropy over every position, in nats."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def sample(model, vocab, prompt, length, temperature=1.0, top_k=0, rng=None):
    """``prompt`` and ``length`` characters drawn one at a time from the model, each from the
    softmax of the logits / ``temperature`` over the ``top_k`` likeliest (0: all)."""
    rng = rng or np.random.default_rng()
    was_training = model.training
    model.eval()
    ids = vocab.encode(prompt or "\n")
    drawn = []
    with ts.no_grad():
        logits, state = model(ids[:, None])  # the prompt in one call: (T, 1) -> (T, 1, V)
        for _ in range(length):
            z = logits.data[-1, 0].astype(np.float64) / temperature
            if 0 < top_k < len(z):
                z[z < np.partition(z, -top_k)[-top_k]] = -np.inf
            p = np.exp(z - z.max())
            drawn.append(rng.choice(len(p), p=p / p.sum()))
            logits, state = model(np.array([[drawn[-1]]]), state)
    model.train(was_training)
    return prompt + vocab.decode(np.array(drawn, dtype=np.int64))


# ---------------------------------------------------------------- the run


def arguments(argv):
    p = common.parser(__doc__.splitlines()[0], out="runs/char_lm")
    p.add_argument("--data", help="a UTF-8 text file to train on (default: the standard library's source)")
    p.add_argument("--max-chars", type=int, default=None, help="read only the start of the corpus")
    p.add_argument("--val-fraction", type=float, default=0.05, help="the end of the corpus kept for validation")
    p.add_argument("--cell", choices=common.CELLS, default="lstm")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0, help="between recurrent layers")
    p.add_argument("--batch-size", type=int, default=32, help="B parallel streams")
    p.add_argument("--bptt", type=int, default=64, help="k: steps per update (truncation length)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--steps", type=int, default=None,
                   help="updates in the whole run (default 1600, 120 with --quick; --resume: the checkpoint's)")
    p.add_argument("--eval-every", type=int, default=200, help="validate and sample every N steps")
    p.add_argument("--save-every", type=int, default=200, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="start a new run over the checkpoint in --out")
    p.add_argument("--sample-only", action="store_true", help="load the checkpoint and generate")
    p.add_argument("--prompt", default=None, help=f"text the samples start from (default {DEFAULT_PROMPT!r}, "
                   "or the corpus's first characters where those are not in it)")
    p.add_argument("--sample-chars", type=int, default=400)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0: all)")
    p.add_argument("--export-torch", metavar="PATH", help="also write the model as a PyTorch state dict + config")
    args = p.parse_args(argv)
    if args.quick:  # smaller defaults, as defaults: --resume tells them from options given
        p.set_defaults(max_chars=300_000, hidden=128, eval_every=60, save_every=60, sample_chars=120)
        args = p.parse_args(argv)
    if args.export_torch:
        common.require_torch("--export-torch")
    for name in ("steps", "embed", "hidden", "layers", "batch_size", "bptt", "eval_every", "save_every"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.val_fraction < 0.5:
        raise common.UsageError(f"--val-fraction must be in (0, 0.5), got {args.val_fraction}")
    if not args.temperature > 0 or args.top_k < 0 or args.sample_chars < 0:
        raise common.UsageError(f"need --temperature > 0, --top-k >= 0, --sample-chars >= 0; got "
                         f"{args.temperature}, {args.top_k}, {args.sample_chars}")
    return p, args


class Run:
    """Everything a checkpoint holds: the data, model, optimizer, trainer and curves."""

    def __init__(self, args, text):
        self.config = {name: getattr(args, name) for name in RUN_OPTIONS}
        self.corpus_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.vocab = Vocab.from_text(text)
        tokens = self.vocab.encode(text)
        cut = len(tokens) - int(len(tokens) * args.val_fraction)
        self.train_tokens, self.val_tokens = tokens[:cut], tokens[cut:]
        self.batches = StreamBatches(self.train_tokens, args.batch_size, args.bptt)
        self.model = CharLM(len(self.vocab), args.cell, args.embed, args.hidden, args.layers, args.dropout)
        self.optimizer = ts.optim.Adam(self.model.parameters(), lr=args.lr)
        self.tbptt = TBPTT(self.model, loss_fn, self.optimizer, k1=args.bptt, max_norm=args.clip)
        self.step = 0
        self.target_steps = args.steps
        self.in_step = False  # True while a training step is part done (see save_on_error)
        self.history = {"step": [], "train_bpc": [], "val_step": [], "val_bpc": []}

    def state_dict(self):
        return {"config": self.config, "corpus_sha256": self.corpus_sha256, "vocab": self.vocab.state_dict(),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "tbptt": self.tbptt.state_dict(), "batches": self.batches.state_dict(),
                "rng": ts.get_rng_state(), "step": self.step, "target_steps": self.target_steps,
                "history": self.history}

    def load_state_dict(self, state):
        if state["corpus_sha256"] != self.corpus_sha256 or Vocab.from_state_dict(state["vocab"]) != self.vocab:
            raise common.UsageError(f"--data {self.config['data']}: the corpus is not the one the checkpoint was "
                                    f"trained on; give the same file, or start a new run in another --out")
        self.config = dict(state["config"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tbptt.load_state_dict(state["tbptt"])
        self.batches.load_state_dict(state["batches"])
        ts.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = {k: list(v) for k, v in state["history"].items()}

    def save(self, out):
        ts.save(self.state_dict(), pathlib.Path(out) / "checkpoint.npz")

    def chunks(self):
        """Training chunks without end; each new pass over the corpus starts from a zero state."""
        while True:
            yield from self.batches
            self.tbptt.reset()

    def validate(self):
        """Validation bpc: the whole split as 16 streams of 256 steps, state carried."""
        batches = StreamBatches(self.val_tokens, 16, 256)
        return evaluate(self.model, loss_fn, batches) / math.log(2)


def read_checkpoint(parser, args):
    """The checkpoint in ``args.out``. Its config replaces the run options in ``args``; an
    option given on the command line that differs from it is an error (but for
    SAMPLING_OPTIONS with --sample-only, which stay as given)."""
    path = pathlib.Path(args.out) / "checkpoint.npz"
    if not path.is_file():
        raise common.UsageError(f"--out {args.out}: no checkpoint at {path}; train first, or point --out at a run")
    try:
        state = ts.load(path)
    except ts.CheckpointError as e:
        raise common.UsageError(f"--out {args.out}: {path.name} is damaged ({e.__cause__}); --overwrite starts a new "
                                f"run there, or choose another --out") from e
    for name, saved in state["config"].items():
        given = getattr(args, name)
        if args.sample_only and name in SAMPLING_OPTIONS:
            continue
        if given != parser.get_default(name) and given != saved:
            raise common.UsageError(f"--{name.replace('_', '-')} {given} differs from the checkpoint's {saved}; "
                                    f"drop it, or start a new run in another --out")
        setattr(args, name, saved)
    return state


@contextlib.contextmanager
def save_on_error(run, out):
    """Save ``run``'s checkpoint if the block raises (then re-raise): the steps done are kept.
    An error inside a step (``run.in_step``) keeps the last checkpoint instead: the data and
    weights may be part way through that step, and a resumed run must equal an unbroken one."""
    try:
        yield
    except BaseException:
        if run.in_step:
            print(f"stopped by an error inside step {run.step + 1}: the last checkpoint is kept", file=sys.stderr)
        else:
            run.save(out)
            print(f"stopped by an error after step {run.step}: checkpoint saved; --resume continues from there",
                  file=sys.stderr)
        raise


class StopOnCtrlC:
    """``with StopOnCtrlC() as stop:`` a first Ctrl-C sets ``stop.requested`` (the loop ends
    after the current step and saves); a second one interrupts at once."""

    def __enter__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def train(run, args, on_step=None):
    """Train ``run`` up to ``args.steps``, validating, sampling and saving as it goes. Any
    exception saves the checkpoint at the last finished step before it propagates."""
    from tqdm import tqdm

    chars_per_step = args.batch_size * args.bptt
    bar = tqdm(total=args.steps, initial=run.step, unit="step", dynamic_ncols=True, disable=None)
    chunks, rate = run.chunks(), None
    with StopOnCtrlC() as stop, save_on_error(run, args.out):
        while run.step < args.steps and not stop.requested:
            run.in_step = True
            x, y = next(chunks)
            started = time.perf_counter()
            loss = run.tbptt.step(x, y)
            speed = chars_per_step / (time.perf_counter() - started)
            rate = speed if rate is None else 0.9 * rate + 0.1 * speed
            run.step += 1
            run.history["step"].append(run.step)
            run.history["train_bpc"].append(loss / math.log(2))
            run.in_step = False
            bar.update()
            bar.set_postfix({"loss": f"{loss:.3f}", "bpc": f"{loss / math.log(2):.3f}", "chars/s": f"{rate:,.0f}"})
            if run.step % args.eval_every == 0 or run.step == args.steps:
                run.history["val_step"].append(run.step)
                run.history["val_bpc"].append(run.validate())
                text = sample(run.model, run.vocab, args.prompt, min(args.sample_chars, 200),
                              args.temperature, args.top_k, np.random.default_rng([args.seed, run.step]))
                bar.write(f"step {run.step}: val bpc {run.history['val_bpc'][-1]:.3f}\n{text}\n")
            if run.step % args.save_every == 0:
                run.save(args.out)
            if on_step is not None:
                on_step(run.step)
        bar.close()
        run.save(args.out)
    if stop.requested:
        print(f"stopped at step {run.step}: checkpoint saved; --resume continues from there")
    return rate


def plot(run, unigram, path):
    """Train (a running mean) and validation bpc against the step, with the unigram line."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps, bpc = np.array(run.history["step"]), np.array(run.history["train_bpc"])
    width = max(1, min(50, len(bpc) // 10))
    smooth = np.convolve(bpc, np.ones(width) / width, mode="valid")
    ax.plot(steps, bpc, color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(steps[width - 1:], smooth, color="tab:blue", label="train (running mean)")
    ax.plot(run.history["val_step"], run.history["val_bpc"], "o-", color="tab:orange", label="validation")
    ax.axhline(unigram, ls="--", color="gray", label=f"unigram model ({unigram:.2f})")
    ax.set(xlabel="step", ylabel="bits per character",
           title=f"char_lm: {run.config['cell']} {run.config['layers']}x{run.config['hidden']}")
    ax.grid(alpha=0.3)
    ax.legend()
    common.save_figure(fig, path)


def export_torch(run, args, path):
    """Write the model as a PyTorch state dict with what is needed to rebuild and continue it."""
    import torch

    from tinyseq.interop import to_torch

    torch.save({"state_dict": to_torch(run.model).state_dict(), "config": run.config,
                "vocab": "".join(run.vocab.symbols), "step": run.step,
                "val_bpc": run.history["val_bpc"][-1] if run.history["val_bpc"] else None}, path)
    print(f"wrote {path} (PyTorch state dict and config; examples/continue_in_torch.py trains it on)")


def target_steps(args, saved):
    """The step a run trains to: --steps if given, else a resumed run's own target (a checkpoint
    from before targets were saved: the default, said on stdout), else the default."""
    default = DEFAULT_STEPS[args.quick]
    if args.steps is not None or saved is None:
        return args.steps or default
    if "target_steps" in saved:
        return int(saved["target_steps"])
    print(f"the checkpoint predates saved targets: training on to the default {default} steps "
          f"(--steps N chooses)")
    return default


def check_prompt(prompt, text):
    """``prompt``, if the corpus has its characters. For the default prompt, else a prompt of
    the corpus's first characters (said on stdout); for a given one, else a UsageError."""
    given = prompt is not None
    prompt = prompt if given else DEFAULT_PROMPT
    missing = sorted(set(prompt or "\n") - set(text))  # an empty prompt starts the samples from a newline
    if not missing:
        return prompt
    if given:
        empty = " (an empty prompt starts from a newline)" if not prompt else ""
        raise common.UsageError(f"--prompt {prompt!r}: the characters {''.join(missing)!r} are not in the corpus"
                                f"{empty}; write the prompt with the corpus's characters")
    fallback = text[:len(DEFAULT_PROMPT)]
    print(f"prompt: the default {DEFAULT_PROMPT!r} has characters not in the corpus; starting samples "
          f"from its first characters {fallback!r} (--prompt chooses)")
    return fallback


def main(argv=None, on_step=None):
    """Train (or resume, or only sample); returns the results dict also written as JSON."""
    parser, args = arguments(argv)
    saved = read_checkpoint(parser, args) if args.resume or args.sample_only else None
    checkpoint = pathlib.Path(args.out) / "checkpoint.npz"
    if saved is None and checkpoint.exists() and not args.overwrite:
        raise common.UsageError(f"--out {args.out} holds an earlier run ({checkpoint}); --resume continues it, "
                                f"--overwrite replaces it, or choose another --out")
    args.steps = target_steps(args, saved)
    text = load_corpus(args.data, args.max_chars)
    args.prompt = check_prompt(args.prompt, text)
    common.start(args)
    run = Run(args, text)
    if saved is not None:
        run.load_state_dict(saved)
        print(f"loaded {args.out} at step {run.step}" if args.sample_only else
              f"resuming at step {run.step} of {args.steps}" +
              ("" if run.step < args.steps else ": nothing left to train; --steps N trains on to step N"))
    unigram = unigram_bpc(run.train_tokens, run.val_tokens, run.vocab)
    print(f"corpus: {args.data or 'the standard library'}, {len(run.train_tokens):,} train + "
          f"{len(run.val_tokens):,} validation chars, {len(run.vocab)} symbols; unigram bpc {unigram:.3f}")
    print(f"model: {args.cell} {args.layers}x{args.hidden}, {sum(p.data.size for p in run.model.parameters()):,} "
          f"parameters; B={args.batch_size}, k={args.bptt}")

    results = {"config": run.config, "unigram_bpc": unigram}
    if not args.sample_only:
        with common.Timer() as timer:
            rate = train(run, args, on_step)
        plot(run, unigram, pathlib.Path(args.out) / "loss.png")
        results.update(steps=run.step, seconds=timer.seconds, chars_per_second=rate,
                       train_bpc=float(np.mean(run.history["train_bpc"][-50:])),
                       val_bpc=run.history["val_bpc"][-1] if run.history["val_bpc"] else None)
    text = sample(run.model, run.vocab, args.prompt, args.sample_chars, args.temperature, args.top_k,
                  np.random.default_rng([args.seed, run.step, 1]))
    results["sample"] = text
    print(f"\n--- sample (temperature {args.temperature}, top-k {args.top_k or 'all'}) ---\n{text}\n---")
    if args.export_torch:
        export_torch(run, args, args.export_torch)
    if not args.sample_only:
        common.summary(args, ["steps", "seconds", "chars/s", "train bpc", "val bpc", "unigram bpc"],
                       [[run.step, results["seconds"], round(rate or 0), results["train_bpc"],
                         results["val_bpc"], unigram]])
        common.write_json(pathlib.Path(args.out) / "results.json", results)
    return results


if __name__ == "__main__":
    common.run(main)
