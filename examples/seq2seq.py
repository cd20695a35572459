"""Sequence to sequence: an encoder-decoder with and without attention, greedy and beam search.

Two tasks, one model (``--task``):

- ``reverse`` (the default): a string of random digits, 5 to 30 of them, comes out
  reversed ("30417" -> "71403"). Each digit written is one digit read, and the last one
  written is the first one read, a whole string back: the task where attention matters.
  5 to 30 digits is long enough for the plain encoder-decoder to fail and short enough to
  train in a few minutes on two CPU cores.
- ``dates``: a date written one of five ways ("7 March 2024", "march 7, 2024", "07/03/24",
  "7.3.2024", "MAR 07 2024") comes out as ISO 8601, "2024-03-07". Two-digit years are read
  with a pivot: 50-99 are 19xx, 00-49 are 20xx (dates run from 1950 to 2049).

The model is Sutskever et al.'s (2014) encoder-decoder, a character at a time: the encoder
(embedding -> LSTM or GRU, ``lengths=`` for the padded batch) reads the source; the decoder
(embedding -> the same kind of cell) starts from the encoder's final state and reads <start>
+ the target so far. Without attention (``--attention none``) that final state is all the
decoder learns of the source, and a linear layer maps each decoder output h_t to the next
character's logits.

With attention the decoder also reads every encoder output. This script puts Luong et al.'s
(2015) global attention on top of the decoder's outputs: the query is h_t, the keys and values
are the encoder's outputs (S, B, H) (padded steps masked by ``lengths``), ``nn.Attention``
gives the context c_t and the weights over the source, and tanh(W_c [h_t; c_t]) feeds the
linear head. The attention kinds are ``nn.Attention``'s: ``additive`` (Bahdanau's score
v . tanh(W_q h + W_k k)), ``dot`` (h . k) and ``multiplicative`` (h . W k). Why on top and
not inside (Bahdanau's decoder reads c_{t-1} as an input)? Because then the decoder's
recurrence does not depend on the attention: under teacher forcing it stays one fused layer
call over the whole target, and the attention of every target step is one call too (T
queries (T, B, H) against the same keys, projected once). Bahdanau's way would make the
decoder a Python loop of steps.

Training uses teacher forcing (the decoder reads the true previous character); with
``--teacher-forcing`` below 1, or ``--tf-schedule linear`` (from ``--teacher-forcing`` to
``--tf-floor`` over the first half of the run), each sequence reads its own greedy prediction
instead with probability 1 - ratio, and the decoder runs one step at a time.

Held-out sources (never seen in training) are decoded two ways. Greedy: each step feeds back
the most likely character. Beam search (``--beam K``, see ``beam_search``): K hypotheses per
source, extended by every character, the K most probable of them kept; the most probable
hypothesis wins (a sum of log-probabilities, no length normalisation by default). Both report
exact match; the reversal reports it per source length, the dates per format.

    python examples/seq2seq.py [--attention none,additive,dot] [--beam 4]
                               [--min-length 5] [--max-length 30] [--steps 900]
    python examples/seq2seq.py --task dates [--cell lstm|gru] [--teacher-forcing 1.0]
                               [--tf-schedule constant linear] [--tf-floor 0.5] [--steps 1500]
    python examples/seq2seq.py --quick      # a small smoke-test run (add --task dates for the dates)

One model is trained per attention kind and per teacher-forcing schedule, each from the same
weights and batches. Prints a table and a few decoded sources; writes <out>/results.json and
<out>/seq2seq_attention.png (reversal: exact match against source length, one line per
attention kind, the loss curves, and the attention weights of two held-out sources as
heatmaps) or <out>/seq2seq.png (dates: loss and accuracy against step).
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

# Both tasks share the alphabets: the digits are in both.
SOURCE_CHARS = ["<pad>"] + sorted(set("0123456789 ,./" + "".join(MONTHS) + "".join(MONTHS).upper()))
TARGET_CHARS = ["<start>", "<end>"] + list("0123456789-")
START, END = 0, 1
IGNORE = -100  # a padded target position: the loss skips it (cross_entropy's ignore_index)
SOURCE_INDEX = {c: i for i, c in enumerate(SOURCE_CHARS)}
TARGET_INDEX = {c: i for i, c in enumerate(TARGET_CHARS)}
TARGET_LEN = len("2024-03-07") + 1  # and <end>

ATTENTION = ("none", "additive", "dot", "multiplicative")
MAX_LENGTH = 200  # the longest digit string --max-length allows


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


def held_out_reversals(rng, span, per_length):
    """``per_length`` different strings of each length in ``span`` (reversal triples, shortest
    first): the held-out set, which training never draws (``check_args`` keeps it at most half
    of the strings of the shortest length, so training has some)."""
    pairs = []
    for n in span:
        chosen = {}  # a dict keeps the drawing order
        while len(chosen) < per_length:
            chosen["".join(map(str, rng.integers(10, size=n)))] = None
        pairs += [(digits, digits[::-1], int(n)) for digits in chosen]
    return pairs


def make_reversals(rng, lengths, exclude=frozenset()):
    """(digits, reversed digits, length) triples, one per length in ``lengths``; a string
    in ``exclude`` (the held-out ones) is drawn again."""
    pairs = []
    for n in lengths:
        digits = "".join(map(str, rng.integers(10, size=n)))
        while digits in exclude:
            digits = "".join(map(str, rng.integers(10, size=n)))
        pairs.append((digits, digits[::-1], int(n)))
    return pairs


def encode_batch(pairs):
    """Index arrays for a batch: padded sources (S, B), their lengths, and targets (T, B).

    The decoder reads ``<start>`` + the target and must predict the target + ``<end>``:
    ``decoder_in[t]`` is the character before ``decoder_out[t]``. Targets of different
    lengths are padded: with <end> in ``decoder_in``, with ``IGNORE`` in ``decoder_out``.
    """
    lengths = np.array([len(s) for s, _, _ in pairs])
    source = np.zeros((lengths.max(), len(pairs)), dtype=np.int64)
    for b, (s, _, _) in enumerate(pairs):
        source[:len(s), b] = [SOURCE_INDEX[c] for c in s]
    steps = max(len(t) for _, t, _ in pairs) + 1
    decoder_in = np.full((steps, len(pairs)), END, dtype=np.int64)
    decoder_out = np.full((steps, len(pairs)), IGNORE, dtype=np.int64)
    for b, (_, t, _) in enumerate(pairs):
        tokens = [TARGET_INDEX[c] for c in t]
        decoder_in[:len(tokens) + 1, b] = [START] + tokens
        decoder_out[:len(tokens) + 1, b] = tokens + [END]
    return source, lengths, decoder_in, decoder_out


def decode_tokens(row):
    """The string a row of target tokens spells, up to its first <end>."""
    stop = np.flatnonzero(row == END)
    return "".join(TARGET_CHARS[i] for i in row[:stop[0] if len(stop) else len(row)])


# ---------------------------------------------------------------- model


class Seq2Seq(nn.Module):
    """Encoder and decoder recurrent layers of one kind; the encoder's final state starts the
    decoder; with ``attention`` (an ``nn.Attention`` kind) each decoder output also reads the
    encoder's outputs (Luong's global attention, on top of the decoder)."""

    def __init__(self, cell, embed, hidden, attention="none"):
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.source_embed = nn.Embedding(len(SOURCE_CHARS), embed)
        self.encoder = layer(embed, hidden)
        self.target_embed = nn.Embedding(len(TARGET_CHARS), embed)
        self.decoder = layer(embed, hidden)
        self.head = nn.Linear(hidden, len(TARGET_CHARS))
        self.kind = attention
        if attention != "none":
            # NOTE: the additive score runs for every (target step, source step) pair, and its
            # width sets what attention costs: half the hidden size does the job here
            width = {"hidden_size": max(1, hidden // 2)} if attention == "additive" else {}
            self.attention = nn.Attention(hidden, hidden, kind=attention, **width)
            self.combine = nn.Linear(2 * hidden, hidden)

    def encode(self, source, lengths):
        """The decoder's initial state (the encoder's state after each source's last
        character: ``(h, c)`` for LSTM, ``h`` for GRU) and its memory: the encoder's outputs
        (S, B, H) and the lengths."""
        outputs, state = self.encoder(self.source_embed(source), lengths=lengths)
        return state, (outputs, np.asarray(lengths))

    def decode(self, tokens, state, memory):
        """Run the decoder over ``tokens`` (T, B) from ``state``: logits (T, B, C), the new
        state, and the attention weights (T, B, S) (None without attention)."""
        out, state = self.decoder(self.target_embed(tokens), state)
        if self.kind == "none":
            return self.head(out), state, None
        keys, lengths = memory  # (S, B, H) and (B,)
        context, weights = self.attention(out, keys, lengths=lengths)  # every target step's query at once
        mixed = ts.tanh(self.combine(ts.cat([out, context], axis=-1)))
        return self.head(mixed), state, ts.transpose(weights, 0, 1)

    def forward(self, source, lengths, decoder_in, tf_ratio=1.0, rng=None):
        """Logits (T, B, C) for every target step.

        With ``tf_ratio`` 1 the decoder reads ``decoder_in`` (teacher forcing) in one call;
        below 1 it runs step by step, and each sequence reads its own previous greedy
        prediction instead of the true character with probability ``1 - tf_ratio``.
        """
        state, memory = self.encode(source, lengths)
        if tf_ratio >= 1.0:
            return self.decode(decoder_in, state, memory)[0]
        tokens, logits = decoder_in[:1], []
        for t in range(len(decoder_in)):
            step_logits, state, _ = self.decode(tokens, state, memory)
            logits.append(step_logits)
            if t + 1 < len(decoder_in):
                forced = rng.random(decoder_in.shape[1]) < tf_ratio
                tokens = np.where(forced, decoder_in[t + 1], step_logits.data[0].argmax(-1))[None]
        return ts.cat(logits, axis=0)


# ---------------------------------------------------------------- decoding


def decode_step(model, tokens, state, memory):
    """One decoder step for a row of ``tokens`` (B,): log-probabilities (B, C) of the next
    character, the new state, and the attention weights (B, S) (None without attention)."""
    logits, state, weights = model.decode(tokens[None], state, memory)
    log_probs = nn.functional.log_softmax(logits[0], axis=-1).data
    return log_probs, state, None if weights is None else weights.data[0]


@ts.no_grad()
def greedy(model, source, lengths, max_len):
    """Greedy decoding, ``max_len`` steps: tokens (B, max_len), each sequence's log-probability
    up to and including its first <end>, and the attention weights (B, max_len, S) or None."""
    state, memory = model.encode(source, lengths)
    tokens = np.full(source.shape[1], START)
    steps, weights, scores = [], [], np.zeros(source.shape[1])
    done = np.zeros(source.shape[1], dtype=bool)
    for _ in range(max_len):
        log_probs, state, w = decode_step(model, tokens, state, memory)
        tokens = log_probs.argmax(-1)
        scores += np.where(done, 0.0, log_probs[np.arange(len(tokens)), tokens])
        done |= tokens == END
        steps.append(tokens)
        weights.append(w)
    return np.stack(steps, axis=1), scores, None if weights[0] is None else np.stack(weights, axis=1)


def select(state, rows):
    """The recurrent ``state`` (``h`` or ``(h, c)``, each (L, B, H)) of the batch rows ``rows``."""
    if isinstance(state, tuple):
        return tuple(select(s, rows) for s in state)
    return ts.Tensor(state.data[:, rows])


@ts.no_grad()
def beam_search(model, source, lengths, beam, max_len, length_penalty=0.0):
    """Beam search: for each source, the most probable of ``beam`` hypotheses; tokens
    (B, max_len) and their scores.

    All sources decode at once: source b's hypotheses are the batch rows b*beam ...
    b*beam + beam - 1. Each step extends every hypothesis by every character, scores each
    candidate by the sum of its log-probabilities, and keeps the ``beam`` best per source
    (the backpointers say which hypothesis each came from, and its state follows it).

    Length handling: a hypothesis that writes <end> is finished: from then on it extends only
    by <end>, at log-probability 0, so it keeps its score and its place among the candidates.
    After ``max_len`` steps unfinished hypotheses stop where they are. The winner has the
    highest score / length ** ``length_penalty``, length counting <end>: 0 (the default)
    compares plain sums of log-probabilities, 1 their means per character. With beam 1 it
    writes exactly what ``greedy`` writes, up to its first <end>.
    """
    batch, vocab = source.shape[1], len(TARGET_CHARS)
    state, (keys, lengths) = model.encode(source, lengths)
    spread = np.repeat(np.arange(batch), beam)  # each source's rows, ``beam`` times
    state = select(state, spread)
    memory = (ts.Tensor(keys.data[:, spread]), lengths[spread])
    tokens = np.full((batch, beam), START)
    scores = np.full((batch, beam), -np.inf)
    scores[:, 0] = 0.0  # one live hypothesis to begin with: the others would repeat it
    finished = np.zeros((batch, beam), dtype=bool)
    history = np.zeros((batch, beam, 0), dtype=np.int64)
    for _ in range(max_len):
        log_probs, state, _ = decode_step(model, tokens.reshape(-1), state, memory)
        log_probs = log_probs.reshape(batch, beam, vocab)
        log_probs[finished] = -np.inf
        log_probs[finished, END] = 0.0
        candidates = (scores[:, :, None] + log_probs).reshape(batch, beam * vocab)
        best = np.argsort(-candidates, axis=1, kind="stable")[:, :beam]
        parent, tokens = best // vocab, best % vocab
        scores = np.take_along_axis(candidates, best, axis=1)
        history = np.concatenate([np.take_along_axis(history, parent[:, :, None], axis=1), tokens[:, :, None]], 2)
        finished = np.take_along_axis(finished, parent, axis=1) | (tokens == END)
        state = select(state, (np.arange(batch)[:, None] * beam + parent).reshape(-1))
        if finished.all():
            break
    ended = history == END
    length = np.where(ended.any(-1), ended.argmax(-1) + 1, history.shape[-1])
    winner = np.argmax(scores / length ** length_penalty, axis=1)
    rows = history[np.arange(batch), winner]
    padded = np.full((batch, max_len), END)
    padded[:, :rows.shape[1]] = rows
    return padded, scores[np.arange(batch), winner]


def decode_length(task, source):
    """How many steps the decoder may take: the date's 11, or one more than the longest source."""
    return TARGET_LEN if task == "dates" else source.shape[0] + 1


