"""The built-in cells' kernel pairs as functions on arrays, speaking ``_contract.py``.

``rnn_forward(x, h0, weights, ...)``, ``lstm_forward(x, h0, c0, weights, ...)`` and
``gru_forward(x, h0, weights, ...)`` return a ``Forward``; the matching backward takes its
``saved`` and the gradients of out and of the final state(s) and returns a ``Grads``. They
run the kernels ``tinyseq_jit.compiler`` generates from each cell's step
(``tinyseq.nn.RNNStep``, ``LSTMStep``, ``GRUStep``), the same the layers run, on the CPU or
with ``device="cuda"`` on numba.cuda (host arrays in and out): the step is
given the weights under its parameters' names, and the fused node it makes is kept in
``saved`` until the backward runs it.
"""

from types import SimpleNamespace

import numpy as np

from tinyseq.gates import num_gates

from ._contract import WEIGHTS, Forward, Grads
from .cpu._common import check_inputs, norm_buffer

#: the kernels' weight names -> the steps' parameter names (tinyseq.nn.rnn.PARAMETERS)
_PARAMETER = dict(zip(WEIGHTS, ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ci",
                                "weight_cf", "weight_co")))


def rnn_forward(x, h0, weights, lengths=None, reverse=False, nonlinearity="tanh", *, device="numba"):
    """Run one Elman RNN layer in one direction over all T steps: x (T, B, I), h0 (B, H),
    ``weights`` w_ih (H, I), w_hh (H, H), optionally b_ih and b_hh (H,); ``lengths`` (B,) or
    None; ``reverse`` runs t = T-1 .. 0; ``nonlinearity`` "tanh" or "relu". A ``Forward``."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_forward: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _forward("rnn_forward", "RNN", x, (h0,), weights, lengths, reverse, {"nonlinearity": nonlinearity}, device)


def lstm_forward(x, h0, c0, weights, lengths=None, reverse=False, coupled=False, *, device="numba"):
    """Run one LSTM layer in one direction over all T steps: x (T, B, I); h0, c0 (B, H);
    ``weights`` w_ih (G*H, I) and w_hh (G*H, H) with G = 4 (3 when ``coupled``), optionally
    b_ih and b_hh (G*H,), the projection w_hr (P, H) (then w_hh is (G*H, P) and h0 (B, P)),
    and the peepholes ci, cf, co (H,) each (cf and co when coupled). A ``Forward``: out
    (T, B, H), h_n (B, H), c_n (B, H); out and h_n have P features with w_hr."""
    return _forward("lstm_forward", "LSTM", x, (h0, c0), weights, lengths, reverse, {"coupled": coupled}, device)


def gru_forward(x, h0, weights, lengths=None, reverse=False, reset_after=True, *, device="numba"):
    """Run one GRU layer in one direction over all T steps: x (T, B, I), h0 (B, H),
    ``weights`` w_ih (3*H, I), w_hh (3*H, H), optionally b_ih and b_hh (3*H,);
    ``reset_after=False`` is Cho et al.'s form. A ``Forward``."""
    return _forward("gru_forward", "GRU", x, (h0,), weights, lengths, reverse, {"reset_after": reset_after}, device)


def rnn_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through an ``rnn_forward`` call; a ``Grads`` (x None unless ``need_dx``).
    ``grad_norms``, if given, a (1, T, B) array: written with ||dL/dh_t||."""
    return _backward(saved, d_out, (d_h_n,), need_dx, grad_norms)


def lstm_backward(saved, d_out, d_h_n, d_c_n, need_dx=True, grad_norms=None):
    """BPTT through an ``lstm_forward`` call; a ``Grads`` (x None unless ``need_dx``).
    ``grad_norms``, if given, a (2, T, B) array: written with ||dL/dh_t|| and ||dL/dc_t||."""
    return _backward(saved, d_out, (d_h_n, d_c_n), need_dx, grad_norms)


def gru_backward(saved, d_out, d_h_n, need_dx=True, grad_norms=None):
    """BPTT through a ``gru_forward`` call; a ``Grads`` (x None unless ``need_dx``).
    ``grad_norms``, if given, a (1, T, B) array: written with ||dL/dh_t||."""
    return _backward(saved, d_out, (d_h_n,), need_dx, grad_norms)


def _forward(name, mode, x, states, weights, lengths, reverse, options, device):
    from tinyseq import Tensor
    from tinyseq.nn import Parameter, recurrent, rnn

    allowed = WEIGHTS if mode == "LSTM" else WEIGHTS[:4]
    inputs = check_inputs(name, num_gates(mode, options.get("coupled", False)), x, states, weights, lengths,
                          reverse, allowed)
    w = inputs.w
    peephole = mode == "LSTM" and _peepholes(name, w, options["coupled"])
    leaves = {k: Parameter(v) for k, v in w.items()}  # the step's parameters: what the trace looks for
    hidden = inputs.states[-1].shape[1]
    owner = SimpleNamespace(hidden_size=hidden, bias=True, proj_size=w["w_hr"].shape[0] if "w_hr" in w else 0,
                            peephole=peephole, **options, **{_PARAMETER[k]: v for k, v in leaves.items()})
    step = rnn.STEPS[mode].view(owner)
    x = Tensor(inputs.x, requires_grad=True)
    initial = tuple(Tensor(s, requires_grad=True) for s in inputs.states)
    norms = []
    out, final = recurrent.run_step(step, x, initial if len(initial) > 1 else initial[0], inputs.lengths, None,
                                    inputs.reverse, norms, rnn._kernel(step, device))
    final = final if isinstance(final, tuple) else (final,)
    saved = (name.replace("forward", "backward"), inputs, out, final, x, initial, leaves, norms[0])
    return Forward(out.data, final[0].data, final[1].data if len(final) > 1 else None, saved)


def _backward(saved, d_out, d_finals, need_dx, grad_norms):
    from tinyseq import Tensor

    name, inputs, out, final, x, initial, leaves, norms = saved
    loss = (out * Tensor(np.asarray(d_out, dtype=out.dtype))).sum()
    for f, d in zip(final, d_finals):
        loss = loss + (f * Tensor(np.asarray(d, dtype=f.dtype))).sum()
    for leaf in (x, *initial, *leaves.values()):
        leaf.grad = None
    loss.backward(retain_graph=True)  # as a kernel pair's, ``saved`` serves any number of backwards
    if grad_norms is not None:
        norm_buffer(name, grad_norms, len(initial), inputs)[...] = norms
    grads = {k: leaves[k].grad.data for k in leaves}
    return Grads(x=x.grad.data if need_dx else None, h0=initial[0].grad.data,
                 c0=initial[1].grad.data if len(initial) > 1 else None, **grads)


def _peepholes(name, w, coupled):
    """Whether ``w`` holds peepholes; a partial set, or ci on a coupled LSTM, is refused."""
    given = tuple(k for k in ("ci", "cf", "co") if k in w)
    if not given:
        return False
    if coupled and "ci" in given:
        raise ValueError(f"{name}: a coupled LSTM has no input gate, so it takes no ci peephole")
    needed = ("cf", "co") if coupled else ("ci", "cf", "co")
    if given != needed:
        raise ValueError(f"{name}: a peephole LSTM needs the weights {list(needed)}, got {list(given)}")
    return True
