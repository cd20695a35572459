"""nn.Recurrent (any cell unrolled), Bidirectional and Stacked, and the lecture notes' cells.

A user-written LSTM cell from ops, through Recurrent / Bidirectional / Stacked, equals
nn.LSTM on the graph backend (outputs, states, every gradient; float64; with lengths);
custom cells equal hand-unrolled loops with the padding rule written out; every new cell
passes gradcheck; NARX's closed loop is its open loop fed its own predictions; a tree
network's gradient follows each tree's shape.
"""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, gradcheck, nn, ops
from tinyseq.nn import Parameter

from helpers import weighted_sum


class OpsLSTM(nn.Cell):
    """An LSTM cell written from ops, with PyTorch's parameter names and gate order."""

    def __init__(self, inputs, hidden):
        self.state_size = (hidden, hidden)
        shapes = {"weight_ih": (4 * hidden, inputs), "weight_hh": (4 * hidden, hidden), "bias_ih": (4 * hidden,),
                  "bias_hh": (4 * hidden,)}
        for name, shape in shapes.items():
            setattr(self, name, Parameter(np.zeros(shape)))

    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = ops.chunk(gates, 4, axis=-1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        h = o.sigmoid() * c.tanh()
        return h, (h, c)


def _copy_weights(cell, layer, suffix):
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).data[...] = getattr(layer, name + suffix).data


def _grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


@pytest.mark.parametrize("bidirectional,num_layers", [(False, 1), (True, 1), (False, 2), (True, 2)])
def test_an_lstm_cell_from_ops_equals_the_built_in_layer(bidirectional, num_layers):
    rng = np.random.default_rng(0)
    steps, batch, inputs, hidden = 5, 3, 2, 4
    layer = nn.LSTM(inputs, hidden, num_layers=num_layers, bidirectional=bidirectional, backend="graph").double()
    directions = 2 if bidirectional else 1
    layers = []
    for k in range(num_layers):
        size = inputs if k == 0 else directions * hidden
        cells = [OpsLSTM(size, hidden) for _ in range(directions)]
        for cell, suffix in zip(cells, [f"_l{k}", f"_l{k}_reverse"]):
            _copy_weights(cell, layer, suffix)
        layers.append(nn.Bidirectional(*cells) if bidirectional else nn.Recurrent(cells[0]))
    ours = layers[0] if num_layers == 1 else nn.Stacked(layers)
    x = rng.standard_normal((steps, batch, inputs))
    h0, c0 = rng.standard_normal((2, num_layers * directions, batch, hidden))
    lengths = [5, 2, 4]

    xt, h0t, c0t = (Tensor(a, requires_grad=True) for a in (x, h0, c0))
    out, (h_n, c_n) = layer(xt, (h0t, c0t), lengths=lengths)
    weighted_sum([out, h_n, c_n]).backward()

    xo, h0o, c0o = (Tensor(a, requires_grad=True) for a in (x, h0, c0))
    states = [(h0o[k], c0o[k]) for k in range(num_layers * directions)]
    per_layer = [tuple(states[k * directions:(k + 1) * directions]) for k in range(num_layers)]
    initial = [s if bidirectional else s[0] for s in per_layer]
    out_o, finals = ours(xo, initial[0] if num_layers == 1 else initial, lengths=lengths)
    finals = [finals] if num_layers == 1 else list(finals)
    flat = [f for layer_final in finals for f in (layer_final if bidirectional else (layer_final,))]
    h_n_o, c_n_o = ops.stack([f[0] for f in flat]), ops.stack([f[1] for f in flat])
    weighted_sum([out_o, h_n_o, c_n_o]).backward()

    for a, b, what in ((out, out_o, "out"), (h_n, h_n_o, "h_n"), (c_n, c_n_o, "c_n"), (xt.grad, xo.grad, "dx"),
                       (h0t.grad, h0o.grad, "dh0"), (c0t.grad, c0o.grad, "dc0")):
        np.testing.assert_allclose(getattr(b, "data", b), getattr(a, "data", a), rtol=1e-12, atol=1e-12,
                                   err_msg=what)
    theirs = _grads(layer)
    mine = [g for g in _grads(ours).values()]
    assert len(mine) == len(theirs)
    for (name, g), got in zip(theirs.items(), mine):  # the same order: layer by layer, forward first
        np.testing.assert_allclose(got, g, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode, options", [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
                                           ("LSTM", {"peephole": True}), ("GRU", {}), ("GRU", {"reset_after": False})])
