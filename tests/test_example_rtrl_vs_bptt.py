"""examples/rtrl_vs_bptt.py: RTRL's gradient equals BPTT's; its memory does not grow with T; it learns online."""

import json

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("rtrl_vs_bptt")


def test_quick_run_compares_gradients_costs_and_learns_online(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    for kind, row in results["equal_gradients"].items():
        assert row["max_abs_difference"] <= 1e-10 * max(1.0, row["max_abs_gradient"]), kind
    assert set(results["equal_gradients"]) == {"rnn", "lstm", "gru", "user cell"}
    by_t = results["cost"]["T"]
    assert [r["T"] for r in by_t] == [10, 20, 40] and len({r["H"] for r in by_t}) == 1
    # BPTT's memory grows with T; RTRL's (its sensitivities, N*P) hardly does.
    assert by_t[-1]["bptt_bytes"] > 2.5 * by_t[0]["bptt_bytes"]
    assert by_t[-1]["rtrl_bytes"] < 1.5 * by_t[0]["rtrl_bytes"]
    by_h = results["cost"]["H"]
    assert by_h[-1]["rtrl_bytes"] > 2 * by_h[0]["rtrl_bytes"]
    online = results["online"]
    assert online["RTRL"]["last"] > 0.75 and online["RTRL"]["last"] > online["one-step gradient"]["last"] + 0.15
    assert json.loads((tmp_path / "results.json").read_text())["quick"] is True
    assert (tmp_path / "rtrl_vs_bptt.png").stat().st_size > 20_000


def test_theory_counts_and_windowed_accuracy():
    bptt_stored, sensitivity, macs = example.theory(hidden=3, steps=10)
    params = 3 * example.INPUTS + 9 + 6
    assert (bptt_stored, sensitivity, macs) == (30, 3 * params, 9 * params)
    np.testing.assert_allclose(example.windowed(np.array([1, 0, 1, 1]), 2), [0.5, 0.5, 1.0])
    assert example.slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)


@pytest.mark.parametrize("argv, flag", [(["--hidden-sizes", "8"], "--hidden-sizes"),
                                        (["--lengths", "40,20"], "--lengths"),
                                        (["--lengths", "a,b"], "--lengths"),
                                        (["--delay", "0"], "--delay"),
                                        (["--stream", "5", "--delay", "3"], "--stream"),
                                        (["--lr", "0"], "--lr")])
def test_bad_flags_are_usage_errors(argv, flag):
    with pytest.raises(UsageError, match=flag):
        example.main(argv)
