"""An LSTM learns the melodies of Bach's chorales and writes new ones (MIDI, WAV, piano roll).

The data are the four-part chorales that ship inside the ``music21`` package (no download:
its 371 numbered chorales are 350 distinct files). Only the soprano voice, the tune, is
used. Each chorale is transposed to one key, C major or A minor by its mode (music21's key
analysis of the whole score gives the mode and the tonic; the shift is the nearest one, at
most a tritone), so that the model learns one key's melodies, not twelve copies of them.

A melody is encoded one token per note: the note's pitch (MIDI number, or R for a rest)
and its duration in quarter notes joined into one symbol, "67:1" for a quarter-note G4,
"R:1/2" for an eighth rest, tied notes merged into one. A piece reads <major> or <minor>,
then its notes, then <end>. One token per note keeps the sequences short (50 notes a
chorale on average) and makes every token a musical decision; a 16th-note grid with "hold"
tokens would be four times longer and mostly predictable holds. The vocabulary is the set
of symbols in the training chorales, plus <unk>: a validation or test note never seen in training
becomes <unk> (the run prints how many), so nothing from the held-out chorales leaks into the
model's output layer.

An embedding feeds an LSTM (or ``--cell gru``) whose outputs a linear layer turns into
next-token logits. Training is whole-sequence BPTT on padded batches of chorales
(``lengths=``, padding ignored by the loss), Adam and gradient-norm clipping.

Chorales are split three ways, whole and by tune: Bach harmonized many hymn tunes more than
once, in other keys, octaves and rhythms and with other passing notes, so the settings of one
tune are found first (``tune_groups``: the same opening intervals, or melodies that are mostly
the same pitch classes counted from their last note) and each group goes to one side only:
training (about 70%), validation (15%: picks the epoch and the bigram's smoothing) and test
(15%: touched once, at the end, for the reported losses). Losses are in bits per token
(<end> counted), next to two baselines computed here on the same tokens: a unigram (add-one
smoothing) and a bigram (smoothed toward the unigram, see ``bigram``). The weights of the
epoch with the best validation loss write the new pieces: each starts from a mode token
(major and minor in turn) and is drawn token by token at ``--temperature`` until <end> or
``--sample-length`` notes.

Are the samples music-like? Two measures, for the model's samples, the training chorales
and pieces drawn from the two baselines: the share of notes in the key (after
transposition the white keys: the C major scale, which is also A natural minor), and the
distribution of melodic intervals in semitones between successive notes (its share of
steps of at most a whole tone, and its total-variation distance from the training
chorales').

    python examples/music.py                          # all 350 chorales, under 3 minutes here
    python examples/music.py --quick                  # 30 chorales, a smoke run
    python examples/music.py --cell gru --temperature 0.8 --samples 6

The first run parses the chorales (half a minute) and keeps their tokens in
<out>/chorales.json, which later runs into the same --out read instead. Writes
<out>/sample_<i>.mid and .wav (16-bit mono, a simple additive synthesis, to listen to
without a synthesizer), <out>/results.json and <out>/music.png (a training chorale and a
new piece as piano rolls, the interval distributions, the loss curves).
"""

import difflib
import json
import math
import os
import pathlib
import wave
from fractions import Fraction

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn
from tinyseq.nn import functional as F
from tinyseq.nn.utils.rnn import pad_sequence

CACHE_VERSION = "music-1"  # change it when the encoding changes: older caches are then re-parsed
SPECIALS = ["<pad>", "<major>", "<minor>", "<end>", "<unk>"]
PAD, MAJOR, MINOR, END, UNK = range(5)
NEVER_DRAWN = [PAD, MAJOR, MINOR, UNK]  # tokens a generator is not allowed to write
SCALE = {0, 2, 4, 5, 7, 9, 11}  # pitch classes of C major = A natural minor
TONIC = {"major": 0, "minor": 9}  # C, A
MAX_INTERVAL = 12  # intervals are counted up to an octave, larger ones with the octave
RATE, BPM = 22050, 100  # the WAV's sample rate and tempo (quarter notes a minute)
STAT_PIECES = 100  # pieces drawn from each generator for the statistics
BIGRAM_ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0)  # the bigram's smoothing: the best on validation is used
OPENING = 8  # chorales whose first OPENING melodic intervals agree are settings of one tune
SAME_TUNE = 0.8  # ... and so are those whose outlines are at least this similar (difflib's ratio)


