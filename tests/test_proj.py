"""An LSTM with a projection of h (``proj_size``, PyTorch's LSTMP): what the property tests
and the torch parity tests do not cover already.

The contract graph == numba and the gradient checks draw ``proj_size`` in
``helpers.layer_configs(proj=True)`` (test_backends.py, test_rnn.py, test_bptt_study.py);
torch parity and interop are in test_torch_parity.py and test_interop.py. Here: the
parameters and their init, the argument checks, the backend choice (on CUDA too, under the
simulator) and the kernels' contract with ``w_hr``.
"""

import math
import os

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import backend, nn
from tinyseq.bptt import state_jacobians
from tinyseq.nn._fused import CompiledRecurrence

from helpers import count_nodes


def test_parameters_shapes_and_torchs_init():
    lstm = nn.LSTM(5, 64, num_layers=2, bidirectional=True, proj_size=16)
    shapes = {k: v.shape for k, v in lstm.state_dict().items()}
    assert shapes["weight_hr_l0"] == shapes["weight_hr_l1_reverse"] == (16, 64)
    assert shapes["weight_hh_l1"] == (256, 16) and shapes["weight_ih_l1"] == (256, 32)
    assert shapes["weight_ih_l0"] == (256, 5) and shapes["bias_hh_l0_reverse"] == (256,)
    bound = 1 / math.sqrt(64)  # 1/sqrt(H) for every weight, W_hr included, as torch
    for name, p in lstm.named_parameters():
        assert p.dtype == np.float32, name
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.9 * bound, name
    assert not any("weight_hr" in k for k in nn.LSTM(5, 8).state_dict())


def test_shapes_of_outputs_and_states():
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True, proj_size=2, backend="graph")
    out, (h, c) = lstm(np.ones((4, 6, 3), np.float32))
    assert (out.shape, h.shape, c.shape) == ((4, 6, 4), (4, 4, 2), (4, 4, 5))
    with pytest.raises(ValueError, match=r"LSTM: expected h0 of shape \(4, 4, 2\), got \(4, 4, 5\)"):
        lstm(np.ones((4, 6, 3), np.float32), (c.data, c.data))
    assert "proj_size=2" in repr(lstm)


@pytest.mark.parametrize("proj_size, message", [
    (5, r"LSTM: proj_size must be smaller than hidden_size \(5\), got 5"),
    (-1, "LSTM: proj_size must be an int >= 0, got -1"),
    (1.5, "LSTM: proj_size must be an int >= 0, got 1.5"),
    (True, "LSTM: proj_size must be an int >= 0, got True"),
])
def test_proj_size_is_checked(proj_size, message):
    with pytest.raises(ValueError, match=message):
        nn.LSTM(3, 5, proj_size=proj_size)


def test_only_the_lstm_layer_takes_proj_size():
    for make in (lambda: nn.LSTMCell(3, 5, proj_size=2), lambda: nn.GRU(3, 5, proj_size=2),
                 lambda: nn.RNN(3, 5, proj_size=2)):
        with pytest.raises(TypeError, match="proj_size"):
            make()


def test_auto_runs_the_compiled_kernels():
    lstm = nn.LSTM(3, 5, num_layers=2, proj_size=2)
    x = np.ones((4, 2, 3), np.float32)
    assert count_nodes(lstm(x)[0], CompiledRecurrence) == 2  # "auto": the numba kernels
    with backend.use_backend("graph"):
        assert count_nodes(lstm(x)[0], CompiledRecurrence) == 0


@pytest.mark.cuda
@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="runs under NUMBA_ENABLE_CUDASIM=1")
def test_a_projected_lstm_on_cuda_equals_the_graph():
    ts.manual_seed(0)
    graph = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, backend="graph", dtype=np.float64)
    cuda = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, backend="cuda", dtype=np.float64)
    cuda.load_state_dict(graph.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3, 3))
    results = []
    for layer in (graph, cuda):
        out, (h, c) = layer(x, lengths=[4, 1, 3])
        (out.sum() + (h * h).sum() + c.sum()).backward()
        results.append([out.data, h.data, c.data] + [p.grad.data for p in layer.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_state_jacobians_study_a_projected_layer_over_h_and_c():
    """(The finite-difference check is tests/test_bptt_study.py's.) The state is h (P) and c (H)."""
    spectra = state_jacobians(nn.LSTM(2, 3, proj_size=1), np.ones((3, 1, 2), np.float32))
    assert spectra.jacobians.shape == (3, 1, 4, 4)
    assert [len(v) for v in spectra.eigenvalues.values()] == [3, 3, 3, 3]  # W_hh's blocks times W_hr: 3 x 3


# ---------------------------------------------------------------- the kernels' contract


def _kernel_args(rng):
    x, h0, c0 = rng.standard_normal((4, 3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((3, 5))
    w = dict(w_ih=rng.standard_normal((20, 2)), w_hh=rng.standard_normal((20, 2)), b_hh=rng.standard_normal(20),
             w_hr=rng.standard_normal((2, 5)))
    return x, h0, c0, w


def test_kernel_gradients_with_a_projection_are_named_and_shaped():
    from tinyseq_jit import cpu

    x, h0, c0, w = _kernel_args(np.random.default_rng(0))
    result = cpu.lstm_forward(x, h0, c0, w, lengths=[4, 1, 2], reverse=True)
    assert (result.out.shape, result.h_n.shape, result.c_n.shape) == ((4, 3, 2), (3, 2), (3, 5))
    assert not result.out[2:, 2].any() and not result.out[1:, 1].any()
    norms = np.empty((2, 4, 3))
    grads = cpu.lstm_backward(result.saved, np.ones((4, 3, 2)), np.ones((3, 2)), np.ones((3, 5)), grad_norms=norms)
    assert {k for k, g in grads._asdict().items() if g is not None} == {"x", "h0", "c0", *w}
    assert grads.w_hr.shape == (2, 5) and grads.h0.shape == (3, 2) and grads.c0.shape == (3, 5)
    # reverse: h_n is h_0, so dL/dh_0 = d_out[0] + d_h_n = 2 in each of its P = 2 features
    assert norms[0, 0, 0] == pytest.approx(np.sqrt(2 * 2 ** 2))
    assert norms[0, 1, 1] == 0 and norms[1, 3, 1] == 0  # padded


def test_kernel_refuses_mismatched_projection_shapes():
    from tinyseq_jit import cpu

    x, h0, c0, w = _kernel_args(np.random.default_rng(1))
    with pytest.raises(ValueError, match=r"lstm_forward: w_hh must have shape \(4\*H, P\), got \(20, 5\) "
                                         r"\(w_hr is \(P, H\) = \(2, 5\)\)"):
        cpu.lstm_forward(x, h0, c0, dict(w, w_hh=np.ones((20, 5))))
    with pytest.raises(ValueError, match=r"lstm_forward: h0 has shape \(3, 5\), expected \(3, 2\)"):
        cpu.lstm_forward(x, c0, c0, w)
    with pytest.raises(ValueError, match=r"lstm_forward: w_hr must have shape \(P, H\), got \(10,\)"):
        cpu.lstm_forward(x, h0, c0, dict(w, w_hr=np.ones(10)))
    with pytest.raises(ValueError, match=r"gru_forward: weights must hold w_ih and w_hh and may hold"):
        cpu.gru_forward(x, h0, dict(w_ih=np.ones((6, 2)), w_hh=np.ones((6, 2)), w_hr=np.ones((2, 2))))
