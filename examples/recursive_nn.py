"""A recursive (tree) network evaluates expression trees; an LSTM reads them flat.

Each example is a random expression as a binary tree: a value is a leaf, and ``a op b`` is
the tree ((a, op), b), so the operator is a leaf too. Two languages (``--task``):

- logic (the default): and / or over 0 and 1; the label is the truth value;
- arithmetic: + and - modulo 10 over the digits 0-9; the label is the value, ten classes.

``nn.RecursiveNN`` composes the tree bottom-up with one shared cell, h = tanh(W [h_left;
h_right] + b) from the leaves' embeddings, and a linear layer names the root's class. Every
example's graph has its own tree's shape, which is what a define-by-run engine is for: the
backward pass follows it. The sequential baseline reads the same expression flattened,
with parentheses, as tokens (``( ( 1 and 0 ) or 1 )``), with an LSTM whose last state is
classified. Both are trained on fresh random trees of depth 1 .. --depth every step and
tested on trees of each of those depths and of two depths more, which neither saw in
training (the shallow test trees are among those trained on: logic has 8 trees of depth 1).
The last row is the majority class's share of each test set.

NOTE: the tree cell is one tanh layer, so each subtree's vector must encode its value for
the next composition to read. and / or are linearly separable and it learns them exactly;
modulo-10 arithmetic needs more than one layer per composition, and within these budgets
neither model gets much past depth 1 there (examples/RESULTS.md).

    python examples/recursive_nn.py                          # logic: tree network and LSTM
    python examples/recursive_nn.py --task arithmetic --depth 2
    python examples/recursive_nn.py --quick                  # 150 steps

Prints a table; writes <out>/results.json and <out>/recursive_nn.png.
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

MODELS = ("tree", "lstm")


class Task:
    """An expression language: leaves with the values 0 .. n-1 (also the classes), binary
    operators, and the tokens: leaves first, then the operators, then ( and ) for the flat form."""

    def __init__(self, leaves, operators):
        self.leaves, self.names, self.functions = leaves, list(operators), list(operators.values())
        self.tokens = leaves + len(operators)  # the tree's leaves: values and operators
        self.open, self.close = self.tokens, self.tokens + 1

    def random_tree(self, rng, depth):
        """A tree of depth exactly ``depth`` (0: a leaf value)."""
        if depth == 0:
            return int(rng.integers(self.leaves))
        sides = [depth - 1, int(rng.integers(depth))]  # one side reaches the full depth
        left, right = (self.random_tree(rng, d) for d in (sides if rng.integers(2) else sides[::-1]))
        return ((left, self.leaves + int(rng.integers(len(self.functions)))), right)

    def value(self, tree):
        if isinstance(tree, int):
            return tree
        (left, op), right = tree
        return self.functions[op - self.leaves](self.value(left), self.value(right))

    def flatten(self, tree):
        """The tree as infix tokens with parentheses."""
        if isinstance(tree, int):
            return [tree]
        (left, op), right = tree
        return [self.open, *self.flatten(left), op, *self.flatten(right), self.close]

    def batch(self, rng, n, depths):
        """``n`` random trees, each of a depth drawn uniformly from ``depths``, and their values."""
        trees = [self.random_tree(rng, int(rng.choice(depths))) for _ in range(n)]
        return trees, np.array([self.value(t) for t in trees])


TASKS = {
    "logic": Task(2, {"and": lambda a, b: a & b, "or": lambda a, b: a | b}),
    "arithmetic": Task(10, {"+": lambda a, b: (a + b) % 10, "-": lambda a, b: (a - b) % 10}),
}


class TreeClassifier(nn.Module):
    """``nn.RecursiveNN`` over the tree, a linear layer on the root."""

    def __init__(self, task, hidden):
        self.encoder, self.head = nn.RecursiveNN(task.tokens, hidden), nn.Linear(hidden, task.leaves)

    def forward(self, trees):
        return self.head(self.encoder(trees))


class FlatClassifier(nn.Module):
    """An LSTM over the flattened tokens (a padded batch, ``lengths=``), a linear layer on h_n."""

    def __init__(self, task, hidden):
        self.task = task
        self.embed, self.lstm = nn.Embedding(task.tokens + 2, hidden), nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, task.leaves)

    def forward(self, trees):
        tokens = [self.task.flatten(t) for t in trees]
        lengths = np.array([len(t) for t in tokens])
        padded = np.zeros((len(tokens), lengths.max()), dtype=np.int64)
        for b, seq in enumerate(tokens):
            padded[b, :len(seq)] = seq
        _, (h_n, _) = self.lstm(self.embed(padded), lengths=lengths)
        return self.head(h_n[-1])


def accuracy(model, trees, labels, batch=256):
    model.eval()
    with ts.no_grad():
        hits = sum(int((model(trees[k:k + batch]).data.argmax(-1) == labels[k:k + batch]).sum())
                   for k in range(0, len(trees), batch))
    model.train()
    return hits / len(trees)


def train(name, task, tests, args, rng):
    """Train one model on fresh random trees every step; returns its losses and its test
    accuracy at every depth."""
    model = (TreeClassifier if name == "tree" else FlatClassifier)(task, args.hidden)
    opt = ts.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step in range(args.steps):
        trees, labels = task.batch(rng, args.batch_size, list(range(1, args.depth + 1)))
        loss = loss_fn(model(trees), labels)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses, {depth: accuracy(model, *t) for depth, t in tests.items()}


def plot(results, majority, depth, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in results.items():
        ax[0].plot(np.convolve(r["loss"], np.ones(25) / 25, mode="valid"), label=name)
        ax[1].plot(list(r["accuracy"]), list(r["accuracy"].values()), marker="o", label=name)
    ax[1].plot(list(majority), list(majority.values()), color="grey", ls="--", label="majority class")
    ax[1].axvspan(depth + 0.5, max(majority) + 0.5, color="grey", alpha=0.1, label="deeper than in training")
    ax[0].set(title="training loss (moving mean of 25)", xlabel="step", ylabel="cross-entropy", yscale="log")
    ax[1].set(title="test accuracy by tree depth", xlabel="depth", ylabel="accuracy", ylim=(0, 1.02),
              xticks=list(majority))
    for a in ax:
        a.legend()
    common.save_figure(fig, path)


def main(argv=None):
    """Train the tree network and the LSTM; returns the results dict also written as JSON."""
    p = common.parser(__doc__.splitlines()[0], out="runs/recursive_nn")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--task", default="logic", choices=sorted(TASKS), help="and/or over 0/1, or +/- mod 10")
    p.add_argument("--depth", type=int, default=3, help="the deepest trees in training")
    p.add_argument("--test-size", type=int, default=500, help="test trees per depth")
    p.add_argument("--hidden", type=int, default=48)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.test_size = min(args.steps, 150), min(args.test_size, 100)
    models = common.names(args.models, MODELS, "--models")
    if min(args.depth, args.test_size, args.hidden, args.steps, args.batch_size) < 1:
        raise common.UsageError("need --depth, --test-size, --hidden, --steps, --batch-size >= 1")
    rng = common.start(args)
    task = TASKS[args.task]
    tests = {depth: task.batch(rng, args.test_size, [depth]) for depth in range(1, args.depth + 3)}
    print(f"training: {args.steps} batches of {args.batch_size} fresh trees of depth 1-{args.depth}; "
          f"test: {args.test_size} trees of each depth 1-{args.depth + 2}")

    results, rows = {}, []
    for name in models:
        with common.Timer() as timer:
            losses, acc = train(name, task, tests, args, rng)
        results[name] = {"loss": losses, "accuracy": acc, "seconds": timer.seconds}
        rows.append([name, losses[0], float(np.mean(losses[-100:])), *acc.values(), round(timer.seconds, 1)])
    majority = [float(np.bincount(labels).max() / len(labels)) for _, labels in tests.values()]
    rows.append(["majority class", "", "", *majority, ""])
    common.summary(args, ["model", "first loss", "final loss", *(f"depth {d}" + (" (unseen)" if d > args.depth else "")
                                                              for d in tests), "seconds"], rows)
    majority = dict(zip(tests, majority))
    plot(results, majority, args.depth, f"{args.out}/recursive_nn.png")
    summary = {"config": vars(args), "results": results, "majority": majority}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
