"""tinyseq.data: vocabularies and token streams batched for truncated BPTT."""

import re

import numpy as np
import pytest

from tinyseq.data import StreamBatches, Vocab
from tinyseq.serialization import load, save


def test_vocab_round_trip_and_order():
    text = "hello, world\n"
    vocab = Vocab.from_text(text)
    assert vocab.symbols == sorted(set(text)) and len(vocab) == 10
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text

    assert vocab.encode("").shape == (0,) and vocab.decode([]) == ""


def test_vocab_survives_a_checkpoint(tmp_path):
    vocab = Vocab.from_text("ab\n\x00\r\t\u00e9\U0001f600 c\u0301")
    save(vocab.state_dict(), tmp_path / "vocab.npz")
    assert Vocab.from_state_dict(load(tmp_path / "vocab.npz")).symbols == vocab.symbols


def test_vocabs_are_equal_when_their_symbols_are():
    assert Vocab.from_text("cab") == Vocab("abc") and Vocab("abc") != Vocab("abd")
    assert Vocab("ab") != "ab" and Vocab("ab") != Vocab("ba")


def test_vocab_errors_name_what_is_wrong():
    vocab = Vocab.from_text("abc")
    with pytest.raises(ValueError, match="character 'z' is not in the vocabulary"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\), got values from 0 to 3"):
        vocab.decode([0, 3])
    with pytest.raises(TypeError, match="ids must be integers, got dtype <U1"):
        vocab.decode(np.array(["a"]))
    with pytest.raises(ValueError, match=r"expected a 1-D sequence of ids, got shape \(2, 1\)"):
        vocab.decode([[0], [1]])
    with pytest.raises(ValueError, match="non-empty sequence of single characters"):
        Vocab.from_text("")
    with pytest.raises(ValueError, match="repeat"):
        Vocab("aba")


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("n,batch,steps", [(101, 4, 7), (100, 3, 33), (9, 4, 1), (50, 1, 100)])
def test_stream_chunks_continue_each_stream_and_targets_are_shifted(n, batch, steps, batch_first):
    tokens = np.arange(n) * 3
    batches = StreamBatches(tokens, batch, steps, batch_first=batch_first)
    length = (n - 1) // batch
    chunks = list(batches)
    assert len(chunks) == len(batches) == -(-length // steps)
    xs = np.concatenate([x if batch_first else x.T for x, _ in chunks], axis=1)
    ys = np.concatenate([y if batch_first else y.T for _, y in chunks], axis=1)
    for b in range(batch):  # each row is one contiguous stream, the target one token later
        np.testing.assert_array_equal(xs[b], tokens[b * length:(b + 1) * length])
        np.testing.assert_array_equal(ys[b], tokens[b * length + 1:(b + 1) * length + 1])
    x0, _ = chunks[0]
    assert x0.shape == ((batch, min(steps, length)) if batch_first else (min(steps, length), batch))
    assert x0.dtype == np.int64 and x0.flags.c_contiguous


def test_a_checkpoint_at_the_last_chunk_resumes_into_the_next_pass():
    batches = StreamBatches(np.arange(41), 4, 5)  # 2 chunks
    for i, _ in enumerate(batches):
        if i == len(batches) - 1:
            state = batches.state_dict()  # taken while the last chunk is in use
            break
    resumed = StreamBatches(np.arange(41), 4, 5)
    resumed.load_state_dict(state)
    assert list(resumed) == [] and resumed.position == 0 and resumed.passes == 1  # that pass is over
    np.testing.assert_array_equal(next(iter(resumed))[0], batches.chunk(0)[0])


def test_stream_position_resumes_and_a_new_pass_starts_over(tmp_path):
    batches = StreamBatches(np.arange(200), 4, 5)
    it = iter(batches)
    first = [next(it) for _ in range(3)]
    assert batches.position == 3
    save(batches.state_dict(), tmp_path / "pos.npz")
    resumed = StreamBatches(np.arange(200), 4, 5)
    resumed.load_state_dict(load(tmp_path / "pos.npz"))
    rest = list(resumed)
    assert len(first) + len(rest) == len(batches)
    np.testing.assert_array_equal(rest[0][0], batches.chunk(3)[0])
    assert resumed.position == 0 and resumed.passes == 1  # the pass ended; the next one starts at chunk 0
    np.testing.assert_array_equal(next(iter(resumed))[0], first[0][0])


def test_stream_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="1-D integer array"):
        StreamBatches(np.zeros((2, 3), dtype=int), 1, 1)
    with pytest.raises(ValueError, match="1-D integer array"):
        StreamBatches(np.zeros(10), 1, 1)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        StreamBatches(np.arange(10), 0, 1)
    with pytest.raises(ValueError, match="steps must be a positive int, got 2.5"):
        StreamBatches(np.arange(10), 1, 2.5)
    with pytest.raises(ValueError, match=r"4 tokens are too few for 4 streams \(at least 5\)"):
        StreamBatches(np.arange(4), 4, 1)
    batches = StreamBatches(np.arange(10), 2, 2)  # 2 streams of 4 tokens: 2 chunks
    with pytest.raises(IndexError, match="index 2 out of range for 2 chunks"):
        batches.chunk(2)
    with pytest.raises(ValueError, match=r"position must be in \[0, 2\], got 3"):
        batches.load_state_dict({**batches.state_dict(), "position": 3})
    with pytest.raises(ValueError, match="saved with steps=3, these batches have 2"):
        batches.load_state_dict({**batches.state_dict(), "steps": 3})
    with pytest.raises(ValueError, match="tokens must be >= 0, got -1"):
        StreamBatches(np.array([1, -1, 2]), 1, 1)


