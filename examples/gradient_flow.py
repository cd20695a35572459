"""Gradient flow through time: how far back does a loss at the last step reach?

Seven recurrent networks with the same sizes read the same random input; the loss is at the
last step only (``tinyseq.bptt.last_step_loss``: dL/dh_{T-1} is a unit vector), so whatever
gradient reaches an earlier step h_t came back through time. By the chain rule it is
dL/dh_{T-1} times the product of the step Jacobians dh_{s}/dh_{s-1} from t+1 to T-1, and
for a tanh RNN each of those is diag(1 - h_s^2) W_hh: how the product grows or shrinks
follows W_hh's eigenvalues, like radius^k over k steps.

    tanh rho=0.5 / 1.0 / 1.5   tanh RNN, PyTorch's random W_hh rescaled to that spectral radius
    tanh orthogonal            tanh RNN, orthogonal W_hh (every eigenvalue on the unit circle)
    irnn                       ReLU RNN, W_hh = I and zero biases (Le, Jaitly & Hinton 2015)
    lstm, gru                  PyTorch's default init

    python examples/gradient_flow.py                 # T = 100, H = 64
    python examples/gradient_flow.py --steps 300 --hidden 128
    python examples/gradient_flow.py --quick         # T = 30, H = 16

Prints a table (the spectral radius of W_hh, |dL/dh_t| at the first step, the mean factor
per step, the largest singular value of dh_{T-1}/dh_0), writes <out>/results.json and
<out>/gradient_flow.png: |dL/dh_t| against t, the largest singular value of the Jacobian
product against the number of steps it spans, and W_hh's eigenvalues against the unit circle.
Where Graphviz's ``dot`` is installed it also draws the graph BPTT walks for a 3-step tanh RNN
into <out>/rnn_graph.png (``tinyseq.viz``).
"""

import shutil

import numpy as np

import common
import tinyseq as ts
from tinyseq import nn
from tinyseq.bptt import grad_norms_through_time, state_jacobians

MODELS = ("tanh rho=0.5", "tanh rho=1.0", "tanh rho=1.5", "tanh orthogonal", "irnn", "lstm", "gru")
COLORS = ("tab:cyan", "tab:blue", "tab:red", "tab:purple", "tab:orange", "tab:green", "tab:olive")


def make_layer(name, inputs, hidden):
    """One of MODELS as a one-layer float64 recurrent layer."""
    if name == "lstm":
        return nn.LSTM(inputs, hidden, dtype=np.float64)
    if name == "gru":
        return nn.GRU(inputs, hidden, dtype=np.float64)
    if name == "irnn":
        layer = nn.RNN(inputs, hidden, nonlinearity="relu", dtype=np.float64)
        nn.init.identity_(layer.weight_hh_l0)
        nn.init.zeros_(layer.bias_ih_l0)
        nn.init.zeros_(layer.bias_hh_l0)
        return layer
    layer = nn.RNN(inputs, hidden, dtype=np.float64)
    if name == "tanh orthogonal":
        nn.init.orthogonal_(layer.weight_hh_l0)
    else:
        nn.init.spectral_radius_(layer.weight_hh_l0, float(name.split("=")[1]))
    return layer


def study(name, x, hidden):
    """Gradient norms through time (every sequence) and Jacobian spectra (the first one) of one model."""
    layer = make_layer(name, x.shape[-1], hidden)
    flow = grad_norms_through_time(layer, x)
    norms = flow.h[0].mean(axis=1)  # (T,): the mean over sequences of |dL/dh_t|
    spectra = state_jacobians(layer, x[:, :1], top=1)
    radius = max(float(np.abs(v).max()) for v in spectra.eigenvalues.values())
    steps = len(norms)
    return {
        "model": name,
        "spectral_radius": radius,
        "grad_norm": norms.tolist(),  # index t
        "factor_per_step": float((norms[0] / norms[-1]) ** (1 / (steps - 1))) if norms[0] > 0 else 0.0,
        "product_norm": spectra.spectral_norms[:, 0][::-1].tolist(),  # index k - 1: dh_{T-1}/dh_{T-1-k}
        "eigenvalues": [[v.real, v.imag] for v in next(iter(spectra.eigenvalues.values())).astype(complex)],
    }


