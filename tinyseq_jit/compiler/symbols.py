"""Symbols: one element of a value, as code. ``tinyseq.derivatives``' rules run on them.

``Sym("f") * (1 - Sym("f"))`` is the symbol of the text ``f * (1.0 - f)``: arithmetic on
symbols writes the expression with only the parentheses Python needs. The generator writes
each op's forward with them and gets each backward line by calling the op's derivative
rule, the engine's own, on them.
"""

import contextlib

# binding strength, as Python's: a if c else b < comparisons < + - < * / < unary - < atoms
_SELECT, _COMPARE, _SUM, _PRODUCT, _UNARY, _ATOM = range(6)


class Sym:
    """An expression as code, with how tightly it binds (``prec``)."""

    def __init__(self, text, prec=_ATOM):
        self.text, self.prec = text, prec

    def __repr__(self):
        return self.text

    def wrapped(self, prec):
        """The text, in parentheses if it binds less tightly than ``prec`` needs."""
        return f"({self.text})" if self.prec < prec else self.text

    def _binary(self, other, symbol, prec, swap=False):
        a, b = (sym(other), self) if swap else (self, sym(other))
        return Sym(f"{a.wrapped(prec)} {symbol} {b.wrapped(prec + 1)}", prec)

    def __add__(self, other):
        return self._binary(other, "+", _SUM)

    def __radd__(self, other):
        return self._binary(other, "+", _SUM, swap=True)

    def __sub__(self, other):
        return self._binary(other, "-", _SUM)

    def __rsub__(self, other):
        return self._binary(other, "-", _SUM, swap=True)

    def __mul__(self, other):
        return self._binary(other, "*", _PRODUCT)

    def __rmul__(self, other):
        return self._binary(other, "*", _PRODUCT, swap=True)

    def __truediv__(self, other):
        return self._binary(other, "/", _PRODUCT)

    def __rtruediv__(self, other):
        return self._binary(other, "/", _PRODUCT, swap=True)

    def __neg__(self):
        return Sym(f"-{self.wrapped(_UNARY)}", _UNARY)

    def __lt__(self, other):
        return self._binary(other, "<", _COMPARE)

    def __le__(self, other):
        return self._binary(other, "<=", _COMPARE)

    def __gt__(self, other):
        return self._binary(other, ">", _COMPARE)

    def __ge__(self, other):
        return self._binary(other, ">=", _COMPARE)

    def select(self, a, b):
        """``a if self else b`` (``tinyseq.derivatives.where`` on a symbol)."""
        return Sym(f"{sym(a).wrapped(_COMPARE)} if {self.wrapped(_COMPARE)} else {sym(b).wrapped(_SELECT + 1)}",
                   _SELECT)

    def sign(self):
        return call("sign", self)


_literal = [repr]  # how a number is written: repr(1.0) -> "1.0" unless ``literals`` says otherwise


def sym(value):
    """A symbol for ``value``: itself, or a number written as a float literal."""
    if isinstance(value, Sym):
        return value
    number = float(value)
    text = _literal[0](number)
    return Sym(text, _UNARY if text.startswith("-") else _ATOM)


@contextlib.contextmanager
def literals(write):
    """Write numbers with ``write(number) -> text`` inside the block (a GPU kernel's ``F(1.0)``,
    so that a float32 kernel computes in float32)."""
    _literal[0], previous = write, _literal[0]
    try:
        yield
    finally:
        _literal[0] = previous


def call(function, *args):
    """``function(args...)`` as a symbol."""
    return Sym(f"{function}({', '.join(sym(a).text for a in args)})")