def test_the_built_in_cells_in_recurrent_equal_their_layer(mode, options, bidirectional):
    rng = np.random.default_rng(1)
    steps, batch, inputs, hidden, lengths = 5, 3, 2, 4, [5, 2, 4]
    directions, pair = 1 + bidirectional, mode == "LSTM"
    layer = getattr(nn, mode)(inputs, hidden, bidirectional=bidirectional, backend="graph", **options).double()
    cells = [getattr(nn, mode + "Cell")(inputs, hidden, **options).double() for _ in range(directions)]
    suffixes = ["_l0", "_l0_reverse"][:directions]
    for cell, suffix in zip(cells, suffixes):
        for name, p in cell.named_parameters():
            p.data[...] = getattr(layer, name + suffix).data
    ours = nn.Bidirectional(*cells) if bidirectional else nn.Recurrent(cells[0])
    x = rng.standard_normal((steps, batch, inputs))
    states = rng.standard_normal((1 + pair, directions, batch, hidden))

    xt, st = Tensor(x, requires_grad=True), [Tensor(s, requires_grad=True) for s in states]
    out, final = layer(xt, tuple(st) if pair else st[0], lengths=lengths)
    weighted_sum([out, *(final if pair else [final])]).backward()

    xo, so = Tensor(x, requires_grad=True), [Tensor(s, requires_grad=True) for s in states]
    initial = [tuple(s[d] for s in so) if pair else so[0][d] for d in range(directions)]
    out_o, final_o = ours(xo, tuple(initial) if bidirectional else initial[0], lengths=lengths)
    per_direction = final_o if bidirectional else (final_o,)
    final_o = [ops.stack([f[k] if pair else f for f in per_direction]) for k in range(1 + pair)]
    weighted_sum([out_o, *final_o]).backward()

    close = dict(rtol=1e-12, atol=1e-13)
    for what, a, b in zip(["output", "h_n", "c_n"], [out_o, *final_o], [out, *(final if pair else [final])]):
        np.testing.assert_allclose(a.data, b.data, err_msg=what, **close)
    for what, a, b in zip(["dx", "dh0", "dc0"], [xo, *so], [xt, *st]):
        np.testing.assert_allclose(np.asarray(a.grad), np.asarray(b.grad), err_msg=what, **close)
    for cell, suffix in zip(cells, suffixes):
        for name, p in cell.named_parameters():
            expected = np.asarray(getattr(layer, name + suffix).grad)
            np.testing.assert_allclose(np.asarray(p.grad), expected, err_msg=name + suffix, **close)


class Elman(nn.Cell):
    def __init__(self, inputs, hidden):
        self.state_size = hidden
        self.xh, self.hh = nn.Linear(inputs, hidden, dtype=np.float64), nn.Linear(hidden, hidden, dtype=np.float64)

    def forward(self, x, h):
        h = (self.xh(x) + self.hh(h)).tanh()
        return h * 2, h  # an output that is not the state


def _by_hand(cell, x, lengths, reverse=False):
    """The padding rule written out, sequence by sequence: (outputs (T, B, H), final (B, H))."""
    steps, batch = x.shape[:2]
    outputs, finals = np.zeros((steps, batch, cell.state_size)), []
    for b in range(batch):
        h = np.zeros((1, cell.state_size))
        valid = range(lengths[b])
        for t in reversed(valid) if reverse else valid:
            y, h = cell(Tensor(x[t, b:b + 1]), Tensor(h))
            outputs[t, b], h = y.data[0], h.data
        finals.append(h[0])
    return outputs, np.stack(finals)


