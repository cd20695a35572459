"""The documentation's Python examples run as written and do what their text says.

Every ```python block of each page under docs/ runs, the page's blocks in order in one
namespace (a page reads top to bottom), in a temporary directory; a block that makes a
claim (a printed value, a file written) has a check here, found by a line only that block
has. A block that cannot run on its own belongs in a ```text fence. The README's blocks are
checked the same way by tests/test_readme.py, with this file's ``run_page``.
"""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import tinyseq as ts

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))


def python_blocks(page):
    """The ```python blocks of a page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def run_page(page, claims, tmp_path, monkeypatch):
    """Run a page's ```python blocks in order in one namespace, each followed by its claim's
    check ``check(ns, printed)`` (``printed``: the lines that block printed). Every block
    needs exactly one marker in ``claims``; a marker mapped to None is a block that asserts
    its own claim."""
    monkeypatch.chdir(tmp_path)  # examples may write files (checkpoints)
    ns = {"__name__": "__main__"}
    for i, code in enumerate(python_blocks(page)):
        checks = [check for marker, check in claims.items() if marker in code]
        assert len(checks) == 1, f"{page.name} block {i}: needs exactly one marker in the claims, found {len(checks)}"
        printed = []
        ns["print"] = lambda *args, **kwargs: printed.append(" ".join(map(str, args)))
        exec(compile(code, f"{page} (block {i})", "exec"), ns)
        if checks[0] is not None:
            checks[0](ns, printed)
    return ns


# ---------------------------------------------------------------- what the pages claim


def prints(*lines):
    """The check of a block whose claim is what it prints, line for line."""
    def check(ns, printed):
        assert printed == list(lines)
    return check


def lbfgs_fits(ns, printed):  # "mse 0.792 -> 1.7e-06"
    first, last = (float(v) for v in re.fullmatch(r"mse (\S+) -> (\S+)", printed[0]).groups())
    assert first > 0.5 and last < 1e-4, printed


def fit_a_line(ns, printed):  # "~0, [2, -1, 0.5], [0.3]"
    assert ns["loss"].item() < 1e-6
    np.testing.assert_allclose(ns["w"].data.ravel(), [2.0, -1.0, 0.5], atol=1e-3)
    np.testing.assert_allclose(ns["b"].data, [0.3], atol=1e-3)


def classifier(ns, printed):  # it learns the sign of the first element, and the checkpoint loads
    assert ns["loss"].item() < 0.2
    saved = ts.load("classifier.npz")
    assert saved["step"] == 299 and saved["model"].keys() == ns["model"].state_dict().keys()


def backends(ns, printed):  # the same layer call on either backend
    assert ns["out"].shape == (20, 8, 64) and ns["h"].shape == ns["c"].shape == (1, 8, 64)


def kernel_contract(ns, printed):  # "(5, 2, 4) (16, 4) None": named gradients, None for no b_hh
    assert printed == ["(5, 2, 4) (16, 4) None"]
    assert ns["grads"].b_ih.shape == (16,) and ns["grads"].x.shape == (5, 2, 3)
    np.testing.assert_array_equal(ns["result"].out[3:, 1], 0.0)  # past the second sequence's length


def study(ns, printed):  # vanishing norms and spectral norms, radius 0.5, truncation exact at k = T, 3 clusters
    norms = [float(v) for v in printed[0].strip("[]").split()]
    assert norms[-1] == 1.0 or abs(norms[-1] - 1) < 1e-12
    assert all(a < 1e-3 * b for a, b in zip(norms, norms[1:]))  # each 33 steps back: under a thousandth
    sigma = ns["spectra"].spectral_norms[::33, 0]
    assert all(a < 1e-3 * b for a, b in zip(sigma, sigma[1:]))
    assert abs(float(printed[2]) - 0.5) < 1e-12
    rows = printed[3:]
    assert len(rows) == 3 and rows[2] == "TruncationBias(k=100, cosine=1.0, relative_error=0.0)"
    assert ns["dot"].count("subgraph cluster_") == 3


def own_cell(ns, printed):  # "(4, 10, 16) (4, 8) False", and every parameter got a gradient
    assert printed == ["(4, 10, 16) (4, 8) False"]
    assert all(p.grad is not None and np.asarray(p.grad).any() for p in ns["layer"].parameters())


def compiled_mgu(ns, printed):  # "(50, 8, 16) (8, 16) None": compiled, and every parameter got a gradient
    assert printed == ["(50, 8, 16) (8, 16) None"]
    assert ns["layer"].kernel_source().startswith('"""Fused forward and BPTT of MGU')
    assert all(p.grad is not None and np.asarray(p.grad).any() for p in ns["layer"].parameters())