# ---------------------------------------------------------------- encoding


def encode(melody, shift=0):
    """The tokens of a music21 stream's notes and rests, in order: "pitch:duration", the pitch
    a MIDI number moved by ``shift`` semitones (or R for a rest), the duration in quarter notes
    as an exact fraction ("1", "1/2", "3/2"). Tied notes are merged; a chord gives its top
    note; grace notes (no duration) are left out."""
    tokens = []
    for n in melody.stripTies().flatten().notesAndRests:
        duration = Fraction(n.quarterLength).limit_denominator(48)
        if duration == 0:
            continue
        pitch = "R" if n.isRest else str(max(p.midi for p in n.pitches) + shift)
        tokens.append(f"{pitch}:{duration}")
    return tokens


def parse_token(token):
    """(MIDI pitch or None for a rest, duration in quarter notes as a Fraction)."""
    pitch, duration = token.split(":")
    return (None if pitch == "R" else int(pitch)), Fraction(duration)


def decode(tokens):
    """A music21 stream of the notes and rests ``tokens`` spell (specials skipped)."""
    from music21 import note, stream

    melody = stream.Stream()
    for token in tokens:
        if token in SPECIALS:
            continue
        pitch, duration = parse_token(token)
        melody.append(note.Rest(quarterLength=duration) if pitch is None
                      else note.Note(pitch, quarterLength=duration))
    return melody


def encode_chorale(path):
    """One chorale's soprano as {"name", "mode", "shift", "tokens"}, moved to C major or A minor."""
    from music21 import corpus

    score = corpus.parse(path)
    parts = {part.partName: part for part in score.parts}
    soprano = parts.get("Soprano", score.parts[0])
    key = score.analyze("key")
    mode = "minor" if key.mode == "minor" else "major"
    shift = (TONIC[mode] - key.tonic.pitchClass + 6) % 12 - 6  # the nearest: -6 .. +5 semitones
    return {"name": str(path), "mode": mode, "shift": shift, "tokens": encode(soprano, shift)}


def chorale_paths():
    """The distinct chorale files of music21's corpus, in its order (its iterator names 21 of
    them twice, under two numbers: kept once, or one file could be on both sides of the split)."""
    from music21 import corpus

    return list(dict.fromkeys(str(p) for p in corpus.chorales.Iterator(returnType="filename")))


def load_chorales(paths, cache_path):
    """The chorales at ``paths``, encoded. Those found in the JSON cache (written by an earlier
    run, same CACHE_VERSION) are read from it; the others are parsed and added to it (written
    atomically). A cache that is not what this function writes is parsed again."""
    cache_path = pathlib.Path(cache_path)
    cache = {}
    if cache_path.is_file():
        try:
            stored = json.loads(cache_path.read_text())
            if not isinstance(stored, dict):
                raise TypeError("not a JSON object")
            if stored.get("version") == CACHE_VERSION:
                cache = {c["name"]: c for c in stored["chorales"]}
        except (ValueError, KeyError, TypeError):
            print(f"{cache_path} is unreadable: parsing again")
            cache = {}
    missing = [p for p in paths if p not in cache]
    if missing:
        print(f"parsing {len(missing)} chorales with music21 (once: kept in {cache_path}) ...")
        with common.Timer() as timer:
            cache.update((p, encode_chorale(p)) for p in missing)
        print(f"  {timer.seconds:.1f} s")
        common.write_json(cache_path, {"version": CACHE_VERSION, "chorales": list(cache.values())})
    return [cache[p] for p in paths]


