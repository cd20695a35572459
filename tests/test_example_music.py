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
    assert summary["val_bits"] < summary["baselines_bits"]["unigram"]
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
    assert {"history", "val_bits", "baselines_bits", "music", "samples", "best_epoch"} <= set(saved)

    def no_parsing(path):
        raise AssertionError(f"{path} was parsed again")

    example.encode_chorale, parse = no_parsing, example.encode_chorale  # a second run reads the cache
    try:
        assert len(example.load_chorales(30, tmp_path / "chorales.json")) == 30
    finally:
        example.encode_chorale = parse


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


def test_music_measures_and_split():
    piece = ["<major>", "60:1", "61:1", "R:1", "64:1", "<end>"]
    assert example.in_key_share([piece]) == pytest.approx(2 / 3)
    hist = example.interval_histogram([piece, ["60:1", "79:1"]])  # +1, +3 (over the rest), +19 -> +12
    assert hist[example.MAX_INTERVAL + 1] == hist[example.MAX_INTERVAL + 3] == hist[-1] == pytest.approx(1 / 3)
    chorales = [{"tokens": [f"{60 + i % 5}:1"] * 12} for i in range(20)]  # 5 tunes, 4 chorales each
    train, val = example.split(chorales, 0.4, np.random.default_rng(0))
    assert len(val) == 8 and len(train) == 12
    assert not {c["tokens"][0] for c in train} & {c["tokens"][0] for c in val}


@pytest.mark.parametrize("flag, value", [("--temperature", "0"), ("--samples", "-1"), ("--hidden", "0"),
                                         ("--val-fraction", "0.7")])
def test_bad_flags_are_usage_errors(flag, value, tmp_path):
    with pytest.raises(UsageError, match=flag):
        example.main([flag, value, "--out", str(tmp_path)])