def test_passes_are_counted_and_resumed():
    batches = StreamBatches(np.arange(41), 4, 5)
    for _ in range(3):
        list(batches)
    assert batches.passes == 3 and "passes=3" in repr(batches)
    resumed = StreamBatches(np.arange(41), 4, 5)
    resumed.load_state_dict(batches.state_dict())
    assert resumed.passes == 3
    with pytest.raises(ValueError, match="passes must be an int >= 0, got -1"):
        resumed.load_state_dict({**batches.state_dict(), "passes": -1})


# ---------------------------------------------------------------- bad arguments (issue 22)

VOCAB_MISUSES = [
    (TypeError, r"Vocab\.from_text: the text must be a str, got int", lambda v: Vocab.from_text(123)),
    (TypeError, r"Vocab\.from_text: the text must be a str, got list", lambda v: Vocab.from_text(["ab", "c"])),
    (TypeError, r"Vocab: expected a str or a sequence of single characters, got int", lambda v: Vocab(5)),
    (TypeError, r"Vocab\.encode: the text must be a str, got NoneType", lambda v: v.encode(None)),
    (TypeError, r"Vocab\.encode: the text must be a str, got bytes", lambda v: v.encode(b"ab")),
    (TypeError, r"Vocab\.decode: ids must be integers, got dtype float64", lambda v: v.decode([0.0, 1.0])),
    (TypeError, r"Vocab\.decode: ids must be integers, got dtype bool", lambda v: v.decode([True, False])),
    (TypeError, r"Vocab\.decode: expected a 1-D sequence of integer ids, got NoneType", lambda v: v.decode(None)),
    (TypeError, r"Vocab\.decode: expected a 1-D sequence of integer ids, got list \[\[0\], \[0, 1\]\]",
     lambda v: v.decode([[0], [0, 1]])),
    (TypeError, r"Vocab\.from_state_dict: expected a dict from Vocab\.state_dict\(\), got NoneType",
     lambda v: Vocab.from_state_dict(None)),
    (ValueError, r"Vocab\.from_state_dict: the state has no 'symbols'", lambda v: Vocab.from_state_dict({})),
    (TypeError, r"Vocab\.from_state_dict: 'symbols' must be a str, got int",
     lambda v: Vocab.from_state_dict({"symbols": 3})),
]


@pytest.mark.parametrize("error, message, misuse", VOCAB_MISUSES, ids=[m for _, m, _ in VOCAB_MISUSES])
def test_vocab_misuse_names_the_function_and_what_it_takes(error, message, misuse):
    with pytest.raises(error, match=message):
        misuse(Vocab.from_text("abc"))


STATE_MISUSES = [
    (TypeError, r"StreamBatches\.load_state_dict: expected a dict from StreamBatches\.state_dict\(\), got NoneType", None),
    (TypeError, r"StreamBatches\.load_state_dict: expected a dict from StreamBatches\.state_dict\(\), got list", [1, 2]),
    (ValueError, r"StreamBatches\.load_state_dict: the state has no 'position'", {"position": None}),
    (ValueError, r"StreamBatches\.load_state_dict: the state has no 'batch_size'", {"batch_size": None}),
    (ValueError, r"StreamBatches\.load_state_dict: the state has no 'steps'", {"steps": None}),
    (ValueError, r"StreamBatches\.load_state_dict: the state has no 'stream_length'", {"stream_length": None}),
    (ValueError, r"StreamBatches\.load_state_dict: position must be an int >= 0, got 1\.5", {"position": 1.5}),
    (ValueError, r"StreamBatches\.load_state_dict: position must be an int >= 0, got True", {"position": True}),
    (ValueError, r"StreamBatches\.load_state_dict: saved with steps=array\(\[2, 2\]\), these batches have 2",
     {"steps": np.array([2, 2])}),
    (ValueError, r"StreamBatches\.load_state_dict: saved with steps=2\.0, these batches have 2", {"steps": 2.0}),
]


@pytest.mark.parametrize("error, message, change", STATE_MISUSES, ids=[m for _, m, _ in STATE_MISUSES])
def test_stream_load_state_dict_misuse_names_what_is_wrong(error, message, change):
    """A key set to None in ``change`` is removed from a good state."""
    batches = StreamBatches(np.arange(10), 2, 2)
    state = change
    if isinstance(change, dict):
        state = {k: v for k, v in {**batches.state_dict(), **change}.items() if v is not None}
    with pytest.raises(error, match=message):
        batches.load_state_dict(state)
    assert (batches.position, batches.passes) == (0, 0)  # left as it was


def test_stream_state_without_passes_counts_from_zero():
    """States saved before passes were counted still load."""
    batches = StreamBatches(np.arange(10), 2, 2)
    state = batches.state_dict()
    del state["passes"]
    batches.load_state_dict({**state, "position": np.int64(1)})
    assert (batches.position, batches.passes) == (1, 0) and type(batches.position) is int


def test_stream_chunk_takes_an_index_as_a_sequence_does():
    batches = StreamBatches(np.arange(31), 2, 5)  # 2 streams of 15 tokens: 3 chunks
    for i in (-1, -3, np.int64(-2), np.int32(1)):
        for got, want in zip(batches.chunk(i), batches.chunk(int(i) % 3)):
            np.testing.assert_array_equal(got, want)
    for i in (3, -4, 10**30):
        with pytest.raises(IndexError, match=rf"StreamBatches\.chunk: index {i} out of range for 3 chunks"):
            batches.chunk(i)
    for i, got in ((1.5, "float 1.5"), (True, "bool True"), ("1", "str '1'"), (None, "NoneType None"),
                   (np.float64(1.0), "float64 np.float64(1.0)")):
        with pytest.raises(TypeError, match=re.escape(f"StreamBatches.chunk: the index must be an int, got {got}")):
            batches.chunk(i)