def pitches(chorale):
    """The MIDI pitches of a chorale's notes, rests left out."""
    return [p for p, _ in map(parse_token, chorale["tokens"]) if p is not None]


def outline(chorale):
    """The tune as pitch classes counted from its last note (0-11): the same in any key or octave;
    a passing note added changes one symbol of it, not two; and a tune ends on its final, the
    same note in every setting, where its first note may be an upbeat one setting leaves out."""
    notes = pitches(chorale)
    return [(p - notes[-1]) % 12 for p in notes]


def opening(chorale):
    """The first OPENING melodic intervals in semitones: the same in any key or octave."""
    return tuple(np.diff(pitches(chorale)[:OPENING + 1]).tolist())


def similarity(a, b):
    """How alike two outlines are: difflib's ratio, 2 * (symbols matched in order) / (both lengths)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def alike(a, b):
    """Whether two outlines are at least SAME_TUNE similar (difflib's cheap upper bounds first:
    most pairs stop there)."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return all(bound() >= SAME_TUNE for bound in (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio))


def same_tune(a, b):
    """Whether two chorales are taken for settings of one tune: the same opening, or alike outlines."""
    return opening(a) == opening(b) or alike(outline(a), outline(b))


def tune_groups(chorales):
    """A group number for each chorale; the settings of one hymn tune share it. Every pair is
    checked as ``same_tune`` does, and the groups are the linked clusters (union-find), so a
    chain of versions, each like the next, ends up in one group."""
    group = list(range(len(chorales)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    openings, outlines = [opening(c) for c in chorales], [outline(c) for c in chorales]
    for i in range(len(chorales)):
        for j in range(i):
            if root(i) != root(j) and (openings[i] == openings[j] or alike(outlines[i], outlines[j])):
                group[root(j)] = root(i)
    return [root(i) for i in range(len(chorales))]


def split(chorales, val_fraction, test_fraction, rng):
    """(training, validation, test) chorales, whole tune groups each: the groups in a random
    order fill the test set to about ``test_fraction`` of the chorales, then the validation set
    to ``val_fraction``; the rest is for training. Also returns the number of groups."""
    members = {}
    for chorale, group in zip(chorales, tune_groups(chorales)):
        members.setdefault(group, []).append(chorale)
    wanted = [max(1, round(test_fraction * len(chorales))), max(1, round(val_fraction * len(chorales)))]
    test, val, train = sets = [], [], []
    for g in rng.permutation(sorted(members)):
        k = next((k for k in (0, 1) if len(sets[k]) < wanted[k]), 2)
        sets[k].extend(members[g])
    return train, val, test, len(members)


class Vocab:
    """Token strings <-> ids: the specials first, then every symbol of the (training) ``chorales``
    sorted. A symbol not among them (in a validation or test chorale) becomes <unk>."""

    def __init__(self, chorales):
        symbols = sorted({t for c in chorales for t in c["tokens"]}, key=lambda t: (parse_token(t)[0] or 0, t))
        self.tokens = SPECIALS + symbols
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self):
        return len(self.tokens)

    def ids(self, chorale):
        """A chorale as ids: its mode token, its notes (<unk> for one not in the vocabulary), <end>."""
        start = MINOR if chorale["mode"] == "minor" else MAJOR
        return [start] + [self.index.get(t, UNK) for t in chorale["tokens"]] + [END]

    def words(self, ids):
        """The token strings of ``ids``."""
        return [self.tokens[i] for i in ids]


def pad_batch(sequences):
    """Padded (T, B) inputs and targets (the inputs shifted by one; <pad> beyond each end) and
    the input lengths."""
    x, lengths = pad_sequence([np.asarray(s[:-1]) for s in sequences], padding_value=PAD, return_lengths=True)
    y = pad_sequence([np.asarray(s[1:]) for s in sequences], padding_value=PAD)
    return x.data, y.data, lengths


# ---------------------------------------------------------------- baselines


def pairs(sequences):
    """Every (previous token, next token) of the sequences, as two arrays."""
    prev = np.concatenate([s[:-1] for s in sequences])
    nxt = np.concatenate([s[1:] for s in sequences])
    return prev, nxt


def unigram(sequences, size):
    """P(token) from the predicted tokens (all but each sequence's first), add-one smoothing."""
    counts = np.bincount(pairs(sequences)[1], minlength=size) + 1.0
    return counts / counts.sum()


def bigram(sequences, size, alpha=1.0):
    """P(next | previous) as a (size, size) matrix, smoothed toward the unigram:
    (count(prev, next) + alpha * P(next)) / (count(prev) + alpha)."""
    prev, nxt = pairs(sequences)
    counts = np.zeros((size, size))
    np.add.at(counts, (prev, nxt), 1.0)
    return (counts + alpha * unigram(sequences, size)) / (counts.sum(1, keepdims=True) + alpha)


def bits_per_token(probabilities):
    """The mean of -log2 of the probabilities given to the tokens that came."""
    return float(-np.log2(probabilities).mean())


# ---------------------------------------------------------------- model


class MelodyModel(nn.Module):
    """Embedding -> recurrent layers -> linear: next-token logits, (T, B) ids in, (T, B, V) out."""

    def __init__(self, vocab_size, cell, embed, hidden, layers, dropout):
        self.embed = nn.Embedding(vocab_size, embed)
        self.rnn = common.CELLS[cell](embed, hidden, num_layers=layers, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, state=None, lengths=None):
        out, state = self.rnn(self.drop(self.embed(x)), state, lengths=lengths)
        return self.head(self.drop(out)), state


def mean_bits(model, sequences, batch_size=64):
    """Bits per predicted token over ``sequences`` (each sequence's tokens after its first)."""
    model.eval()
    total, count = 0.0, 0
    with ts.no_grad():
        for start in range(0, len(sequences), batch_size):
            x, y, lengths = pad_batch(sequences[start:start + batch_size])
            logits, _ = model(x, lengths=lengths)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                     ignore_index=PAD, reduction="sum").item()
            count += int(lengths.sum())
    model.train()
    return total / count / math.log(2)


