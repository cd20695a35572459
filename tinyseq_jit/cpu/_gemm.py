"""The matrix products of the kernels: the per-step recurrent product, planned for the BLAS
it runs on, and ``dot`` for the big GEMMs before and after the loop; and which BLAS that is.

The per-step product's weight (W_hh^T forward, W_hh backward) is passed to the loops as
``plan_product``'s plan, not as an array; ``product_into`` runs it.

Providers (``PROVIDERS``): "openblas", SciPy's OpenBLAS, which numba's ``np.dot`` calls and
which is always there; "mkl", Intel oneMKL from the ``mkl`` wheel (``pip install
tinyseq[mkl]``), called through its ``cblas_?gemm`` at an address the plan carries, so the
compiled kernels name no library and cache whatever runs. ``provider()`` picks one per process:
``$TINYSEQ_BLAS`` if set, else the choice measured on this machine before (a small JSON file,
``cache_path()``, keyed by CPU, library versions and threads), else ``measure()`` times each
installed provider on the kernels' own products and keeps the fastest. ``tinyseq._blas`` asks
the same ``provider()``, so the graph's products and the kernels' share one library and one
thread pool.
"""

import contextlib
import ctypes
import datetime
import functools
import glob
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from tinyseq._blas import THREADED_MNK

from .._jit import jit

#: The per-step recurrent product a (B, K) @ W (K, N) is a skinny GEMM, and how OpenBLAS
#: is called for it matters more than anything else in the loop (measured per step on the
#: 2-core VM, benchmarks/RESULTS.md):
#:
#: * OpenBLAS's AVX-512 kernels (SkylakeX and later) have an unpacked single-thread path for
#:   GEMMs of M*N*K <= 1e6 multiply-adds (its "small matrix" path). There a product up to
#:   SMALL_GEMM_MNK is one call, and a larger one is cut into at most MAX_CHUNKS column
#:   chunks within SMALL_GEMM_MNK each if that is enough: (4, 256) x (256, 1024) took 14 us
#:   as two 512-column calls, 24 us transposed (below).
#: * Otherwise it runs transposed, out^T = W^T a^T, which OpenBLAS splits over both cores
#:   better for a short a: (32, 256) x (256, 1024) took 102 us against 133 us as one call.
#:   Its AVX2 (Haswell) kernels have no small path, and chunking there cost 3x: the same
#:   (4, 256) x (256, 1024) took 90 us in chunks and 30 us transposed.
#: * Up to TINY_GEMM_MNK the product is one call whatever the kernels: OpenBLAS runs it on
#:   one thread either way, and the transposed layout only adds a copy: (1, 128) x (128, 512)
#:   took 2.5 us against 3.8 us transposed.
#:
#: SMALL_GEMM_MNK None picks 1_000_000 or 0 (no chunks) from the kernels the BLAS runs
#: (``blas_core``); set a number to override. Tune all three for other machines.
SMALL_GEMM_MNK = None
MAX_CHUNKS = 4
TINY_GEMM_MNK = THREADED_MNK  # OpenBLAS's own threading threshold
#: the OpenBLAS kernel sets (``blas_core``, lower case) with the small-matrix path
SMALL_GEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")


@functools.cache
def _scipy_openblas():
    """threadpoolctl's record of the OpenBLAS numba calls (SciPy's), or None if that cannot be
    told (no threadpoolctl, not OpenBLAS)."""
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library numba binds)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    found = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    # SciPy's wheels keep it in scipy.libs (Linux) or scipy/.dylibs (macOS); a conda SciPy
    # shares the environment's one OpenBLAS with NumPy.
    home = os.path.dirname(scipy.__file__)
    ours = [i for i in found if i["filepath"].startswith((home + os.sep, home + ".libs"))]
    ours = ours or (found if len(found) == 1 else [])
    return ours[0] if ours else None


def blas_core():
    """The kernel set of the OpenBLAS numba calls (SciPy's), as OpenBLAS names it
    ("Haswell", "SkylakeX", ...), or None if that cannot be told."""
    info = _scipy_openblas()
    return info.get("architecture") if info else None


