"""examples/custom_cells.py: cells written from ops learn the adding problem compiled, and the
graph and the compiled step agree while they are timed."""

import json

import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("custom_cells")


def test_quick_run_trains_every_cell_compiled_and_writes_its_results(tmp_path, capsys):
    results = example.main(["--quick", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    runs = {r["cell"]: r for r in results["runs"]}
    assert list(runs) == list(example.CELLS) and {r["ran_on"] for r in runs.values()} == {"compiled"}
    for run in runs.values():
        assert run["final_test_mse"] < 0.5 * run["curve"]["test_mse"][0], run["cell"]
    assert runs["mgu"]["solved_at"] is not None and runs["mgu"]["final_test_mse"] < example.SOLVED
    for name, timing in results["timings"].items():
        assert len(timing["losses"]["graph"]) == 4  # --time-steps 3, after one untimed step
        assert timing["max_loss_difference"] < 1e-4, name  # the same weights and batches on both backends
        assert timing["graph_ms"] > 0 and timing["compiled_ms"] > 0
    source = (tmp_path / "kernel_mgu.py").read_text()
    assert source.startswith('"""Fused forward and BPTT of MGU') and "def _backward(" in source
    assert "\n".join(source.splitlines()[:40]) in printed
    assert "step MSE < 0.01" in printed and example.common.SMOKE in printed
    assert json.loads((tmp_path / "results.json").read_text())["config"]["length"] == 20
    assert (tmp_path / "custom_cells.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--cells", "mgu,transformer"], "--cells: unknown"),
    (["--cells", "mgu", "--kernel", "lstm"], "--kernel lstm: not among --cells"),
    (["--backend", "cuda"], "CPU kernels only"),
    (["--time-steps", "0"], "--time-steps"),  # given, so not replaced by the default
    (["--length", "0"], "--length"),
])
def test_bad_flags_are_refused_before_any_work(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        example.main([*args, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
