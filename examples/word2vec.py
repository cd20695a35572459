"""Word vectors from the standard library's docstrings and comments: CBOW and skip-gram (word2vec).

Both models are two embedding matrices and nothing else (no biases): input vectors v_w, the
ones kept as the word vectors, and output vectors u_w that score a word against a context.
Both are trained with negative sampling (a full softmax over the vocabulary cost several
times more per step here): for a target word t, K noise words n_1..n_K drawn from the
unigram distribution raised to the power 0.75, and a vector h made from the input side,

    loss = -log sigmoid(u_t . h) - sum_k log sigmoid(-u_nk . h)

- CBOW (continuous bag of words): h = the mean of the input vectors of the words around a
  centre word (its window), and t = the centre word.
- Skip-gram with negative sampling (SGNS): one (centre w, context c) pair at a time,
  h = v_w and t = c.

Noise words that happen to equal t are kept, as a simplification. The output vectors start
at zero, so the first loss is known: (K + 1) ln 2, every sigmoid at 1/2. Both train with Adam
on random batches (--batch-size centre words for CBOW, pairs for skip-gram).

The corpus is offline: the docstrings (``ast``) and comments (``tokenize``) of the standard
library's .py files on this machine, in sorted path order, leaving out the tests, the codec
tables in encodings/ and site-packages (612 files, 421,000 words on Python 3.11). A word is a
run of two or more ASCII letters between non-word characters, lowercased (``os.path`` gives
two words, ``utf8`` and ``__init__`` none); the --vocab most frequent words are kept and the
rest dropped from the stream; frequent words are subsampled with word2vec's rule (a word of
frequency f is kept with probability sqrt(t / f) + t / f, t = --subsample); each centre
word's window reaches a distance drawn uniformly from 1..--window, as in word2vec, so near
words count more.

    python examples/word2vec.py                    # both models, about 2.5 minutes on 2 cores
    python examples/word2vec.py --models skipgram --dim 100 --steps 10000
    python examples/word2vec.py --quick            # 60 files, 300 steps: about 15 seconds

Prints each model's first and final loss and time; how close some hand-picked related pairs
(read/write, open/close, get/set, ...) are: the rank of one word among all words by cosine
similarity to the other (1 = nearest; chance about V / 2), the pairs' mean cosine and that of
random pairs; and the 5 nearest neighbours (cosine similarity of the input vectors) of a few
query words. Writes <out>/word2vec.png (a 2-D PCA of each query word and its neighbours, one
panel per model, and the loss curves) and <out>/results.json.
"""

import ast
import io
import pathlib
import re
import sysconfig
import tokenize

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

MODELS = ("cbow", "skipgram")
QUERIES = ("file", "list", "error", "return", "string", "thread")
RELATED = (("read", "write"), ("open", "close"), ("get", "set"), ("start", "stop"), ("true", "false"),
           ("key", "value"), ("encode", "decode"), ("input", "output"), ("client", "server"),
           ("first", "last"), ("add", "remove"), ("upper", "lower"), ("begin", "end"), ("left", "right"),
           ("request", "response"), ("parent", "child"), ("before", "after"), ("minimum", "maximum"),
           ("width", "height"), ("encoder", "decoder"))
SKIPPED_DIRS = {"test", "tests", "idle_test", "site-packages", "encodings"}


# ---------------------------------------------------------------- corpus


def source_files(max_files=None):
    """The standard library's .py files in sorted path order, without the tests, the codec
    tables and site-packages; only the first ``max_files`` if given."""
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if not SKIPPED_DIRS & set(p.relative_to(stdlib).parts))
    return files[:max_files]


def words_of(source):
    """The words of a module's docstrings (module, classes, functions) and comments: lowercase
    ASCII letters only, two or more; none for a file that does not parse."""
    try:
        tree = ast.parse(source)
        comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError, ValueError):
        return []
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = [ast.get_docstring(node) or "" for node in ast.walk(tree) if isinstance(node, documented)]
    tokens = re.findall(r"\w+", " ".join(docstrings + comments).lower())
    return [t for t in tokens if len(t) > 1 and t.isascii() and t.isalpha()]


