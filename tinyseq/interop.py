"""Move models between tinyseq and PyTorch with one call.

tinyseq's layers already share PyTorch's parameter names, shapes and gate orders, so a
state dict crosses over as it is; this module also builds the matching module on the
other side:

    from tinyseq import interop
    torch_model = interop.to_torch(model)       # torch.nn modules holding copies of the weights
    model = interop.from_torch(torch_model)     # and back
    interop.to_torch(model, into=MyTorchModel())   # or into a module whose forward you wrote

Covered both ways: RNN (tanh/relu), LSTM (with proj_size too), GRU and their cells with
num_layers, bias, batch_first, dropout and bidirectional; Linear, Embedding (with padding_idx), LayerNorm,
Dropout, ReLU/Tanh/Sigmoid/Identity; Sequential, ModuleList, ModuleDict; and a tree of your
own Module subclasses over those. A forward cannot be converted, so the counterpart of your
own class holds the converted children and parameters under the same attribute names (the
state dict keys are identical) and its forward raises: write the forward on the other side
and pass that module as ``into=`` to copy the weights into it.

Weights are copied in their dtype (float32 or float64); training mode and requires_grad
carry over; a parameter or module shared under two names stays shared. An option with no
counterpart (peephole or coupled LSTMs, the classic GRU ``reset_after=False``, variational
Dropout; torch's Embedding ``max_norm``...) is a ValueError naming its place in the tree; a
module type not covered is a TypeError listing the covered ones.

NOTE: options that change how a module runs but not what it computes do not cross over:
tinyseq's ``backend`` (``from_torch`` gives ``"auto"``) and dropout ``generator``, torch's
``inplace`` and Embedding ``sparse``. The two sides draw different dropout masks in training.

PyTorch stays optional: it is imported when a function here is called (``pip install torch``,
or ``pip install -e ".[interop]"``), and ``import tinyseq`` never imports it.
"""

import functools

import numpy as np

from . import nn
from .nn.module import Module, Parameter

#: The module types converted in both directions (besides your own Module subclasses).
SUPPORTED = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear", "Embedding", "LayerNorm",
             "Dropout", "ReLU", "Tanh", "Sigmoid", "Identity", "Sequential", "ModuleList", "ModuleDict")

_LAYERS = ("RNN", "LSTM", "GRU")
_CELLS = ("RNNCell", "LSTMCell", "GRUCell")
_STATELESS = ("ReLU", "Tanh", "Sigmoid", "Identity")


def _import_torch():
    """The ``torch`` module, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError('tinyseq.interop needs PyTorch, an optional dependency: pip install torch '
                          '(or, in a checkout, pip install -e ".[interop]")') from e
    return torch


# ---------------------------------------------------------------- shared helpers


def _where(path, module):
    """How an error names a part of the tree: its dotted path and type."""
    return f"{path!r} ({type(module).__name__})" if path else f"the top-level {type(module).__name__}"


def _join(path, name):
    """The dotted path of child ``name`` of the part at ``path``."""
    return f"{path}.{name}" if path else name


def _refuse(fn, path, module, option, other, why):
    """Raise the ValueError for an option that has no counterpart on the ``other`` side."""
    raise ValueError(f"{fn}: {_where(path, module)} has {option}, which has no {other} equivalent ({why})")


def _unsupported(fn, path, module):
    """Raise the TypeError for a module type that is not covered."""
    raise TypeError(f"{fn}: {_where(path, module)}: {type(module).__module__}.{type(module).__name__} "
                    f"is not covered; the covered types are {', '.join(SUPPORTED)}, and a Module "
                    "subclass of your own becomes a module holding its converted children")


def _forward_help(name, source, target, fn):
    """What the forward of a stand-in for the user's class ``name`` says when called."""
    return (f"{name} was converted from {source} by tinyseq.interop, which cannot convert a forward: "
            f"write {name} as a {target} Module with the same attribute names and its forward, then copy "
            f"the weights into it with tinyseq.interop.{fn}(model, into=your_module) "
            "(or your_module.load_state_dict(...) with this module's state dict)")


