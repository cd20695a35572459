"""Containers: Sequential, ModuleList and ModuleDict, as in PyTorch.

Each holds its modules in one list or dict and names them by position ("0", "1", ...) or
by key, so parameters come out as ``layers.0.weight`` or ``heads.char.bias``.
"""

from collections import OrderedDict

from .module import Module


class ModuleList(Module):
    """A list of modules whose parameters the owner finds (a plain list attribute works too).

    Args:
        modules (iterable, optional): the modules to start with.

    Supports ``append``, ``extend``, ``insert``, indexing (a slice gives a new ModuleList),
    item assignment, ``len`` and iteration. It has no ``forward``: call its modules.
    """

    def __init__(self, modules=None):
        self._list = [self._check(m) for m in modules or ()]

    def _check(self, m):
        if not isinstance(m, Module):
            raise TypeError(f"{type(self).__name__}: expected Modules, got {type(m).__name__}")
        return m

    def _members(self, kind):
        return ((str(i), m) for i, m in enumerate(self._list) if isinstance(m, kind))

    def append(self, module):
        self._list.append(self._check(module))
        return self

    def extend(self, modules):
        self._list.extend(self._check(m) for m in modules)
        return self

    def insert(self, index, module):
        self._list.insert(index, self._check(module))

    def __getitem__(self, i):
        return ModuleList(self._list[i]) if isinstance(i, slice) else self._list[i]

    def __setitem__(self, i, module):
        self._list[i] = self._check(module)

    def __len__(self):
        return len(self._list)

    def __iter__(self):
        return iter(self._list)


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(a, b, c)(x)`` is ``c(b(a(x)))``.

    Args:
        *modules: the modules, in order; their parameters are named ``0.weight``, ``1.bias``, ...

    Indexing, ``len``, iteration and ``append`` work as on a ``ModuleList``.
    """

    def __init__(self, *modules):
        super().__init__(modules)

    def __getitem__(self, i):
        return Sequential(*self._list[i]) if isinstance(i, slice) else self._list[i]

    def forward(self, x):
        for m in self._list:
            x = m(x)
        return x


class ModuleDict(Module):
    """An ordered dict of name -> module whose parameters the owner finds, named ``key.weight``.

    Args:
        modules (dict or iterable of (key, module) pairs, optional): the modules to start with.

    Keys are strings without dots. Supports ``d[key]``, ``d[key] = m``, ``del d[key]``,
    ``in``, ``len``, iteration over keys, ``keys``, ``values``, ``items`` and ``update``.
    """

    def __init__(self, modules=None):
        self._dict = OrderedDict()
        if modules is not None:
            self.update(modules)

    def _members(self, kind):
        return ((k, m) for k, m in self._dict.items() if isinstance(m, kind))

    def __setitem__(self, key, module):
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {type(key).__name__} {key!r}")
        if not key or "." in key:
            raise ValueError(f"ModuleDict: keys must be non-empty strings without dots, got {key!r}")
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected Modules, got {type(module).__name__}")
        self._dict[key] = module

    def __getitem__(self, key):
        return self._dict[key]

    def __delitem__(self, key):
        del self._dict[key]

    def __contains__(self, key):
        return key in self._dict

    def __len__(self):
        return len(self._dict)

    def __iter__(self):
        return iter(self._dict)

    def keys(self):
        return self._dict.keys()

    def values(self):
        return self._dict.values()

    def items(self):
        return self._dict.items()

    def update(self, modules):
        """Add or replace entries from a dict or an iterable of (key, module) pairs."""
        for key, module in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = module
