"""Smoke tests of ``benchmarks/cell_compiler_speed.py`` (issue 23) at tiny sizes: the variants it
times compute the same thing (its torch twins of the gallery cells, its compiled-vs-hand-written
pairs), its agreement check fails when they do not, and its alternation counts steps right."""

import importlib.util
import pathlib
import time

import numpy as np
import pytest

from tinyseq import nn

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "cell_compiler_speed.py"
T, B, I, H = 3, 2, 3, 4


@pytest.fixture(scope="module")
def bench():
    """The benchmark module, imported from its file."""
    spec = importlib.util.spec_from_file_location("cell_compiler_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def graph_and_torch(bench, name):
    """{"graph": the gallery cell ``name`` on tinyseq's graph, "torch": its torch twin}, float64."""
    cell = bench.gallery_cell(name, I, H, dtype=np.float64)
    x = bench.input_array(T, B, I, dtype=np.float64)
    graph = bench.tinyseq_variant(nn.Recurrent(cell, backend="graph"), x, lambda: dict(cell.named_parameters()))
    return {"graph": graph, "torch": bench.torch_variant(bench.torch_twin(cell, name, I, H, "float64"), x, H)}


@pytest.mark.torch
@pytest.mark.parametrize("name", ["mgu", "indrnn", "mirnn", "ligru"])
def test_torch_twin_computes_the_gallery_cell(bench, name):
    pytest.importorskip("torch")
    assert bench.check_same(name, graph_and_torch(bench, name), rtol=1e-10) <= 1e-10


@pytest.mark.torch
def test_check_same_names_the_gradient_that_differs(bench):
    pytest.importorskip("torch")
    variants = graph_and_torch(bench, "mgu")
    with np.errstate(all="ignore"):
        variants["torch"].module.n.bias.data[0] += 1e-3
    with pytest.raises(AssertionError, match="mgu: torch's (output|n.bias|n.weight|f.weight|f.bias) differs"):
        bench.check_same("mgu", variants, rtol=1e-10)


def test_compiled_gallery_gru_matches_the_handwritten_kernel(bench):
    variants = bench.kernel_variants("GRU", T, B, I, H, dtype=np.float64)
    assert bench.check_same("GRU", variants, rtol=1e-10) <= 1e-10
    assert "def _backward" in variants["compiled"].module.kernel_source()


def test_alternate_reverses_every_other_round_and_limits_the_limited_variant(bench):
    calls = []

    class Counted:
        def __init__(self, name):
            self.name = name

        def step(self):
            calls.append(self.name)

    times = bench.alternate({"a": Counted("a"), "g": Counted("g")}, repeats=4, warmup=2, limited={"g"}, limit=1)
    assert [len(times["a"]), len(times["g"])] == [4, 1]
    assert calls == ["a", "g", "g", "a", "a", "g", "a", "a", "a"]


def test_alternate_times_fast_variants_until_they_add_up_to_min_seconds(bench):
    class Sleeps:
        def step(self):
            time.sleep(0.002)

    times = bench.alternate({"a": Sleeps(), "b": Sleeps()}, repeats=2, warmup=0, min_seconds=0.05, most=100)
    assert len(times["a"]) == len(times["b"])
    assert 0.05 <= sum(times["a"]) and len(times["a"]) < 100
    capped = bench.alternate({"a": Sleeps()}, repeats=2, warmup=0, min_seconds=10.0, most=5)
    assert len(capped["a"]) == 5
