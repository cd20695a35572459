"""How a recurrent layer runs: "graph" (unrolled ops), "numba" (fused CPU kernels), "cuda", "auto".

A layer's ``backend=`` argument wins unless it is "auto"; "auto" defers to the process-wide
choice (``set_backend``, the ``use_backend`` context manager, or the ``TINYSEQ_BACKEND``
environment variable), and when that is "auto" too, to numba if ``tinyseq_jit`` imports,
else graph. Asking for a backend that cannot run raises an error saying why and how to
install it; "auto" falls back silently.

A fused layer-direction is one ``Function`` in the graph (``FusedRecurrence``): its forward
is one kernel call over all T steps, its backward one BPTT kernel call, so
``loss.backward()`` and mixing with other ops work unchanged. ``tinyseq_jit`` is imported
lazily: ``tinyseq`` itself needs only NumPy.
"""

import contextlib
import os

import numpy as np

from .tensor import Function

BACKENDS = ("auto", "graph", "numba", "cuda")

_default = None  # None: read TINYSEQ_BACKEND, else "auto"
_jit = None
_jit_error = None


def _check(name, where):
    if name not in BACKENDS:
        raise ValueError(f"{where}: backend must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend():
    """The process-wide backend choice ("auto" unless set)."""
    if _default is not None:
        return _default
    return _check(os.environ.get("TINYSEQ_BACKEND", "auto"), "TINYSEQ_BACKEND")


def set_backend(name):
    """Set the process-wide backend used by layers whose ``backend`` is "auto"."""
    global _default
    _default = _check(name, "set_backend")


@contextlib.contextmanager
def use_backend(name):
    """Context manager: ``with use_backend("graph"): ...`` runs "auto" layers on that backend."""
    global _default
    previous = _default
    _default = _check(name, "use_backend")
    try:
        yield
    finally:
        _default = previous


def load_jit():
    """Import ``tinyseq_jit`` once; return it, or None (remembering why) if it cannot load."""
    global _jit, _jit_error
    if _jit is None and _jit_error is None:
        try:
            import tinyseq_jit
        except ImportError as e:  # numba or scipy missing
            _jit_error = e
        else:
            _jit = tinyseq_jit
    return _jit


def resolve(name):
    """The backend a layer with ``backend=name`` runs on now: "graph", "numba" or "cuda"."""
    _check(name, "backend")
    if name == "auto":
        name = get_backend()
    if name == "auto":
        return "numba" if load_jit() is not None else "graph"
    if name == "numba" and load_jit() is None:
        raise RuntimeError(
            f"backend 'numba' is not available: importing tinyseq_jit failed ({_jit_error}); "
            "install the dependencies with: pip install numba scipy"
        )
    if name == "cuda":
        raise RuntimeError(
            "backend 'cuda' is not available: the numba.cuda kernels are not part of this version of "
            "tinyseq_jit yet; use backend='numba' (CPU) or 'graph'"
        )
    return name


# ---------------------------------------------------------------- the fused layer as one graph node


class FusedRecurrence(Function):
    """One layer-direction run by a fused kernel pair.

    Inputs, in order: x (T, B, I), h0 (B, H), [c0 (B, H) for LSTM], w_ih, w_hh, then the
    optional ones named in ``present`` (b_ih, b_hh, ci, cf, co). The output packs
    ``[out (T steps), h_n, c_n]`` along the first axis, (T + 1 or 2, B, H); the layer
    slices it, and the slices' gradients are gathered back into one array for backward.
    """

    def forward(self, *arrays, mode, present, lengths, reverse, options):
        cpu = load_jit().cpu
        named = dict(zip(present, arrays))
        common = dict(b_ih=named.get("b_ih"), b_hh=named.get("b_hh"), lengths=lengths, reverse=reverse)
        if mode == "LSTM":
            peephole = (named.get("ci"), named.get("cf"), named.get("co")) if options["peephole"] else None
            out, h_n, c_n, ctx = cpu.lstm_forward(named["x"], named["h0"], named["c0"], named["w_ih"],
                                                  named["w_hh"], peephole=peephole, coupled=options["coupled"],
                                                  **common)
            finals = (h_n, c_n)
        elif mode == "GRU":
            out, h_n, ctx = cpu.gru_forward(named["x"], named["h0"], named["w_ih"], named["w_hh"],
                                            reset_after=options["reset_after"], **common)
            finals = (h_n,)
        else:
            out, h_n, ctx = cpu.rnn_forward(named["x"], named["h0"], named["w_ih"], named["w_hh"],
                                            nonlinearity=options["nonlinearity"], **common)
            finals = (h_n,)
        self.save(ctx, mode, present, out.shape[0])
        return np.concatenate([out] + [f[None] for f in finals], axis=0)

    def backward(self, g):
        ctx, mode, present, steps = self.saved
        cpu = load_jit().cpu
        need_dx = self.needs_input_grad[0]
        if mode == "LSTM":
            dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dpeep = cpu.lstm_backward(
                ctx, g[:steps], g[steps], g[steps + 1], need_dx=need_dx)
            grads = dict(x=dx, h0=dh0, c0=dc0, w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh)
            if dpeep is not None:
                grads.update(ci=dpeep[0], cf=dpeep[1], co=dpeep[2])
        else:
            backward = cpu.gru_backward if mode == "GRU" else cpu.rnn_backward
            dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward(ctx, g[:steps], g[steps], need_dx=need_dx)
            grads = dict(x=dx, h0=dh0, w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh)
        return tuple(grads.get(name) for name in present)


def fused_direction(layer, x, suffix, h0, c0, lengths, reverse):
    """Run ``layer``'s parameters with ``suffix`` over x on the numba backend.

    Returns (out (T, B, H) tensor, h_n, c_n or None), as the graph loop does.
    """
    get = lambda n: getattr(layer, f"{n}{suffix}", None)  # noqa: E731
    names = ["x", "h0"] + (["c0"] if layer.mode == "LSTM" else []) + ["w_ih", "w_hh"]
    tensors = [x, h0] + ([c0] if layer.mode == "LSTM" else []) + [get("weight_ih"), get("weight_hh")]
    for name, attr in (("b_ih", "bias_ih"), ("b_hh", "bias_hh"), ("ci", "weight_ci"), ("cf", "weight_cf"),
                       ("co", "weight_co")):
        if get(attr) is not None:
            names.append(name)
            tensors.append(get(attr))
    options = dict(peephole=layer.peephole, coupled=layer.coupled, reset_after=layer.reset_after,
                   nonlinearity=layer.nonlinearity)
    packed = FusedRecurrence.apply(*tensors, mode=layer.mode, present=tuple(names), lengths=lengths,
                                   reverse=reverse, options=options)
    steps = x.shape[0]
    c_n = packed[steps + 1] if layer.mode == "LSTM" else None
    return packed[:steps], packed[steps], c_n
