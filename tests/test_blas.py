"""The BLAS providers (tinyseq_jit.cpu._gemm): the CBLAS call by address, the plans on it, the
kernels and the graph on it, and the choice (TINYSEQ_BLAS, the measured choice and its cache).

The address path is tested on every machine with SciPy's own OpenBLAS, called through its
CBLAS entry points as if it were another library; MKL's own tests run where ``tinyseq[mkl]``
is installed (a CI job installs it).
"""

import ctypes
import functools
import importlib.util
import json
import os

import numpy as np
import pytest
from hypothesis import given

import tinyseq as ts
from helpers import compare, layer_configs
from tinyseq import _blas
from tinyseq_jit.cpu import _gemm


def _scipy_cblas():
    """SciPy's OpenBLAS as a CBLAS Provider, or None where its CBLAS symbols are not found."""
    info = _gemm._scipy_openblas()
    if info is None:
        return None
    library = ctypes.CDLL(info["filepath"])
    for prefix in ("scipy_", ""):
        try:
            gemm = {np.dtype(np.float32): getattr(library, prefix + "cblas_sgemm"),
                    np.dtype(np.float64): getattr(library, prefix + "cblas_dgemm")}
        except AttributeError:
            continue
        return _gemm.Provider("cblas", info["filepath"], info["version"],
                              {k: ctypes.cast(f, ctypes.c_void_p).value for k, f in gemm.items()}, library)
    return None


CBLAS = _scipy_cblas()
needs_cblas = pytest.mark.skipif(CBLAS is None, reason="SciPy's OpenBLAS exports no cblas_?gemm here")
needs_mkl = pytest.mark.skipif("mkl" not in _gemm.available(), reason="needs the mkl extra (pip install tinyseq[mkl])")


@pytest.fixture
def fresh_choice(monkeypatch, tmp_path):
    """No provider chosen yet, no TINYSEQ_BLAS, the cache in tmp_path, an idle machine;
    restored afterwards."""
    monkeypatch.setattr(_gemm, "_chosen", None)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)
    monkeypatch.delenv("TINYSEQ_BLAS", raising=False)
    monkeypatch.setenv("TINYSEQ_BLAS_CACHE", str(tmp_path / "blas.json"))
    return tmp_path / "blas.json"


def _operands(dtype, m, k, n, order_a, order_b, rng):
    a = np.asarray(rng.standard_normal((m, k)), dtype=dtype, order=order_a)
    b = np.asarray(rng.standard_normal((k, n)), dtype=dtype, order=order_b)
    return a, b