def small_gemm_mnk():
    """``SMALL_GEMM_MNK`` if set, else the limit that suits ``blas_core()``."""
    if SMALL_GEMM_MNK is not None:
        return SMALL_GEMM_MNK
    core = blas_core()
    return 1_000_000 if core is not None and core.lower() in SMALL_GEMM_CORES else 0


# --- providers -------------------------------------------------------------------------------

PROVIDERS = ("openblas", "mkl")
#: a provider replaces OpenBLAS only if its products take at most this share of OpenBLAS's
#: time (geometric mean over ``MEASURED``): a closer result is noise on a shared machine
MARGIN = 0.95
#: a measurement is kept only if the 1-minute load average before and after it was at most
#: this share of the cores: MKL's spinning threads lose most when other work holds the cores (its
#: per-step backward product measured 4.5x OpenBLAS's time while a test suite ran, 0.72x idle)
BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Provider:
    """An installed BLAS: ``gemm`` maps a dtype to the address of its row-major
    ``cblas_?gemm`` (empty for "openblas": the kernels call it through numba's ``np.dot``)."""

    name: str
    path: str
    version: str
    gemm: dict = field(default_factory=dict)
    library: object = field(default=None, repr=False, compare=False)  # keeps it loaded


def _openblas():
    info = _scipy_openblas() or {}
    return Provider("openblas", info.get("filepath", "SciPy's BLAS"), info.get("version") or "unknown")


def _mkl_path():
    """libmkl_rt from the ``mkl`` wheel (it installs into ``<prefix>/lib``, not site-packages),
    or None."""
    try:
        files = importlib.metadata.files("mkl") or ()
    except importlib.metadata.PackageNotFoundError:
        files = ()
    found = [os.path.normpath(f.locate()) for f in files if os.path.basename(str(f)).startswith(("libmkl_rt.", "mkl_rt."))]
    for prefix in (sys.prefix, sys.base_prefix):  # an installation without a RECORD (conda)
        found += glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*"))
    found = [f for f in found if os.path.exists(f)]
    return sorted(found)[-1] if found else None


def _mkl(path):
    library = ctypes.CDLL(path)
    # NOTE: the interface layer must be set before any other call: 0 is LP64 (32-bit ints),
    # what _call_gemm passes. It returns the layer in force: another one means the library
    # was already set up otherwise in this process (ILP64), and 32-bit calls would corrupt it.
    library.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    library.MKL_Set_Interface_Layer.restype = ctypes.c_int
    if library.MKL_Set_Interface_Layer(0) != 0:
        raise OSError("it is already set to 64-bit integers (ILP64) in this process")
    text = ctypes.create_string_buffer(200)
    library.MKL_Get_Version_String(text, len(text))
    library.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
    if hasattr(os, "register_at_fork"):
        # NOTE: MKL takes GNU OpenMP when libgomp is loaded first (torch brings it), and there a
        # forked child's first threaded call hangs (measured). Children compute on one thread,
        # as torch's DataLoader workers do.
        os.register_at_fork(after_in_child=functools.partial(library.MKL_Set_Num_Threads, 1))
    gemm = {np.dtype(np.float32): ctypes.cast(library.cblas_sgemm, ctypes.c_void_p).value,
            np.dtype(np.float64): ctypes.cast(library.cblas_dgemm, ctypes.c_void_p).value}
    return Provider("mkl", path, text.value.decode(errors="replace").strip(), gemm, library)


@functools.cache
def _load(name):
    """The Provider ``name``, loaded once; a LookupError saying why it cannot be."""
    if name == "openblas":
        return _openblas()
    path = _mkl_path()
    if path is None:
        raise LookupError("not installed (pip install tinyseq[mkl])")
    try:
        return _mkl(path)
    except (OSError, AttributeError) as error:
        _failed[name] = f"{path} did not load: {error}"
        raise LookupError(_failed[name]) from None


_failed = {}  # provider name -> why its library, though there, did not load


def available():
    """{name: Provider} of the installed providers, "openblas" first (loads them all)."""
    found = {}
    for name in PROVIDERS:
        try:
            found[name] = _load(name)
        except LookupError:
            pass
    return found


