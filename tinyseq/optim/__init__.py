"""Optimizers with PyTorch's names, defaults and equations; schedules in ``optim.lr_scheduler``.

An optimizer holds ``param_groups`` (a list of dicts: ``"params"`` plus hyperparameters) and
``state`` (one dict per parameter, keyed by the parameter's position counted across groups).
``step()`` reads each parameter's ``.grad`` and updates ``.data`` in place (marked changed for
backward's version check, as PyTorch's optimizers bump it); parameters whose
grad is None are skipped. ``state_dict()`` holds only dicts, lists, numbers, strings, bools,
None and NumPy arrays, so it can be saved without pickle.

In the equations below ``g`` is the gradient (negated when ``maximize=True``), ``p`` the
parameter, ``t`` the step count starting at 1, and ``lr`` the group's learning rate.
"""

import math
import numbers

import numpy as np

from .._checks import check_int
from ..tensor import Tensor, mark_changed

# ---------------------------------------------------------------- checks


def _check_number(owner, name, value, low=0.0, high=math.inf, high_open=False):
    """Raise a ValueError unless ``value`` is a real number in [low, high] (or [low, high))."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and low <= value and (value < high if high_open else value <= high)
    if not ok:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{owner}: invalid {name} {value!r}, expected a number in {interval}")


def _check_betas(owner, betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{owner}: invalid betas {betas!r}, expected a pair (beta1, beta2)")
    for i, beta in enumerate(betas):
        _check_number(owner, f"betas[{i}]", beta, 0.0, 1.0, high_open=True)


def _check_param(owner, p):
    if not isinstance(p, Tensor):
        raise TypeError(f"{owner}: expected parameters to be Tensors, got {type(p).__name__}")
    if p.dtype.kind != "f":
        raise TypeError(f"{owner}: can only optimize floating-point parameters, got dtype {p.dtype}")
    if not p.is_leaf:
        raise ValueError(f"{owner}: can only optimize leaf tensors, got one made by an op")


def _check_entries(owner, what, mapping, expected, optional=(), kind="optimizer"):
    """Raise unless ``mapping`` is a dict whose keys are ``expected`` plus some of ``optional``.

    A non-dict raises a TypeError; wrong keys a ValueError listing the keys that came (less the
    optional ones) and the keys expected.
    """
    if not isinstance(mapping, dict):
        raise TypeError(f"{owner}: expected {what} to be a dict, got {type(mapping).__name__}")
    keys, expected = set(mapping), set(expected)
    optional = set(optional) - expected
    if not expected <= keys <= expected | optional:
        raise ValueError(
            f"{owner}: {what} has entries {sorted(keys - optional, key=str)}, expected "
            f"{sorted(expected)} (was this state dict saved by another {kind}?)"
        )


def _plain(value):
    """Tuples become lists, so a state dict holds only JSON-like values and arrays."""
    return list(value) if isinstance(value, tuple) else value


def _scalar(value):
    """A 0-d array as the Python number it holds (lists element-wise), other values unchanged.

    ``ts.load`` returns a saved NumPy scalar (an lr computed with NumPy, say) as a 0-d array.
    """
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


# ---------------------------------------------------------------- Optimizer base

# What lr_scheduler keeps in a parameter group (OneCycleLR all five, the others initial_lr).
_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


class Optimizer:
    """Base class: keeps parameter groups and per-parameter state; subclasses define ``step``.

    ``params`` is an iterable of tensors, or a list of dicts ``{"params": [...], "lr": ...}``
    whose missing hyperparameters come from ``defaults``. Subclasses implement
    ``_check_group(group)`` (validate hyperparameters), ``_state_names(group)`` (the entries
    ``_update`` keeps in a parameter's state under that group's settings; ``load_state_dict``
    checks saved states against it) and ``_update(p, grad, state, group)`` (one parameter's
    update, in place).
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        if isinstance(params, (Tensor, dict)):
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Tensors or of dicts, "
                f"got a single {type(params).__name__}"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{type(self).__name__}: params should be an ordered iterable, not a set")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in group.items() if k != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, group):
        """Append a group ``{"params": [...], **hyperparameters}`` (defaults fill the gaps)."""
        owner = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{owner}: a parameter group must be a dict with a 'params' entry")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            _check_param(owner, p)
            if id(p) in seen:
                raise ValueError(f"{owner}: a parameter appears more than once in the parameter groups")
            seen.add(id(p))
        new = {**self.defaults, **group, "params": params}
        self._check_group(new)
        self.param_groups.append(new)

    def _check_group(self, group):
        pass

    def _state_names(self, group):
        raise NotImplementedError

    def _indexed_params(self):
        """(position, parameter, group) for every parameter, in order across groups."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, p, group
                index += 1

    def zero_grad(self, set_to_none=True):
        """Set every parameter's ``.grad`` to None (or to zeros, in place, if not set_to_none)."""
        for _, p, _ in self._indexed_params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a grad; returns ``closure()`` if one is given."""
        loss = None if closure is None else closure()
        for index, p, group in self._indexed_params():
            if p.grad is None:
                continue
            grad = p.grad.data
            if grad.shape != p.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: grad of shape {grad.shape} "
                    f"for a parameter of shape {p.shape}"
                )
            if group.get("maximize", False):
                grad = -grad
            self._update(p, grad, self.state.setdefault(index, {}), group)
            mark_changed(p.data, f"{type(self).__name__}.step")
        return loss

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    # ------------------------------------------------------------ state dict

    def state_dict(self):
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}`` (copies)."""
        groups, start = [], 0
        for group in self.param_groups:
            saved = {k: _plain(v) for k, v in group.items() if k != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        state = {
            index: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for index, s in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load a dict from ``state_dict()`` of this kind of optimizer (arrays are copied).

        Everything is checked before anything changes, so a bad dict raises a TypeError or
        ValueError (naming what was expected and what came) and leaves this optimizer as it
        was. The groups and their parameter counts must match; each group must hold this
        optimizer's hyperparameters (``self.defaults``' keys and ``params``; also allowed:
        the keys LR schedulers add, ``_SCHEDULER_KEYS``, and extra keys this optimizer's own
        group has) with valid values; each parameter's state must be empty or hold exactly the
        entries ``_state_names`` gives for its group, with ``step`` an int >= 0 and arrays of
        the parameter's shape. Values as ``ts.load`` returns them (lists for tuples, 0-d
        arrays for NumPy scalars, str keys) are accepted.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        _check_entries(owner, "the state dict", state_dict, ("state", "param_groups"))
        saved_groups, saved_states = state_dict["param_groups"], state_dict["state"]
        for key, kind in (("param_groups", list), ("state", dict)):
            if not isinstance(state_dict[key], kind):
                raise TypeError(f"{owner}: expected {key!r} to be a {kind.__name__}, "
                                f"got {type(state_dict[key]).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{owner}: the dict has {len(saved_groups)} parameter groups, "
                f"this optimizer has {len(self.param_groups)}"
            )
        index_map = {}  # str(saved position) -> (our position, parameter, its new group)
        ours = iter(self._indexed_params())
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            _check_entries(owner, f"param group {i}", saved, [*self.defaults, "params"],
                           optional=[*_SCHEDULER_KEYS, *group])
            if not isinstance(saved["params"], list):
                raise TypeError(f"{owner}: expected the params of param group {i} to be a list, "
                                f"got {type(saved['params']).__name__}")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{owner}: group {i} has {len(saved['params'])} parameters in the dict, "
                    f"{len(group['params'])} in this optimizer"
                )
            new = {}
            for k, v in saved.items():
                v = _scalar(v)
                new[k] = tuple(v) if isinstance(group.get(k), tuple) and isinstance(v, list) else v
            new["params"] = group["params"]
            self._check_group(new)
            new_groups.append(new)
            for saved_index in saved["params"]:
                index, p, _ = next(ours)
                index_map[str(saved_index)] = (index, p, new)
        new_state = {}
        for saved_index, saved_state in saved_states.items():
            if str(saved_index) not in index_map:
                raise ValueError(
                    f"{owner}: state for parameter {saved_index!r}, which no group holds")
            index, p, group = index_map[str(saved_index)]
            names = self._state_names(group)
            if isinstance(saved_state, dict) and not saved_state:
                names = ()  # a parameter not stepped yet: its first step creates the state
            _check_entries(owner, f"the state of parameter {saved_index}", saved_state, names)
            entry = {}
            for name, value in saved_state.items():
                is_array = isinstance(value, np.ndarray)
                if name == "step":
                    value = _scalar(value)
                    check_int(owner, f"state[{saved_index}]['step']", value, 0)
                    value = int(value)
                elif is_array and value.dtype.kind == "f" and value.shape == p.shape:
                    value = value.astype(p.dtype, copy=True)
                else:
                    got = (f"an array of shape {value.shape} and dtype {value.dtype}"
                           if is_array else f"a {type(value).__name__}")
                    raise ValueError(
                        f"{owner}: state {name!r} of parameter {saved_index} is {got}, "
                        f"expected a floating-point array of shape {p.shape}"
                    )
                entry[name] = value
            new_state[index] = entry
        self.param_groups = new_groups
        self.state = new_state


