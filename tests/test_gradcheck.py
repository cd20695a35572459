import sys

import numpy as np
import pytest

from tinyseq import GradcheckError, Tensor, config, gradcheck
from tinyseq.tensor import Function


class Square(Function):
    def forward(self, x):
        self.save(x)
        return x * x

    def backward(self, grad):
        (x,) = self.saved
        return 2 * grad * x


class WrongSquare(Square):
    def backward(self, grad):
        (x,) = self.saved
        return grad * x


class Mul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, grad):
        a, b = self.saved
        return grad * b, grad * a


class MulWrongSecond(Mul):
    def backward(self, grad):
        a, b = self.saved
        return grad * b, grad * a * 1.5


class ToFloat32(Function):
    def forward(self, x):
        return x.astype(np.float32)

    def backward(self, grad):
        return grad.astype(np.float64)


def t(shape, seed=0, requires_grad=True):
    data = np.random.default_rng(seed).standard_normal(shape)
    return Tensor(data, requires_grad=requires_grad, dtype=np.float64)


@pytest.mark.parametrize("mode", ["full", "directional", "auto"])
def test_correct_ops_pass(mode):
    assert gradcheck(Square.apply, [t((3, 4))], mode=mode) is True
    assert gradcheck(Mul.apply, [t((2, 3), 1), t((2, 3), 2)], mode=mode) is True


def test_single_tensor_input_and_zero_size():
    assert gradcheck(Square.apply, t((5,))) is True
    for mode in ("full", "directional"):
        assert gradcheck(Square.apply, [t((0, 3))], mode=mode) is True


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_wrong_backward_is_caught(mode):
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongSquare.apply, [t((3,))], mode=mode)
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "input 0" in message and mode in message
    assert "analytic" in message and "numeric" in message


def test_full_mode_message_shows_jacobians():
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True, dtype=np.float64)
    with pytest.raises(GradcheckError, match=r"worst element.*input element \(2,\)") as info:
        gradcheck(WrongSquare.apply, [x], mode="full")
    message = str(info.value)
    assert "analytic = 3" in message and "numeric = 6" in message
    assert "analytic Jacobian" in message and "numeric Jacobian" in message
    assert "input 0 values" in message


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_wrong_second_input_reported_as_input_1(mode):
    with pytest.raises(GradcheckError) as info:
        gradcheck(MulWrongSecond.apply, [t((4,), 1), t((4,), 2)], mode=mode)
    message = str(info.value)
    assert "input 1" in message and "input 0" not in message


def test_inputs_not_requiring_grad_are_passed_through():
    assert gradcheck(MulWrongSecond.apply, [t((4,), 1), t((4,), 2, requires_grad=False)]) is True


def test_float32_input_raises_type_error():
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match=r"input 1 .*float32.*float64"):
        gradcheck(Mul.apply, [t((3,)), x32])


def test_bad_outputs_fail():
    with pytest.raises(GradcheckError, match="does not require grad"):
        gradcheck(lambda x: x.detach(), [t((3,))])
    with pytest.raises(GradcheckError, match="float32"):
        gradcheck(ToFloat32.apply, [t((3,))])


@pytest.mark.parametrize("op", [Mul, MulWrongSecond])
@pytest.mark.parametrize("mode", ["full", "directional"])
def test_no_side_effects(op, mode):
    a, b = t((2, 3), 1), t((2, 3), 2)
    a_data, b_data = a.data.copy(), b.data.copy()
    a.grad = np.full((2, 3), 7.0)
    a_grad = a.grad
    try:
        gradcheck(op.apply, [a, b], mode=mode)
    except GradcheckError:
        pass
    np.testing.assert_array_equal(a.data, a_data)
    np.testing.assert_array_equal(b.data, b_data)
    assert a.grad is a_grad and np.all(np.asarray(a_grad) == 7.0)
    assert b.grad is None


def test_auto_picks_directional_for_large_inputs(monkeypatch):
    monkeypatch.setattr(config, "GRADCHECK_FULL_MAX_ELEMENTS", 10)
    module = sys.modules["tinyseq.gradcheck"]
    monkeypatch.setattr(module, "numerical_jacobian", lambda *a, **k: pytest.fail("full mode used"))
    big = t((50,))
    assert gradcheck(Square.apply, [big]) is True
    with pytest.raises(GradcheckError, match="directional"):
        gradcheck(WrongSquare.apply, [big])
    monkeypatch.undo()
    monkeypatch.setattr(config, "GRADCHECK_FULL_MAX_ELEMENTS", 10)
    with pytest.raises(GradcheckError, match="full"):
        gradcheck(WrongSquare.apply, [t((5,))], mode="auto")


def test_tolerances_read_from_config(monkeypatch):
    monkeypatch.setattr(config, "GRADCHECK_RTOL", 1.0)
    assert gradcheck(WrongSquare.apply, [t((3,))]) is True


def test_unknown_mode_raises_value_error():
    with pytest.raises(ValueError, match="mode"):
        gradcheck(Square.apply, [t((3,))], mode="bogus")


@pytest.mark.parametrize("mode", ["auto", "full", "directional"])
def test_fn_returning_a_python_number_is_a_type_error(mode):
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(TypeError, match="gradcheck: fn must return a Tensor, got float"):
        gradcheck(lambda t: float(t.data.sum()), [x], mode=mode)
