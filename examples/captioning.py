"""One-to-many: an LSTM decoder captions an 8x8 digit image with the digit's English name.

The many-to-one example (``sequence_classification.py``) reads a digit and names its class;
here the arrow points the other way, as in image captioning: one input, an image of
scikit-learn's handwritten digits (1,797 of them, shipped inside the package), and a
sequence out, the digit's name spelled a character at a time ("seven", then <end>).

An encoder (a linear layer and tanh over the 64 pixels) turns the image into a feature
vector of ``--hidden`` numbers, and an LSTM decoder (character embedding -> LSTM -> linear
over the characters) writes the name. The image conditions the decoder in one of two ways,
the two of the lecture notes' captioning picture:

- ``init_state``: the features are the decoder's initial hidden state h0 (c0 is zero); the
  decoder reads <start>, then the name's characters;
- ``first_input``: the decoder starts from zeros and reads the features as its first input
  (step 0), then the name's characters. The image reaches the state only through the
  input weights, once.

Either way the decoder learns by teacher forcing: it reads the true name shifted by one
(<start> or the image, then "s", "e", "v", "e", "n") and is scored by cross-entropy on each
next character ("s", "e", "v", "e", "n", <end>); names are padded to one length and the
padding is ignored (``ignore_index``). At test time there is no true name to read: greedy
decoding feeds back the decoder's own most likely character, one step at a time, until it
writes <end> (or runs out of steps). Both conditionings start from the same weights, see the
same batches and are compared on a held-out quarter of the images by exact match (the whole
decoded string is the name; chance is 0.1) and by character accuracy (the share of the
name's characters and its <end> decoded right, in place).

    python examples/captioning.py                        # both conditionings, 30 epochs
    python examples/captioning.py --modes first_input --hidden 32 --epochs 10
    python examples/captioning.py --quick

Prints a table (losses, test exact match and character accuracy, the share of captions that
are no digit's name at all, seconds) and a few decoded test images per conditioning; writes
<out>/results.json and <out>/captioning.png (training curves and one test digit of each class with its captions).
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CHARS = ["<pad>", "<start>", "<end>"] + sorted(set("".join(NAMES)))
PAD, START, END = 0, 1, 2
INDEX = {c: i for i, c in enumerate(CHARS)}
TARGET_LEN = max(len(name) for name in NAMES) + 1  # and <end>
DECODE_LEN = TARGET_LEN + 2  # room to show a caption that runs past its <end>
MODES = ("init_state", "first_input")


# ---------------------------------------------------------------- data


def load_digits(rng, test_fraction=0.25):
    """(train images, train digits, test images, test digits): images as (N, 64) in [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits  # common.start checked it is installed

    digits = sklearn_digits()
    images = (digits.data / 16.0).astype(np.float32)
    index = rng.permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    train, test = index[:cut], index[cut:]
    return images[train], digits.target[train], images[test], digits.target[test]


def encode_names(digits):
    """The decoder's input and target tokens (TARGET_LEN, B) for a batch of digits.

    ``decoder_in`` is <start> + the name and ``decoder_out`` the name + <end>, both padded
    with <pad>: ``decoder_in[t]`` is the token before ``decoder_out[t]``.
    """
    decoder_in = np.full((TARGET_LEN, len(digits)), PAD, dtype=np.int64)
    decoder_out = np.full((TARGET_LEN, len(digits)), PAD, dtype=np.int64)
    for b, digit in enumerate(digits):
        tokens = [INDEX[c] for c in NAMES[digit]]
        decoder_in[:len(tokens) + 1, b] = [START] + tokens
        decoder_out[:len(tokens) + 1, b] = tokens + [END]
    return decoder_in, decoder_out


def decode_tokens(row):
    """The caption a row of decoded tokens spells: its characters up to the first <end>
    (a stray <pad> or <start> shows as "?")."""
    caption = []
    for token in row:
        if token == END:
            break
        caption.append(CHARS[token] if token > END else "?")
    return "".join(caption)


# ---------------------------------------------------------------- model


class Captioner(nn.Module):
    """Image encoder (linear + tanh), character embedding, LSTM decoder and linear head.

    ``conditioning`` says where the image features enter: the initial state or the first input.
    Both kinds have the same parameters, of the same shapes.
    """

    def __init__(self, conditioning, hidden):
        self.conditioning = conditioning
        self.encoder = nn.Linear(64, hidden)
        self.embed = nn.Embedding(len(CHARS), hidden)
        self.decoder = nn.LSTM(hidden, hidden)
        self.head = nn.Linear(hidden, len(CHARS))

    def start(self, images):
        """The decoder's first input (1, B, H) and initial state for a batch of images (B, 64)."""
        features = self.encoder(images).tanh().reshape(1, len(images), -1)
        if self.conditioning == "init_state":
            c0 = np.zeros(features.shape, dtype=np.float32)
            return self.embed(np.full((1, len(images)), START)), (features, c0)
        return features, None

    def forward(self, images, decoder_in):
        """Teacher forcing: logits (T, B, C) for every next character, the decoder reading the
        true previous ones (``decoder_in[1:]``) after its first input."""
        first, state = self.start(images)
        out, _ = self.decoder(ts.cat([first, self.embed(decoder_in[1:])], axis=0), state)
        return self.head(out)

    @ts.no_grad()
    def caption(self, images, steps=DECODE_LEN):
        """Greedy decoding: each step feeds back the most likely character; tokens (B, steps)."""
        x, state = self.start(images)
        tokens = []
        for _ in range(steps):
            out, state = self.decoder(x, state)
            best = self.head(out).data.argmax(-1)
            tokens.append(best[0])
            x = self.embed(best)
        return np.stack(tokens, axis=1)


# ---------------------------------------------------------------- training and evaluation


def evaluate(model, images, digits):
    """Greedy captions of ``images``: exact-match and character accuracy, the share of captions
    that are no digit's name at all (the rest of the misses name the wrong digit), and the captions."""
    model.eval()
    rows = model.caption(images)
    model.train()
    captions = [decode_tokens(row) for row in rows]
    exact = np.array([caption == NAMES[d] for caption, d in zip(captions, digits)])
    _, targets = encode_names(digits)
    chars = [np.mean(row[:len(NAMES[d]) + 1] == targets[:len(NAMES[d]) + 1, b])
             for b, (row, d) in enumerate(zip(rows, digits))]
    return {"exact_match": float(exact.mean()), "char_accuracy": float(np.mean(chars)),
            "not_a_name": float(np.mean([caption not in NAMES for caption in captions])), "captions": captions}


def train(conditioning, data, args):
    """Train one captioner with Adam and gradient clipping; return it and its curves.

    Each conditioning starts from the same weights (the parameters have the same shapes) and
    sees the same batches, both seeded from ``--seed``.
    """
    x_train, y_train, x_test, y_test = data
    ts.manual_seed(args.seed)
    rng = np.random.default_rng([args.seed, 1])
    model = Captioner(conditioning, args.hidden)
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    curves = {"loss": [], "epoch_loss": [], "exact_match": [], "char_accuracy": []}
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            decoder_in, decoder_out = encode_names(y_train[batch])
            logits = model(x_train[batch], decoder_in)
            loss = nn.functional.cross_entropy(logits, decoder_out, ignore_index=PAD)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            curves["loss"].append(loss.item())
        steps_per_epoch = -(-len(order) // args.batch_size)
        curves["epoch_loss"].append(float(np.mean(curves["loss"][-steps_per_epoch:])))
        metrics = evaluate(model, x_test, y_test)
        curves["exact_match"].append(metrics["exact_match"])
        curves["char_accuracy"].append(metrics["char_accuracy"])
        print(f"  {conditioning:11s} epoch {epoch + 1:3d}  loss {curves['epoch_loss'][-1]:.4f}  "
              f"test exact {metrics['exact_match']:.3f}  chars {metrics['char_accuracy']:.3f}")
    return model, curves


def show_captions(digits, captions, n=6):
    """Print ``n`` test captions: the first wrong ones (up to half), then right ones."""
    wrong = [i for i, (d, c) in enumerate(zip(digits, captions)) if c != NAMES[d]]
    right = [i for i, (d, c) in enumerate(zip(digits, captions)) if c == NAMES[d]]
    chosen = wrong[:n // 2]
    chosen += right[:n - len(chosen)]
    for i in sorted(chosen):
        mark = "right" if captions[i] == NAMES[digits[i]] else f"WRONG (want {NAMES[digits[i]]})"
        print(f"    {digits[i]} -> {captions[i]:8s} {mark}")


def plot(runs, x_test, y_test, path):
    """Loss per step and test accuracy per epoch for each conditioning; below, one test digit
    of each class with each conditioning's greedy caption (red where wrong)."""
    plt = common.pyplot()
    fig = plt.figure(figsize=(12, 4.5 + 1.3 * len(runs)))
    grid = fig.add_gridspec(1 + len(runs), 10, height_ratios=[3.5] + [1.3] * len(runs), hspace=0.6)
    loss_ax, acc_ax = fig.add_subplot(grid[0, :5]), fig.add_subplot(grid[0, 5:])
    for (conditioning, run), color in zip(runs.items(), ("tab:blue", "tab:orange")):
        loss = np.array(run["curves"]["loss"])
        window = max(1, min(20, len(loss) // 10))
        steps = np.arange(1, len(loss) + 1)
        loss_ax.plot(steps, loss, color=color, alpha=0.2, lw=0.7)
        loss_ax.plot(steps[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"), color=color,
                     label=f"{conditioning} (mean of {window})")
        epochs = np.arange(1, len(run["curves"]["exact_match"]) + 1)
        acc_ax.plot(epochs, run["curves"]["exact_match"], "o-", ms=3, color=color, label=f"{conditioning}: exact")
        acc_ax.plot(epochs, run["curves"]["char_accuracy"], "--", color=color, alpha=0.7, label="characters")
    acc_ax.axhline(0.1, color="gray", ls=":", label="chance (exact)")
    loss_ax.set(yscale="log", xlabel="training step", ylabel="cross-entropy (nats per character)",
                title="training loss (teacher forcing)")
    acc_ax.set(ylim=(0, 1.02), xlabel="epoch", ylabel="accuracy", title=f"greedy decoding of {len(y_test)} test images")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    shown = [int(np.flatnonzero(y_test == d)[0]) for d in range(10)]
    for row, (conditioning, run) in enumerate(runs.items(), start=1):
        for col, i in enumerate(shown):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(x_test[i].reshape(8, 8), cmap="gray_r")
            caption = run["captions"][i]
            ax.set_title(f'"{caption}"', fontsize=9, color="black" if caption == NAMES[y_test[i]] else "red")
            ax.axis("off")
        fig.axes[-10].text(-0.5, 0.5, conditioning, transform=fig.axes[-10].transAxes, ha="right", va="center",
                           fontsize=9)
    fig.suptitle("one-to-many: test digits captioned by an LSTM decoder, greedy decoding")
    common.save_figure(fig, path)


def check_args(args):
    """The conditionings named by --modes; a UsageError for flags out of range."""
    modes = common.names(args.modes, MODES, "--modes")
    if len(set(modes)) != len(modes):
        raise common.UsageError(f"--modes names a conditioning twice: {args.modes}")
    for name in ("hidden", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise common.UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise common.UsageError(f"--lr must be positive, got {args.lr}")
    return modes


def main(argv=None):
    """Train one captioner per conditioning, decode the test images greedily, print, write JSON and PNG."""
    p = common.parser(__doc__.splitlines()[0], out="runs/captioning")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated conditionings, from {', '.join(MODES)} (default: both)")
    p.add_argument("--hidden", type=int, default=None,
                   help="image features, embedding and LSTM state size (default 64; 32 with --quick)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training images (default 30; 6 with --quick)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    args = p.parse_args(argv)
    for name, (full, quick) in {"hidden": (64, 32), "epochs": (30, 6)}.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    modes = check_args(args)
    common.start(args)
    data = load_digits(np.random.default_rng(args.seed))
    x_test, y_test = data[2], data[3]
    print(f"{len(data[0])} training and {len(x_test)} test images; names of up to {TARGET_LEN - 1} characters "
          f"from {len(CHARS) - 3} letters; LSTM decoder, hidden {args.hidden}, {args.epochs} epochs of "
          f"batches of {args.batch_size}; chance exact match 0.1")

    runs = {}
    for conditioning in modes:
        print(f"\n{conditioning}")
        with common.Timer() as timer:
            model, curves = train(conditioning, data, args)
        final = evaluate(model, x_test, y_test)
        print("  test captions (greedy):")
        show_captions(y_test, final["captions"])
        runs[conditioning] = {
            "first_loss": curves["loss"][0], "final_loss": curves["epoch_loss"][-1],
            "exact_match": final["exact_match"], "char_accuracy": final["char_accuracy"],
            "not_a_name": final["not_a_name"],
            "seconds": timer.seconds, "curves": curves, "captions": final["captions"],
        }

    rows = [[c, r["first_loss"], r["final_loss"], r["exact_match"], r["char_accuracy"], r["not_a_name"],
             round(r["seconds"], 1)] for c, r in runs.items()]
    print()
    common.summary(args, ["conditioning", "first loss", "final loss", "test exact", "test chars", "not a name",
                          "seconds"], rows)
    best = max(runs, key=lambda c: (runs[c]["exact_match"], runs[c]["char_accuracy"]))
    results = {"config": vars(args), "modes": runs, "best": best,
               "test_digits": y_test, "names": list(NAMES)}
    common.write_json(f"{args.out}/results.json", results)
    plot(runs, x_test, y_test, f"{args.out}/captioning.png")
    return results


if __name__ == "__main__":
    common.run(main)
