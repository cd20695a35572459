"""Check a function's analytic gradients (from ``backward``) against finite differences.

Two modes, both using central differences ``(f(x + eps d) - f(x - eps d)) / (2 eps)``:

* ``"full"`` builds the whole Jacobian of the flattened output with respect to each
  flattened input, numerically (two forward passes per input element) and analytically
  (one backward pass per output element), and compares them entry by entry.
* ``"directional"`` compares a single number per input, ``<u, J v>``, for random ``u``
  (output-shaped) and ``v`` (input-shaped): analytic ``<backward(u), v>`` against numeric
  ``<u, (f(x + eps v) - f(x - eps v)) / (2 eps)>``. Its cost does not grow with the
  tensor sizes, and a wrong gradient almost surely changes that number.

``"auto"`` uses the full check while every checked input and the output have at most
``config.GRADCHECK_FULL_MAX_ELEMENTS`` elements, and the directional one otherwise.
"""

import numpy as np

from . import config
from .tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when analytic and numeric gradients disagree."""


def _as_tuple(inputs):
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def _fmt(array):
    text = np.array2string(np.asarray(array), precision=6, suppress_small=True, max_line_width=100)
    return "    " + text.replace("\n", "\n    ")


def _forward(fn, inputs):
    """``fn(*inputs)`` with the graph recorded, checked to be a differentiable float64 tensor."""
    out = _output(fn, inputs)
    if not out.requires_grad:
        raise GradcheckError("gradcheck: fn's output does not require grad, so no gradient reaches the inputs")
    if out.dtype != np.float64:
        raise GradcheckError(f"gradcheck: fn's output has dtype {out.dtype}; it must be float64 for a reliable check")
    return out


def _output(fn, inputs):
    """``fn(*inputs)``, which must be a Tensor."""
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return out


def _evaluate(fn, inputs):
    with no_grad():
        return np.array(_output(fn, inputs).data, dtype=np.float64)


def _backward_grads(out, inputs, indices, u, retain_graph=False):
    """Gradients of ``<u, out>`` for ``inputs[i]``, ``i`` in ``indices`` (zeros where none arrives)."""
    for i in indices:
        inputs[i].grad = None
    out.backward(u, retain_graph=retain_graph)
    return [np.zeros(inputs[i].shape) if inputs[i].grad is None else np.asarray(inputs[i].grad, np.float64)
            for i in indices]


def _analytical_jacobians(fn, inputs, indices):
    out = _forward(fn, inputs)
    jacobians = [np.zeros((out.numel(), inputs[i].numel())) for i in indices]
    saved = [inputs[i].grad for i in indices]
    try:
        for k in range(out.numel()):
            u = np.zeros(out.shape)
            u.flat[k] = 1.0
            for jac, g in zip(jacobians, _backward_grads(out, inputs, indices, u, retain_graph=True)):
                jac[k] = g.reshape(-1)
    finally:
        for i, g in zip(indices, saved):
            inputs[i].grad = g
    return out.shape, jacobians


def analytical_jacobian(fn, inputs, i):
    """Jacobian of ``fn(*inputs)`` (flattened) w.r.t. ``inputs[i]`` (flattened), from backward.

    Shape ``(output size, inputs[i].size)``; one backward pass per output element.
    The inputs' ``.grad`` are left as they were.
    """
    return _analytical_jacobians(fn, _as_tuple(inputs), [i])[1][0]


def numerical_jacobian(fn, inputs, i, eps=None):
    """Jacobian of ``fn(*inputs)`` (flattened) w.r.t. ``inputs[i]`` (flattened), by central differences.

    Shape ``(output size, inputs[i].size)``. Each element of ``inputs[i].data`` is moved
    by ``±eps`` in place and always put back. ``eps`` defaults to ``config.GRADCHECK_EPS``.
    """
    inputs = _as_tuple(inputs)
    eps = config.GRADCHECK_EPS if eps is None else eps
    x = inputs[i].data
    jacobian = np.zeros((_evaluate(fn, inputs).size, x.size))
    for j in range(x.size):
        idx = np.unravel_index(j, x.shape)
        original = x[idx].copy()
        try:
            x[idx] = original + eps
            plus = _evaluate(fn, inputs)
            x[idx] = original - eps
            minus = _evaluate(fn, inputs)
        finally:
            x[idx] = original
        jacobian[:, j] = ((plus - minus) / (2 * eps)).reshape(-1)
    return jacobian


def _check_full(fn, inputs, indices, eps, atol, rtol):
    out_shape, analytic = _analytical_jacobians(fn, inputs, indices)
    for i, a in zip(indices, analytic):
        n = numerical_jacobian(fn, inputs, i, eps)
        tol = atol + rtol * np.abs(n)
        err = np.abs(a - n)
        bad = ~(err <= tol)
        if not bad.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            k, j = np.unravel_index(np.argmax(np.where(bad, err / tol, -1.0)), a.shape)
        x = inputs[i]
        out_idx = tuple(int(v) for v in np.unravel_index(k, out_shape))
        in_idx = tuple(int(v) for v in np.unravel_index(j, x.shape))
        lines = [
            f"gradcheck (mode 'full') failed for input {i} with shape {x.shape}:",
            f"  worst element: output index {out_idx}, input element {in_idx}",
            f"  analytic = {a[k, j]:.8g}, numeric = {n[k, j]:.8g}, difference = {a[k, j] - n[k, j]:.3g}",
            f"  tolerance: atol {atol:g} + rtol {rtol:g} * |numeric| = {tol[k, j]:.3g}",
        ]
        if x.numel() <= 20:
            rows, what = (slice(None), "Jacobian") if a.shape[0] <= 20 else \
                (slice(k, k + 1), f"Jacobian row for output index {out_idx}")
            lines += [f"  input {i} values:", _fmt(x.data), f"  analytic {what}:", _fmt(a[rows]),
                      f"  numeric {what}:", _fmt(n[rows])]
        raise GradcheckError("\n".join(lines))


def _check_directional(fn, inputs, indices, eps, atol, rtol, seed):
    rng = np.random.default_rng(seed)
    out = _forward(fn, inputs)
    u = rng.standard_normal(out.shape)
    saved = [inputs[i].grad for i in indices]
    try:
        grads = _backward_grads(out, inputs, indices, u)
    finally:
        for i, g in zip(indices, saved):
            inputs[i].grad = g
    for i, grad in zip(indices, grads):
        x = inputs[i].data
        v = rng.standard_normal(x.shape)
        original = x.copy()
        try:
            x[...] = original + eps * v
            plus = _evaluate(fn, inputs)
            x[...] = original - eps * v
            minus = _evaluate(fn, inputs)
        finally:
            x[...] = original
        analytic = float(np.sum(grad * v))
        numeric = float(np.sum(u * (plus - minus))) / (2 * eps)
        tol = atol + rtol * abs(numeric)
        if not abs(analytic - numeric) <= tol:
            raise GradcheckError(
                f"gradcheck (mode 'directional', seed {seed}) failed for input {i} with shape {x.shape}:\n"
                f"  directional derivative <u, J v> for random u, v:\n"
                f"  analytic = {analytic:.8g}, numeric = {numeric:.8g}, difference = {analytic - numeric:.3g}\n"
                f"  tolerance: atol {atol:g} + rtol {rtol:g} * |numeric| = {tol:.3g}"
            )


def gradcheck(fn, inputs, eps=None, atol=None, rtol=None, mode="auto", seed=0):
    """Check ``fn``'s backward against central differences; return True or raise ``GradcheckError``.

    ``fn(*inputs)`` must return a float64 Tensor (any shape) that requires grad. ``inputs``
    is a Tensor or a sequence of them; those with ``requires_grad=True`` (float64 only) are
    checked, the rest passed through. A check fails where
    ``|analytic - numeric| > atol + rtol * |numeric|``. ``eps``, ``atol`` and ``rtol`` default
    to ``config.GRADCHECK_EPS/ATOL/RTOL``. ``mode`` is ``"full"``, ``"directional"`` (random
    directions drawn with ``seed``) or ``"auto"`` (see the module docstring). Inputs' data
    and ``.grad`` are left unchanged.
    """
    if mode not in ("auto", "full", "directional"):
        raise ValueError(f"gradcheck: unknown mode {mode!r}; use 'auto', 'full' or 'directional'")
    inputs = _as_tuple(inputs)
    eps = config.GRADCHECK_EPS if eps is None else eps
    atol = config.GRADCHECK_ATOL if atol is None else atol
    rtol = config.GRADCHECK_RTOL if rtol is None else rtol
    indices = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not indices:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in indices:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; inputs that require grad "
                            "must be float64 (e.g. Tensor(data, dtype=np.float64))")
        if not inputs[i].is_leaf:
            raise ValueError(f"gradcheck: input {i} is not a leaf tensor; pass x.detach().requires_grad_() instead")
    if mode == "auto":
        limit = config.GRADCHECK_FULL_MAX_ELEMENTS
        with no_grad():
            out_size = _output(fn, inputs).numel()
        small = out_size <= limit and all(inputs[i].numel() <= limit for i in indices)
        mode = "full" if small else "directional"
    if mode == "full":
        _check_full(fn, inputs, indices, eps, atol, rtol)
    else:
        _check_directional(fn, inputs, indices, eps, atol, rtol, seed)
    return True
