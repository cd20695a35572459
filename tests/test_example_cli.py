"""The example scripts as command-line tools: a user's mistake is one line on stderr that names
the flag, exit status 2; a bug keeps its traceback; the pytest summary says what runs a skip.

Each case runs the script as a subprocess, as a user would; the mistakes are all caught
before any training, so each run takes about the time of importing tinyseq.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import EXAMPLES
from helpers import load_example as load

ROOT = EXAMPLES.parent
TORCH_ABSENT = "import sys; sys.modules['torch'] = None; "  # `import torch` fails, find_spec finds nothing


def script(args, cwd, env=None, prelude=""):
    """Run ``python examples/<args[0]> args[1:]`` in ``cwd`` (``prelude``: Python run first)."""
    path = str(EXAMPLES / args[0])
    code = f"{prelude}import runpy; sys.argv = {[path, *args[1:]]!r}; runpy.run_path({path!r}, run_name='__main__')"
    env = {**{k: v for k, v in os.environ.items() if k != "TINYSEQ_DEBUG"}, **(env or {}),
           "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)])}  # as `python examples/x.py` from ROOT
    return subprocess.run([sys.executable, "-c", f"import sys; {code}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_usage_error(result, *words):
    """Exit status 2 and exactly one line on stderr, ``prog: error: ...``, holding ``words``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    assert ": error: " in lines[0] and "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad inputs: a Latin-1 file, a binary one, an empty one, a directory, a truncated checkpoint
    and an --out holding a run; and a Greek corpus."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "latin1.txt").write_bytes("café, naïve, déjà vu\n".encode("latin-1") * 100)
    (d / "binary.bin").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (d / "empty.txt").write_text("")
    (d / "folder").mkdir()
    (d / "a_file").write_text("in the way of a directory")
    (d / "greek.txt").write_text("το σπίτι στις αμμουδιές του Ομήρου\n" * 60, encoding="utf-8")
    run = d / "run"
    result = script(["char_lm.py", "--max-chars", "20000", "--hidden", "8", "--embed", "4", "--layers", "1",
                     "--batch-size", "4", "--bptt", "8", "--steps", "2", "--sample-chars", "5", "--out", str(run)], d)
    assert result.returncode == 0, result.stderr
    (d / "truncated").mkdir()
    data = (run / "checkpoint.npz").read_bytes()
    (d / "truncated" / "checkpoint.npz").write_bytes(data[:len(data) // 2])  # as `head -c` leaves it
    return d


CHAR_LM_CASES = {
    "latin-1 --data": (["--data", "latin1.txt"], ["--data latin1.txt", "not UTF-8", "iconv"]),
    "binary --data": (["--data", "binary.bin"], ["--data binary.bin", "not UTF-8"]),
    "missing --data": (["--data", "nothere.txt"], ["--data nothere.txt", "no such file"]),
    "directory --data": (["--data", "folder"], ["--data folder", "is a directory"]),
    "empty --data": (["--data", "empty.txt"], ["--data empty.txt", "0 characters", "at least 1000"]),
    "prompt not in the corpus": (["--data", "greek.txt", "--prompt", "def "], ["--prompt 'def '", "'def'"]),
    "truncated checkpoint": (["--resume", "--out", "truncated"], ["--out truncated", "damaged", "--overwrite"]),
    "a second run in the same --out": (["--out", "run"], ["--out run", "--resume", "--overwrite", "another --out"]),
    "--resume with nothing to resume": (["--resume", "--out", "folder"], ["--out folder", "no checkpoint"]),
    "--out is a file": (["--out", "a_file/x", "--data", "greek.txt"], ["--out a_file/x", "choose another --out"]),
    "--steps 0": (["--steps", "0"], ["--steps must be at least 1"]),
    "--export-torch without torch": (["--export-torch", "m.pt"], ['--export-torch needs torch', '".[interop]"']),
}


@pytest.mark.parametrize("case", CHAR_LM_CASES)
def test_char_lm_turns_each_mistake_into_one_line_and_exit_2(files, case):
    args, words = CHAR_LM_CASES[case]
    prelude = TORCH_ABSENT if "--export-torch" in args else ""
    assert_usage_error(script(["char_lm.py", "--quick", *args], files, prelude=prelude), *words)
    assert not (files / "folder" / "checkpoint.npz").exists() and not (files / "a_file").is_dir()


OTHER_CASES = {
    "adding_problem.py": (["--lengths", "1"], "--lengths"),
    "captioning.py": (["--lr", "0"], "--lr"),
    "gradient_flow.py": (["--models", "lstm,nope"], "--models"),
    "narx.py": (["--delay", "50"], "--delay < --window"),
    "recursive_nn.py": (["--depth", "0"], "--depth"),
    "seq2seq.py": (["--tf-floor", "2"], "--tf-floor"),
    "sequence_classification.py": (["--epochs", "0"], "--epochs"),
    "timeseries.py": (["--window", "0"], "--window"),
    "word2vec.py": (["--dim", "0"], "--dim"),
    "rnn_from_ops.py": (["--steps", "0"], "--steps"),
    "continue_in_torch.py": (["nothere.pt"], "nothere.pt"),
    "custom_cells.py": (["--length", "1"], "--length"),
    "sentiment.py": (["--pooling", "max"], "--pooling"),
    "rtrl_vs_bptt.py": (["--delay", "0"], "--delay"),
    "music.py": (["--temperature", "0"], "--temperature"),
}


@pytest.mark.parametrize("value,words", [("bogus", ["TINYSEQ_BLAS must be one of", "unset TINYSEQ_BLAS"]),
                                         ("blis", ["TINYSEQ_BLAS=blis", "use openblas or mkl"])])
def test_a_bad_tinyseq_blas_is_one_line_and_exit_2(tmp_path, value, words):
    assert_usage_error(script(["char_lm.py", "--quick", "--out", str(tmp_path / "run")], tmp_path,
                              env={"TINYSEQ_BLAS": value}), *words)
    assert not (tmp_path / "run").exists()


def test_every_example_with_a_main_is_covered_here():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if "def main(" in p.read_text()}
    assert scripts == set(OTHER_CASES) | {"char_lm.py"}
    for name in scripts:
        assert 'if __name__ == "__main__":\n    common.run(main)' in (EXAMPLES / name).read_text(), name


@pytest.mark.parametrize("name", OTHER_CASES)
def test_every_other_example_turns_a_bad_flag_into_one_line_and_exit_2(tmp_path, name):
    args, flag = OTHER_CASES[name]
    assert_usage_error(script([name, *args], tmp_path), flag)


def test_continue_in_torch_without_torch_has_help_and_says_how_to_install_it(tmp_path):
    helped = script(["continue_in_torch.py", "--help"], tmp_path, prelude=TORCH_ABSENT)
    assert helped.returncode == 0 and "usage: continue_in_torch.py" in helped.stdout
    (tmp_path / "model.pt").write_bytes(b"")  # an export is there; only torch is missing
    assert_usage_error(script(["continue_in_torch.py", "model.pt"], tmp_path, prelude=TORCH_ABSENT),
                       "continue_in_torch.py needs torch", 'pip install -e ".[interop]"')


def test_a_bug_keeps_its_traceback_and_debug_shows_one_for_a_mistake_too(files, tmp_path):
    bug = subprocess.run([sys.executable, "-c", "import common; common.run(lambda: 1 / 0)"], cwd=EXAMPLES,
                         capture_output=True, text=True, timeout=60)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "ZeroDivisionError" in bug.stderr
    debug = script(["char_lm.py", "--data", "latin1.txt"], files, env={"TINYSEQ_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "common.UsageError: --data latin1.txt is not UTF-8" in debug.stderr


# ---------------------------------------------------------------- figures


def test_save_figure_refuses_a_figure_without_titles_labels_or_legends(tmp_path):
    common = load("common")
    plt = common.pyplot()

    def figure(title=True, ylabel=True, legend=True):
        fig, (ax, image) = plt.subplots(1, 2)
        ax.plot([1, 2], label="a")
        ax.plot([2, 1], label="b")
        ax.plot([1, 1])  # unlabelled: no legend entry needed
        ax.set(xlabel="step", ylabel="loss" if ylabel else "", title="curves" if title else "")
        if legend:
            ax.legend()
        image.imshow(np.eye(3))
        image.axis("off")  # an image needs only a title, or the figure's
        fig.suptitle("a picture" if title else "")
        return fig

    common.save_figure(figure(), tmp_path / "good.png")
    assert (tmp_path / "good.png").exists()
    for kwargs, message in (({"ylabel": False}, r"axes 0 \('curves'\) lacks a y label"),
                            ({"legend": False}, "axes 0 .* lacks a legend for its 2 labelled series"),
                            ({"title": False}, r"axes 0 \('untitled'\) lacks a title")):
        with pytest.raises(ValueError, match=message):
            common.save_figure(figure(**kwargs), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    plt.close("all")


# ---------------------------------------------------------------- the pytest summary


def test_pytest_summary_says_what_runs_each_group_of_skipped_tests(tmp_path):
    shutil.copy(pathlib.Path(__file__).with_name("conftest.py"), tmp_path)
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n"
        "@pytest.mark.torch\n"
        "def test_torch(): pytest.importorskip('a_module_that_is_not_there')\n"
        "def test_torch_unmarked(): pytest.skip(\"could not import 'torch': No module named 'torch'\")\n"
        "@pytest.mark.cuda\n"
        "@pytest.mark.skipif(True, reason='needs a GPU, or NUMBA_ENABLE_CUDASIM=1')\n"
        "def test_cuda(): pass\n"
        "@pytest.mark.cuda\n"
        "@pytest.mark.skipif(True, reason='full sizes: needs a real GPU')\n"
        "def test_gpu(): pass\n"
        "@pytest.mark.ptx\n"
        "def test_ptx(): pytest.skip('no CUDA compiler libraries')\n"
        "@pytest.mark.skipif(True, reason=\"Graphviz's dot is not installed\")\n"
        "def test_dot(): pass\n"
        "def test_other(): pytest.skip('for another reason')\n"
        "def test_runs(): pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                             "-W", "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout
    assert '2 torch: pip install -e ".[interop]", then: python -m pytest -m torch' in lines
    assert "1 cuda: NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda (in a process of its own)" in lines
    assert "1 cuda at full size: a machine with an NVIDIA GPU: python -m pytest -m cuda" in lines
    assert any(line.startswith('1 ptx: pip install -e ".[ptx]"') for line in lines)
    assert any(line.startswith("1 graphviz: install Graphviz's dot (apt install graphviz") for line in lines)
    assert "1 other: Skipped: for another reason" in lines
    assert lines[-1].startswith("1 passed") and "1 other: Skipped: for another reason" in lines[-3:]