def train(model, train_seqs, val_seqs, args, rng):
    """Epochs of shuffled padded batches; returns the per-epoch curves and the best epoch's weights."""
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    history = {"train_bits": [], "val_bits": []}
    best = (math.inf, None)
    for epoch in range(args.epochs):
        order, losses = rng.permutation(len(train_seqs)), []
        for start in range(0, len(order), args.batch_size):
            x, y, lengths = pad_batch([train_seqs[i] for i in order[start:start + args.batch_size]])
            logits, _ = model(x, lengths=lengths)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            losses.append(loss.item() / math.log(2))
        history["train_bits"].append(float(np.mean(losses)))
        history["val_bits"].append(mean_bits(model, val_seqs))
        if history["val_bits"][-1] < best[0]:
            best = (history["val_bits"][-1], model.state_dict())
        if epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs - 1:
            print(f"  epoch {epoch + 1:3d}  train {history['train_bits'][-1]:.3f}  "
                  f"validation {history['val_bits'][-1]:.3f} bits/token")
    return history, best[1]


# ---------------------------------------------------------------- sampling


def sample_model(model, modes, length, temperature, rng):
    """One piece per mode token in ``modes``, drawn together: lists of ids after the mode token,
    each up to its <end> (left out) or ``length`` notes. The NEVER_DRAWN tokens are never drawn."""
    model.eval()
    pieces, done = [[] for _ in modes], np.zeros(len(modes), dtype=bool)
    x, state = np.array([modes]), None
    with ts.no_grad():
        for _ in range(length):
            logits, state = model(x, state)
            z = logits.data[-1].astype(np.float64) / temperature
            z[:, NEVER_DRAWN] = -np.inf
            p = np.exp(z - z.max(1, keepdims=True))
            drawn = [rng.choice(len(row), p=row / row.sum()) for row in p]
            for piece, token, finished in zip(pieces, drawn, done):
                if not finished and token != END:
                    piece.append(token)
            done |= np.array(drawn) == END
            if done.all():
                break
            x = np.array([drawn])
    model.train()
    return pieces


