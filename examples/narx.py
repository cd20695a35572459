"""System identification with a NARX model: open-loop training, closed-loop prediction.

The plant is Narendra and Parthasarathy's (1990) second example, a nonlinear system with a
two-step memory, simulated here:

    y(k+1) = y(k) y(k-1) (y(k) + 2.5) / (1 + y(k)^2 + y(k-1)^2) + u(k)

driven by random inputs u(k) ~ U(-2, 2) for training, and tested on the paper's input,
sin(2 pi k / 25), which becomes 0.8 sin(2 pi k / 25) + 0.2 sin(2 pi k / 10) halfway.

``nn.NARX`` (tapped delay lines of q past outputs and inputs into an MLP) is trained
open-loop: its delay line holds the true past outputs (teacher forcing, the
series-parallel model). It is then tested both ways: open-loop (one step ahead from the
true past) and closed-loop (the parallel model: after q true outputs it feeds back its own
predictions, as a simulator of the plant must). For comparison, two recurrent models that
see only u and must carry the plant's state themselves, trained and tested closed-loop:
an Elman RNN (``nn.RNN`` and a linear read-out) and a Jordan network
(``nn.Recurrent(nn.JordanCell)``, whose state is its previous output, started from the
true y at the start of each window). NOTE: a Jordan network's next output depends on u(k)
and its last output alone, a first-order model; this plant's next output needs two past
outputs, so the Jordan network cannot fit it exactly, however long it trains.

    python examples/narx.py                 # 1500 steps per model
    python examples/narx.py --delay 3 --hidden 32
    python examples/narx.py --quick
    python examples/narx.py --optimizer lbfgs --batch-size 256   # full batch, quasi-Newton

Prints a table; writes <out>/results.json and <out>/narx.png.
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

TEST_STEPS = 500
MODELS = ("narx", "elman", "jordan")


def plant(u, y0=0.0, y1=0.0):
    """The plant's outputs y(0 .. K) for inputs u(0 .. K-1), from y(-1) = y0, y(0) = y1."""
    y = [y0, y1]
    for k in range(len(u)):
        yk, yk1 = y[-1], y[-2]
        y.append(yk * yk1 * (yk + 2.5) / (1 + yk * yk + yk1 * yk1) + u[k])
    return np.array(y[1:])


def test_input(steps=TEST_STEPS):
    """The paper's test input."""
    k = np.arange(steps)
    return np.where(k < steps // 2, np.sin(2 * np.pi * k / 25),
                    0.8 * np.sin(2 * np.pi * k / 25) + 0.2 * np.sin(2 * np.pi * k / 10))


class Elman(nn.Module):
    """An Elman RNN reading u, a linear read-out predicting y(k+1) at each step."""

    def __init__(self, hidden):
        self.rnn, self.head = nn.RNN(1, hidden), nn.Linear(hidden, 1)

    def forward(self, u, y_start):
        out, _ = self.rnn(u)
        return self.head(out)


class Jordan(nn.Module):
    """A Jordan network reading u; its state is its last output, started from the true y."""

    def __init__(self, hidden):
        self.layer = nn.Recurrent(nn.JordanCell(1, hidden, 1))

    def forward(self, u, y_start):
        out, _ = self.layer(u, y_start)
        return out


def windows(u, y, rng, batch, length):
    """A batch of training windows: u (T, B, 1) and y (T + 1, B, 1), y[t + 1] the plant's answer to u[t]."""
    starts = rng.integers(0, len(u) - length, size=batch)
    pick = lambda a, n: np.stack([a[s:s + n] for s in starts], axis=1)[..., None].astype(np.float32)  # noqa
    return pick(u, length), pick(y, length + 1)


