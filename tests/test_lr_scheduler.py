"""tinyseq.optim.lr_scheduler: every schedule against torch's, step by step, through a checkpoint."""

import math

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import optim
from tinyseq.nn import Parameter
from tinyseq.optim import lr_scheduler

LRS = [0.1, 0.03, 0.5]  # three parameter groups
TORCH_FLAGS = {"_is_initial", "_get_lr_called_within_step"}


def lambdas():
    return [lambda e: 0.95 ** e, lambda e: 1 / (1 + e), lambda e: min(1.0, (e + 1) / 7)]


# label: (optimizer, its keyword arguments, scheduler factory taking (module, optimizer), steps)
SCHEDULES = {
    "LambdaLR": ("SGD", {}, lambda m, opt: m.LambdaLR(opt, lambdas()), 60),
    "LambdaLR one function": ("SGD", {}, lambda m, opt: m.LambdaLR(opt, lambda e: 0.9 ** (e // 4)), 40),
    "StepLR": ("SGD", {}, lambda m, opt: m.StepLR(opt, 7, gamma=0.5), 60),
    "MultiStepLR": ("SGD", {}, lambda m, opt: m.MultiStepLR(opt, [30, 5, 12, 12], gamma=0.3), 60),
    "ExponentialLR": ("SGD", {}, lambda m, opt: m.ExponentialLR(opt, 0.93), 60),
    "CosineAnnealingLR": ("SGD", {}, lambda m, opt: m.CosineAnnealingLR(opt, T_max=9, eta_min=0.002), 60),
    "CosineAnnealingLR eta_min=0": ("SGD", {}, lambda m, opt: m.CosineAnnealingLR(opt, 10), 45),
    "OneCycleLR cos SGD": ("SGD", {"momentum": 0.9},
                           lambda m, opt: m.OneCycleLR(opt, [1.0, 0.3, 2.0], total_steps=50), 50),
    "OneCycleLR linear Adam": ("Adam", {}, lambda m, opt: m.OneCycleLR(
        opt, 0.01, epochs=6, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear",
        base_momentum=[0.8, 0.85, 0.7], div_factor=10.0, final_div_factor=100.0), 42),
    "OneCycleLR three_phase": ("SGD", {"momentum": 0.9}, lambda m, opt: m.OneCycleLR(
        opt, 0.5, total_steps=45, pct_start=0.35, three_phase=True), 45),
    "OneCycleLR no momentum": ("RMSprop", {}, lambda m, opt: m.OneCycleLR(
        opt, 0.5, total_steps=30, cycle_momentum=False), 30),
    "ExponentialLR then MultiStepLR": ("SGD", {}, lambda m, opt: (
        m.ExponentialLR(opt, 0.97), m.MultiStepLR(opt, [10, 20], gamma=0.5)), 40),
}


def grouped(module, name="SGD", **kwargs):
    """A ``name`` optimizer over one parameter per lr in LRS, of tinyseq (module=None) or torch."""
    if module is None:
        params, opt_module = [Parameter(np.zeros(2)) for _ in LRS], optim
    else:
        params, opt_module = [module.nn.Parameter(module.zeros(2)) for _ in LRS], module.optim
    return getattr(opt_module, name)([{"params": [p], "lr": lr} for p, lr in zip(params, LRS)], **kwargs)


def schedulers(module):
    return lr_scheduler if module is None else module.optim.lr_scheduler


def make(module, label):
    """The optimizer and the tuple of schedulers of a SCHEDULES entry, of tinyseq or torch."""
    name, kwargs, factory, _ = SCHEDULES[label]
    opt = grouped(module, name, **kwargs)
    scheds = factory(schedulers(module), opt)
    return opt, scheds if isinstance(scheds, tuple) else (scheds,)


def resume(opt, scheds, remake, round_trip):
    """Fresh (optimizer, schedulers) from ``remake()`` loaded with these ones' state dicts,
    which go through ``round_trip`` (a checkpoint file, or nothing) first."""
    saved = round_trip({"optimizer": opt.state_dict(), "schedulers": [s.state_dict() for s in scheds]})
    opt, scheds = remake()
    opt.load_state_dict(saved["optimizer"])
    for s, sd in zip(scheds, saved["schedulers"]):
        s.load_state_dict(sd)
    return opt, scheds


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum", 0.0) for g in opt.param_groups]


def history(module, label, resume_at, round_trip):
    """The lrs (from every scheduler's get_last_lr) and momenta after each step; at step
    ``resume_at`` the optimizer and schedulers go through ``round_trip`` into fresh ones."""
    steps = SCHEDULES[label][3]
    opt, scheds = make(module, label)
    seen = []
    for step in range(steps + 1):
        if step == resume_at:
            opt, scheds = resume(opt, scheds, lambda: make(module, label), round_trip)
        if step:
            opt.step()
            for s in scheds:
                s.step()
        seen.append([s.get_last_lr() for s in scheds] + [momenta(opt)])
        assert seen[-1][-2] == [g["lr"] for g in opt.param_groups]
    return seen, scheds


def through_file(tmp_path):
    def round_trip(checkpoint):
        ts.save(checkpoint, tmp_path / "ckpt.npz")
        return ts.load(tmp_path / "ckpt.npz")
    return round_trip


@pytest.mark.torch
@pytest.mark.parametrize("label", SCHEDULES)
def test_schedules_match_torch_through_a_checkpoint(tmp_path, label):
    torch = pytest.importorskip("torch")
    steps = SCHEDULES[label][3]
    ours, our_scheds = history(None, label, steps // 2 - 1, through_file(tmp_path))
    theirs, their_scheds = history(torch, label, steps // 2 - 1, lambda sd: sd)
    np.testing.assert_allclose(np.array(ours, dtype=float), np.array(theirs, dtype=float),
                               rtol=1e-12, atol=1e-15, err_msg=label)
    assert len({tuple(lrs[0]) for lrs in ours}) > 3, "the schedule should change the lrs"
    for mine, torchs in zip(our_scheds, their_scheds):
        ours_sd, theirs_sd = mine.state_dict(), torchs.state_dict()
        theirs_sd = {k: v for k, v in theirs_sd.items() if k not in TORCH_FLAGS | {"lr_lambdas"}}
        assert ours_sd.keys() == theirs_sd.keys()
        if "milestones" in theirs_sd:
            assert ours_sd.pop("milestones") == sorted(theirs_sd.pop("milestones").elements())
        np.testing.assert_equal(ours_sd, theirs_sd)


@pytest.mark.parametrize("label", SCHEDULES)
def test_a_checkpoint_file_resumes_the_same_schedule(tmp_path, label):
    uninterrupted, _ = history(None, label, None, None)
    resumed, _ = history(None, label, 7, through_file(tmp_path))
    assert resumed == uninterrupted


@pytest.mark.torch
@pytest.mark.parametrize("label", ["StepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR cos SGD"])
def test_a_torch_state_dict_loads(label):
    torch = pytest.importorskip("torch")
    their_opt, (theirs,) = make(torch, label)
    for _ in range(5):
        their_opt.step()
        theirs.step()
    opt, (ours,) = make(None, label)
    ours.load_state_dict(theirs.state_dict())
    for group, their_group in zip(opt.param_groups, their_opt.param_groups):
        group["lr"] = their_group["lr"]
    for _ in range(5):
        their_opt.step()
        theirs.step()
        ours.step()
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)


# ---------------------------------------------------------------- ReduceLROnPlateau


def plateau_metrics():
    """Losses that improve, stall, creep by less than the threshold and jump."""
    rng = np.random.default_rng(3)
    trend = np.concatenate([np.linspace(1.0, 0.6, 10), np.full(15, 0.6), np.linspace(0.6, 0.5, 10),
                            np.full(25, 0.5), np.linspace(0.5, 0.2, 20)])
    return (trend + 0.003 * rng.standard_normal(trend.size)).tolist()


PLATEAUS = [
    dict(mode="min", threshold_mode="rel", threshold=0.01, patience=3),
    dict(mode="min", threshold_mode="abs", threshold=0.005, patience=2, cooldown=3),
    dict(mode="max", threshold_mode="rel", threshold=0.02, patience=4, factor=0.5, cooldown=1),
    dict(mode="max", threshold_mode="abs", threshold=0.0, patience=0, factor=0.7,
         min_lr=[0.01, 0.02, 0.2], eps=1e-3),
    dict(mode="min", threshold_mode="rel", threshold=1e-4, patience=1, factor=0.2, min_lr=0.004),
]


def plateau_history(module, kwargs, round_trip=None):
    """The lrs, best, bad epochs and cooldown after each metric; at metric 30 the optimizer and
    scheduler go through ``round_trip`` into fresh ones."""
    def remake():
        opt = grouped(module)
        return opt, (schedulers(module).ReduceLROnPlateau(opt, **kwargs),)

    opt, (sched,) = remake()
    seen = []
    for k, metric in enumerate(plateau_metrics()):
        if k == 30 and round_trip is not None:
            opt, (sched,) = resume(opt, (sched,), remake, round_trip)
        sched.step(metric if kwargs["mode"] == "min" else 2.0 - metric)  # "max": a positive, rising score
        seen.append(sched.get_last_lr() + [sched.best, sched.num_bad_epochs, sched.cooldown_counter])
    return seen, sched


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", PLATEAUS, ids=[f"{k['mode']}-{k['threshold_mode']}" for k in PLATEAUS])
def test_reduce_lr_on_plateau_matches_torch(tmp_path, kwargs):
    torch = pytest.importorskip("torch")
    ours, sched = plateau_history(None, kwargs, through_file(tmp_path))
    theirs, their_sched = plateau_history(torch, kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    lrs = np.array(ours)[:, :3]
    assert len(np.unique(lrs[:, 0])) >= 3, "the scripted metrics should reduce the lr at least twice"
    assert (lrs[-1] == sched.min_lrs).any() or "min_lr" not in kwargs, "some group should reach its min_lr"
    theirs_sd = their_sched.state_dict()
    assert sched.state_dict().keys() == theirs_sd.keys()
    np.testing.assert_equal(sched.state_dict(), theirs_sd)


def test_reduce_lr_on_plateau_reads_a_tensor_metric_and_refuses_others():
    sched = lr_scheduler.ReduceLROnPlateau(optim.SGD([Parameter(np.zeros(1))], lr=1.0), patience=0)
    sched.step(ts.tensor(2.0))
    sched.step(ts.tensor(3.0))
    assert sched.best == 2.0 and sched.get_last_lr() == [pytest.approx(0.1)]
    with pytest.raises(TypeError, match="ReduceLROnPlateau.step: expected a number as the metric, got str"):
        sched.step("loss")


# ---------------------------------------------------------------- arguments and state


def sgd(groups=1, **kwargs):
    return optim.SGD([{"params": [Parameter(np.zeros(1))]} for _ in range(groups)], lr=0.1, **kwargs)


@pytest.mark.parametrize("make,match", [
    (lambda: lr_scheduler.LambdaLR(sgd(2), [lambda e: 1.0]), "LambdaLR: expected 2 lr_lambdas"),
    (lambda: lr_scheduler.MultiStepLR(sgd(), [3, -1]), r"milestones\[1\] must be an int >= 0, got -1"),
    (lambda: lr_scheduler.MultiStepLR(sgd(), [2.5]), r"milestones\[0\] must be an int >= 0"),
    (lambda: lr_scheduler.MultiStepLR(sgd(), [2], gamma=-1), "invalid gamma -1"),
    (lambda: lr_scheduler.ExponentialLR(sgd(), gamma="x"), "invalid gamma 'x'"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0), "give total_steps, or epochs and steps_per_epoch"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, total_steps=0), "total_steps must be a positive int"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, epochs=2, steps_per_epoch=0), "steps_per_epoch must be"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, 10, pct_start=1.5), r"pct_start must be a float in \[0, 1\]"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, 10, pct_start=0), "pct_start must be a float"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, 10, anneal_strategy="exp"), "anneal_strategy must be 'cos'"),
    (lambda: lr_scheduler.OneCycleLR(sgd(2), [1.0], 10), r"expected max_lr to be a list of 2 numbers"),
    (lambda: lr_scheduler.OneCycleLR(sgd(), 1.0, 10, div_factor=0), "div_factor must be a number > 0"),
    (lambda: lr_scheduler.OneCycleLR(optim.Adagrad([Parameter(np.zeros(1))]), 1.0, 10),
     "cycle_momentum needs an optimizer with momentum or betas, Adagrad has neither"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(), factor=1.0), r"invalid factor 1.0, expected a number in \[0, 1\)"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(), mode="lowest"), "mode must be 'min' or 'max', got 'lowest'"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(), threshold_mode="pct"), "threshold_mode must be 'rel' or 'abs'"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(), patience=-1), "patience must be an int >= 0"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(2), min_lr=[0.1]), r"expected min_lr to be a list of 2 numbers"),
    (lambda: lr_scheduler.ReduceLROnPlateau(sgd(), min_lr=-1.0), r"invalid min_lr\[0\] -1.0"),
])
def test_invalid_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make", [
    lambda: lr_scheduler.LambdaLR("optimizer", lambda e: 1.0),
    lambda: lr_scheduler.OneCycleLR(None, 1.0, 10),
    lambda: lr_scheduler.ReduceLROnPlateau([Parameter(np.zeros(1))]),
])
def test_a_non_optimizer_is_a_type_error(make):
    with pytest.raises(TypeError, match="expected an Optimizer, got"):
        make()


