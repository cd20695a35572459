"""Sequence to sequence: an encoder-decoder learns to rewrite dates as ISO 8601.

A date written one of five ways ("7 March 2024", "march 7, 2024", "07/03/24", "7.3.2024",
"MAR 07 2024") goes in a character at a time; "2024-03-07" comes out a character at a time.
This is Sutskever et al.'s (2014) encoder-decoder:

- the encoder (embedding -> LSTM or GRU) reads the source; its final state, taken at each
  sequence's own last character (``lengths=``), is all the decoder learns about the source;
- the decoder (embedding -> the same kind of cell -> linear over the target characters)
  starts from that state and predicts the target one character at a time, reading
  <start> + the target so far.

Training uses teacher forcing: the decoder reads the true previous character. With ratio
1.0 that is the whole target at once, one fused layer call. With a ratio below 1 each
sequence, at each step, reads its own greedy prediction instead with probability 1 - ratio,
so the decoder runs one step at a time (a length-1 input and the carried state);
``--tf-schedule linear`` lowers the ratio from ``--teacher-forcing`` to ``--tf-floor`` over
the first half of the run. Held-out dates (never seen in training, in any format) are
decoded greedily; the script reports exact-match and per-character accuracy, overall and
per source format, shows a few translations, and plots loss and accuracy against step.

Two-digit years are read with a pivot: 50-99 are 19xx, 00-49 are 20xx (dates run from
1950 to 2049).

    python examples/seq2seq.py [--cell lstm|gru] [--teacher-forcing 1.0]
                               [--tf-schedule constant|linear] [--tf-floor 0.5] [--steps 1500]
    python examples/seq2seq.py --quick      # a small smoke-test run
"""

import datetime

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")

FORMATS = {
    "7 March 2024": lambda d: f"{d.day} {MONTHS[d.month - 1].title()} {d.year}",
    "march 7, 2024": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    "07/03/24": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",
    "7.3.2024": lambda d: f"{d.day}.{d.month}.{d.year}",
    "MAR 07 2024": lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d} {d.year}",
}

FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)

SOURCE_CHARS = ["<pad>"] + sorted(set("0123456789 ,./" + "".join(MONTHS) + "".join(MONTHS).upper()))
TARGET_CHARS = ["<start>", "<end>"] + list("0123456789-")
START, END = 0, 1
SOURCE_INDEX = {c: i for i, c in enumerate(SOURCE_CHARS)}
TARGET_INDEX = {c: i for i, c in enumerate(TARGET_CHARS)}
TARGET_LEN = len("2024-03-07") + 1  # and <end>


# ---------------------------------------------------------------- data


def split_dates(rng, test_fraction):
    """Every day from 1950 to 2049, shuffled and cut into training and held-out days."""
    days = np.arange(FIRST_DAY.toordinal(), LAST_DAY.toordinal() + 1)
    rng.shuffle(days)
    n_test = int(round(len(days) * test_fraction))
    return days[n_test:], days[:n_test]


def make_pairs(rng, days, n):
    """``n`` (source, target, format index) triples: random days from ``days``, random formats."""
    writers = list(FORMATS.values())
    pairs = []
    for day, k in zip(rng.choice(days, size=n), rng.integers(len(writers), size=n)):
        d = datetime.date.fromordinal(int(day))
        pairs.append((writers[k](d), d.isoformat(), int(k)))
    return pairs


def encode_batch(pairs):
    """Index arrays for a batch: padded sources (S, B), their lengths, and targets (T, B).

    The decoder reads ``<start>`` + the target and must predict the target + ``<end>``:
    ``decoder_in[t]`` is the character before ``decoder_out[t]``.
    """
    lengths = np.array([len(s) for s, _, _ in pairs])
    source = np.zeros((lengths.max(), len(pairs)), dtype=np.int64)
    for b, (s, _, _) in enumerate(pairs):
        source[:len(s), b] = [SOURCE_INDEX[c] for c in s]
    target = np.array([[START] + [TARGET_INDEX[c] for c in t] + [END] for _, t, _ in pairs]).T
    return source, lengths, target[:-1], target[1:]


# ---------------------------------------------------------------- model


