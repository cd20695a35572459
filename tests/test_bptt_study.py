"""tinyseq.bptt's instruments: gradient norms through time (equal on every backend, and to a
hand-unrolled cell), the kernels' telemetry, Jacobian spectra against finite differences,
truncation bias, and the spectral-radius init they are studied under."""

import numpy as np
import pytest
from hypothesis import example, given

import tinyseq as ts
from tinyseq import Tensor, bptt, nn
from tinyseq.bptt import grad_norms_through_time, last_step_loss, state_jacobians, truncation_bias

from helpers import layer_configs, layer_loss_and_inputs, weighted_sum

CELLS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("LSTM", {"peephole": True}),
         ("LSTM", {"coupled": True, "peephole": True}), ("GRU", {}), ("GRU", {"reset_after": False})]


def flows(layer, x, hx, lengths, loss_fn=None):
    """grad_norms_through_time on the graph and on the fused kernels."""
    result = {}
    for name in ("graph", "numba"):
        layer.backend = name
        result[name] = grad_norms_through_time(layer, x, loss_fn, hx=hx, lengths=lengths)
    return result["graph"], result["numba"]


# ---------------------------------------------------------------- gradient norms through time


@given(config=layer_configs(proj=True))
@example(config=("LSTM", {"num_layers": 2, "bidirectional": True, "bias": True, "batch_first": False,
                          "peephole": False, "coupled": False, "proj_size": 2},
                 {"steps": 4, "batch": 3, "input_size": 2, "hidden": 3}, [4, 1, 3], True, 2))
def test_grad_norms_are_the_same_on_the_graph_and_the_fused_kernels(config):
    mode, options, sizes, lengths, given_state, seed = config
    layer, _, inputs = layer_loss_and_inputs(*config)
    x = inputs[0].data
    n_states = (2 if mode == "LSTM" else 1) if given_state else 0
    states = [s.data for s in inputs[1:1 + n_states]]
    hx = (tuple(states) if mode == "LSTM" else states[0]) if states else None
    lengths = None if lengths is None else np.asarray(lengths)
    # Every output and every final state get a gradient, so every path into dh is exercised.
    graph, fused = flows(layer, x, hx, lengths,
                         lambda out, h_n: weighted_sum([out, *(h_n if mode == "LSTM" else [h_n])], seed))
    assert graph.names == fused.names and graph.loss == pytest.approx(fused.loss, rel=1e-12)
    np.testing.assert_allclose(fused.h, graph.h, rtol=1e-9, atol=1e-12)
    if mode == "LSTM":
        np.testing.assert_allclose(fused.c, graph.c, rtol=1e-9, atol=1e-12)
    else:
        assert graph.c is None and fused.c is None
    if lengths is not None:  # past a sequence's end there is no h_t
        padded = np.arange(sizes["steps"])[:, None] >= lengths
        assert (graph.h[:, padded] == 0).all() and (fused.h[:, padded] == 0).all()


@pytest.mark.parametrize("mode,options", CELLS)
def test_grad_norms_equal_a_hand_unrolled_cell_with_retained_grads(mode, options):
    ts.manual_seed(0)
    rng = np.random.default_rng(1)
    layer = getattr(nn, mode)(3, 4, backend="graph", **options).double()
    cell = getattr(nn, f"{mode}Cell")(3, 4, **options).double()
    for name, p in cell.named_parameters():
        p.data[...] = getattr(layer, f"{name}_l0").data
    x = rng.standard_normal((5, 2, 3))
    hx, states = None, []
    for t in range(5):
        hx = cell(x[t], hx)
        for s in (hx if mode == "LSTM" else (hx,)):
            s.retain_grad()
        states.append(hx if mode == "LSTM" else (hx,))
    last_step_loss(ts.stack([s[0] for s in states])).backward()
    by_hand = np.array([[np.linalg.norm(s[k].grad, axis=-1) for s in states] for k in range(len(states[0]))])
    graph, fused = flows(layer, x, None, None)
    np.testing.assert_allclose(graph.h[0], by_hand[0], rtol=1e-12)
    np.testing.assert_allclose(fused.h[0], by_hand[0], rtol=1e-9)
    if mode == "LSTM":
        np.testing.assert_allclose(graph.c[0], by_hand[1], rtol=1e-12)
        np.testing.assert_allclose(fused.c[0], by_hand[1], rtol=1e-9)
    cell_flow = grad_norms_through_time(cell, x)  # the cell, unrolled by the instrument itself
    np.testing.assert_allclose(cell_flow.h[0], by_hand[0], rtol=1e-12)
    assert cell_flow.names == ("cell",)


