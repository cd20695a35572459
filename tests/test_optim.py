"""Optimizers and LR schedules: against closed-form NumPy references written from the
equations, against torch.optim (when installed), and the bookkeeping around them:
zero_grad, skipped params, param groups, state dicts, validation."""

import inspect
import math

import numpy as np
import pytest

from tinyseq import Tensor, optim
from tinyseq.nn import Parameter
from tinyseq.serialization import load, save

SHAPES = [(3, 4), (5,)]
#: gradient scale per step; it falls and rises so that amsgrad's running max matters.
SCALES = [3.0, 0.1, 1.0, 0.01, 2.0, 0.5]


def arrays(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def grad_steps(seed, shapes=SHAPES, scales=SCALES):
    """One list of gradients (one per parameter) for each step."""
    rng = np.random.default_rng(seed)
    return [[scale * rng.standard_normal(s) for s in shapes] for scale in scales]


def run_ours(cls, kwargs, initial, steps):
    """Parameter values after each step, for tinyseq's optimizer."""
    params = [Parameter(a.copy()) for a in initial]
    opt = cls(params, **kwargs)
    history = []
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
        history.append([p.data.copy() for p in params])
    return history


# ---------------------------------------------------------------- NumPy references


def ref_sgd(p, grads, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
            maximize=False):
    out, buf = [], None
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                centered=False, maximize=False):
    out = []
    v, a, b = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        v_tilde = v
        if centered:
            a = alpha * a + (1 - alpha) * g
            v_tilde = v - a**2
        step = g / (np.sqrt(v_tilde) + eps)
        if momentum > 0:
            b = momentum * b + step
            step = b
        p = p - lr * step
        out.append(p)
    return out


def ref_adagrad(p, grads, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                eps=1e-10, maximize=False):
    out, s = [], np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g
        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g**2
        p = p - clr * g / (np.sqrt(s) + eps)
        out.append(p)
    return out


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
             maximize=False, decoupled=False):
    beta1, beta2 = betas
    out = []
    m, v, v_max = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = -g if maximize else g
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        v_max = np.maximum(v_max, v)
        v_hat = (v_max if amsgrad else v) / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def ref_adamw(p, grads, weight_decay=1e-2, **kwargs):
    return ref_adam(p, grads, weight_decay=weight_decay, decoupled=True, **kwargs)


REFERENCES = {"SGD": ref_sgd, "RMSprop": ref_rmsprop, "Adagrad": ref_adagrad,
              "Adam": ref_adam, "AdamW": ref_adamw}