@functools.cache
def _shell_class(cls, base, message):
    """A subclass of ``base`` with the name and ``__module__`` of ``cls`` whose forward raises
    ``message``: the stand-in for a user's own Module class on the other side."""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(message)

    doc = f"Stand-in for {cls.__name__}: holds its converted children and parameters; see ``forward``."
    return type(cls.__name__, (base,), {"forward": forward, "__doc__": doc, "__module__": cls.__module__})


def _grouped(module, kind, fn, path):
    """(attribute, value) for ``module``'s members of ``kind`` (Module or Parameter), the entries
    of a list or tuple attribute gathered back into one list under the attribute's name."""
    groups = {}
    for name, value in module._members(kind):
        attr, dot, index = name.partition(".")
        groups.setdefault(attr, []).append((index if dot else None, value))
    for attr, items in groups.items():
        if items[0][0] is None:
            yield attr, items[0][1]
        elif [i for i, _ in items] == [str(k) for k in range(len(items))]:
            yield attr, [v for _, v in items]
        else:
            raise ValueError(f"{fn}: {_where(path, module)}: the list {attr!r} mixes {kind.__name__}s "
                             "with other values; hold them in a list of their own")


def _check_same_state(fn, ours, theirs, source, target):
    """Raise a ValueError naming every key only on one side and every shape that differs;
    ``ours`` and ``theirs`` map state dict keys to shapes."""
    problems = []
    only_ours = [k for k in ours if k not in theirs]
    only_theirs = [k for k in theirs if k not in ours]
    if only_ours:
        problems.append(f"keys only in the {source} module: {only_ours}")
    if only_theirs:
        problems.append(f"keys only in the {target} module: {only_theirs}")
    shapes = [f"{k} {ours[k]} vs {theirs[k]}" for k in ours if k in theirs and ours[k] != theirs[k]]
    if shapes:
        problems.append(f"different shapes ({source} vs {target}): " + ", ".join(shapes))
    if problems:
        raise ValueError(f"{fn}(into=...): the state dicts do not match: " + "; ".join(problems))


def _copy_modes(source, target):
    """Set ``target``'s training flags from ``source``'s, module by module where the dotted names
    agree (the root's flag for the rest)."""
    target.train(source.training)
    flags = {name: m.training for name, m in source.named_modules()}
    for name, m in target.named_modules():
        if name in flags:
            m.training = flags[name]


# ---------------------------------------------------------------- tinyseq -> torch


def _torch_dtype(module, torch):
    """The torch dtype of a tinyseq module's parameters (None if it has none)."""
    p = next(module.parameters(), None)
    return None if p is None else {np.float32: torch.float32, np.float64: torch.float64}[p.dtype.type]


def _layer_extra(m, name):
    """The constructor options of a recurrent layer or cell (tinyseq's or torch's, ``name`` its
    type's) beyond the sizes and the options every kind takes: an RNN's ``nonlinearity``, an
    LSTM layer's ``proj_size``."""
    if name.startswith("RNN"):
        return {"nonlinearity": m.nonlinearity}
    return {"proj_size": m.proj_size} if name == "LSTM" and m.proj_size else {}


def _torch_leaf(m, path, torch):
    """The empty torch.nn module of ``m``'s type and options, or None if ``m`` is not a leaf type."""
    name, tnn = type(m).__name__, torch.nn
    if type(m) is not getattr(nn, name, None) or name not in SUPPORTED:
        return None

    def refuse(option, why):
        _refuse("to_torch", path, m, option, "PyTorch", why)

    dtype = _torch_dtype(m, torch)
    if name in _LAYERS + _CELLS:
        if getattr(m, "peephole", False):
            refuse("peephole=True", "torch's LSTM has no cell-to-gate weights")
        if getattr(m, "coupled", False):
            refuse("coupled=True", "torch's LSTM always has an input gate")
        if not getattr(m, "reset_after", True):
            refuse("reset_after=False", "torch's GRU applies r after the recurrent product")
        extra = _layer_extra(m, name)
        if name in _CELLS:
            return getattr(tnn, name)(m.input_size, m.hidden_size, bias=m.bias, dtype=dtype, **extra)
        return getattr(tnn, name)(m.input_size, m.hidden_size, num_layers=m.num_layers, bias=m.bias,
                                  batch_first=m.batch_first, dropout=m.dropout, bidirectional=m.bidirectional,
                                  dtype=dtype, **extra)
    if name == "Linear":
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
    if name == "Embedding":
        return tnn.Embedding(m.num_embeddings, m.embedding_dim, padding_idx=m.padding_idx, dtype=dtype)
    if name == "LayerNorm":
        return tnn.LayerNorm(m.normalized_shape, eps=m.eps, elementwise_affine=m.weight is not None, dtype=dtype)
    if name == "Dropout":
        if m.variational:
            refuse("variational=True", "torch.nn.Dropout draws a new mask at every time step")
        return tnn.Dropout(m.p)
    if name in _STATELESS:
        return getattr(tnn, name)()
    return None