_chosen = None  # (Provider, why), once per process
_choosing = threading.Lock()


def provider():
    """The provider the kernels and ``tinyseq._blas`` use in this process (chosen on first use)."""
    return _choice()[0]


def _choice():
    global _chosen
    with _choosing:
        if _chosen is None:
            _chosen = _choose()
    return _chosen


def check_choice(asked):
    """Refuse a ``TINYSEQ_BLAS`` value that cannot run here with a ValueError that says why and
    what to do, without loading a library (what the examples check before any work)."""
    if asked == "blis":
        raise ValueError("TINYSEQ_BLAS=blis: BLIS is not a provider: the blis wheel measured slower than "
                         "OpenBLAS on every product the kernels make (docs/backends.md); use openblas or mkl")
    if asked not in PROVIDERS:
        raise ValueError(f"TINYSEQ_BLAS must be one of {PROVIDERS}, got {asked!r}")
    if asked == "mkl" and _mkl_path() is None:
        raise ValueError("TINYSEQ_BLAS=mkl: not installed (pip install tinyseq[mkl])")


def _choose():
    """(Provider, why): TINYSEQ_BLAS (only that one loaded), else the one installed, else the
    measured choice."""
    asked = os.environ.get("TINYSEQ_BLAS")
    if asked:
        check_choice(asked)
        try:
            return _load(asked), "TINYSEQ_BLAS"
        except LookupError as why:
            raise ValueError(f"TINYSEQ_BLAS={asked}: {why}") from None
    found = available()
    if len(found) == 1:
        return found["openblas"], "the only provider installed"
    return _measured_choice(found)