def train(name, data, args, rng):
    """Train one model; returns it, its losses (one per evaluation) and its final training MSE (the
    last 50 minibatches' mean with Adam, the fixed batch's at the end with L-BFGS)."""
    u_train, y_train = data
    q = args.delay
    if name == "narx":
        model = nn.NARX(1, 1, q, args.hidden)
    else:
        model = (Elman if name == "elman" else Jordan)(args.hidden)
    losses = []

    def mse(u, y):
        if name == "narx":  # open loop: predictions of y[q] .. y[T-1] from the true past outputs
            predicted, target = model(u, y[:-1]), y[q:-1]
        else:  # u only; the Elman RNN's first steps have no context, so they are not scored
            predicted, target = model(u, y[0])[args.burn_in:], y[1 + args.burn_in:]
        return ((predicted - target) ** 2).mean()

    if args.optimizer == "lbfgs":  # full batch: one fixed draw of windows, the loss and gradient --steps times
        u, y = windows(u_train, y_train, rng, args.batch_size, args.window)
        opt = ts.optim.LBFGS(model.parameters(), line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = mse(u, y)
            loss.backward()
            losses.append(loss.item())
            return loss

        while args.steps - len(losses) >= 2:  # a step evaluates up to max_eval + 1 times (the line search)
            opt.param_groups[0]["max_eval"] = min(25, args.steps - len(losses) - 1)
            opt.step(closure)
        with ts.no_grad():
            return model, losses, mse(u, y).item()  # at the parameters it ends with
    opt = ts.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        loss = mse(*windows(u_train, y_train, rng, args.batch_size, args.window))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return model, losses, float(np.mean(losses[-50:]))


def evaluate(name, model, u, y, q):
    """Test RMSEs on the test input: {"open_loop": ..., "closed_loop": ...} and the closed-loop path."""
    model.eval()
    u_t, y_t = u[:, None, None].astype(np.float32), y[:, None, None].astype(np.float32)
    with ts.no_grad():
        if name == "narx":  # predictions of y[q] .. y[K-1]
            open_loop = model(u_t, y_t[:-1]).data[:, 0, 0]
            path = model(u_t, y_t[:q], closed_loop=True).data[:, 0, 0]
            start = q
        else:  # predictions of y[1] .. y[K]
            open_loop, path, start = None, model(u_t, y_t[0]).data[:, 0, 0], 1
    truth = y[start:start + len(path)]
    rmse = lambda p: float(np.sqrt(np.mean((p - truth) ** 2)))  # noqa: E731
    full = np.full(len(y), np.nan)
    full[start:start + len(path)] = path
    return {"open_loop_rmse": None if open_loop is None else rmse(open_loop), "closed_loop_rmse": rmse(path),
            "path": full}


def plot(results, y, path):
    plt = common.pyplot()
    fig, ax = plt.subplots(2, 1, figsize=(10, 6))
    k, half = np.arange(len(y)), len(y) // 2
    for axis, part in zip(ax, (slice(0, min(half, 120)), slice(half, half + min(half, 120)))):
        axis.plot(k[part], y[part], color="black", lw=2, label="plant")
        for name, r in results.items():
            axis.plot(k[part], r["path"][part], lw=1, label=f"{name} closed loop")
    ax[0].set_title("test input, first half: the plant and each model closed-loop (fed back its own outputs)")
    ax[1].set_title("test input, second half")
    for axis in ax:
        axis.set(xlabel="time step k", ylabel="plant output y(k)")
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the curves
    fig.tight_layout()
    common.save_figure(fig, path)


def main(argv=None):
    """Train the models and test them; returns the results dict also written as JSON."""
    p = common.parser(__doc__.splitlines()[0], out="runs/narx")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--delay", type=int, default=2, help="NARX's q: past outputs and inputs in its delay lines")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--window", type=int, default=40)
    p.add_argument("--burn-in", type=int, default=5, help="unscored first steps of the u-only models")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")
    p.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"),
                   help="adam: minibatches of fresh windows, --steps updates; lbfgs: L-BFGS with the strong-Wolfe "
                        "line search on one fixed batch of --batch-size windows, --steps evaluations of loss and "
                        "gradient (the same budget)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 60)
    models = common.names(args.models, MODELS, "--models")
    if min(args.steps, args.hidden, args.batch_size, args.delay) < 1 or not args.delay < args.window:
        raise common.UsageError("need --steps, --hidden, --batch-size, --delay >= 1 and --delay < --window")
    if args.optimizer == "lbfgs" and args.steps < 2:  # a step may evaluate twice: one is no budget
        raise common.UsageError(f"--optimizer lbfgs needs --steps >= 2 (evaluations of loss and gradient), "
                                f"got {args.steps}")
    rng = common.start(args)
    u_train = rng.uniform(-2, 2, size=20_000)
    data = u_train, plant(u_train)
    u_test = test_input()
    y_test = plant(u_test)
    print(f"plant: {len(u_train)} training steps (u ~ U(-2, 2)), {TEST_STEPS} test steps (sinusoids)")

    results, rows = {}, []
    for name in models:
        with common.Timer() as timer:
            model, losses, final = train(name, data, args, rng)
        r = {"loss": losses, "final_mse": final, **evaluate(name, model, u_test, y_test, args.delay),
             "seconds": timer.seconds}
        results[name] = r
        rows.append([name, "open (teacher forcing)" if name == "narx" else "closed (u only)", losses[0],
                     final, "-" if r["open_loop_rmse"] is None else r["open_loop_rmse"],
                     r["closed_loop_rmse"], round(timer.seconds, 1)])
    common.summary(args, ["model", "trained", "first MSE", "final MSE", "test open-loop RMSE",
                          "test closed-loop RMSE", "seconds"], rows)
    plot(results, y_test, f"{args.out}/narx.png")
    summary = {"config": vars(args), "test_output_std": float(y_test.std()),
               "results": {n: {k: v for k, v in r.items() if k != "path"} for n, r in results.items()}}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