def test_one_cycle_refuses_to_step_past_total_steps():
    opt = sgd(momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, 1.0, total_steps=3)
    sched.step()
    sched.step()
    assert sched.get_last_lr() == [pytest.approx(1.0 / 25 / 1e4)]  # min_lr at step total_steps - 1
    sched.step()  # as torch's: one step more is allowed (the cosine turns back up)
    with pytest.raises(ValueError, match="OneCycleLR.step: stepped 4 times, past total_steps=3"):
        sched.step()


def test_lambda_lr_saves_no_functions_and_resumes_with_the_ones_given():
    opt = sgd(2)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 0.5 ** e, lambda e: e + 1.0])
    for _ in range(3):
        sched.step()
    sd = sched.state_dict()
    assert "lr_lambdas" not in sd and sd["last_epoch"] == 3
    fresh = lr_scheduler.LambdaLR(sgd(2), [lambda e: 0.5 ** e, lambda e: e + 1.0])
    fresh.load_state_dict(sd)
    fresh.step()
    assert fresh.get_last_lr() == [pytest.approx(0.1 * 0.5 ** 4), pytest.approx(0.5)]


def test_the_old_import_paths_still_work():
    import tinyseq.optim.lr_scheduler as module
    assert optim.StepLR is module.StepLR and optim.CosineAnnealingLR is module.CosineAnnealingLR
    assert optim.LRScheduler is module.LRScheduler and ts.optim.lr_scheduler is module


@pytest.mark.parametrize("mutate,match", [
    (lambda sd: sd.update(mode="median"), "mode must be 'min' or 'max'"),
    (lambda sd: sd.update(num_bad_epochs=-1), "num_bad_epochs must be an int >= 0"),
    (lambda sd: sd.update(min_lrs=[0.0, 0.0]), r"expected min_lrs to be a list of 1 numbers"),
    (lambda sd: sd.update(best="low"), "best must be a number"),
    (lambda sd: sd.pop("cooldown_counter"), r"the state dict has entries .*, expected .*'cooldown_counter'"),
])
def test_reduce_lr_on_plateau_load_checks_first(mutate, match):
    sched = lr_scheduler.ReduceLROnPlateau(sgd(), patience=1)
    for metric in (3.0, 2.0, 2.5):
        sched.step(metric)
    before = sched.state_dict()
    sd = sched.state_dict()
    mutate(sd)
    with pytest.raises(ValueError, match=r"^ReduceLROnPlateau\.load_state_dict: " + match):
        sched.load_state_dict(sd)
    assert sched.state_dict() == before
    assert math.isinf(lr_scheduler.ReduceLROnPlateau(sgd(), mode="max").state_dict()["best"])
