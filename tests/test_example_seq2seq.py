"""examples/seq2seq.py: an encoder-decoder with and without attention reverses digit strings
and rewrites dates, decoded greedily and by beam search."""

import json
import re

import numpy as np
import pytest

import tinyseq as ts
from helpers import load_example as load

UsageError = load("common").UsageError

example = load("seq2seq")


def test_quick_reversal_learns_with_attention_and_writes_heatmaps(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    models = results["models"]
    assert set(models) == {"none", "additive", "dot"}
    for run in models.values():
        assert run["final_loss"] < 0.6 * run["first_loss"]
        by_length = run["exact_match_per_length"]
        assert sorted(by_length) == list(range(3, 9))  # --quick reverses 3 to 8 digits
        assert all(0 <= v <= 1 for v in (*by_length.values(), *run["beam_exact_match_per_length"].values()))
        assert 0 <= run["exact_match"] <= 1 and 0 <= run["beam_exact_match"] <= 1
        assert run["char_accuracy"] > 0.3
        for example_ in run["examples"]:
            assert re.fullmatch(r"[0-9-]*", example_["prediction"])
    assert models["dot"]["final_loss"] < 0.6 * models["none"]["final_loss"]
    for kind in ("additive", "dot"):  # the heatmaps' weights: one row per target step, each a distribution
        for source, weights in models[kind]["attention_weights"].items():
            weights = np.array(weights)[:len(source) + 1, :len(source)]
            assert weights.shape == (len(source) + 1, len(source))
            np.testing.assert_allclose(weights.sum(axis=1), 1, atol=1e-3)
    assert "attention_weights" not in models["none"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["models"]["dot"]["exact_match_per_length"]) == {str(n) for n in range(3, 9)}
    assert (tmp_path / "seq2seq_attention.png").stat().st_size > 30_000


def test_quick_dates_run_learns_and_decodes_dates(tmp_path):
    results = example.main(["--task", "dates", "--quick", "--out", str(tmp_path)])
    for run in results["models"].values():
        assert run["final_loss"] < 0.6 * run["first_loss"]
        assert 0 <= run["exact_match"] <= 1 and run["char_accuracy"] > 0.2
    constant = results["models"]["constant"]
    assert constant["final_loss"] < 0.5 * constant["first_loss"]
    for example_ in constant["examples"]:  # greedy decoding writes strings over the target alphabet
        assert re.fullmatch(r"[0-9-]{0,11}", example_["prediction"])
    assert "linear" in json.loads((tmp_path / "results.json").read_text())["models"]
    assert (tmp_path / "seq2seq.png").stat().st_size > 10_000


def test_data_round_trips():
    pairs = example.make_pairs(np.random.default_rng(0), np.array([738000]), 5)  # one day, five formats drawn
    assert {t for _, t, _ in pairs} == {"2021-07-29"}
    source, lengths, decoder_in, decoder_out = example.encode_batch(pairs)
    assert source.shape == (lengths.max(), 5) and decoder_in.shape == decoder_out.shape == (11, 5)
    assert (decoder_in[0] == example.START).all() and (decoder_out[-1] == example.END).all()
    np.testing.assert_array_equal(decoder_in[1:], decoder_out[:-1])

    held_out = {"12"}
    pairs = example.make_reversals(np.random.default_rng(0), [3, 1, 2] * 20, exclude=held_out)
    assert all(t == s[::-1] and len(s) == n for s, t, n in pairs) and not held_out & {s for s, _, _ in pairs}
    source, lengths, decoder_in, decoder_out = example.encode_batch(pairs[:3])
    np.testing.assert_array_equal(lengths, [3, 1, 2])
    assert source.shape == (3, 3) and (source[1:, 1] == 0).all()  # padded with <pad>
    assert list(decoder_out[:, 1]) == [example.TARGET_INDEX[pairs[1][1]], example.END, example.IGNORE, example.IGNORE]
    assert decoder_in[0, 1] == example.START and decoder_in[1, 1] == decoder_out[0, 1]
    assert example.decode_tokens(decoder_out[:, 0]) == pairs[0][1]


def sequence_log_prob(model, source, lengths, rows):
    """Each decoded row's log-probability under teacher forcing, up to and including its first <end>."""
    decoder_in = np.vstack([np.full(len(rows), example.START), rows[:, :-1].T])
    with ts.no_grad():
        log_probs = ts.nn.functional.log_softmax(model(source, lengths, decoder_in), axis=-1).data
    picked = np.take_along_axis(log_probs, rows.T[:, :, None], axis=-1)[:, :, 0]  # (T, B)
    ended_before = np.cumsum(rows.T == example.END, axis=0) - (rows.T == example.END) > 0
    return np.where(ended_before, 0.0, picked).sum(axis=0)


@pytest.mark.parametrize("attention", ["none", "additive", "dot"])
def test_beam_of_one_is_greedy_and_a_beam_scores_its_own_hypothesis(attention):
    ts.manual_seed(3)
    model = example.Seq2Seq("lstm", 8, 16, attention)
    for p in model.parameters():  # sharper distributions than at initialisation: greedy and beam part ways
        p.data *= 3
    pairs = example.make_reversals(np.random.default_rng(1), [6, 2, 9, 4, 7, 5])
    source, lengths, _, _ = example.encode_batch(pairs)
    tokens, scores, weights = example.greedy(model, source, lengths, max_len=12)
    one, one_scores = example.beam_search(model, source, lengths, beam=1, max_len=12)
    np.testing.assert_array_equal(one, np.where(np.cumsum(tokens == example.END, axis=1) > 0, example.END, tokens))
    np.testing.assert_allclose(one_scores, scores, rtol=1e-6)
    np.testing.assert_allclose(scores, sequence_log_prob(model, source, lengths, tokens), rtol=1e-4, atol=1e-5)
    assert (weights is None) == (attention == "none")
    if weights is not None:
        assert weights.shape == (len(pairs), 12, source.shape[0])
        assert (weights[1, :, 2:] == 0).all()  # padded source steps get no attention
    for beam in (2, 5):
        rows, best = example.beam_search(model, source, lengths, beam=beam, max_len=12)
        # the score a beam reports is its hypothesis's log-probability: each state followed its hypothesis
        np.testing.assert_allclose(best, sequence_log_prob(model, source, lengths, rows), rtol=1e-4, atol=1e-5)
    assert (best > scores + 1e-3).any()  # the search found something greedy missed


def test_a_trained_models_beam_scores_at_least_as_high_as_greedy():
    # NOTE: not a theorem (greedy's prefix can drop out of the beam, for good), but what a trained model shows
    args = example.parse_args(["--quick", "--steps", "80", "--attention", "dot"])
    test_pairs = example.make_reversals(np.random.default_rng(5), [8, 3, 7, 6, 8, 5, 4, 8])
    model, _ = example.train(args, "dot", "constant", None, test_pairs)
    source, lengths, _, _ = example.encode_batch(test_pairs)
    _, greedy_scores, _ = example.greedy(model, source, lengths, max_len=9)
    for beam in (2, 4):
        _, best = example.beam_search(model, source, lengths, beam=beam, max_len=9)
        assert (best >= greedy_scores - 1e-5).all()
    assert (best > greedy_scores + 1e-3).any()


@pytest.mark.parametrize("args,flag", [
    (["--tf-floor", "1.5"], "--tf-floor"),
    (["--attention", "none,bogus"], "--attention"),
    (["--attention", "dot,dot"], "--attention"),
    (["--beam", "0"], "--beam"),
    (["--beam", "99"], "--beam"),
    (["--min-length", "10", "--max-length", "5"], "--min-length"),
    (["--min-length", "0"], "--min-length"),
    (["--max-length", "1000"], "--max-length"),
    (["--eval-size", "3"], "--eval-size"),
])
def test_bad_flags_are_refused_before_any_work(tmp_path, args, flag):
    with pytest.raises(UsageError, match=flag):
        example.main([*args, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_held_out_strings_are_distinct_and_training_never_draws_them():
    held = example.held_out_reversals(np.random.default_rng(0), [1, 2], 5)
    assert [len(s) for s, _, _ in held] == [1] * 5 + [2] * 5 and len({s for s, _, _ in held}) == 10
    exclude = {s for s, _, _ in held}
    drawn = example.make_reversals(np.random.default_rng(1), [1] * 200, exclude)
    assert {s for s, _, _ in drawn} == set("0123456789") - exclude  # the other five, all of them
    with pytest.raises(UsageError, match="--eval-size 520 holds out 260 strings of each length, more than half"):
        example.main(["--min-length", "1", "--max-length", "2"])