def test_last_step_loss_puts_a_unit_gradient_at_each_sequence_s_last_step():
    layer = nn.GRU(3, 5, batch_first=True).double()
    x = np.random.default_rng(0).standard_normal((3, 7, 3))
    lengths = np.array([7, 2, 5])
    flow = grad_norms_through_time(layer, x, lengths=lengths)
    for b, n in enumerate(lengths):
        assert flow.h[0, n - 1, b] == pytest.approx(1.0, rel=1e-12)  # dL/dy_last = u, a unit vector
        assert (flow.h[0, n:, b] == 0).all() and (flow.h[0, :n - 1, b] > 0).all()
    with pytest.raises(ValueError, match="lengths must be 3 ints in \\[1, 7\\]"):
        last_step_loss(Tensor(np.zeros((3, 7, 4))), lengths=[7, 0, 5], batch_first=True)


def test_an_orthogonal_linear_cell_keeps_the_gradient_norm_exactly():
    class LinearCell(nn.Module):
        """h' = x W^T + h U^T: its Jacobian is U at every step."""

        def __init__(self):
            self.weight_ih = nn.Parameter(np.random.default_rng(2).standard_normal((6, 3)))
            self.weight_hh = nn.init.orthogonal_(nn.Parameter(np.empty((6, 6))))

        def forward(self, x, hx=None):
            h = x @ self.weight_ih.T
            return h if hx is None else h + hx @ self.weight_hh.T

    cell, x = LinearCell(), np.random.default_rng(3).standard_normal((50, 4, 3))
    flow = grad_norms_through_time(cell, x)
    np.testing.assert_allclose(flow.h[0], 1.0, rtol=1e-12)  # |u U^k| = |u| = 1 at every step back
    spectra = state_jacobians(cell, x, hx=np.zeros((4, 6)))
    np.testing.assert_allclose(spectra.singular_values, 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.abs(spectra.eigenvalues["h"]), 1.0, rtol=1e-12)


def test_the_instruments_leave_the_parameters_grads_and_refuse_bad_arguments():
    layer = nn.LSTM(2, 3).double()
    layer.weight_hh_l0.grad = np.full((12, 3), 7.0)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    grad_norms_through_time(layer, x)
    state_jacobians(layer, x)
    assert (np.asarray(layer.weight_hh_l0.grad) == 7.0).all() and layer.weight_ih_l0.grad is None
    with pytest.raises(TypeError, match="expected a recurrent layer or a cell Module"):
        grad_norms_through_time(lambda x: x, x)
    with pytest.raises(ValueError, match="one-element Tensor that requires grad"):
        grad_norms_through_time(layer, x, lambda out, state: out)
    with pytest.raises(ValueError, match="lengths= is for the recurrent layers"):
        grad_norms_through_time(nn.LSTMCell(2, 3).double(), x, lengths=[4, 4])
    with pytest.raises(ValueError, match="one-layer, one-direction"):
        state_jacobians(nn.LSTM(2, 3, num_layers=2).double(), x)


def test_the_instruments_work_on_a_frozen_layer_under_no_grad_and_draw_no_random_numbers():
    layer = nn.GRU(2, 3).double()
    for p in layer.parameters():
        p.requires_grad_(False)
    x = np.random.default_rng(0).standard_normal((4, 2, 2))
    ts.manual_seed(3)
    with ts.no_grad():
        flow = grad_norms_through_time(layer, x)
        spectra = state_jacobians(layer, x)
    np.testing.assert_allclose(flow.h[0, -1], 1.0, rtol=1e-12)
    assert spectra.jacobians.shape == (4, 2, 3, 3) and np.abs(spectra.jacobians).max() > 0
    drawn = ts.rand(3).data
    ts.manual_seed(3)
    np.testing.assert_array_equal(ts.rand(3).data, drawn)