CASES = [
    ("SGD", {}),
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.2}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.01, "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.05, "alpha": 0.9, "eps": 1e-3, "maximize": True}),
    ("RMSprop", {"lr": 0.03, "alpha": 0.8, "eps": 1e-4, "weight_decay": 0.2, "momentum": 0.7,
                 "centered": True, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.1, "eps": 1e-3, "maximize": True}),
    ("Adagrad", {"lr": 0.2, "lr_decay": 0.3, "weight_decay": 0.05, "initial_accumulator_value": 0.1,
                 "eps": 1e-6, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"betas": (0.5, 0.8), "eps": 1e-3}),
    ("Adam", {"lr": 0.1, "betas": (0.8, 0.9), "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.1, "weight_decay": 0.5}),
    ("AdamW", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0}),
    ("AdamW", {"lr": 0.1, "betas": (0.8, 0.9), "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]

#: options under which every kind of state an optimizer keeps is in use.
FULL_STATE = {
    "SGD": {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    "RMSprop": {"momentum": 0.9, "centered": True},
    "Adagrad": {"lr_decay": 0.1},
    "Adam": {"amsgrad": True},
    "AdamW": {"amsgrad": True},
}


# ---------------------------------------------------------------- against the references


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_numpy_reference(name, kwargs):
    initial, steps = arrays(0), grad_steps(1)
    ours = run_ours(getattr(optim, name), kwargs, initial, steps)
    for i, p0 in enumerate(initial):
        expected = REFERENCES[name](p0, [grads[i] for grads in steps], **kwargs)
        for t, want in enumerate(expected):
            np.testing.assert_allclose(ours[t][i], want, rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} {kwargs}: parameter {i}, step {t + 1}")


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_zero_dim_parameter_matches_numpy_reference(name, kwargs):
    """NumPy returns scalars, not arrays, from ops on 0-d arrays; state must still update in place."""
    initial, steps = arrays(0, [()]), grad_steps(1, [()])
    ours = run_ours(getattr(optim, name), kwargs, initial, steps)
    expected = REFERENCES[name](initial[0], [grads[0] for grads in steps], **kwargs)
    np.testing.assert_allclose([p for (p,) in ours], expected, rtol=1e-12, atol=1e-14, err_msg=f"{name} {kwargs}")


def test_first_sgd_step_by_hand():
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.5, momentum=0.9, weight_decay=0.1)
    p.grad = np.array([0.2, 0.4])
    opt.step()  # g = grad + 0.1 p = [0.3, 0.2]; buf = g; p -= 0.5 g
    np.testing.assert_allclose(p.data, [0.85, -2.1], rtol=1e-15)
    p.grad = np.array([0.0, 0.0])
    opt.step()  # g = 0.1 p = [0.085, -0.21]; buf = 0.9 [0.3, 0.2] + g
    np.testing.assert_allclose(p.data, [0.85 - 0.5 * 0.355, -2.1 - 0.5 * -0.03], rtol=1e-14)


def test_first_adam_step_is_lr_times_sign():
    """With zero decay, bias correction makes Adam's first step lr * g / (|g| + eps')."""
    p = Parameter(np.zeros(3))
    opt = optim.Adam([p], lr=0.01, eps=0.0)
    p.grad = np.array([3.0, -0.5, 1e-3])
    opt.step()
    np.testing.assert_allclose(p.data, [-0.01, 0.01, -0.01], rtol=1e-12)


# ---------------------------------------------------------------- against torch.optim


def run_torch(torch, name, kwargs, initial, steps, groups=None):
    params = [torch.nn.Parameter(torch.tensor(a.copy())) for a in initial]
    spec = params if groups is None else [{**g, "params": [params[i] for i in g["params"]]} for g in groups]
    opt = getattr(torch.optim, name)(spec, **kwargs)
    history = []
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = None if g is None else torch.tensor(g.copy())
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def assert_histories_close(ours, theirs, label):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14,
                                       err_msg=f"{label}: parameter {i}, step {t + 1}")


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    initial, steps = arrays(2), grad_steps(3)
    steps[2][1] = None  # a parameter without a grad is skipped by both, state included
    ours = run_ours(getattr(optim, name), kwargs, initial, steps)
    theirs = run_torch(torch, name, kwargs, initial, steps)
    assert_histories_close(ours, theirs, f"{name} {kwargs}")


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(FULL_STATE))
def test_param_groups_match_torch(name):
    torch = pytest.importorskip("torch")
    initial, steps = arrays(4, SHAPES + [(2, 2)]), grad_steps(5, SHAPES + [(2, 2)])
    groups = [{"params": [0, 2], "lr": 0.05}, {"params": [1], "weight_decay": 0.2}]
    params = [Parameter(a.copy()) for a in initial]
    opt = getattr(optim, name)([{**g, "params": [params[i] for i in g["params"]]} for g in groups],
                               **FULL_STATE[name])
    ours = []
    for grads in steps:
        for p, g in zip(params, grads):
            p.grad = g.copy()
        opt.step()
        ours.append([p.data.copy() for p in params])
    theirs = run_torch(torch, name, FULL_STATE[name], initial, steps, groups)
    assert_histories_close(ours, theirs, f"{name} with param groups")


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(FULL_STATE))
def test_defaults_match_torch(name):
    torch = pytest.importorskip("torch")
    ours = inspect.signature(getattr(optim, name)).parameters
    theirs = inspect.signature(getattr(torch.optim, name)).parameters
    for arg, param in ours.items():
        assert arg in theirs, f"{name}: torch has no argument {arg!r}"
        assert param.default == theirs[arg].default, f"{name}({arg}=...) default differs from torch"


def torch_lrs(torch, make_scheduler, lrs, n):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    out = [sched.get_last_lr()]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
    return out


def our_lrs(make_scheduler, lrs, n):
    params = [Parameter(np.zeros(2)) for _ in lrs]
    opt = optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
    sched = make_scheduler(optim, opt)
    out = [sched.get_last_lr()]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr())
        assert out[-1] == [g["lr"] for g in opt.param_groups]
    return out


SCHEDULES = [
    ("StepLR(3)", lambda m, opt: m.StepLR(opt, step_size=3), 12),
    ("StepLR(2, 0.5)", lambda m, opt: m.StepLR(opt, 2, gamma=0.5), 12),
    ("Cosine(5)", lambda m, opt: m.CosineAnnealingLR(opt, T_max=5), 10),
    ("Cosine(7, 1e-3)", lambda m, opt: m.CosineAnnealingLR(opt, 7, eta_min=1e-3), 21),
    ("Cosine(1)", lambda m, opt: m.CosineAnnealingLR(opt, 1), 4),
]