@needs_cblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(3, 5, 7), (1, 256, 1024), (64, 33, 1), (1, 1, 1), (5, 1, 4)])
@pytest.mark.parametrize("order_a,order_b", [("C", "C"), ("F", "C"), ("C", "F"), ("F", "F")])
def test_gemm_into_equals_numpy(dtype, m, k, n, order_a, order_b):
    """Each operand C- or F-ordered (a transpose is passed as a flag), both precisions."""
    a, b = _operands(dtype, m, k, n, order_a, order_b, np.random.default_rng(m + k + n))
    out = np.full((m, n), np.nan, dtype=dtype)
    _gemm.gemm_into(CBLAS.gemm[np.dtype(dtype)], a, b, out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@needs_cblas
def test_gemm_into_empty_sum_is_zeros_and_empty_output_untouched():
    gemm = CBLAS.gemm[np.dtype(np.float64)]
    out = np.full((3, 4), np.nan)
    _gemm.gemm_into(gemm, np.zeros((3, 0)), np.zeros((0, 4)), out)
    np.testing.assert_array_equal(out, 0.0)
    _gemm.gemm_into(gemm, np.zeros((0, 2)), np.zeros((2, 4)), np.zeros((0, 4)))  # m = 0: no call


@needs_cblas
@pytest.mark.parametrize("view", ["rows of a wider array", "columns of a taller array", "transposed rows"])
def test_gemm_into_passes_views_with_their_leading_dimension(view):
    rng = np.random.default_rng(4)
    big = rng.standard_normal((9, 12))
    a = {"rows of a wider array": big[2:6, 1:6], "columns of a taller array": np.asfortranarray(big)[1:6, 2:6],
         "transposed rows": big[1:6, 2:6].T}[view]
    b = rng.standard_normal((a.shape[1], 3))
    out = np.full((a.shape[0], 3), np.nan)
    _gemm.gemm_into(CBLAS.gemm[np.dtype(np.float64)], a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    wide = np.full((a.shape[0], 7), np.nan)  # out may be rows of a wider array too
    _gemm.gemm_into(CBLAS.gemm[np.dtype(np.float64)], a, b, wide[:, 2:5])
    np.testing.assert_allclose(wide[:, 2:5], a @ b, rtol=1e-12)
    assert np.isnan(wide[:, :2]).all() and np.isnan(wide[:, 5:]).all()


@needs_cblas
@pytest.mark.parametrize("case", ["neither stride one", "reversed rows", "reversed columns", "broadcast rows",
                                  "F-ordered out"])
def test_gemm_into_refuses_what_a_cblas_cannot_read(case):
    gemm = CBLAS.gemm[np.dtype(np.float64)]
    a, b, out = np.ones((4, 3)), np.ones((3, 2)), np.empty((4, 2))
    a = {"neither stride one": np.ones((4, 6))[:, ::2], "reversed rows": np.arange(12.0).reshape(4, 3)[::-1],
         "reversed columns": np.arange(12.0).reshape(4, 3)[:, ::-1],
         "broadcast rows": np.broadcast_to(np.ones(3), (4, 3))}.get(case, a)
    out = np.empty((2, 4)).T if case == "F-ordered out" else out
    with pytest.raises(ValueError, match="unit stride"):
        _gemm.gemm_into(gemm, a, b, out)


@needs_cblas
def test_cblas_plan_of_a_non_contiguous_weight_is_a_copy():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((20, 30))[::2, ::3]
    plan = _gemm.plan_product(w, 4, CBLAS)
    assert plan[0].shape == (1, 10, 10) and not plan[1] and not np.shares_memory(plan[0], w)
    a, out = rng.standard_normal((4, 10)), np.empty((4, 10))
    _gemm.product_into(a, plan, _gemm.product_scratch(4, plan), out)
    np.testing.assert_allclose(out, a @ w, rtol=1e-12)


@needs_cblas
@pytest.mark.parametrize("rows", [1, 4, 32])
def test_cblas_plan_keeps_the_weight_as_stored(rows):
    """A CBLAS plan is one (1, K, N) block, W^T stored when W is its transpose, never copied;
    the product equals NumPy's forward and backward."""
    rng = np.random.default_rng(rows)
    weight = rng.standard_normal((48, 16)).astype(np.float32)  # (4H, H) as a layer stores W_hh
    for w, transposed in ((weight.T, True), (weight, False)):  # forward: W_hh^T (F-ordered); backward: W_hh
        plan = _gemm.plan_product(w, rows, CBLAS)
        assert plan[2] == CBLAS.gemm[np.dtype(np.float32)] and plan[0].shape[0] == 1
        assert plan[1] == transposed and np.shares_memory(plan[0], weight)
        a = rng.standard_normal((rows, w.shape[0])).astype(np.float32)
        out = np.full((rows, w.shape[1]), np.nan, np.float32)
        _gemm.product_into(a, plan, _gemm.product_scratch(rows, plan), out)
        np.testing.assert_allclose(out, a @ w, rtol=1e-5, atol=1e-5)


@needs_cblas
def test_dot_through_a_provider_copies_what_it_cannot_pass():
    rng = np.random.default_rng(1)
    a, b = _operands(np.float32, 40, 30, 20, "F", "C", rng)
    np.testing.assert_allclose(_gemm.dot(a, b, CBLAS), a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_gemm.dot(a[::2], b, CBLAS), a[::2] @ b, rtol=1e-5, atol=1e-5)  # copied first
    np.testing.assert_allclose(_gemm.dot(a.astype(np.float64), b.astype(np.float64), CBLAS), a.astype(np.float64) @ b,
                               rtol=1e-12)


@needs_cblas
@given(config=layer_configs(proj=True))
def test_kernels_on_a_cblas_provider_equal_graph(config):
    """The fused layers with their products made by address (the path MKL takes) hold the
    contract: fused equals the unrolled graph, forward and backward."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_gemm, "_chosen", (CBLAS, "this test"))
        compare(config)


@needs_cblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_products_follow_the_provider(monkeypatch, dtype):
    """tinyseq._blas sends the graph's large products to the kernels' provider when it is a
    CBLAS, and a Linear's gradients stay right."""
    monkeypatch.setattr(_gemm, "_chosen", (CBLAS, "this test"))
    monkeypatch.setattr(_blas, "_gemm", None)
    calls = []
    real_dot = _gemm.dot
    monkeypatch.setattr(_gemm, "dot", lambda a, b, blas=None: calls.append(a.shape) or real_dot(a, b, blas))
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((128, 256)).astype(dtype), rng.standard_normal((256, 64)).astype(dtype)
    np.testing.assert_allclose(_blas.matmul(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert calls == [(128, 256)]
    np.testing.assert_array_equal(_blas.matmul(a[:2], b[:, :2]), np.dot(a[:2], b[:, :2]))  # small: np.dot
    assert len(calls) == 1
    x = ts.tensor(a, requires_grad=True)
    w = ts.tensor(b, requires_grad=True)
    (x @ w).sum().backward()
    np.testing.assert_allclose(x.grad, np.ones((128, 64)) @ b.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(w.grad, a.T @ np.ones((128, 64)), rtol=1e-4, atol=1e-3)


# --- the choice --------------------------------------------------------------------------------


def _fake(name):
    return _gemm.Provider(name, f"/lib/{name}.so", "1.0", {np.dtype(np.float32): 1} if name != "openblas" else {})


def _times(ratio):
    shapes = ("step B=1", "hoisted")
    return {"openblas": dict.fromkeys(shapes, 1e-3), "mkl": dict.fromkeys(shapes, ratio * 1e-3)}


@pytest.mark.parametrize("ratio,expected", [(0.6, "mkl"), (0.97, "openblas"), (1.4, "openblas")])
def test_the_measured_choice_is_kept_per_machine(fresh_choice, monkeypatch, ratio, expected):
    """The fastest provider by geometric mean, if it beats OpenBLAS by MARGIN; written to the
    cache and read back by the next process (here: the next choice) without measuring."""
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    monkeypatch.setattr(_gemm, "available", lambda: found)
    monkeypatch.setattr(_gemm, "measure", lambda providers: _times(ratio))
    assert _gemm.provider().name == expected
    assert "measured now" in _gemm.status()["why"]
    entry = json.loads(fresh_choice.read_text())[_gemm._cache_key(found)]
    assert entry["provider"] == expected and entry["relative_time"]["mkl"] == pytest.approx(ratio)
    monkeypatch.setattr(_gemm, "_chosen", None)
    monkeypatch.setattr(_gemm, "measure", lambda providers: pytest.fail("measured again"))
    assert _gemm.provider().name == expected and "measured on this machine" in _gemm.status()["why"]


@pytest.mark.parametrize("ratios,expected", [((0.25, 3.0), "mkl"),  # geometric mean 0.87; arithmetic 1.6
                                             ((0.95, 0.95), "mkl"), ((0.951, 0.951), "openblas")])  # MARGIN
def test_the_choice_takes_the_geometric_mean_within_the_margin(fresh_choice, monkeypatch, ratios, expected):
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    monkeypatch.setattr(_gemm, "available", lambda: found)
    times = {"openblas": {"a": 1e-3, "b": 1e-3}, "mkl": {"a": ratios[0] * 1e-3, "b": ratios[1] * 1e-3}}
    monkeypatch.setattr(_gemm, "measure", lambda providers: times)
    assert _gemm.provider().name == expected


def test_a_measurement_on_a_busy_machine_is_used_but_not_kept(fresh_choice, monkeypatch):
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    monkeypatch.setattr(_gemm, "available", lambda: found)
    monkeypatch.setattr(_gemm, "measure", lambda providers: _times(0.5))
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0 * _gemm._cores(), 0.0, 0.0), raising=False)
    assert _gemm.provider().name == "mkl"
    assert "busy machine" in _gemm.status()["why"] and not fresh_choice.exists()


def test_the_cache_key_names_cpu_versions_and_threads(monkeypatch):
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    key = _gemm._cache_key(found)
    assert "openblas 1.0 mkl 1.0" in key and "cores" in key
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    assert _gemm._cache_key(found) != key
    newer = dict(found, mkl=_gemm.Provider("mkl", "/lib/mkl.so", "2.0"))
    assert _gemm._cache_key(newer) not in (key, _gemm._cache_key(found))


def test_an_unreadable_cache_is_measured_again(fresh_choice, monkeypatch):
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    monkeypatch.setattr(_gemm, "available", lambda: found)
    monkeypatch.setattr(_gemm, "measure", lambda providers: _times(0.5))
    fresh_choice.write_text("{not json")
    assert _gemm.provider().name == "mkl"
    assert json.loads(fresh_choice.read_text())  # replaced by a good one


def test_a_cached_provider_no_longer_installed_is_measured_again(fresh_choice, monkeypatch):
    found = {"openblas": _fake("openblas"), "mkl": _fake("mkl")}
    fresh_choice.write_text(json.dumps({_gemm._cache_key(found): {"provider": "blis"}}))
    monkeypatch.setattr(_gemm, "available", lambda: found)
    monkeypatch.setattr(_gemm, "measure", lambda providers: _times(0.5))
    assert _gemm.provider().name == "mkl"


def test_a_read_only_cache_still_chooses(fresh_choice, monkeypatch):
    monkeypatch.setenv("TINYSEQ_BLAS_CACHE", os.path.join(str(fresh_choice), "under-a-file", "blas.json"))
    fresh_choice.write_text("")  # a file where the directory would go
    monkeypatch.setattr(_gemm, "available", lambda: {"openblas": _fake("openblas"), "mkl": _fake("mkl")})
    monkeypatch.setattr(_gemm, "measure", lambda providers: _times(0.5))
    assert _gemm.provider().name == "mkl"


def test_only_openblas_needs_no_measurement(fresh_choice, monkeypatch):
    monkeypatch.setattr(_gemm, "available", lambda: {"openblas": _fake("openblas")})
    monkeypatch.setattr(_gemm, "measure", lambda providers: pytest.fail("measured"))
    assert _gemm.provider().name == "openblas"
    assert _gemm.status()["why"] == "the only provider installed" and not fresh_choice.exists()


@pytest.mark.parametrize("value,message", [("blis", "not a provider"), ("MKL", "must be one of"), ("1", "must be one of"),
                                           ("mkl", "pip install tinyseq\\[mkl\\]")])
def test_tinyseq_blas_refuses_what_cannot_run(fresh_choice, monkeypatch, value, message):
    monkeypatch.setattr(_gemm, "_mkl_path", lambda: None)
    monkeypatch.setattr(_gemm, "_load", functools.cache(_gemm._load.__wrapped__))  # forgets a loaded MKL
    monkeypatch.setenv("TINYSEQ_BLAS", value)
    with pytest.raises(ValueError, match=f"TINYSEQ_BLAS.*{message}"):
        _gemm.provider()


def test_tinyseq_blas_overrides_the_measurement_and_loads_only_its_library(fresh_choice, monkeypatch):
    monkeypatch.setattr(_gemm, "available", lambda: pytest.fail("loaded every provider"))
    monkeypatch.setattr(_gemm, "_mkl", lambda path: pytest.fail("loaded MKL"))
    monkeypatch.setattr(_gemm, "_load", functools.cache(_gemm._load.__wrapped__))
    monkeypatch.setattr(_gemm, "measure", lambda providers: pytest.fail("measured"))
    monkeypatch.setenv("TINYSEQ_BLAS", "openblas")
    assert _gemm.provider().name == "openblas" and _gemm.status()["why"] == "TINYSEQ_BLAS"


def test_status_says_what_runs_and_why():
    import tinyseq_jit

    status = tinyseq_jit.status()
    assert status["provider"] in _gemm.PROVIDERS and status["provider"] in status["installed"]
    assert status["why"] and status["version"] and status["path"]
    assert set(status["missing"]) == set(_gemm.PROVIDERS) - set(status["installed"])


def test_measure_times_every_shape_of_each_provider():
    providers = list(_gemm.available().values()) + ([CBLAS] if CBLAS else [])
    times = _gemm.measure(providers, seconds=0.001, rounds=1, pause=0.0)
    assert set(times) == {p.name for p in providers}
    for row in times.values():
        assert len(row) == len(_gemm.MEASURED) and all(0 < t < 10 for t in row.values())


@needs_mkl
def test_mkl_loads_and_threadpoolctl_sets_its_threads():
    from threadpoolctl import threadpool_info, threadpool_limits

    mkl = _gemm.available()["mkl"]
    assert "Math Kernel Library" in mkl.version and set(mkl.gemm) == {np.dtype(np.float32), np.dtype(np.float64)}

    def mkl_threads():
        return [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "mkl"]

    assert mkl_threads() and min(mkl_threads()) >= 1
    with threadpool_limits(1, user_api="blas"):
        assert set(mkl_threads()) == {1}


@needs_mkl
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mkl_products_equal_numpy(dtype):
    mkl = _gemm.available()["mkl"]
    rng = np.random.default_rng(3)
    a, b = _operands(dtype, 32, 256, 1024, "C", "F", rng)
    np.testing.assert_allclose(_gemm.dot(a, b, mkl), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    plan = _gemm.plan_product(b, 32, mkl)
    out = np.empty((32, 1024), dtype)
    _gemm.product_into(a, plan, _gemm.product_scratch(32, plan), out)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)


FORK = """
import multiprocessing, sys
import numpy as np
import torch  # loads GNU OpenMP first: MKL takes its GNU layer, where a forked child's threaded call hung
torch.mm(torch.ones(64, 64), torch.ones(64, 64))
from tinyseq_jit.cpu import _gemm
x = np.ones((512, 512), np.float32)
_gemm.dot(x, x)  # the parent's threads run
child = multiprocessing.get_context("fork").Process(target=lambda: sys.exit(0 if _gemm.dot(x, x)[0, 0] == 512 else 3),
                                                  daemon=True)
child.start()
child.join(20)
sys.exit(4 if child.is_alive() else child.exitcode)
"""


@needs_mkl
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch (it loads GNU OpenMP first)")
def test_a_forked_child_computes_on_mkl_after_torch(monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("TINYSEQ_BLAS", "mkl")
    done = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
