"""nn.Attention (issue 26): each kind against NumPy, the padding mask, batch_first, gradients
against finite differences (float64), and bad input refused."""

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import gradcheck, nn


def _inputs(rng, steps=5, batch=3, q=4, k=6, v=None, dtype=np.float64):
    query = rng.standard_normal((batch, q)).astype(dtype)
    keys = rng.standard_normal((steps, batch, k)).astype(dtype)
    values = None if v is None else rng.standard_normal((steps, batch, v)).astype(dtype)
    return query, keys, values


def _reference(attention, query, keys, values, lengths):
    """The scores, softmax and context written out in NumPy, (S, B, *) keys and values."""
    keys = keys.transpose(1, 0, 2)
    values = keys if values is None else values.transpose(1, 0, 2)
    if attention.kind == "additive":
        hidden = np.tanh(keys @ attention.key.weight.data.T + (query @ attention.query.weight.data.T)[:, None])
        scores = (hidden @ attention.score.weight.data.T)[..., 0]
    elif attention.kind == "multiplicative":
        scores = np.einsum("bq,bsq->bs", query, keys @ attention.key.weight.data.T)
    else:
        scores = np.einsum("bq,bsq->bs", query, keys)
    if lengths is not None:
        scores = np.where(np.arange(keys.shape[1])[None] < np.asarray(lengths)[:, None], scores, -np.inf)
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    return np.einsum("bs,bsv->bv", weights, values), weights


@pytest.mark.parametrize("kind,q", [("additive", 4), ("multiplicative", 4), ("dot", 6)])
@pytest.mark.parametrize("lengths", [None, [5, 2, 1]])
@pytest.mark.parametrize("v", [None, 3])
def test_each_kind_equals_numpy(kind, q, lengths, v):
    rng = np.random.default_rng(0)
    ts.manual_seed(0)
    attention = nn.Attention(q, 6, kind=kind, dtype=np.float64)
    query, keys, values = _inputs(rng, q=q, v=v)
    context, weights = attention(query, keys, values, lengths=lengths)
    ref_context, ref_weights = _reference(attention, query, keys, values, lengths)
    np.testing.assert_allclose(weights.data, ref_weights, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(context.data, ref_context, rtol=1e-12, atol=1e-15)
    assert context.shape == (3, 6 if v is None else v) and weights.shape == (3, 5)
    np.testing.assert_allclose(weights.data.sum(1), 1.0, rtol=1e-12)


def test_padded_steps_get_no_weight_and_no_gradient():
    rng = np.random.default_rng(1)
    attention = nn.Attention(4, 6, dtype=np.float64)
    query, keys, values = _inputs(rng, v=2)
    keys_t, values_t = ts.tensor(keys, requires_grad=True), ts.tensor(values, requires_grad=True)
    context, weights = attention(query, keys_t, values_t, lengths=[5, 2, 1])
    assert (weights.data[1, 2:] == 0).all() and (weights.data[2, 1:] == 0).all()
    context.sum().backward()
    assert (keys_t.grad.data[2:, 1] == 0).all() and (values_t.grad.data[1:, 2] == 0).all()
    changed = values.copy()
    changed[3:, 1] = 1e6  # what lies past a sequence's length changes nothing
    np.testing.assert_array_equal(attention(query, keys, changed, lengths=[5, 2, 1])[0].data, context.data)


def test_batch_first_takes_the_same_sequences_as_b_s_k():
    rng = np.random.default_rng(2)
    ts.manual_seed(0)
    first = nn.Attention(4, 6, batch_first=True, dtype=np.float64)
    ts.manual_seed(0)
    steps_first = nn.Attention(4, 6, dtype=np.float64)
    query, keys, values = _inputs(rng, v=3)
    a = first(query, keys.transpose(1, 0, 2), values.transpose(1, 0, 2), lengths=[4, 5, 2])
    b = steps_first(query, keys, values, lengths=[4, 5, 2])
    np.testing.assert_array_equal(a[0].data, b[0].data)
    np.testing.assert_array_equal(a[1].data, b[1].data)


@pytest.mark.parametrize("kind,q", [("additive", 4), ("multiplicative", 4), ("dot", 6)])
def test_gradients_match_finite_differences(kind, q):
    rng = np.random.default_rng(3)
    attention = nn.Attention(q, 6, kind=kind, hidden_size=5 if kind == "additive" else None, dtype=np.float64)
    query, keys, values = (ts.tensor(a, requires_grad=True) for a in _inputs(rng, q=q, v=3))
    parameters = list(attention.parameters())

    def loss(query, keys, values, *_):
        context, weights = attention(query, keys, values, lengths=[5, 3, 1])
        return (context * ts.tensor(np.arange(9.0).reshape(3, 3))).sum() + (weights * weights).sum()

    assert gradcheck(loss, (query, keys, values, *parameters), mode="full")


def test_parameters_and_state_dict_names():
    assert sorted(nn.Attention(4, 6).state_dict()) == ["key.weight", "query.weight", "score.weight"]
    assert nn.Attention(4, 6, hidden_size=7).query.weight.shape == (7, 4)
    assert sorted(nn.Attention(4, 6, kind="multiplicative").state_dict()) == ["key.weight"]
    assert nn.Attention(6, 6, kind="dot").state_dict() == {}


def test_dot_attention_computes_in_the_query_dtype():
    rng = np.random.default_rng(4)
    query, keys, _ = _inputs(rng, q=6, dtype=np.float32)
    context, weights = nn.Attention(6, 6, kind="dot")(query, keys)
    assert context.dtype == np.float32 and weights.dtype == np.float32
    with pytest.raises(TypeError, match="keys has dtype float64"):
        nn.Attention(6, 6, kind="dot")(query, keys.astype(np.float64))


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "luong"}, "kind must be one of"),
    ({"kind": "dot"}, "query_size == key_size"),
    ({"kind": "multiplicative", "hidden_size": 3}, "takes none"),
    ({"hidden_size": 0}, "hidden_size"),
])
def test_bad_construction_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Attention(4, 6, **kwargs)


@pytest.mark.parametrize("call,error,message", [
    (lambda a, q, k: a(q[:, :3], k), ValueError, r"query of shape \(B, 4\)"),
    (lambda a, q, k: a(q, k[..., :5]), ValueError, r"keys of shape \(S, B, 6\) with B = 3 \(the query's\), got \(5, 3, 5\)"),
    (lambda a, q, k: a(q[:2], k), ValueError, r"keys of shape \(S, B, 6\) with B = 2 \(the query's\), got \(5, 3, 6\)"),
    (lambda a, q, k: a(q, k, np.zeros((4, 3, 2))), ValueError,
     r"values of shape \(S, B, V\) with B = 3 \(the query's\), S = 5 \(the keys'\), got \(4, 3, 2\)"),
    (lambda a, q, k: a(q, k, np.zeros((5, 3))), ValueError, r"values of shape \(S, B, V\)"),
    (lambda a, q, k: a(q, k[:0]), ValueError, "keys has no steps"),
    (lambda a, q, k: a(q, k, lengths=[5, 6, 1]), ValueError, r"lengths must lie in \[1, 5\]"),
    (lambda a, q, k: a(q, k, lengths=[5, 0, 1]), ValueError, r"lengths must lie in \[1, 5\]"),
    (lambda a, q, k: a(q, k, lengths=[5, 1]), ValueError, "lengths must be 3 integers"),
    (lambda a, q, k: a(q.astype(np.float32), k), TypeError, "query has dtype float32"),
    (lambda a, q, k: a(q, k, np.zeros((5, 3, 2), np.float32)), TypeError, "values has dtype float32"),
])
def test_bad_calls_are_refused(call, error, message):
    query, keys, _ = _inputs(np.random.default_rng(5))
    with pytest.raises(error, match=message):
        call(nn.Attention(4, 6, dtype=np.float64), query, keys)


def test_batch_first_errors_name_its_layout():
    query, keys, _ = _inputs(np.random.default_rng(6))
    with pytest.raises(ValueError, match=r"keys of shape \(B, S, 6\)"):
        nn.Attention(4, 6, batch_first=True, dtype=np.float64)(query, keys)  # (S, B, K) given


def test_dot_attention_names_the_query_when_dtypes_differ():
    query, keys, _ = _inputs(np.random.default_rng(7), q=6)
    with pytest.raises(TypeError, match=r"keys has dtype float32 but the query is float64 \(for kind='dot'"):
        nn.Attention(6, 6, kind="dot")(query, keys.astype(np.float32))


@pytest.mark.parametrize("pad", [np.inf, np.nan])
@pytest.mark.parametrize("kind,q", [("additive", 4), ("dot", 6)])
def test_non_finite_padding_reaches_neither_output_nor_gradients(pad, kind, q):
    """pad_packed_sequence(padding_value=inf) or NaN past a length changes nothing."""
    rng = np.random.default_rng(8)
    attention = nn.Attention(q, 6, kind=kind, dtype=np.float64)
    query, keys, values = _inputs(rng, q=q, v=2)
    lengths = [5, 2, 1]
    clean = attention(query, keys, values, lengths=lengths)
    keys[2:, 1], values[2:, 1], keys[1:, 2], values[1:, 2] = pad, pad, pad, pad
    query_t = ts.tensor(query, requires_grad=True)
    context, weights = attention(query_t, keys, values, lengths=lengths)
    np.testing.assert_allclose(context.data, clean[0].data, rtol=1e-14)
    np.testing.assert_allclose(weights.data, clean[1].data, rtol=1e-14)
    (context.sum() + weights.sum()).backward()
    assert np.isfinite(query_t.grad.data).all()
    assert all(np.isfinite(p.grad.data).all() for p in attention.parameters())


