"""The gate layout of each recurrent cell, defined once.

A cell's ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H) and biases (G*H,) stack G blocks of
H rows, one per gate, in PyTorch's order:

    RNN                  h              (one block)
    LSTM                 i, f, g, o
    LSTM, coupled=True   f, g, o        (no input-gate block: i = 1 - f)
    GRU                  r, z, n

The graph cells, the fused kernels, the init helpers and the tests all find a gate's rows
here. It is plain data with no imports, so ``tinyseq_jit`` reads it and still knows
nothing of ``Tensor`` (importing it does import the ``tinyseq`` package).
"""

_LAYOUTS = {
    ("RNN", False): ("h",),
    ("LSTM", False): ("i", "f", "g", "o"),
    ("LSTM", True): ("f", "g", "o"),
    ("GRU", False): ("r", "z", "n"),
}


def gate_names(mode, coupled=False):
    """The gates of a ``mode`` ("RNN", "LSTM" or "GRU") cell in stacking order."""
    try:
        return _LAYOUTS[mode, bool(coupled)]
    except KeyError:
        raise ValueError(f"gate_names: no gate layout for mode {mode!r} with coupled={coupled!r}") from None


def num_gates(mode, coupled=False):
    """G: how many H-row blocks the cell's weights stack."""
    return len(gate_names(mode, coupled))


def gate_slice(mode, gate, hidden_size, coupled=False):
    """The rows of ``gate`` (e.g. "f") in a stacked weight or bias of a cell with ``hidden_size`` units."""
    names = gate_names(mode, coupled)
    if gate not in names:
        raise ValueError(f"gate_slice: a {mode}{' (coupled)' if coupled else ''} cell has gates {names}, not {gate!r}")
    k = names.index(gate)
    return slice(k * hidden_size, (k + 1) * hidden_size)


def gate_slices(mode, hidden_size, coupled=False):
    """``{gate: slice}`` for every gate of the cell."""
    return {gate: gate_slice(mode, gate, hidden_size, coupled) for gate in gate_names(mode, coupled)}