def numbers(line):
    """The numbers in a printed line (NumPy's array printing included)."""
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d*)?(?:e[-+]\d+)?", line)]


def vanishing(ns, printed):  # radius 0.5 vanishes fast, 1.0 slower, 1.5 does not vanish
    rows = {row[0]: row[1:] for row in map(numbers, printed)}
    assert rows[0.5][0] < 1e-15 and 1e-15 < rows[1.0][0] < 1e-2 and rows[1.5][0] > 1
    assert all(row[-1] == 1.0 for row in rows.values())


def exploding(ns, printed):  # at the zero state the products grow at least like 1.5^k
    growth, bound = numbers(printed[0]), numbers(printed[1])
    assert all(g >= b for g, b in zip(growth, bound)) and growth[-1] > 1e10


def clipped(ns, printed):  # "222 -> 1"
    assert ns["before"] > 100 and abs(ns["after"] - 1) < 1e-6 and printed == ["222 -> 1"]


def forget_gates(ns, printed):  # |dL/dc_0| vanishes at the default init, not with forget bias 5
    default, opened = numbers(printed[0].split(")", 1)[1]), numbers(printed[1])
    assert default[0] < 1e-9 and min(opened) > 0.05


def truncation_trains(ns, printed):  # k1 = 3 < delay learns nothing, k1 = 12 learns the echo
    short, long = (numbers(line)[-1] for line in printed)
    assert short > 0.5 and long < 0.01


def truncation_measured(ns, printed):  # the bias shrinks with k and vanishes at k = T
    cosines = [numbers(line)[1] for line in printed]
    assert cosines[0] < cosines[1] < 1 and printed[2] == "k = 100: cosine 1.000, relative error 0.000"


def own_cell_flow(ns, printed):  # vanishes at init; the gate bias -4 keeps it
    assert printed[0] == "(1, 50, 4)"
    init, opened = numbers(printed[1]), numbers(printed[2])
    assert init[0] < 1e-8 and init[3] < 1e-8 and init[2] == 1.0 and 0.05 < opened[0] <= 2
    assert all(a < b for a, b in zip(init[:2], init[1:3]))


def schedule(ns, printed):  # the halving lrs per group, and a checkpoint that loads back
    assert printed == ["0 [0.1, 0.01]", "1 [0.05, 0.005]", "2 [0.05, 0.005]", "3 [0.025, 0.0025]"]
    saved = ts.load("optim.npz")
    ns["opt"].load_state_dict(saved["optimizer"])
    ns["sched"].load_state_dict(saved["scheduler"])
    assert ns["sched"].get_last_lr() == [0.025, 0.0025]


def loader(ns, printed):  # an 80/20 split, the whole test set in one padded batch, and it learns
    assert printed[0].startswith("480 120 120 test accuracy ") and ns["accuracy"] > 0.9
    assert ns["x"].shape == (12, 120, 1) and min(ns["lengths"]) >= 3