# ---------------------------------------------------------------- optimizers


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    ``g += weight_decay * p``; with momentum ``b = g`` at the first step, afterwards
    ``b = momentum * b + (1 - dampening) * g``, and ``g = g + momentum * b`` (nesterov) or
    ``g = b``; finally ``p -= lr * g``.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            _check_number("SGD", name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0")

    def _state_names(self, group):
        return {"momentum_buffer"} if group["momentum"] != 0 else set()

    def _update(self, p, grad, state, group):
        momentum = group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # NOTE: np.array, not grad.astype: for a 0-d parameter grad may be a NumPy
                # scalar, and a scalar buffer would not be updated in place below.
                buf = state["momentum_buffer"] = np.array(grad, dtype=p.dtype)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        p.data -= group["lr"] * grad


class RMSprop(Optimizer):
    """RMSprop: divide the gradient by a running root mean square of recent gradients.

    ``g += weight_decay * p``; ``v = alpha * v + (1 - alpha) * g**2``; centered:
    ``a = alpha * a + (1 - alpha) * g`` and ``v~ = v - a**2`` (else ``v~ = v``);
    ``d = g / (sqrt(v~) + eps)``; with momentum ``b = momentum * b + d`` and ``p -= lr * b``,
    otherwise ``p -= lr * d``.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "eps", "weight_decay", "momentum", "alpha"):
            _check_number("RMSprop", name, group[name])

    def _state_names(self, group):
        names = {"step", "square_avg"}
        if group["momentum"] > 0:
            names.add("momentum_buffer")
        if group["centered"]:
            names.add("grad_avg")
        return names

    def _update(self, p, grad, state, group):
        alpha = group["alpha"]
        if not state:
            state["step"] = 0
            state["square_avg"] = np.zeros_like(p.data)
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        v = state["square_avg"]
        v *= alpha
        v += (1 - alpha) * grad * grad
        if group["centered"]:
            a = state["grad_avg"]
            a *= alpha
            a += (1 - alpha) * grad
            denom = np.sqrt(v - a * a) + group["eps"]
        else:
            denom = np.sqrt(v) + group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += grad / denom
            p.data -= group["lr"] * buf
        else:
            p.data -= group["lr"] * (grad / denom)


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps shrink with the sum of squared gradients.

    ``g += weight_decay * p``; ``clr = lr / (1 + (t - 1) * lr_decay)``;
    ``s = s + g**2`` (``s`` starts at ``initial_accumulator_value``);
    ``p -= clr * g / (sqrt(s) + eps)``.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _check_number("Adagrad", name, group[name])

    def _state_names(self, group):
        return {"step", "sum"}

    def _update(self, p, grad, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * p.data
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        s = state["sum"]
        s += grad * grad
        p.data -= clr * (grad / (np.sqrt(s) + group["eps"]))


class Adam(Optimizer):
    """Adam, with L2 weight decay added to the gradient (see AdamW for the decoupled kind).

    ``g += weight_decay * p``; ``m = beta1 * m + (1 - beta1) * g``;
    ``v = beta2 * v + (1 - beta2) * g**2``; amsgrad: ``v_max = max(v_max, v)`` is used for
    ``v`` below; ``m^ = m / (1 - beta1**t)``, ``v^ = v / (1 - beta2**t)``;
    ``p -= lr * m^ / (sqrt(v^) + eps)``.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        owner = type(self).__name__
        for name in ("lr", "eps", "weight_decay"):
            _check_number(owner, name, group[name])
        _check_betas(owner, group["betas"])

    def _state_names(self, group):
        names = {"step", "exp_avg", "exp_avg_sq"}
        if group["amsgrad"]:
            names.add("max_exp_avg_sq")
        return names

    def _update(self, p, grad, state, group):
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        grad = grad.astype(p.dtype, copy=False)  # a grad set by hand in another dtype: cast
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        if weight_decay != 0:
            if self._decoupled:
                p.data *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # In place through one scratch array (a fresh temporary per operation took 1.6 ms
        # against 1.3 ms for the 0.9M parameters of benchmarks/train_speed.py's LSTM). It is
        #   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g
        #   p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
        # NOTE: as PyTorch, sqrt(v) / sqrt(1 - beta2**t) rather than sqrt(v / (1 - beta2**t)).
        tmp = np.multiply(grad, 1 - beta1, out=np.empty_like(m))
        m *= beta1
        m += tmp
        np.multiply(grad, 1 - beta2, out=tmp)
        tmp *= grad
        v *= beta2
        v += tmp
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        np.sqrt(v, out=tmp)
        tmp /= math.sqrt(1 - beta2**t)
        tmp += group["eps"]
        np.divide(m, tmp, out=tmp)
        tmp *= lr / (1 - beta1**t)
        p.data -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step.

    The gradient itself is not changed by the decay; otherwise the update is ``Adam``'s.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


# NOTE: imported last: lr_scheduler imports Optimizer and the checks above from this module.
from . import lr_scheduler  # noqa: E402
from .lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR  # noqa: E402,F401  (the old import paths)
from .lbfgs import LBFGS  # noqa: E402,F401