def sample_bigram(probs, modes, length, rng):
    """Pieces drawn from a bigram matrix (or, with a 1-D unigram, token by token), as ``sample_model``."""
    pieces = []
    for mode in modes:
        piece, token = [], mode
        for _ in range(length):
            p = (probs[token] if probs.ndim == 2 else probs).copy()
            p[NEVER_DRAWN] = 0
            token = rng.choice(len(p), p=p / p.sum())
            if token == END:
                break
            piece.append(token)
        pieces.append(piece)
    return pieces


# ---------------------------------------------------------------- is it music?


def notes_of(tokens):
    """The (pitch or None, duration) of every note and rest token (specials skipped)."""
    return [parse_token(t) for t in tokens if t not in SPECIALS]


def in_key_share(pieces):
    """The share of notes (rests aside) whose pitch class is in C major / A natural minor."""
    pitches = [p for piece in pieces for p, _ in notes_of(piece) if p is not None]
    return float(np.mean([p % 12 in SCALE for p in pitches])) if pitches else 0.0


def interval_histogram(pieces):
    """The distribution of melodic intervals between successive notes (rests skipped), in
    semitones from -MAX_INTERVAL to +MAX_INTERVAL (larger ones counted at the ends)."""
    counts = np.zeros(2 * MAX_INTERVAL + 1)
    for piece in pieces:
        pitches = [p for p, _ in notes_of(piece) if p is not None]
        steps = np.clip(np.diff(pitches), -MAX_INTERVAL, MAX_INTERVAL).astype(int)
        np.add.at(counts, steps + MAX_INTERVAL, 1)
    return counts / max(counts.sum(), 1)


def music_stats(pieces, reference):
    """In-key share, share of steps (|interval| <= 2 semitones, repeats included), the
    total-variation distance of the interval distribution from ``reference``'s, notes a piece."""
    hist = interval_histogram(pieces)
    return {"in_key": in_key_share(pieces),
            "steps": float(hist[MAX_INTERVAL - 2:MAX_INTERVAL + 3].sum()),
            "interval_tv": float(0.5 * np.abs(hist - interval_histogram(reference)).sum()),
            "notes_per_piece": float(np.mean([sum(p is not None for p, _ in notes_of(piece)) for piece in pieces]))}


# ---------------------------------------------------------------- output