def evaluate(model, pairs, task, beam=1, batch=500):
    """Decode ``pairs`` greedily (and with ``beam`` > 1 by beam search): exact match and
    per-character accuracy, overall and per group (format or length), and the strings."""
    was_training = model.training
    model.eval()
    greedy_out, beam_out, weights = [], [], []
    for i in range(0, len(pairs), batch):
        source, lengths, _, _ = encode_batch(pairs[i:i + batch])
        rows, _, w = greedy(model, source, lengths, decode_length(task, source))
        greedy_out += [decode_tokens(row) for row in rows]
        weights += [None] * len(rows) if w is None else list(w)
        if beam > 1:
            rows, _ = beam_search(model, source, lengths, beam, decode_length(task, source))
            beam_out += [decode_tokens(row) for row in rows]
    model.train(was_training)
    targets, groups = [t for _, t, _ in pairs], np.array([g for _, _, g in pairs])
    # a group's name: the format's, or the length itself
    names = dict(enumerate(FORMATS)) if task == "dates" else {n: n for n in sorted(set(groups.tolist()))}
    per = "exact_match_per_format" if task == "dates" else "exact_match_per_length"
    metrics = {"predictions": greedy_out, "weights": weights}
    for prefix, predictions in (("", greedy_out), ("beam_", beam_out)):
        if predictions:
            exact = np.array([p == t for p, t in zip(predictions, targets)])
            chars = [np.mean([a == b for a, b in zip(p.ljust(len(t)), t)]) for p, t in zip(predictions, targets)]
            metrics[prefix + "exact_match"] = float(exact.mean())
            metrics[prefix + "char_accuracy"] = float(np.mean(chars))
            metrics[prefix + per] = {name: float(exact[groups == g].mean()) for g, name in names.items()}
    return metrics


