"""Smoke tests: each example runs quickly and does what its docstring says."""

import importlib.util
import pathlib
import sys

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    """Import ``examples/<name>.py`` as the module ``name``, as a script would (the examples
    import their ``common`` helpers; worker processes re-import them by name)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_rnn_from_ops_loss_falls(capsys):
    demo = load("rnn_from_ops")
    demo.main(["--steps", "60"])
    printed = capsys.readouterr().out
    assert "loss fell from" in printed
    losses = demo.train(steps=60, out=None)
    assert np.mean(losses[-10:]) < 0.25 * losses[0]
