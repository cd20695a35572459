"""tinyseq.data: Dataset, TensorDataset, DataLoader, default_collate, pad_collate, random_split."""

import collections
import functools

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import nn, optim
from tinyseq.data import (DataLoader, Dataset, Subset, TensorDataset, default_collate, pad_collate,
                          random_split)
from tinyseq.nn.utils.rnn import pad_sequence


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i, float(i * i)

    def __len__(self):
        return self.n


def firsts(loader):
    """The sample indices of each batch of a loader over Squares."""
    return [batch[0].data.tolist() for batch in loader]


# ---------------------------------------------------------------- datasets


def test_dataset_base_names_what_is_missing():
    with pytest.raises(NotImplementedError, match="Dataset must define __getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="__len__"):
        len(Dataset())


def test_tensor_dataset_indexes_every_tensor_alike():
    x, y = ts.tensor(np.arange(12.0).reshape(4, 3)), np.arange(4)
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    row, label = ds[2]
    assert isinstance(row, ts.Tensor) and row.data.tolist() == [6.0, 7.0, 8.0]
    assert isinstance(label, np.integer) and label == 2
    assert len(Subset(ds, [3, 1])) == 2 and Subset(ds, [3, 1])[0][1] == 3


@pytest.mark.parametrize("args,error,match", [
    ((), ValueError, "expected at least one"),
    ((np.zeros((3, 2)), np.zeros(4)), ValueError, "tensor 0 has 3 rows, tensor 1 has 4"),
    ((np.zeros(3), [1, 2, 3]), TypeError, "argument 1 must be a Tensor or array with a first dimension, got list"),
    ((np.array(1.0),), TypeError, "argument 0 must be .*, got a 0-d ndarray"),
])
def test_tensor_dataset_checks_its_tensors(args, error, match):
    with pytest.raises(error, match="^TensorDataset: .*" + match):
        TensorDataset(*args)


# ---------------------------------------------------------------- DataLoader


@pytest.mark.parametrize("n,batch_size,drop_last,sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (2, 5, False, [2]),
    (2, 5, True, []),
])
def test_loader_batches_in_order(n, batch_size, drop_last, sizes):
    loader = DataLoader(Squares(n), batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes) and [len(b[0].data) for b in batches] == sizes
    assert sum(firsts(loader), []) == list(range(sum(sizes)))
    for index, square in batches:
        assert index.dtype == np.int64 and square.dtype == np.float64
        assert square.data.tolist() == [float(i * i) for i in index.data.tolist()]


def test_shuffle_reorders_each_epoch_and_manual_seed_repeats_it():
    loader = DataLoader(Squares(20), batch_size=4, shuffle=True)
    ts.manual_seed(5)
    first, second = firsts(loader), firsts(loader)
    assert sorted(sum(first, [])) == list(range(20)) and sorted(sum(second, [])) == list(range(20))
    assert first != second and sum(first, []) != list(range(20))
    ts.manual_seed(5)
    assert firsts(loader) == first and firsts(loader) == second


def test_a_generator_gives_the_order_independently_of_the_default_one():
    def epochs(seed):
        loader = DataLoader(Squares(12), batch_size=5, shuffle=True, generator=np.random.default_rng(seed))
        ts.manual_seed(seed + 1)  # must not matter
        return firsts(loader) + firsts(loader)

    assert epochs(3) == epochs(3) != epochs(4)


def test_a_sampler_gives_the_order():
    loader = DataLoader(Squares(6), batch_size=4, sampler=[5, 0, 3, 3, 1])
    assert len(loader) == 2 and firsts(loader) == [[5, 0, 3, 3], [1]]


def test_collate_fn_gets_the_list_of_samples():
    loader = DataLoader(Squares(5), batch_size=2, collate_fn=lambda samples: samples)
    assert list(loader)[-1] == [(4, 16.0)]


