"""examples/timeseries.py: a recurrent forecaster of the noisy Lorenz system beats the naive one."""

import json

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("timeseries")


def test_quick_run_beats_the_naive_forecast(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path)])
    lstm = summary["results"]["lstm"]
    assert np.mean(lstm["loss"][-20:]) < 0.5 * lstm["loss"][0]
    assert lstm["one_step_rmse"] < 0.5 * summary["naive_one_step_rmse"]
    assert lstm["valid_steps"] > 10  # free-running tracks the attractor for a while
    assert json.loads((tmp_path / "results.json").read_text())["config"]["cells"] == "lstm"
    assert (tmp_path / "timeseries.png").stat().st_size > 10_000


def test_lorenz_stays_on_the_attractor_and_bad_flags_are_refused():
    states = example.lorenz(2000, np.random.default_rng(0))
    assert states.shape == (2000, 3) and np.all(np.abs(states[:, :2]) < 30) and np.all((states[:, 2] > 0) & (states[:, 2] < 60))
    assert (states[:, 0] > 0).mean() > 0.2 and (states[:, 0] < 0).mean() > 0.2  # visits both wings
    with pytest.raises(UsageError, match="--cells from"):
        example.main(["--cells", "arima"])
