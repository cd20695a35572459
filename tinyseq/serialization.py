"""Save and load state dicts and training checkpoints without pickle.

A checkpoint is one ``.npz`` file: every array is an entry ``a0, a1, ...`` and the entry
``header`` holds UTF-8 JSON (as a uint8 array) describing the nested structure, e.g.
``{"format": "tinyseq-checkpoint", "version": 1, "root": {"dict": [["step", 12], ...]}}``.
In the header a list is a JSON list; every JSON object is a tagged node with one key:
``{"dict": [[key, node], ...]}``, ``{"odict": ...}`` (an OrderedDict), ``{"array": "a3"}``,
or ``{"float": "nan" | "inf" | "-inf"}``, so the header is strict JSON.

``load`` reads with ``allow_pickle=False``: loading a file never runs code from it.
"""

import collections
import contextlib
import json
import math
import os
import re
import stat
import tempfile

import numpy as np

from .tensor import Tensor

FORMAT = "tinyseq-checkpoint"
VERSION = 1
#: ``save`` refuses lists, tuples and dicts nested more than this many levels deep.
MAX_DEPTH = 100


class CheckpointError(ValueError):
    """A file is not a readable tinyseq checkpoint (truncated, corrupted, foreign, newer)."""


# ---------------------------------------------------------------- encode


def _encode(x, arrays, path, open_containers):
    """Return the JSON node for ``x``, appending its arrays to ``arrays``. ``path`` is its key path,
    ``open_containers`` maps the id of each container being encoded around it to that one's path."""
    if isinstance(x, Tensor):
        x = x.data
    if isinstance(x, np.generic) and x.dtype.kind in "biufc":
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"save: cannot store an array of dtype {x.dtype} at {_where(path)}")
        arrays.append(x)
        return {"array": f"a{len(arrays) - 1}"}
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"float": repr(x)}
    if isinstance(x, (list, tuple, dict)):
        return _encode_container(x, arrays, path, open_containers)
    if callable(getattr(x, "state_dict", None)):  # a Module or an optimizer
        raise TypeError(f"save: cannot store a {type(x).__name__} at {_where(path)}: tinyseq files hold arrays, "
                        "never pickled objects; save its state_dict() instead: ts.save(model.state_dict(), path), "
                        "then model.load_state_dict(ts.load(path))")
    raise TypeError(f"save: cannot store value of type {type(x).__name__} at {_where(path)}")


def _encode_container(x, arrays, path, open_containers):
    """The node of a list, tuple or dict ``x``; a container inside itself or nested deeper than
    ``MAX_DEPTH`` is a ValueError (the header is a tree, and json and ``load`` recurse)."""
    kind = type(x).__name__
    if id(x) in open_containers:
        raise ValueError(f"save: the {kind} at {_where(path)} is the {kind} at {_where(open_containers[id(x)])} "
                         "that contains it (a reference cycle); a checkpoint holds a tree of values")
    if len(path) >= MAX_DEPTH:
        raise ValueError(f"save: containers nest deeper than {MAX_DEPTH} levels at {_where(path)}")
    open_containers[id(x)] = path
    try:
        if not isinstance(x, dict):
            return [_encode(v, arrays, path + [str(i)], open_containers) for i, v in enumerate(x)]
        items = []
        for k, v in x.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} key {k!r} at {_where(path)}")
            items.append([k, _encode(v, arrays, path + [str(k)], open_containers)])
        return {"odict" if isinstance(x, collections.OrderedDict) else "dict": items}
    finally:
        del open_containers[id(x)]


def _where(path):
    return repr(".".join(path)) if path else "the top level"