@pytest.mark.parametrize("make,error,match", [
    (lambda: DataLoader([1, 2], batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
    (lambda: DataLoader(iter([1, 2])), TypeError, "expected a map-style dataset"),
    (lambda: DataLoader([1, 2], shuffle=True, sampler=[0, 1]), ValueError, "mutually exclusive"),
    (lambda: DataLoader([1, 2], sampler=iter([0, 1])), TypeError, "sampler must be an iterable of indices with a len"),
    (lambda: DataLoader([1, 2], collate_fn="stack"), TypeError, "collate_fn must be callable"),
    (lambda: DataLoader([1, 2], shuffle=True, generator=3), TypeError, "numpy.random.Generator"),
])
def test_loader_checks_its_arguments(make, error, match):
    with pytest.raises(error, match="^DataLoader: .*" + match):
        make()


# ---------------------------------------------------------------- default_collate


Point = collections.namedtuple("Point", "x y")


def samples(module=None):
    """Samples with every kind of leaf default_collate handles, as tinyseq or torch tensors."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(3):
        t = rng.standard_normal((2, 3)).astype(np.float32)
        out.append({
            "tensor": ts.tensor(t) if module is None else module.tensor(t),
            "array": rng.standard_normal(4),
            "scalars": (i, 0.5 * i, i % 2 == 0, np.float32(i), np.int32(-i)),
            "word": f"w{i}",
            "point": Point([i, i + 1], np.arange(2) * i),
        })
    return out


def structure(batch):
    """(kind, dtype, values) leaves of a collated batch, with torch tensors read as arrays."""
    if isinstance(batch, dict):
        return {k: structure(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return (type(batch).__name__, [structure(v) for v in batch])
    if isinstance(batch, list):
        return [structure(v) for v in batch]
    if isinstance(batch, str):
        return batch
    array = np.asarray(batch.data if isinstance(batch, ts.Tensor) else batch.numpy())
    return ("tensor", str(array.dtype), array.shape, array.tolist())


@pytest.mark.torch
def test_default_collate_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate
    ours, theirs = default_collate(samples()), torch_collate(samples(torch))
    assert structure(ours) == structure(theirs)
    assert isinstance(ours["point"], Point)


@pytest.mark.parametrize("batch,dtype,values", [
    ([1, 2.5], np.float32, [1.0, 2.5]),  # not int64 [1, 2]
    ([True, 2], np.int64, [1, 2]),  # not bool [True, True]
    ([True, False], np.bool_, [True, False]),
    ([1, 2], np.int64, [1, 2]),
    ([2.5, 1], np.float64, [2.5, 1.0]),
])
def test_default_collate_reads_python_numbers_as_torch_does(batch, dtype, values):
    out = default_collate(batch)
    assert out.dtype == dtype and out.tolist() == values


@pytest.mark.torch
def test_default_collate_of_mixed_python_numbers_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate
    for batch in ([1, 2.5], [True, 2], [True, False], [(0, 1), (0.5, 2)]):
        assert structure(default_collate(batch)) == structure(torch_collate(batch))


def test_default_collate_keeps_the_graph_of_tensors():
    a, b = ts.tensor([1.0, 2.0], requires_grad=True), ts.tensor([3.0, 4.0], requires_grad=True)
    default_collate([a, b]).sum().backward()
    np.testing.assert_array_equal(np.asarray(a.grad), [1.0, 1.0])


@pytest.mark.parametrize("batch,error,match", [
    ([], ValueError, "expected a non-empty list of samples"),
    ([(1, 2), (3,)], ValueError, "sequences of different lengths"),
    ([object()], TypeError, "got object"),
])
def test_default_collate_errors(batch, error, match):
    with pytest.raises(error, match="^default_collate: .*" + match):
        default_collate(batch)


# ---------------------------------------------------------------- pad_collate


def sequences(lengths, features=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, features)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("batch_first", [False, True])
def test_pad_collate_pads_and_returns_lengths(batch_first):
    seqs = sequences([3, 5, 1])
    padded, lengths = pad_collate(seqs, batch_first=batch_first)
    assert lengths.dtype == np.int64 and lengths.tolist() == [3, 5, 1]
    np.testing.assert_array_equal(padded.data, pad_sequence(seqs, batch_first).data)
    assert padded.shape == ((3, 5, 2) if batch_first else (5, 3, 2))

    labelled = [(s, k, {"id": f"s{k}"}) for k, s in enumerate(seqs)]
    padded2, lengths2, labels, ids = pad_collate(labelled, batch_first=batch_first, padding_value=-1.0)
    assert labels.data.tolist() == [0, 1, 2] and ids == {"id": ["s0", "s1", "s2"]}
    assert lengths2.tolist() == [3, 5, 1] and (padded2.data == -1.0).sum() == 2 * (5 - 3 + 5 - 1)


@pytest.mark.parametrize("batch,match", [
    ([], "expected a non-empty list"),
    ([(np.zeros((2, 1)), 0), np.zeros((2, 1))], "every sample to be a sequence, or a tuple"),
    ([(np.zeros((2, 1)), 0), (np.zeros((2, 1)),)], "of one length"),
])
def test_pad_collate_errors(batch, match):
    with pytest.raises(ValueError, match="^pad_collate: .*" + match):
        pad_collate(batch)


def test_a_gru_classifier_trains_over_a_padded_loader():
    """Is the mean of a variable-length sequence positive? An nn.GRU reads the padded batches
    with ``lengths=``, its last valid state goes to a linear classifier."""
    ts.manual_seed(0)
    rng = np.random.default_rng(1)

    class Signs(Dataset):
        def __init__(self, n):
            self.seqs = [(rng.standard_normal((rng.integers(2, 9), 1)) + rng.choice([-0.7, 0.7])).astype(np.float32)
                         for _ in range(n)]

        def __getitem__(self, i):
            return self.seqs[i], int(self.seqs[i].mean() > 0)

        def __len__(self):
            return len(self.seqs)

    train, test = random_split(Signs(96), [0.75, 0.25], generator=np.random.default_rng(2))
    gru, head = nn.GRU(1, 8), nn.Linear(8, 2)
    params = list(gru.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=0.05)
    collate = functools.partial(pad_collate, batch_first=False)

    def loss_of(x, lengths, y):
        _, h_n = gru(x, lengths=lengths)
        return nn.functional.cross_entropy(head(h_n[-1]), y.data)

    def test_loss():
        with ts.no_grad():
            return np.mean([loss_of(*batch).item() for batch in DataLoader(test, batch_size=8, collate_fn=collate)])

    before = test_loss()
    for _ in range(4):
        for x, lengths, y in DataLoader(train, batch_size=12, shuffle=True, collate_fn=collate):
            assert x.shape[1:] == (12, 1) and x.shape[0] == lengths.max()
            opt.zero_grad()
            loss_of(x, lengths, y).backward()
            opt.step()
    assert test_loss() < 0.7 * before  # 0.82 -> 0.36 when written


# ---------------------------------------------------------------- random_split


@pytest.mark.torch
@pytest.mark.parametrize("n,lengths", [
    (10, [0.33, 0.33, 0.34]), (7, [0.5, 0.5]), (101, [0.8, 0.1, 0.1]), (5, [0.1, 0.1, 0.8]),
    (3, [0.25, 0.25, 0.25, 0.25]), (9, [4, 0, 5]), (1, [1.0]),
])
def test_random_split_sizes_match_torch(n, lengths):
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns of empty splits
        theirs = [len(s) for s in torch.utils.data.random_split(range(n), lengths)]
    splits = random_split(list(range(n)), lengths)
    assert [len(s) for s in splits] == theirs
    assert sorted(x for s in splits for x in (s[i] for i in range(len(s)))) == list(range(n))


def test_random_split_is_reproducible():
    def split(rng=None):
        return [list(s.indices) for s in random_split(Squares(20), [5, 15], generator=rng)]

    assert split(np.random.default_rng(0)) == split(np.random.default_rng(0))
    ts.manual_seed(4)
    first = split()
    ts.manual_seed(4)
    assert split() == first and first[0] != list(range(5))


@pytest.mark.parametrize("lengths,match", [
    ([3, 3], "the lengths sum to 6, the dataset has 5 samples"),
    ([0.6, 0.6, -0.2], "fraction 2 is -0.2, not between 0 and 1"),
    ([2.5, 2.5], r"lengths\[0\] must be an int >= 0, got 2.5"),
    ([], "non-empty list of ints or fractions"),
])
def test_random_split_errors(lengths, match):
    with pytest.raises(ValueError, match="^random_split: .*" + match):
        random_split(Squares(5), lengths)