@pytest.mark.torch
@pytest.mark.parametrize("label,make,n", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_torch(label, make, n):
    torch = pytest.importorskip("torch")
    lrs = [0.1, 0.03]
    ours, theirs = our_lrs(make, lrs, n), torch_lrs(torch, make, lrs, n)
    # NOTE: torch's cosine is recursive, ours is the closed form; they differ by rounding,
    # and near lr = 0 only absolutely.
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-17, err_msg=label)


# ---------------------------------------------------------------- schedules


def test_step_lr_closed_form_and_initial_lr():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.2)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.2
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.2]
    seen = []
    for _ in range(6):
        sched.step()
        seen.append(sched.get_last_lr()[0])
    assert seen == pytest.approx([0.2, 0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-15)
    assert sched.last_epoch == 6


def test_cosine_closed_form():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.2)
    seen = [sched.get_last_lr()[0]]
    for _ in range(8):
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    expected = [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(9)]
    assert seen == pytest.approx(expected, rel=1e-15)
    assert seen[4] == pytest.approx(0.2) and seen[8] == pytest.approx(1.0)


def test_scheduler_state_dict_round_trip():
    def make():
        opt = optim.SGD([Parameter(np.zeros(1)), Parameter(np.zeros(1))], lr=0.5)
        opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 0.1})
        return opt, optim.CosineAnnealingLR(opt, T_max=6, eta_min=0.01)

    opt, sched = make()
    for _ in range(4):
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert_plain(sched.state_dict())
    for _ in range(5):
        sched.step()
        sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


def test_scheduler_resume_with_last_epoch():
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.3)
    with pytest.raises(KeyError, match="initial_lr"):
        optim.StepLR(opt, 2, last_epoch=3)
    optim.StepLR(opt, 2)
    sched = optim.StepLR(opt, 2, gamma=0.1, last_epoch=3)
    # As torch's: the step construction makes (to epoch 4, a multiple of step_size) scales the
    # group's current lr once; it does not recompute the closed form.
    assert sched.last_epoch == 4 and sched.get_last_lr() == pytest.approx([0.03])


@pytest.mark.parametrize("make,match", [
    (lambda opt: optim.StepLR(opt, 0), "step_size"),
    (lambda opt: optim.StepLR(opt, 1.5), "step_size"),
    (lambda opt: optim.StepLR(opt, 2, gamma=-0.1), "gamma"),
    (lambda opt: optim.CosineAnnealingLR(opt, 0), "T_max"),
    (lambda opt: optim.CosineAnnealingLR(opt, 3, eta_min=-1.0), "eta_min"),
    (lambda opt: optim.StepLR(opt, 2, last_epoch=-2), "last_epoch"),
])
def test_scheduler_invalid_arguments(make, match):
    opt = optim.SGD([Parameter(np.zeros(1))])
    with pytest.raises(ValueError, match=match):
        make(opt)


def test_scheduler_rejects_a_non_optimizer_and_unknown_state():
    with pytest.raises(TypeError, match="Optimizer"):
        optim.StepLR("not an optimizer", 2)
    sched = optim.StepLR(optim.SGD([Parameter(np.zeros(1))]), 2)
    with pytest.raises(ValueError, match="has entries.*'bogus'"):
        sched.load_state_dict({**sched.state_dict(), "bogus": 1})


# ---------------------------------------------------------------- bookkeeping


@pytest.mark.parametrize("name", sorted(FULL_STATE))
def test_updates_in_place_and_keeps_dtype(name):
    params = [Parameter(a.astype(np.float32)) for a in arrays(6)]
    arrays_before = [p.data for p in params]
    opt = getattr(optim, name)(params, **FULL_STATE[name])
    for grads in grad_steps(7)[:3]:
        for p, g in zip(params, grads):
            p.grad = g.astype(np.float32)
        opt.step()
    for p, before in zip(params, arrays_before):
        assert p.data is before and p.dtype == np.float32
    for index, state in opt.state.items():
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32, f"{name} state {key!r}"
                assert value.shape == params[index].shape


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("grad_dtype", [np.float16, np.float64, np.int64])
def test_adam_computes_in_the_parameters_dtype(name, grad_dtype):
    """A hand-set grad of another dtype updates as its cast to the parameter's dtype would
    (float16: no underflow of eps or v into a division by zero)."""
    results = []
    for dtype in (grad_dtype, np.float32):
        p = Parameter(np.linspace(-1, 1, 6, dtype=np.float32))
        opt = getattr(optim, name)([p], lr=0.1, amsgrad=True)
        for t in range(5):
            p.grad = (np.arange(6) - 2 * t).astype(grad_dtype).astype(dtype)
            opt.step()
        results.append(p.data.copy())
    assert results[0].dtype == np.float32 and np.isfinite(results[0]).all()
    np.testing.assert_array_equal(results[0], results[1])