def write_wav(path, notes, rate=RATE, bpm=BPM):
    """Render (MIDI pitch or None, quarter notes) as a 16-bit mono WAV: each note a few harmonics
    with a short attack and release and a gentle decay; rests are silence. Returns the frame count,
    round(total quarter notes * 60 / bpm * rate). Written to a temporary file, then renamed."""
    seconds_per_quarter = 60.0 / bpm
    onsets = np.cumsum([0.0] + [float(d) for _, d in notes]) * seconds_per_quarter
    frames = np.round(onsets * rate).astype(int)  # from the onsets, so the rounding never drifts
    audio = np.zeros(frames[-1])
    for (pitch, _), a, b in zip(notes, frames[:-1], frames[1:]):
        if pitch is None or b <= a:
            continue
        t = np.arange(b - a) / rate
        freq = 440.0 * 2 ** ((pitch - 69) / 12)
        tone = sum(amp * np.sin(2 * np.pi * k * freq * t) for k, amp in ((1, 1.0), (2, 0.4), (3, 0.2)))
        envelope = np.minimum(1.0, np.minimum(t / 0.01, (t[-1] - t) / 0.03 + 1e-9)) * np.exp(-1.5 * t)
        audio[a:b] = tone * envelope
    peak = np.abs(audio).max() if len(audio) else 0
    pcm = (audio / peak * 0.8 * 32767 if peak > 0 else audio).astype("<i2")
    tmp = pathlib.Path(path).with_name(f".{pathlib.Path(path).name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)
    return len(pcm)


def write_midi(path, tokens):
    """The tokens' melody as a MIDI file (music21, at BPM)."""
    from music21 import tempo

    melody = decode(tokens)
    melody.insert(0, tempo.MetronomeMark(number=BPM))
    melody.write("midi", fp=str(path))


def piano_roll(ax, tokens, title):
    """Notes as horizontal bars: pitch against time in quarter notes."""
    time = 0.0
    for pitch, duration in notes_of(tokens):
        if pitch is not None:
            ax.broken_barh([(time, float(duration))], (pitch - 0.4, 0.8), color="tab:blue", edgecolor="black",
                           linewidth=0.5)
        time += float(duration)
    pitches = [p for p, _ in notes_of(tokens) if p is not None] or [60]
    ax.set(xlim=(0, max(time, 1)), ylim=(min(pitches) - 2, max(pitches) + 2), title=title,
           yticks=range(min(pitches) // 2 * 2 - 2, max(pitches) + 3, 2),
           xlabel="time (quarter notes)", ylabel="MIDI pitch (60 = middle C)")
    for p in range(min(pitches) - 1, max(pitches) + 2):
        if p % 12 not in SCALE:
            ax.axhspan(p - 0.5, p + 0.5, color="0.92", zorder=0)  # the black keys, shaded
    ax.grid(axis="x", alpha=0.3)


def plot(example, sample, histograms, history, baselines, args, path):
    """Two piano rolls, the interval distributions and the loss curves, in one figure."""
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    fig.subplots_adjust(hspace=0.35, wspace=0.2)
    piano_roll(axes[0, 0], example["tokens"], f"a training chorale ({example['name']}, {example['mode']}; "
               "black keys shaded)")
    piano_roll(axes[0, 1], sample["tokens"], f"a new one: {sample['midi']} by the {args.cell} "
               f"({sample['mode']}, T = {args.temperature})")
    ax = axes[1, 0]
    semitones = np.arange(-MAX_INTERVAL, MAX_INTERVAL + 1)
    width = 0.8 / len(histograms)
    for i, (label, hist) in enumerate(histograms.items()):
        ax.bar(semitones + (i - (len(histograms) - 1) / 2) * width, hist, width, label=label)
    ax.set_xticks(semitones[::2])
    ax.set(xlabel="melodic interval (semitones; the ends count all larger)", ylabel="share of intervals",
           title="intervals between successive notes")
    ax.legend()
    ax = axes[1, 1]
    epochs = np.arange(1, len(history["val_bits"]) + 1)
    ax.plot(epochs, history["train_bits"], label=f"{args.cell}, training")
    ax.plot(epochs, history["val_bits"], label=f"{args.cell}, validation")
    for (name, bits), style in zip(baselines.items(), (":", "--")):
        ax.axhline(bits["validation"], color="gray", linestyle=style, label=f"{name}, validation")
    ax.set(xlabel="epoch", ylabel="bits per token", title="loss (cross-entropy per note token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle("Bach chorale melodies: a recurrent network learns them and writes new ones")
    common.save_figure(fig, path)


# ---------------------------------------------------------------- the run


def arguments(argv):
    p = common.parser(__doc__.splitlines()[0], out="runs/music")
    p.add_argument("--chorales", type=int, default=None, help="how many of the 350 chorales to use "
                   "(default all, 30 with --quick)")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="the share of chorales for validation (picks the epoch and the bigram's smoothing)")
    p.add_argument("--test-fraction", type=float, default=0.15,
                   help="the share of chorales for the test (the reported losses)")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=None, help="default 128, 64 with --quick")
    p.add_argument("--layers", type=int, default=None, help="default 2, 1 with --quick")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=None, help="default 60, 30 with --quick")
    p.add_argument("--batch-size", type=int, default=16, help="chorales per update")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, > 0 (below 1: safer)")
    p.add_argument("--samples", type=int, default=4, help="new pieces to write (MIDI and WAV each)")
    p.add_argument("--sample-length", type=int, default=80, help="at most this many notes a piece")
    args = p.parse_args(argv)
    common.defaults(args, chorales=(350, 30), hidden=(128, 64), layers=(2, 1), epochs=(60, 30))
    for name in ("chorales", "embed", "hidden", "layers", "epochs", "batch_size", "samples", "sample_length"):
        if getattr(args, name) < 1:
            raise common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.chorales >= 10:
        raise common.UsageError(f"--chorales must be at least 10 (to hold some out), got {args.chorales}")
    for name in ("val_fraction", "test_fraction"):
        if not 0 < getattr(args, name) < 0.5:
            raise common.UsageError(f"--{name.replace('_', '-')} must be in (0, 0.5), got {getattr(args, name)}")
    if args.val_fraction + args.test_fraction > 0.5:
        raise common.UsageError(f"--val-fraction plus --test-fraction must be at most 0.5 (half the chorales "
                                f"to train on), got {args.val_fraction} + {args.test_fraction}")
    if not 0 <= args.dropout < 1:
        raise common.UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    for name in ("lr", "clip", "temperature"):
        if not getattr(args, name) > 0:
            raise common.UsageError(f"--{name} must be > 0, got {getattr(args, name)}")
    return args