def _copy_leaf_to_torch(m, t, torch, memo):
    """Copy ``m``'s parameters into the fresh torch leaf ``t`` (a shared one is shared again)."""
    theirs = dict(t.named_parameters(recurse=False))
    ours = list(m._members(Parameter))
    assert {n for n, _ in ours} == set(theirs), f"to_torch: {type(m).__name__} parameters {ours} vs {list(theirs)}"
    for name, p in ours:
        if id(p) in memo:
            setattr(t, name, memo[id(p)])
            continue
        with torch.no_grad():
            theirs[name].copy_(torch.from_numpy(p.data))
        memo[id(p)] = theirs[name].requires_grad_(p.requires_grad)


def _torch_param(p, torch, memo):
    """A torch Parameter holding a copy of the tinyseq parameter ``p`` (the same one for the same ``p``)."""
    if id(p) not in memo:
        memo[id(p)] = torch.nn.Parameter(torch.from_numpy(p.data.copy()), requires_grad=p.requires_grad)
    return memo[id(p)]


def _to_torch(m, path, torch, memo):
    """The torch counterpart of the tinyseq module ``m`` at ``path``; ``memo`` maps the id of each
    module and parameter already converted to its counterpart."""
    if id(m) in memo:
        return memo[id(m)]
    if not isinstance(m, Module):
        raise TypeError(f"to_torch: expected a tinyseq Module, got {type(m).__name__}")
    tnn, kind = torch.nn, type(m)
    if kind in (nn.Sequential, nn.ModuleList):
        children = [_to_torch(c, _join(path, str(i)), torch, memo) for i, c in enumerate(m)]
        t = tnn.Sequential(*children) if kind is nn.Sequential else tnn.ModuleList(children)
    elif kind is nn.ModuleDict:
        t = tnn.ModuleDict({k: _to_torch(c, _join(path, k), torch, memo) for k, c in m.items()})
    elif (t := _torch_leaf(m, path, torch)) is not None:
        _copy_leaf_to_torch(m, t, torch, memo)
    elif kind.__module__.startswith("tinyseq.") and kind is not Module:
        _unsupported("to_torch", path, m)
    else:
        t = _shell_class(kind, tnn.Module, _forward_help(kind.__name__, "tinyseq", "torch.nn", "to_torch"))()
        for attr, p in _grouped(m, Parameter, "to_torch", path):
            if isinstance(p, list):
                p = tnn.ParameterList([_torch_param(q, torch, memo) for q in p])
            else:
                p = _torch_param(p, torch, memo)
            setattr(t, attr, p)
        for attr, c in _grouped(m, Module, "to_torch", path):
            if isinstance(c, list):
                c = tnn.ModuleList([_to_torch(ci, _join(path, f"{attr}.{i}"), torch, memo) for i, ci in enumerate(c)])
            else:
                c = _to_torch(c, _join(path, attr), torch, memo)
            setattr(t, attr, c)
    t.training = m.training
    memo[id(m)] = t
    return t


