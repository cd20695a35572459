"""Packed sequences (``nn.utils.rnn``): packing and unpacking, their gradients, the layers
taking a PackedSequence as they take ``lengths=``, and (marker ``torch``) the same packed
batch through tinyseq and PyTorch.
"""

import numpy as np
import pytest

from tinyseq import Tensor, backend, gradcheck, nn
from tinyseq.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence, pad_packed_sequence

from helpers import weighted_sum

STEPS, BATCH, INPUT, HIDDEN = 5, 4, 3, 2
LENGTHS = [2, 5, 1, 3]


def by_hand(x, lengths):
    """The packed rows written out: step by step, each step's sequences longest first (stable)."""
    order = sorted(range(len(lengths)), key=lambda b: -lengths[b])
    rows = [x[t, b] for t in range(max(lengths)) for b in order if t < lengths[b]]
    sizes = [sum(n > t for n in lengths) for t in range(max(lengths))]
    return np.array(rows), sizes, order


@pytest.mark.parametrize("batch_first", [False, True])
def test_pack_and_unpack_by_hand(batch_first):
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, INPUT))
    packed = pack_padded_sequence(x.swapaxes(0, 1) if batch_first else x, LENGTHS, batch_first, enforce_sorted=False)
    rows, sizes, order = by_hand(x, LENGTHS)
    assert isinstance(packed, PackedSequence) and isinstance(packed, tuple)
    np.testing.assert_array_equal(packed.data.data, rows)
    np.testing.assert_array_equal(packed.batch_sizes, sizes)
    np.testing.assert_array_equal(packed.sorted_indices, order)
    np.testing.assert_array_equal(packed.sorted_indices[packed.unsorted_indices], np.arange(BATCH))
    assert packed.batch_sizes.dtype == packed.sorted_indices.dtype == np.int64

    padded, lengths = pad_packed_sequence(packed, batch_first, padding_value=-1.0, total_length=STEPS + 1)
    assert lengths.dtype == np.int64 and lengths.tolist() == LENGTHS
    expected = np.full((STEPS + 1, BATCH, INPUT), -1.0)
    for b, n in enumerate(LENGTHS):
        expected[:n, b] = x[:n, b]
    np.testing.assert_array_equal(padded.data, expected.swapaxes(0, 1) if batch_first else expected)


def test_sorted_packing_and_pack_sequence():
    seqs = [np.full((n, 2), n, dtype=np.float64) for n in (4, 2, 2, 1)]
    packed = pack_sequence(seqs)
    assert packed.sorted_indices is None and packed.unsorted_indices is None
    np.testing.assert_array_equal(packed.batch_sizes, [4, 3, 1, 1])
    np.testing.assert_array_equal(packed.data.data[:, 0], [4, 2, 2, 1, 4, 2, 2, 4, 4])
    padded, lengths = pad_packed_sequence(packed, batch_first=True)
    assert lengths.tolist() == [4, 2, 2, 1] and padded.shape == (4, 4, 2)
    with pytest.raises(ValueError, match=r"enforce_sorted=True the lengths must be sorted longest first, got "
                                         r"\[1, 2\]; pass enforce_sorted=False"):
        pack_sequence(seqs[::-1][:2])
    assert pack_sequence(seqs[::-1], enforce_sorted=False).sorted_indices.tolist() == [3, 1, 2, 0]


@pytest.mark.parametrize("batch_first", [False, True])
def test_packing_and_unpacking_are_differentiable(batch_first):
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)), requires_grad=True)

    def round_trip(x):
        packed = pack_padded_sequence(x, LENGTHS, batch_first, enforce_sorted=False)
        return weighted_sum([packed.data, pad_packed_sequence(packed, batch_first, 0.5, STEPS + 2)[0]])

    assert gradcheck(round_trip, [x])
    weighted_sum([pack_padded_sequence(x, LENGTHS, batch_first, enforce_sorted=False).data]).backward()
    grad = np.asarray(x.grad)
    valid = np.arange(x.shape[1 if batch_first else 0])[:, None] < np.array(LENGTHS)
    valid = valid.T if batch_first else valid
    assert not grad[~valid].any() and grad[valid].all()  # the padded steps get no gradient