def load_corpus(max_files=None):
    """The words of ``source_files(max_files)``, file after file, as one list."""
    words = []
    for path in source_files(max_files):
        words += words_of(path.read_text(encoding="utf-8", errors="replace"))
    return words


def build_vocabulary(words, size):
    """The ``size`` most frequent words (ties: the first seen first), their counts, and the
    corpus as ids into them, the other words dropped."""
    unique, first, inverse, counts = np.unique(np.array(words), return_index=True, return_inverse=True,
                                               return_counts=True)
    order = np.lexsort((first, -counts))[:size]
    ids = np.full(len(unique), -1)
    ids[order] = np.arange(len(order))
    stream = ids[inverse]
    return [str(w) for w in unique[order]], counts[order], stream[stream >= 0]


def subsample(stream, counts, threshold, rng):
    """The stream with each occurrence of a word of frequency f kept with probability
    sqrt(t / f) + t / f (word2vec's rule; t = ``threshold``, 0 keeps everything)."""
    if threshold == 0:
        return stream
    ratio = threshold / (counts / counts.sum())
    keep = np.minimum(1.0, np.sqrt(ratio) + ratio)
    return stream[rng.random(len(stream)) < keep[stream]]


def noise_distribution(counts):
    """The negative-sampling distribution: unigram counts ** 0.75, normalised."""
    weights = counts.astype(np.float64) ** 0.75
    return weights / weights.sum()


def sample_negatives(cdf, shape, rng):
    """Word ids of the given shape drawn from the distribution whose cumulative sum is ``cdf``."""
    return np.minimum(np.searchsorted(cdf, rng.random(shape)), len(cdf) - 1)


def windows(stream, window, rng):
    """Each position's context: the ids at offsets -window..-1, 1..window, as (N, 2 window), and a
    mask of the offsets that count (inside the stream and within that centre's reach, drawn
    uniformly from 1..window)."""
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    positions = np.arange(len(stream))[:, None] + offsets
    reach = rng.integers(1, window + 1, size=len(stream))[:, None]
    mask = (positions >= 0) & (positions < len(stream)) & (np.abs(offsets) <= reach)
    return stream[np.clip(positions, 0, len(stream) - 1)], mask


# ---------------------------------------------------------------- models


class Word2Vec(nn.Module):
    """Input vectors (the word vectors kept) and output vectors, no biases; word2vec's start:
    the input vectors uniform in +-0.5 / dim, the output vectors zero."""

    def __init__(self, vocab_size, dim):
        self.input = nn.Embedding(vocab_size, dim)
        self.output = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.input.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.output.weight)


def log_sigmoid(x):
    """log sigmoid(x) = -log(1 + e^-x) = -logsumexp(0, -x): no overflow for any x."""
    return -ts.logsumexp(ts.stack([ts.zeros_like(x), -x], axis=-1), axis=-1)


def negative_sampling_loss(model, h, targets, negatives):
    """The batch mean of -log sigmoid(u_t . h) - sum_k log sigmoid(-u_nk . h): ``h`` (B, dim) from
    the input side, ``targets`` (B,) the words to score high, ``negatives`` (B, K) noise words."""
    positive = log_sigmoid((model.output(targets) * h).sum(axis=-1))
    negative = log_sigmoid(-(model.output(negatives) * h[:, None, :]).sum(axis=-1)).sum(axis=-1)
    return -(positive + negative).mean()