class Seq2Seq(nn.Module):
    """Encoder and decoder recurrent layers of one kind; the encoder's final state starts the decoder."""

    def __init__(self, cell, embed, hidden):
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.source_embed = nn.Embedding(len(SOURCE_CHARS), embed)
        self.encoder = layer(embed, hidden)
        self.target_embed = nn.Embedding(len(TARGET_CHARS), embed)
        self.decoder = layer(embed, hidden)
        self.head = nn.Linear(hidden, len(TARGET_CHARS))

    def encode(self, source, lengths):
        """The encoder's state after each source's last character: ``(h, c)`` for LSTM, ``h`` for GRU."""
        _, state = self.encoder(self.source_embed(source), lengths=lengths)
        return state

    def decode(self, tokens, state):
        """Run the decoder over ``tokens`` (T, B) from ``state``: logits (T, B, C) and the new state."""
        out, state = self.decoder(self.target_embed(tokens), state)
        return self.head(out), state

    def forward(self, source, lengths, decoder_in, tf_ratio=1.0, rng=None):
        """Logits (T, B, C) for every target step.

        With ``tf_ratio`` 1 the decoder reads ``decoder_in`` (teacher forcing) in one call;
        below 1 it runs step by step, and each sequence reads its own previous greedy
        prediction instead of the true character with probability ``1 - tf_ratio``.
        """
        state = self.encode(source, lengths)
        if tf_ratio >= 1.0:
            return self.decode(decoder_in, state)[0]
        tokens, logits = decoder_in[:1], []
        for t in range(len(decoder_in)):
            step_logits, state = self.decode(tokens, state)
            logits.append(step_logits)
            if t + 1 < len(decoder_in):
                forced = rng.random(decoder_in.shape[1]) < tf_ratio
                tokens = np.where(forced, decoder_in[t + 1], step_logits.data[0].argmax(-1))[None]
        return ts.cat(logits, axis=0)

    @ts.no_grad()
    def translate(self, source, lengths, max_len=TARGET_LEN):
        """Greedy decoding: each step feeds back the most likely character; strings cut at <end>."""
        state = self.encode(source, lengths)
        tokens, steps = np.full((1, source.shape[1]), START), []
        for _ in range(max_len):
            logits, state = self.decode(tokens, state)
            tokens = logits.data.argmax(-1)
            steps.append(tokens[0])
        out = []
        for row in np.stack(steps, axis=1):
            stop = np.flatnonzero(row == END)
            out.append("".join(TARGET_CHARS[i] for i in row[:stop[0] if len(stop) else len(row)]))
        return out


# ---------------------------------------------------------------- training and evaluation


