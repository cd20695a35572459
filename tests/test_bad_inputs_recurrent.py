"""Bad cells and bad inputs for nn.Recurrent (and Bidirectional/Stacked on it), the notes'
cells and tinyseq.bptt: each is refused with a message that names the layer or function,
the cell, the step and both shapes; or, where the issue asks for it, handled (a NaN in one
sequence of state_jacobians, a tree thousands of levels deep)."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, nn, ops
from tinyseq.bptt import state_jacobians


class Elman(nn.Cell):
    """h_t = tanh(W x_t + U h_{t-1}); ``bad`` picks how it breaks the protocol's shapes."""

    def __init__(self, inputs, hidden, bad=None):
        self.state_size, self.bad, self.steps = hidden, bad, 0
        self.xh, self.hh = nn.Linear(inputs, hidden, dtype=np.float64), nn.Linear(hidden, hidden, dtype=np.float64)

    def forward(self, x, h):
        h = (self.xh(x) + self.hh(h)).tanh()
        self.steps += 1
        if self.bad == "one row out":
            return h[:1], h
        if self.bad == "one row state":
            return h, h[:1]
        if self.bad == "growing out":  # y_t gets wider at the second step
            return ops.concatenate([h] * min(self.steps, 2), axis=-1), h
        return h, h


X = np.random.default_rng(0).standard_normal((3, 2, 2))


@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_recurrent_refuses_a_cell_whose_y_t_or_state_loses_the_batch(lengths):
    with pytest.raises(ValueError, match=r"Recurrent\(Elman\): at step 0 the cell's y_t has shape \(1, 3\), "
                                         r"expected \(B = 2, \.\.\.\)"):
        nn.Recurrent(Elman(2, 3, "one row out"))(X, lengths=lengths)
    with pytest.raises(ValueError, match=r"Recurrent\(Elman\): at step 0 the cell's new state has shape \(1, 3\), "
                                         r"expected \(2, 3\) \(the state's shape before the step\)"):
        nn.Recurrent(Elman(2, 3, "one row state"))(X, lengths=lengths)


def test_recurrent_refuses_a_y_t_that_changes_shape_between_steps():
    with pytest.raises(ValueError, match=r"Recurrent\(Elman\): at step 1 the cell's y_t has shape \(2, 6\), "
                                         r"expected \(2, 3\) \(y_t at the steps before\)"):
        nn.Recurrent(Elman(2, 3, "growing out"), backend="graph")(X)  # compiled, the step is traced once


def test_bidirectional_and_stacked_refuse_them_through_recurrent():
    with pytest.raises(ValueError, match=r"Recurrent\(Elman\): at step 2 the cell's new state has shape \(1, 3\)"):
        nn.Bidirectional(Elman(2, 3), Elman(2, 3, "one row state"))(X)  # the reverse layer starts at T - 1
    with pytest.raises(ValueError, match=r"Recurrent\(Elman\): at step 0 the cell's y_t has shape \(1, 3\)"):
        nn.Stacked([nn.Recurrent(Elman(2, 3)), nn.Recurrent(Elman(3, 3, "one row out"))])(X)


def test_recurrent_checks_a_given_state_against_the_cell_s_state_size():
    jordan, narx = nn.Recurrent(nn.JordanCell(2, 4, 2, dtype=np.float64)), nn.Recurrent(nn.NARXCell(1, 2, 1, 4))
    with pytest.raises(ValueError, match=r"Recurrent\(JordanCell\): state= must fit the cell's state_size 2, "
                                         r"\(B, 2\) = \(2, 2\); got shape \(2, 3\)"):
        jordan(X, np.zeros((2, 3)))
    u = np.zeros((3, 2, 1), np.float32)
    with pytest.raises(ValueError, match=r"Recurrent\(NARXCell\): state= must fit the cell's state_size \(2, 1, 2\), "
                                         r"a tuple of 3 states \(B, size\); got a Tensor"):
        narx(u, np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"state_size \(2, 1, 2\), \(B, 2\) = \(2, 2\) for state 2; got shape \(2, 3\)"):
        narx(u, tuple(np.zeros((2, size), np.float32) for size in (2, 1, 3)))
    out, h = jordan(X, np.zeros((2, 2)))  # the right size runs
    assert out.shape == (3, 2, 2) and h.shape == (2, 2)


# ---------------------------------------------------------------- bptt.state_jacobians


def test_state_jacobians_gives_nan_for_a_sequence_with_a_nan_and_computes_the_others():
    ts.manual_seed(1)
    cell = nn.RNNCell(3, 4).double()
    x = np.random.default_rng(2).standard_normal((4, 3, 3))
    x[2, 1, 0] = np.nan
    spectra = state_jacobians(cell, x)
    assert np.isnan(spectra.singular_values[:, 1]).all()
    others = state_jacobians(cell, x[:, [0, 2]])
    np.testing.assert_array_equal(spectra.singular_values[:, [0, 2]], others.singular_values)
    np.testing.assert_array_equal(spectra.jacobians[:, [0, 2]], others.jacobians)


class Growing(nn.Module):
    """A cell called as PyTorch's, whose state gains a feature each step."""

    def forward(self, x, h=None):
        return ops.concatenate([h, x[:, :1]], axis=-1)


def test_state_jacobians_refuses_a_cell_whose_state_changes_shape():
    with pytest.raises(ValueError, match=r"state_jacobians\(Growing\): at step 0 the cell's new state has shape "
                                         r"\(2, 5\), expected \(2, 4\) \(the state's shape before the step\)"):
        state_jacobians(Growing(), np.zeros((3, 2, 2)), hx=np.zeros((2, 4)))


# ---------------------------------------------------------------- RecursiveNN


def test_recursive_nn_runs_a_chain_5000_levels_deep_forward_and_backward():
    ts.manual_seed(3)
    net = nn.RecursiveNN(2, 3, dtype=np.float64)
    tree = 0
    for _ in range(5000):
        tree = (tree, 1)
    root = net([tree, 1])
    e, w, b = net.embedding.weight.data, net.compose.weight.data, net.compose.bias.data
    hs = [e[0]]
    for _ in range(5000):
        hs.append(np.tanh(np.concatenate([hs[-1], e[1]]) @ w.T + b))
    np.testing.assert_allclose(root.data[0], hs[-1], rtol=1e-12)
    root[0].sum().backward()
    g, db, dw = np.ones(3), np.zeros(3), np.zeros_like(w)  # BPTT down the chain by hand
    for k in reversed(range(5000)):
        d = g * (1 - hs[k + 1] ** 2)
        db, dw, g = db + d, dw + np.outer(d, np.concatenate([hs[k], e[1]])), (d @ w)[:3]
    np.testing.assert_allclose(net.compose.bias.grad.data, db, rtol=1e-10)
    np.testing.assert_allclose(net.compose.weight.grad.data, dw, rtol=1e-10)
    np.testing.assert_allclose(net.embedding.weight.grad.data[0], g, rtol=1e-10, atol=1e-300)
