"""Bad inputs that used to crash by recursion, each case in its own Python process.

A case that regresses to a ``RecursionError`` (or worse, a stack overflow) then fails alone
instead of taking the test run down with it. Each case prints what it observed as JSON lines.
"""

import json
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_isolated(code, tmp_path):
    """Run ``code`` (which may use ``directory``, a str) in a fresh interpreter; its stdout's
    lines, each parsed as JSON."""
    prelude = f"import json, os, sys\nsys.path.insert(0, {str(ROOT)!r})\ndirectory = {str(tmp_path)!r}\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def save_case(build, then=""):
    """Code that runs ``build`` (making ``obj``), saves ``obj`` to directory/ckpt.npz, prints the
    outcome ([exception name, message] or ["saved", None]) and the directory's files, then runs
    ``then``."""
    return "\n".join(["import tinyseq as ts", textwrap.dedent(build), textwrap.dedent("""
        path = os.path.join(directory, "ckpt.npz")
        try:
            ts.save(obj, path)
            outcome = ["saved", None]
        except Exception as e:
            outcome = [type(e).__name__, str(e)]
        print(json.dumps({"outcome": outcome, "files": sorted(os.listdir(directory))}))
    """), textwrap.dedent(then)])


CYCLES = {
    "dict_in_itself": ("obj = {'step': 1}\nobj['self'] = obj", r"the dict at 'self' is the dict at the top level"),
    "list_in_itself": ("obj = [1, 2]\nobj.append(obj)", r"the list at '2' is the list at the top level"),
    "through_a_list": ("obj = {'a': {'b': []}}\nobj['a']['b'].append(obj['a'])",
                       r"the dict at 'a\.b\.0' is the dict at 'a'"),
    "deep_inside": ("inner = {}\ninner['loop'] = (inner,)\nobj = {'model': {'x': inner}}",
                    r"the dict at 'model\.x\.loop\.0' is the dict at 'model\.x'"),
}


@pytest.mark.parametrize("case", CYCLES)
def test_save_refuses_a_container_inside_itself(case, tmp_path):
    build, where = CYCLES[case]
    (got,) = run_isolated(save_case(build), tmp_path)
    kind, message = got["outcome"]
    assert kind == "ValueError" and message.startswith("save: ") and "cycle" in message, message
    assert re.search(where, message), message
    assert got["files"] == []  # neither the checkpoint nor a temporary


def test_save_refuses_nesting_deeper_than_its_limit_and_keeps_the_old_file(tmp_path):
    (tmp_path / "ckpt.npz").write_bytes(b"previous")
    build = """
        from tinyseq.serialization import MAX_DEPTH
        obj = []
        for _ in range(MAX_DEPTH):
            obj = {"x": obj}
    """
    (got,) = run_isolated(save_case(build), tmp_path)
    kind, message = got["outcome"]
    assert kind == "ValueError" and message.startswith("save: ") and "deeper than" in message, message
    assert got["files"] == ["ckpt.npz"] and (tmp_path / "ckpt.npz").read_bytes() == b"previous"


def test_save_takes_nesting_up_to_its_limit_and_an_object_reached_twice(tmp_path):
    """MAX_DEPTH nested containers round-trip; an object reached twice (not a cycle) is saved twice."""
    build = """
        from tinyseq.serialization import MAX_DEPTH
        import numpy as np
        deep = 7
        for _ in range(MAX_DEPTH - 1):
            deep = [deep, np.ones(2, np.float32), float("nan")]
        shared = {"w": 1.5}
        obj = [deep, [shared, shared]]
    """
    then = """
        back = ts.load(path)
        depth, node = 1, back
        while isinstance(node, list):
            depth, node = depth + 1, node[0]
        innermost = back[0]
        for _ in range(MAX_DEPTH - 2):
            innermost = innermost[0]
        assert innermost[1].dtype == np.float32 and innermost[1].shape == (2,) and innermost[2] != innermost[2]
        print(json.dumps([depth - 1, node, back[1], MAX_DEPTH]))
    """
    saved, (depth, leaf, shared, limit) = run_isolated(save_case(build, then), tmp_path)
    assert saved == {"outcome": ["saved", None], "files": ["ckpt.npz"]}
    assert (depth, leaf, shared) == (limit, 7, [{"w": 1.5}, {"w": 1.5}])


@pytest.mark.parametrize("depth", [150, 990, 100_000])
def test_load_of_a_header_nested_too_deep_is_a_checkpoint_error(depth, tmp_path):
    """A crafted file nesting its header deeper than save writes fails as a bad file, whether
    json.loads or decoding the nodes runs out of stack first."""
    code = f"""
        import numpy as np
        import tinyseq as ts
        root = '{{"dict": [["k", ' * {depth} + '1' + ']]}}' * {depth}
        header = '{{"format": "tinyseq-checkpoint", "version": 1, "root": ' + root + '}}'
        path = os.path.join(directory, "deep.npz")
        np.savez(path, header=np.frombuffer(header.encode(), np.uint8))
        try:
            ts.load(path)
            print(json.dumps(["loaded", None]))
        except Exception as e:
            print(json.dumps([type(e).__name__, str(e)[:200]]))
    """
    ((kind, message),) = run_isolated(code, tmp_path)
    assert kind == "CheckpointError" and "deep.npz" in message, message
