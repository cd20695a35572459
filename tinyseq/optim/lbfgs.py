"""L-BFGS: PyTorch's ``optim.LBFGS`` (its algorithm, defaults, stopping rules and strong-Wolfe
line search), over NumPy.

Full-batch quasi-Newton: ``step(closure)`` runs up to ``max_iter`` iterations, each calling
``closure()`` (which zeroes the gradients, computes the loss, calls ``backward()`` and returns
the loss) once, or several times inside the line search. The parameters are handled as one
flat vector; the curvature pairs (s, y) of the last ``history_size`` iterations give the
direction by the two-loop recursion.
"""

import numpy as np

from .._checks import check_int
from ..tensor import enable_grad, mark_changed
from . import Optimizer, _check_entries, _check_number, _scalar

#: what a parameter group's state holds after a step (``al`` once a second iteration ran)
_STATE = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
          "prev_loss")


class LBFGS(Optimizer):
    """L-BFGS with PyTorch's arguments and defaults: ``lr`` (the step length, 1), ``max_iter``
    (iterations per ``step``, 20), ``max_eval`` (closure calls per ``step``, default
    ``max_iter * 5 // 4``; the line search may make one more, as PyTorch's), ``tolerance_grad`` (stop when max |g| is at most this, 1e-7),
    ``tolerance_change`` (stop when the step or the loss changes by less, 1e-9),
    ``history_size`` (curvature pairs kept, 100), ``line_search_fn`` (None: step ``lr`` along
    the direction, the first iteration scaled by min(1, 1 / sum |g|); "strong_wolfe": a line
    search with cubic interpolation, c1 = 1e-4, c2 = 0.9).

    One parameter group only (as PyTorch). ``step(closure)`` needs the closure and returns its
    first loss. The state (``state[0]``: the direction, step, history and counters) is in
    ``state_dict()``, so a run resumes where it stopped.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = check_int("LBFGS", "max_iter", max_iter, 1) * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)

    def add_param_group(self, group):
        if self.param_groups:
            raise ValueError("LBFGS: takes one parameter group (no per-parameter options), as PyTorch's")
        super().add_param_group(group)

    def _check_group(self, group):
        _check_number("LBFGS", "lr", group["lr"])
        for name in ("max_iter", "max_eval", "history_size"):
            check_int("LBFGS", name, group[name], 1)
        for name in ("tolerance_grad", "tolerance_change"):
            _check_number("LBFGS", name, group[name])
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {group['line_search_fn']!r}")

    # ------------------------------------------------------------ the parameters as one vector

    def _params(self):
        return self.param_groups[0]["params"]

    def _flat_grad(self):
        return np.concatenate([np.zeros(p.data.size, p.dtype) if p.grad is None else p.grad.data.ravel()
                               for p in self._params()])

    def _move(self, t, d):
        """Every parameter += t * its part of d."""
        offset = 0
        for p in self._params():
            p.data += t * d[offset:offset + p.data.size].reshape(p.shape)
            mark_changed(p.data, "LBFGS.step")
            offset += p.data.size

    def _evaluate(self, closure):
        """(loss as a float, the flat gradient) at the parameters as they are."""
        with enable_grad():
            loss = float(_scalar_loss(closure()))
        return loss, self._flat_grad()

    def _at(self, closure, x, t, d):
        """The loss and gradient at x + t d; the parameters are left at x."""
        self._move(t, d)
        loss, grad = self._evaluate(closure)
        for p, saved in zip(self._params(), x):
            p.data[...] = saved
            mark_changed(p.data, "LBFGS.step")
        return loss, grad

    # ------------------------------------------------------------ the step

    def step(self, closure=None):
        """Up to ``max_iter`` iterations; returns the loss ``closure()`` gave first."""
        if closure is None:
            raise TypeError("LBFGS.step: needs a closure that zeroes the gradients, computes the loss, "
                            "calls backward() and returns the loss, as PyTorch's LBFGS")
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        state = self.state.setdefault(0, {})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        with enable_grad():
            first = closure()
        loss = float(_scalar_loss(first))
        evals = 1
        state["func_evals"] += 1
        grad = self._flat_grad()
        if np.abs(grad).max() <= tolerance_grad:
            return first
        d, t, prev_grad, prev_loss = state.get("d"), state.get("t"), state.get("prev_flat_grad"), state.get("prev_loss")
        dirs, steps, ro, h_diag = state.get("old_dirs"), state.get("old_stps"), state.get("ro"), state.get("H_diag")
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d, dirs, steps, ro, h_diag = -grad, [], [], [], 1
            else:
                y, s = grad - prev_grad, d * t
                ys = float(y @ s)
                if ys > 1e-10:  # a pair of positive curvature joins the history
                    if len(dirs) == group["history_size"]:
                        dirs.pop(0), steps.pop(0), ro.pop(0)
                    dirs.append(y), steps.append(s), ro.append(1.0 / ys)
                    h_diag = ys / float(y @ y)
                if "al" not in state:
                    state["al"] = [None] * group["history_size"]
                d = _two_loop(grad, dirs, steps, ro, h_diag, state["al"])
            prev_grad = grad.copy()
            prev_loss = loss
            t = min(1.0, 1.0 / float(np.abs(grad).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(grad @ d)
            if gtd > -tolerance_change:  # not a descent direction
                break
            if group["line_search_fn"] == "strong_wolfe":
                x = [p.data.copy() for p in self._params()]
                loss, grad, t, used = _strong_wolfe(lambda step: self._at(closure, x, step, d), t, d, loss, grad, gtd,
                                                    max_ls=max_eval - evals)
                self._move(t, d)
                done = np.abs(grad).max() <= tolerance_grad
            else:
                self._move(t, d)
                used, done = 0, False
                if n_iter != max_iter:  # the last iteration's loss is not needed
                    loss, grad = self._evaluate(closure)
                    used, done = 1, np.abs(grad).max() <= tolerance_grad
            evals += used
            state["func_evals"] += used
            if (n_iter == max_iter or evals >= max_eval or done or np.abs(d * t).max() <= tolerance_change
                    or abs(loss - prev_loss) < tolerance_change):
                break
        state.update(d=d, t=t, old_dirs=dirs, old_stps=steps, ro=ro, H_diag=h_diag, prev_flat_grad=prev_grad,
                     prev_loss=prev_loss)
        return first

    # ------------------------------------------------------------ state dict

    def state_dict(self):
        """As the other optimizers', the history's lists copied too."""
        saved = super().state_dict()
        saved["state"] = {index: {k: _copy(v) for k, v in s.items()} for index, s in self.state.items()}
        return saved

    def load_state_dict(self, state_dict):
        """Load ``state_dict()``'s dict: the group as the other optimizers check it, the state as
        this one keeps it (flat vectors of the parameters' total size); nothing changes unless
        all of it is valid."""
        owner = "LBFGS.load_state_dict"
        _check_entries(owner, "the state dict", state_dict, ("state", "param_groups"))
        saved = state_dict["state"]
        if not isinstance(saved, dict):
            raise TypeError(f"{owner}: expected 'state' to be a dict, got {type(saved).__name__}")
        if set(map(str, saved)) - {"0"}:
            raise ValueError(f"{owner}: LBFGS keeps its state under parameter 0, got entries {sorted(map(str, saved))}")
        entry = _checked_state(owner, next(iter(saved.values())), sum(p.data.size for p in self._params())) if saved else None
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        self.state = {} if entry is None else {0: entry}


def _scalar_loss(loss):
    """The closure's loss as a 0-d array (a Tensor's data, or a number)."""
    if loss is None:
        raise TypeError("LBFGS.step: the closure returned None; it must return the loss")
    data = np.asarray(getattr(loss, "data", loss))
    if data.size != 1:
        raise ValueError(f"LBFGS.step: the closure must return the loss, one number; got shape {data.shape}")
    return data.reshape(())


def _two_loop(grad, dirs, steps, ro, h_diag, al):
    """The L-BFGS direction -H g from the history (y in ``dirs``, s in ``steps``, 1 / y.s in ``ro``)."""
    q = -grad
    for i in reversed(range(len(dirs))):
        al[i] = float(steps[i] @ q) * ro[i]
        q -= al[i] * dirs[i]
    r = q * h_diag
    for i in range(len(dirs)):
        be = float(dirs[i] @ r) * ro[i]
        r += (al[i] - be) * steps[i]
    return r


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """The minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, g2), kept in
    ``bounds`` (default: between x1 and x2); their middle if the cubic has none."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    x1, f1, g1, x2, f2, g2 = (np.float64(v) for v in (x1, f1, g1, x2, f2, g2))
    with np.errstate(all="ignore"):  # as PyTorch's tensors: a loss linear along d divides by 0 (to +-inf)
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        d2_square = d1 * d1 - g1 * g2
        if not d2_square >= 0:  # no minimum, or a nan (an inf loss): the middle
            return (low + high) / 2.0
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            at = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            at = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return float(min(max(at, low), high))


