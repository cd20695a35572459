"""examples/rnn_from_ops.py: an Elman RNN written from raw ops learns a sine wave."""

import numpy as np

from helpers import load_example as load


def test_rnn_from_ops_loss_falls(capsys):
    demo = load("rnn_from_ops")
    demo.main(["--steps", "60"])
    printed = capsys.readouterr().out
    assert "loss fell from" in printed
    losses = demo.train(steps=60, out=None)
    assert np.mean(losses[-10:]) < 0.25 * losses[0]
