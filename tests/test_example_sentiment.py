"""examples/sentiment.py: word-level RNNs and a bag of words on a negation grammar."""

import json

import numpy as np
import pytest

import tinyseq as ts
from helpers import load_example as load

UsageError = load("common").UsageError

example = load("sentiment")


def test_quick_run_learns_negation_and_the_bag_of_words_cannot(tmp_path):
    # Thresholds from --quick at seeds 0-11 (this test runs seed 0): the LSTM's final loss at most
    # 0.05x its first; its accuracy at least 0.94 on plain, 0.72 on negated A (0.93 but for seed 3),
    # 0.99 on double A; the bag of words at most 0.13 on negated A and 0 on negated P.
    summary = example.main(["--quick", "--out", str(tmp_path)])
    run = summary["models"]["lstm last"]
    assert np.mean(run["loss"][-50:]) < 0.1 * np.mean(run["loss"][:20])
    lstm, bow = run["accuracy"], summary["bag_of_words"]
    assert lstm["plain"] >= 0.9 and lstm["double A"] >= 0.9  # chance is 0.5
    assert lstm["negated A"] >= 0.65  # negation learnt on the adjectives it was trained on
    assert bow["negated A"] <= 0.2 and bow["negated P"] <= 0.2  # a word's vote cannot be flipped
    assert bow["double P"] >= 0.9  # ... and it is right where the label is the adjective's own polarity
    written = json.loads((tmp_path / "results.json").read_text())
    assert set(written["test_sentences"]) == set(example.GROUPS) and len(written["saliency"]) == 6
    assert written["saliency_model"] == "lstm last"  # the run's first model, not the best on the test set
    assert (tmp_path / "sentiment.png").stat().st_size > 20_000


@pytest.mark.parametrize("sentence, positive", [
    ("the movie was bad", False),
    ("the movie was not bad", True),
    ("the plot is not very good", False),
    ("the acting was never boring", True),
    ("it was not at all dull", True),
    ("overall the plot is really excellent", True),
    ("it is false that the film was good", False),
    ("it is not true that the film was not good", True),
    ("i do not think that the ending was hardly awful", False),
])
def test_the_grammar_labels_by_negations(sentence, positive):
    assert example.label(sentence) == (example.POSITIVE_LABEL if positive else example.NEGATIVE_LABEL)


def negations(sentence):
    return sum(word in example.NEGATION_WORDS for word in sentence.split())


def test_held_out_combinations_are_absent_from_training():
    rng = np.random.default_rng(0)
    sentence = example.make_sentence(rng, "dull", 2)
    assert sentence.split()[-1] == "dull" and negations(sentence) == 2
    train, test = example.make_data(rng, 3000, 50)
    counts = {(s.split()[-1], negations(s)) for s in train}
    assert {adjective for adjective, n in counts if n == 0} == set(example.POSITIVE + example.NEGATIVE)
    assert not {(a, n) for a, n in counts if a in example.PLAIN_ONLY and n > 0}
    assert not {(a, n) for a, n in counts if a in example.NO_DOUBLE and n == 2}
    assert {(a, 2) for a in example.ALL_FORMS} <= counts
    for group, (adjectives, n) in example.GROUPS.items():
        assert len(test[group]) == 50 and not set(test[group]) & set(train)
        assert all(s.split()[-1] in adjectives and negations(s) == n for s in test[group])
    tokens, lengths = example.encode(test["double P"][:3])
    assert tokens.shape == (3, lengths.max()) and (tokens[np.arange(3), lengths - 1] != example.PAD).all()


@pytest.mark.parametrize("cell, pooling", [("lstm", "last"), ("gru", "attention")])
def test_saliency_is_the_gradient_of_the_predicted_logit(cell, pooling):
    ts.manual_seed(1)
    model = example.Sentiment(cell, pooling, embed=3, hidden=4, dtype=np.float64)
    if pooling == "attention":
        model.query.data[:] = np.random.default_rng(1).normal(size=4)  # a query that is not zero
    sentence = "it is not true that the plot was not good"
    predicted, gradient, scores = example.saliency(model, sentence)
    tokens, lengths = example.encode([sentence])
    vectors = model.embed.weight.data[tokens][0]

    def logit(v):
        with ts.no_grad():
            return model.classify(v[None], lengths).data[0, predicted]

    eps, numeric = 1e-6, np.zeros_like(vectors)
    for index in np.ndindex(vectors.shape):
        step = np.zeros_like(vectors)
        step[index] = eps
        numeric[index] = (logit(vectors + step) - logit(vectors - step)) / (2 * eps)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(scores, (numeric * vectors).sum(-1), rtol=1e-5, atol=1e-8)
    assert all(p.grad is None for p in model.parameters())  # saliency leaves the model as it found it


def test_saliency_keeps_the_gradients_the_caller_had():
    ts.manual_seed(2)
    model = example.Sentiment("lstm", "last", embed=3, hidden=4)
    loss = model(*example.encode(["the movie was not bad"])).sum()
    loss.backward()
    before = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None for g in before.values())
    copies = {name: g.numpy().copy() for name, g in before.items()}
    example.saliency(model, "it is false that the plot was good")
    for name, p in model.named_parameters():
        assert p.grad is before[name]  # the same tensor, not replaced ...
        np.testing.assert_array_equal(p.grad.numpy(), copies[name])  # ... nor added into


@pytest.mark.parametrize("flags, words", [
    (["--cell", "rnn"], "--cell from lstm, gru"),
    (["--pooling", "max"], "--pooling from last, attention"),
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--lr", "0"], "--lr must be positive"),
])
def test_bad_flags_are_refused(flags, words, tmp_path):
    with pytest.raises(UsageError, match=words):
        example.main([*flags, "--out", str(tmp_path)])