def plot(runs, path):
    """Three panels: |dL/dh_t| against t, the product's largest singular value against its span,
    and the eigenvalues of the RNNs' W_hh in the complex plane."""
    plt = common.pyplot()
    fig, (flow, spans, eigen) = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    for run, color in zip(runs, COLORS):
        norms, products = (np.array(run[key]) for key in ("grad_norm", "product_norm"))
        flow.plot(np.arange(len(norms)), np.where(norms > 0, norms, np.nan), color=color, label=run["model"])
        spans.plot(np.arange(1, len(products) + 1), np.where(products > 0, products, np.nan), color=color)
        if run["model"].startswith("tanh") or run["model"] == "irnn":
            values = np.array(run["eigenvalues"])
            eigen.scatter(values[:, 0], values[:, 1], s=8, color=color, alpha=0.7, label=run["model"])
    k = np.arange(1, len(runs[0]["product_norm"]) + 1)
    for radius, style in ((0.5, ":"), (1.5, "--")):  # a linear recurrence with that spectral radius
        spans.plot(k, radius ** k, color="gray", ls=style, lw=1, label=f"{radius}^k")
    spans.legend(fontsize=8, loc="lower left")
    for ax, title, xlabel, ylabel in (
            (flow, "|dL/dh_t|, loss at the last step only", "time step t", "gradient norm |dL/dh_t|"),
            (spans, "largest singular value of dh_{T-1}/dh_{T-1-k}", "steps back, k", "largest singular value")):
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    flow.legend(fontsize=8, loc="lower right")
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    eigen.plot(circle.real, circle.imag, color="gray", lw=0.8, label="unit circle")
    eigen.set_aspect("equal")
    eigen.set_title("eigenvalues of W_hh (the simple RNNs)", fontsize=10)
    eigen.set(xlabel="real part", ylabel="imaginary part")
    eigen.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), markerscale=2)  # beside the dots
    eigen.grid(alpha=0.3)
    fig.tight_layout()
    common.save_figure(fig, path)


def draw_graph(path):
    """The autodiff graph of a 3-step tanh RNN with the loss at its last step, drawn by Graphviz."""
    if shutil.which("dot") is None:
        print(f"not drawing {path}: Graphviz's dot is not installed (viz.to_dot gives the DOT text without it)")
        return None
    rnn = nn.RNN(2, 3, backend="graph")
    out, _ = rnn(np.ones((3, 1, 2), dtype=np.float32))
    print(f"wrote {ts.viz.render(ts.bptt.last_step_loss(out), path, params=rnn)}")
    return str(path)


def main(argv=None):
    """Study every model on one input; print the table, write the JSON and PNG, return the results."""
    p = common.parser(__doc__.splitlines()[0], out="runs/gradient_flow")
    p.add_argument("--steps", type=int, default=None, help="sequence length T (default 100, quick 30)")
    p.add_argument("--hidden", type=int, default=None, help="hidden size H (default 64, quick 16)")
    p.add_argument("--batch", type=int, default=8, help="sequences averaged in |dL/dh_t|")
    p.add_argument("--inputs", type=int, default=8, help="input features I")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    args = p.parse_args(argv)
    common.defaults(args, steps=(100, 30), hidden=(64, 16))
    for flag, value, least in (("--steps", args.steps, 2), ("--hidden", args.hidden, 1), ("--batch", args.batch, 1),
                               ("--inputs", args.inputs, 1)):
        if value < least:
            raise common.UsageError(f"{flag}: must be an integer >= {least}, got {value}")
    models = common.names(args.models, MODELS, "--models")
    rng = common.start(args)
    x = rng.standard_normal((args.steps, args.batch, args.inputs))

    with common.Timer() as timer:
        runs = []
        for name in models:
            ts.manual_seed(args.seed)  # every model starts from the same draws
            runs.append(study(name, x, args.hidden))
    rows = [[r["model"], r["spectral_radius"], r["grad_norm"][0], r["factor_per_step"], r["product_norm"][-1]]
            for r in runs]
    common.summary(args, ["model", "rho(W_hh)", "|dL/dh_0|", "factor per step", "sigma_max over T steps"], rows)
    print(f"T={args.steps} H={args.hidden} B={args.batch}: {timer.seconds:.1f} s")
    config = {k: getattr(args, k) for k in ("steps", "hidden", "batch", "inputs", "seed", "backend", "quick")}
    results = {"config": {**config, "models": models}, "seconds": timer.seconds, "runs": runs}
    plot(runs, f"{args.out}/gradient_flow.png")
    results["graph"] = draw_graph(f"{args.out}/rnn_graph.png")
    common.write_json(f"{args.out}/results.json", results)
    return results


if __name__ == "__main__":
    common.run(main)
