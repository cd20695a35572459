"""Each point-wise op's derivative, written once.

``RULES`` maps an op's kind to one function per input: given ``g``, the gradient of the
op's output, it returns the gradient that input receives (before any broadcast is summed
away). A function's parameters say what it reads besides ``g``: ``a`` and ``b`` (the
inputs), ``out`` (the output) or ``cond`` (a ``where``'s mask).

Two readers call the same functions:

- the engine (``tinyseq.ops``): an op's ``backward`` calls its rule on NumPy arrays;
- the kernel generator (``tinyseq_jit.compiler``): it calls the rule on symbols that stand
  for one element of each value, and writes out the expression the rule builds, e.g.
  ``d_t3 = d_f * f * (1.0 - f)``: the fused BPTT a reader sees is this table.

So a rule uses only what both understand: + - * / and unary -, a comparison, numbers, and
``where`` and ``sign`` below (NumPy's on arrays, the symbols' own otherwise).
"""

import numpy as np


def where(cond, a, b):
    """``a`` where ``cond`` is true, else ``b`` (a number takes the other operand's dtype)."""
    if hasattr(cond, "select"):  # a symbol
        return cond.select(a, b)
    dtype = next(v.dtype for v in (a, b) if isinstance(v, np.ndarray))
    return np.where(cond, np.asarray(a, dtype), np.asarray(b, dtype))


def sign(a):
    """-1, 0 or 1 elementwise."""
    return np.sign(a) if isinstance(a, np.ndarray) else a.sign()


# ---------------------------------------------------------------- the rules, one per input


def add_a(g):
    return g


def add_b(g):
    return g


def sub_a(g):
    return g


def sub_b(g):
    return -g


def mul_a(g, b):
    return g * b


def mul_b(g, a):
    return g * a


def div_a(g, b):
    return g / b


def div_b(g, b, out):
    return -g * out / b


def neg(g):
    return -g


def exp(g, out):
    return g * out


def log(g, a):
    return g / a


def abs(g, a):  # NOTE: the gradient at 0 is taken as 0
    return g * sign(a)


def tanh(g, out):
    return g * (1 - out * out)


def sigmoid(g, out):
    return g * out * (1 - out)


def relu(g, out):
    return g * (out > 0)


def where_a(g, cond):
    return where(cond, g, 0)


def where_b(g, cond):
    return where(cond, 0, g)


#: kind -> (the rule of input 0, of input 1, ...); a ``where``'s mask gets no gradient
RULES = {
    "add": (add_a, add_b),
    "sub": (sub_a, sub_b),
    "mul": (mul_a, mul_b),
    "div": (div_a, div_b),
    "neg": (neg,),
    "exp": (exp,),
    "log": (log,),
    "abs": (abs,),
    "tanh": (tanh,),
    "sigmoid": (sigmoid,),
    "relu": (relu,),
    "where": (where_a, where_b),
}


def reads(kind, position=None):
    """What the rules of ``kind`` read besides ``g`` ("a", "b", "out", "cond"), for one input
    ``position`` or for all of them, in order and without repeats."""
    import inspect

    rules = RULES[kind] if position is None else (RULES[kind][position],)
    names = [p for rule in rules for p in inspect.signature(rule).parameters if p != "g"]
    return tuple(dict.fromkeys(names))
