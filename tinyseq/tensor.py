"""Tensor and the reverse-mode engine.

A ``Tensor`` wraps a NumPy array. Every differentiable operation is a ``Function``
subclass (see ``ops.py``): ``apply`` runs its ``forward`` on arrays and, when a gradient
is wanted, records the function as the output's ``_ctx`` together with its input tensors.
``Tensor.backward`` walks that graph from the output back to the leaves in reverse
topological order, calling each function's ``backward`` once with the summed gradient
of its output.
"""

import contextlib
import functools
import itertools
import weakref
from heapq import heappop, heappush

import numpy as np

from . import config

# ---------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled():
    """True while operations record the graph: not inside ``no_grad()`` or ``inference_mode()``,
    nor after ``set_grad_enabled(False)``."""
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: operations inside it record no graph.

    >>> with tinyseq.no_grad():
    ...     y = model(x)          # y.requires_grad is False

    NOTE: grad mode is one switch for the whole process, not one per thread.
    """

    _mode = False

    def __init__(self):
        self._prev = []  # a stack, so one instance can be re-entered (recursive decorated calls)

    def __enter__(self):
        global _grad_enabled
        self._prev.append(_grad_enabled)
        _grad_enabled = self._mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev.pop()
        return False


class enable_grad(no_grad):
    """The opposite of ``no_grad``: record the graph even inside a ``no_grad`` block."""

    _mode = True


class set_grad_enabled(no_grad):
    """Switch recording on (``mode=True``) or off, as ``torch.set_grad_enabled``.

    Called alone, ``tinyseq.set_grad_enabled(False)`` switches at once and stays switched;
    ``with tinyseq.set_grad_enabled(mode):`` switches back on leaving the block; and
    ``@tinyseq.set_grad_enabled(mode)`` sets the mode only while the decorated function runs.
    """

    def __init__(self, mode):
        super().__init__()
        global _grad_enabled
        self._mode = bool(mode)
        self._prev.append(_grad_enabled)  # what a ``with`` block's exit goes back to
        self._switched = True
        _grad_enabled = self._mode

    def __enter__(self):
        if self._switched:  # __init__ has switched already and saved the mode before it
            self._switched = False
            return self
        return super().__enter__()

    def __call__(self, fn):
        global _grad_enabled
        if self._switched:  # a decorator: undo the switch __init__ made
            self._switched = False
            _grad_enabled = self._prev.pop()
        return super().__call__(fn)


class inference_mode(no_grad):
    """``inference_mode()`` (or ``inference_mode(True)``) is ``no_grad``; ``inference_mode(False)``
    records, as ``enable_grad`` (PyTorch's meaning). A context manager and a decorator, with or
    without parentheses, as in PyTorch.

    NOTE: PyTorch's inference mode also makes "inference tensors" that can never enter a
    graph later; here tensors made inside it are ordinary tensors (no graph, as under
    ``no_grad``), usable in autograd afterwards.
    """

    def __new__(cls, mode=True):
        if callable(mode):  # bare ``@inference_mode``
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        super().__init__()
        self._mode = not mode


# ---------------------------------------------------------------- PyTorch's argument names

_TORCH_NAMES = (("dim", "axis"), ("keepdim", "keepdims"))


def torch_names(fn):
    """Let ``fn`` take PyTorch's keyword names too: ``dim=`` for ``axis=``, ``keepdim=`` for ``keepdims=``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for torch_name, name in _TORCH_NAMES:
            if torch_name in kwargs:
                if name in kwargs:
                    raise TypeError(f"{fn.__name__}: got both {name}= and {torch_name}=; pass one")
                kwargs[name] = kwargs.pop(torch_name)
        return fn(*args, **kwargs)

    wrapper.__doc__ = (fn.__doc__ or "") + "\n\n(Also takes PyTorch's names: dim= for axis=, keepdim= for keepdims=.)"
    return wrapper


_DEVICES = ("cpu", "cuda", "mps", "meta", "xpu")


def to_arguments(owner, args, dtype=None):
    """The dtype that PyTorch-style ``to(...)`` arguments ask for (None: keep it).

    ``args`` may hold a dtype and the device "cpu"; tinyseq arrays live in host memory, so
    any other device is refused.
    """
    for arg in args:
        if isinstance(arg, str) and arg.split(":")[0] in _DEVICES:
            if arg.split(":")[0] != "cpu":
                raise ValueError(f"{owner}: tinyseq arrays live in host memory ('cpu'), got {arg!r}; "
                                 "a GPU runs recurrent layers through backend='cuda' instead")
        elif dtype is None and arg is not None:
            dtype = arg
        else:
            raise TypeError(f"{owner}: expected a dtype and/or 'cpu', got {args!r}")
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: expected a dtype or 'cpu', got {dtype!r}") from None


# ---------------------------------------------------------------- in-place changes

# Every in-place change of an array's values adds one to _changes, and _changed remembers, per
# memory owner (a tensor's views and detached copies share it), how often and when it changed
# last. Function.apply stamps each recorded op with _changes; backward compares the stamp with
# _changes (one comparison while nothing changed) and only then looks up the op's tensors.
_changes = 0
_changed = {}  # id(owner array) -> [weakref to it, version, _changes at its last change, op name]


def _owner(array):
    """The array that owns ``array``'s memory (itself unless it is a view)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _change_entry(array):
    owner = _owner(array)
    entry = _changed.get(id(owner))
    return entry if entry is not None and entry[0]() is owner else None


def mark_changed(array, op):
    """Record that ``op`` (a name for messages) changed ``array``'s values in place: a backward
    through a graph that used them before the change then raises instead of computing a
    wrong gradient. The in-place Tensor methods, optimizers and ``load_state_dict`` call it."""
    global _changes
    if _tracer is not None:
        _tracer.changed(op)
    _changes += 1
    entry = _change_entry(array)
    if entry is None:
        owner = _owner(array)
        key = id(owner)  # NOTE: the callback drops the entry when the owner dies, before its id is reused
        entry = _changed[key] = [weakref.ref(owner, lambda _, key=key: _changed.pop(key, None)), 0, 0, op]
    entry[1], entry[2], entry[3] = entry[1] + 1, _changes, op


def _constants(params):
    """(name, array) for each array among an op's keyword arguments (a mask, indices, targets;
    one level into tuples, for an index): backward uses them as they are, so they are checked too."""
    for name, value in params.items():
        for v in value if value.__class__ is tuple else (value,):
            if v.__class__ is np.ndarray:
                yield name, v


def _check_unchanged(fn, output):
    """Raise if an input, an array argument or the output of ``fn`` changed in place after
    ``fn``'s forward ran."""
    checked = [(f"input {i}", t.data) for i, t in enumerate(fn.parents)]
    checked += [(f"the {name} argument", a) for name, a in _constants(fn.params)] + [("the output", output.data)]
    for what, array in checked:
        entry = _change_entry(array)
        if entry is not None and entry[2] > fn.stamp:
            raise RuntimeError(
                "backward: one of the tensors needed for gradient computation has been modified by an in-place "
                f"operation: {what} of {type(fn).__name__} (shape {array.shape}) was changed by {entry[3]} after the "
                f"forward pass used it; it is now at version {entry[1]}. Change it after backward, or use the "
                "out-of-place form"
            )