# Each page's claims, found by a line only that block has; a block missing here fails.
CLAIMS = {
    "tensor.md": {
        "# the line to recover": fit_a_line,
        "class Cube(Function):": None,  # asserts its own claim (gradcheck)
    },
    "nn.md": {
        "class Classifier(nn.Module):": classifier,
        "packed = pack_padded_sequence(": prints("(6, 3, 16) [4, 6, 2] True True True"),
        "attention = nn.Attention(32, 32)": prints("(2, 32) (2, 7) [0. 0. 0.] [1. 1.]"),
    },
    "backends.md": {
        'with backend.use_backend("graph"):': backends,
        "grads = cpu.lstm_backward(": kernel_contract,
    },
    "bptt.md": {"flow = bptt.grad_norms_through_time(": study, "bptt.rtrl(cell, xs, loss_fn": prints("True")},
    "tutorials/own_cell.md": {
        "class MinimalGatedUnit(nn.Cell):": own_cell,
        "flow = bptt.grad_norms_through_time(cell, x64)": own_cell_flow,
    },
    "custom_cells.md": {
        'layer = nn.Recurrent(MGU(3, 16), backend="numba")': compiled_mgu,
        'fused, graph = run("numba"), run("graph")': prints("True"),
        "print(source.splitlines()[0])": prints('"""Fused forward and BPTT of MGU (__main__.MGU), float32, for the CPU.'),
        "class NormalizedRNN(nn.Cell):": prints("NormalizedRNN.forward cannot be compiled: the op Mean is not supported",
                                                "True"),
    },
    "data.md": {
        "batches = ts.data.StreamBatches(": prints("14 3 'the cat ' 'he cat s'", "' the dog' 'sat on t'"),
        "class Signs(Dataset):": loader,
    },
    "optim.md": {"sched = ts.optim.StepLR(": schedule, "lbfgs = ts.optim.LBFGS(": lbfgs_fits},
    "tutorials/autodiff.md": {
        "show(y)": prints("Tanh", "  Add", "    Mul", "      leaf -2.0", "      leaf 0.5", "    leaf 1.0", "-2.0 0.5"),
        "# -4.0: the two backward": prints("-4.0"),
        "class Softplus(Function):": prints("True"),
        "class WrongSoftplus(Softplus):": prints("gradcheck (mode 'full') failed for input 0 with shape (5,):"),
    },
    "tutorials/vanishing_exploding.md": {
        "by_formula = (1 - h[t] ** 2)": prints("True (60, 1, 32, 32)", "1.5"),
        "for radius in (0.5, 1.0, 1.5):": vanishing,
        "quiet = np.zeros((60, 1, 8))": exploding,
        "before = nn.utils.clip_grad_norm_(": clipped,
        "nn.init.lstm_forget_bias_(lstm, 5.0)": forget_gates,
    },
    "tutorials/truncated_bptt.md": {
        "class Echo(nn.Module):": None,  # definitions
        "for epoch in range(25):": truncation_trains,
        "model.double()                                           # float64": truncation_measured,
    },
    "tutorials/bptt_by_hand.md": {
        "loss.backward()                                 # BPTT": prints("(6, 3, 5) (1, 3, 5)"),
        'print("BPTT by hand equals loss.backward()")': None,  # asserts its own claim
        'print("the fused kernels agree")': None,
    },
}


def _claims_of(page):
    return CLAIMS.get(page.relative_to(DOCS).as_posix(), {})


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_do_what_they_say(page, tmp_path, monkeypatch):
    run_page(page, _claims_of(page), tmp_path, monkeypatch)


def test_every_claim_has_its_block():
    for name, claims in CLAIMS.items():
        blocks = python_blocks(DOCS / name)
        for marker in claims:
            assert sum(marker in code for code in blocks) == 1, (name, marker)


def test_the_supported_ops_quoted_are_the_compilers():
    """docs/custom_cells.md and the README quote ``tinyseq_jit.compiler.SUPPORTED`` as it is now."""
    from tinyseq_jit.compiler import SUPPORTED

    for page in (DOCS / "custom_cells.md", ROOT / "README.md"):
        assert f"```text\n{SUPPORTED}\n```" in page.read_text(), page.name


def test_code_is_python_or_plainly_not():
    """A fence is ```python (run), or ```text / ```bash / a plain one (never run): a Python
    example cannot slip past the tests under another name (```py, ```python3, ```pycon)."""
    for page in [*PAGES, ROOT / "README.md"]:
        fences = re.findall(r"^```(\S*)$", page.read_text(), flags=re.M)
        assert set(fences) <= {"python", "text", "bash", ""}, (page.name, set(fences))


def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict`: every link, anchor and API reference resolves (as in CI)."""
    pytest.importorskip("mkdocstrings", reason="the site needs the docs extra: pip install -e '.[docs]'")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr
