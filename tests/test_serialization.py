"""Checkpoints: round trips, exact dtypes and shapes, clear errors, atomic writes, no pickle."""

import collections
import io
import json
import math
import os
import pathlib
import subprocess
import sys

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import tinyseq
from tinyseq.serialization import CheckpointError, load, save


def assert_same_array(a, b):
    assert isinstance(b, np.ndarray)
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
    assert a.tobytes() == b.tobytes()  # bitwise: nan payloads and -0.0 included


def checkpoint():
    rng = np.random.default_rng(0)
    model = collections.OrderedDict(
        [("weight_ih_l0", rng.standard_normal((8, 3)).astype(np.float32)),
         ("bias", np.zeros(8, np.float32)),
         ("alpha", rng.standard_normal((2, 2)))]
    )
    return {
        "model": model,
        "optimizer": {
            "state": {0: {"step": 3, "exp_avg": np.ones((8, 3), np.float32)}},
            "param_groups": [{"lr": 0.1, "betas": [0.9, 0.999], "params": [0, 1]}],
        },
        "step": 12,
        "rng": rng.bit_generator.state,
        "config": {"hidden": 32, "name": "x", "dropout": 0.1, "flag": True, "none": None},
    }


# ---------------------------------------------------------------- round trips


def test_state_dict_round_trip_keeps_order_and_type(tmp_path):
    sd = collections.OrderedDict((name, np.arange(3.0) * i) for i, name in enumerate("zyxabc"))
    save(sd, tmp_path / "sd.npz")
    out = load(tmp_path / "sd.npz")
    assert type(out) is collections.OrderedDict and list(out) == list(sd)
    for name in sd:
        assert_same_array(sd[name], out[name])
    plain = {"b": np.ones(2), "a": np.zeros(2)}
    save(plain, str(tmp_path / "plain.npz"))
    out = load(str(tmp_path / "plain.npz"))
    assert type(out) is dict and list(out) == ["b", "a"]


def test_full_checkpoint_round_trip(tmp_path):
    ckpt = checkpoint()
    save(ckpt, tmp_path / "ckpt.npz")
    out = load(tmp_path / "ckpt.npz")
    assert list(out) == list(ckpt)
    for name, a in ckpt["model"].items():
        assert_same_array(a, out["model"][name])
    state = out["optimizer"]["state"]
    assert list(state) == [0] and state[0]["step"] == 3
    assert_same_array(ckpt["optimizer"]["state"][0]["exp_avg"], state[0]["exp_avg"])
    assert out["optimizer"]["param_groups"] == ckpt["optimizer"]["param_groups"]
    assert out["step"] == 12 and out["config"] == ckpt["config"]
    assert type(out["config"]["flag"]) is bool and type(out["config"]["hidden"]) is int
    assert out["rng"] == ckpt["rng"]


def test_rng_state_restores_generator(tmp_path):
    gen = np.random.default_rng(1234)
    gen.standard_normal(7)
    state = gen.bit_generator.state
    assert state["state"]["state"] > 2**64  # a 128-bit int
    save({"rng": state}, tmp_path / "rng.npz")
    expected = gen.standard_normal(5)
    restored = np.random.default_rng()
    restored.bit_generator.state = load(tmp_path / "rng.npz")["rng"]
    np.testing.assert_array_equal(restored.standard_normal(5), expected)


def test_python_values(tmp_path):
    obj = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "zero": -0.0, "big": -(2**200),
           "s": "ünïcode \"quoted\"", "tuple": (1, (2.5, None)), "empty": {}, "nested": [[], [{}]],
           5: "int key", -1: "negative", "$array": "not a tag", "array": {"dict": 1}}
    save(obj, tmp_path / "py.npz")
    out = load(tmp_path / "py.npz")
    assert list(out) == list(obj)
    assert math.isnan(out["nan"]) and out["inf"] == math.inf and out["-inf"] == -math.inf
    assert math.copysign(1.0, out["zero"]) == -1.0
    assert out["tuple"] == [1, [2.5, None]]  # tuples come back as lists
    assert {k: v for k, v in out.items() if k not in ("nan", "tuple")} == {
        k: v for k, v in obj.items() if k not in ("nan", "tuple")}
    header = json.loads(bytes(np.load(tmp_path / "py.npz")["header"]))  # strict JSON: no NaN
    assert header["format"] == "tinyseq-checkpoint" and header["version"] == 1


def test_numpy_scalars_and_tensors_become_arrays(tmp_path):
    t = tinyseq.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    save({"t": t, "f": np.float32(1.5), "i": np.int64(-3), "b": np.bool_(True), "s": np.str_("x")},
         tmp_path / "s.npz")
    out = load(tmp_path / "s.npz")
    assert_same_array(t.data, out["t"])
    assert_same_array(np.array(1.5, np.float32), out["f"])
    assert_same_array(np.array(-3, np.int64), out["i"])
    assert_same_array(np.array(True), out["b"])
    assert out["s"] == "x"