@pytest.mark.parametrize("batch_first", [False, True])
def test_custom_cells_with_lengths_equal_a_hand_unrolled_loop(batch_first):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 2))
    x[4:, 1] = np.nan  # past sequence 1's end: never read
    lengths = [6, 4, 1]
    forward_cell, backward_cell = Elman(2, 3), Elman(2, 3)
    layer = nn.Bidirectional(forward_cell, backward_cell, batch_first=batch_first)
    out, (h_f, h_b) = layer(x.swapaxes(0, 1) if batch_first else x, lengths=lengths)
    out = out.data.swapaxes(0, 1) if batch_first else out.data
    expected_f, final_f = _by_hand(forward_cell, x, lengths)
    expected_b, final_b = _by_hand(backward_cell, x, lengths, reverse=True)
    np.testing.assert_allclose(out, np.concatenate([expected_f, expected_b], axis=-1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_f.data, final_f, rtol=1e-12)
    np.testing.assert_allclose(h_b.data, final_b, rtol=1e-12)


def test_stacked_custom_layers_equal_a_hand_unrolled_loop_and_drop_out_between_them():
    rng = np.random.default_rng(2)
    x, lengths = rng.standard_normal((5, 2, 2)), [5, 3]
    bottom, top = Elman(2, 3), Elman(3, 3)
    stack = nn.Stacked([nn.Recurrent(bottom), nn.Recurrent(top)])
    out, (h_bottom, h_top) = stack(x, lengths=lengths)
    middle, final_bottom = _by_hand(bottom, x, lengths)
    expected, final_top = _by_hand(top, middle, lengths)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h_bottom.data, final_bottom, rtol=1e-12)
    np.testing.assert_allclose(h_top.data, final_top, rtol=1e-12)

    for variational in (False, True):
        seen = {}

        class Spy(Elman):
            def forward(self, x, h):
                seen.setdefault("inputs", []).append(x.data)
                return super().forward(x, h)

        spy = Spy(3, 3)
        dropped = nn.Stacked([nn.Recurrent(bottom), nn.Recurrent(spy, backend="graph")], dropout=0.5, variational=variational,
                             generator=np.random.default_rng(3))
        dropped(x)
        zeros = np.stack(seen["inputs"]) == 0  # (T, B, F): where the top layer's input was dropped
        assert zeros.any() and not zeros.all()
        assert (zeros == zeros[:1]).all() == variational  # variational: the same units at every step
        dropped.eval()  # no dropout in eval mode
        plain = nn.Stacked([nn.Recurrent(bottom), nn.Recurrent(spy, backend="graph")])
        np.testing.assert_array_equal(dropped(x)[0].data, plain(x)[0].data)


def test_recurrent_refuses_what_it_cannot_run():
    with pytest.raises(TypeError, match="Recurrent: cell must be a Module"):
        nn.Recurrent(lambda x, h: (x, h))

    class Wrong(nn.Cell):
        state_size = 2

        def forward(self, x, h):
            return h

    bare = r"Recurrent\(Wrong\): a cell's forward\(x_t, state\) must return the pair \(y_t, new_state\), got a single Tensor; " \
           r"if it is the new state h, return \(h, h\)"
    with pytest.raises(TypeError, match=bare):
        nn.Recurrent(Wrong())(np.zeros((2, 1, 2), np.float32))

    class Pair(nn.Cell):
        state_size = (2, 2)

        def forward(self, x, state):
            return x, state[0]

    with pytest.raises(TypeError, match=r"Recurrent\(Pair\): the new state must have the old state's structure \(a tuple of 2"):
        nn.Recurrent(Pair())(np.zeros((2, 1, 2), np.float32))

    class StatesAlone(nn.Cell):
        state_size = (2, 2)

        def forward(self, x, state):
            return state

    with pytest.raises(TypeError, match=r"Recurrent\(StatesAlone\): .* got a Tensor; if it returned the new state a tuple of 2: "
                                        r"\(Tensor, Tensor\) alone, return \(y_t, that tuple\)"):
        nn.Recurrent(StatesAlone())(np.zeros((2, 1, 2), np.float32))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 2\]"):
        nn.Recurrent(Elman(2, 3))(np.zeros((2, 1, 2)), lengths=[3])
    with pytest.raises(ValueError, match=r"expected an input of \(T, B, ...\) with at least 3 axes"):
        nn.Recurrent(Elman(2, 3))(np.zeros((2, 2)))
    with pytest.raises(NotImplementedError, match="set state_size or write initial_state"):
        nn.Recurrent(type("NoState", (nn.Cell,), {"forward": lambda self, x, h: (x, h)})())(np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match=r"each state tensor must be \(B, ...\) with B = 1, no layer axis"):
        nn.Recurrent(Elman(2, 3))(np.zeros((2, 1, 2)), np.zeros((1, 1, 3)) + np.zeros((2, 1, 3)))
    with pytest.raises(TypeError, match="the cell has no initial_state"):
        nn.Recurrent(type("Plain", (nn.Module,), {"forward": lambda self, x, h: (h, h)})())(np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="two cells"):
        cell = Elman(2, 3)
        nn.Bidirectional(cell, cell)
    with pytest.raises(ValueError, match="agree on batch_first"):
        nn.Stacked([nn.Recurrent(Elman(2, 3)), nn.Recurrent(Elman(3, 3), batch_first=True)])