# ---------------------------------------------------------------- training


def teacher_forcing(args, schedule, step):
    """The teacher-forcing ratio at ``step``: constant, or linear down to the floor by half the run."""
    if schedule == "constant":
        return args.teacher_forcing
    progress = min(1.0, step / max(1, args.steps // 2))
    return args.teacher_forcing + (args.tf_floor - args.teacher_forcing) * progress


def batches(args, train_days, test_pairs):
    """Training batches for the task, without end, seeded from ``--seed``: random days in random
    formats, or random digit strings (never a held-out one) of one random length per batch, as
    batching by length does: nothing is padded, and a batch of short strings costs what they cost."""
    rng, held_out = np.random.default_rng([args.seed, 1]), frozenset(s for s, _, _ in test_pairs)
    while True:
        if args.task == "dates":
            yield encode_batch(make_pairs(rng, train_days, args.batch))
        else:
            length = rng.integers(args.min_length, args.max_length + 1)
            yield encode_batch(make_reversals(rng, np.full(args.batch, length), held_out))


def train(args, attention, schedule, train_days, test_pairs):
    """Train one model with Adam, clipping and a cosine learning rate; return it and its curves.

    Every model starts from the same weights (those they share) and sees the same batches
    (seeded from ``--seed``), so they differ only in the attention and in what the decoder reads.
    """
    ts.manual_seed(args.seed)
    stream, coin_rng = batches(args, train_days, test_pairs), np.random.default_rng([args.seed, 2])
    model = Seq2Seq(args.cell, args.embed, args.hidden, attention)
    opt = ts.optim.Adam(model.parameters(), lr=args.lr)
    lr_schedule = ts.optim.CosineAnnealingLR(opt, T_max=args.steps)
    curves = {"loss": [], "ratio": [], "eval_step": [], "exact_match": [], "char_accuracy": []}
    for step in range(1, args.steps + 1):
        source, lengths, decoder_in, decoder_out = next(stream)
        ratio = teacher_forcing(args, schedule, step - 1)
        logits = model(source, lengths, decoder_in, ratio, coin_rng)
        loss = nn.functional.cross_entropy(logits, decoder_out, ignore_index=IGNORE)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        lr_schedule.step()
        curves["loss"].append(loss.item())
        curves["ratio"].append(ratio)
        if step % args.eval_every == 0 or step == args.steps:
            metrics = evaluate(model, test_pairs, args.task)
            curves["eval_step"].append(step)
            curves["exact_match"].append(metrics["exact_match"])
            curves["char_accuracy"].append(metrics["char_accuracy"])
            print(f"  step {step:5d}  loss {np.mean(curves['loss'][-args.eval_every:]):.4f}  "
                  f"teacher forcing {ratio:.2f}  held-out exact {metrics['exact_match']:.3f}  "
                  f"chars {metrics['char_accuracy']:.3f}")
    return model, curves


# ---------------------------------------------------------------- reporting


def label(args, attention, schedule):
    """A model's name in the table and legend."""
    name = args.cell.upper()
    if args.task == "reverse" or attention != "none":
        name += f", {'no attention' if attention == 'none' else attention + ' attention'}"
    if args.task == "reverse" and len(args.tf_schedule) == 1 and args.teacher_forcing == 1.0:
        return name
    if schedule == "constant":
        return f"{name}, teacher forcing {args.teacher_forcing:g}"
    return f"{name}, teacher forcing {args.teacher_forcing:g} -> {args.tf_floor:g}"


def key(args, attention, schedule):
    """A model's key in results.json: what varies between the models of the run (on the
    reversal task its attention kind, even when it alone runs)."""
    if len(args.tf_schedule) == 1 and (len(args.attention) > 1 or args.task == "reverse"):
        return attention
    if len(args.attention) == 1:
        return schedule
    return f"{attention}+{schedule}"


def plot_dates(runs, args, path):
    """Training loss (log scale) and held-out accuracy against step, one colour per model."""
    plt = common.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for run, color in zip(runs.values(), COLORS):
        loss = np.array(run["curves"]["loss"])
        window = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        steps = np.arange(1, len(loss) + 1)
        left.plot(steps, loss, color=color, alpha=0.2, lw=0.7)
        left.plot(steps[window - 1:], smooth, color=color, label=f"{run['label']} (mean of {window})")
        c = run["curves"]
        right.plot(c["eval_step"], c["exact_match"], "o-", ms=3, color=color, label=f"{run['label']}: exact match")
        right.plot(c["eval_step"], c["char_accuracy"], "--", color=color, alpha=0.7, label="per character")
        if run["schedule"] == "linear":
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


COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


def plot_reverse(runs, args, shown, path):
    """Top: held-out exact match against source length (greedy solid, beam dashed), one colour
    per model, and the training losses. Below: the attention weights of the held-out pairs
    ``shown``, one row per model with attention."""
    plt = common.pyplot()
    attending = [run for run in runs.values() if run["attention"] != "none"]
    fig = plt.figure(figsize=(12, 4.6 + 3.6 * len(attending)), layout="constrained")
    grid = fig.add_gridspec(1 + len(attending), 2, height_ratios=[4.6] + [3.6] * len(attending))
    accuracy, losses = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    for run, color in zip(runs.values(), COLORS):
        by_length = run["exact_match_per_length"]
        lengths = [int(n) for n in by_length]
        accuracy.plot(lengths, list(by_length.values()), "-", color=color, label=f"{run['label']}: greedy")
        if args.beam > 1:
            accuracy.plot(lengths, list(run["beam_exact_match_per_length"].values()), "--", color=color,
                          label=f"beam {args.beam}")
        loss = np.array(run["curves"]["loss"])
        window = max(1, min(25, len(loss) // 10))
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        losses.plot(np.arange(window, len(loss) + 1), smooth, color=color, label=f"{run['label']} (mean of {window})")
    per_length = args.eval_size // (args.max_length - args.min_length + 1)
    accuracy.set(ylim=(-0.02, 1.02), xlabel="source length (digits)", ylabel="exact match (whole string)",
                 title=f"Reversing held-out digit strings ({per_length} per length)")
    accuracy.legend(fontsize=8)
    accuracy.grid(alpha=0.3)
    losses.set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats per character)",
               title="Training loss (teacher forcing)")
    losses.legend(fontsize=8)
    losses.grid(alpha=0.3)
    for row, run in enumerate(attending, start=1):
        for column, (source, target, _) in enumerate(shown):
            ax = fig.add_subplot(grid[row, column])
            weights = run["attention_weights"][source][:len(target) + 1, :len(source)]
            image = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            fig.colorbar(image, ax=ax, label="attention weight")
            ax.set(xlabel="source step (digit read)", ylabel="target step (digit written)",
                   title=f"{run['label']}: {source[:12]}{'...' if len(source) > 12 else ''} reversed")
    common.save_figure(fig, path)


def show_translations(pairs, predictions, n=6):
    """Print ``n`` held-out translations: the first wrong ones (up to half), then right ones."""
    wrong = [i for i, (p, (_, t, _)) in enumerate(zip(predictions, pairs)) if p != t]
    right = [i for i, (p, (_, t, _)) in enumerate(zip(predictions, pairs)) if p == t]
    chosen = wrong[:n // 2]
    chosen += right[:n - len(chosen)]
    width = max(len(pairs[i][0]) for i in chosen)
    for i in sorted(chosen):
        source, target, _ = pairs[i]
        mark = "right" if predictions[i] == target else f"WRONG (want {target})"
        print(f"    {source:>{width}s} -> {predictions[i]:{len(target)}s}  {mark}")


def print_summary(args, runs):
    """The table: losses, held-out exact match (dates: overall, the worst format; reversal: per
    third of the lengths, greedy and beam), per-character accuracy, training seconds."""
    rows = []
    if args.task == "dates":
        for run in runs.values():
            worst = min(run["exact_match_per_format"].items(), key=lambda kv: kv[1])
            rows.append([run["label"], run["first_loss"], run["final_loss"], run["exact_match"],
                         run["char_accuracy"], f"{worst[1]:.3f} ({worst[0]})", run["first_step_99"] or "never",
                         f"{run['train_seconds']:.0f}"])
        common.summary(args, ["model", "first loss", "final loss", "held-out exact", "held-out chars",
                              "worst format (exact)", "step >= 0.99", "train s"], rows)
        return
    thirds = [t for t in np.array_split(np.arange(args.min_length, args.max_length + 1), 3) if len(t)]
    for run in runs.values():
        by_length = run["exact_match_per_length"]
        rows.append([run["label"], run["first_loss"], run["final_loss"],
                     *(float(np.mean([by_length[n] for n in t])) for t in thirds),
                     run["exact_match"], run.get("beam_exact_match", run["exact_match"]),
                     run["char_accuracy"], f"{run['train_seconds']:.0f}"])
    common.summary(args, ["model", "first loss", "final loss", *(f"exact {t[0]}-{t[-1]}" for t in thirds),
                          "greedy exact", f"beam {args.beam} exact", "greedy chars", "train s"], rows)


def check_args(args):
    """Raise a UsageError for flags out of range."""
    for name in ("steps", "batch", "embed", "hidden", "eval_size", "eval_every", "beam", "min_length"):
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
    args.attention = common.names(args.attention, ATTENTION, "--attention")
    if len(set(args.attention)) != len(args.attention):
        raise common.UsageError(f"--attention names a kind twice: {','.join(args.attention)}")
    if args.beam > len(TARGET_CHARS):
        raise common.UsageError(f"--beam {args.beam}: at most {len(TARGET_CHARS)} (the target characters) "
                                "hypotheses differ after the first step; choose a smaller --beam")
    if not args.min_length <= args.max_length <= MAX_LENGTH:
        raise common.UsageError(f"--min-length {args.min_length} and --max-length {args.max_length}: need "
                                f"1 <= --min-length <= --max-length <= {MAX_LENGTH}")
    if args.task == "reverse" and args.eval_size < args.max_length - args.min_length + 1:
        raise common.UsageError(f"--eval-size {args.eval_size} gives no held-out string to some of the "
                                f"{args.max_length - args.min_length + 1} lengths; raise --eval-size or narrow "
                                "--min-length..--max-length")
    per_length = args.eval_size // (args.max_length - args.min_length + 1)
    if args.task == "reverse" and per_length > 10 ** args.min_length // 2:
        raise common.UsageError(f"--eval-size {args.eval_size} holds out {per_length} strings of each length, more "
                                f"than half of the {10 ** args.min_length} {args.min_length}-digit strings; "
                                "raise --min-length or lower --eval-size")
    if not 0.0 < args.test_fraction < 1.0:
        raise common.UsageError(f"--test-fraction must lie in (0, 1), got {args.test_fraction}")
    if args.lr <= 0 or args.clip <= 0:
        raise common.UsageError(f"--lr and --clip must be positive, got {args.lr} and {args.clip}")


#: Each task's defaults: flag -> (full run, --quick).
DEFAULTS = {
    "reverse": {"steps": (900, 120), "batch": (64, 32), "hidden": (64, 32), "lr": (1e-2, 1e-2),
                "eval_size": (520, 120), "attention": ("none,additive,dot", "none,additive,dot"),
                "tf_schedule": (["constant"], ["constant"]), "beam": (4, 4), "min_length": (5, 3),
                "max_length": (30, 8)},
    "dates": {"steps": (1500, 150), "batch": (64, 32), "hidden": (128, 32), "lr": (3e-3, 3e-3),
              "eval_size": (1000, 300), "attention": ("none", "none"),
              "tf_schedule": (["constant", "linear"], ["constant", "linear"]), "beam": (1, 1),
              "min_length": (5, 5), "max_length": (30, 30)},
}


def parse_args(argv=None):
    """The flags, each task's defaults filled in, checked (a UsageError if one is out of range)."""
    p = common.parser(__doc__.splitlines()[0], out="runs/seq2seq")
    p.add_argument("--task", default="reverse", choices=("reverse", "dates"))
    p.add_argument("--attention", default=None,
                   help=f"comma-separated kinds from {', '.join(ATTENTION)}, one model each "
                        "(default none,additive,dot; none for dates)")
    p.add_argument("--beam", type=int, default=None,
                   help="beam width for beam search next to greedy decoding (default 4; 1 for dates: greedy only)")
    p.add_argument("--min-length", type=int, default=None, help="shortest digit string to reverse (default 5)")
    p.add_argument("--max-length", type=int, default=None, help="longest digit string to reverse (default 30)")
    p.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    p.add_argument("--teacher-forcing", type=float, default=1.0,
                   help="teacher-forcing ratio: the constant one, and where the linear schedule starts")
    p.add_argument("--tf-schedule", nargs="+", default=None, choices=("constant", "linear"),
                   help="one model per schedule named (default: both for dates, constant for reverse)")
    p.add_argument("--tf-floor", type=float, default=0.5, help="where the linear schedule ends")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default 900, dates 1500; 120 and 150 with --quick)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 64; 32 with --quick)")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=None, help="hidden size (default 64, dates 128; 32 with --quick)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam's learning rate, annealed by a cosine (default 1e-2, dates 3e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of the days held out (dates)")
    p.add_argument("--eval-size", type=int, default=None,
                   help="held-out pairs (default 520, as many of each length; dates 1000; fewer with --quick)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default steps / 15)")
    args = p.parse_args(argv)
    common.defaults(args, **DEFAULTS[args.task])
    if args.eval_every is None:
        args.eval_every = max(1, args.steps // 15)
    check_args(args)
    return args


def main(argv=None):
    """Parse flags, train one model per attention kind and schedule, decode the held-out
    sources (greedy and beam search), print, write JSON and PNG."""
    args = parse_args(argv)
    common.start(args)

    if args.task == "dates":
        train_days, test_days = split_dates(np.random.default_rng(args.seed), args.test_fraction)
        test_pairs = make_pairs(np.random.default_rng([args.seed, 3]), test_days, args.eval_size)
        print(f"{len(train_days)} training days, {len(test_days)} held-out days ({args.eval_size} held-out pairs); "
              f"{args.cell.upper()} encoder-decoder, hidden {args.hidden}, {args.steps} steps of {args.batch}")
    else:
        train_days, span = None, np.arange(args.min_length, args.max_length + 1)
        test_pairs = held_out_reversals(np.random.default_rng([args.seed, 3]), span, args.eval_size // len(span))
        print(f"reversing digit strings of {args.min_length}-{args.max_length} digits: {len(test_pairs)} held-out "
              f"strings; {args.cell.upper()} encoder-decoder, hidden {args.hidden}, {args.steps} steps of {args.batch}")
    # the heatmaps' held-out sources: one of the middle length and one of the longest
    lengths = [len(s) for s, _, _ in test_pairs]
    shown = [] if args.task == "dates" else [lengths.index((args.min_length + args.max_length) // 2), len(lengths) - 1]
    runs = {}
    for attention in args.attention:
        for schedule in args.tf_schedule:
            name = label(args, attention, schedule)
            print(f"\n{name}")
            with common.Timer() as timer:
                model, curves = train(args, attention, schedule, train_days, test_pairs)
            with common.Timer() as decoding:
                final = evaluate(model, test_pairs, args.task, args.beam)
            print(f"  held-out translations (greedy; decoded in {decoding.seconds:.1f} s"
                  f"{f', beam {args.beam} included' if args.beam > 1 else ''}):")
            show_translations(test_pairs, final["predictions"])
            reached = [s for s, e in zip(curves["eval_step"], curves["exact_match"]) if e >= 0.99]
            weights = final.pop("weights")
            if attention != "none":
                final["attention_weights"] = {test_pairs[i][0]: np.round(weights[i], 4) for i in shown}
            runs[key(args, attention, schedule)] = {
                "label": name, "attention": attention, "schedule": schedule,
                **{k: v for k, v in final.items() if k != "predictions"},
                "first_loss": curves["loss"][0], "final_loss": float(np.mean(curves["loss"][-10:])),
                "first_step_99": reached[0] if reached else None, "train_seconds": timer.seconds,
                "decode_seconds": decoding.seconds, "curves": curves,
                "examples": [{"source": s, "target": t, "prediction": pr}
                             for (s, t, _), pr in zip(test_pairs[:20], final["predictions"][:20])],
            }

    print()
    print_summary(args, runs)
    if args.task == "dates":
        plot_dates(runs, args, f"{args.out}/seq2seq.png")
    else:
        plot_reverse(runs, args, [test_pairs[i] for i in shown], f"{args.out}/seq2seq_attention.png")
    results = {"config": vars(args), "models": runs}
    common.write_json(f"{args.out}/results.json", results)
    return results


if __name__ == "__main__":
    common.run(main)
