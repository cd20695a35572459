"""Argument checks shared across the package (no imports from it, so anything may use them)."""

import numbers


def is_int(value):
    """Whether ``value`` is an integer, Python's or NumPy's, and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(owner, what, value, minimum):
    """``value`` as an int if it is an integer (not a bool) of at least ``minimum``; otherwise a
    ValueError naming ``owner`` and ``what``: "LSTM: hidden_size must be a positive int, got 0"."""
    if not is_int(value) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{owner}: {what} must be {expected}, got {value!r}")
    return int(value)