def test_adam_arithmetic_is_bit_equal_to_the_written_formula():
    p0, g = np.linspace(-1, 1, 7, dtype=np.float32), np.linspace(0.3, -2, 7, dtype=np.float32)
    p = Parameter(p0.copy())
    opt = optim.Adam([p], lr=0.01)
    p.grad = g
    opt.step()
    m = np.float32(0) * p0 + (1 - 0.9) * g
    v = np.float32(0) * p0 + (1 - 0.999) * g * g
    expected = p0 - (0.01 / (1 - 0.9)) * (m / (np.sqrt(v) / math.sqrt(1 - 0.999) + 1e-8))
    np.testing.assert_array_equal(p.data, expected)


def test_zero_grad():
    params = [Parameter(a) for a in arrays(8)]
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = np.ones(p.shape)
    kept = params[0].grad
    opt.zero_grad(set_to_none=False)
    assert params[0].grad is kept and not np.asarray(kept).any()
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.step()  # nothing has a grad: nothing moves
    np.testing.assert_array_equal(params[0].data, arrays(8)[0])


@pytest.mark.parametrize("name", sorted(FULL_STATE))
def test_params_without_grad_are_skipped(name):
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = getattr(optim, name)([a, b], **FULL_STATE[name])
    a.grad = np.full(3, 0.5)
    for _ in range(2):
        opt.step()
    np.testing.assert_array_equal(b.data, np.ones(2))
    assert 1 not in opt.state or not opt.state[1]
    assert (a.data < 1).all()


def test_param_groups_have_their_own_lr():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a], "lr": 0.5}, {"params": [b]}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    assert opt.param_groups[0]["momentum"] == 0.9  # filled in from the defaults
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.5)
    np.testing.assert_allclose(b.data, 0.9)


def test_step_returns_closure_loss():
    p = Parameter(np.array([2.0]))
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0
    np.testing.assert_allclose(p.data, [1.0])