def teacher_forcing(args, schedule, step):
    """The teacher-forcing ratio at ``step``: constant, or linear down to the floor by half the run."""
    if schedule == "constant":
        return args.teacher_forcing
    progress = min(1.0, step / max(1, args.steps // 2))
    return args.teacher_forcing + (args.tf_floor - args.teacher_forcing) * progress


def evaluate(model, pairs, batch=500):
    """Greedy translations of ``pairs``; exact-match and per-character accuracy, overall and per format."""
    model.eval()
    predictions = []
    for i in range(0, len(pairs), batch):
        source, lengths, _, _ = encode_batch(pairs[i:i + batch])
        predictions += model.translate(source, lengths)
    model.train()
    exact = np.array([p == t for p, (_, t, _) in zip(predictions, pairs)])
    chars = np.array([np.mean([a == b for a, b in zip(p.ljust(len(t)), t)]) for p, (_, t, _) in zip(predictions, pairs)])
    formats = np.array([k for _, _, k in pairs])
    per_format = {name: float(exact[formats == k].mean()) for k, name in enumerate(FORMATS)}
    return {"exact_match": float(exact.mean()), "char_accuracy": float(chars.mean()),
            "exact_match_per_format": per_format, "predictions": predictions}


def train(args, schedule, train_days, test_pairs):
    """Train one model with Adam, clipping and a cosine learning rate; return it and its curves.

    Every schedule starts from the same weights and sees the same batches (seeded from
    ``--seed``), so the schedules differ only in what the decoder reads.
    """
    ts.manual_seed(args.seed)
    data_rng, coin_rng = np.random.default_rng([args.seed, 1]), np.random.default_rng([args.seed, 2])
    model = Seq2Seq(args.cell, args.embed, args.hidden)
    opt = ts.optim.Adam(model.parameters(), lr=args.lr)
    lr_schedule = ts.optim.CosineAnnealingLR(opt, T_max=args.steps)
    curves = {"loss": [], "ratio": [], "eval_step": [], "exact_match": [], "char_accuracy": []}
    for step in range(1, args.steps + 1):
        source, lengths, decoder_in, decoder_out = encode_batch(make_pairs(data_rng, train_days, args.batch))
        ratio = teacher_forcing(args, schedule, step - 1)
        logits = model(source, lengths, decoder_in, ratio, coin_rng)
        loss = nn.functional.cross_entropy(logits, decoder_out)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lr_schedule.step()
        curves["loss"].append(loss.item())
        curves["ratio"].append(ratio)
        if step % args.eval_every == 0 or step == args.steps:
            metrics = evaluate(model, test_pairs)
            curves["eval_step"].append(step)
            curves["exact_match"].append(metrics["exact_match"])
            curves["char_accuracy"].append(metrics["char_accuracy"])
            print(f"  step {step:5d}  loss {np.mean(curves['loss'][-args.eval_every:]):.4f}  "
                  f"teacher forcing {ratio:.2f}  held-out exact {metrics['exact_match']:.3f}  "
                  f"chars {metrics['char_accuracy']:.3f}")
    return model, curves


def label(args, schedule):
    """A model's name in the table and legend."""
    if schedule == "constant":
        return f"{args.cell.upper()}, teacher forcing {args.teacher_forcing:g}"
    return f"{args.cell.upper()}, teacher forcing {args.teacher_forcing:g} -> {args.tf_floor:g}"


def plot(runs, args, path):
    """Training loss (log scale) and held-out accuracy against step, one colour per schedule."""
    plt = common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (schedule, run), color in zip(runs.items(), ("tab:blue", "tab:orange")):
        loss = np.array(run["curves"]["loss"])
        window = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        steps = np.arange(1, len(loss) + 1)
        left.plot(steps, loss, color=color, alpha=0.2, lw=0.7)
        left.plot(steps[window - 1:], smooth, color=color, label=f"{run['label']} (mean of {window})")
        c = run["curves"]
        right.plot(c["eval_step"], c["exact_match"], "o-", ms=3, color=color, label=f"{run['label']}: exact match")
        right.plot(c["eval_step"], c["char_accuracy"], "--", color=color, alpha=0.7, label="per character")
        if schedule == "linear":
            right.plot(steps, c["ratio"], ":", color="gray", label="teacher-forcing ratio (linear)")
    left.set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats per character)",
             title="Training loss (the decoder reads what the schedule feeds it)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.set(ylim=(0, 1.02), xlabel="training step", ylabel="accuracy",
              title=f"Greedy decoding of {args.eval_size} held-out dates")
    right.legend(loc="lower right", fontsize=8)
    right.grid(alpha=0.3)
    common.save_figure(fig, path)


