"""examples/music.py: an LSTM learns Bach chorale melodies and writes MIDI and WAV pieces."""

import json
import wave
from fractions import Fraction

import numpy as np
import pytest

from helpers import load_example as load

pytest.importorskip("music21")

UsageError = load("common").UsageError

example = load("music")


def test_quick_run_learns_and_writes_pieces(tmp_path):
    summary = example.main(["--quick", "--out", str(tmp_path), "--samples", "2"])
    history = summary["history"]
    assert history["train_bits"][-1] < 0.8 * history["train_bits"][0]
    assert summary["model_bits"]["validation"] < summary["baselines_bits"]["unigram"]["validation"]
    assert all(np.isfinite(bits["test"]) for bits in [summary["model_bits"], *summary["baselines_bits"].values()])
    assert summary["bigram_alpha"] in example.BIGRAM_ALPHAS
    assert 0.8 < summary["music"]["bach"]["in_key"] <= 1 and summary["music"]["bach"]["interval_tv"] == 0
    assert set(summary["music"]) == {"bach", "unigram", "bigram", "model"}
    assert len(summary["samples"]) == 2
    for piece in summary["samples"]:
        assert (tmp_path / piece["midi"]).read_bytes()[:4] == b"MThd"
        quarters = sum(Fraction(t.split(":")[1]) for t in piece["tokens"])
        with wave.open(str(tmp_path / piece["wav"])) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, example.RATE)
            assert w.getnframes() == round(quarters * 60 / example.BPM * example.RATE) > 0
    assert (tmp_path / "music.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {"history", "model_bits", "baselines_bits", "music", "samples", "best_epoch", "split",
            "unknown_tokens"} <= set(saved)

    def no_parsing(path):
        raise AssertionError(f"{path} was parsed again")

    example.encode_chorale, parse = no_parsing, example.encode_chorale  # a second run reads the cache
    try:
        chorales = example.load_chorales(example.chorale_paths()[:30], tmp_path / "chorales.json")
    finally:
        example.encode_chorale = parse
    # The real chorales' split: the three sets share no chorale and no tune, as tune_groups defines one.
    by_name = {c["name"]: c for c in chorales}
    parts = {part: [by_name[name] for name in names] for part, names in summary["split"].items()}
    assert sorted(sum(summary["split"].values(), [])) == sorted(by_name)
    for held in ("validation", "test"):
        assert parts[held]
        for a in parts[held]:
            assert all(not example.same_tune(a, b) for b in parts["train"])


def test_encoding_round_trip_is_exact():
    from music21 import chord, note, stream, tie

    melody = stream.Stream()
    tied = [note.Note("D4", quarterLength=0.5), note.Note("D4", quarterLength=0.5)]
    tied[0].tie, tied[1].tie = tie.Tie("start"), tie.Tie("stop")
    for n in [note.Note("C4", quarterLength=1), *tied, note.Rest(quarterLength=2),
              chord.Chord(["E4", "G4"], quarterLength=1.5), note.Note("F#4", quarterLength=Fraction(1, 3))]:
        melody.append(n)
    tokens = example.encode(melody)
    assert tokens == ["60:1", "62:1", "R:2", "67:3/2", "66:1/3"]  # ties merged, a chord's top note
    assert example.encode(melody, shift=-2)[0] == "58:1"
    decoded = example.decode(["<major>", *tokens, "<end>"])
    assert example.encode(decoded) == tokens
    assert [(n.isRest, n.quarterLength) for n in decoded.notesAndRests] == [
        (False, 1), (False, 1), (True, 2), (False, 1.5), (False, Fraction(1, 3))]


def test_wav_has_the_notes_and_the_silence(tmp_path):
    path = tmp_path / "a.wav"
    frames = example.write_wav(path, [(69, Fraction(1)), (None, Fraction(1, 2)), (81, Fraction(1, 2))],
                               rate=8000, bpm=120)
    assert frames == 8000  # two quarter notes at 120 a minute: one second
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 8000)
        audio = np.frombuffer(w.readframes(8000), dtype="<i2").astype(float)
    a4, rest, a5 = audio[:4000], audio[4000:6000], audio[6000:]
    assert np.all(rest == 0) and np.abs(audio).max() > 20_000
    for tone, hz in ((a4, 440), (a5, 880)):
        spectrum = np.abs(np.fft.rfft(tone))
        assert np.fft.rfftfreq(len(tone), 1 / 8000)[spectrum.argmax()] == pytest.approx(hz, abs=5)


def test_baselines_by_hand():
    sequences = [[0, 1, 1, 2], [0, 2]]  # predicted: 1, 1, 2 after 0, 1, 1; and 2 after 0
    uni = example.unigram(sequences, 3)
    np.testing.assert_allclose(uni, [1 / 7, 3 / 7, 3 / 7])  # counts 0, 2, 2 plus one each
    bi = example.bigram(sequences, 3, alpha=1.0)
    np.testing.assert_allclose(bi[0], (np.array([0, 1, 1]) + uni) / 3)  # after 0: one 1, one 2
    np.testing.assert_allclose(bi[1], (np.array([0, 1, 1]) + uni) / 3)
    np.testing.assert_allclose(bi[2], uni)  # never seen first: the unigram
    assert bi[0, 1] == pytest.approx(10 / 21)
    assert example.bits_per_token(np.array([0.5, 0.25])) == pytest.approx(1.5)