def to_torch(module, into=None):
    """The ``torch.nn`` equivalent of a tinyseq module, holding copies of its weights.

    Args:
        module: a tinyseq ``Module``: a covered layer (see ``SUPPORTED``), a container, or a
            tree of your own Module subclasses over those.
        into: optional, an existing ``torch.nn.Module`` (e.g. your own class with its forward
            written in torch) to copy the weights into instead, cast to its dtypes. Its
            state dict keys and shapes must equal ``module``'s.

    Returns:
        ``into``, or a new torch module of ``module``'s dtype, in the same training mode and
        with the same ``requires_grad`` flags. Your own Module class becomes a torch Module
        of the same name holding the converted children; its forward raises.

    Raises:
        ValueError: an option with no PyTorch equivalent (naming where in the tree), or,
            with ``into``, keys or shapes that differ (naming them).
        TypeError: a module type that is not covered.
        ImportError: torch is not installed.
    """
    torch = _import_torch()
    if not isinstance(module, Module):
        raise TypeError(f"to_torch: expected a tinyseq Module, got {type(module).__name__}")
    if into is None:
        return _to_torch(module, "", torch, {})
    if not isinstance(into, torch.nn.Module):
        raise TypeError(f"to_torch: into must be a torch.nn.Module, got {type(into).__name__}")
    state = module.state_dict()
    _check_same_state("to_torch", {k: v.shape for k, v in state.items()},
                      {k: tuple(v.shape) for k, v in into.state_dict().items()}, "tinyseq", "torch")
    into.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    params = dict(into.named_parameters(remove_duplicate=False))
    for name, p in module._state_items():
        if name in params:
            params[name].requires_grad_(p.requires_grad)
    _copy_modes(module, into)
    return into


# ---------------------------------------------------------------- torch -> tinyseq


def _numpy_dtype(tensor, path, module):
    """The NumPy dtype of a torch parameter, or a TypeError unless it is float32 or float64."""
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in ("float32", "float64"):
        raise TypeError(f"from_torch: {_where(path, module)} has {tensor.dtype} parameters; tinyseq computes in "
                        "float32 or float64: convert it with .float() or .double() first")
    return np.dtype(dtype)


def _tinyseq_leaf(t, path, torch):
    """The tinyseq module of the torch module ``t``'s type and options, or None if ``t`` is not a leaf type."""
    name = type(t).__name__
    if type(t) is not getattr(torch.nn, name, None) or name not in SUPPORTED:
        return None

    def refuse(option, why):
        _refuse("from_torch", path, t, option, "tinyseq", why)

    p = next(t.parameters(), None)
    kw = {} if p is None else {"dtype": _numpy_dtype(p, path, t)}
    if name in _LAYERS + _CELLS:
        extra = _layer_extra(t, name)
        if name in _CELLS:
            return getattr(nn, name)(t.input_size, t.hidden_size, bias=t.bias, **extra, **kw)
        return getattr(nn, name)(t.input_size, t.hidden_size, num_layers=t.num_layers, bias=t.bias,
                                 batch_first=t.batch_first, dropout=float(t.dropout),
                                 bidirectional=t.bidirectional, **extra, **kw)
    if name == "Linear":
        return nn.Linear(t.in_features, t.out_features, bias=t.bias is not None, **kw)
    if name == "Embedding":
        if t.max_norm is not None:
            refuse(f"max_norm={t.max_norm}", "tinyseq's Embedding never renormalises its rows")
        if t.scale_grad_by_freq:
            refuse("scale_grad_by_freq=True", "tinyseq's Embedding gradient is not scaled")
        return nn.Embedding(t.num_embeddings, t.embedding_dim, padding_idx=t.padding_idx, **kw)
    if name == "LayerNorm":
        if t.weight is not None and t.bias is None:
            refuse("bias=False", "tinyseq's LayerNorm has a bias whenever it has a weight")
        return nn.LayerNorm(t.normalized_shape, eps=t.eps, elementwise_affine=t.weight is not None, **kw)
    if name == "Dropout":
        return nn.Dropout(t.p)
    if name in _STATELESS:
        return getattr(nn, name)()
    return None


def _copy_leaf_from_torch(t, m, memo):
    """Copy the torch leaf ``t``'s parameters into the fresh tinyseq leaf ``m``."""
    theirs = dict(t._parameters)
    ours = dict(m._members(Parameter))
    assert set(ours) == {n for n, p in theirs.items() if p is not None}, f"from_torch: {ours} vs {list(theirs)}"
    for name, p in ours.items():
        tp = theirs[name]
        if id(tp) in memo:
            setattr(m, name, memo[id(tp)])
            continue
        p.data[...] = tp.detach().cpu().numpy()
        memo[id(tp)] = p.requires_grad_(tp.requires_grad)


def _tinyseq_param(tp, path, module, memo):
    """A tinyseq Parameter holding a copy of the torch parameter ``tp`` (the same one for the same ``tp``)."""
    if id(tp) not in memo:
        _numpy_dtype(tp, path, module)
        memo[id(tp)] = Parameter(tp.detach().cpu().numpy().copy(), requires_grad=tp.requires_grad)
    return memo[id(tp)]


