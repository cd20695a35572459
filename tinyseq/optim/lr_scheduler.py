"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s names, equations and state.

Call ``scheduler.step()`` once after each ``optimizer.step()`` (``ReduceLROnPlateau.step(metric)``
once per validation). Construction stores ``initial_lr`` in every parameter group (a resumed
scheduler, ``last_epoch >= 0``, needs it there already) and performs the first step, to
``last_epoch = 0``. As PyTorch's, the schedules are chainable: a step scales each group's
*current* ``lr`` (only ``LambdaLR`` and ``OneCycleLR`` compute it from ``initial_lr``), so an lr
set by hand or by a second scheduler carries on. The docstrings give the closed forms.

``state_dict()`` holds everything but the optimizer, as plain values that ``ts.save`` stores
without pickle; its keys are PyTorch's, except that torch's two transient flags
(``_is_initial``, ``_get_lr_called_within_step``) are not saved (a torch dict holding them still
loads), ``LambdaLR`` saves no ``lr_lambdas`` and ``MultiStepLR``'s ``milestones`` is a sorted
list (a milestone repeated k times multiplies by ``gamma ** k``) rather than a ``Counter``.
"""

import copy
import math
import numbers

from .._checks import check_int
from . import Optimizer, _check_entries, _check_number, _scalar

_TORCH_FLAGS = ("_is_initial", "_get_lr_called_within_step")


def _check_optimizer(owner, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{owner}: expected an Optimizer, got {type(optimizer).__name__}")


def _check_per_group(owner, name, values, n):
    """Raise unless ``values`` is a list of ``n`` numbers >= 0 (one per parameter group)."""
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{owner}: expected {name} to be a list of {n} numbers (one per parameter "
                         f"group), got {values!r}")
    for i, value in enumerate(values):
        _check_number(owner, f"{name}[{i}]", value)


def _per_group(owner, name, value, optimizer):
    """``value`` for every parameter group: a list or tuple of one number each, or one number."""
    n = len(optimizer.param_groups)
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    _check_per_group(owner, name, values, n)
    return values


# ---------------------------------------------------------------- base


class LRScheduler:
    """Base class: each ``step()`` advances ``last_epoch`` and writes ``get_lr()`` into the groups.

    Subclasses implement ``get_lr()`` (the lrs for ``last_epoch``, from the groups' current
    ``lr`` or from ``base_lrs``; ``self._is_initial`` is True during the step construction
    makes) and ``_check_settings(owner, settings)``, which validates their own arguments given
    as a dict, both at construction and in ``load_state_dict``.
    """

    _not_saved = ("optimizer", "_is_initial")

    def __init__(self, optimizer, last_epoch=-1):
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        check_int(owner, "last_epoch", last_epoch, -1)
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"{owner}: param_groups[{i}] has no 'initial_lr' to resume from "
                               f"(load the optimizer's state dict first, or pass last_epoch=-1)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def _check_settings(self, owner, settings):
        pass

    def _keep_settings(self, **settings):
        """Check a subclass's own arguments (``_check_settings``), then keep them as attributes."""
        self._check_settings(type(self).__name__, settings)
        vars(self).update(settings)

    def _group_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_lr(self):
        """The learning rates for ``last_epoch``, one per parameter group (``step`` calls it)."""
        raise NotImplementedError

    def step(self):
        """Advance one epoch and write the new lrs into the optimizer's groups."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._group_lrs()

    def get_last_lr(self):
        """The lrs the last ``step()`` set (a new list)."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimizer (and the lambdas), as plain values (copies)."""
        return copy.deepcopy({k: v for k, v in vars(self).items() if k not in self._not_saved})

    def load_state_dict(self, state_dict):
        """Restore from this kind of scheduler's ``state_dict()`` (the optimizer restores its lrs).

        Everything is checked before anything changes: the dict must have exactly this
        scheduler's entries (torch's transient flags are also accepted, and ignored),
        ``last_epoch`` an int >= -1, the per-group lists (``base_lrs``, ``_last_lr``,
        ``min_lrs``) one number >= 0 per parameter group and the subclass's settings valid;
        otherwise a TypeError or ValueError says what was expected and the scheduler is left
        as it was. Values as ``ts.load`` returns them (0-d arrays for NumPy scalars) are
        accepted.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        _check_entries(owner, "the state dict", state_dict, self.state_dict().keys(),
                       optional=_TORCH_FLAGS, kind="scheduler")
        new = {k: _scalar(v) for k, v in state_dict.items() if k not in _TORCH_FLAGS}
        check_int(owner, "last_epoch", new["last_epoch"], -1)
        if "_step_count" in new:
            check_int(owner, "_step_count", new["_step_count"], 0)
        for name in ("base_lrs", "_last_lr", "min_lrs"):
            if name in new:
                _check_per_group(owner, name, new[name], len(self.optimizer.param_groups))
        self._check_settings(owner, new)
        vars(self).update(copy.deepcopy(new))


# ---------------------------------------------------------------- schedules


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)``, with one function or one per parameter group.

    The functions are not saved in ``state_dict()``: pass the same ones when resuming.
    """

    _not_saved = LRScheduler._not_saved + ("lr_lambdas",)

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        n = len(optimizer.param_groups)
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(lambdas) != n:
            raise ValueError(f"{owner}: expected {n} lr_lambdas (one per parameter group), got {len(lambdas)}")
        for i, fn in enumerate(lambdas):
            if not callable(fn):
                raise TypeError(f"{owner}: lr_lambda[{i}] must be callable, got {type(fn).__name__}")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * fn(self.last_epoch) for fn, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """Decay every ``step_size`` epochs: ``lr = initial_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self._keep_settings(step_size=step_size, gamma=gamma)
        super().__init__(optimizer, last_epoch)

    def _check_settings(self, owner, settings):
        check_int(owner, "step_size", settings["step_size"], 1)
        _check_number(owner, "gamma", settings["gamma"])

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]


class MultiStepLR(LRScheduler):
    """Decay at each milestone: ``lr = initial_lr * gamma ** (milestones passed by epoch)``.

    A milestone given k times multiplies by ``gamma ** k`` when it is reached.
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        owner = type(self).__name__
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{owner}: milestones must be an iterable of ints, got {type(milestones).__name__}")
        self._keep_settings(milestones=list(milestones), gamma=gamma)
        self.milestones.sort()
        super().__init__(optimizer, last_epoch)

    def _check_settings(self, owner, settings):
        if not isinstance(settings["milestones"], list):
            raise ValueError(f"{owner}: milestones must be a list of ints, got {settings['milestones']!r}")
        for i, milestone in enumerate(settings["milestones"]):
            check_int(owner, f"milestones[{i}]", milestone, 0)
        _check_number(owner, "gamma", settings["gamma"])

    def get_lr(self):
        hits = self.milestones.count(self.last_epoch)
        if not hits:
            return self._group_lrs()
        return [lr * self.gamma ** hits for lr in self._group_lrs()]


