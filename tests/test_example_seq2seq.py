"""examples/seq2seq.py: an encoder-decoder learns to rewrite dates, decoded greedily."""

import json
import re

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("seq2seq")


def test_quick_run_learns_and_decodes_dates(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    for run in results["models"].values():
        assert run["final_loss"] < 0.6 * run["first_loss"]
        assert 0 <= run["exact_match"] <= 1 and run["char_accuracy"] > 0.2
    constant = results["models"]["constant"]
    assert constant["final_loss"] < 0.5 * constant["first_loss"]
    for example_ in constant["examples"]:  # greedy decoding writes strings over the target alphabet
        assert re.fullmatch(r"[0-9-]{0,11}", example_["prediction"])
    assert "linear" in json.loads((tmp_path / "results.json").read_text())["models"]
    assert (tmp_path / "seq2seq.png").stat().st_size > 10_000


def test_data_round_trips_and_bad_flags_are_refused():
    pairs = example.make_pairs(np.random.default_rng(0), np.array([738000]), 5)  # one day, five formats drawn
    assert {t for _, t, _ in pairs} == {"2021-07-29"}
    source, lengths, decoder_in, decoder_out = example.encode_batch(pairs)
    assert source.shape == (lengths.max(), 5) and decoder_in.shape == decoder_out.shape == (11, 5)
    assert (decoder_in[0] == example.START).all() and (decoder_out[-1] == example.END).all()
    np.testing.assert_array_equal(decoder_in[1:], decoder_out[:-1])
    with pytest.raises(UsageError, match="--tf-floor"):
        example.main(["--tf-floor", "1.5"])