def test_packing_errors():
    x = np.zeros((STEPS, BATCH, INPUT))
    with pytest.raises(ValueError, match=r"pack_padded_sequence: lengths must lie in \[1, 5\] \(the number of "
                                         r"time steps\), got values from 0 to 2"):
        pack_padded_sequence(x, [2, 0, 1, 1], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\] .*, got values from 1 to 6"):
        pack_padded_sequence(x, [6, 2, 1, 1])
    with pytest.raises(ValueError, match="lengths must be 4 integers"):
        pack_padded_sequence(x, [2.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"expected an input of \(T, B, \*\)"):
        pack_padded_sequence(np.zeros(3), [1])
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    with pytest.raises(ValueError, match="total_length must be at least the longest length 5, got 4"):
        pad_packed_sequence(packed, total_length=4)
    with pytest.raises(TypeError, match="pad_packed_sequence: expected a PackedSequence, got ndarray"):
        pad_packed_sequence(x)
    for layer in (nn.GRU(INPUT, HIDDEN, dtype=np.float64), nn.Recurrent(nn.GRUCell(INPUT, HIDDEN, dtype=np.float64))):
        with pytest.raises(ValueError, match="got a PackedSequence and lengths= at once"):
            layer(packed, lengths=LENGTHS)


def _layers(mode, batch_first):
    """Layers that take a PackedSequence, float64: the built-in one on each backend and Recurrent,
    Bidirectional and Stacked over the built-in cells."""
    cell = getattr(nn, mode + "Cell")
    yield getattr(nn, mode)(INPUT, HIDDEN, num_layers=2, bidirectional=True, batch_first=batch_first,
                            dtype=np.float64)
    yield nn.Recurrent(cell(INPUT, HIDDEN, dtype=np.float64), batch_first=batch_first, reverse=True)
    yield nn.Bidirectional(cell(INPUT, HIDDEN, dtype=np.float64), cell(INPUT, HIDDEN, dtype=np.float64), batch_first)
    yield nn.Stacked([nn.Recurrent(cell(INPUT, HIDDEN, dtype=np.float64), batch_first),
                      nn.Recurrent(cell(HIDDEN, HIDDEN, dtype=np.float64), batch_first)])


def _flat(state):
    return [s for part in state for s in _flat(part)] if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("backend_name", ["graph", "numba"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_a_packed_batch_runs_as_lengths(mode, batch_first, backend_name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT))
    with backend.use_backend(backend_name):
        for layer in _layers(mode, batch_first):
            xa, xb = Tensor(x, requires_grad=True), Tensor(x, requires_grad=True)
            out, final = layer(xa, lengths=LENGTHS)
            weighted_sum([out, *_flat(final)]).backward()
            grads = [np.asarray(p.grad) for p in layer.parameters()]
            layer.zero_grad()

            packed = pack_padded_sequence(xb, LENGTHS, batch_first, enforce_sorted=False)
            out_p, final_p = layer(packed)
            assert isinstance(out_p, PackedSequence)
            np.testing.assert_array_equal(out_p.batch_sizes, packed.batch_sizes)
            np.testing.assert_array_equal(out_p.sorted_indices, packed.sorted_indices)
            unpacked, lengths = pad_packed_sequence(out_p, batch_first, total_length=STEPS)
            assert lengths.tolist() == LENGTHS
            weighted_sum([unpacked, *_flat(final_p)]).backward()
            name = type(layer).__name__
            np.testing.assert_allclose(unpacked.data, out.data, rtol=1e-13, atol=1e-14, err_msg=name)
            for a, b in zip(_flat(final_p), _flat(final)):  # the original batch order
                np.testing.assert_allclose(a.data, b.data, rtol=1e-13, atol=1e-14, err_msg=name)
            np.testing.assert_allclose(np.asarray(xb.grad), np.asarray(xa.grad), rtol=1e-12, atol=1e-14)
            for p, g in zip(layer.parameters(), grads):
                np.testing.assert_allclose(np.asarray(p.grad), g, rtol=1e-12, atol=1e-14, err_msg=name)


# ---------------------------------------------------------------- PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("lengths", [LENGTHS, [5, 3, 3, 1], [1, 2, 3, 4]], ids=["unsorted", "sorted-ties", "rising"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_packing_matches_torch(batch_first, lengths):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as trnn

    x = np.random.default_rng(3).standard_normal((STEPS, BATCH, INPUT))
    x = x.swapaxes(0, 1).copy() if batch_first else x
    for enforce_sorted in ([True, False] if lengths == sorted(lengths, reverse=True) else [False]):
        ours = pack_padded_sequence(x, lengths, batch_first, enforce_sorted)
        theirs = trnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths), batch_first, enforce_sorted)
        np.testing.assert_array_equal(ours.data.data, theirs.data.numpy())
        np.testing.assert_array_equal(ours.batch_sizes, theirs.batch_sizes.numpy())
        for a, b in ((ours.sorted_indices, theirs.sorted_indices), (ours.unsorted_indices, theirs.unsorted_indices)):
            assert (a is None and b is None) or np.array_equal(a, b.numpy())
        padded, got = pad_packed_sequence(ours, batch_first, 0.25, STEPS + 1)
        t_padded, t_got = trnn.pad_packed_sequence(theirs, batch_first, 0.25, STEPS + 1)
        np.testing.assert_array_equal(padded.data, t_padded.numpy())
        np.testing.assert_array_equal(got, t_got.numpy())


