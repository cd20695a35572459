"""The README's Python examples run as written and do what their text says (the front
page's blocks; the documentation's are run by tests/test_docs.py, whose ``run_page`` this
uses)."""

import re

import tinyseq as ts
from test_docs import ROOT, python_blocks, run_page

README = ROOT / "README.md"


def tour(ns, printed):
    bpc = [line for line in printed if "bits per character" in line]
    assert len(bpc) == 2 and float(bpc[1].split()[2]) < float(bpc[0].split()[2])  # it learns
    assert ns["model"].state_dict().keys() == ts.load("char_lm.npz").keys()


def fused_cell(ns, printed):  # compiled (no fallback), and the printed module is its forward and BPTT
    assert ns["layer"].fallback_reason is None
    assert printed[0].startswith('"""Fused forward and BPTT of MGU') and "def _backward(" in "\n".join(printed)
    assert all(p.grad is not None for p in ns["layer"].parameters())


# What each block claims, found by a line only that block has; a block missing here fails.
CLAIMS = {
    "trainer = ts.bptt.TBPTT(": tour,
    'layer = nn.Recurrent(MGU(3, 64), backend="numba")': fused_cell,
}


def test_readme_examples_do_what_they_say(tmp_path, monkeypatch):
    run_page(README, CLAIMS, tmp_path, monkeypatch)


def test_every_claim_has_its_block():
    for marker in CLAIMS:
        assert sum(marker in code for code in python_blocks(README)) == 1, marker


def test_links_resolve():
    """The README's relative links and pictures (the documentation pages among them) exist."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)|src=\"([^\"]+)\"", README.read_text())
    paths = [a or b for a, b in targets if not (a or b).startswith(("http://", "https://"))]
    assert len(paths) > 20 and not [p for p in paths if not (ROOT / p).exists()]
