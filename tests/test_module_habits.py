"""Module habits from PyTorch: buffers, apply, requires_grad_, half refused, and ts.save(model)
pointing at the state dict."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import Tensor, nn


class Normalised(nn.Module):
    """A Linear with running statistics in buffers (a persistent one, a scratch one, an empty slot)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("running_mean", Tensor(np.zeros(3, np.float32)))
        self.register_buffer("steps", Tensor(np.zeros((), np.int64)))
        self.register_buffer("scratch", Tensor(np.ones(3, np.float32)), persistent=False)
        self.register_buffer("later", None)
        self.scale = nn.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        return self.linear(x - self.running_mean) * self.scale


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Normalised()
        self.register_buffer("total", Tensor(np.zeros(2, np.float32)))


def test_buffers_are_attributes_listed_by_named_buffers_and_not_parameters():
    m = Outer()
    assert [n for n, _ in m.named_buffers()] == ["total", "inner.running_mean", "inner.steps", "inner.scratch"]
    assert next(m.buffers()) is m.total
    assert all(not isinstance(b, nn.Parameter) for b in m.buffers())
    assert [n for n, _ in m.named_parameters()] == ["inner.scale", "inner.linear.weight", "inner.linear.bias"]
    assert m.inner.later is None


def test_state_dict_holds_persistent_buffers_after_each_modules_parameters():
    m = Outer()
    keys = list(m.state_dict())
    assert keys == ["total", "inner.scale", "inner.running_mean", "inner.steps",
                    "inner.linear.weight", "inner.linear.bias"]
    m.inner.running_mean.data[...] = 5.0
    state = m.state_dict()
    assert state["inner.running_mean"] is not m.inner.running_mean.data  # a copy
    fresh = Outer()
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.inner.running_mean.data, 5.0)
    assert fresh.inner.steps.dtype == np.int64


def test_load_state_dict_counts_buffers_in_strict_mode():
    m, state = Outer(), Outer().state_dict()
    del state["inner.steps"]
    with pytest.raises(ValueError, match=r"missing keys: \['inner.steps'\]"):
        m.load_state_dict(state)
    missing, unexpected = m.load_state_dict({**state, "inner.scratch": np.zeros(3)}, strict=False)
    assert missing == ["inner.steps"] and unexpected == ["inner.scratch"]  # non-persistent: not a key


def test_a_buffer_assigned_again_stays_a_buffer_and_a_none_slot_fills_later():
    m = Normalised()
    m.later = Tensor(np.arange(2.0))
    m.running_mean = Tensor(np.ones(3, np.float32))
    state = m.state_dict()
    assert "later" in state and np.array_equal(state["running_mean"], np.ones(3))


def test_to_converts_floating_buffers_and_keeps_integer_ones():
    m = Outer().to(np.float64)
    assert m.inner.running_mean.dtype == np.float64 and m.inner.scratch.dtype == np.float64
    assert m.inner.steps.dtype == np.int64
    assert m.inner(np.ones((1, 3))).dtype == np.float64


def test_register_buffer_refuses_bad_names_and_values():
    m = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="without '.'"):
        m.register_buffer("a.b", None)
    with pytest.raises(KeyError, match="attribute 'weight' already exists"):
        m.register_buffer("weight", None)
    with pytest.raises(KeyError, match="attribute 'forward' already exists"):
        m.register_buffer("forward", None)
    with pytest.raises(TypeError, match="must be a Tensor or None, got ndarray"):
        m.register_buffer("stats", np.zeros(2))
    with pytest.raises(TypeError, match="got a Parameter"):
        m.register_buffer("stats", nn.Parameter(np.zeros(2)))


@pytest.mark.torch
def test_state_dict_keys_with_buffers_match_torch():
    torch = pytest.importorskip("torch")

    class TorchNormalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)
            self.register_buffer("running_mean", torch.zeros(3))
            self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
            self.register_buffer("scratch", torch.ones(3), persistent=False)
            self.register_buffer("later", None)
            self.scale = torch.nn.Parameter(torch.ones(1))

    class TorchOuter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = TorchNormalised()
            self.register_buffer("total", torch.zeros(2))

    ours, theirs = Outer(), TorchOuter()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})


def test_apply_visits_children_first_then_the_module_and_returns_it():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Tanh(), nn.Linear(3, 1)))
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "Tanh", "Linear", "Sequential", "Sequential"]

    def zero_biases(m):
        if isinstance(m, nn.Linear):
            m.bias.data[...] = 0

    model.apply(zero_biases)
    assert not model[0].bias.data.any() and not model[1][1].bias.data.any()


@pytest.mark.torch
def test_apply_order_matches_torch():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(3, 1)))
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Tanh", "Linear", "Sequential", "Sequential"]


def test_requires_grad_freezes_and_unfreezes_every_parameter():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    assert not model(np.ones((1, 2), np.float32)).requires_grad
    model.requires_grad_()
    assert all(p.requires_grad for p in model.parameters())


def test_half_is_refused_clearly():
    with pytest.raises(TypeError, match="Linear.half: float16 is not supported"):
        nn.Linear(2, 2).half()


def test_save_of_a_module_or_optimizer_says_to_save_its_state_dict(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot store a Linear at the top level: .* save its state_dict\(\)"):
        ts.save(model, tmp_path / "m.npz")
    opt = ts.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"cannot store a SGD at 'optimizer'"):
        ts.save({"optimizer": opt}, tmp_path / "c.npz")
    ts.save(model.state_dict(), tmp_path / "m.npz")
    nn.Linear(2, 2).load_state_dict(ts.load(tmp_path / "m.npz"))