def test_music_measures():
    piece = ["<major>", "60:1", "61:1", "R:1", "64:1", "<end>"]
    assert example.in_key_share([piece]) == pytest.approx(2 / 3)
    hist = example.interval_histogram([piece, ["60:1", "79:1"]])  # +1, +3 (over the rest), +19 -> +12
    assert hist[example.MAX_INTERVAL + 1] == hist[example.MAX_INTERVAL + 3] == hist[-1] == pytest.approx(1 / 3)


def chorale(pitches, name=""):
    return {"name": name, "tokens": [f"{p}:1" if p else "R:1" for p in pitches]}


TUNE = [67, 67, 69, 71, 72, 71, 69, 67, 69, 71, 69, 67, 66, 67, 0, 71, 72, 74, 72, 71, 69, 67]


def test_settings_of_one_tune_are_grouped():
    versions = [TUNE,
                [p - 12 if p else 0 for p in TUNE],  # an octave lower
                [p + 5 if p else 0 for p in TUNE[:3] + [70] + TUNE[3:]],  # in another key, a passing note added
                [p + 2 for p in TUNE[:9]] + [62, 64, 65, 64, 62, 60, 59, 60],  # the same opening, then another way
                [62] + TUNE]  # with an upbeat: all the opening intervals move
    others = [[60, 64, 67, 72, 71, 67, 64, 60, 62, 65, 69, 65, 62, 60, 59, 55, 60],
              [72, 71, 69, 67, 65, 64, 62, 60, 64, 67, 65, 62, 59, 60, 72, 67]]
    assert example.outline(chorale(versions[1])) == example.outline(chorale(TUNE))
    assert example.similarity(example.outline(chorale(versions[2])), example.outline(chorale(TUNE))) > 0.9
    assert example.similarity(example.outline(chorale(versions[3])), example.outline(chorale(TUNE))) < 0.8
    assert example.opening(chorale(versions[4])) != example.opening(chorale(TUNE))
    groups = example.tune_groups([chorale(v) for v in versions + others])
    assert len(set(groups[:5])) == 1 and len(set(groups)) == 3

    rng = np.random.default_rng(0)  # the five versions and 16 unrelated random tunes, split three ways
    chorales = [chorale(v, f"a{i}") for i, v in enumerate(versions)]
    chorales += [chorale(rng.integers(50, 80, size=30), f"r{i}") for i in range(16)]
    train, val, test, count = example.split(chorales, 0.2, 0.2, rng)
    assert count == 17 and sorted(c["name"] for c in train + val + test) == sorted(c["name"] for c in chorales)
    assert len(val) >= 4 and len(test) >= 4 and len(train) >= 8
    assert sum(any(c["name"].startswith("a") for c in part) for part in (train, val, test)) == 1
    for a in val + test:
        assert not any(example.same_tune(a, b) for b in train)


def test_vocabulary_is_the_training_symbols_and_unk():
    vocab = example.Vocab([chorale([60, 62, 0]), {"name": "", "tokens": ["64:1/2"]}])
    assert vocab.tokens == example.SPECIALS + ["R:1", "60:1", "62:1", "64:1/2"]
    assert vocab.ids({"mode": "minor", "tokens": ["62:1", "61:1", "64:1/2", "64:1"]}) == [
        example.MINOR, 7, example.UNK, 8, example.UNK, example.END]


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "{not json", '{"version": "music-1", "chorales": [1]}'])
def test_unreadable_cache_is_parsed_again(content, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "chorales.json"
    cache.write_text(content)
    monkeypatch.setattr(example, "encode_chorale", lambda path: {"name": path, "mode": "major", "shift": 0,
                                                                 "tokens": ["60:1"]})
    assert [c["name"] for c in example.load_chorales(["x", "y"], cache)] == ["x", "y"]
    assert "unreadable" in capsys.readouterr().out
    stored = json.loads(cache.read_text())
    assert stored["version"] == example.CACHE_VERSION and len(stored["chorales"]) == 2


def test_more_chorales_than_the_corpus_has_is_a_usage_error(tmp_path):
    available = len(example.chorale_paths())
    with pytest.raises(UsageError, match=f"--chorales 1000: .* {available} distinct"):
        example.main(["--chorales", "1000", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # checked before any work


@pytest.mark.parametrize("flag, value", [("--temperature", "0"), ("--samples", "-1"), ("--hidden", "0"),
                                         ("--val-fraction", "0.7"), ("--test-fraction", "0"),
                                         ("--test-fraction", "0.4")])
def test_bad_flags_are_usage_errors(flag, value, tmp_path):
    with pytest.raises(UsageError, match=flag):
        example.main([flag, value, "--out", str(tmp_path)])