@pytest.mark.torch
@pytest.mark.parametrize("backend_name", ["graph", "numba"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_a_packed_batch_matches_torch(mode, batch_first, backend_name):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import rnn as trnn

    torch.manual_seed(0)
    options = dict(num_layers=2, bidirectional=True, batch_first=batch_first)
    theirs = getattr(torch.nn, mode)(INPUT, HIDDEN, **options).double()
    ours = getattr(nn, mode)(INPUT, HIDDEN, backend=backend_name, dtype=np.float64, **options)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(4)
    x = rng.standard_normal((BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT))
    states = rng.standard_normal((2 if mode == "LSTM" else 1, 4, BATCH, HIDDEN))

    def run(lib, layer, pack, tensor):
        xt = tensor(x)
        st = [tensor(s) for s in states]
        packed = pack(xt, LENGTHS, batch_first=batch_first, enforce_sorted=False)
        out, final = layer(packed, tuple(st) if mode == "LSTM" else st[0])
        finals = list(final) if mode == "LSTM" else [final]
        weights = np.random.default_rng(5)
        loss = sum((t * lib(weights.standard_normal(t.shape))).sum() for t in [out.data, *finals])
        loss.backward()
        return [out.data, *finals], [xt.grad, *(s.grad for s in st)], packed, out

    t_values, t_grads, t_packed, t_out = run(torch.from_numpy, theirs, trnn.pack_padded_sequence,
                                             lambda a: torch.tensor(a, requires_grad=True))
    s_values, s_grads, s_packed, s_out = run(Tensor, ours, pack_padded_sequence,
                                             lambda a: Tensor(a, requires_grad=True))
    np.testing.assert_array_equal(s_packed.data.data, t_packed.data.detach().numpy())
    np.testing.assert_array_equal(s_out.batch_sizes, t_out.batch_sizes.numpy())
    np.testing.assert_array_equal(s_out.unsorted_indices, t_out.unsorted_indices.numpy())
    for what, a, b in zip(["output", "h_n", "c_n"], s_values, t_values):
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=what)
    for what, a, b in zip(["x", "h0", "c0"], s_grads, t_grads):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-10, atol=1e-10, err_msg=f"grad of {what}")
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
