"""A cell that branches in Python on its values through ``.data`` must not compile into a
kernel that silently takes the branch the trace took (found while writing the custom-cells
example; the compiler refuses ``bool()``, ``.item()``, ``.numpy()`` ... but ``.data`` is a
plain attribute the trace cannot see). Until the compiler refuses it, this test fails."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import nn


class Halving(nn.Cell):
    """h' = tanh(W [x; h] + b), halved when an input of the batch is above 1 (the trace's
    sample inputs are all below 1)."""

    def __init__(self):
        self.state_size = 2
        self.lin = nn.Linear(3, 2, dtype=np.float64)

    def forward(self, x, h):
        h = self.lin(ts.concatenate([x, h], axis=-1)).tanh()
        if x.data.max() > 1:
            h = h * 0.5
        return h, h


def test_a_branch_on_dot_data_is_refused_or_runs_as_the_graph():
    ts.manual_seed(0)
    cell = Halving()
    x = np.full((3, 1, 1), 5.0)
    graph, _ = nn.Recurrent(cell, backend="graph")(x)
    try:
        compiled, _ = nn.Recurrent(cell, backend="numba")(x)
    except TypeError as error:  # a CompileError is a TypeError: refusing is the right answer
        assert ".data" in str(error) or "value" in str(error)
        return
    np.testing.assert_allclose(compiled.data, graph.data, rtol=1e-9)  # fails: the trace's branch, baked in
