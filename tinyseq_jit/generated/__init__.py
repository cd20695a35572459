"""The fused kernels of the built-in cells, as ``tinyseq_jit.compiler`` writes them, committed.

Open ``lstm.py`` to read the LSTM's fused forward and its BPTT backward as loops, one line
per op of ``tinyseq.nn.LSTMStep.forward`` and named after its variables: it is the code
``nn.LSTM(backend="numba")`` runs. Each file is one form of a step (its options, both
biases, no projection), float32, for any sizes: ``<form>.py`` for the CPU, ``<form>_cuda.py``
for numba.cuda. A layer of another form (no bias, a projection, float64) gets its module
generated the same way into the kernel cache the first time it runs.

After changing a step or the compiler, write them again (``tests/test_generated.py`` checks
that this gives the committed files byte for byte)::

    python -m tinyseq_jit.generated
"""

import os

import numpy as np

#: the committed forms: file name -> (the step's mode, its options in the step's order)
FORMS = {
    "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
    "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
    "lstm": ("LSTM", {"peephole": False, "coupled": False}),
    "lstm_peephole": ("LSTM", {"peephole": True, "coupled": False}),
    "lstm_coupled": ("LSTM", {"peephole": False, "coupled": True}),
    "lstm_coupled_peephole": ("LSTM", {"peephole": True, "coupled": True}),
    "gru": ("GRU", {"reset_after": True}),
    "gru_reset_before": ("GRU", {"reset_after": False}),
}
DEVICES = {"numba": "", "cuda": "_cuda"}
DTYPE = np.dtype(np.float32)
HERE = os.path.dirname(os.path.abspath(__file__))


def form(name):
    """The ``tinyseq.nn.rnn.step_form`` of the committed form ``name``."""
    from tinyseq.nn import rnn

    mode, options = FORMS[name]
    return rnn.step_form(rnn.quiet_step(rnn.STEPS[mode], 1, 2, dtype=DTYPE, **options))


def path(name, device):
    """The committed file of form ``name`` for ``device`` ("numba" or "cuda")."""
    return os.path.join(HERE, f"{name}{DEVICES[device]}.py")


def source(name, device):
    """The text ``tinyseq_jit.compiler`` generates for form ``name`` on ``device`` now."""
    from tinyseq.nn import rnn
    from tinyseq_jit.compiler import generic_source

    return generic_source(*rnn.generic_arguments(form(name)), DTYPE, device)


def kernel(step_form, device):
    """The size-generic ``Kernel`` of a built-in step's form (``tinyseq.nn.rnn.step_form``) on
    ``device``: the committed file where there is one, else generated into the kernel cache."""
    from tinyseq.nn import rnn
    from tinyseq_jit.compiler import compile_generic, load_path

    name = next((n for n in FORMS if form(n) == step_form), None)
    make_cell, sizes, provides = rnn.generic_arguments(step_form)
    if name is not None and os.path.isfile(path(name, device)):
        return load_path(path(name, device), symbols=provides)
    return compile_generic(make_cell, sizes, provides, step_form[-1], device, key=step_form)


def main():
    """Write every committed file again."""
    for name in FORMS:
        for device in DEVICES:
            text = source(name, device)
            target = path(name, device)
            with open(target + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(target + ".tmp", target)
            print(f"wrote {os.path.relpath(target)}")