def test_adam_minimizes_through_backward():
    target = np.array([1.0, -2.0, 0.5])
    w = Parameter(np.zeros(3))
    opt = optim.Adam([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        diff = w - Tensor(target)
        (diff * diff).sum().backward()
        opt.step()
    np.testing.assert_allclose(w.data, target, atol=1e-2)


# ---------------------------------------------------------------- state dicts


def assert_plain(value, where="state_dict"):
    """Only dicts, lists, numbers, strings, bools, None and NumPy arrays (no pickle needed)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), f"{where}: key {k!r}"
            assert_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (bool, int, float, str, np.ndarray)), (
            f"{where}: {type(value).__name__}"
        )
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "biuf", f"{where}: dtype {value.dtype}"


def make_grouped(name, seed=0, **overrides):
    params = [Parameter(a) for a in arrays(seed, SHAPES + [(2,)])]
    kwargs = {**FULL_STATE[name], **overrides}
    groups = [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]
    return params, getattr(optim, name)(groups, **kwargs)


@pytest.mark.parametrize("name", sorted(FULL_STATE))
def test_state_dict_round_trip(name):
    params, opt = make_grouped(name)
    steps = grad_steps(9, SHAPES + [(2,)])
    for grads in steps[:3]:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    sd = opt.state_dict()
    assert_plain(sd)
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 1, 2]

    # a fresh optimizer (other hyperparameters, other values) picks up where this one is
    params2, opt2 = make_grouped(name, seed=99, lr=0.7)
    for p2, p in zip(params2, params):
        p2.data[...] = p.data
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for grads in steps[3:]:
        for p, p2, g in zip(params, params2, grads):
            p.grad, p2.grad = g, g.copy()
        opt.step()
        opt2.step()
        for p, p2 in zip(params, params2):
            np.testing.assert_array_equal(p2.data, p.data)
    # the dict holds copies: stepping changed neither it nor was it shared with opt2
    for index, state in opt2.state.items():
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                assert value is not sd["state"][index][key]


def test_state_dict_survives_npz_style_values():
    """Numbers come back from an .npz as 0-d arrays and tuples as lists; both load."""
    params, opt = make_grouped("Adam")
    for p, g in zip(params, grad_steps(10, SHAPES + [(2,)])[0]):
        p.grad = g
    opt.step()
    sd = opt.state_dict()
    for state in sd["state"].values():
        state["step"] = np.asarray(state["step"])
    sd["state"] = {str(k): v for k, v in sd["state"].items()}
    params2, opt2 = make_grouped("Adam")
    opt2.load_state_dict(sd)
    assert opt2.state[0]["step"] == 1 and isinstance(opt2.state[0]["step"], int)
    assert opt2.param_groups[0]["betas"] == (0.9, 0.999)


def stepped(name, kwargs, steps=2, shapes=SHAPES):
    """A fresh ``name`` optimizer over ``shapes``, stepped ``steps`` times (so it has state)."""
    params = [Parameter(a) for a in arrays(0, shapes)]
    opt = getattr(optim, name)(params, **kwargs)
    for grads in grad_steps(1, shapes)[:steps]:
        for p, g in zip(params, grads):
            p.grad = g.copy()
        opt.step()
    return opt


def snapshot(opt):
    """Everything ``load_state_dict`` may change: state, hyperparameters, which params."""
    return opt.state_dict(), [[id(p) for p in g["params"]] for g in opt.param_groups]


def assert_load_fails_and_changes_nothing(opt, sd, error, match):
    before = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.load_state_dict(sd)
    np.testing.assert_equal(snapshot(opt), before)


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_declared_state_names_are_what_update_keeps(name, kwargs):
    opt = stepped(name, kwargs)
    for index, _, group in opt._indexed_params():
        assert set(opt.state[index]) == set(opt._state_names(group)), f"{name} {kwargs}"


# Adam and AdamW share hyperparameters and state (as in PyTorch, either loads the other's).
FOREIGN = [(source, options, target) for source in sorted(FULL_STATE) for options in ("full", "defaults")
           for target in sorted(FULL_STATE) if source != target and {source, target} != {"Adam", "AdamW"}]


@pytest.mark.parametrize("source,options,target", FOREIGN, ids=["-".join(f) for f in FOREIGN])
def test_load_rejects_another_optimizers_state_dict(source, options, target):
    sd = stepped(source, FULL_STATE[source] if options == "full" else {}).state_dict()
    opt = stepped(target, FULL_STATE[target])
    assert_load_fails_and_changes_nothing(
        opt, sd, ValueError, rf"^{target}\.load_state_dict: .*saved by another optimizer\?\)$")
    opt.step()  # still a working optimizer


def test_adam_rejects_sgd_momentum_state_naming_both():
    """The bug this guards against: SGD's state was accepted, then ``step`` raised KeyError."""
    sgd = stepped("SGD", {"lr": 0.1, "momentum": 0.9})
    opt = stepped("Adam", {})
    message = (r"Adam.load_state_dict: param group 0 has entries \['dampening', 'lr', 'maximize', "
               r"'momentum', 'nesterov', 'params', 'weight_decay'\], expected \['amsgrad', 'betas', 'eps', "
               r"'lr', 'maximize', 'params', 'weight_decay'\] \(was this state dict saved by another optimizer\?\)")
    assert_load_fails_and_changes_nothing(opt, sgd.state_dict(), ValueError, message)
    # with Adam's hyperparameters but SGD's per-parameter state, the state is what is named
    sd = opt.state_dict()
    sd["state"][0] = sgd.state_dict()["state"][0]
    message = (r"Adam.load_state_dict: the state of parameter 0 has entries \['momentum_buffer'\], "
               r"expected \['exp_avg', 'exp_avg_sq', 'step'\] \(was this state dict saved by another optimizer\?\)")
    assert_load_fails_and_changes_nothing(opt, sd, ValueError, message)


def set_in(*keys_then_value):
    """A mutation: ``set_in("state", 1, "step", -1)`` does ``sd["state"][1]["step"] = -1``."""
    *keys, value = keys_then_value

    def mutate(sd):
        for key in keys[:-1]:
            sd = sd[key]
        sd[keys[-1]] = value
    return mutate


def delete(*keys):
    """A mutation: ``delete("state", 1, "step")`` does ``del sd["state"][1]["step"]``."""
    def mutate(sd):
        for key in keys[:-1]:
            sd = sd[key]
        del sd[keys[-1]]
    return mutate


@pytest.mark.parametrize("mutate,match", [
    (lambda sd: sd["param_groups"].pop(), "the dict has 1 parameter groups, this optimizer has 2"),
    (lambda sd: sd["param_groups"][0]["params"].pop(), "group 0 has 1 parameters"),
    (set_in("state", 1, "exp_avg", np.zeros((4, 3))), r"'exp_avg' of parameter 1 is an array of shape \(4, 3\)"),
    (set_in("state", 1, "exp_avg", [0.0] * 5), r"'exp_avg' of parameter 1 is a list, expected .* shape \(5,\)"),
    (set_in("state", 1, "exp_avg", np.zeros(5, np.int64)), "dtype int64, expected a floating-point array"),
    (set_in("state", 7, {"step": 1}), "state for parameter 7, which no group holds"),
    (set_in("state", "x", {}), "state for parameter 'x', which no group holds"),
    (delete("state"), r"the state dict has entries \['param_groups'\], expected \['param_groups', 'state'\]"),
    (set_in("extra", 1), r"the state dict has entries \['extra', 'param_groups', 'state'\]"),
    (set_in("param_groups", 1, "lr", -1.0), "lr"),
    (set_in("param_groups", 1, "betas", [1.0, 0.5]), r"betas\[0\]"),
    (delete("param_groups", 1, "betas"), r"param group 1 has entries \['amsgrad', 'eps', 'lr'"),
    (delete("param_groups", 0, "params"), r"param group 0 has entries \['amsgrad', 'betas', 'eps', 'lr'"),
    (set_in("param_groups", 0, "momentum", 0.9), r"param group 0 has entries .*'momentum'"),
    # without amsgrad Adam keeps no max_exp_avg_sq; with it the state must have one
    (set_in("param_groups", 0, "amsgrad", False),
     r"parameter 0 has entries \['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'\], expected \['exp_avg', 'exp_avg_sq', 'step'\]"),
    (delete("state", 2, "max_exp_avg_sq"), r"the state of parameter 2 has entries \['exp_avg', 'exp_avg_sq', 'step'\]"),
    (delete("state", 1, "step"), "the state of parameter 1 has entries"),
    (set_in("state", 1, "step", -1), r"state\[1\]\['step'\] must be an int >= 0, got -1"),
    (set_in("state", 1, "step", 1.5), r"state\[1\]\['step'\] must be an int >= 0, got 1.5"),
    (set_in("state", 1, "step", True), r"state\[1\]\['step'\] must be an int >= 0, got True"),
    (set_in("state", 1, "step", np.array([1, 2])), r"state\[1\]\['step'\] must be an int >= 0"),
])
def test_load_state_dict_mismatch(mutate, match):
    sd = make_stepped_grouped("Adam").state_dict()
    mutate(sd)
    opt = make_stepped_grouped("Adam", seed=5)
    # (invalid hyperparameter values are reported by _check_group, as "Adam: invalid lr ...")
    assert_load_fails_and_changes_nothing(opt, sd, ValueError, r"^Adam(\.load_state_dict)?: .*" + match)


@pytest.mark.parametrize("value,match", [
    (None, "NoneType"), ([], "list"), ("state_dict", "str"),
])
def test_load_state_dict_needs_a_dict(value, match):
    assert_load_fails_and_changes_nothing(
        make_stepped_grouped("Adam"), value, TypeError,
        r"^Adam\.load_state_dict: expected the state dict to be a dict, got " + match)


@pytest.mark.parametrize("mutate,match", [
    (set_in("state", [{}, {}]), "expected 'state' to be a dict, got list"),
    (set_in("param_groups", {}), "expected 'param_groups' to be a list, got dict"),
    (set_in("param_groups", 1, "params", 2), "expected the params of param group 1 to be a list, got int"),
    (set_in("param_groups", 0, [("lr", 0.1)]), "expected param group 0 to be a dict, got list"),
    (set_in("state", 0, [1]), "expected the state of parameter 0 to be a dict, got list"),
])
def test_load_state_dict_wrong_types(mutate, match):
    sd = make_stepped_grouped("Adam").state_dict()
    mutate(sd)
    opt = make_stepped_grouped("Adam", seed=5)
    assert_load_fails_and_changes_nothing(opt, sd, TypeError, r"^Adam\.load_state_dict: " + match)


def make_stepped_grouped(name, seed=0):
    params, opt = make_grouped(name, seed)
    for p, g in zip(params, grad_steps(11 + seed, SHAPES + [(2,)])[0]):
        p.grad = g
    opt.step()
    return opt


def test_load_keeps_initial_lr_and_the_groups_own_keys():
    """A scheduler's ``initial_lr`` and a key a user put in a group are not foreign."""
    def make():
        opt = optim.SGD([{"params": [Parameter(np.zeros(2))], "name": "encoder"}], lr=0.1, momentum=0.9)
        return opt, optim.StepLR(opt, 2)

    opt, _ = make()
    sd = opt.state_dict()
    plain = optim.SGD([{"params": [Parameter(np.zeros(2))], "name": "x"}], lr=0.3)
    plain.load_state_dict(sd)
    assert plain.param_groups[0]["initial_lr"] == 0.1 and plain.param_groups[0]["name"] == "encoder"
    unnamed = optim.SGD([Parameter(np.zeros(2))], lr=0.3)
    assert_load_fails_and_changes_nothing(unnamed, sd, ValueError, r"param group 0 has entries .*'name'")


@pytest.mark.parametrize("name,kwargs", CASES, ids=CASE_IDS)
def test_state_dict_round_trips_through_a_checkpoint_file(tmp_path, name, kwargs):
    """``ts.save``/``ts.load`` turn tuples into lists and NumPy scalars into 0-d arrays."""
    shapes = SHAPES + [()]  # a 0-d parameter's state arrays are 0-d, and must stay arrays
    steps = grad_steps(13, shapes)

    def make():
        params = [Parameter(a) for a in arrays(0, shapes)]
        groups = [{"params": params[:2]}, {"params": params[2:], "lr": np.float64(0.02)}]
        opt = getattr(optim, name)(groups, **kwargs)
        return params, opt, optim.StepLR(opt, 2, gamma=0.5)

    def train(params, opt, sched, grads_per_step):
        for grads in grads_per_step:
            for p, g in zip(params, grads):
                p.grad = g.copy()
            opt.step()
            sched.step()

    params, opt, sched = make()
    train(params, opt, sched, steps[:3])
    save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt.npz")
    ckpt = load(tmp_path / "ckpt.npz")
    params2, opt2, sched2 = make()
    for p2, p in zip(params2, params):
        p2.data[...] = p.data
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    train(params, opt, sched, steps[3:])
    train(params2, opt2, sched2, steps[3:])
    for p, p2 in zip(params, params2):
        np.testing.assert_array_equal(p2.data, p.data)
    assert sched2.get_last_lr() == sched.get_last_lr()


# ---------------------------------------------------------------- scheduler state dicts


SCHEDULER_KINDS = {
    "StepLR": lambda opt: optim.StepLR(opt, 3, gamma=0.5),
    "CosineAnnealingLR": lambda opt: optim.CosineAnnealingLR(opt, T_max=6, eta_min=0.01),
}


def make_scheduler(kind, epochs=4):
    opt = optim.SGD([Parameter(np.zeros(1))], lr=0.5)
    opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 0.1})
    sched = SCHEDULER_KINDS[kind](opt)
    for _ in range(epochs):
        sched.step()
    return sched