@pytest.mark.parametrize("kind,q", [("additive", 4), ("multiplicative", 4), ("dot", 6)])
def test_float32_and_to_float64(kind, q):
    rng = np.random.default_rng(9)
    attention = nn.Attention(q, 6, kind=kind)
    query, keys, values = _inputs(rng, q=q, v=2, dtype=np.float32)
    context, weights = attention(query, keys, values, lengths=np.array([5, 2, 1]))
    assert context.dtype == weights.dtype == np.float32
    attention.to(np.float64)
    wide = attention(query.astype(np.float64), keys.astype(np.float64), values.astype(np.float64),
                     lengths=ts.tensor(np.array([5, 2, 1])))
    assert wide[0].dtype == np.float64
    np.testing.assert_allclose(wide[0].data, context.data, rtol=1e-5, atol=1e-6)


def test_batch_first_without_values_and_repr():
    rng = np.random.default_rng(10)
    query, keys, _ = _inputs(rng)
    ts.manual_seed(0)
    a = nn.Attention(4, 6, batch_first=True, dtype=np.float64)(query, keys.transpose(1, 0, 2), lengths=[3, 5, 1])
    ts.manual_seed(0)
    b = nn.Attention(4, 6, dtype=np.float64)(query, keys, lengths=[3, 5, 1])
    np.testing.assert_array_equal(a[0].data, b[0].data)
    assert repr(nn.Attention(4, 6, hidden_size=3)).startswith(
        "Attention(query_size=4, key_size=6, kind='additive', hidden_size=3, batch_first=False\n  (query): Linear(")
    assert repr(nn.Attention(6, 6, kind="dot")) == "Attention(query_size=6, key_size=6, kind='dot', batch_first=False)"


@pytest.mark.parametrize("kind,q", [("additive", 4), ("multiplicative", 4), ("dot", 6)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_many_queries_equal_one_call_each_and_project_the_keys_once(kind, q, batch_first):
    rng = np.random.default_rng(7)
    attention = nn.Attention(q, 6, kind=kind, batch_first=batch_first, dtype=np.float64)
    queries = rng.standard_normal((4, 3, q))  # (T, B, Q): four queries per sequence
    _, keys, values = _inputs(rng, q=q, v=2)
    if batch_first:
        queries, keys, values = (a.swapaxes(0, 1) for a in (queries, keys, values))
    calls = []
    if kind != "dot":  # count the key projections
        project = attention.key.forward
        attention.key.forward = lambda x: calls.append(x.shape) or project(x)
    context, weights = attention(queries, keys, values, lengths=[5, 2, 4])
    assert len(calls) == (0 if kind == "dot" else 1)
    assert context.shape == ((3, 4, 2) if batch_first else (4, 3, 2)) and weights.shape == (3, 4, 5)
    for t in range(4):
        one_context, one_weights = attention(queries[:, t] if batch_first else queries[t], keys, values,
                                             lengths=[5, 2, 4])
        np.testing.assert_allclose(weights.data[:, t], one_weights.data, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(context.data[:, t] if batch_first else context.data[t], one_context.data,
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind,q", [("additive", 4), ("multiplicative", 4), ("dot", 6)])
def test_many_queries_gradients_match_finite_differences(kind, q):
    rng = np.random.default_rng(8)
    attention = nn.Attention(q, 6, kind=kind, hidden_size=5 if kind == "additive" else None, dtype=np.float64)
    queries = ts.tensor(rng.standard_normal((2, 3, q)), requires_grad=True)
    _, keys, values = (None, *(ts.tensor(a, requires_grad=True) for a in _inputs(rng, q=q, v=3)[1:]))

    def loss(queries, keys, values, *_):
        context, weights = attention(queries, keys, values, lengths=[5, 3, 1])
        return (context * ts.tensor(np.arange(18.0).reshape(2, 3, 3))).sum() + (weights * weights).sum()

    assert gradcheck(loss, (queries, keys, values, *attention.parameters()), mode="full")


def test_a_query_of_four_axes_is_refused_naming_both_forms():
    attention = nn.Attention(4, 6, dtype=np.float64)
    with pytest.raises(ValueError, match=r"query of shape \(B, 4\), or \(T, B, 4\) for many queries, got \(1, 2, 3, 4\)"):
        attention(np.zeros((1, 2, 3, 4)), np.zeros((5, 3, 6)))
    with pytest.raises(ValueError, match=r"keys of shape \(S, B, 6\) with B = 2 \(the query's\)"):
        attention(np.zeros((7, 2, 4)), np.zeros((5, 3, 6)))