def cpu_model():
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` tells."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as lines:
            cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    return cpu


def _cache_key(found):
    threads = ",".join(f"{v}={os.environ[v]}" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                        "MKL_NUM_THREADS", "MKL_THREADING_LAYER") if v in os.environ)
    libraries = " ".join(f"{p.name} {p.version}" for p in found.values())
    return f"{cpu_model()} | {_cores()} cores {threads} | {libraries}"


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_path():
    """Where measured choices are kept: ``$TINYSEQ_BLAS_CACHE``, else
    ``$XDG_CACHE_HOME/tinyseq/blas.json`` (``~/.cache/tinyseq/blas.json``)."""
    given = os.environ.get("TINYSEQ_BLAS_CACHE")
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinyseq", "blas.json")


def _read_cache():
    try:
        with open(cache_path()) as f:
            entries = json.load(f)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}


def _write_cache(entries):
    path = cache_path()
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".blas-")
    except OSError:  # a read-only home: the choice is measured again next time
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)


@contextlib.contextmanager
def _cache_lock():
    """Holds the cache's lock file (POSIX): processes starting together measure one at a time,
    and the later ones read the first one's choice instead of measuring beside it."""
    try:
        import fcntl

        os.makedirs(os.path.dirname(cache_path()) or ".", exist_ok=True)
        lock = open(cache_path() + ".lock", "a")
    except (ImportError, OSError):
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _score(times):
    """{provider: geometric mean over the shapes of its time / OpenBLAS's}."""
    return {name: math.exp(sum(math.log(t / times["openblas"][shape]) for shape, t in row.items()) / len(row))
            for name, row in times.items()}


def _measured_choice(found):
    key = _cache_key(found)
    with _cache_lock():
        entries = _read_cache()
        entry = entries.get(key)
        if isinstance(entry, dict) and entry.get("provider") in found:
            return found[entry["provider"]], f"measured on this machine {entry.get('when', '')} ({cache_path()})"
        load = _load_average()
        times = measure(found.values())
        load = max(load, _load_average())  # before and after: a job started meanwhile counts too
        score = _score(times)
        best = min(score, key=score.get)
        name = best if score[best] <= MARGIN else "openblas"
        if load > BUSY_LOAD * _cores():
            return found[name], f"measured now on a busy machine (load {load:.1f}, {_cores()} cores): not kept"
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        entries[key] = {"provider": name, "when": when, "load": load, "relative_time": score, "seconds": times}
        _write_cache(entries)
    return found[name], f"measured now ({cache_path()})"


def _load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


#: what ``measure`` times: the per-step product (B, K) @ (K, N) at B = 1, 32, 64 forward and at
#: B = 32 backward (W^T), and the hoisted GEMMs before and after the loop, at the main model's
#: sizes (K = 256, N = 4 * 256, T * B = 2048), float32
MEASURED = (("step", 1), ("step", 32), ("step", 64), ("back", 32), ("hoisted", 2048), ("weight_grad", 2048))
_K, _N = 256, 1024


@jit
def _repeat_product(a, plan, scratch, out, reps):
    for _ in range(reps):
        product_into(a, plan, scratch, out)


def _timer(kind, rows, blas, rng):
    """A call that runs one of ``MEASURED`` on the Provider ``blas`` ``reps`` times, its
    operands laid out as the kernels' are: W_hh is (N, K) C-ordered, the forward multiplies by
    its transpose, the backward by W_hh itself."""
    if kind in ("step", "back"):
        weight = rng.standard_normal((_N, _K), dtype=np.float32)
        w = weight.T if kind == "step" else weight
        a = rng.standard_normal((rows, w.shape[0]), dtype=np.float32)
        plan = plan_product(w, rows, blas)
        scratch, out = product_scratch(rows, plan), np.empty((rows, w.shape[1]), np.float32)
        return lambda reps: _repeat_product(a, plan, scratch, out, reps)
    if kind == "hoisted":  # x (T B, K) @ W_ih^T
        a, w = rng.standard_normal((rows, _K), dtype=np.float32), rng.standard_normal((_N, _K), dtype=np.float32).T
    else:  # the weight gradient d^T (N, T B) @ x (T B, K)
        a, w = rng.standard_normal((rows, _N), dtype=np.float32).T, rng.standard_normal((rows, _K), dtype=np.float32)
    return lambda reps: [dot(a, w, blas) for _ in range(reps)]


def measure(providers, seconds=0.02, rounds=2, pause=0.3):
    """{provider name: {shape: seconds per call}} for ``MEASURED``: the best of ``rounds``
    timings of about ``seconds`` each. The providers take turns, each timing every shape after
    ``pause`` seconds idle: a library's threads spin for a while after its last call (OpenBLAS
    about 0.1 s, MKL's OpenMP 0.2 s) and would slow the next one down (MKL's hoisted GEMM
    measured at half its speed right after OpenBLAS's)."""
    providers = list(providers)
    rng = np.random.default_rng(0)
    shapes = [f"{kind} B={rows}" if kind in ("step", "back") else f"{kind} {rows}x{_K}x{_N}" for kind, rows in MEASURED]
    calls = {p.name: [_timer(kind, rows, p, rng) for kind, rows in MEASURED] for p in providers}
    reps = {name: [] for name in calls}
    for name, timers in calls.items():
        time.sleep(pause)
        for call in timers:
            call(1)  # compiles, warms the library and its threads
            start = time.perf_counter()
            call(1)
            reps[name].append(max(1, int(seconds / max(time.perf_counter() - start, 1e-7))))
    times = {name: dict.fromkeys(shapes, math.inf) for name in calls}
    for _ in range(rounds):
        for name, timers in calls.items():
            time.sleep(pause)
            for shape, call, n in zip(shapes, timers, reps[name]):
                start = time.perf_counter()
                call(n)
                times[name][shape] = min(times[name][shape], (time.perf_counter() - start) / n)
    return times


def status():
    """What runs the CPU kernels' and the graph's matrix products in this process, and why:
    {"provider", "version", "path", "why", "installed", "missing", "threads"} ("installed": the
    providers whose library is there; with TINYSEQ_BLAS only that one is loaded)."""
    chosen, why = _choice()
    try:
        from threadpoolctl import threadpool_info

        threads = [i["num_threads"] for i in threadpool_info()
                   if os.path.realpath(i["filepath"]) == os.path.realpath(chosen.path)]
    except ImportError:
        threads = []
    missing = dict(_failed)
    if _mkl_path() is None:
        missing["mkl"] = "not installed (pip install tinyseq[mkl])"
    return {"provider": chosen.name, "version": chosen.version, "path": chosen.path, "why": why,
            "installed": [name for name in PROVIDERS if name not in missing], "missing": missing,
            "threads": threads[0] if threads else None}


# --- the products ----------------------------------------------------------------------------


def plan_product(w, rows, blas=None):
    """W (K, N) laid out for ``product_into`` with a (rows, K) left factor on the Provider
    ``blas`` (default: ``provider()``): returns (w3, transposed, gemm) with ``gemm`` the provider's
    ``cblas_?gemm`` address, or 0 for OpenBLAS through numba. For OpenBLAS, per the rules above,
    w3 is one of (1, K, N) (one call), (C, K, width) column chunks (the last one zero-padded) or
    (1, N, K) = W^T with ``transposed`` True; a CBLAS takes W or W^T as it is stored if either
    is contiguous (else a copy of W)."""
    gemm = (blas or provider()).gemm.get(w.dtype, 0)
    inner, cols = w.shape
    if gemm:
        if w.T.flags.c_contiguous and not w.flags.c_contiguous:
            return w.T.reshape(1, cols, inner), True, gemm
        return np.ascontiguousarray(w).reshape(1, inner, cols), False, gemm
    work, limit = rows * inner * cols, small_gemm_mnk()
    if work <= max(limit, TINY_GEMM_MNK):
        return np.ascontiguousarray(w).reshape(1, inner, cols), False, 0
    chunks = -(-cols // max(limit // (rows * inner), 1)) if limit > 0 else cols + 1
    if chunks > MAX_CHUNKS:
        w_t = w.T if w.T.flags.c_contiguous else _transposed(np.ascontiguousarray(w))
        return w_t.reshape(1, cols, inner), True, 0
    width = -(-cols // chunks)  # chunks of equal width
    out = np.zeros((chunks, inner, width), dtype=w.dtype)
    for c in range(chunks):
        part = w[:, c * width : (c + 1) * width]
        out[c, :, : part.shape[1]] = part
    return out, False, 0


@jit
def _transposed(w):
    """w.T as a new C-contiguous array, copied in 32 x 32 tiles (about 2x NumPy's speed at
    W_hh's size: 144-177 against 332-356 us for 1024 x 256 float32)."""
    rows, cols = w.shape
    out = np.empty((cols, rows), dtype=w.dtype)
    for i0 in range(0, rows, 32):
        for j0 in range(0, cols, 32):
            for j in range(j0, min(j0 + 32, cols)):
                row = out[j]
                for i in range(i0, min(i0 + 32, rows)):
                    row[i] = w[i, j]
    return out


@jit
def product_scratch(rows, plan):
    """The scratch array ``product_into`` needs for this plan."""
    w3, transposed, gemm = plan
    chunks, inner, width = w3.shape
    if transposed and gemm == 0:
        return np.empty((1, inner, rows), dtype=w3.dtype)
    return np.empty((chunks if chunks > 1 else 0, rows, width), dtype=w3.dtype)


@jit
def product_into(a, plan, scratch, out):
    """out = a @ W for ``plan = plan_product(W, len(a))``, ``scratch`` from ``product_scratch``."""
    w3, transposed, gemm = plan
    chunks, _, width = w3.shape
    if gemm != 0:
        if transposed:
            gemm_into(gemm, a, w3[0].T, out)
        else:
            gemm_into(gemm, a, w3[0], out)
    elif transposed:
        np.dot(w3[0], a.T, scratch[0])
        out[:] = scratch[0].T
    elif chunks == 1:
        np.dot(a, w3[0], out)
    else:
        for c in range(chunks):
            np.dot(a, w3[c], scratch[c])
            start = c * width
            stop = min(start + width, out.shape[1])
            out[:, start:stop] = scratch[c, :, : stop - start]


ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enums


@intrinsic
def _call_gemm(typingctx, gemm, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """cblas_?gemm at address ``gemm`` (an integer): c = a @ b, row-major, 32-bit integers.
    A compiled call names no symbol, so it caches whatever library the address is in."""
    arrays, ints = (a, b, c), (gemm, trans_a, trans_b, m, n, k, lda, ldb, ldc)
    if not (all(isinstance(x, types.Array) and x.ndim == 2 and x.dtype == c.dtype for x in arrays)
            and c.dtype in (types.float32, types.float64) and all(isinstance(i, types.Integer) for i in ints)):
        return None  # numba reports a typing error naming the arguments
    sig = types.void(gemm, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        int32, real = ir.IntType(32), context.get_value_type(c.dtype)
        function = ir.FunctionType(ir.VoidType(), [int32] * 6 + [real, real.as_pointer(), int32,
                                                                  real.as_pointer(), int32, real,
                                                                  real.as_pointer(), int32])

        def arg(i):  # an integer as int32, an array as its data pointer
            if isinstance(signature.args[i], types.Array):
                return context.make_array(signature.args[i])(context, builder, args[i]).data
            return context.cast(builder, args[i], signature.args[i], types.int32)

        call = [ir.Constant(int32, ROW_MAJOR), arg(1), arg(2), arg(3), arg(4), arg(5),
                ir.Constant(real, 1.0), arg(6), arg(7), arg(8), arg(9), ir.Constant(real, 0.0), arg(10), arg(11)]
        builder.call(builder.inttoptr(args[0], function.as_pointer()), call)
        return context.get_dummy_value()

    return sig, codegen


@jit
def _layout(x):
    """(CBLAS transpose flag, leading dimension) passing 2-D ``x`` to a row-major call: rows of
    unit-stride elements (NO_TRANS) or columns of them (TRANS), the other stride at least the
    row's (column's) length so none overlap; an axis of length 1 takes any stride. (0, 0) if
    ``x`` is laid out otherwise (a negative, zero or overlapping stride)."""
    rows, cols = x.shape
    size = x.itemsize
    row_step, col_step = x.strides[0] // size, x.strides[1] // size
    if x.strides[0] % size or x.strides[1] % size:
        return 0, 0
    if (cols == 1 or col_step == 1) and (rows == 1 or row_step >= cols):
        return NO_TRANS, row_step if rows > 1 else cols
    if (rows == 1 or row_step == 1) and (cols == 1 or col_step >= rows):
        return TRANS, col_step if cols > 1 else rows
    return 0, 0


@jit
def gemm_into(gemm, a, b, out):
    """out = a @ b through the ``cblas_?gemm`` at address ``gemm``; a and b may each be C- or
    F-ordered or a view of rows or columns of one (a transpose is passed as one, not copied),
    out is C-ordered."""
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:  # NOTE: never leave an empty sum to a BLAS's beta = 0 handling
        out[:] = 0.0
        return
    trans_a, lda = _layout(a)
    trans_b, ldb = _layout(b)
    trans_c, ldc = _layout(out)
    if trans_a == 0 or trans_b == 0 or trans_c != NO_TRANS:
        raise ValueError("gemm_into: a, b need one unit stride and out a C layout")
    if max(m, n, k, lda, ldb, ldc) >= 2**31:
        raise ValueError("gemm_into: a size beyond 32-bit integers (the LP64 interface)")
    _call_gemm(gemm, trans_a, trans_b, m, n, k, a, lda, b, ldb, out, ldc)


@jit
def _dot(a, b):
    return np.dot(a, b)


@jit
def _gemm_dot(gemm, a, b):
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    gemm_into(gemm, a, b, out)
    return out


def dot(a, b, blas=None):
    """a @ b for 2-D arrays through the Provider ``blas`` (default: ``provider()``), the library of the
    loops' products and of ``tinyseq._blas`` (one thread pool), called with the GIL released."""
    gemm = (blas or provider()).gemm.get(a.dtype, 0) if a.dtype == b.dtype else 0
    if gemm:
        return _gemm_dot(gemm, _blas_layout(a), _blas_layout(b))
    return _dot(_blas_layout(a), _blas_layout(b))


def _blas_layout(a):
    """``a`` itself when C- or F-contiguous (a transpose is passed to BLAS as such), else a copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)
