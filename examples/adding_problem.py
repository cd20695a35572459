"""The adding problem: which recurrent networks carry two numbers across a long sequence?

Each input step is a pair (a number drawn uniformly from [0, 1], a marker). Exactly two steps
carry the marker 1, one in each half of the sequence; the target is the sum of their two
numbers, read from the last hidden state through a linear layer (Hochreiter & Schmidhuber
1997; Le, Jaitly & Hinton 2015). Answering 1 every time scores an MSE of 1/6 ~ 0.167 (the
variance of a sum of two uniforms), so a model has learnt the task only well below that.

Four models with the same hidden size, optimizer (Adam, gradient-norm clipping), batch and
number of steps: a tanh RNN, an IRNN (a ReLU RNN whose recurrent weight starts as the identity,
biases zero), an LSTM (forget-gate bias +1) and a GRU. The gated models solve it at every
length; the tanh RNN gets there ever more slowly, or not at all, as T grows.

    python examples/adding_problem.py                    # T = 50, 100, 200, all four models
    python examples/adding_problem.py --lengths 100 --models lstm,rnn --steps 3000
    python examples/adding_problem.py --quick            # T = 50, LSTM and GRU, a few seconds

Prints a table (final test MSE on a fixed held-out set, the first step whose test MSE is
below 0.01, wall time), writes <out>/results.json and <out>/adding_problem.png.
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

MODELS = ("rnn", "irnn", "lstm", "gru")
SOLVED = 0.01


def make_batch(rng, batch, length):
    """Inputs (T, B, 2) as (number, marker) pairs and targets (B, 1): the sum of the two marked numbers."""
    values = rng.uniform(0.0, 1.0, size=(length, batch))
    first = rng.integers(0, length // 2, size=batch)
    second = rng.integers(length // 2, length, size=batch)
    cols = np.arange(batch)
    markers = np.zeros((length, batch))
    markers[first, cols] = markers[second, cols] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[first, cols] + values[second, cols]).reshape(batch, 1).astype(np.float32)
    return x, y


class Adder(nn.Module):
    """A one-layer recurrent network of the given kind, then a linear read-out of its last hidden state."""

    def __init__(self, kind, hidden):
        if kind == "lstm":
            self.rnn = nn.LSTM(2, hidden)
            nn.init.lstm_forget_bias_(self.rnn, 1.0)
        elif kind == "gru":
            self.rnn = nn.GRU(2, hidden)
        elif kind == "irnn":
            self.rnn = nn.RNN(2, hidden, nonlinearity="relu")
            nn.init.identity_(self.rnn.weight_hh_l0)
            nn.init.zeros_(self.rnn.bias_ih_l0)
            nn.init.zeros_(self.rnn.bias_hh_l0)
        else:
            self.rnn = nn.RNN(2, hidden, nonlinearity="tanh")
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-1])


def evaluate(model, x, y):
    """Test MSE on the whole held-out set, without building a graph."""
    model.eval()
    with ts.no_grad():
        mse = nn.functional.mse_loss(model(x), y).item()
    model.train()
    return mse


def train(kind, length, test, args):
    """Train one model at one length; return its curves, final test MSE, solving step and seconds.

    Every model at a given length sees the same training batches (the same seed) and is
    scored on the same test set every ``args.eval_every`` steps, step 0 included.
    """
    model = Adder(kind, args.hidden)
    params = list(model.parameters())
    opt = ts.optim.Adam(params, lr=args.lr)
    rng = np.random.default_rng([args.seed, length])
    steps, test_mse, train_mse, window = [0], [evaluate(model, *test)], [], []
    with common.Timer() as timer:
        for step in range(1, args.steps + 1):
            x, y = make_batch(rng, args.batch, length)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            window.append(loss.item())
            if step % args.eval_every == 0 or step == args.steps:
                steps.append(step)
                test_mse.append(evaluate(model, *test))
                train_mse.append(float(np.mean(window)))
                window = []
    solved = next((s for s, m in zip(steps, test_mse) if m < SOLVED), None)
    print(f"  T={length:<4d} {kind:<5s} test MSE {test_mse[0]:.3f} -> {test_mse[-1]:.4f}  "
          f"below {SOLVED} at step {solved if solved is not None else 'never'}  ({timer.seconds:.1f} s)",
          flush=True)
    return {"model": kind, "length": length, "final_test_mse": test_mse[-1], "solved_at": solved,
            "seconds": timer.seconds, "curve": {"step": steps, "test_mse": test_mse, "train_mse": train_mse}}


def plot(runs, baselines, lengths, path):
    """Test MSE against step, one log-scale panel per length, the predict-1 baseline dashed."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.6 * len(lengths), 3.8), sharey=True, squeeze=False)
    colors = {"rnn": "tab:red", "irnn": "tab:orange", "lstm": "tab:blue", "gru": "tab:green"}
    names = {"rnn": "tanh RNN", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}
    for ax, length in zip(axes[0], lengths):
        for run in (r for r in runs if r["length"] == length):
            c = run["curve"]
            ax.plot(c["step"], c["test_mse"], color=colors[run["model"]], label=names[run["model"]])
        ax.axhline(baselines[length], color="gray", ls="--", label="always answer 1")
        ax.axhline(SOLVED, color="gray", ls=":", lw=0.8, label=f"solved ({SOLVED})")
        ax.set_yscale("log")
        ax.set_title(f"T = {length}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test MSE")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("The adding problem: test MSE while training")
    fig.tight_layout()
    common.save_figure(fig, path)