def test_the_instruments_run_in_evaluation_mode_and_read_inputs_as_values():
    ts.manual_seed(11)
    layer = nn.GRU(3, 4, num_layers=2, dropout=0.5, backend="graph").double()  # in training mode
    x = np.random.default_rng(12).standard_normal((6, 2, 3))
    first, state = grad_norms_through_time(layer, x), ts.get_rng_state()
    np.testing.assert_array_equal(grad_norms_through_time(layer, x).h, first.h)  # no dropout: the same numbers
    assert layer.training and ts.get_rng_state() == state
    np.testing.assert_array_equal(grad_norms_through_time(layer, x.tolist()).h, first.h)  # lists, as the layer takes
    xt, h0 = Tensor(x, requires_grad=True), Tensor(np.zeros((2, 2, 4)), requires_grad=True)
    np.testing.assert_array_equal(grad_norms_through_time(layer, xt, hx=h0).h, first.h)
    assert xt.grad is None and h0.grad is None  # read as values
    rnn = nn.LSTM(3, 4).double()
    h0 = np.random.default_rng(13).standard_normal((1, 2, 4))
    with_layer_state = state_jacobians(rnn, x, hx=(h0, h0))  # the layer's (1, B, H), as h_n comes back
    np.testing.assert_array_equal(state_jacobians(rnn, x, hx=(h0[0], h0[0])).jacobians, with_layer_state.jacobians)


def test_a_whole_model_is_refused_with_a_pointer_to_its_layer():
    model = Model("graph")
    x = np.zeros((5, 2, 3), dtype=np.float32)
    for instrument in (grad_norms_through_time, state_jacobians):
        with pytest.raises(TypeError, match="holding the recurrent layer 'rnn'; pass that layer"):
            instrument(model, x)


# ---------------------------------------------------------------- the kernels' telemetry


@pytest.mark.parametrize("kernel", ["rnn", "lstm", "gru", "gru_classic"])
def test_kernel_telemetry_writes_every_element_and_changes_no_gradient(kernel):
    from tinyseq_jit import cpu

    rng = np.random.default_rng(0)
    steps, batch, hidden = 5, 3, 4
    gates = {"rnn": 1, "lstm": 4}.get(kernel, 3)
    weights = {"w_ih": rng.standard_normal((gates * hidden, 2)), "w_hh": rng.standard_normal((gates * hidden, hidden)),
               "b_hh": rng.standard_normal(gates * hidden)}
    x, h0 = rng.standard_normal((steps, batch, 2)), rng.standard_normal((batch, hidden))
    lengths = np.array([5, 2, 4])
    name = "gru" if kernel == "gru_classic" else kernel
    forward, backward = getattr(cpu, f"{name}_forward"), getattr(cpu, f"{name}_backward")
    states = (h0, h0) if kernel == "lstm" else (h0,)
    options = {"reset_after": False} if kernel == "gru_classic" else {}
    saved = forward(x, *states, weights, lengths=lengths, reverse=True, **options).saved
    d_out, d_states = rng.standard_normal((steps, batch, hidden)), [rng.standard_normal((batch, hidden))] * len(states)
    plain = backward(saved, d_out, *d_states)
    norms = np.full((len(states), steps, batch), np.nan)  # poisoned: every element must be written
    recorded = backward(saved, d_out, *d_states, grad_norms=norms)
    assert not np.isnan(norms).any()
    assert (norms[:, np.arange(steps)[:, None] >= lengths] == 0).all()
    assert (norms[:, np.arange(steps)[:, None] < lengths] > 0).all()
    for a, b in zip(plain, recorded):
        assert (a is None and b is None) or np.array_equal(a, b)
    with pytest.raises(ValueError, match=f"{name}_backward: grad_norms must have shape \\({len(states)}, 5, 3\\)"):
        backward(saved, d_out, *d_states, grad_norms=np.zeros((len(states), 3, 5)))
    with pytest.raises(ValueError, match="float64"):
        backward(saved, d_out, *d_states, grad_norms=np.zeros((len(states), steps, batch), dtype=np.float32))
    with pytest.raises(TypeError, match="None or a NumPy array, got list"):
        backward(saved, d_out, *d_states, grad_norms=norms.tolist())
    with pytest.raises(ValueError, match="C-contiguous"):
        backward(saved, d_out, *d_states, grad_norms=np.zeros((len(states), batch, steps)).transpose(0, 2, 1))


# ---------------------------------------------------------------- Jacobian spectra


def _trajectory(cell, x, h0):
    """The states entering each step (as one concatenated array per step), run without a graph."""
    entering, hx = [], h0
    with ts.no_grad():
        for t in range(len(x)):
            parts = hx if isinstance(hx, tuple) else (hx,)
            entering.append(np.concatenate([p.data for p in parts], axis=1))
            hx = cell(x[t], hx)
    return entering


def _step(cell, x_t, s, sizes):
    """One step from the concatenated state s, returning the concatenated new state."""
    parts = np.split(s, np.cumsum(sizes)[:-1], axis=1)
    with ts.no_grad():
        out = cell(x_t, tuple(Tensor(p) for p in parts) if len(parts) > 1 else Tensor(parts[0]))
    return np.concatenate([o.data for o in (out if isinstance(out, tuple) else (out,))], axis=1)