def show_translations(pairs, predictions, n=6):
    """Print ``n`` held-out translations: the first wrong ones (up to half), then right ones."""
    wrong = [i for i, (p, (_, t, _)) in enumerate(zip(predictions, pairs)) if p != t]
    right = [i for i, (p, (_, t, _)) in enumerate(zip(predictions, pairs)) if p == t]
    chosen = wrong[:n // 2]
    chosen += right[:n - len(chosen)]
    for i in sorted(chosen):
        source, target, _ = pairs[i]
        mark = "right" if predictions[i] == target else f"WRONG (want {target})"
        print(f"    {source:>18s} -> {predictions[i]:10s}  {mark}")


def check_args(args):
    """Raise a UsageError for flags out of range."""
    for name in ("steps", "batch", "embed", "hidden", "eval_size", "eval_every"):
        if getattr(args, name) < 1:
            raise common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("teacher_forcing", "tf_floor"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise common.UsageError(f"--{name.replace('_', '-')} must lie in [0, 1], got {getattr(args, name)}")
    if "linear" in args.tf_schedule and args.tf_floor > args.teacher_forcing:
        raise common.UsageError(f"--tf-floor ({args.tf_floor}) must not exceed --teacher-forcing "
                                f"({args.teacher_forcing})")
    if len(set(args.tf_schedule)) != len(args.tf_schedule):
        raise common.UsageError(f"--tf-schedule names a schedule twice: {args.tf_schedule}")
    if not 0.0 < args.test_fraction < 1.0:
        raise common.UsageError(f"--test-fraction must lie in (0, 1), got {args.test_fraction}")
    if args.lr <= 0 or args.clip <= 0:
        raise common.UsageError(f"--lr and --clip must be positive, got {args.lr} and {args.clip}")


def main(argv=None):
    """Parse flags, train one model per schedule, decode the held-out dates, print, write JSON and PNG."""
    p = common.parser(__doc__.splitlines()[0], out="runs/seq2seq")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    p.add_argument("--teacher-forcing", type=float, default=1.0,
                   help="teacher-forcing ratio: the constant one, and where the linear schedule starts")
    p.add_argument("--tf-schedule", nargs="+", default=["constant", "linear"], choices=("constant", "linear"),
                   help="one model per schedule named (default: both)")
    p.add_argument("--tf-floor", type=float, default=0.5, help="where the linear schedule ends")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 1500; 150 with --quick)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 64; 32 with --quick)")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=None, help="hidden size (default 128; 32 with --quick)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate, annealed by a cosine")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of the days held out")
    p.add_argument("--eval-size", type=int, default=None, help="held-out pairs (default 1000; 300 with --quick)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default steps / 15)")
    args = p.parse_args(argv)
    defaults = {"steps": (1500, 150), "batch": (64, 32), "hidden": (128, 32), "eval_size": (1000, 300)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.eval_every is None:
        args.eval_every = max(1, args.steps // 15)
    check_args(args)
    common.start(args)

    train_days, test_days = split_dates(np.random.default_rng(args.seed), args.test_fraction)
    test_pairs = make_pairs(np.random.default_rng([args.seed, 3]), test_days, args.eval_size)
    print(f"{len(train_days)} training days, {len(test_days)} held-out days ({args.eval_size} held-out pairs); "
          f"{args.cell.upper()} encoder-decoder, hidden {args.hidden}, {args.steps} steps of {args.batch}")
    runs = {}
    for schedule in args.tf_schedule:
        name = label(args, schedule)
        print(f"\n{name}")
        with common.Timer() as timer:
            model, curves = train(args, schedule, train_days, test_pairs)
        final = evaluate(model, test_pairs)
        print("  held-out translations (greedy):")
        show_translations(test_pairs, final["predictions"])
        reached = [s for s, e in zip(curves["eval_step"], curves["exact_match"]) if e >= 0.99]
        runs[schedule] = {
            "label": name, "exact_match": final["exact_match"], "char_accuracy": final["char_accuracy"],
            "exact_match_per_format": final["exact_match_per_format"],
            "first_loss": curves["loss"][0], "final_loss": float(np.mean(curves["loss"][-10:])),
            "first_step_99": reached[0] if reached else None, "train_seconds": timer.seconds,
            "curves": curves,
            "examples": [{"source": s, "target": t, "prediction": pr}
                         for (s, t, _), pr in zip(test_pairs[:20], final["predictions"][:20])],
        }

    rows = []
    for run in runs.values():
        worst = min(run["exact_match_per_format"].items(), key=lambda kv: kv[1])
        rows.append([run["label"], run["first_loss"], run["final_loss"], run["exact_match"], run["char_accuracy"],
                     f"{worst[1]:.3f} ({worst[0]})", run["first_step_99"] or "never", f"{run['train_seconds']:.0f}"])
    print()
    common.summary(args, ["model", "first loss", "final loss", "held-out exact", "held-out chars",
                          "worst format (exact)", "step >= 0.99", "train s"], rows)
    results = {"config": vars(args), "models": runs}
    common.write_json(f"{args.out}/results.json", results)
    plot(runs, args, f"{args.out}/seq2seq.png")
    return results


if __name__ == "__main__":
    common.run(main)
