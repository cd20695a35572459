"""Many-to-one: read an 8x8 digit image as a sequence and name the digit from the last state.

scikit-learn's handwritten digits (1,797 images, shipped inside the package) are read row by
row, 8 steps of 8 pixels (or with ``--order pixels`` one pixel at a time, 64 steps of 1: the
"sequential MNIST" setting, much harder). A recurrent layer reads the sequence; only its last
hidden state goes through a linear layer to the 10 class logits: the many-to-one shape of
sentiment classification. One LSTM, GRU and tanh RNN are trained alike and compared on a
held-out quarter of the images.

    python examples/sequence_classification.py                 # lstm, gru, rnn; rows
    python examples/sequence_classification.py --order pixels --cells lstm --epochs 40
    python examples/sequence_classification.py --quick

Prints a table of test accuracies and the best model's confusion matrix; writes
<out>/results.json and <out>/sequence_classification.png (curves and a few test digits).
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

def load_digits(order, rng, test_fraction=0.25):
    """(train x, train y, test x, test y): images scaled to [0, 1] as (N, T, F) sequences."""
    from sklearn.datasets import load_digits as sklearn_digits  # common.start checked it is installed

    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)
    x = images.reshape(-1, 8, 8) if order == "rows" else images.reshape(-1, 64, 1)
    index = rng.permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train, test = index[:cut], index[cut:]
    return x[train], digits.target[train], x[test], digits.target[test]


class Classifier(nn.Module):
    """A recurrent layer over the sequence; its last hidden state -> linear -> 10 logits."""

    def __init__(self, cell, features, hidden):
        self.rnn = common.CELLS[cell](features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h, c)
        return self.head(h_n[-1])


def accuracy(model, x, y):
    """The fraction of ``x`` classified as ``y``, and the predictions."""
    model.eval()
    with ts.no_grad():
        predicted = model(x).data.argmax(-1)
    model.train()
    return float((predicted == y).mean()), predicted


def train(cell, data, args, rng):
    """Train one classifier; returns it with its per-epoch loss and test-accuracy curves."""
    x_train, y_train, x_test, y_test = data
    model = Classifier(cell, x_train.shape[-1], args.hidden)
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    losses, accuracies = [], []
    for epoch in range(args.epochs):
        order, epoch_loss = rng.permutation(len(x_train)), []
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            epoch_loss.append(loss.item())
        losses.append(float(np.mean(epoch_loss)))
        accuracies.append(accuracy(model, x_test, y_test)[0])
        print(f"  {cell:4s} epoch {epoch + 1:3d}  loss {losses[-1]:.4f}  test accuracy {accuracies[-1]:.3f}")
    return model, losses, accuracies


def confusion(y, predicted):
    """The 10x10 confusion matrix (rows: true digit, columns: predicted) as text."""
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (y, predicted), 1)
    lines = ["true\\pred " + " ".join(f"{j:3d}" for j in range(10))]
    lines += [f"{i:9d} " + " ".join(f"{c:3d}" for c in row) for i, row in enumerate(counts)]
    return "\n".join(lines)


def plot(results, x_test, y_test, predicted, best, path):
    """Loss and accuracy per epoch for each cell; 16 test digits with the best model's labels."""
    plt = common.pyplot()
    fig = plt.figure(figsize=(10, 7.5))
    fig.subplots_adjust(hspace=0.7)
    loss_ax, acc_ax = fig.add_subplot(2, 2, 1), fig.add_subplot(2, 2, 2)
    for cell, r in results.items():
        epochs = np.arange(1, len(r["loss"]) + 1)
        loss_ax.plot(epochs, r["loss"], label=cell)
        acc_ax.plot(epochs, r["test_accuracy"], label=cell)
    loss_ax.set(xlabel="epoch", ylabel="train cross-entropy", yscale="log", title="training loss")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy", title="held-out accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    for i in range(16):
        ax = fig.add_subplot(4, 8, 17 + i)
        ax.imshow(x_test[i].reshape(8, 8), cmap="gray_r")
        right = predicted[i] == y_test[i]
        ax.set_title(f"{predicted[i]}" + ("" if right else f" (is {y_test[i]})"),
                     color="black" if right else "red", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"digits read as sequences: test predictions of the {best}")
    common.save_figure(fig, path)


def main(argv=None):
    """Train and compare the cells; returns the results dict also written as JSON."""
    p = common.parser(__doc__.splitlines()[0], out="runs/sequence_classification")
    p.add_argument("--order", choices=("rows", "pixels"), default="rows",
                   help="rows: 8 steps of 8 pixels; pixels: 64 steps of 1")
    p.add_argument("--cells", default="lstm,gru,rnn", help="comma-separated, from lstm, gru, rnn")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.epochs = "lstm", min(args.epochs, 4)
    cells = common.names(args.cells, common.CELLS, "--cells")
    if args.epochs < 1 or args.hidden < 1 or args.batch_size < 1:
        raise common.UsageError("--epochs, --hidden and --batch-size must be at least 1, got "
                                f"{args.epochs}, {args.hidden}, {args.batch_size}")
    rng = common.start(args)
    data = load_digits(args.order, rng)
    x_test, y_test = data[2], data[3]
    print(f"{len(data[0])} train and {len(x_test)} test images as {x_test.shape[1]} steps of "
          f"{x_test.shape[2]}; chance is 0.1")

    results, rows, predictions = {}, [], {}
    for cell in cells:
        with common.Timer() as timer:
            model, losses, accuracies = train(cell, data, args, rng)
        final, predictions[cell] = accuracy(model, x_test, y_test)
        results[cell] = {"loss": losses, "test_accuracy": accuracies, "final_test_accuracy": final,
                         "seconds": timer.seconds}
        rows.append([cell, losses[0], losses[-1], final, max(accuracies), round(timer.seconds, 1)])
    best = max(results, key=lambda c: results[c]["final_test_accuracy"])
    common.summary(args, ["cell", "first loss", "final loss", "test accuracy", "best epoch's", "seconds"], rows)
    print(f"\nconfusion matrix of the {best} on the test images:\n{confusion(y_test, predictions[best])}")
    plot(results, x_test, y_test, predictions[best], best, f"{args.out}/sequence_classification.png")
    summary = {"config": vars(args), "results": results, "best": best}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
