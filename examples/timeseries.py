"""Many-to-many regression: predict the Lorenz system, one step ahead and free-running.

The Lorenz system (sigma 10, rho 28, beta 8/3), integrated with 4th-order Runge-Kutta, is
observed every 0.02 time units with noise. A recurrent layer reads the noisy observations
and, at every step, predicts the next state (a linear layer on its output gives the change
from the current observation): many-to-many, trained on windows with the true next
observation fed at each step (teacher forcing).

Two tests on a held-out stretch of the trajectory, both scored against the noise-free state:
- one step ahead: the model reads the observations and predicts each next state, beside
  the naive forecast "the next state is the current observation";
- free-running (closed loop): after reading 100 observations, the model's own prediction is
  its next input, one step at a time, the state carried. The system is chaotic (errors
  double every ~0.77 time units, 38 steps), so this diverges from the truth eventually; the
  valid-prediction time is how long the error stays below 0.5 (in units of the data's
  standard deviation).

    python examples/timeseries.py               # LSTM and GRU
    python examples/timeseries.py --cells gru --noise 0.1 --steps 4000
    python examples/timeseries.py --quick

Prints a table; writes <out>/results.json and <out>/timeseries.png.
"""

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn

DT, EVERY = 0.01, 2  # RK4 step; keep every 2nd state: observations 0.02 time units apart
WARMUP, HORIZON, THRESHOLD = 100, 400, 0.5


def lorenz(n, rng, sigma=10.0, rho=28.0, beta=8.0 / 3.0):
    """``n`` states (n, 3) of the Lorenz system, 0.02 time units apart, after a transient."""

    def f(s):
        x, y, z = s
        return np.array([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])

    s = rng.normal(size=3) + np.array([1.0, 1.0, 20.0])
    states = []
    for i in range((n + 500) * EVERY):
        k1 = f(s)
        k2 = f(s + DT / 2 * k1)
        k3 = f(s + DT / 2 * k2)
        k4 = f(s + DT * k3)
        s = s + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i % EVERY == 0:
            states.append(s)
    return np.array(states[500:])  # the first 500 are the transient onto the attractor


class Forecaster(nn.Module):
    """A recurrent layer over (T, B, 3) observations; each step's output -> the next state."""

    def __init__(self, cell, hidden):
        self.rnn = common.CELLS[cell](3, hidden)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)
        return x + self.head(out), state  # the next state as the current one plus a change


def windows(series, rng, batch, length):
    """A batch of random windows: inputs (T, B, 3) and the next observations as targets."""
    starts = rng.integers(0, len(series) - length - 1, size=batch)
    index = starts[None, :] + np.arange(length)[:, None]
    return series[index], series[index + 1]


def free_run(model, observed, horizon):
    """Read ``observed`` (T, B, 3), then feed each prediction back for ``horizon`` steps."""
    with ts.no_grad():
        prediction, state = model(observed)
        x, path = prediction.data[-1:], []
        for _ in range(horizon):
            path.append(x[0])
            prediction, state = model(x, state)
            x = prediction.data
    return np.stack(path)  # (horizon, B, 3)


