"""A tiny Elman RNN, written from tinyseq ops alone, learns to predict a sine wave.

The recurrence h_t = tanh(x_t W_xh + h_{t-1} W_hh + b) is unrolled over T steps, so one
``loss.backward()`` is backpropagation through time. Plain SGD; the loss printed falls.

The same cell is ``nn.RNNStep`` (h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)), and the
same backward, written out as loops, is ``tinyseq_jit/generated/rnn_tanh.py``: the kernels
the compiler generates from that step and ``nn.RNN(backend="numba")`` runs.

    python examples/rnn_from_ops.py [--steps 300] [--seed 0]
"""

import argparse

import numpy as np

import common
import tinyseq as ts


def make_batch(rng, batch, steps):
    """Sine waves with random phase and frequency: inputs x_t, targets x_{t+1}."""
    phase = rng.uniform(0, 2 * np.pi, size=(1, batch, 1))
    freq = rng.uniform(0.15, 0.35, size=(1, batch, 1))
    t = np.arange(steps + 1, dtype=np.float64).reshape(-1, 1, 1)
    wave = np.sin(freq * t + phase)
    return wave[:-1], wave[1:]


def train(steps=300, hidden=16, seq_len=20, batch=16, lr=0.1, seed=0, log_every=50, out=print):
    """Train and return the list of losses (one per step)."""
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(hidden)
    params = {
        "w_xh": ts.Tensor(rng.uniform(-scale, scale, (1, hidden)), requires_grad=True),
        "w_hh": ts.Tensor(rng.uniform(-scale, scale, (hidden, hidden)), requires_grad=True),
        "b_h": ts.Tensor(np.zeros(hidden), requires_grad=True),
        "w_hy": ts.Tensor(rng.uniform(-scale, scale, (hidden, 1)), requires_grad=True),
        "b_y": ts.Tensor(np.zeros(1), requires_grad=True),
    }
    p = params
    losses = []
    for step in range(steps):
        x, y = make_batch(rng, batch, seq_len)
        h = ts.Tensor(np.zeros((batch, hidden)))
        loss = 0
        for t in range(seq_len):
            h = ts.tanh(x[t] @ p["w_xh"] + h @ p["w_hh"] + p["b_h"])
            loss = loss + ((h @ p["w_hy"] + p["b_y"] - y[t]) ** 2).mean()
        loss = loss / seq_len
        for w in params.values():
            w.grad = None
        loss.backward()
        for w in params.values():
            w.data -= lr * w.grad.data
        losses.append(loss.item())
        if out and (step % log_every == 0 or step == steps - 1):
            out(f"step {step:4d}  loss {loss.item():.5f}")
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise common.UsageError(f"--steps must be at least 1, got {args.steps}")
    losses = train(steps=args.steps, seed=args.seed)
    print(f"loss fell from {losses[0]:.4f} to {np.mean(losses[-10:]):.4f} (mean of the last 10 steps)")


if __name__ == "__main__":
    common.run(main)