# ---------------------------------------------------------------- tracing (tinyseq_jit's compiler)

_tracer = None  # the object that tracing() installed, or None: every hook below is one test of it


@contextlib.contextmanager
def tracing(tracer):
    """Report what the code inside does to ``tracer``, for ``tinyseq_jit.compiler.trace``:

    - ``tracer.op(fn, out)`` after every recorded op (``fn`` the Function, ``out`` its output);
    - ``tracer.value_read(tensor, what)`` when Python reads a tensor's values (``bool()``,
      ``float()``, ``int()``, ``.item()``, ``.numpy()``, ``.tolist()``, ``np.asarray()``);
    - ``tracer.changed(op)`` on every in-place change (``mark_changed``);
    - ``tracer.compared(name, a, b, out)`` for every comparison (``ops.lt`` ...).

    A hook may raise to refuse what it sees. Outside the block nothing is reported and each
    hook costs one test of a module global. NOTE: one tracer for the whole process (as
    grad mode), and blocks do not nest.
    """
    global _tracer
    if _tracer is not None:
        raise RuntimeError("tracing: already tracing; tracing() blocks do not nest")
    _tracer = tracer
    try:
        yield tracer
    finally:
        _tracer = None


def is_tracing():
    """True inside a ``tracing()`` block (ops that the compiler does not take stay out of it)."""
    return _tracer is not None


def _value_read(tensor, what):
    if _tracer is not None:
        _tracer.value_read(tensor, what)


# ---------------------------------------------------------------- Function

# Every tensor gets the next number at creation. An op's output is always made after its
# inputs, so visiting nodes from the highest number down is a topological order.
_creation_order = itertools.count()