def _int_list(text, flag):
    """Parse '50,100' into [50, 100], or raise a UsageError naming the flag."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise common.UsageError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def main(argv=None):
    """Run every (model, length) pair; print the table, write the JSON and PNG, return the results."""
    p = common.parser(__doc__.splitlines()[0], out="runs/adding_problem")
    p.add_argument("--lengths", default="50,100,200", help="comma-separated sequence lengths (default 50,100,200)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default 1500, quick 400)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--eval-every", type=int, default=None, help="steps between test evaluations (default 50, quick 50)")
    p.add_argument("--test-size", type=int, default=1000, help="held-out sequences per length")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.models = "50", "lstm,gru"
    common.defaults(args, steps=(1500, 400), eval_every=(50, 50))
    lengths = _int_list(args.lengths, "--lengths")
    models = common.names(args.models, MODELS, "--models")
    if any(length < 2 for length in lengths):
        raise common.UsageError(f"--lengths: each length must be at least 2 (one marker per half), got {lengths}")
    for flag, value in (("--steps", args.steps), ("--hidden", args.hidden), ("--batch", args.batch),
                        ("--eval-every", args.eval_every), ("--test-size", args.test_size)):
        if value < 1:
            raise common.UsageError(f"{flag}: must be a positive integer, got {value}")
    if not (args.lr > 0 and args.clip > 0):
        raise common.UsageError(f"--lr and --clip must be positive, got {args.lr} and {args.clip}")
    common.start(args)

    baselines, runs = {}, []
    for length in lengths:
        test = make_batch(np.random.default_rng([args.seed, length, 1]), args.test_size, length)
        baselines[length] = float(np.mean((test[1] - 1.0) ** 2))
        print(f"T={length}: always answering 1 scores test MSE {baselines[length]:.4f} (expected 1/6 = 0.1667)")
        runs += [train(kind, length, test, args) for kind in models]

    rows = [[r["model"], r["length"], r["final_test_mse"], baselines[r["length"]],
             r["solved_at"] if r["solved_at"] is not None else "never", f"{r['seconds']:.1f}"] for r in runs]
    common.summary(args, ["model", "T", "final test MSE", "baseline", f"step MSE < {SOLVED}", "seconds"], rows)
    config = {k: getattr(args, k) for k in ("steps", "hidden", "batch", "lr", "clip", "eval_every", "test_size",
                                           "seed", "backend", "quick")}
    results = {"config": {**config, "lengths": lengths, "models": models, "optimizer": "Adam"},
               "baseline": {str(k): v for k, v in baselines.items()}, "runs": runs}
    common.write_json(f"{args.out}/results.json", results)
    plot(runs, baselines, lengths, f"{args.out}/adding_problem.png")
    return results


if __name__ == "__main__":
    common.run(main)
