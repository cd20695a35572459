"""Many-to-one on words: is a short movie review positive or negative, negations included?

The reviews come from a small grammar in this script, so the true label of every sentence
is known and the test set can hold combinations the training set never shows:

- a plain sentence: an optional opener, a subject, "was" or "is", an optional intensifier
  and an adjective ("overall the plot is very good"); the label is the adjective's polarity
  (12 positive adjectives, 12 negative);
- a negated one: either a negator before the adjective ("not", "never", "hardly",
  "not at all": "the movie was not bad") or a denial in front of a plain sentence ("it is
  not true that", "it is false that", "i do not think that", "i would not say that");
- a doubly negated one: a denial in front of a negated sentence ("it is not true that the
  film was not good").

The rule: negation flips the polarity, intensifiers keep it, so the label is the
adjective's polarity flipped once per negation (``label`` reads it off a sentence's words).

What is held out: the 24 adjectives are split three ways. A: 16 appear in training in all
three kinds of sentence. P (``PLAIN_ONLY``: charming, superb, tedious, clumsy) appear in
training only in plain sentences. N (``NO_DOUBLE``: gripping, delightful, bland,
predictable) appear plain and negated, never doubly negated. The test set has six groups:
plain (all 24 adjectives), negated A and double A (forms trained on, new sentences), and
the compositions never trained on: negated P and double P (a negation learnt on other
adjectives applied to a polarity learnt from plain sentences) and double N. Test
sentences that also occur in the training set are dropped, so every test sentence is new.

The model: word embedding -> LSTM or GRU (``--cell``) -> a summary of the sentence
(``--pooling``: ``last``, the state at each sentence's own last word via ``lengths=``, or
``attention``, an average of all the outputs weighted by ``nn.Attention``: "dot" scores
against a learned query vector, softmax over each sentence's own words) -> linear -> 2
logits, trained by cross-entropy with Adam. The baseline is a bag-of-words logistic
regression (scikit-learn, on word counts): it sees which words occur, not their order, so
each word adds a fixed amount to the score whatever it negates or is negated by: it cannot
flip an adjective's vote, and an even or odd number of negations is out of its reach.

Saliency: for a few test sentences, the gradient of the predicted class's logit with
respect to each word's embedding vector, dotted with that vector (gradient x input,
signed: positive where the word pushes towards the prediction, negative where it pushes
against it); the embeddings are looked up into a leaf tensor that requires grad and fed
to the recurrent layer, so ``backward`` leaves the gradient on it. It is shown for the
first model of the run (the first ``--cell`` with the first ``--pooling``: the LSTM with
the last state by default; ``--pooling attention,last`` puts the attention model first),
not for the one that scores best on the test set, which would pick by the test set.

    python examples/sentiment.py                            # LSTM, last state vs attention, and BoW
    python examples/sentiment.py --cell lstm,gru --pooling last
    python examples/sentiment.py --quick

Prints the test accuracy by kind of sentence for each model and the baseline, and a few
sentences' saliencies; writes <out>/results.json and <out>/sentiment.png (training loss,
accuracy by kind, coloured sentences).
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn
from tinyseq.nn.utils.rnn import pad_sequence

# ---------------------------------------------------------------- the grammar

POSITIVE = ("good", "great", "excellent", "wonderful", "brilliant", "enjoyable", "clever", "moving",
            "charming", "superb", "gripping", "delightful")
NEGATIVE = ("bad", "terrible", "awful", "boring", "dull", "weak", "poor", "dreadful",
            "tedious", "clumsy", "bland", "predictable")
PLAIN_ONLY = ("charming", "superb", "tedious", "clumsy")  # trained only in plain sentences
NO_DOUBLE = ("gripping", "delightful", "bland", "predictable")  # trained plain and negated, never doubly
ALL_FORMS = tuple(a for a in POSITIVE + NEGATIVE if a not in PLAIN_ONLY + NO_DOUBLE)
OPENERS = ("", "honestly", "overall", "frankly", "in my opinion", "to be fair")
SUBJECTS = ("the movie", "the film", "the plot", "the acting", "the ending", "the story", "the music",
            "the script", "the cast", "it", "this film")
VERBS = ("was", "is")
INTENSIFIERS = ("very", "really", "extremely", "quite")
NEGATORS = ("not", "never", "hardly", "not at all")
DENIALS = ("it is not true that", "it is false that", "i do not think that", "i would not say that")
NEGATION_WORDS = {"not", "never", "hardly", "false"}  # each negator and denial holds exactly one
#: Which adjectives each kind of training sentence is about, by number of negations.
TRAINED = {0: POSITIVE + NEGATIVE, 1: ALL_FORMS + NO_DOUBLE, 2: ALL_FORMS}
#: The test groups: (adjectives, negations). Those on PLAIN_ONLY and NO_DOUBLE are forms never trained on.
GROUPS = {"plain": (POSITIVE + NEGATIVE, 0), "negated A": (ALL_FORMS, 1), "double A": (ALL_FORMS, 2),
          "negated P": (PLAIN_ONLY, 1), "double P": (PLAIN_ONLY, 2), "double N": (NO_DOUBLE, 2)}
NEGATIVE_LABEL, POSITIVE_LABEL = 0, 1

VOCAB = ["<pad>"] + sorted({word for phrase in (*POSITIVE, *NEGATIVE, *OPENERS, *SUBJECTS, *VERBS, *INTENSIFIERS,
                                                *NEGATORS, *DENIALS) for word in phrase.split()})
INDEX = {word: i for i, word in enumerate(VOCAB)}
PAD = 0


def label(sentence):
    """The rule: the adjective's (last word's) polarity, flipped once per negation word."""
    words = sentence.split()
    positive = words[-1] in POSITIVE
    flips = sum(word in NEGATION_WORDS for word in words)
    return POSITIVE_LABEL if positive != (flips % 2 == 1) else NEGATIVE_LABEL


def make_sentence(rng, adjective, negations):
    """A random sentence about ``adjective`` with 0, 1 or 2 negations."""
    def pick(options):
        return options[rng.integers(len(options))]

    inner = negations == 2 or (negations == 1 and rng.integers(2) == 0)
    denied = negations - inner == 1
    negator = pick(NEGATORS) if inner else ""
    intensifier = pick(INTENSIFIERS) if negator in ("", "not", "never") and rng.random() < 0.4 else ""
    clause = [pick(SUBJECTS), pick(VERBS), negator, intensifier, adjective]
    words = [pick(OPENERS), pick(DENIALS) if denied else "", *clause]
    return " ".join(w for w in words if w)


def make_data(rng, n_train, n_test):
    """Training sentences, a third of each kind (each about an adjective of ``TRAINED``), and
    ``n_test`` new sentences of each test group (``GROUPS``), as {group: sentences}."""
    train = []
    for _ in range(n_train):
        negations = int(rng.integers(3))
        train.append(make_sentence(rng, TRAINED[negations][rng.integers(len(TRAINED[negations]))], negations))
    seen = set(train)
    test = {}
    for group, (adjectives, negations) in GROUPS.items():
        sentences = set()
        while len(sentences) < n_test:  # the grammar holds far more sentences of each group than asked for
            sentence = make_sentence(rng, adjectives[rng.integers(len(adjectives))], negations)
            if sentence not in seen:
                sentences.add(sentence)
        test[group] = sorted(sentences)
        rng.shuffle(test[group])
    return train, test


def encode(sentences):
    """Word indices (B, T), padded with PAD to the longest sentence, and the lengths (B,)."""
    rows = [np.array([INDEX[w] for w in s.split()], dtype=np.int64) for s in sentences]
    tokens, lengths = pad_sequence(rows, batch_first=True, padding_value=PAD, return_lengths=True)
    return tokens.data, lengths


def labels(sentences):
    """The rule's labels (N,) of a list of sentences."""
    return np.array([label(s) for s in sentences])