def creation_mark():
    """A number above every tensor's made so far and below every one made after: where a
    piece of the graph (such as one unrolled time step) starts (``tinyseq.viz``)."""
    return next(_creation_order)


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` right under it.

    Subclasses implement ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad) -> gradient or tuple of gradients``, one per tensor input
    (``None`` where an input needs none). ``self.save(...)`` keeps what backward needs;
    ``self.needs_input_grad`` says which inputs want a gradient.
    Use ``Op.apply(*tensors, **params)``; never call ``forward`` directly.
    """

    def save(self, *values):
        """Keep values for backward; read them back as ``self.saved``."""
        self.saved = values

    def forward(self, *args, **params):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on tensors (arrays and scalars are wrapped) and record it if needed."""
        tensors, arrays, needs = [], [], []
        for x in inputs:  # NOTE: one loop, not three list comprehensions: half the time for two inputs
            if x.__class__ is Tensor:
                arrays.append(x.data)
            elif isinstance(x, Tensor):
                arrays.append(np.asarray(x.data))  # a Parameter's ParameterData: ops see plain arrays
            else:
                x = Tensor(x)
                arrays.append(x.data)
            tensors.append(x)
            needs.append(x.requires_grad)
        fn = cls()
        fn.needs_input_grad = needs
        data = fn.forward(*arrays, **params)
        if data.__class__ is not np.ndarray:
            data = np.asarray(data)
        if _grad_enabled and True in needs:
            fn.parents = tensors
            fn.params = params
            fn.released = False
            fn.stamp = _changes
            out = _new_tensor(Tensor)._init(data, fn)
            if _tracer is not None:  # NOTE: one global test on the recording path only; see tracing()
                _tracer.op(fn, out)
            return out
        return _new_tensor(Tensor)._init(data, None)


class IndexedGrad:
    """A gradient that is zero except at ``index``, where it is ``values``.

    ``backward`` of an indexing op may return one instead of a dense array; the engine
    adds it straight into the input's gradient buffer, so taking T slices of a (T, ...)
    tensor costs O(T) in backward, not O(T^2) for T zero-filled copies.
    """

    __slots__ = ("index", "values", "shape", "basic")

    def __init__(self, index, values, shape, basic):
        self.index, self.values, self.shape, self.basic = index, values, shape, basic

    def add_into(self, buffer):
        """Add the values into ``buffer`` (repeated advanced indices accumulate); returns it."""
        index, values = self.index, self.values
        if self.basic:
            buffer[index] += values
        elif _wide_rows(index, values, buffer):
            _add_rows(buffer, index.ravel() % buffer.shape[0], values.reshape(index.size, -1))
        else:
            np.add.at(buffer, index, values)
        return buffer


def _wide_rows(index, values, buffer):
    """True when ``index`` is one integer array picking whole rows of 16 or more elements
    (an embedding's backward) from a C-contiguous ``buffer``."""
    return (index.__class__ is np.ndarray and index.dtype.kind in "iu" and buffer.flags.c_contiguous
            and values.size >= 16 * index.size > 0)


def _add_rows(buffer, rows, values):
    """``np.add.at(buffer, rows, values)`` for whole rows, by sorting.

    NOTE: np.add.at goes element by element: for a (2048, 64) gradient into 96 rows it took
    1.5 ms against 0.2 ms here. ``rows`` must lie in [0, len(buffer)). The sums are
    deterministic but may differ from np.add.at's in the last bits (reduceat's order).
    """
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    flat = buffer.reshape(buffer.shape[0], -1)
    flat[rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


# ---------------------------------------------------------------- Tensor


def _holds_tensor(data):
    """True for a (nested) list or tuple with a Tensor in it."""
    return isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) or _holds_tensor(x) for x in data)


def _to_array(data, dtype):
    if isinstance(data, Tensor):
        data = data.data
    elif _holds_tensor(data):
        # NOTE: NumPy would read each Tensor's data and silently cut it from the graph.
        raise TypeError(f"Tensor: got a {type(data).__name__} of Tensors; join them with ts.stack or ts.cat, "
                        "which keep the graph")
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray):
        return data if data.__class__ is np.ndarray else np.asarray(data)  # a ParameterData: a plain view
    if isinstance(data, np.generic):
        return np.asarray(data)
    arr = np.asarray(data)
    if arr.dtype.kind in "iufb" and arr.dtype != np.bool_:
        # Python scalars and lists become the default float dtype, as the README says.
        return arr.astype(config.DEFAULT_DTYPE)
    return arr


class _HookHandle:
    """Returned by ``register_hook``; ``remove()`` takes the hook off again."""

    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


class _InPlaceMethods:
    """PyTorch's in-place methods, for Tensor and for a Parameter's ``.data`` (``ParameterData``):
    each writes through ``self._in_place(op, fn, *args)`` and returns self."""

    __slots__ = ()

    def add_(self, other, alpha=1):
        """``self += alpha * other`` in place; returns self."""
        return self._in_place("add_", lambda a, b: np.add(a, b if alpha == 1 else b * alpha, out=a), other)

    def sub_(self, other, alpha=1):
        """``self -= alpha * other`` in place; returns self."""
        return self._in_place("sub_", lambda a, b: np.subtract(a, b if alpha == 1 else b * alpha, out=a), other)

    def mul_(self, other):
        """``self *= other`` in place; returns self."""
        return self._in_place("mul_", lambda a, b: np.multiply(a, b, out=a), other)

    def div_(self, other):
        """``self /= other`` in place; returns self."""
        return self._in_place("div_", lambda a, b: np.true_divide(a, b, out=a), other)

    def clamp_(self, min=None, max=None):
        """Clip the values into [min, max] in place (either bound may be None); returns self."""
        if min is None and max is None:
            raise ValueError("clamp_: at least one of min and max must be given")
        return self._in_place("clamp_", lambda a, lo, hi: np.clip(a, lo, hi, out=a), min, max)

    clip_ = clamp_

    def copy_(self, src):
        """Copy ``src``'s values (broadcast, converted to this dtype) into this tensor; returns self."""
        return self._in_place("copy_", lambda a, b: np.copyto(a, b, casting="unsafe"), src)

    def fill_(self, value):
        """Set every element to ``value`` (a number or a one-element tensor); returns self."""
        if as_array(value).size != 1:
            raise ValueError(f"fill_: expected a number or a one-element tensor, got shape {as_array(value).shape}")
        return self._in_place("fill_", lambda a, v: np.copyto(a, v.reshape(()), casting="unsafe"), value)

    def zero_(self):
        """Set every element to 0; returns self."""
        return self.fill_(0)


def _write(op, target, fn, args):
    """Run ``fn(target, *arrays)``, which writes into its first argument: the one path of every
    in-place method. ``args`` (tensors, arrays, numbers or None) must broadcast to ``target``'s
    shape; the change is counted once (see ``mark_changed``)."""
    arrays = [None if a is None else as_array(a) for a in args]
    for a in arrays:
        if a is not None and not _broadcasts_to(a.shape, target.shape):
            raise ValueError(f"{op}: cannot broadcast shape {a.shape} to this tensor's shape {target.shape}")
    try:
        fn(np.asarray(target), *arrays)  # a plain view: ParameterData's own hook would count the change again
    except TypeError as e:  # NumPy's casting error, e.g. a float into an int tensor
        raise TypeError(f"{op}: {e}") from None
    mark_changed(target, op)


def _plain(x):
    """``x`` with every ParameterData in it (also in a list or tuple) as a plain view of its memory."""
    if isinstance(x, ParameterData):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        return type(x)(map(_plain, x))
    return x


def _call_plain(call, args, kwargs, written, op):
    """``call(*args, **kwargs)`` (a NumPy function) on plain arrays; each ParameterData it writes
    into (``written``, or given as ``out=``) counts a change named ``op`` and comes back as the
    result, so ``p.data -= x`` leaves ``p.data`` the same object."""
    out = kwargs.get("out")
    result = call(*_plain(args), **{name: _plain(value) for name, value in kwargs.items()})
    outs = out if isinstance(out, tuple) else (out,)
    for array in (*written, *outs):
        if isinstance(array, ParameterData):
            mark_changed(array, op)
    if out is None:
        return result
    return outs[0] if len(outs) == 1 else out


_WRITE_FIRST = {np.copyto, np.place, np.put, np.putmask, np.put_along_axis, np.fill_diagonal}  # write into args[0]


class ParameterData(_InPlaceMethods, np.ndarray):
    """A Parameter's ``.data``: a NumPy array (it is one, sharing the parameter's memory) that
    also takes the in-place Tensor methods, so PyTorch's manual update works unchanged::

        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)

    ``add_(other, alpha=1)``, ``sub_(other, alpha=1)``, ``mul_``, ``div_``, ``clamp_``, ``copy_``,
    ``fill_`` and ``zero_`` take tensors, arrays or numbers and return the array itself. They,
    NumPy's in-place operators (``p.data -= lr * g``, ``+=``, ``*=``, ``/=``, ``out=`` of a ufunc),
    item assignment (``p.data[...] = x``), ``np.copyto(p.data, x)`` (and ``np.put``, ``np.putmask``, ...)
    and ``p.data.fill(v)`` never enter the graph, but each counts a change of
    the parameter's version: a ``backward`` through a graph whose forward used the old values
    raises instead of computing a wrong gradient. Everything else gives plain ``np.ndarray``:
    arithmetic (``p.data * 2``, ``np.tanh(p.data)``), ``copy()``, ``astype()``, reductions, and
    the arrays that ops, state dicts, checkpoints and the fused kernels see.
    """

    def _in_place(self, op, fn, *args):
        _write(f"data.{op}", self, fn, args)
        return self

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        written = inputs[:1] if method == "at" else ()  # ufunc.at writes into its first input
        return _call_plain(getattr(ufunc, method), inputs, kwargs, written, f"in-place np.{ufunc.__name__} on .data")

    def __array_function__(self, func, types, args, kwargs):
        # np.zeros_like(p.data), np.concatenate([p.data, ...]), ...: plain arrays too (an
        # optimizer's state made with zeros_like would otherwise be a ParameterData)
        written = args[:1] if func in _WRITE_FIRST else ()
        return _call_plain(func, args, kwargs, written, f"np.{func.__name__}(out=.data)")

    # NOTE: NumPy refuses a Tensor operand in `array -= tensor` (Tensor.__array_ufunc__ is None, for
    # `array - tensor`); here its values are read, as PyTorch's `p.data -= lr * p.grad` reads them.
    # NOTE: straight to the ufunc on a plain view, not through __array_ufunc__ (4.2 us against 1.1 us
    # for `p.data -= tmp`, which every optimizer step runs once per parameter).
    def _in_place_operator(ufunc):  # noqa: N805  (runs in the class body)
        op = f"in-place np.{ufunc.__name__} on .data"

        def operator(self, other):
            plain = np.asarray(self)
            ufunc(plain, as_array(other) if isinstance(other, Tensor) else _plain(other), out=plain)
            mark_changed(self, op)
            return self
        return operator

    __iadd__, __isub__ = _in_place_operator(np.add), _in_place_operator(np.subtract)
    __imul__, __itruediv__ = _in_place_operator(np.multiply), _in_place_operator(np.true_divide)
    del _in_place_operator

    def __setitem__(self, index, value):
        np.asarray(self)[index] = value
        mark_changed(self, ".data[...] =")

    def fill(self, value):
        """``ndarray.fill``, counted as a change."""
        np.asarray(self).fill(value)
        mark_changed(self, ".data.fill")

    def copy(self, order="C"):
        """A copy as a plain ``np.ndarray``."""
        return np.asarray(self).copy(order)

    def astype(self, *args, **kwargs):
        """``ndarray.astype``, as a plain ``np.ndarray``."""
        return np.asarray(self).astype(*args, **kwargs)

    def __repr__(self):
        return repr(np.asarray(self))


class Tensor(_InPlaceMethods):
    """An n-dimensional array that can record the operations applied to it.

    ``Tensor(data, requires_grad=False, dtype=None)``: a float NumPy array keeps its
    dtype (and is not copied); Python scalars and lists become float32; integer and
    bool arrays are allowed as data (indices, masks) but cannot require a gradient.

    After ``backward``, ``.grad`` is a Tensor that records no graph (as PyTorch's).
    In-place methods (``add_``, ``sub_``, ``mul_``, ``div_``, ``clamp_``, ``copy_``, ``fill_``,
    ``zero_``) change the values and return the tensor, on tensors that do not require grad
    or inside ``no_grad()``; as PyTorch, one on a leaf that requires grad outside ``no_grad``
    raises. NOTE (unlike PyTorch): one on a tensor made by an op that requires grad raises
    too instead of entering the graph; use the out-of-place op. Every in-place change counts
    a version, and ``backward`` raises if a tensor it needs changed after the forward used it
    (a view or a ``detach()`` copy changes the same memory, so it counts too; this is checked
    for every input of an op, also of ops that would not need the old values).

    ``.data`` is the NumPy array itself (shared, not copied; assigning it replaces the memory).
    A ``Parameter``'s ``.data`` also takes the in-place methods outside the graph
    (``p.data.add_(p.grad, alpha=-lr)``, see ``ParameterData``); another tensor's is a plain
    ``np.ndarray``, so there call the method on the tensor: ``t.add_(...)``, inside
    ``no_grad()`` if it requires grad.
    """

    __slots__ = ("data", "_grad", "requires_grad", "_ctx", "_hooks", "_retain", "_seq", "__weakref__")
    __array_ufunc__ = None  # so `ndarray <op> Tensor` defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None):
        if dtype is not None:
            dtype = np.dtype(dtype)
        array = _to_array(data, dtype)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: expected numeric data (bool, int, float or complex), got dtype "
                            f"{array.dtype} from {type(data).__name__}")
        self._init(array, None)
        if requires_grad:
            self.requires_grad_()

    def _init(self, data, ctx):
        """Set every slot; returns self. The one constructor path: ``__init__`` and
        ``Function.apply`` both end here, so a new slot is added here only.

        ``data`` must already be a checked ``np.ndarray`` (nothing is converted or copied);
        ``ctx`` is the ``Function`` that made the tensor (it then requires grad), or None.
        """
        self.data = data
        self._grad = None
        self.requires_grad = ctx is not None
        self._ctx = ctx
        self._hooks = None
        self._retain = False
        self._seq = next(_creation_order)
        return self

    # ------------------------------------------------------------ properties

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        """The number of dimensions (as ``ndim``)."""
        return self.data.ndim

    def size(self, dim=None):
        """The shape as a tuple, or the length of dimension ``dim`` (as PyTorch's ``size``)."""
        if dim is None:
            return self.data.shape
        return self.data.shape[_ops._axis(dim, self.ndim, "size")]

    def numel(self):
        """The number of elements."""
        return self.data.size

    @property
    def is_leaf(self):
        """True for tensors made by the user rather than by an op."""
        return self._ctx is None

    @property
    def grad_fn(self):
        """The ``Function`` that made this tensor (None for leaves and outside the graph)."""
        return self._ctx

    def __len__(self):
        return len(self.data)

    def _one_element(self, what):
        if self.data.size != 1:
            raise ValueError(f"{what} of a tensor with {self.data.size} elements is ambiguous; "
                             "reduce it to one element first")
        return self.data.reshape(())

    def __bool__(self):
        _value_read(self, "bool()")
        return bool(self._one_element("the truth value"))

    def __float__(self):
        _value_read(self, "float()")
        return float(self._one_element("float()"))

    def __int__(self):
        _value_read(self, "int()")
        return int(self._one_element("int()"))

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)`` gives the data (the same array unless a dtype or a copy is asked for)."""
        _value_read(self, "np.asarray()")
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def numpy(self):
        """The underlying NumPy array (shared, not copied)."""
        _value_read(self, ".numpy()")
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        _value_read(self, ".item()")
        if self.data.size != 1:
            raise ValueError(f"item: expected a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        """The data as (nested) Python lists of numbers."""
        _value_read(self, ".tolist()")
        return self.data.tolist()

    # ------------------------------------------------------------ autograd flags

    @property
    def grad(self):
        """The gradient that ``backward`` accumulated here: a Tensor of this tensor's shape and
        dtype that records no graph (``requires_grad=False``), or None (as PyTorch).

        ``backward`` adds into it in place until it is set to None (``zero_grad``). It may be
        assigned: None, a Tensor of the same shape and dtype (kept, not copied), or an array
        or nested list of the same shape, wrapped without a copy when it already has this
        tensor's dtype and converted to it otherwise. Another shape raises a RuntimeError, a
        Tensor of another dtype a TypeError (as PyTorch's "assigned grad has data of a
        different size/type").
        """
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                value = np.asarray(value, dtype=self.dtype)
                value = Tensor(value if value.flags.writeable else value.copy())  # backward adds into it
            elif value.dtype != self.dtype:
                raise TypeError(f"grad: assigned a gradient of dtype {value.dtype} to a tensor of dtype {self.dtype}")
            if value.shape != self.data.shape:
                raise RuntimeError(f"grad: assigned a gradient of shape {value.shape} "
                                   f"to a tensor of shape {self.shape}")
        self._grad = value

    def requires_grad_(self, requires_grad=True):
        """Mark a leaf tensor as wanting a gradient (in place); returns self."""
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"requires_grad: only floating-point tensors can require a gradient, got dtype {self.dtype}"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False): only leaf tensors can be changed; use detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """A new leaf tensor sharing this data, cut from the graph (no gradient flows back)."""
        return Tensor(self.data)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: tensor does not require grad")
        self._retain = True

    def register_hook(self, fn):
        """Call ``fn(grad)`` with this tensor's gradient during backward.

        ``fn`` gets the gradient as a Tensor that records no graph (as PyTorch's hooks do;
        ``np.asarray(grad)`` is its array, shared). If it returns a Tensor or an array of
        this tensor's shape, that replaces the gradient passed on; returning None keeps it.
        Returns a handle whose ``remove()`` takes the hook off.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        return _HookHandle(self._hooks, fn)

    def zero_grad(self):
        """Set ``.grad`` to None."""
        self._grad = None

    # ------------------------------------------------------------ in place
    # add_, sub_, ... come from _InPlaceMethods. Allowed on tensors that do not require grad and
    # inside no_grad(); each change bumps the version that backward checks.

    @property
    def _version(self):
        """How many in-place changes this tensor's memory has had (shared with its views and
        detached copies), as PyTorch's ``_version``."""
        entry = _change_entry(self.data)
        return 0 if entry is None else entry[1]

    def _in_place(self, op, fn, *args):
        """Run ``fn(self.data, *arrays)``, which writes into its first argument, after the checks
        every in-place op shares (``args`` are tensors, arrays or numbers broadcast to this
        shape, or None); count the change and return self."""
        if _tracer is not None:
            _tracer.changed(op)
        if _grad_enabled and (self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args)):
            if self.requires_grad and self._ctx is None:
                raise RuntimeError(f"{op}: a leaf tensor that requires grad is being used in an in-place operation; "
                                   "change it inside `with ts.no_grad():` (as an optimizer does)")
            raise RuntimeError(f"{op}: tinyseq does not record in-place operations in the graph (PyTorch does); "
                               f"use the out-of-place form (`{op[:-1]}`), or change it inside `with ts.no_grad():` "
                               "if no gradient should flow through the change")
        _write(op, self.data, fn, args)
        return self

    # ------------------------------------------------------------ backward

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``+=``, until zeroed).

        ``grad`` is the gradient of some scalar with respect to this tensor; it may be
        left out only when this tensor has one element. Unless ``retain_graph=True``,
        the graph's saved arrays are freed afterwards and a second backward through it
        raises an error.
        """
        grads = {self: _output_grad(self, grad)}  # tensor -> the sum of the gradients it got so far
        waiting = [(-self._seq, self)]  # the tensors in grads, in a heap: newest first (see _creation_order)
        owned = set()  # see _accumulate
        while waiting:
            node = heappop(waiting)[1]
            g = grads.pop(node)
            if node._hooks:
                g = _run_hooks(node, g)
            fn = node._ctx
            if fn is None or node._retain:
                g = _keep_grad(node, g)
                if fn is None:
                    continue
            for parent, pg in zip(fn.parents, _input_grads(fn, g, node)):
                if pg is not None and parent.requires_grad:
                    _accumulate(grads, waiting, owned, fn, parent, pg)
            if not retain_graph:
                _release(fn)

    # ------------------------------------------------------------ operators
    # Thin wrappers over ops.py; the maths lives there.

    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    # Augmented assignment changes the tensor in place, as in PyTorch, so `p -= lr * p.grad`
    # under no_grad updates the parameter (a new tensor would leave the model unchanged), and
    # on a leaf that requires grad outside no_grad it raises as add_ does. Where PyTorch would
    # record an in-place op in the graph (a tensor made by an op, or `total += loss` with a
    # `total` that does not require grad), it makes a new tensor: the gradient stays right.

    def _augmented(self, in_place, out_of_place, other):
        recorded = _grad_enabled and (self._ctx is not None or (
            not self.requires_grad and isinstance(other, Tensor) and other.requires_grad))
        if recorded or not self.data.flags.writeable:
            return out_of_place(self, other)
        return in_place(self, other)

    def __iadd__(self, other):
        return self._augmented(Tensor.add_, _ops.add, other)

    def __isub__(self, other):
        return self._augmented(Tensor.sub_, _ops.sub, other)

    def __imul__(self, other):
        return self._augmented(Tensor.mul_, _ops.mul, other)

    def __itruediv__(self, other):
        return self._augmented(Tensor.div_, _ops.div, other)

    def __pow__(self, other):
        return _ops.pow(self, other)

    def __rpow__(self, other):
        return _ops.pow(other, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __abs__(self):
        return _ops.abs(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # Comparisons give plain (non-differentiable) bool tensors, handy for masks.
    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    # NOTE: elementwise == (as PyTorch) would make tensors unhashable; they hash by identity.
    __hash__ = object.__hash__

    # ------------------------------------------------------------ methods

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def abs(self):
        return _ops.abs(self)

    def tanh(self):
        return _ops.tanh(self)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def relu(self):
        return _ops.relu(self)

    def leaky_relu(self, negative_slope=0.01):
        return _ops.leaky_relu(self, negative_slope)

    def clip(self, min=None, max=None):
        return _ops.clip(self, min, max)

    clamp = clip

    def maximum(self, other):
        return _ops.maximum(self, other)

    def minimum(self, other):
        return _ops.minimum(self, other)

    # Reductions take ``axis``/``keepdims`` or PyTorch's ``dim``/``keepdim``.

    @torch_names
    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis, keepdims)

    @torch_names
    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis, keepdims)

    @torch_names
    def norm(self, p=2, axis=None, keepdims=False):
        """The ``p``-norm over ``axis`` (``ops.norm``): ``t.grad.norm()`` as in PyTorch."""
        return _ops.norm(self, p, axis, keepdims)

    @torch_names
    def max(self, axis=None, keepdims=False):
        """The maximum, or with an int ``axis`` the named tuple ``(values, indices)`` (as PyTorch)."""
        return _ops.max(self, axis, keepdims)

    @torch_names
    def min(self, axis=None, keepdims=False):
        """The minimum, or with an int ``axis`` the named tuple ``(values, indices)`` (as PyTorch)."""
        return _ops.min(self, axis, keepdims)

    @torch_names
    def amax(self, axis=None, keepdims=False):
        return _ops.amax(self, axis, keepdims)

    @torch_names
    def amin(self, axis=None, keepdims=False):
        return _ops.amin(self, axis, keepdims)

    @torch_names
    def argmax(self, axis=None, keepdims=False):
        return _ops.argmax(self, axis, keepdims)

    @torch_names
    def argmin(self, axis=None, keepdims=False):
        return _ops.argmin(self, axis, keepdims)

    @torch_names
    def var(self, axis=None, keepdims=False, correction=1):
        return _ops.var(self, axis, keepdims, correction)

    @torch_names
    def logsumexp(self, axis=None, keepdims=False):
        return _ops.logsumexp(self, axis, keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    view = reshape

    def transpose(self, *axes, dim0=None, dim1=None):
        return _ops.transpose(self, *axes, dim0=dim0, dim1=dim1)

    def permute(self, *axes):
        return _ops.permute(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)

    @property
    def T(self):
        return _ops.permute(self, tuple(range(self.ndim))[::-1])

    def expand(self, *shape):
        return _ops.expand(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def broadcast_to(self, shape):
        return _ops.expand(self, shape)

    @torch_names
    def squeeze(self, axis=None):
        return _ops.squeeze(self, axis)

    @torch_names
    def unsqueeze(self, axis):
        return _ops.unsqueeze(self, axis)

    @torch_names
    def split(self, split_size_or_sections, axis=0):
        return _ops.split(self, split_size_or_sections, axis)

    @torch_names
    def chunk(self, chunks, axis=0):
        return _ops.chunk(self, chunks, axis)

    @torch_names
    def softmax(self, axis=-1):
        return _ops.softmax(self, axis)

    @torch_names
    def log_softmax(self, axis=-1):
        return _ops.log_softmax(self, axis)

    # ------------------------------------------------------------ more of PyTorch's op methods

    @torch_names
    def std(self, axis=None, keepdims=False, correction=1):
        """Standard deviation (``tinyseq.std``); correction=1 by default, as PyTorch."""
        return _ops.std(self, axis, keepdims, correction)

    @torch_names
    def cumsum(self, axis):
        """Running sums along ``axis`` (``tinyseq.cumsum``)."""
        return _ops.cumsum(self, axis)

    @torch_names
    def sort(self, axis=-1, descending=False, stable=False):
        """The named tuple ``(values, indices)`` sorted along ``axis``, stably (``tinyseq.sort``)."""
        return _ops.sort(self, axis, descending, stable)

    @torch_names
    def topk(self, k, axis=-1, largest=True, sorted=True):
        """The named tuple ``(values, indices)`` of the ``k`` largest (or smallest) along ``axis`` (``tinyseq.topk``)."""
        return _ops.topk(self, k, axis, largest, sorted)

    def masked_fill(self, mask, value):
        """``value`` where the bool ``mask`` is true, else this tensor (``tinyseq.masked_fill``)."""
        return _ops.masked_fill(self, mask, value)

    def flatten(self, start_dim=0, end_dim=-1):
        """Axes ``start_dim`` to ``end_dim`` merged into one (``tinyseq.flatten``)."""
        return _ops.flatten(self, start_dim, end_dim)

    @torch_names
    def narrow(self, axis, start, length):
        """``length`` entries along ``axis`` from ``start`` (``tinyseq.narrow``)."""
        return _ops.narrow(self, axis, start, length)

    def t(self):
        """The transpose of a matrix; a 0-D or 1-D tensor itself (``tinyseq.t``)."""
        return _ops.t(self)

    @property
    def mT(self):
        """The last two axes swapped (a batch of matrices transposed), as PyTorch's ``mT``."""
        return _ops.matrix_transpose(self)

    def contiguous(self):
        """This tensor if its array is C-contiguous, else a C-contiguous copy that stays in the graph."""
        return self if self.data.flags.c_contiguous else _ops.clone(self)

    def cpu(self):
        """This tensor: tinyseq arrays live in host memory."""
        return self

    def new_zeros(self, *size, dtype=None, requires_grad=False):
        """Zeros of ``size`` with this tensor's dtype unless ``dtype`` says otherwise (as PyTorch)."""
        return _creation.zeros(*size, dtype=self._own(dtype), requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad=False):
        """Ones of ``size`` with this tensor's dtype unless ``dtype`` says otherwise."""
        return _creation.ones(*size, dtype=self._own(dtype), requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad=False):
        """An uninitialised tensor of ``size`` with this tensor's dtype unless ``dtype`` says otherwise."""
        return _creation.empty(*size, dtype=self._own(dtype), requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False):
        """``size`` filled with ``fill_value``, in this tensor's dtype unless ``dtype`` says otherwise."""
        return _creation.full(size, fill_value, dtype=self._own(dtype), requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, requires_grad=False):
        """A copy of ``data`` in this tensor's dtype unless ``dtype`` says otherwise (as PyTorch)."""
        return tensor(data, dtype=self._own(dtype), requires_grad=requires_grad)

    def _own(self, dtype):
        return self.dtype if dtype is None else dtype

    # ------------------------------------------------------------ copies and conversions

    def astype(self, dtype):
        """A copy converted to ``dtype``; the gradient flows back converted."""
        return _ops.cast(self, dtype)

    def float(self):
        """As float32: ``to(np.float32)``."""
        return self.to(np.float32)

    def double(self):
        """As float64: ``to(np.float64)``."""
        return self.to(np.float64)

    def long(self):
        """As int64 (indices; no gradient): ``to(np.int64)``."""
        return self.to(np.int64)

    def int(self):
        """As int32 (no gradient): ``to(np.int32)``."""
        return self.to(np.int32)

    def bool(self):
        """As bool (no gradient): ``to(np.bool_)``."""
        return self.to(np.bool_)

    def type(self, dtype=None):
        """Without an argument, the type's name: ``'tinyseq.FloatTensor'`` for float32,
        ``'tinyseq.LongTensor'`` for int64, ... (PyTorch's names, prefixed ``tinyseq.``).
        With a dtype or such a name (``'torch.LongTensor'`` too), ``to(dtype)``: this tensor
        if the dtype is already that, else a converted copy."""
        if dtype is None:
            return _dtypes.type_name(self.dtype)
        return self.to(_dtypes.from_type_name(dtype, "Tensor.type") if isinstance(dtype, str) else dtype)

    def to(self, *args, dtype=None):
        """``to(dtype)``, ``to("cpu")``, ``to("cpu", dtype)`` or ``to(dtype=...)``, as PyTorch: this
        tensor if nothing changes, else a converted copy (as ``astype``). Host memory is the
        only device."""
        dtype = to_arguments("Tensor.to", args, dtype)
        return self if dtype is None or dtype == self.dtype else _ops.cast(self, dtype)

    def clone(self):
        """A copy of the data that stays in the graph (gradients flow back to this tensor)."""
        return _ops.clone(self)


_new_tensor = object.__new__


# ---------------------------------------------------------------- backward's steps


def _output_grad(root, grad):
    """The gradient that ``root.backward(grad)`` starts from: an array of root's shape and dtype."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no graph to backpropagate")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be left out only for a one-element output, got shape {root.shape}; "
                "pass grad= of the same shape"
            )
        return np.ones_like(root.data)
    grad = as_array(grad, root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward: grad has shape {grad.shape}, expected the output's shape {root.shape}")
    return grad


def _accumulate(grads, waiting, owned, fn, tensor, g):
    """Check ``g``, the gradient ``fn.backward`` returned for its input ``tensor``, and add it
    to tensor's sum in ``grads``; a tensor's first gradient also puts it on the heap ``waiting``.

    ``g`` is an array or an ``IndexedGrad``. The first gradient is kept as it is, not copied:
    an op's backward may return an array that it also holds (its ``g``, a saved value), so
    only the buffers allocated here, those of the tensors whose ids are in ``owned``, are
    added into in place.
    """
    if g.shape != tensor.data.shape:
        raise RuntimeError(
            f"{type(fn).__name__}.backward returned a gradient of shape {g.shape} "
            f"for an input of shape {tensor.data.shape}"
        )
    total = grads.get(tensor)
    if total is None:
        heappush(waiting, (-tensor._seq, tensor))
        if g.__class__ is IndexedGrad:
            owned.add(id(tensor))
            g = g.add_into(np.zeros(tensor.data.shape, g.values.dtype))
        grads[tensor] = g
    elif id(tensor) not in owned:
        owned.add(id(tensor))
        if g.__class__ is IndexedGrad:
            grads[tensor] = g.add_into(total.copy())
        else:
            total = total + g
            # NOTE: 0-d sums come back as NumPy scalars, which cannot be added into in place.
            grads[tensor] = total if total.__class__ is np.ndarray else np.asarray(total)
    elif g.__class__ is IndexedGrad:
        g.add_into(total)
    else:
        total += g


def _run_hooks(node, g):
    """Pass ``g`` through ``node``'s hooks in order; a hook may return a replacement gradient."""
    for hook in tuple(node._hooks):
        replaced = hook(_new_tensor(Tensor)._init(np.asarray(g), None))
        if replaced is None:
            continue
        replaced = as_array(replaced)
        if replaced.shape != node.shape:
            name = getattr(hook, "__qualname__", repr(hook))
            raise RuntimeError(f"backward: hook {name} returned a gradient of shape {replaced.shape} "
                               f"for a tensor of shape {node.shape}")
        g = replaced.astype(node.dtype, copy=False)
    return g


def _keep_grad(node, g):
    """Add ``g`` to ``node.grad`` (a leaf's, or a ``retain_grad`` tensor's); returns ``g`` in
    node's dtype. The first gradient is a copy wrapped once in a Tensor; later ones are
    added into its array in place (as PyTorch accumulates)."""
    if g.dtype != node.dtype:
        g = g.astype(node.dtype)
    grad = node._grad
    if grad is None:
        node._grad = _new_tensor(Tensor)._init(np.array(g), None)  # NOTE: np.array, as g may be a NumPy scalar
    elif grad.data.flags.writeable:
        grad.data += g
    else:  # an assigned read-only array (a broadcast view, say): replaced, not written into
        grad.data = grad.data + g
    return g


def _input_grads(fn, g, output):
    """``fn.backward(g)`` as a tuple of one gradient per input of ``fn`` (which made ``output``)."""
    if fn.released:
        raise RuntimeError(
            f"backward: the graph through {type(fn).__name__} was already freed by an earlier backward; "
            "pass retain_graph=True to the first backward to go through it again"
        )
    if fn.stamp != _changes:
        _check_unchanged(fn, output)
    grads = fn.backward(g)
    if grads.__class__ is not tuple:
        grads = tuple(grads) if isinstance(grads, list) else (grads,)
    if len(grads) != len(fn.parents):
        raise RuntimeError(
            f"{type(fn).__name__}.backward returned {len(grads)} gradients for {len(fn.parents)} inputs"
        )
    return grads


def _release(fn):
    """Free what ``fn`` saved and its links to its inputs; a later backward through it raises."""
    fn.saved = None
    fn.parents = ()
    fn.params = {}
    fn.released = True


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _broadcasts_to(shape, target):
    """True if an array of ``shape`` broadcasts to ``target`` unchanged."""
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def as_array(x, dtype=None):
    """The NumPy array behind ``x``: a Tensor's data, else ``np.asarray(x, dtype)``; no copy
    when none is needed. For arguments that take a Tensor or an array alike (masks,
    indices, lengths) and are not differentiated."""
    return np.asarray(x.data if isinstance(x, Tensor) else x, dtype=dtype)


def tensor(data, requires_grad=False, dtype=None):
    """A new tensor holding a copy of ``data`` (as ``torch.tensor``)."""
    arr = _to_array(data, None if dtype is None else np.dtype(dtype))
    return Tensor(np.array(arr, copy=True), requires_grad=requires_grad)


from . import creation as _creation  # noqa: E402  (these import Tensor from here)
from . import dtypes as _dtypes  # noqa: E402
from . import ops as _ops  # noqa: E402