def train(name, stream, counts, args, rng):
    """Train one model on random batches; returns it and its loss at every step.

    CBOW: h is the mean input vector of a centre word's context, the target the centre word.
    Skip-gram: h is the centre word's input vector, the target one word of its context."""
    model = Word2Vec(len(counts), args.dim)
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    contexts, mask = windows(stream, args.window, rng)
    pair_centres, pair_contexts = np.nonzero(mask)[0], contexts[mask]
    weights = (mask / mask.sum(axis=1, keepdims=True)).astype(np.float32)
    cdf = np.cumsum(noise_distribution(counts))
    losses = []
    for step in range(args.steps):
        negatives = sample_negatives(cdf, (args.batch_size, args.negatives), rng)
        if name == "cbow":
            batch = rng.integers(len(stream), size=args.batch_size)
            h = (model.input(contexts[batch]) * weights[batch][..., None]).sum(axis=1)
            loss = negative_sampling_loss(model, h, stream[batch], negatives)
        else:
            batch = rng.integers(len(pair_centres), size=args.batch_size)
            h = model.input(stream[pair_centres[batch]])
            loss = negative_sampling_loss(model, h, pair_contexts[batch], negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % max(1, args.steps // 10) == 0:
            print(f"  {name:8s} step {step + 1:5d}/{args.steps}  loss {np.mean(losses[-100:]):.4f}")
    return model, losses


# ---------------------------------------------------------------- what the vectors learned


def unit_vectors(model):
    """The input vectors scaled to length 1, so that dot products are cosine similarities."""
    v = model.input.weight.data.astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def neighbours(vectors, vocab, word, k=5):
    """The ``k`` words most cosine-similar to ``word`` (itself left out), with their similarities."""
    similarity = vectors @ vectors[vocab.index(word)]
    similarity[vocab.index(word)] = -np.inf
    nearest = np.argsort(-similarity, kind="stable")[:k]
    return [(vocab[i], float(similarity[i])) for i in nearest]


def related_pairs(vectors, vocab, rng):
    """For the RELATED pairs in the vocabulary: the rank of each word among all words by cosine
    similarity to the other (1 = nearest, both ways), the pairs' mean cosine, and the mean
    cosine of 10,000 random pairs of distinct words."""
    pairs = [(vocab.index(a), vocab.index(b)) for a, b in RELATED if a in vocab and b in vocab]
    ranks = []
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            similarity = vectors @ vectors[x]
            similarity[x] = -np.inf
            ranks.append(int((similarity > similarity[y]).sum()) + 1)
    random_a, random_b = rng.integers(len(vocab), size=(2, 10_000))
    distinct = random_a != random_b
    return {"pairs": [(vocab[a], vocab[b]) for a, b in pairs], "ranks": ranks,
            "median_rank": float(np.median(ranks)) if ranks else None,
            "mean_cosine": float(np.mean([vectors[a] @ vectors[b] for a, b in pairs])) if pairs else None,
            "random_mean_cosine": float(np.mean((vectors[random_a] * vectors[random_b]).sum(1)[distinct]))}


def pca_2d(x):
    """The rows of ``x`` projected on their first two principal axes, and each axis's share of the variance."""
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, s[:2] ** 2 / (s ** 2).sum()


def plot(results, vectors, vocab, path):
    """One PCA panel per model (each query word and its neighbours in one colour), and the loss curves."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(6.5 * len(results) + 5, 6),
                             gridspec_kw={"width_ratios": [1.3] * len(results) + [1]})
    colours = plt.get_cmap("tab10").colors
    for ax, (name, r) in zip(axes, results.items()):
        groups = [[query] + [w for w, _ in found] for query, found in r["neighbours"].items()]
        words = [w for group in groups for w in group]
        xy, share = pca_2d(vectors[name][[vocab.index(w) for w in words]])
        colour = [colours[i % 10] for i, group in enumerate(groups) for _ in group]
        is_query = [j == 0 for group in groups for j in range(len(group))]
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=12)
        for (x, y), word, c, query in zip(xy, words, colour, is_query):
            ax.annotate(word, (x, y), xytext=(3, 2), textcoords="offset points", color=c,
                        fontsize=10 if query else 8, fontweight="bold" if query else "normal")
        ax.set(title=f"{name}: query words and their 5 nearest neighbours",
               xlabel=f"PC 1 ({share[0]:.0%} of the variance)", ylabel=f"PC 2 ({share[1]:.0%})")
        ax.margins(x=0.15, y=0.05)
        ax.grid(alpha=0.3)
    for name, r in results.items():
        steps = np.arange(1, len(r["loss_curve"]) + 1) * r["steps_per_point"]
        axes[-1].plot(steps, r["loss_curve"], label=name)
    axes[-1].set(xlabel="step", ylabel="negative-sampling loss (batch mean)", title="training loss")
    axes[-1].grid(alpha=0.3)
    axes[-1].legend()
    fig.suptitle("word2vec on the standard library's docstrings and comments (PCA of the unit input vectors)")
    common.save_figure(fig, path)


def main(argv=None):
    """Read the corpus, train the chosen models, compare them; returns the summary also written as JSON."""
    p = common.parser(__doc__.splitlines()[0], out="runs/word2vec")
    p.add_argument("--models", default="cbow,skipgram", help="comma-separated, from cbow, skipgram")
    p.add_argument("--vocab", type=int, default=3000, help="the most frequent words kept (default 3000)")
    p.add_argument("--dim", type=int, default=64, help="embedding size (default 64)")
    p.add_argument("--window", type=int, default=5, help="the farthest context word from the centre (default 5)")
    p.add_argument("--negatives", type=int, default=5, help="noise words per target, K (default 5)")
    p.add_argument("--subsample", type=float, default=1e-3, help="word2vec's subsampling threshold t (0: off)")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=512, help="centre words (CBOW) or pairs (skip-gram)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")
    p.add_argument("--max-files", type=int, default=None, help="read only the first N source files (default all)")
    args = p.parse_args(argv)
    if args.quick:
        args.max_files = min(args.max_files or 60, 60)
        args.vocab, args.steps = min(args.vocab, 800), min(args.steps, 300)
    models = common.names(args.models, MODELS, "--models")
    for flag in ("vocab", "dim", "window", "negatives", "steps", "batch_size", "max_files"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise common.UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if not args.lr > 0 or not args.subsample >= 0:
        raise common.UsageError(f"--lr must be > 0 and --subsample >= 0, got {args.lr} and {args.subsample}")
    rng = common.start(args)

    with common.Timer() as reading:
        words = load_corpus(args.max_files)
        vocab, counts, stream = build_vocabulary(words, args.vocab)
        stream = subsample(stream, counts, args.subsample, rng)
    if len(stream) < 2:
        raise common.UsageError(f"the corpus kept {len(stream)} words; it needs at least 2 (raise --max-files)")
    print(f"{len(words):,} words from {len(source_files(args.max_files))} files read in {reading.seconds:.1f} s; "
          f"the {len(vocab)} most frequent cover {counts.sum() / len(words):.1%}; {len(stream):,} after subsampling")
    missing = [q for q in QUERIES if q not in vocab]
    if missing:
        print(f"query words not in the vocabulary, left out: {', '.join(missing)}")
    queries = [q for q in QUERIES if q in vocab]

    results, vectors, rows = {}, {}, []
    for name in models:
        with common.Timer() as timer:
            model, losses = train(name, stream, counts, args, rng)
        vectors[name] = unit_vectors(model)
        block = max(1, args.steps // 100)
        final = float(np.mean(losses[-max(1, args.steps // 10):]))
        related = related_pairs(vectors[name], vocab, rng)
        results[name] = {"first_loss": losses[0], "final_loss": final, "seconds": timer.seconds,
                         "loss_curve": [float(np.mean(losses[i:i + block])) for i in range(0, len(losses), block)],
                         "steps_per_point": block, "related_pairs": related,
                         "neighbours": {q: neighbours(vectors[name], vocab, q) for q in queries}}
        rows.append([name, losses[0], final, related["median_rank"], related["mean_cosine"],
                     related["random_mean_cosine"], round(timer.seconds, 1)])
    common.summary(args, ["model", "first loss", "final loss (last 10%)", "related pairs' median rank",
                          "their mean cos", "random pairs' mean cos", "seconds"], rows)
    print(f"(first loss (K + 1) ln 2 = {(args.negatives + 1) * np.log(2):.4g}; "
          f"{len(results[models[0]]['related_pairs']['pairs'])} related pairs in the vocabulary, each ranked both "
          f"ways; chance median rank about {len(vocab) // 2})")
    for name in models:
        print(f"\nnearest neighbours by {name} (cosine of the input vectors):")
        for query, found in results[name]["neighbours"].items():
            print(f"  {query:8s} " + ", ".join(f"{w} {s:.2f}" for w, s in found))

    plot(results, vectors, vocab, f"{args.out}/word2vec.png")
    summary = {"config": vars(args), "corpus": {"words": len(words), "vocabulary": len(vocab),
                                                "after_subsampling": len(stream), "seconds": reading.seconds},
               "results": results}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
