"""tinyseq.data: vocabularies and token streams batched for truncated BPTT."""

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
