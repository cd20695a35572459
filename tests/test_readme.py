"""The README's Python examples run as written and do what their text says."""

import pathlib
import re

import numpy as np
import pytest

import tinyseq as ts

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def tour(ns, tmp_path):
    bpc = [line for line in ns["printed"] if "bits per character" in line]
    assert len(bpc) == 2 and float(bpc[1].split()[2]) < float(bpc[0].split()[2])  # it learns
    assert ns["model"].state_dict().keys() == ts.load(tmp_path / "char_lm.npz").keys()


def line_fit(ns, tmp_path):  # "~0, [2, -1, 0.5], [0.3]"
    assert ns["loss"].item() < 1e-6
    np.testing.assert_allclose(ns["w"].data.ravel(), [2.0, -1.0, 0.5], atol=1e-3)
    np.testing.assert_allclose(ns["b"].data, [0.3], atol=1e-3)


def classifier(ns, tmp_path):  # it learns the sign of the first element, and the checkpoint loads
    assert ns["loss"].item() < 0.2
    saved = ts.load(tmp_path / "classifier.npz")
    assert saved["step"] == 299 and saved["model"].keys() == ns["model"].state_dict().keys()


def backends(ns, tmp_path):  # the same layer call on either backend
    assert ns["out"].shape == (20, 8, 64) and ns["h"].shape == ns["c"].shape == (1, 8, 64)


def kernel_contract(ns, tmp_path):  # "(5, 2, 4) (16, 4) None": named gradients, None for no b_hh
    assert ns["printed"] == ["(5, 2, 4) (16, 4) None"]
    assert ns["grads"].b_ih.shape == (16,) and ns["grads"].x.shape == (5, 2, 3)
    np.testing.assert_array_equal(ns["result"].out[3:, 1], 0.0)  # past the second sequence's length


def study(ns, tmp_path):  # vanishing norms and spectral norms, radius 0.5, truncation exact at k = T, 3 clusters
    norms = [float(v) for v in ns["printed"][0].strip("[]").split()]
    assert norms[-1] == 1.0 or abs(norms[-1] - 1) < 1e-12
    assert all(a < 1e-3 * b for a, b in zip(norms, norms[1:]))  # each 33 steps back: under a thousandth
    sigma = ns["spectra"].spectral_norms[::33, 0]
    assert all(a < 1e-3 * b for a, b in zip(sigma, sigma[1:]))
    assert abs(float(ns["printed"][2]) - 0.5) < 1e-12
    rows = ns["printed"][3:]
    assert len(rows) == 3 and rows[2] == "TruncationBias(k=100, cosine=1.0, relative_error=0.0)"
    assert ns["dot"].count("subgraph cluster_") == 3


def own_cell(ns, tmp_path):  # "(4, 10, 16) (4, 8) False", and every parameter got a gradient
    assert ns["printed"] == ["(4, 10, 16) (4, 8) False"]
    assert all(p.grad is not None and np.asarray(p.grad).any() for p in ns["layer"].parameters())


# What each block claims, found by a line only that block has; a block missing here fails.
CLAIMS = {
    "trainer = ts.bptt.TBPTT(": tour,
    "# the line to recover": line_fit,
    "class Cube(Function):": None,  # asserts its own claim (gradcheck)
    "class Classifier(nn.Module):": classifier,
    'with backend.use_backend("graph"):': backends,
    "grads = cpu.lstm_backward(": kernel_contract,
    "flow = bptt.grad_norms_through_time(": study,
    "class MinimalGatedUnit(nn.Cell):": own_cell,
}


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_does_what_it_says(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files (checkpoints)
    checks = [check for marker, check in CLAIMS.items() if marker in code]
    assert len(checks) == 1, "each README block needs exactly one entry in CLAIMS"
    printed = []
    ns = {"print": lambda *args: printed.append(" ".join(map(str, args)))}
    exec(compile(code, str(README), "exec"), ns)
    ns["printed"] = printed
    if checks[0] is not None:
        checks[0](ns, tmp_path)


def test_every_claim_has_its_block():
    for marker in CLAIMS:
        assert sum(marker in code for code in BLOCKS) == 1, marker