def _from_torch(t, path, torch, memo):
    """The tinyseq counterpart of the torch module ``t`` at ``path`` (``memo`` as in ``_to_torch``)."""
    if id(t) in memo:
        return memo[id(t)]
    tnn, kind = torch.nn, type(t)
    if kind is tnn.Sequential:
        names = list(t._modules)
        if names != [str(i) for i in range(len(names))]:
            _refuse("from_torch", path, t, f"named children {names}", "tinyseq",
                    "tinyseq's Sequential names its modules 0, 1, ...")
        m = nn.Sequential(*[_from_torch(c, _join(path, k), torch, memo) for k, c in t._modules.items()])
    elif kind is tnn.ModuleList:
        m = nn.ModuleList([_from_torch(c, _join(path, k), torch, memo) for k, c in t._modules.items()])
    elif kind is tnn.ModuleDict:
        m = nn.ModuleDict({k: _from_torch(c, _join(path, k), torch, memo) for k, c in t._modules.items()})
    elif (m := _tinyseq_leaf(t, path, torch)) is not None:
        _copy_leaf_from_torch(t, m, memo)
    elif kind.__module__.startswith("torch.") and kind is not tnn.Module:
        _unsupported("from_torch", path, t)
    else:
        m = _shell_class(kind, Module, _forward_help(kind.__name__, "PyTorch", "tinyseq", "from_torch"))()
        for name, tp in t._parameters.items():
            if tp is not None:
                setattr(m, name, _tinyseq_param(tp, path, t, memo))
        for name, b in t._buffers.items():
            if b is not None and name not in t._non_persistent_buffers_set:
                _refuse("from_torch", path, t, f"the buffer {name!r}", "tinyseq",
                        "a tinyseq state dict holds parameters only")
        for name, c in t._modules.items():
            if type(c) is tnn.ParameterList:
                setattr(m, name, [_tinyseq_param(tp, _join(path, name), c, memo) for tp in c])
            elif c is not None:
                setattr(m, name, _from_torch(c, _join(path, name), torch, memo))
    m.training = t.training
    memo[id(t)] = m
    return m


def from_torch(torch_module, into=None):
    """The tinyseq equivalent of a ``torch.nn`` module, holding copies of its weights.

    Args:
        torch_module: a ``torch.nn.Module``: a covered layer (see ``SUPPORTED``), a container,
            or a tree of your own Module subclasses over those.
        into: optional, an existing tinyseq ``Module`` (e.g. your own class with its forward)
            to copy the weights into instead, cast to its dtypes. Its state dict keys and
            shapes must equal ``torch_module``'s.

    Returns:
        ``into``, or a new tinyseq module of ``torch_module``'s dtype (float32 or float64), in
        the same training mode and with the same ``requires_grad`` flags. Recurrent layers get
        ``backend="auto"``. Your own torch Module class becomes a tinyseq Module of the same
        name holding the converted children; its forward raises.

    Raises:
        ValueError: an option with no tinyseq equivalent (naming where in the tree), or,
            with ``into``, keys or shapes that differ (naming them).
        TypeError: a module type that is not covered, or parameters that are not float32/float64.
        ImportError: torch is not installed.
    """
    torch = _import_torch()
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(torch_module).__name__}")
    if into is None:
        return _from_torch(torch_module, "", torch, {})
    if not isinstance(into, Module):
        raise TypeError(f"from_torch: into must be a tinyseq Module, got {type(into).__name__}")
    state = torch_module.state_dict()
    _check_same_state("from_torch", {k: tuple(v.shape) for k, v in state.items()},
                      {k: v.shape for k, v in into.state_dict().items()}, "torch", "tinyseq")
    # NOTE: through float64, so float16/bfloat16 weights load too (exactly) into float32 parameters.
    into.load_state_dict({k: v.detach().cpu().to(torch.float64).numpy() for k, v in state.items()})
    flags = {name: p.requires_grad for name, p in torch_module.named_parameters(remove_duplicate=False)}
    for name, p in into._state_items():
        if name in flags:
            p.requires_grad_(flags[name])
    _copy_modes(torch_module, into)
    return into
