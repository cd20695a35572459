"""The built-in cells' steps (nn.RNNStep, LSTMStep, GRUStep): the one definition of each cell's
maths, which the cells, the layers on every backend and the committed generated kernels run."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, nn, ops
from tinyseq.nn import functional as F

STEPS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("LSTM", {"peephole": True}),
         ("LSTM", {"coupled": True}), ("LSTM", {"coupled": True, "peephole": True}), ("GRU", {}),
         ("GRU", {"reset_after": False})]


@pytest.mark.parametrize("mode,options", STEPS)
def test_a_cell_is_its_step(mode, options):
    ts.manual_seed(0)
    cell = getattr(nn, f"{mode}Cell")(3, 4, dtype=np.float64, **options)
    step = cell.step()
    assert type(step) is getattr(nn, f"{mode}Step") and isinstance(step, nn.Cell)
    assert [(k, id(p)) for k, p in step.named_parameters()] == [(k, id(p)) for k, p in cell.named_parameters()]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3))
    state = tuple(Tensor(rng.standard_normal((2, 4))) for _ in step.states)
    y, new = step(Tensor(x), state if len(state) > 1 else state[0])
    got = cell(Tensor(x), state if len(state) > 1 else state[0])
    np.testing.assert_array_equal((got[0] if mode == "LSTM" else got).data, y.data)


@pytest.mark.parametrize("mode,options", STEPS)
def test_a_layers_step_shares_its_parameters_and_runs_as_its_first_layer(mode, options):
    ts.manual_seed(0)
    layer = getattr(nn, mode)(3, 4, num_layers=2, bidirectional=True, backend="graph", dtype=np.float64, **options)
    assert layer.directions() == ["l0", "l0_reverse", "l1", "l1_reverse"]
    step = layer.step(1, reverse=True)
    assert step.weight_hh is layer.weight_hh_l1_reverse and step.input_size == 8
    x = np.random.default_rng(2).standard_normal((5, 2, 3))
    alone, _ = nn.Recurrent(layer.step(), backend="graph")(x)
    one = getattr(nn, mode)(3, 4, backend="graph", dtype=np.float64, **options)
    one.load_state_dict({k: v for k, v in layer.state_dict().items() if k.endswith("_l0")})
    np.testing.assert_allclose(alone.data, one(x)[0].data, rtol=1e-12)
    alone.sum().backward()
    assert layer.weight_ih_l0.grad is not None and layer.weight_ih_l1.grad is None


def test_step_refuses_a_layer_it_does_not_have():
    layer = nn.GRU(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"GRU.step: this layer has 2 layer\(s\), one direction; got layer=2"):
        layer.step(2)
    with pytest.raises(ValueError, match="got layer=0, reverse=True"):
        layer.step(0, reverse=True)
    with pytest.raises(ValueError, match="GRU.step: layer must be an int >= 0, got '0'"):
        layer.step("0")


def test_a_step_takes_only_its_own_options():
    with pytest.raises(ValueError, match="GRUStep: peephole is an LSTM option"):
        nn.GRUStep(3, 4, peephole=True)
    with pytest.raises(ValueError, match="RNNStep: proj_size is an LSTM option"):
        nn.RNNStep(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        nn.RNNStep(3, 4, nonlinearity="gelu")
    with pytest.raises(TypeError, match="LSTMStep: got an unexpected option 'peepholes'"):
        nn.LSTMStep(3, 4, peepholes=True)
    step = nn.LSTMStep(3, 5, proj_size=2)
    assert step.state_size == (2, 5) and step.weight_hr.shape == (2, 5)


def test_inside_unroll_linear_projects_x_once_with_the_same_numbers_and_gradients():
    """unroll runs a step inside nn.functional.unrolling: linear(x_t, W, b) reads step t of one
    product over all T steps and W^T is made once; the result equals stepping by hand."""
    ts.manual_seed(0)
    cell = nn.LSTMStep(3, 4, dtype=np.float64)
    x = Tensor(np.random.default_rng(3).standard_normal((6, 2, 3)), requires_grad=True)
    out, _ = nn.recurrent.unroll(cell, x, cell.initial_state(2))
    weights = [p for _, p in cell.named_parameters()]
    out.sum().backward()
    unrolled = [x.grad.data.copy()] + [p.grad.data.copy() for p in weights]
    x.grad = None
    for p in weights:
        p.grad = None
    state, outs = cell.initial_state(2), []
    for t in range(6):  # the same steps, outside unroll: a product per step
        y, state = cell(x[t], state)
        outs.append(y)
    by_hand = ts.stack(outs, axis=0)
    np.testing.assert_allclose(out.data, by_hand.data, rtol=1e-12)
    by_hand.sum().backward()
    for a, b in zip(unrolled, [x.grad.data] + [p.grad.data for p in weights]):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_inside_unroll_a_parameters_slice_is_made_once_with_the_same_gradients():
    """The classic GRU's step slices weight_hh and bias_hh at every step; inside unroll each
    slice is one node for the whole sequence (ops.leaf_slices_once), and the gradients equal
    stepping by hand, where each step slices again."""
    ts.manual_seed(0)
    cell = nn.GRUStep(3, 4, reset_after=False, dtype=np.float64)
    x = Tensor(np.random.default_rng(4).standard_normal((5, 2, 3)))
    out, _ = nn.recurrent.unroll(cell, x, cell.initial_state(2))
    parameters = {id(p) for _, p in cell.named_parameters()}
    seen, stack, slices = set(), [out], 0
    while stack:  # the graph's nodes that slice a parameter
        node = stack.pop()
        if id(node) in seen or node._ctx is None:
            continue
        seen.add(id(node))
        slices += isinstance(node._ctx, ops.GetItem) and id(node._ctx.parents[0]) in parameters
        stack.extend(node._ctx.parents)
    assert slices == 4  # weight_hh and bias_hh, the rows of r and z and the rows of n
    out.sum().backward()
    unrolled = [p.grad.data.copy() for _, p in cell.named_parameters()]
    cell.zero_grad()
    state, outs = cell.initial_state(2), []
    for t in range(5):
        y, state = cell(x[t], state)
        outs.append(y)
    ts.stack(outs, axis=0).sum().backward()
    for a, (_, p) in zip(unrolled, cell.named_parameters()):
        np.testing.assert_allclose(a, p.grad.data, rtol=1e-10)
    assert ops._leaf_slices is None  # only inside unroll


def test_a_slice_taken_without_grad_inside_a_step_is_not_handed_back_with_grad():
    """A step that reads a parameter's slice under no_grad (a scale, say) and then uses the
    same slice in its graph gets the gradient a step by hand gets."""
    class Cell(nn.Cell):
        def __init__(self):
            self.state_size = 2
            self.w = nn.Parameter(np.random.default_rng(0).standard_normal((4, 2)))

        def forward(self, x, h):
            with ts.no_grad():
                scale = float(np.abs(self.w[:2].data).max())
            h = (h @ self.w[:2].T + x).tanh() / scale
            return h, h

    cell, x = Cell(), np.random.default_rng(1).standard_normal((3, 1, 2))
    out, _ = nn.recurrent.unroll(cell, Tensor(x), Tensor(np.zeros((1, 2))))
    out.sum().backward()
    unrolled, cell.w.grad = cell.w.grad.data.copy(), None
    h, outs = Tensor(np.zeros((1, 2))), []
    for t in range(3):
        y, h = cell(Tensor(x[t]), h)
        outs.append(y)
    ts.stack(outs, axis=0).sum().backward()
    np.testing.assert_allclose(unrolled, cell.w.grad.data, rtol=1e-12)


def test_unrolling_projects_only_x_t_itself():
    """A product of something else than the step's x_t is computed as written."""
    seen = []

    class Cell(nn.Cell):
        def __init__(self):
            self.state_size = 2
            self.w = nn.Parameter(np.ones((2, 2)))

        def forward(self, x, h):
            seen.append(F.linear(x * 2, self.w).data.copy())
            h = F.linear(x, self.w) + h
            return h, h

    x = np.arange(12.0).reshape(3, 2, 2)
    nn.Recurrent(Cell(), backend="graph")(x)
    np.testing.assert_array_equal(np.stack(seen), (x * 2) @ np.ones((2, 2)))
