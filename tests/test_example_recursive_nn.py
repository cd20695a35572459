"""examples/recursive_nn.py: a tree network and a flat LSTM evaluate expression trees."""

import json

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("recursive_nn")


def test_quick_run_trains_both_models_and_writes_its_results(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path)])
    majority = summary["majority"]
    for name, r in summary["results"].items():  # logic, trained on depths 1-3, tested on 1-5
        assert np.mean(r["loss"][-10:]) < 0.5 * r["loss"][0], name
        assert set(r["accuracy"]) == set(majority) == {1, 2, 3, 4, 5}
        assert r["accuracy"][1] > majority[1] + 0.2, name
    assert json.loads((tmp_path / "results.json").read_text())["config"]["task"] == "logic"
    assert (tmp_path / "recursive_nn.png").stat().st_size > 10_000


def test_trees_values_and_flattening():
    arithmetic, logic = example.TASKS["arithmetic"], example.TASKS["logic"]
    plus, minus = 10, 11  # the operators' tokens come after the ten digits
    tree = (((3, plus), ((4, minus), 9)), minus), 5
    assert arithmetic.value(tree) == ((3 + (4 - 9)) - 5) % 10
    o, c = arithmetic.open, arithmetic.close
    assert arithmetic.flatten(tree) == [o, o, 3, plus, o, 4, minus, 9, c, c, minus, 5, c]
    and_, or_ = 2, 3
    assert logic.value(((1, and_), ((0, or_), 1))) == 1 and logic.value(((1, and_), 0)) == 0
    rng = np.random.default_rng(0)
    for task in (arithmetic, logic):
        for depth in range(4):
            t = task.random_tree(rng, depth)
            assert _depth(t) == depth and 0 <= task.value(t) < task.leaves
    with pytest.raises(UsageError, match="--models from"):
        example.main(["--models", "tree,gru"])


def _depth(tree):
    return 0 if isinstance(tree, int) else 1 + max(_depth(tree[0][0]), _depth(tree[1]))
