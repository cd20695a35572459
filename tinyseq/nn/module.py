"""Module and Parameter: the containers every layer is built from.

A ``Module`` finds its parameters and sub-modules by looking at its own attributes, in
the order they were set: a ``Parameter`` attribute is a parameter, a ``Module``
attribute (or a list/tuple of them) is a child. So names come out as PyTorch's do:
``weight_ih_l0``, ``encoder.weight``, ``layers.1.bias``. A buffer is a Tensor attribute
named by ``register_buffer``: state that is not trained (running statistics, say).
"""

import itertools
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .. import config
from .._checks import check_int  # noqa: F401  (the layers import it from here)
from ..tensor import ParameterData, Tensor, as_array, mark_changed, to_arguments


_DATA_SLOT = Tensor.data  # the slot's descriptor: Parameter's ``data`` property reads and writes through it


def _set_data(p, value):
    # NOTE: `p.data -= x` ends by assigning back what __isub__ returned, the same ParameterData: kept as is
    if not isinstance(value, ParameterData):
        value = as_array(value).view(ParameterData)
    _DATA_SLOT.__set__(p, value)


class Parameter(Tensor):
    """A tensor that is a model's weight: requires grad and is found by ``Module.parameters``.

    Its ``.data`` is a ``ParameterData``: the NumPy array of its values (shared, not copied)
    that also takes PyTorch's in-place methods outside the graph, so the classic manual
    update ``p.data.add_(p.grad, alpha=-lr)`` works, and that counts every in-place change
    (``p.data -= lr * g`` too) so a backward through values changed since its forward raises.
    Assigning ``p.data = array`` keeps that (the new array becomes the parameter's memory).
    """

    __slots__ = ()

    data = property(_DATA_SLOT.__get__, _set_data, doc=ParameterData.__doc__)

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


def _parameters(module):
    return module._members(Parameter)


def _buffers(module):
    return module._own_buffers()


def _state(module):
    return itertools.chain(module._members(Parameter), module._own_buffers(persistent_only=True))


def _once(items):
    """The (name, tensor) pairs of ``items`` whose tensor has not come before."""
    seen = set()
    for name, t in items:
        if id(t) not in seen:
            seen.add(id(t))
            yield name, t


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
        return _once(self._walk(prefix, _parameters))

    def parameters(self):
        """The parameters, each once, as a generator (as PyTorch): ``list(model.parameters())``
        to go through them twice or count them."""
        return (p for _, p in self.named_parameters())

    def named_buffers(self, prefix=""):
        """(dotted name, buffer Tensor) in registration order, each buffer once; non-persistent
        buffers too, None buffers not."""
        return _once(self._walk(prefix, _buffers))

    def buffers(self):
        """The buffers, each once, as a generator."""
        return (b for _, b in self.named_buffers())

    def register_buffer(self, name, tensor, persistent=True):
        """Keep ``tensor`` (a Tensor, or None for a slot filled later) as the attribute ``name``
        and as a buffer: state that is no parameter, in ``state_dict`` unless
        ``persistent=False``, converted by ``.to(dtype)`` when it is floating point. Assigning
        the attribute again later keeps it a buffer, as in PyTorch."""
        owner = f"{type(self).__name__}.register_buffer"
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{owner}: a buffer name must be a non-empty string without '.', got {name!r}")
        flags = vars(self).setdefault("_buffer_names", {})
        if hasattr(self, name) and name not in flags:
            raise KeyError(f"{owner}: attribute {name!r} already exists")
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            got = "a Parameter (assign it as an attribute to make it a parameter)" if isinstance(tensor, Parameter) \
                else type(tensor).__name__
            raise TypeError(f"{owner}: buffer {name!r} must be a Tensor or None, got {got}")
        flags[name] = bool(persistent)
        setattr(self, name, tensor)

    def _own_buffers(self, persistent_only=False):
        """(name, Tensor) for this module's own buffers that hold a Tensor, in registration order."""
        attrs = vars(self)
        for name, persistent in attrs.get("_buffer_names", {}).items():
            if isinstance(attrs.get(name), Tensor) and (persistent or not persistent_only):
                yield name, attrs[name]

    def _walk(self, prefix, own):
        """(dotted name, tensor) for ``own(module)`` of this module and of every module below it,
        in definition order; a shared tensor under each of its names (as PyTorch's state_dict
        lists tied weights)."""
        dot = f"{prefix}." if prefix else ""
        for name, t in own(self):
            yield dot + name, t
        for name, child in self._members(Module):
            yield from child._walk(dot + name, own)

    def _state_items(self, prefix=""):
        """Every (dotted name, Parameter), a shared one under each of its names."""
        return self._walk(prefix, _parameters)

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module, children first (recursively), then on this
        module; returns self. As PyTorch: ``model.apply(init_weights)``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter (False freezes the module); returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

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
        floating_buffers = (b for b in self.buffers() if b.dtype.kind == "f")
        for t in itertools.chain(self.parameters(), floating_buffers):
            t.data = t.data.astype(dtype)
            t.grad = None if t.grad is None else t.grad.data.astype(dtype)
        return self

    def double(self):
        """``to(np.float64)``."""
        return self.to(np.float64)

    def float(self):
        """``to(np.float32)``."""
        return self.to(np.float32)

    def half(self):
        """Refused: float16 is not supported (parameters are float32 or float64, the dtypes the
        fused kernels compute in)."""
        raise TypeError(f"{type(self).__name__}.half: float16 is not supported; tinyseq parameters are float32 "
                        "or float64 (use .float() or .double())")

    # ------------------------------------------------------------ state

    def state_dict(self):
        """Ordered name -> NumPy array (a copy) for every parameter and persistent buffer (each
        module's parameters, then its buffers, then its children's, as PyTorch); a parameter
        shared by two attributes (tied weights) appears under both names, as in PyTorch."""
        return OrderedDict((name, t.data.copy()) for name, t in self._walk("", _state))

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and persistent buffers (cast to each one's dtype).

        Everything is checked before anything is written, so a failed load leaves the
        module unchanged. With ``strict=True`` missing or unexpected keys are errors; shape
        mismatches always are. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict of name -> array, "
                            f"got {type(state_dict).__name__}")
        params = OrderedDict(self._walk("", _state))
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
            elif arr.dtype.kind not in "fiub":
                problems.append(f"dtype of {name}: expected a numeric array, got {arr.dtype}")
            else:
                arrays[name] = arr
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, arr in arrays.items():
            params[name].data[...] = arr  # in place: whoever holds the array sees the new values
            mark_changed(params[name].data, "load_state_dict")
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
