"""Smoke test of ``benchmarks/train_speed.py``'s "word" row (issue 22) at a small size: the tied
decoder is one Parameter, and the manual-SGD steps train the same on every framework."""

import argparse
import importlib.util
import pathlib

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "train_speed.py"
STEPS = 3


@pytest.fixture
def bench(monkeypatch, tmp_path, capsys):
    """The benchmark module with the "word" row shrunk (its shape kept: sequence first, tied, manual
    SGD with lr 20 and clip 0.25) and its initial weights saved, as the parent does, in ``weights``."""
    spec = importlib.util.spec_from_file_location("train_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    small = module.MODELS["word"]._replace(vocab=50, embed=8, hidden=8, batch=3, seq=5)
    monkeypatch.setitem(module.MODELS, "word", small)
    module.weights = str(tmp_path / "word.npz")
    module.weights_worker(argparse.Namespace(model="word", weights=module.weights))
    capsys.readouterr()
    return module


def losses(bench, framework):
    """The losses of STEPS training steps of the word row on ``framework``."""
    trainer = bench.Trainer(framework, "word", bench.weights)
    return [trainer.step() for _ in range(STEPS)]


def test_word_row_ties_the_decoder_and_trains_alike_on_numba_and_graph(bench):
    trainer = bench.Trainer("numba", "word", bench.weights)
    assert trainer.model.head.weight is trainer.model.embed.weight
    assert len(trainer.params) == 10  # the shared weight once: it is clipped and updated once
    np.testing.assert_allclose(losses(bench, "numba"), losses(bench, "graph"), rtol=1e-5)


@pytest.mark.torch
def test_word_row_trains_as_torch_does(bench):
    pytest.importorskip("torch")
    np.testing.assert_allclose(losses(bench, "numba"), losses(bench, "torch"), rtol=1e-5)