def assert_scheduler_load_fails_and_changes_nothing(sched, sd, error, match):
    before = sched.state_dict(), [g["lr"] for g in sched.optimizer.param_groups]
    with pytest.raises(error, match=match):
        sched.load_state_dict(sd)
    assert (sched.state_dict(), [g["lr"] for g in sched.optimizer.param_groups]) == before


@pytest.mark.parametrize("kind", sorted(SCHEDULER_KINDS))
def test_scheduler_round_trips_through_a_checkpoint_file(tmp_path, kind):
    # The schedules are chainable (each step scales the groups' current lrs), so a checkpoint
    # holds the optimizer too, as with torch.
    sched = make_scheduler(kind)
    save({"optimizer": sched.optimizer.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "sched.npz")
    resumed = make_scheduler(kind, epochs=0)
    ckpt = load(tmp_path / "sched.npz")
    resumed.optimizer.load_state_dict(ckpt["optimizer"])
    resumed.load_state_dict(ckpt["scheduler"])
    assert resumed.state_dict() == sched.state_dict()
    for _ in range(8):
        sched.step()
        resumed.step()
        assert resumed.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("source,target", [("StepLR", "CosineAnnealingLR"), ("CosineAnnealingLR", "StepLR")])
def test_scheduler_rejects_another_schedulers_state_dict(source, target):
    sd = make_scheduler(source).state_dict()
    assert_scheduler_load_fails_and_changes_nothing(
        make_scheduler(target, epochs=1), sd, ValueError,
        rf"^{target}\.load_state_dict: the state dict has entries .*, expected .*"
        r"\(was this state dict saved by another scheduler\?\)$")


@pytest.mark.parametrize("kind,mutate,match", [
    ("StepLR", delete("last_epoch"), r"the state dict has entries \['_last_lr', '_step_count', 'base_lrs', 'gamma', 'step_size'\], "
                                     r"expected \['_last_lr', '_step_count', 'base_lrs', 'gamma', 'last_epoch', 'step_size'\]"),
    ("StepLR", set_in("bogus", 1), r"the state dict has entries .*'bogus'"),
    ("StepLR", set_in("last_epoch", -2), "last_epoch must be an int >= -1, got -2"),
    ("StepLR", set_in("last_epoch", 2.0), "last_epoch must be an int >= -1, got 2.0"),
    ("StepLR", set_in("base_lrs", [0.5]), r"expected base_lrs to be a list of 2 numbers \(one per parameter group\), got \[0.5\]"),
    ("StepLR", set_in("base_lrs", 0.5), "expected base_lrs to be a list of 2 numbers"),
    ("StepLR", set_in("_last_lr", [0.5, -0.1]), r"invalid _last_lr\[1\] -0.1"),
    ("StepLR", set_in("step_size", 0), "step_size must be a positive int, got 0"),
    ("StepLR", set_in("gamma", "fast"), "invalid gamma 'fast'"),
    ("CosineAnnealingLR", set_in("T_max", 1.5), "T_max must be a positive int, got 1.5"),
    ("CosineAnnealingLR", set_in("eta_min", -1.0), "invalid eta_min -1.0"),
])
def test_scheduler_load_state_dict_mismatch(kind, mutate, match):
    sd = make_scheduler(kind).state_dict()
    mutate(sd)
    assert_scheduler_load_fails_and_changes_nothing(
        make_scheduler(kind, epochs=1), sd, ValueError, rf"^{kind}\.load_state_dict: " + match)


@pytest.mark.parametrize("value", [None, [("last_epoch", 3)], "state"])
def test_scheduler_load_state_dict_needs_a_dict(value):
    assert_scheduler_load_fails_and_changes_nothing(
        make_scheduler("StepLR"), value, TypeError, r"^StepLR\.load_state_dict: expected the state dict to be a dict")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.SGD(ps, lr=-0.1), "lr"),
    (lambda ps: optim.SGD(ps, lr=float("nan")), "lr"),
    (lambda ps: optim.SGD(ps, lr="fast"), "lr"),
    (lambda ps: optim.SGD(ps, momentum=-0.5), "momentum"),
    (lambda ps: optim.SGD(ps, weight_decay=-1e-4), "weight_decay"),
    (lambda ps: optim.SGD(ps, nesterov=True), "nesterov"),
    (lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    (lambda ps: optim.RMSprop(ps, alpha=-0.1), "alpha"),
    (lambda ps: optim.RMSprop(ps, eps=-1e-8), "eps"),
    (lambda ps: optim.RMSprop(ps, momentum=-0.1), "momentum"),
    (lambda ps: optim.Adagrad(ps, lr_decay=-0.1), "lr_decay"),
    (lambda ps: optim.Adagrad(ps, initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda ps: optim.Adagrad(ps, eps=-1.0), "eps"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda ps: optim.Adam(ps, betas=(0.9,)), "pair"),
    (lambda ps: optim.Adam(ps, eps=-1e-8), "eps"),
    (lambda ps: optim.AdamW(ps, weight_decay=-0.01), "weight_decay"),
    (lambda ps: optim.AdamW(ps, lr=-1e-3), "lr"),
    (lambda ps: optim.Adam([{"params": ps, "lr": -1.0}]), "lr"),
    (lambda ps: optim.SGD([], lr=0.1), "empty"),
    (lambda ps: optim.SGD([ps[0], ps[0]]), "more than once"),
    (lambda ps: optim.SGD([(ps[0] * 2.0)]), "leaf"),
])
def test_invalid_arguments_raise_value_error(make, match):
    params = [Parameter(np.zeros(2))]
    with pytest.raises(ValueError, match=match):
        make(params)


@pytest.mark.parametrize("make,match", [
    (lambda: optim.SGD([Tensor(np.arange(3))]), "floating-point"),
    (lambda: optim.SGD([np.zeros(3)]), "Tensors"),
    (lambda: optim.SGD(Parameter(np.zeros(3))), "single Parameter"),
    (lambda: optim.SGD({Parameter(np.zeros(3))}), "set"),
])
def test_invalid_params_raise_type_error(make, match):
    with pytest.raises(TypeError, match=match):
        make()


def test_repr_lists_groups():
    opt = optim.Adam([Parameter(np.zeros(2))], lr=0.01)
    text = repr(opt)
    assert text.startswith("Adam (") and "lr: 0.01" in text and "Parameter Group 0" in text


def test_frozen_parameters_are_accepted_and_left_alone():
    frozen, trained = Parameter(np.ones(2)), Parameter(np.ones(2))
    frozen.requires_grad = False
    opt = optim.SGD([frozen, trained], lr=0.5)
    trained.grad = np.ones(2)
    opt.step()
    np.testing.assert_array_equal(frozen.data, [1.0, 1.0])
    np.testing.assert_array_equal(trained.data, [0.5, 0.5])