def save(obj, path, compress=False):
    """Write ``obj`` (a state dict or a nested checkpoint dict) to ``path`` atomically.

    ``obj`` may nest dicts (str or int keys), lists, tuples, NumPy arrays of numeric or bool
    dtype, ``Tensor`` (saved as its ``.data``), NumPy scalars, int (any size), float
    (nan/inf too), str, bool and None; anything else raises ``TypeError`` naming its key path.
    A container inside itself (a reference cycle) and containers nested more than ``MAX_DEPTH``
    (100) levels deep raise ``ValueError``; an object reached twice without a cycle is stored
    twice. Nothing is written when ``obj`` is refused.

    The file is written to ``path`` exactly as given (no ``.npz`` is appended). It is first
    written to a temporary file in the same directory, flushed to disk and then renamed onto
    ``path``, so a failure part-way leaves any previous file at ``path`` untouched.
    ``compress=True`` uses ``np.savez_compressed``.

    The temporary file is named ``.{name}.{pid}.{random}.tmp`` (``name`` is the file name of
    ``path``, ``pid`` the writer's process id). A writer killed before its rename (kill -9,
    power loss) leaves its temporary behind, so each save first removes (on POSIX systems)
    the temporaries of the same path whose writer is no longer running. Temporaries of live
    processes (this one included: another thread may be writing one), of other paths, and
    files not matching this pattern exactly are left alone; errors removing one are ignored.
    """
    path = os.fspath(path)
    arrays = []
    root = _encode(obj, arrays, [], {})
    header = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=False)
    entries = {f"a{i}": a for i, a in enumerate(arrays)}
    entries["header"] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)

    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save: the directory {directory!r} of {path!r} does not exist")
    _remove_stale_temporaries(directory, name)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _remove_stale_temporaries(directory, name):
    """Remove ``.{name}.{pid}.{random}.tmp`` files in ``directory`` whose writer has exited."""
    # NOTE: the pattern is anchored at both ends and the pid and mkstemp's random part
    # (8 characters from [a-z0-9_], never a dot) each fill one dot-separated field, so the
    # temporaries of path "a.b" or "a.1" never match those of path "a". A dead writer whose
    # pid was reused keeps its temporary until that process ends too. Pids are only
    # meaningful on this machine: on a filesystem shared between machines, a save may remove
    # the temporary of a concurrent save to the same path on another machine (that save then
    # fails; the file at the path is unharmed either way).
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    pattern = re.compile(re.escape(f".{name}.") + r"([1-9][0-9]*)\.[a-z0-9_]{8}\.tmp")
    try:
        entries = os.listdir(directory)
    except OSError:
        return  # mkstemp, next, reports a directory it cannot use
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and not _running(int(match[1])):
            with contextlib.suppress(OSError):  # a concurrent save may have removed it first
                os.remove(os.path.join(directory, entry))


def _running(pid):
    """Whether a process with this id exists (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError, or a number no pid can be: leave it
        return True
    return True


def _mode_for(path):
    """The replaced file's permissions, or the usual ones (0666 less the umask) for a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    # NOTE: reading the umask means setting it; another thread creating a file in this
    # instant would get umask 0o077 (private), which errs on the safe side.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- decode


def _decode(node, arrays, depth=0):
    """The value of a header node; ``depth`` counts the containers (lists, dicts) around it."""
    if isinstance(node, list):
        _check_depth(depth)
        return [_decode(v, arrays, depth + 1) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1:
        raise ValueError(f"malformed header node {node!r}")
    (tag, value), = node.items()
    if tag == "array":
        if value not in arrays:
            raise ValueError(f"the header refers to a missing array entry {value!r}")
        return arrays[value]
    if tag == "float" and value in ("nan", "inf", "-inf"):
        return float(value)
    if tag in ("dict", "odict"):
        _check_depth(depth)
        pairs = ((k, _decode(v, arrays, depth + 1)) for k, v in value)
        return collections.OrderedDict(pairs) if tag == "odict" else dict(pairs)
    raise ValueError(f"unknown header node {tag!r}")


def _check_depth(depth):
    if depth >= MAX_DEPTH:
        raise ValueError(f"the header nests deeper than {MAX_DEPTH} levels (save writes at most {MAX_DEPTH})")


def load(path):
    """Read a checkpoint written by ``save`` and return the stored object.

    Arrays come back with their exact dtype and shape (a ``Tensor`` as its array, a NumPy
    scalar as a 0-d array); an OrderedDict comes back as an OrderedDict and any other dict
    as a dict, both in their saved order; integer keys stay ints; tuples come back as lists.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``CheckpointError`` (a
    ``ValueError``) naming the file if it is not a readable checkpoint of this version or older
    (one nesting containers deeper than ``MAX_DEPTH``, which ``save`` never writes, included).
    Never unpickles: ``np.load(..., allow_pickle=False)``.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError name the path
        try:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz (zip) archive")
            f.seek(0)
            with np.load(f, allow_pickle=False) as npz:
                header = json.loads(bytes(npz["header"]).decode("utf-8"))
                if not isinstance(header, dict) or header.get("format") != FORMAT:
                    raise ValueError("no tinyseq format marker")
                version = header.get("version")
                if type(version) is not int or not 1 <= version <= VERSION:
                    raise ValueError(f"format version {version!r} is not supported (this tinyseq reads versions <= {VERSION})")
                arrays = {k: npz[k] for k in npz.files if k != "header"}
            return _decode(header["root"], arrays)
        # NOTE: broad on purpose: whatever goes wrong parsing these bytes (a bad zip, a bad .npy
        # header, a pickled entry, bad JSON, a missing entry, ...) means it is not a checkpoint.
        except Exception as e:
            raise CheckpointError(f"load: {path!r} is not a valid tinyseq checkpoint: {e}") from e
