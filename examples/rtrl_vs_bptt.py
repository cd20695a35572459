"""Real-time recurrent learning beside backpropagation through time: the same gradient, two ways.

BPTT (``loss.backward()``) runs the sequence forward, keeps every step's graph, then walks
it back: memory grows with the length T, and no gradient exists before the sequence ends.
RTRL (``tinyseq.bptt.rtrl``; Williams & Zipser 1989; the first LSTM was trained with a
truncated mix of it and BPTT) carries each sequence's sensitivity P_t = ds_t/dtheta forward
with the state, P_t = J_t P_{t-1} + ds_t/dtheta: nothing of the past is kept, and the
gradient of every step's loss is there at that step, so the weights can change at every step
of a stream that never ends. The price is P: N x P numbers per sequence (N state entries, P
parameters: about H^3 for a tanh RNN) and the product J_t P_{t-1}, N^2 x P multiply-adds a
step (about H^4).

The script shows, in three parts:

1. Equal gradients: RTRL against BPTT in float64 on a tanh RNN, an LSTM, a GRU and a cell
   written from ops (``cell_gallery.LSTM`` with peepholes), with sequences of different
   lengths (the largest difference printed).
2. Cost against T (H fixed) and against H (T fixed), each a tanh RNN (``nn.RNNCell``), B = 1:
   peak memory (NumPy's allocations, ``tracemalloc``) and time per step of one gradient,
   BPTT on the graph against RTRL, beside the slopes the counts above predict.
3. Online learning: a GRU reads a stream of random +-1 bits and must say, at every step,
   the bit it read ``--delay`` steps earlier; RTRL updates the weights (Adam) after every
   step. Beside it, the same learner with its sensitivities cleared at every step (the
   gradient truncated to one step, which cannot see the earlier input): the accuracy over
   the stream shows which one learns to remember.

    python examples/rtrl_vs_bptt.py [--hidden-sizes 4,8,16,32,64,128] [--lengths 25,50,100,200,400]
                                    [--stream 3000] [--delay 4]
    python examples/rtrl_vs_bptt.py --quick     # a small smoke-test run
"""

import time
import tracemalloc

import numpy as np

import cell_gallery
import common
import tinyseq as ts
from tinyseq import bptt, nn, optim

F64 = np.float64
INPUTS = 4


CELLS = {
    "rnn": lambda h: nn.RNNCell(INPUTS, h, dtype=F64),
    "lstm": lambda h: nn.LSTMCell(INPUTS, h, dtype=F64),
    "gru": lambda h: nn.GRUCell(INPUTS, h, dtype=F64),
    "user cell": lambda h: cell_gallery.LSTM(INPUTS, h, peephole=True, dtype=F64),  # from ops, with peepholes
}


def parse_args(argv):
    p = common.parser(__doc__.splitlines()[0], "results/rtrl_vs_bptt")
    p.add_argument("--hidden-sizes", help="H of the cost-against-H sweep (default 4,8,16,32,64,128)")
    p.add_argument("--lengths", help="T of the cost-against-T sweep (default 25,50,100,200,400)")
    p.add_argument("--stream", type=int, help="steps of the online stream (default 3000)")
    p.add_argument("--delay", type=int, help="how many steps back the online learner recalls (default 4)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate online (default 0.01)")
    args = p.parse_args(argv)
    common.defaults(args, hidden_sizes=("4,8,16,32,64,128", "4,8,16"), lengths=("25,50,100,200,400", "10,20,40"),
                    stream=(3000, 300), delay=(4, 2))
    args.hidden_sizes = sizes(args.hidden_sizes, "--hidden-sizes")
    args.lengths = sizes(args.lengths, "--lengths")
    if args.delay < 1:
        raise common.UsageError(f"--delay {args.delay}: the learner must recall a step back; give --delay >= 1")
    if args.stream < 2 * args.delay + 2:
        raise common.UsageError(f"--stream {args.stream}: too short for --delay {args.delay}; give at least "
                                f"{2 * args.delay + 2} steps")
    if not args.lr > 0:
        raise common.UsageError(f"--lr {args.lr}: give a learning rate > 0")
    return args


def sizes(text, flag):
    """A comma-separated list of positive ints, increasing, at least two (for a slope)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise common.UsageError(f"{flag} {text!r}: expected comma-separated integers, e.g. 8,16,32") from None
    if len(values) < 2 or min(values) < 1 or values != sorted(set(values)):
        raise common.UsageError(f"{flag} {text!r}: give at least two increasing sizes >= 1, e.g. 8,16,32")
    return values


# ---------------------------------------------------------------- 1. equal gradients


def compare_gradients(kind, rng, steps=8, batch=3, hidden=5):
    """The largest |RTRL - BPTT| over every gradient entry (the cell's and a readout's), and
    the largest |gradient| for scale."""
    cell, readout = CELLS[kind](hidden), nn.Linear(hidden, 2, dtype=F64)
    x, target = rng.standard_normal((steps, batch, INPUTS)), rng.standard_normal((steps, batch, 2))
    lengths = np.r_[steps, rng.integers(1, steps, batch - 1)]

    def loss_fn(y, t):
        return ((readout(y) - target[t]) ** 2).sum()

    params = list(cell.parameters()) + list(readout.parameters())
    output, _ = nn.Recurrent(cell, backend="graph")(x, lengths=lengths)
    sum(loss_fn(output[t], t) for t in range(steps)).backward()
    by_bptt = np.concatenate([p.grad.data.ravel() for p in params])
    for p in params:
        p.grad = None
    bptt.rtrl(cell, x, loss_fn, lengths=lengths)
    by_rtrl = np.concatenate([p.grad.data.ravel() for p in params])
    return float(np.abs(by_rtrl - by_bptt).max()), float(np.abs(by_bptt).max()), by_bptt.size


# ---------------------------------------------------------------- 2. cost against T and H


def one_gradient(method, hidden, steps, rng):
    """One gradient of a per-step loss over T steps of a tanh RNN (B = 1) by BPTT or RTRL."""
    cell = nn.RNNCell(INPUTS, hidden, dtype=F64)
    x = rng.standard_normal((steps, 1, INPUTS))
    if method == "bptt":
        output, _ = nn.Recurrent(cell, backend="graph")(x)
        (output ** 2).sum().backward()
    else:
        bptt.rtrl(cell, x, lambda y, t: (y ** 2).sum())


def measure(method, hidden, steps, rng):
    """(peak memory in bytes, seconds per step): memory from one traced run, time from another
    (tracing slows allocation), the faster of two."""
    tracemalloc.start()
    one_gradient(method, hidden, steps, rng)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        one_gradient(method, hidden, steps, rng)
        times.append(time.perf_counter() - start)
    return peak, min(times) / steps


def theory(hidden, steps):
    """What each method must hold and do for a tanh RNN, in numbers: (BPTT's stored values,
    RTRL's sensitivity entries N*P, RTRL's multiply-adds per step N^2*P)."""
    params = hidden * INPUTS + hidden * hidden + 2 * hidden
    return steps * hidden, hidden * params, hidden * hidden * params


def slope(xs, ys):
    """The least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# ---------------------------------------------------------------- 3. online learning


def online(stream, delay, hidden, lr, seed, truncate):
    """A GRU learns online to output the bit it read ``delay`` steps before; the weights change
    after every step. ``truncate``: clear the sensitivities at every step (a one-step
    gradient). The same ``seed``, the same weights and stream. Returns each step's hit (the
    sign of the output is the bit), from step ``delay``."""
    ts.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cell, readout = nn.GRUCell(1, hidden, dtype=F64), nn.Linear(hidden, 1, dtype=F64)
    optimizer = optim.Adam(list(cell.parameters()) + list(readout.parameters()), lr=lr)
    learner = bptt.RTRL(cell, batch=1)
    bits = rng.choice([-1.0, 1.0], size=stream)
    hits = []
    for t in range(stream):
        if truncate:
            learner.sensitivity[...] = 0
        if t < delay:  # nothing to recall yet: just read
            learner.step(bits[t].reshape(1, 1))
            continue
        guess = {}

        def loss_fn(y, target=bits[t - delay]):
            out = readout(y)
            guess["out"] = out.item()
            return ((out - target) ** 2).sum()

        learner.step(bits[t].reshape(1, 1), loss_fn)
        optimizer.step()
        optimizer.zero_grad()
        hits.append(np.sign(guess["out"]) == bits[t - delay])
    return np.array(hits)


def windowed(hits, window):
    """The running accuracy over the last ``window`` steps, at each step from the window's end."""
    sums = np.cumsum(np.r_[0, hits.astype(float)])
    return (sums[window:] - sums[:-window]) / window


# ---------------------------------------------------------------- main


def main(argv=None):
    args = parse_args(argv)
    rng = common.start(args)

    print("1. RTRL's gradient against BPTT's (float64, 8 steps, B = 3 of lengths 8 and shorter):")
    equal = {}
    for kind in CELLS:
        diff, scale, count = compare_gradients(kind, rng)
        equal[kind] = {"max_abs_difference": diff, "max_abs_gradient": scale, "entries": count}
    print(common.table(["cell", "gradient entries", "max |RTRL - BPTT|", "max |gradient|"],
                       [[k, v["entries"], f"{v['max_abs_difference']:.1e}", v["max_abs_gradient"]]
                        for k, v in equal.items()]))

    fixed_h, fixed_t = args.hidden_sizes[len(args.hidden_sizes) // 2], args.lengths[len(args.lengths) // 2]
    print(f"\n2. Cost of one gradient of a tanh RNN (B = 1): against T at H = {fixed_h}, against H at T = {fixed_t}")
    sweeps = {"T": [(fixed_h, t) for t in args.lengths], "H": [(h, fixed_t) for h in args.hidden_sizes]}
    cost = {}
    for axis, points in sweeps.items():
        cost[axis] = []
        for hidden, steps in points:
            row = {"H": hidden, "T": steps}
            for method in ("bptt", "rtrl"):
                row[f"{method}_bytes"], row[f"{method}_seconds_per_step"] = measure(method, hidden, steps, rng)
            row["bptt_stored"], row["rtrl_sensitivity"], row["rtrl_macs_per_step"] = theory(hidden, steps)
            cost[axis].append(row)
    slopes = {}
    for axis in ("T", "H"):
        rows, key = cost[axis], axis
        xs = [r[key] for r in rows]
        for name in ("bptt_bytes", "rtrl_bytes", "bptt_seconds_per_step", "rtrl_seconds_per_step"):
            slopes[f"{name} vs {axis}"] = slope(xs, [r[name] for r in rows])
    print(common.table(["sweep", "H", "T", "BPTT memory", "RTRL memory", "BPTT ms/step", "RTRL ms/step"],
                       [[axis, r["H"], r["T"], f"{r['bptt_bytes'] / 1e6:.3f} MB", f"{r['rtrl_bytes'] / 1e6:.3f} MB",
                         f"{r['bptt_seconds_per_step'] * 1e3:.3f}", f"{r['rtrl_seconds_per_step'] * 1e3:.3f}"]
                        for axis in ("T", "H") for r in cost[axis]]))
    print("log-log slopes: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))

    print(f"\n3. Online: a GRU (H = 8) recalls the bit {args.delay} steps back, Adam after every step, "
          f"{args.stream} steps")
    runs = {}
    for name, truncate in (("RTRL", False), ("one-step gradient", True)):
        with common.Timer() as timer:
            hits = online(args.stream, args.delay, 8, args.lr, args.seed, truncate)
        runs[name] = {"hits": hits, "seconds": timer.seconds}
    window = min(500, len(runs["RTRL"]["hits"]) // 2)
    online_rows = []
    for name, run in runs.items():
        hits = run["hits"]
        run.update(first=float(hits[:window].mean()), last=float(hits[-window:].mean()),
                   ms_per_step=run["seconds"] / args.stream * 1e3)
        online_rows.append([name, f"{run['first']:.3f}", f"{run['last']:.3f}", f"{run['ms_per_step']:.2f}"])

    common.summary(args, ["online learner", f"accuracy, first {window} steps", f"accuracy, last {window} steps",
                          "ms/step"], online_rows)
    plot(args, cost, slopes, runs, window)
    results = {
        "equal_gradients": equal, "cost": cost, "slopes": slopes,
        "online": {"delay": args.delay, "stream": args.stream, "window": window,
                   **{name: {k: v for k, v in run.items() if k != "hits"} for name, run in runs.items()}},
        "quick": args.quick,
    }
    common.write_json(f"{args.out}/results.json", results)
    return results


def plot(args, cost, slopes, runs, window):
    plt = common.pyplot()
    fig = plt.figure(figsize=(16, 8.5))
    grid = fig.add_gridspec(2, 3)
    # What the counts predict, drawn through the largest measured point: BPTT stores T*H values
    # and does H^2 + H*I multiply-adds a step; RTRL stores N*P and does N^2*P a step.
    predicted = {("bytes", "bptt"): ("T*H", lambda r: r["bptt_stored"]),
                 ("bytes", "rtrl"): ("N*P", lambda r: r["rtrl_sensitivity"]),
                 ("seconds_per_step", "bptt"): ("H^2+H*I", lambda r: r["H"] * (r["H"] + INPUTS)),
                 ("seconds_per_step", "rtrl"): ("N^2*P", lambda r: r["rtrl_macs_per_step"])}
    for row, (quantity, unit, scale) in enumerate((("bytes", "MB (tracemalloc peak)", 1e-6),
                                                   ("seconds_per_step", "ms per step", 1e3))):
        for column, axis in enumerate(("T", "H")):
            ax, rows = fig.add_subplot(grid[row, column]), cost[axis]
            xs = np.array([r[axis] for r in rows], dtype=float)
            for method, color in (("bptt", "tab:blue"), ("rtrl", "tab:red")):
                ys = np.array([r[f"{method}_{quantity}"] for r in rows]) * scale
                ax.loglog(xs, ys, "o-", color=color,
                          label=f"{method.upper()} measured (slope {slopes[f'{method}_{quantity} vs {axis}']:.2f})")
                name, count = predicted[(quantity, method)]
                counts = np.array([count(r) for r in rows], dtype=float)
                ax.loglog(xs, counts / counts[-1] * ys[-1], "--", color=color, alpha=0.5,
                          label=f"{name} (slope {slope(xs, counts):.2f})")
                if (quantity, method, axis) == ("seconds_per_step", "rtrl", "H"):
                    # at small H the N backward passes a step dominate, each costing about the same
                    ax.loglog(xs, xs / xs[0] * ys[0], ":", color=color, alpha=0.7, label="N backward passes (slope 1)")
            other = "H" if axis == "T" else "T"
            what = "Peak memory" if quantity == "bytes" else "Time per step"
            ax.set(title=f"{what} against {axis} ({other} = {rows[0][other]})", xlabel=axis, ylabel=unit)
            ax.minorticks_off()
            ax.set_xticks(xs, [str(int(v)) for v in xs])
            ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[:, 2])
    for (name, run), color in zip(runs.items(), ("tab:red", "tab:gray")):
        curve = windowed(run["hits"], window)
        ax.plot(np.arange(len(curve)) + window - 1 + args.delay, curve, color=color, label=name)  # the window's last step
    ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
    ax.set(title=f"Online: recall the bit {args.delay} steps back", xlabel="step of the stream",
           ylabel=f"accuracy over the last {window} steps", ylim=(0.3, 1.02))
    ax.legend(fontsize=8)
    fig.suptitle("RTRL beside BPTT (tanh RNN, B = 1, float64): memory constant in T but growing with H; "
                 "online updates at every step")
    fig.tight_layout()
    common.save_figure(fig, f"{args.out}/rtrl_vs_bptt.png")


if __name__ == "__main__":
    common.run(main)