# ---------------------------------------------------------------- the models


class Sentiment(nn.Module):
    """Embedding -> recurrent layer -> last state or attention pooling -> linear -> 2 logits."""

    def __init__(self, cell, pooling, embed, hidden, dtype=np.float32):
        self.pooling = pooling
        self.embed = nn.Embedding(len(VOCAB), embed, padding_idx=PAD, dtype=dtype)
        self.rnn = common.CELLS[cell](embed, hidden, batch_first=True, dtype=dtype)
        if pooling == "attention":
            self.query = nn.Parameter(np.zeros(hidden, dtype=dtype))  # learned; zero: a plain average to start
            self.attention = nn.Attention(hidden, hidden, kind="dot", batch_first=True, dtype=dtype)
        self.head = nn.Linear(hidden, 2, dtype=dtype)

    def forward(self, tokens, lengths):
        return self.classify(self.embed(tokens), lengths)

    def classify(self, vectors, lengths):
        """Logits (B, 2) from the word vectors (B, T, embed): everything after the lookup."""
        outputs, state = self.rnn(vectors, lengths=lengths)
        if self.pooling == "last":
            h_n = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)
            return self.head(h_n[-1])  # each sentence's state at its own last word
        query = self.query.reshape(1, -1).expand(len(lengths), self.query.shape[0])
        context, _ = self.attention(query, outputs, lengths=lengths)
        return self.head(context)


