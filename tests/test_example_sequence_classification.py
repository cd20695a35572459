"""examples/sequence_classification.py: digits read row by row are classified from the last state."""

import json

import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("sequence_classification")


def test_quick_run_learns_the_digits(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path)])
    lstm = summary["results"]["lstm"]
    assert lstm["loss"][-1] < 0.5 * lstm["loss"][0]
    assert lstm["final_test_accuracy"] > 0.6  # chance is 0.1
    assert json.loads((tmp_path / "results.json").read_text())["best"] == "lstm"
    assert (tmp_path / "sequence_classification.png").stat().st_size > 10_000


def test_pixel_order_reads_64_steps_and_bad_flags_are_refused():
    import numpy as np

    x, y, x_test, y_test = example.load_digits("pixels", np.random.default_rng(0))
    assert x.shape[1:] == (64, 1) and len(x) + len(x_test) == 1797 and 0 <= x.min() and x.max() <= 1
    with pytest.raises(UsageError, match="--cells from"):
        example.main(["--cells", "lstm,transformer"])
