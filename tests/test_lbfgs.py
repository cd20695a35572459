"""optim.LBFGS: PyTorch's iterates step by step (with and without the strong-Wolfe line search),
an LSTM fit full-batch, its state dict (round trip, resume, refusals) and its arguments."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import nn, optim
from tinyseq.serialization import load, save


def rosenbrock(x):
    return ((1 - x[:-1]) ** 2).sum() + (100 * (x[1:] - x[:-1] ** 2) ** 2).sum()


def quadratic(x, a, b):
    return 0.5 * (x * (a @ x)).sum() - (b * x).sum()


def problem(name):
    rng = np.random.default_rng(3)
    if name == "rosenbrock":
        return np.array([-1.2, 1.0, -0.5, 0.8, 1.5]), lambda x, *_: rosenbrock(x), ()
    m = rng.standard_normal((6, 6))
    return rng.standard_normal(6), quadratic, (m @ m.T + 0.5 * np.eye(6), rng.standard_normal(6))


def run(optimizer_class, tensor, x0, f, consts, steps, **options):
    x = tensor(x0.copy(), requires_grad=True)
    consts = [tensor(c) for c in consts]
    opt = optimizer_class([x], **options)

    def closure():
        opt.zero_grad()
        loss = f(x, *consts)
        loss.backward()
        return loss

    iterates, losses = [], []
    for _ in range(steps):
        loss = opt.step(closure)
        losses.append(float(loss.detach()))
        iterates.append(np.array(x.detach().numpy() if hasattr(x, "detach") else x.data, copy=True))
    return np.array(iterates), losses, opt


# (options, steps compared). NOTE: without the line search, at a fixed lr of 0.1, the
# quadratic's iterates near its minimum, the curvature pairs come from differences of tiny
# gradients, and the two-loop recursion amplifies rounding: this and PyTorch agree to 1e-16 for
# six steps (42 iterations) and then drift apart (2e-13, 8e-10, 6e-9 at steps 7-9 with a history
# of 10; the same with 3 or 100), as two runs of either would with the sums taken in another
# order. Hence six steps there; the line search keeps the others well conditioned.
OPTIONS = [(dict(line_search_fn=None, lr=0.1, max_iter=7), 6), (dict(line_search_fn="strong_wolfe", max_iter=7), 12),
           (dict(line_search_fn="strong_wolfe", max_iter=5, history_size=3), 12), (dict(lr=0.5, max_iter=4, max_eval=6), 12)]


@pytest.mark.torch
@pytest.mark.parametrize("options, steps", OPTIONS)
@pytest.mark.parametrize("name", ["quadratic", "rosenbrock"])
def test_iterates_equal_torchs_step_by_step(name, options, steps):
    torch = pytest.importorskip("torch")
    x0, f, consts = problem(name)
    ours, our_losses, opt = run(optim.LBFGS, lambda a, **k: ts.tensor(a, dtype=np.float64, **k), x0, f, consts, steps,
                                **options)
    theirs, their_losses, torch_opt = run(torch.optim.LBFGS, lambda a, **k: torch.tensor(a, dtype=torch.float64, **k),
                                          x0, f, consts, steps, **options)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-8, atol=1e-10)
    mine, torchs = opt.state[0], next(iter(torch_opt.state.values()))
    assert (mine["func_evals"], mine["n_iter"]) == (torchs["func_evals"], torchs["n_iter"])
    assert len(mine["old_dirs"]) == len(torchs["old_dirs"])


def _abs_loss(x, *_):
    return x.abs().sum()


def _inf_outside(x, *_):  # sum(x^2) inside |x| < 3, inf outside: an overflow in the line search
    inside = bool((abs(x.detach().numpy() if hasattr(x, "detach") else x.data) < 3).all())
    return (x * x).sum() if inside else (x * x).sum() * float("inf")


@pytest.mark.torch
@pytest.mark.parametrize("f, x0, options", [
    (_abs_loss, [3.0, 5.0], dict(line_search_fn="strong_wolfe")),  # linear along d: the cubic divides by 0
    (_inf_outside, [2.9, -2.5], dict(line_search_fn="strong_wolfe", lr=20, max_iter=3)),  # an inf loss: bisect
])
def test_the_line_search_handles_a_linear_or_infinite_loss_as_torchs(f, x0, options):
    torch = pytest.importorskip("torch")
    x0 = np.array(x0)
    ours, _, _ = run(optim.LBFGS, lambda a, **k: ts.tensor(a, dtype=np.float64, **k), x0, f, (), 1, **options)
    theirs, _, _ = run(torch.optim.LBFGS, lambda a, **k: torch.tensor(a, dtype=torch.float64, **k), x0, f, (), 1,
                       **options)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert np.abs(ours - x0).max() > 0.1  # it moved


class Fit(nn.Module):
    def __init__(self):
        self.lstm = nn.LSTM(1, 5, dtype=np.float64, backend="graph")
        self.head = nn.Linear(5, 1, dtype=np.float64)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)


@pytest.mark.torch
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_an_lstm_fit_full_batch_follows_torchs_loss_curve(line_search_fn):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ts.manual_seed(0)
    t = np.linspace(0, 4 * np.pi, 40)
    x, y = np.sin(t)[:-1, None, None], np.sin(t)[1:, None, None]  # (T, 1, 1): the next value
    model = Fit()
    theirs = torch.nn.ModuleDict({"lstm": torch.nn.LSTM(1, 5), "head": torch.nn.Linear(5, 1)}).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            theirs.get_parameter(name).copy_(torch.from_numpy(p.data))
    ours_opt = optim.LBFGS(model.parameters(), lr=0.8 if line_search_fn is None else 1, line_search_fn=line_search_fn)
    torch_opt = torch.optim.LBFGS(theirs.parameters(), lr=0.8 if line_search_fn is None else 1,
                                  line_search_fn=line_search_fn)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def ours():
        ours_opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    def torchs():
        torch_opt.zero_grad()
        loss = torch.nn.functional.mse_loss(theirs["head"](theirs["lstm"](xt)[0]), yt)
        loss.backward()
        return loss

    curve = [(float(ours_opt.step(ours)), float(torch_opt.step(torchs).detach())) for _ in range(4)]
    np.testing.assert_allclose(*zip(*curve), rtol=1e-8)
    assert curve[-1][0] < curve[0][0] / 10  # it learns


def test_the_state_dict_round_trip_resumes_bitwise(tmp_path):
    x0, f, consts = problem("rosenbrock")
    straight, _, _ = run(optim.LBFGS, ts.tensor, x0, f, consts, 6, line_search_fn="strong_wolfe", max_iter=3)
    first, _, opt = run(optim.LBFGS, ts.tensor, x0, f, consts, 3, line_search_fn="strong_wolfe", max_iter=3)
    save(opt.state_dict(), tmp_path / "opt.ts")
    x = ts.tensor(first[-1].copy(), requires_grad=True)
    resumed = optim.LBFGS([x], line_search_fn="strong_wolfe", max_iter=3)
    resumed.load_state_dict(load(tmp_path / "opt.ts"))

    def closure():
        resumed.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    for k in range(3, 6):
        resumed.step(closure)
        np.testing.assert_array_equal(x.data, straight[k])


def test_a_state_dict_is_a_snapshot():
    x0, f, consts = problem("rosenbrock")
    _, _, opt = run(optim.LBFGS, ts.tensor, x0, f, consts, 2, max_iter=3)
    saved = opt.state_dict()
    dirs = [v.copy() for v in saved["state"][0]["old_dirs"]]
    x = opt.param_groups[0]["params"][0]

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    opt.step(closure)
    assert len(saved["state"][0]["old_dirs"]) == len(dirs)
    for a, b in zip(saved["state"][0]["old_dirs"], dirs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mutate, error, match", [
    (lambda s: s["state"][0].pop("d"), ValueError, "expected all of"),
    (lambda s: s["state"][0].update(d=np.zeros(3)), ValueError, r"'d' must be a float vector of the parameters' size \(5,\)"),
    (lambda s: s["state"][0].update(ro=s["state"][0]["ro"][:-1]), ValueError, "the history lists differ in length"),
    (lambda s: s["state"][0].update(n_iter=-1), ValueError, "n_iter"),
    (lambda s: s["state"].update({1: {}}), ValueError, "under parameter 0"),
    (lambda s: s["state"].update({0: {"func_evals": 3, "n_iter": 2}}), ValueError, "must have n_iter 0"),
    (lambda s: s["param_groups"][0].pop("history_size"), ValueError, "history_size"),
])
def test_a_bad_state_dict_is_refused_and_changes_nothing(mutate, error, match):
    x0, f, consts = problem("rosenbrock")
    _, _, opt = run(optim.LBFGS, ts.tensor, x0, f, consts, 2, max_iter=3)
    before = opt.state_dict()
    bad = opt.state_dict()
    mutate(bad)
    with pytest.raises(error, match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    np.testing.assert_array_equal(after["state"][0]["d"], before["state"][0]["d"])


def test_arguments_are_checked():
    p = ts.tensor(np.zeros(3), requires_grad=True)
    with pytest.raises(ValueError, match="line_search_fn must be None or 'strong_wolfe', got 'wolfe'"):
        optim.LBFGS([p], line_search_fn="wolfe")
    with pytest.raises(ValueError, match="max_iter must be a positive int, got 0"):
        optim.LBFGS([p], max_iter=0)
    with pytest.raises(ValueError, match="one parameter group"):
        optim.LBFGS([{"params": [p]}, {"params": [ts.tensor(np.zeros(2), requires_grad=True)]}])
    with pytest.raises(TypeError, match="needs a closure"):
        optim.LBFGS([p]).step()
    with pytest.raises(TypeError, match="the closure returned None; it must return the loss"):
        optim.LBFGS([p]).step(lambda: None)
    assert optim.LBFGS([p]).param_groups[0]["max_eval"] == 25  # max_iter * 5 // 4, as PyTorch


def test_a_minimum_already_reached_returns_at_once():
    p = ts.tensor(np.zeros(3), requires_grad=True)
    opt = optim.LBFGS([p])
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure)) == 0.0 and len(calls) == 1 and opt.state[0]["n_iter"] == 0