def train(cell, data, args, rng):
    """Fit one forecaster; returns it, its loss curve and its test scores."""
    train_obs, test_obs, test_clean = data
    model = Forecaster(cell, args.hidden)
    optimizer = ts.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = ts.optim.CosineAnnealingLR(optimizer, T_max=args.steps)
    losses = []
    for step in range(args.steps):
        x, y = windows(train_obs, rng, args.batch_size, args.window)
        loss = ((model(x)[0] - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % max(1, args.steps // 5) == 0:
            print(f"  {cell:4s} step {step + 1:5d}  train MSE {np.mean(losses[-50:]):.5f}")

    model.eval()
    with ts.no_grad():
        one_step = model(test_obs[:-1, None])[0].data[:, 0]  # the whole held-out stretch, one call
    rmse = float(np.sqrt(np.mean((one_step - test_clean[1:]) ** 2)))
    starts = np.arange(0, len(test_obs) - WARMUP - HORIZON, 97)[:24]  # 24 start points
    observed = np.stack([test_obs[s:s + WARMUP] for s in starts], axis=1)
    path = free_run(model, observed, HORIZON)
    truth = np.stack([test_clean[s + WARMUP:s + WARMUP + HORIZON] for s in starts], axis=1)
    error = np.sqrt(((path - truth) ** 2).mean(-1))  # (horizon, starts)
    valid = [int(np.argmax(e > THRESHOLD)) if (e > THRESHOLD).any() else HORIZON for e in error.T]
    return model, {"loss": losses, "one_step_rmse": rmse, "free_run_error": error.mean(1),
                   "valid_steps": float(np.median(valid)), "one_step": one_step, "path": path[:, 0],
                   "start": int(starts[0])}


def plot(results, test_obs, test_clean, path):
    """One-step predictions over a stretch, a free run against the truth, error vs horizon."""
    plt = common.pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(9, 9))
    t = np.arange(300)
    axes[0].plot(t, test_obs[1:301, 0], ".", color="gray", ms=3, label="noisy observation")
    axes[0].plot(t, test_clean[1:301, 0], color="black", lw=1, label="true state")
    for cell, r in results.items():
        s = r["start"]
        axes[0].plot(t, r["one_step"][:300, 0], lw=1, label=f"{cell}, one step ahead")
        axes[1].plot(np.arange(WARMUP, WARMUP + HORIZON), r["path"][:, 0], lw=1, label=f"{cell}, free-running")
        axes[2].plot(r["free_run_error"], label=cell)
    axes[0].set(title="one-step-ahead prediction (x coordinate)", xlabel="step", ylabel="x (standardised)")
    axes[1].plot(np.arange(WARMUP + HORIZON), test_clean[s:s + WARMUP + HORIZON, 0], color="black", lw=1,
                 label="true state")
    axes[1].axvline(WARMUP, ls="--", color="gray")
    axes[1].set(title=f"free-running after {WARMUP} observed steps (x coordinate)", xlabel="step",
                ylabel="x (standardised)")
    axes[2].axhline(THRESHOLD, ls="--", color="gray", label="threshold")
    axes[2].set(title="free-running error, mean of 24 starts", xlabel="steps after the last observation",
                ylabel="RMS error", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, path)


def main(argv=None):
    """Train the forecasters and test them; returns the results dict also written as JSON."""
    p = common.parser(__doc__.splitlines()[0], out="runs/timeseries")
    p.add_argument("--cells", default="lstm,gru", help="comma-separated, from lstm, gru, rnn")
    p.add_argument("--noise", type=float, default=0.05, help="observation noise, in standard deviations")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--window", type=int, default=64, help="steps per training window")
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.steps = "lstm", min(args.steps, 150)
    cells = common.names(args.cells, common.CELLS, "--cells")
    if min(args.steps, args.hidden, args.batch_size, args.window) < 1 or args.noise < 0:
        raise common.UsageError("need --steps, --hidden, --batch-size, --window >= 1 and --noise >= 0")
    rng = common.start(args)
    clean = lorenz(12_000, rng)
    clean = ((clean - clean[:8000].mean(0)) / clean[:8000].std(0)).astype(np.float32)
    observed = clean + args.noise * rng.normal(size=clean.shape).astype(np.float32)
    data = observed[:8000], observed[8000:], clean[8000:]
    naive = float(np.sqrt(np.mean((observed[8000:-1] - clean[8001:]) ** 2)))
    print(f"Lorenz: 8000 training and 4000 test observations, noise {args.noise}; "
          f"naive one-step RMSE {naive:.4f}")

    results, rows = {}, []
    for cell in cells:
        with common.Timer() as timer:
            _, r = train(cell, data, args, rng)
        results[cell] = {**r, "seconds": timer.seconds}
        rows.append([cell, r["loss"][0], float(np.mean(r["loss"][-50:])), r["one_step_rmse"], naive,
                     r["valid_steps"], round(r["valid_steps"] * DT * EVERY, 2), round(timer.seconds, 1)])
    common.summary(args, ["cell", "first MSE", "final MSE", "one-step RMSE", "naive RMSE", "valid steps",
                          "valid time", "seconds"], rows)
    plot(results, data[1], data[2], f"{args.out}/timeseries.png")
    summary = {"config": vars(args), "naive_one_step_rmse": naive,
               "results": {c: {k: v for k, v in r.items() if k not in ("one_step", "path")}
                           for c, r in results.items()}}
    common.write_json(f"{args.out}/results.json", summary)
    return summary


if __name__ == "__main__":
    common.run(main)
