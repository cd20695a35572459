"""examples/adding_problem.py: gated networks learn to add two marked numbers."""

import json

import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("adding_problem")


def test_quick_run_learns_and_reports_the_baseline(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    assert results["baseline"]["50"] == pytest.approx(1 / 6, abs=0.03)  # always answering 1
    runs = {r["model"]: r for r in results["runs"]}
    assert set(runs) == {"lstm", "gru"}
    for run in runs.values():
        assert run["final_test_mse"] < 0.5 * run["curve"]["test_mse"][0]
    assert runs["gru"]["final_test_mse"] < 0.05 and runs["gru"]["solved_at"] is not None  # well below 0.167
    assert json.loads((tmp_path / "results.json").read_text())["config"]["lengths"] == [50]
    assert (tmp_path / "adding_problem.png").stat().st_size > 10_000


def test_batches_mark_one_number_in_each_half_and_bad_flags_are_refused():
    import numpy as np

    x, y = example.make_batch(np.random.default_rng(0), 16, 10)
    markers = x[..., 1]
    assert x.shape == (10, 16, 2) and (markers.sum(0) == 2).all()
    assert (markers[:5].sum(0) == 1).all() and (markers[5:].sum(0) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(0), rtol=1e-6)
    with pytest.raises(UsageError, match="unknown"):
        example.main(["--models", "lstm,transformer"])
    for flag in ("--steps", "--eval-every"):  # 0 is refused, not taken for "the default"
        with pytest.raises(UsageError, match=f"{flag}: must be a positive integer, got 0"):
            example.main([flag, "0"])