def predict(model, tokens, lengths):
    with ts.no_grad():
        return model(tokens, lengths).data.argmax(-1)


def train(name, cell, pooling, train_set, args):
    """Train one model with Adam on random batches; returns it and its loss per step."""
    ts.manual_seed(args.seed)  # every model's weights are seeded by --seed, and all see the same batches
    rng = np.random.default_rng([args.seed, 1])
    model = Sentiment(cell, pooling, args.embed, args.hidden)
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    tokens, lengths = encode(train_set)
    y = labels(train_set)
    losses = []
    for step in range(1, args.steps + 1):
        batch = rng.integers(len(y), size=args.batch_size)
        width = lengths[batch].max()
        loss = nn.functional.cross_entropy(model(tokens[batch, :width], lengths[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % max(1, args.steps // 5) == 0 or step == args.steps:
            print(f"  {name:15s} step {step:5d}  loss (mean of the last 50) {np.mean(losses[-50:]):.4f}")
    return model, losses


def bag_of_words(sentences):
    """Word counts (N, len(VOCAB)): what the baseline sees, order thrown away."""
    counts = np.zeros((len(sentences), len(VOCAB)))
    for i, sentence in enumerate(sentences):
        for word in sentence.split():
            counts[i, INDEX[word]] += 1
    return counts


def accuracies(predict_fn, test):
    """Accuracy on each test group and over all of them; ``predict_fn(sentences)`` -> labels."""
    right = {group: predict_fn(sentences) == labels(sentences) for group, sentences in test.items()}
    result = {group: float(r.mean()) for group, r in right.items()}
    result["overall"] = float(np.concatenate(list(right.values())).mean())
    return result


# ---------------------------------------------------------------- saliency


def saliency(model, sentence):
    """The predicted class, and for each word the gradient of that class's logit with respect
    to the word's embedding vector (T, embed) and its dot product with the vector (T,):
    gradient x input, signed, positive where the word pushes towards the prediction.
    The parameters' ``.grad`` are left as they were (backward would add into them)."""
    tokens, lengths = encode([sentence])
    vectors = ts.tensor(model.embed.weight.data[tokens], requires_grad=True)  # a leaf: backward fills .grad
    parameters = list(model.parameters())
    saved = [p.grad for p in parameters]
    model.zero_grad()  # backward adds into an existing .grad in place, so it is set aside, not kept
    try:
        logits = model.classify(vectors, lengths)
        predicted = int(logits.data.argmax())
        logits[0, predicted].backward()
    finally:
        for p, grad in zip(parameters, saved):
            p.grad = grad
    gradient = vectors.grad.numpy()[0]
    return predicted, gradient, (gradient * vectors.data[0]).sum(-1)


def show_saliency(model, test, n=6):
    """Print and return the saliency of ``n`` test sentences, from the plain, negated A, P
    (two), double P and double N groups: [(group, sentence, true label, predicted, scores)]."""
    chosen = [("plain", 0), ("negated A", 0), ("negated P", 0), ("negated P", 1), ("double P", 0), ("double N", 0)]
    shown = []
    for group, i in chosen[:n]:
        sentence = test[group][i]
        predicted, _, scores = saliency(model, sentence)
        shown.append((group, sentence, label(sentence), predicted, scores))
        marks = " ".join(f"{w}({s:+.2f})" for w, s in zip(sentence.split(), scores))
        verdict = "right" if predicted == label(sentence) else "WRONG"
        print(f"  {group:9s} -> {['negative', 'positive'][predicted]:8s} {verdict:5s} {marks}")
    return shown


# ---------------------------------------------------------------- the picture


def plot(runs, baseline, shown, shown_name, path):
    """Training loss; accuracy by test group for every model and the baseline; coloured sentences."""
    plt = common.pyplot()
    fig = plt.figure(figsize=(13, 9))
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1], hspace=0.35, wspace=0.25)
    loss_ax, bar_ax, text_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    for name, run in runs.items():
        loss = np.array(run["loss"])
        window = max(1, min(50, len(loss) // 10))
        loss_ax.plot(np.arange(window, len(loss) + 1), np.convolve(loss, np.ones(window) / window, "valid"),
                     label=f"{name} (mean of {window})")
    loss_ax.set(xlabel="training step", ylabel="cross-entropy (nats)", yscale="log", title="training loss")
    loss_ax.grid(alpha=0.3, which="both")
    loss_ax.legend()

    names = [*runs, "bag of words"]
    scores = [*(run["accuracy"] for run in runs.values()), baseline]
    groups = [*GROUPS, "overall"]
    width = 0.8 / len(names)
    for i, (name, acc) in enumerate(zip(names, scores)):
        bar_ax.bar(np.arange(len(groups)) + (i - (len(names) - 1) / 2) * width, [acc[g] for g in groups],
                   width, label=name)
    bar_ax.axhline(0.5, color="gray", ls=":", label="chance")
    bar_ax.set_xticks(np.arange(len(groups)), [g.replace(" ", "\n") for g in groups], fontsize=8)
    bar_ax.set(ylim=(0, 1.22), yticks=np.linspace(0, 1, 6), xlabel="test group (P: adjectives trained only plain; N: never doubly negated)",
               ylabel="test accuracy", title="accuracy by kind of sentence")
    bar_ax.legend(fontsize=8, loc="upper center", ncol=len(names) + 1)

    cmap = plt.get_cmap("coolwarm")
    char = 0.0098  # axes width per character of the monospaced text
    for row, (group, sentence, truth, predicted, s) in enumerate(shown):
        y = 1 - (row + 0.5) / len(shown)
        scale = np.abs(s).max() or 1.0
        x = 0.0
        for word, value in zip(sentence.split(), s):
            text_ax.text(x, y, word, family="monospace", fontsize=11, va="center",
                         bbox={"facecolor": cmap(0.5 + 0.5 * value / scale), "edgecolor": "none", "pad": 2})
            x += (len(word) + 1.3) * char
        verdict = "right" if predicted == truth else "wrong"
        text_ax.text(0.76, y, f"{group}: -> {['negative', 'positive'][predicted]} ({verdict})", va="center",
                     fontsize=10, color="black" if predicted == truth else "red")
    text_ax.axis("off")
    text_ax.set_title(f"saliency of the {shown_name} (the run's first model, not picked by test score): gradient of "
                      "the predicted logit . word embedding\n(red: towards the prediction, blue: against; "
                      "scaled per sentence)", fontsize=10)
    fig.suptitle("sentiment with negation: word-level RNNs against a bag of words")
    common.save_figure(fig, path)


# ---------------------------------------------------------------- main


def check_args(args):
    """The (cell, pooling) pairs to train; a UsageError for a flag out of range."""
    cells = common.names(args.cell, ("lstm", "gru"), "--cell")
    poolings = common.names(args.pooling, ("last", "attention"), "--pooling")
    for name in ("hidden", "embed", "steps", "batch_size"):
        if getattr(args, name) < 1:
            raise common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise common.UsageError(f"--lr must be positive, got {args.lr}")
    pairs = [(c, p) for c in dict.fromkeys(cells) for p in dict.fromkeys(poolings)]
    return {f"{c} {p}": (c, p) for c, p in pairs}


def main(argv=None):
    """Train the RNN models and the bag-of-words baseline, compare them by kind of sentence."""
    p = common.parser(__doc__.splitlines()[0], out="runs/sentiment")
    p.add_argument("--cell", default="lstm", help="comma-separated recurrent layers, from lstm, gru (default lstm)")
    p.add_argument("--pooling", default=None,
                   help="comma-separated, from last, attention (default both; last with --quick)")
    p.add_argument("--hidden", type=int, default=64, help="recurrent state size")
    p.add_argument("--embed", type=int, default=32, help="word vector size")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default 1500; 300 with --quick)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    args = p.parse_args(argv)
    common.defaults(args, pooling=("last,attention", "last"), steps=(1500, 300))
    models = check_args(args)
    rng = common.start(args)
    train_set, test = make_data(rng, n_train=1000 if args.quick else 6000, n_test=100 if args.quick else 400)
    print(f"{len(train_set)} training sentences ({len(VOCAB) - 1} words); test: "
          + ", ".join(f"{len(s)} {g}" for g, s in test.items()))
    print(f"adjectives trained in all forms (A): {', '.join(ALL_FORMS)}\nonly plain (P): {', '.join(PLAIN_ONLY)}; "
          f"plain and negated, never doubly (N): {', '.join(NO_DOUBLE)}")

    from sklearn.linear_model import LogisticRegression  # common.start checked it is installed

    bow = LogisticRegression(max_iter=2000).fit(bag_of_words(train_set), labels(train_set))
    baseline = accuracies(lambda sentences: bow.predict(bag_of_words(sentences)), test)

    runs, trained = {}, {}
    for name, (cell, pooling) in models.items():
        with common.Timer() as timer:
            model, losses = train(name, cell, pooling, train_set, args)
        acc = accuracies(lambda sentences: predict(model, *encode(sentences)), test)
        runs[name] = {"loss": losses, "accuracy": acc, "seconds": timer.seconds}
        trained[name] = model

    headers = ["model", "first loss", "final loss", *GROUPS, "overall", "seconds"]
    rows = [[name, float(np.mean(r["loss"][:20])), float(np.mean(r["loss"][-50:])),
             *(r["accuracy"][g] for g in GROUPS), r["accuracy"]["overall"], round(r["seconds"], 1)]
            for name, r in runs.items()]
    rows.append(["bag of words", "", "", *(baseline[g] for g in GROUPS), baseline["overall"], ""])
    print()
    common.summary(args, headers, rows)
    print("(losses: means of the first 20 and last 50 steps; accuracies on new test sentences, chance 0.5)")

    shown_name = next(iter(trained))  # the first model of the run: chosen without looking at the test set
    print(f"\nsaliency (gradient . embedding of the predicted logit) of the {shown_name} (the run's first model):")
    shown = show_saliency(trained[shown_name], test)
    plot(runs, baseline, shown, shown_name, f"{args.out}/sentiment.png")
    results = {"config": vars(args), "train_sentences": len(train_set),
               "adjectives": {"all_forms": ALL_FORMS, "plain_only": PLAIN_ONLY, "no_double": NO_DOUBLE},
               "test_sentences": {g: len(s) for g, s in test.items()}, "models": runs, "bag_of_words": baseline,
               "saliency_model": shown_name, "saliency": [{"group": g, "sentence": s, "label": t, "predicted": p, "scores": sc}
                                          for g, s, t, p, sc in shown]}
    common.write_json(f"{args.out}/results.json", results)
    return results


if __name__ == "__main__":
    common.run(main)