# ---------------------------------------------------------------- the notes' cells


def _check_cell(cell, x, lengths=None, state=None):
    layer = nn.Recurrent(cell)
    xt = Tensor(x, requires_grad=True)

    def f(x, *params):
        out, final = layer(x, state, lengths=lengths)
        return weighted_sum([out, *(final if isinstance(final, tuple) else (final,))])

    assert gradcheck(f, [xt, *cell.parameters()])


@pytest.mark.parametrize("activation,output_activation", [("tanh", "identity"), ("relu", "sigmoid")])
def test_jordan_cell_passes_gradcheck_and_feeds_back_its_output(activation, output_activation):
    ts.manual_seed(0)
    cell = nn.JordanCell(3, 4, 2, activation=activation, output_activation=output_activation, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((4, 2, 3))
    _check_cell(cell, x, lengths=[4, 2])
    out, y_n = nn.Recurrent(cell)(x)
    act = (lambda v: np.maximum(v, 0)) if activation == "relu" else np.tanh
    act_y = (lambda v: 1 / (1 + np.exp(-v))) if output_activation == "sigmoid" else (lambda v: v)
    y = np.zeros((2, 2))
    for t in range(4):  # the equations, in NumPy
        hidden = act(x[t] @ cell.W.weight.data.T + cell.W.bias.data + y @ cell.U.weight.data.T)
        y = act_y(hidden @ cell.V.weight.data.T + cell.V.bias.data)
        np.testing.assert_allclose(out.data[t], y, rtol=1e-12)
    np.testing.assert_allclose(y_n.data, y, rtol=1e-12)


@pytest.mark.parametrize("depth,shortcut", [(1, False), (3, False), (2, True), (3, True)])
def test_deep_transition_cell_passes_gradcheck(depth, shortcut):
    ts.manual_seed(1)
    cell = nn.DeepTransitionCell(2, 3, depth=depth, shortcut=shortcut, dtype=np.float64)
    assert len(cell.layers) == depth - 1 and (cell.S is not None) == shortcut
    _check_cell(cell, np.random.default_rng(5).standard_normal((4, 2, 2)), lengths=[4, 3])


def test_deep_transition_cell_of_depth_one_is_an_elman_cell():
    ts.manual_seed(2)
    cell = nn.DeepTransitionCell(2, 3, depth=1, dtype=np.float64)
    rnn = nn.RNNCell(2, 3, dtype=np.float64)
    rnn.weight_ih.data[...], rnn.bias_ih.data[...] = cell.W.weight.data, cell.W.bias.data
    rnn.weight_hh.data[...], rnn.bias_hh.data[...] = cell.U.weight.data, 0.0
    x, h = np.random.default_rng(6).standard_normal((2, 2)), np.random.default_rng(7).standard_normal((2, 3))
    np.testing.assert_allclose(cell(Tensor(x), Tensor(h))[0].data, rnn(x, h).data, rtol=1e-12)
    with pytest.raises(ValueError, match="a shortcut needs depth >= 2"):
        nn.DeepTransitionCell(2, 3, depth=1, shortcut=True)


@pytest.mark.parametrize("delay", [1, 3])
def test_narx_passes_gradcheck_open_and_closed_loop(delay):
    ts.manual_seed(3)
    narx = nn.NARX(2, 1, delay, 4, dtype=np.float64)
    rng = np.random.default_rng(8)
    u, y = Tensor(rng.standard_normal((6, 2, 2)), requires_grad=True), rng.standard_normal((6, 2, 1))
    for closed_loop in (False, True):
        assert gradcheck(lambda u, *params: narx(u, y, closed_loop=closed_loop), [u, *narx.parameters()])


def test_narx_closed_loop_is_the_open_loop_fed_its_own_predictions():
    ts.manual_seed(4)
    narx, q = nn.NARX(1, 2, 3, 5, dtype=np.float64), 3
    rng = np.random.default_rng(9)
    u, y = rng.standard_normal((8, 2, 1)), rng.standard_normal((8, 2, 2))
    closed = narx(u, y[:q], closed_loop=True).data
    fed = y.copy()
    for n in range(q, 8):  # feed predictions back one step at a time through the open loop
        fed[n] = narx(u, fed, closed_loop=False).data[n - q]
    np.testing.assert_allclose(closed, fed[q:], rtol=1e-12)
    open_loop = narx(u, y).data  # open loop: each prediction reads the true window
    window = np.concatenate([y[q - 1::-1].transpose(1, 0, 2).reshape(2, -1),
                             u[q - 1::-1].transpose(1, 0, 2).reshape(2, -1)], axis=-1)
    first = ops.tanh(narx.cell.W(Tensor(window)))
    np.testing.assert_allclose(open_loop[0], narx.cell.V(first).data, rtol=1e-12)
    np.testing.assert_array_equal(narx(u, y[:-1]).data, open_loop)  # open loop reads y_0 .. y_{T-2}
    with pytest.raises(ValueError, match="expected T > delay = 3 steps"):
        narx(u[:3], y[:3])
    with pytest.raises(ValueError, match="at least 7 of y"):
        narx(u, y[:6])
    cell = narx.cell  # on its own in nn.Recurrent: zero delay lines, then open or closed loop by x's width
    out, _ = nn.Recurrent(cell)(np.concatenate([u, y], axis=-1))
    assert out.shape == (8, 2, 2)
    with pytest.raises(ValueError, match=r"NARXCell: x_t must have 1 features \(u_n, closed-loop\) or 3"):
        nn.Recurrent(cell)(np.zeros((2, 2, 2)))


def test_recursive_nn_passes_gradcheck_and_follows_each_tree():
    ts.manual_seed(5)
    net = nn.RecursiveNN(4, 3, dtype=np.float64)
    trees = [((0, 1), 2), 3, (3, (2, (1, 0)))]
    assert gradcheck(lambda *params: weighted_sum([net(trees)]), list(net.parameters()))
    e, w, b = net.embedding.weight.data, net.compose.weight.data, net.compose.bias.data
    node = lambda left, right: np.tanh(np.concatenate([left, right]) @ w.T + b)  # noqa: E731
    np.testing.assert_allclose(net(trees).data[0], node(node(e[0], e[1]), e[2]), rtol=1e-12)
    np.testing.assert_array_equal(net(trees).data[1], e[3])
    net.zero_grad()
    net([3]).sum().backward()  # a lone leaf: only its embedding row gets a gradient
    assert net.compose.weight.grad is None and np.asarray(net.embedding.weight.grad)[3].all()
    assert not np.delete(net.embedding.weight.grad, 3, axis=0).any()
    with pytest.raises(TypeError, match=r"expected a non-empty list of trees, got tuple; for one tree, pass \[tree\]"):
        net((1, 2))
    with pytest.raises(TypeError, match=r"a tree is a token id or a pair \(left, right\)"):
        net([(1, 2, 3)])
    with pytest.raises(ValueError, match=r"a leaf must be a token id in \[0, 4\)"):
        net([(1, 7)])


def test_the_bptt_instruments_study_your_own_cell_as_the_built_in_one():
    """An ops LSTM cell, as nn.Recurrent or as the bare nn.Cell, gives the gradient norms
    (with lengths) and the Jacobian spectra of nn.LSTM with the same weights."""
    from tinyseq import bptt

    ts.manual_seed(6)
    layer = nn.LSTM(2, 3, backend="graph").double()
    cell = OpsLSTM(2, 3)
    _copy_weights(cell, layer, "_l0")
    x = np.random.default_rng(10).standard_normal((5, 2, 2))
    theirs = bptt.grad_norms_through_time(layer, x, lengths=[5, 3])
    mine = bptt.grad_norms_through_time(nn.Recurrent(cell), x, lengths=[5, 3])
    np.testing.assert_allclose(mine.h, theirs.h, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mine.c, theirs.c, rtol=1e-12, atol=1e-15)
    assert mine.names == ("cell",) and not mine.h[0, 3:, 1].any()  # past the second sequence's end
    bare = bptt.grad_norms_through_time(cell, x)  # all T steps
    np.testing.assert_allclose(bare.h, bptt.grad_norms_through_time(layer, x).h, rtol=1e-12)
    spectra, expected = bptt.state_jacobians(cell, x), bptt.state_jacobians(layer, x)
    np.testing.assert_allclose(spectra.jacobians, expected.jacobians, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(spectra.singular_values, expected.singular_values, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="runs forward in time"):
        bptt.state_jacobians(nn.Recurrent(cell, reverse=True), x)
