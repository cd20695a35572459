"""examples/word2vec.py: CBOW and skip-gram word vectors from the standard library's docstrings and comments."""

import json
import math

import numpy as np
import pytest

import tinyseq as ts
from helpers import load_example as load

UsageError = load("common").UsageError

example = load("word2vec")


def test_quick_run_lowers_both_losses_and_writes_its_files(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path)])
    for name in ("cbow", "skipgram"):
        r = summary["results"][name]
        assert r["first_loss"] == pytest.approx(6 * math.log(2), rel=1e-5)  # zero output vectors, K = 5
        assert r["final_loss"] < 0.75 * r["first_loss"]
        assert len(r["neighbours"]["file"]) == 5
    assert json.loads((tmp_path / "results.json").read_text())["config"]["quick"] is True
    assert (tmp_path / "word2vec.png").stat().st_size > 10_000


def test_the_corpus_is_docstrings_and_comments_as_lowercase_ascii_words():
    source = ('"""Module DOC, e.g. os.path."""\nimport os  # Open the naïve utf8 __init__ file\n'
              'def f(count_items):\n    """Return\n    2 VALUES."""\n    return "not_a docstring"\n')
    assert example.words_of(source) == ["module", "doc", "os", "path", "return", "values", "open", "the", "file"]
    assert example.words_of("def broken(:\n") == []
    words = example.load_corpus(max_files=3)
    assert len(words) > 100 and all(w.isascii() and w.isalpha() and w.islower() and len(w) > 1 for w in words)


def test_negatives_follow_the_unigram_distribution_to_the_power_three_quarters():
    counts = np.array([1000, 100, 10, 1])
    probs = example.noise_distribution(counts)
    assert probs == pytest.approx(counts ** 0.75 / (counts ** 0.75).sum()) and probs.sum() == pytest.approx(1)
    draws = example.sample_negatives(np.cumsum(probs), (200_000,), np.random.default_rng(0))
    assert np.bincount(draws, minlength=4) / draws.size == pytest.approx(probs, abs=3e-3)


def test_windows_stay_inside_the_stream_and_the_drawn_reach():
    stream = np.arange(10) + 100
    contexts, mask = example.windows(stream, 3, np.random.default_rng(0))
    offsets = np.array([-3, -2, -1, 1, 2, 3])
    assert contexts.shape == mask.shape == (10, 6)
    assert (contexts[mask] == (np.arange(10)[:, None] + offsets)[mask] + 100).all()
    assert not mask[0, :3].any() and not mask[-1, 3:].any() and mask[:, [2, 3]][1:-1].all()


def test_log_sigmoid_is_stable_and_its_gradient_is_sigmoid_of_minus_x():
    x = ts.Tensor(np.array([-100.0, -1.0, 0.0, 2.0, 100.0]), requires_grad=True)
    y = example.log_sigmoid(x)
    y.sum().backward()
    assert y.data == pytest.approx([-100.0, -math.log1p(math.e), -math.log(2), -math.log1p(math.exp(-2)), 0.0])
    assert np.asarray(x.grad) == pytest.approx(1 / (1 + np.exp(x.data)))


def test_bad_flags_are_refused():
    with pytest.raises(UsageError, match="--models from cbow, skipgram"):
        example.main(["--models", "cbow,glove"])
    with pytest.raises(UsageError, match="--dim must be at least 1"):
        example.main(["--dim", "0"])
    with pytest.raises(UsageError, match="--lr must be > 0"):
        example.main(["--lr", "-1"])