def _strong_wolfe(at, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """A step length t along d meeting the strong Wolfe conditions (sufficient decrease c1,
    curvature c2), by bracketing then zooming with cubic interpolation; ``at(t)`` gives the
    loss and gradient at x + t d. Returns (loss, gradient, t, evaluations)."""
    d_norm = np.abs(d).max()
    f_new, g_new = at(t)
    evals, gtd_new = 1, float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done, ls_iter = False, 0
    bracket = None
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, done = [[t, f_new, g_new, gtd_new]], True
            break
        if gtd_new >= 0:
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        step = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = step
        f_new, g_new = at(t)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
    if ls_iter == max_ls:
        bracket = [[0, f, g, None], [t, f_new, g_new, None]]
    low, high = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
    insufficient = False
    while not done and ls_iter < max_ls:  # zoom: shrink the bracket around a point meeting both conditions
        (a, f_a, _, gtd_a), (b, f_b, _, gtd_b) = bracket
        if abs(b - a) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(a, f_a, gtd_a, b, f_b, gtd_b)
        top, bottom = max(a, b), min(a, b)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:  # too near an end: move away, unless the last one was fine
            if insufficient or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, g_new = at(t)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
        if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
            bracket[high] = [t, f_new, g_new, gtd_new]
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = [t, f_new, g_new, gtd_new]
    t, f_new, g_new, _ = bracket[low]
    return f_new, g_new, t, evals


def _copy(value):
    return [_copy(v) for v in value] if isinstance(value, list) else value.copy() if isinstance(value, np.ndarray) else value


def _checked_state(owner, entry, size):
    """LBFGS's saved state, checked: counters, flat vectors of ``size``, history lists."""
    _check_entries(owner, "the state of parameter 0", entry, _STATE[:2], optional=(*_STATE[2:], "al"))
    keys = set(entry)
    counters_only = not keys & set(_STATE[2:])
    if not counters_only and not set(_STATE[2:]) <= keys:
        raise ValueError(f"{owner}: the state holds {sorted(keys)}, expected all of {list(_STATE)} or only the counters")
    if counters_only and _scalar(entry["n_iter"]) != 0:
        raise ValueError(f"{owner}: a state of only the counters must have n_iter 0 (no iteration ran), got "
                         f"n_iter={entry['n_iter']!r}; a state after iterations holds all of {list(_STATE)}")
    out = {}
    for name, value in entry.items():
        value = _scalar(value)
        if name in ("func_evals", "n_iter"):
            value = check_int(owner, f"state {name!r}", value, 0)
        elif name in ("d", "prev_flat_grad"):
            value = _vector(owner, name, value, size)
        elif name in ("old_dirs", "old_stps"):
            if not isinstance(value, list):
                raise ValueError(f"{owner}: state {name!r} must be a list of vectors, got a {type(value).__name__}")
            value = [_vector(owner, name, v, size) for v in value]
        elif name in ("ro", "al"):
            if not isinstance(value, list) or not all(v is None or _is_number(v) for v in value):
                raise ValueError(f"{owner}: state {name!r} must be a list of numbers, got {value!r:.80}")
            value = [None if v is None else float(v) for v in value]
        elif not _is_number(value):
            raise ValueError(f"{owner}: state {name!r} must be a number, got {value!r:.80}")
        out[name] = value
    if "d" in out and not len(out["old_dirs"]) == len(out["old_stps"]) == len(out["ro"]):
        raise ValueError(f"{owner}: the history lists differ in length: old_dirs {len(out['old_dirs'])}, "
                         f"old_stps {len(out['old_stps'])}, ro {len(out['ro'])}")
    return out


def _vector(owner, name, value, size):
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.shape != (size,):
        got = f"shape {value.shape} and dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        raise ValueError(f"{owner}: state {name!r} must be a float vector of the parameters' size ({size},), got {got}")
    return value.copy()


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
