"""Module and Parameter: the containers every layer is built from.

A ``Module`` finds its parameters and sub-modules by looking at its own attributes, in
the order they were set: a ``Parameter`` attribute is a parameter, a ``Module``
attribute (or a list/tuple of them) is a child. So names come out as PyTorch's do:
``weight_ih_l0``, ``encoder.weight``, ``layers.1.bias``.
"""

from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .. import config
from .._checks import check_int  # noqa: F401  (the layers import it from here)
from ..tensor import Tensor, as_array, to_arguments


class Parameter(Tensor):
    """A tensor that is a model's weight: requires grad and is found by ``Module.parameters``."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


#: The dtypes a module's parameters may have (the fused kernels compute in these two).
PARAMETER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(name, dtype):
    """``dtype`` (None: the default float32) as a NumPy dtype if it is one of ``PARAMETER_DTYPES``,
    else a TypeError naming ``name``."""
    if dtype is None:  # PyTorch's "the default dtype" (NOTE: np.dtype(None) would be float64)
        return np.dtype(config.DEFAULT_DTYPE)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in PARAMETER_DTYPES:
        raise TypeError(f"{name}: dtype must be float32 or float64, got {dt}")
    return dt


def as_input(name, x, dtype, what="input"):
    """``x`` as a Tensor of the parameters' ``dtype``, for a module's forward.

    Python numbers and lists are converted; a Tensor or array of another dtype is refused
    with a TypeError (as PyTorch refuses a float64 input to a float32 layer): no silent
    promotion, so a model computes in the dtype of its parameters.
    """
    if not isinstance(x, (Tensor, np.ndarray)):
        x = np.asarray(x, dtype=dtype)
    x = x if isinstance(x, Tensor) else Tensor(x)
    if x.dtype != dtype:
        module_too = f" or the module with .to(np.{x.dtype.name})" if x.dtype in PARAMETER_DTYPES else ""
        raise TypeError(f"{name}: {what} has dtype {x.dtype} but the parameters are {dtype}; "
                        f"convert the {what} to {dtype.name}{module_too}")
    return x


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: subclasses set attributes and define ``forward``."""

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------ traversal

    def _members(self, kind):
        """(name, value) for each attribute of type ``kind``, in definition order, aliases
        included; list/tuple entries are named ``attr.i``."""
        for name, value in vars(self).items():
            if isinstance(value, kind):
                yield name, value
            elif isinstance(value, (list, tuple)):
                yield from ((f"{name}.{i}", item) for i, item in enumerate(value) if isinstance(item, kind))

    def named_children(self):
        """(name, module) for each direct sub-module, each once."""
        seen = set()
        for name, child in self._members(Module):
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix="", memo=None):
        """(dotted name, module) for this module and every module below it, each module once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) in definition order, each parameter once."""
        seen = set()
        for name, p in self._state_items(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _state_items(self, prefix=""):
        """Every (dotted name, Parameter), a shared one under each of its names (as PyTorch's
        state_dict lists tied weights)."""
        dot = f"{prefix}." if prefix else ""
        for name, p in self._members(Parameter):
            yield dot + name, p
        for name, child in self._members(Module):
            yield from child._state_items(dot + name)

    def parameters(self):
        """The parameters, each once, as a generator (as PyTorch): ``list(model.parameters())``
        to go through them twice or count them."""
        return (p for _, p in self.named_parameters())

    # ------------------------------------------------------------ modes and dtype

    def train(self, mode=True):
        """Set training mode (dropout active) on this module and all below; returns self."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Set every parameter's ``.grad`` to None."""
        for p in self.parameters():
            p.grad = None

    def to(self, *args, dtype=None):
        """Convert every parameter to a dtype, float32 or float64 (e.g. ``np.float64`` for
        gradient checks); returns self. Takes PyTorch's forms: ``to(dtype)``, ``to("cpu")``
        (host memory is the only device), ``to("cpu", dtype)``, ``to(dtype=...)``."""
        owner = f"{type(self).__name__}.to"
        dtype = to_arguments(owner, args, dtype)
        if dtype is None:
            return self
        dtype = check_dtype(owner, dtype)
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None if p.grad is None else p.grad.data.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ------------------------------------------------------------ state

    def state_dict(self):
        """Ordered name -> NumPy array (a copy) for every parameter; a parameter shared by
        two attributes (tied weights) appears under both names, as in PyTorch."""
        return OrderedDict((name, p.data.copy()) for name, p in self._state_items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters (cast to each parameter's dtype).

        Everything is checked before anything is written, so a failed load leaves the
        module unchanged. With ``strict=True`` missing or unexpected keys are errors; shape
        mismatches always are. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict of name -> array, "
                            f"got {type(state_dict).__name__}")
        params = OrderedDict(self._state_items())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        arrays = {}
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            arr = as_array(value)
            if arr.shape != p.shape:
                problems.append(f"shape mismatch for {name}: expected {p.shape}, got {arr.shape}")
            elif arr.dtype.kind not in "fiu":
                problems.append(f"dtype of {name}: expected a numeric array, got {arr.dtype}")
            else:
                arrays[name] = arr
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, arr in arrays.items():
            params[name].data[...] = arr  # in place: whoever holds the array sees the new values
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ repr

    def extra_repr(self):
        """The text inside the parentheses of this module's repr."""
        return ""

    def __repr__(self):
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