def _numeric_jacobian(f, s, eps=1e-6):
    """(B, N, N): d f(s)[b] / d s[b] by central differences (sequences are independent)."""
    batch, n = s.shape
    jac = np.empty((batch, n, n))
    for j in range(n):
        step = np.zeros_like(s)
        step[:, j] = eps
        jac[:, :, j] = (f(s + step) - f(s - step)) / (2 * eps)
    return jac


@pytest.mark.parametrize("mode,options", CELLS)
def test_state_jacobians_match_finite_differences(mode, options):
    ts.manual_seed(4)
    rng = np.random.default_rng(5)
    cell = getattr(nn, f"{mode}Cell")(3, 4, **options).double()
    x = rng.standard_normal((4, 2, 3))
    h = rng.standard_normal((2, 4))
    h0 = (Tensor(h), Tensor(0.5 * h)) if mode == "LSTM" else Tensor(h)
    sizes = [4, 4] if mode == "LSTM" else [4]
    spectra = state_jacobians(cell, x, hx=h0)
    entering = _trajectory(cell, x, h0)
    for t in range(4):
        numeric = _numeric_jacobian(lambda s: _step(cell, x[t], s, sizes), entering[t])
        np.testing.assert_allclose(spectra.jacobians[t], numeric, rtol=1e-6, atol=1e-8, err_msg=f"step {t}")

    def run_from(k):  # the state after the last step, from the state entering step k
        def f(s):
            for t in range(k, 4):
                s = _step(cell, x[t], s, sizes)
            return s
        return f

    for k in (0, 2):
        product = _numeric_jacobian(run_from(k), entering[k])
        np.testing.assert_allclose(spectra.singular_values[k], np.linalg.svd(product, compute_uv=False),
                                   rtol=1e-6, atol=1e-8)
    w_hh = cell.weight_hh.data
    for k, (gate, values) in enumerate(spectra.eigenvalues.items()):
        expected = np.linalg.eigvals(w_hh[4 * k:4 * (k + 1)])
        np.testing.assert_allclose(np.sort_complex(values), np.sort_complex(expected), atol=1e-12)
        assert (np.diff(np.abs(values)) <= 1e-12).all()  # largest modulus first
    assert tuple(spectra.eigenvalues) == ts.gates.gate_names(mode, options.get("coupled", False))


def test_a_projected_lstm_is_studied_with_both_states():
    """proj_size: the state is (h of P, c of H); the Jacobians are over both (P + H), against
    finite differences, and a gate's block is W_hh's rows times W_hr (H x H)."""
    ts.manual_seed(8)
    layer = nn.LSTM(3, 4, proj_size=2).double()
    step = layer.step()
    x = np.random.default_rng(9).standard_normal((3, 2, 3))
    spectra = state_jacobians(layer, x)
    assert spectra.jacobians.shape == (3, 2, 6, 6)
    cell = bptt._CellStep(step)
    entering = _trajectory(cell, x, (Tensor(np.zeros((2, 2))), Tensor(np.zeros((2, 4)))))
    for t in range(3):
        numeric = _numeric_jacobian(lambda s: _step(cell, x[t], s, [2, 4]), entering[t])
        np.testing.assert_allclose(spectra.jacobians[t], numeric, rtol=1e-6, atol=1e-8, err_msg=f"step {t}")
    blocks = layer.weight_hh_l0.data @ layer.weight_hr_l0.data
    for k, (gate, values) in enumerate(spectra.eigenvalues.items()):
        np.testing.assert_allclose(np.sort_complex(values), np.sort_complex(np.linalg.eigvals(blocks[4 * k:4 * k + 4])),
                                   atol=1e-12)
    assert tuple(spectra.eigenvalues) == ts.gates.gate_names("LSTM", False)


def test_a_layer_is_studied_through_its_cell():
    ts.manual_seed(6)
    layer = nn.LSTM(3, 4, batch_first=True, peephole=True).double()
    x = np.random.default_rng(7).standard_normal((2, 5, 3))  # (B, T, I)
    cell = nn.LSTMCell(3, 4, peephole=True).double()
    for name, p in cell.named_parameters():
        p.data[...] = getattr(layer, f"{name}_l0").data
    from_layer, from_cell = state_jacobians(layer, x, top=3), state_jacobians(cell, x.swapaxes(0, 1), top=3)
    np.testing.assert_array_equal(from_layer.jacobians, from_cell.jacobians)
    assert from_layer.singular_values.shape == (5, 2, 3)
    np.testing.assert_array_equal(from_layer.spectral_norms, from_cell.singular_values[..., 0])