def main(argv=None):
    """Parse (or read) the chorales, train, compare with the baselines, write the new pieces;
    returns the results dict also written as JSON."""
    args = arguments(argv)
    common.require("music21", "examples", "examples/music.py (the Bach chorales)")
    paths = chorale_paths()
    if args.chorales > len(paths):
        raise common.UsageError(f"--chorales {args.chorales}: music21's corpus has {len(paths)} distinct "
                                f"chorales; choose at most {len(paths)}")
    rng = common.start(args)
    chorales = load_chorales(paths[:args.chorales], pathlib.Path(args.out) / "chorales.json")
    train_set, val_set, test_set, groups = split(chorales, args.val_fraction, args.test_fraction, rng)
    vocab = Vocab(train_set)
    train_seqs, val_seqs, test_seqs = ([vocab.ids(c) for c in part] for part in (train_set, val_set, test_set))
    unknown = {name: sum(t == UNK for s in seqs for t in s) for name, seqs in (("validation", val_seqs),
                                                                              ("test", test_seqs))}
    minor = sum(c["mode"] == "minor" for c in chorales)
    print(f"{len(chorales)} chorales ({minor} minor) in {groups} tune groups: {len(train_set)} training, "
          f"{len(val_set)} validation, {len(test_set)} test chorales; {sum(map(len, train_seqs))} training "
          f"tokens, vocabulary {len(vocab)} (from training; <unk> for {unknown['validation']} validation "
          f"and {unknown['test']} test tokens)")

    # Baselines: the bigram's smoothing is picked on validation, like the network's epoch; test is for reporting.
    uni = unigram(train_seqs, len(vocab))
    held_out = {"validation": pairs(val_seqs), "test": pairs(test_seqs)}
    alpha = min(BIGRAM_ALPHAS, key=lambda a: bits_per_token(bigram(train_seqs, len(vocab), a)[held_out["validation"]]))
    bi = bigram(train_seqs, len(vocab), alpha)
    baselines = {"unigram": {part: bits_per_token(uni[nxt]) for part, (_, nxt) in held_out.items()},
                 "bigram": {part: bits_per_token(bi[prev, nxt]) for part, (prev, nxt) in held_out.items()}}

    model = MelodyModel(len(vocab), args.cell, args.embed, args.hidden, args.layers, args.dropout)
    with common.Timer() as timer:
        history, best_weights = train(model, train_seqs, val_seqs, args, rng)
    best_epoch = int(np.argmin(history["val_bits"])) + 1
    model.load_state_dict(best_weights)
    model_bits = {"validation": min(history["val_bits"]), "test": mean_bits(model, test_seqs)}

    # The statistics take STAT_PIECES pieces of each generator; the first --samples of the model's are written.
    modes = [(MAJOR, MINOR)[i % 2] for i in range(max(args.samples, STAT_PIECES))]
    drawn = {"unigram": sample_bigram(uni, modes, args.sample_length, rng),
             "bigram": sample_bigram(bi, modes, args.sample_length, rng),
             "model": sample_model(model, modes, args.sample_length, args.temperature, rng)}
    drawn = {name: [vocab.words(piece) for piece in pieces] for name, pieces in drawn.items()}
    reference = [c["tokens"] for c in train_set]
    stats = {"bach": music_stats(reference, reference)}
    stats.update((name, music_stats(pieces, reference)) for name, pieces in drawn.items())

    files = []
    for i, piece in enumerate(drawn["model"][:args.samples]):
        write_midi(pathlib.Path(args.out) / f"sample_{i}.mid", piece)
        frames = write_wav(pathlib.Path(args.out) / f"sample_{i}.wav", notes_of(piece))
        files.append({"midi": f"sample_{i}.mid", "wav": f"sample_{i}.wav", "mode": ("major", "minor")[i % 2],
                      "notes": len(piece), "seconds": frames / RATE, "tokens": piece})
    print(f"wrote {len(files)} pieces to {args.out}/sample_<i>.mid and .wav")

    names = {"bach": "Bach (training chorales)", "unigram": "unigram (add-one)",
             "bigram": f"bigram (alpha {alpha:g}, picked on validation)",
             "model": f"{args.cell} (epoch {best_epoch}, picked on validation)"}
    bits = {"bach": {"validation": "-", "test": "-"}, "model": model_bits, **baselines}
    rows = [[names[k], bits[k]["validation"], bits[k]["test"], s["in_key"], s["steps"], s["interval_tv"],
             s["notes_per_piece"]] for k, s in stats.items()]
    common.summary(args, ["source", "validation bits/token", "test bits/token", "notes in key",
                          "steps (<= 2 semitones)", "interval TV to Bach", "notes a piece"], rows)
    print(f"first piece by the {args.cell}: {' '.join(drawn['model'][0][:24])} ...")

    histograms = {"Bach (training)": interval_histogram(reference),
                  f"{args.cell} samples": interval_histogram(drawn["model"]),
                  "bigram samples": interval_histogram(drawn["bigram"]),
                  "unigram samples": interval_histogram(drawn["unigram"])}
    example = min(train_set, key=lambda c: abs(len(c["tokens"]) - 40))  # about 10 bars: readable as a roll
    shown = min(range(len(files)), key=lambda i: abs(len(files[i]["tokens"]) - 40))
    plot(example, files[shown], histograms, history, baselines, args, f"{args.out}/music.png")
    summary = {"config": vars(args), "history": history, "best_epoch": best_epoch, "model_bits": model_bits,
               "baselines_bits": baselines, "bigram_alpha": alpha, "music": stats, "vocab_size": len(vocab),
               "unknown_tokens": unknown, "tune_groups": groups,
               "chorales": {"train": len(train_set), "validation": len(val_set), "test": len(test_set),
                            "minor": minor},
               "split": {part: [c["name"] for c in chorales_of]
                         for part, chorales_of in (("train", train_set), ("validation", val_set), ("test", test_set))},
               "train_seconds": timer.seconds, "samples": files}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
