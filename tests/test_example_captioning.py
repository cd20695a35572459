"""examples/captioning.py: an LSTM decoder spells a digit image's name, conditioned two ways."""

import json

import numpy as np
import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("captioning")


def test_quick_run_learns_to_caption_the_digits(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    assert set(results["modes"]) == {"init_state", "first_input"}
    for run in results["modes"].values():
        assert run["final_loss"] < 0.3 * run["first_loss"]
        for key in ("exact_match", "char_accuracy", "not_a_name"):
            assert 0 <= run[key] <= 1
        assert run["exact_match"] > 0.3  # chance is 0.1
        assert run["char_accuracy"] >= run["exact_match"] - 1e-9  # an exact caption gets every character right
        assert len(run["captions"]) == len(results["test_digits"])
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["best"] in written["modes"] and written["names"][7] == "seven"
    assert (tmp_path / "captioning.png").stat().st_size > 10_000


def test_names_encode_and_decode_and_bad_flags_are_refused():
    digits = np.arange(10)
    decoder_in, decoder_out = example.encode_names(digits)
    assert decoder_in.shape == decoder_out.shape == (example.TARGET_LEN, 10)
    assert (decoder_in[0] == example.START).all()
    for b, name in enumerate(example.NAMES):  # decoder_in is decoder_out shifted by one step
        np.testing.assert_array_equal(decoder_in[1:len(name) + 1, b], decoder_out[:len(name), b])
        assert decoder_out[len(name), b] == example.END and (decoder_out[len(name) + 1:, b] == example.PAD).all()
    assert [example.decode_tokens(row) for row in decoder_out.T] == list(example.NAMES)
    assert example.decode_tokens([example.INDEX["s"], example.START, example.END, example.INDEX["x"]]) == "s?"
    with pytest.raises(UsageError, match="--modes from init_state, first_input"):
        example.main(["--modes", "init_state,last_input"])
    with pytest.raises(UsageError, match="twice"):
        example.main(["--modes", "first_input,first_input"])
    with pytest.raises(UsageError, match="--batch-size"):
        example.main(["--batch-size", "0"])