numeric_dtypes = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                           hnp.floating_dtypes(), hnp.complex_number_dtypes())
arrays = numeric_dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0)))


@given(st.lists(arrays, max_size=4))
def test_dtype_and_shape_preserved(tmp_path_factory, xs):
    path = tmp_path_factory.mktemp("prop") / "x.npz"
    save({"xs": xs, "t": tuple(xs)}, path)
    out = load(path)
    for a, b, c in zip(xs, out["xs"], out["t"], strict=True):
        assert_same_array(a, b)
        assert_same_array(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_fortran_and_noncontiguous_arrays(tmp_path, dtype):
    a = np.asfortranarray(np.arange(24).reshape(2, 3, 4).astype(dtype))
    save({"f": a, "v": a[:, ::2, 1:]}, tmp_path / "a.npz")
    out = load(tmp_path / "a.npz")
    np.testing.assert_array_equal(out["f"], a)
    np.testing.assert_array_equal(out["v"], a[:, ::2, 1:])
    assert out["f"].dtype == dtype and out["v"].shape == (2, 2, 3)


def test_exact_path_without_npz_suffix_and_compress(tmp_path):
    save({"a": np.arange(3)}, tmp_path / "ckpt.bin", compress=True)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.bin"]
    assert_same_array(np.arange(3), load(tmp_path / "ckpt.bin")["a"])


# ---------------------------------------------------------------- errors


class Foo:
    pass


@pytest.mark.parametrize("obj, where", [
    ({"optimizer": {"state": {0: {"extra": Foo()}}}}, "'optimizer.state.0.extra'"),
    ({"xs": [1, 2, len]}, "'xs.2'"),
    ({"a": np.array([object()], dtype=object)}, "'a'"),
    ({"a": np.array(["text"])}, "'a'"),
    ({"a": b"bytes"}, "'a'"),
    ({"a": {1.5: 0}}, "'a'"),
    ({"a": {1, 2}}, "'a'"),
    (Foo(), "the top level"),
])
def test_unsupported_values_name_their_key_path(tmp_path, obj, where):
    with pytest.raises(TypeError, match="save: .*" + where):
        save(obj, tmp_path / "bad.npz")
    assert os.listdir(tmp_path) == []


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        load(tmp_path)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(OSError):
        save({"a": 1}, tmp_path / "dir.npz")
    assert sorted(os.listdir(tmp_path)) == ["dir.npz"]


def corrupt_middle(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    path.write_bytes(bytes(data))


def truncate_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def write_npz(path, header=None, **entries):
    if header is not None:
        entries["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **entries)


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def header(**fields):
    return {"format": "tinyseq-checkpoint", "version": 1, "root": None} | fields


@pytest.mark.parametrize("damage, message", [
    (truncate_half, ""),
    (corrupt_middle, ""),
    (lambda p: write_npz(p, w=np.ones(3)), "header"),
    (lambda p: write_npz(p, [1, 2], a0=np.ones(3)), "no tinyseq format marker"),
    (lambda p: write_npz(p, header(format="other")), "no tinyseq format marker"),
    (lambda p: write_npz(p, header(version=99)), "version 99"),
    (lambda p: write_npz(p, header(root={"array": "a7"})), "missing array entry 'a7'"),
    (lambda p: write_npz(p, header(root={"set": [1]})), "unknown header node 'set'"),
    (lambda p: write_npz(p, header(), a0=np.array([1, "x"], dtype=object)), "Object arrays"),
    (lambda p: p.write_bytes(npy_bytes(np.ones(3))), "not an .npz"),
    (lambda p: p.write_text("hello, not a checkpoint\n"), "not an .npz"),
    (lambda p: p.write_bytes(b""), "not an .npz"),
])
def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "my_ckpt.npz"
    save({"big": np.arange(10_000.0), "step": 1}, path)
    damage(path)
    with pytest.raises(CheckpointError, match="my_ckpt.npz") as info:
        load(path)
    assert isinstance(info.value, ValueError) and message in str(info.value)


class SetsFlag:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))  # unpickling creates the marker directory


def test_pickled_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    write_npz(path, header(root={"array": "a0"}), a0=np.array([SetsFlag(marker)], dtype=object))
    with pytest.raises(CheckpointError, match="evil.npz"):
        load(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)["a0"]  # the payload is live: unpickling does run it
    assert marker.exists()


# ---------------------------------------------------------------- atomic writes


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save({"step": 1, "w": np.ones(4)}, path)

    def savez_then_fail(f, **entries):
        f.write(b"PK\x03\x04 partial zip")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save({"step": 2, "w": np.zeros(4)}, path)
    with pytest.raises(TypeError):
        save({"step": 3, "w": Foo()}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert load(path)["step"] == 1
    save({"step": 4}, pathlib.Path(path))
    assert load(path) == {"step": 4} and os.listdir(tmp_path) == ["ckpt.npz"]


# ---------------------------------------------------------------- stale temporaries


ROOT = pathlib.Path(tinyseq.__file__).resolve().parents[1]


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path):
    path = tmp_path / "ckpt.npz"
    save({"step": 1}, path)
    # the child dies as under kill -9 (no finally, no cleanup) once the temporary is written,
    # before the rename
    code = ("import os, sys, numpy as np, tinyseq\n"
            "os.fsync = lambda fd: os._exit(9)\n"
            "tinyseq.save({'step': 2, 'w': np.ones(1_000_000)}, sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 9, err.decode()
    stale = sorted(set(os.listdir(tmp_path)) - {"ckpt.npz"})
    assert len(stale) == 1 and stale[0].startswith(f".ckpt.npz.{child.pid}.") and stale[0].endswith(".tmp")
    assert (tmp_path / stale[0]).stat().st_size > 8_000_000
    assert load(path) == {"step": 1}  # the killed save never touched the checkpoint

    save({"step": 3, "w": np.zeros(2)}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    out = load(path)
    assert out["step"] == 3
    assert_same_array(np.zeros(2), out["w"])


def test_only_stale_temporaries_of_the_same_path_are_removed(tmp_path):
    dead = dead_pid()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [f".a.{dead}.abcd_123.tmp"]
        kept = [
            f".a.{os.getpid()}.abcdefgh.tmp",  # this process: another thread may be writing it
            f".a.{sleeper.pid}.abcdefgh.tmp",  # another live process
            f".a.b.{dead}.abcdefgh.tmp",  # the temporaries of paths a.b, a.1 and other.npz
            f".a.1.{dead}.abcdefgh.tmp",
            f".other.npz.{dead}.abcdefgh.tmp",
            f".a.{dead}.abcdefgh.tmp.bak",  # names that do not match the pattern exactly
            f".a.{dead}.abcdefghi.tmp",
            f".a.{dead}.abcdefg.tmp",
            f".a.{dead}.ABCDEFGH.tmp",
            f".a.{dead}.abc.efgh.tmp",
            f".a.{dead}.tmp",
            f".a.x{dead}.abcdefgh.tmp",
            f".a.0{dead}.abcdefgh.tmp",  # no pid is written with a leading zero
            f"a.{dead}.abcdefgh.tmp",
            ".a.abcdefgh.tmp",  # no pid: the name tinyseq used before, whose writer is unknown
        ]
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"PK\x03\x04 partial")
        unremovable = f".a.{dead}.zzzzzzzz.tmp"  # matches, but is a directory: the error is ignored
        (tmp_path / unremovable).mkdir()
        save({"step": 1}, tmp_path / "a")
        assert sorted(os.listdir(tmp_path)) == sorted(kept + [unremovable, "a"])
        assert load(tmp_path / "a") == {"step": 1}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_temporary_pattern_escapes_the_file_name(tmp_path):
    dead = dead_pid()
    mine, similar = f".c+[1].npz.{dead}.abcdefgh.tmp", f".cc[1].npz.{dead}.abcdefgh.tmp"
    for name in (mine, similar):
        (tmp_path / name).write_bytes(b"")
    save({"step": 1}, tmp_path / "c+[1].npz")
    assert sorted(os.listdir(tmp_path)) == sorted(["c+[1].npz", similar])


def test_saved_file_has_default_permissions(tmp_path):
    save({"a": 1}, tmp_path / "p.npz")
    with open(tmp_path / "q", "w"):
        pass
    assert (tmp_path / "p.npz").stat().st_mode == (tmp_path / "q").stat().st_mode


def test_training_resumes_identically_from_a_checkpoint(tmp_path):
    from tinyseq import Tensor, nn, optim

    def make():
        nn.init.manual_seed(3)
        model = nn.GRU(2, 3).double()
        return model, optim.Adam(model.parameters(), lr=0.05)

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 2, 2)) for _ in range(6)]

    def train(model, opt, data):
        for x in data:
            out, _ = model(Tensor(x))
            loss = (out * out).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    model, opt = make()
    train(model, opt, batches[:3])
    tinyseq.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3}, tmp_path / "ckpt.npz")
    train(model, opt, batches[3:])

    resumed, resumed_opt = make()
    ckpt = tinyseq.load(tmp_path / "ckpt.npz")
    resumed.load_state_dict(ckpt["model"])
    resumed_opt.load_state_dict(ckpt["optimizer"])
    assert ckpt["step"] == 3
    train(resumed, resumed_opt, batches[3:])
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_overwriting_keeps_the_file_permissions(tmp_path):
    path = tmp_path / "private.npz"
    save({"w": np.ones(2)}, path)
    os.chmod(path, 0o600)
    save({"w": np.zeros(2)}, path)
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_save_into_a_missing_directory_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="save: the directory .*nowhere.* does not exist"):
        save({"a": np.ones(2)}, tmp_path / "nowhere" / "model.npz")
