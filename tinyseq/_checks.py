"""Argument checks shared across the package (no imports from it, so anything may use them)."""

import numbers


def check_int(owner, what, value, minimum):
    """``value`` as an int if it is an integer (not a bool) of at least ``minimum``; otherwise a
    ValueError naming ``owner`` and ``what``: "LSTM: hidden_size must be a positive int, got 0"."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{owner}: {what} must be {expected}, got {value!r}")
    return int(value)
