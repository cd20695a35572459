"""examples/narx.py: NARX identifies Narendra's plant; closed loop is scored as well as open loop."""

import json

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("narx")


def test_quick_run_learns_and_writes_its_results(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path)])
    for name, r in summary["results"].items():
        assert np.mean(r["loss"][-10:]) < 0.5 * r["loss"][0], name
    for name in ("narx", "elman"):  # better than predicting the mean (Jordan's first-order state cannot be)
        assert summary["results"][name]["closed_loop_rmse"] < summary["test_output_std"], name
    narx = summary["results"]["narx"]
    assert narx["open_loop_rmse"] < narx["closed_loop_rmse"]  # its own errors compound when fed back
    assert json.loads((tmp_path / "results.json").read_text())["config"]["delay"] == 2
    assert (tmp_path / "narx.png").stat().st_size > 10_000


def test_lbfgs_trains_full_batch_within_the_same_budget_of_evaluations(tmp_path):
    summary = example.main(["--quick", "--optimizer", "lbfgs", "--models", "narx,elman", "--out", str(tmp_path)])
    for name, r in summary["results"].items():
        assert 59 <= len(r["loss"]) <= 60, name  # --quick's 60 evaluations of loss and gradient, no more
        assert r["final_mse"] < 0.1 * r["loss"][0], name
    assert summary["results"]["narx"]["closed_loop_rmse"] < summary["test_output_std"]
    assert summary["config"]["optimizer"] == "lbfgs"


def test_the_plant_and_bad_flags():
    u = np.zeros(5)
    np.testing.assert_array_equal(example.plant(u), np.zeros(6))  # at rest it stays at rest
    y = example.plant(np.array([1.0, 0.0]))
    assert y[1] == 1.0 and y[2] == 0.0  # y(2) = y(1) y(0) (...) / (...) + u(1), with y(0) = 0
    with pytest.raises(UsageError, match="--models from"):
        example.main(["--models", "arx"])
    with pytest.raises(UsageError, match="--delay < --window"):
        example.main(["--quick", "--delay", "40"])
    with pytest.raises(UsageError, match="--optimizer lbfgs needs --steps >= 2"):
        example.main(["--quick", "--optimizer", "lbfgs", "--steps", "1"])
    with pytest.raises(SystemExit) as stop:  # argparse: one line naming the choices, exit status 2
        example.main(["--quick", "--optimizer", "sgd"])
    assert stop.value.code == 2