# ---------------------------------------------------------------- truncation bias


class Model(nn.Module):
    def __init__(self, backend):
        self.rnn = nn.LSTM(3, 5, backend=backend, dropout=0.5, num_layers=2)
        self.head = nn.Linear(5, 2)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)
        return self.head(out), state


def mse(out, y):
    return ((out - y) ** 2).mean()


@pytest.mark.parametrize("backend", ["graph", "numba"])
def test_truncation_bias_is_exactly_none_for_k_at_least_T_and_follows_the_pieces(backend):
    ts.manual_seed(8)
    model = Model(backend).double()
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((12, 4, 3)), rng.standard_normal((12, 4, 2))
    rows = truncation_bias(model, mse, (x, y), ks=[1, 3, 5, 12, 40])
    assert [r.k for r in rows] == [1, 3, 5, 12, 40]
    for r in rows[3:]:
        assert r.cosine == 1.0 and r.relative_error == 0.0
    assert all(r.cosine < 1 and r.relative_error > 0 for r in rows[:3])
    assert rows[0].relative_error > rows[2].relative_error  # k = 1 is further off than k = 5
    assert model.training and all(p.grad is None for p in model.parameters())

    def by_hand(k):  # pieces of k steps from a detached state, each weighted by its share of T
        model.eval()
        model.zero_grad()
        state = None
        for start in range(0, 12, k):
            out, state = model(x[start:start + k], state)
            (mse(out, y[start:start + k]) * (len(out) / 12)).backward()
            state = ts.bptt.detach_state(state)
        model.train()
        grads = np.concatenate([np.ravel(p.grad) for p in model.parameters()])
        model.zero_grad()
        return grads

    full, truncated = by_hand(12), by_hand(3)
    cosine = full @ truncated / np.linalg.norm(full) / np.linalg.norm(truncated)
    assert rows[1].cosine == pytest.approx(cosine, rel=1e-12)
    assert rows[1].relative_error == pytest.approx(np.linalg.norm(truncated - full) / np.linalg.norm(full), rel=1e-12)


def test_truncation_bias_refuses_what_truncated_bptt_refuses():
    model = nn.LSTM(3, 4, bidirectional=True)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="bidirectional"):
        truncation_bias(model, mse, (x, x), ks=[2])
    with pytest.raises(ValueError, match="k must be a positive int"):
        truncation_bias(Model("graph"), mse, (x, x), ks=[0])
    with pytest.raises(ValueError, match="same, non-zero number of steps"):
        truncation_bias(Model("graph"), mse, (x, x[:3]), ks=[2])
    with pytest.raises(TypeError, match="ks must be a list of ints"):
        truncation_bias(Model("graph"), mse, (x, x), ks=4)
    with pytest.raises(ValueError, match="batch must be a pair"):
        truncation_bias(Model("graph"), mse, (x, x, x), ks=[2])
    frozen = Model("graph")
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter of the model requires grad"):
        truncation_bias(frozen, mse, (x, x), ks=[2])
    with pytest.raises(ValueError, match="the full BPTT gradient is zero"):
        truncation_bias(Model("graph"), lambda out, y: (out * 0).sum(), (x, x), ks=[2])


# ---------------------------------------------------------------- the spectral-radius init


def test_spectral_radius_init_sets_each_gate_block_s_radius():
    w = nn.Parameter(np.random.default_rng(10).standard_normal((12, 3)))
    eigenvectors = np.linalg.eig(w.data[:3])[1]
    nn.init.spectral_radius_(w, 1.5, num_gates=4)
    for k in range(4):
        assert np.abs(np.linalg.eigvals(w.data[3 * k:3 * (k + 1)])).max() == pytest.approx(1.5, rel=1e-12)
    np.testing.assert_allclose(np.abs(np.linalg.eig(w.data[:3])[1]), np.abs(eigenvectors), atol=1e-12)
    with pytest.raises(ValueError, match="spectral radius 0"):
        nn.init.spectral_radius_(np.zeros((3, 3)), 1.0)
    with pytest.raises(ValueError, match="square gate blocks"):
        nn.init.spectral_radius_(np.ones((4, 3)), 1.0)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        nn.init.spectral_radius_(np.eye(3), -1.0)
    with pytest.raises(ValueError, match="nan or inf"):
        nn.init.spectral_radius_(np.full((3, 3), np.nan), 1.0)