class ExponentialLR(LRScheduler):
    """Decay every epoch: ``lr = initial_lr * gamma ** epoch``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self._keep_settings(gamma=gamma)
        super().__init__(optimizer, last_epoch)

    def _check_settings(self, owner, settings):
        _check_number(owner, "gamma", settings["gamma"])

    def get_lr(self):
        if self._is_initial:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing: ``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Past ``T_max`` the cosine continues, so the lr rises again (as PyTorch's). Each step
    applies PyTorch's recursive form of this closed form (they agree to rounding).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self._keep_settings(T_max=T_max, eta_min=eta_min)
        super().__init__(optimizer, last_epoch)

    def _check_settings(self, owner, settings):
        check_int(owner, "T_max", settings["T_max"], 1)
        _check_number(owner, "eta_min", settings["eta_min"])

    def get_lr(self):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._group_lrs()
        if (t - 1 - T) % (2 * T) == 0:  # leaving the minimum: the ratio below would be 0 / 0
            return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base_lr in zip(self._group_lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - eta_min) + eta_min for lr in self._group_lrs()]


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up from ``max_lr / div_factor`` to ``max_lr``, then anneal down.

    Over ``total_steps`` (or ``epochs * steps_per_epoch``) steps: the lr anneals from
    ``initial_lr = max_lr / div_factor`` to ``max_lr`` during the first ``pct_start`` of the
    steps, then to ``min_lr = initial_lr / final_div_factor``; with ``three_phase`` it goes back
    to ``initial_lr`` over a second ``pct_start`` first. ``anneal_strategy`` is ``"cos"``
    (``end + (start - end) * (1 + cos(pi * pct)) / 2``) or ``"linear"``. With
    ``cycle_momentum`` the momentum (SGD's ``momentum``, Adam's ``betas[0]``) moves the
    opposite way between ``max_momentum`` and ``base_momentum``. ``max_lr`` and the momenta are
    one number or one per group; the groups keep ``initial_lr``, ``max_lr``, ``min_lr``,
    ``max_momentum`` and ``base_momentum``. Stepping past ``total_steps`` is a ValueError.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start=0.3, anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85,
                 max_momentum=0.95, div_factor=25.0, final_div_factor=1e4, three_phase=False,
                 last_epoch=-1):
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError(f"{owner}: give total_steps, or epochs and steps_per_epoch")
            total_steps = check_int(owner, "epochs", epochs, 1) * check_int(owner, "steps_per_epoch", steps_per_epoch, 1)
        total_steps = check_int(owner, "total_steps", total_steps, 1)
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{owner}: pct_start must be a float in [0, 1], got {pct_start!r}")
        for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{owner}: {name} must be a number > 0, got {value!r}")
        max_lrs = _per_group(owner, "max_lr", max_lr, optimizer)
        if cycle_momentum and not {"momentum", "betas"} & set(optimizer.defaults):
            raise ValueError(f"{owner}: cycle_momentum needs an optimizer with momentum or betas, "
                             f"{type(optimizer).__name__} has neither (pass cycle_momentum=False)")
        phases = [("initial_lr", "max_lr", "max_momentum", "base_momentum"),
                  ("max_lr", "min_lr", "base_momentum", "max_momentum")]
        ends = [float(pct_start * total_steps) - 1, total_steps - 1]
        if three_phase:
            phases[1:] = [("max_lr", "initial_lr", "base_momentum", "max_momentum"),
                          ("initial_lr", "min_lr", "max_momentum", "max_momentum")]
            ends[1:] = [float(2 * pct_start * total_steps) - 2, total_steps - 1]
        self._keep_settings(
            total_steps=total_steps,
            _schedule_phases=[dict(zip(("end_step", "start_lr", "end_lr", "start_momentum", "end_momentum"),
                                       (end, *names))) for end, names in zip(ends, phases)],
            _anneal_func_type=anneal_strategy,
            cycle_momentum=cycle_momentum,
        )
        if last_epoch == -1:
            for lr, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        if cycle_momentum:
            self.use_beta1 = "betas" in optimizer.defaults
            momenta = zip(_per_group(owner, "max_momentum", max_momentum, optimizer),
                          _per_group(owner, "base_momentum", base_momentum, optimizer), optimizer.param_groups)
            if last_epoch == -1:
                for high, low, group in momenta:
                    self._set_momentum(group, high)
                    group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer, last_epoch)

    def _check_settings(self, owner, settings):
        check_int(owner, "total_steps", settings["total_steps"], 1)
        if settings["_anneal_func_type"] not in ("cos", "linear"):
            raise ValueError(f"{owner}: anneal_strategy must be 'cos' or 'linear', got {settings['_anneal_func_type']!r}")
        if not isinstance(settings["cycle_momentum"], bool):
            raise ValueError(f"{owner}: cycle_momentum must be a bool, got {settings['cycle_momentum']!r}")
        phases = settings["_schedule_phases"]
        if not (isinstance(phases, list) and phases and all(isinstance(p, dict) and len(p) == 5 for p in phases)):
            raise ValueError(f"{owner}: expected _schedule_phases to be a list of phase dicts, got {phases!r}")

    def _set_momentum(self, group, momentum):
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _anneal(self, start, end, pct):
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR.step: stepped {step} times, past total_steps={self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                if step <= phase["end_step"] or i == len(self._schedule_phases) - 1:
                    pct = (step - start) / (phase["end_step"] - start)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[phase["start_momentum"]],
                                                               group[phase["end_momentum"]], pct))
                    break
                start = phase["end_step"]
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lrs by ``factor`` when a metric has stopped improving.

    ``step(metric)`` after each validation: a metric better than ``best`` (``mode="min"``:
    lower; ``"max"``: higher) by more than ``threshold`` (``threshold_mode="rel"``: relative to
    ``best``; ``"abs"``: absolute) becomes the new best. After more than ``patience`` epochs
    without one, each group's lr becomes ``max(lr * factor, min_lr)`` (unchanged if that moves
    it by ``eps`` or less), then ``cooldown`` epochs pass in which bad epochs are not counted.
    ``min_lr`` is one number or one per group.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        owner = type(self).__name__
        _check_optimizer(owner, optimizer)
        self.optimizer = optimizer
        self.factor = factor
        self.default_min_lr = None if isinstance(min_lr, (list, tuple)) else min_lr
        self.min_lrs = _per_group(owner, "min_lr", min_lr, optimizer)
        self.patience, self.cooldown, self.eps = patience, cooldown, eps
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self._check_settings(owner, vars(self))
        self._set_mode_worse()
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _check_settings(self, owner, settings):
        _check_number(owner, "factor", settings["factor"], 0, 1, high_open=True)
        for name in ("patience", "cooldown"):
            check_int(owner, name, settings[name], 0)
        for name in ("threshold", "eps"):
            _check_number(owner, name, settings[name])
        if settings["default_min_lr"] is not None:
            _check_number(owner, "min_lr", settings["default_min_lr"])
        for name, allowed in (("mode", ("min", "max")), ("threshold_mode", ("rel", "abs"))):
            if settings[name] not in allowed:
                raise ValueError(f"{owner}: {name} must be {allowed[0]!r} or {allowed[1]!r}, got {settings[name]!r}")
        for name in ("num_bad_epochs", "cooldown_counter"):
            if name in settings:
                check_int(owner, name, settings[name], 0)
        if "best" in settings and not isinstance(settings["best"], numbers.Real):
            raise ValueError(f"{owner}: best must be a number, got {settings['best']!r}")

    def _set_mode_worse(self):
        self.mode_worse = math.inf if self.mode == "min" else -math.inf

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._set_mode_worse()

    def _is_better(self, value):
        if self.threshold_mode == "rel":
            scale = 1.0 - self.threshold if self.mode == "min" else 1.0 + self.threshold
            bound = self.best * scale
        else:
            bound = self.best - self.threshold if self.mode == "min" else self.best + self.threshold
        return value < bound if self.mode == "min" else value > bound

    @property
    def in_cooldown(self):
        """Whether bad epochs are being ignored after a reduction."""
        return self.cooldown_counter > 0

    def step(self, metrics):
        """Record one epoch's metric (a number or a one-element tensor); reduce the lrs if due."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise TypeError(f"ReduceLROnPlateau.step: expected a number as the metric, got "
                            f"{type(metrics).__name__}") from None
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau.step: the optimizer has {len(groups)} parameter groups, "
                                   f"min_lrs has {len(self.min_lrs)}; set min_lrs to one per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new
