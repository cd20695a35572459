"""Smoke test of ``benchmarks/builtin_kernels.py`` (issue 24): the two-tree comparison runs end to
end (here against this same tree, at S7 for the RNN), prints its table, writes its JSON, and
refuses a baseline that is no source tree."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "builtin_kernels.py"


def test_it_times_two_trees_alternately_and_writes_json(tmp_path):
    out = tmp_path / "bk.json"
    run = subprocess.run([sys.executable, str(BENCH), "--baseline", str(ROOT), "--only", "S7", "--cells", "RNN",
                          "--repeats", "2", "--min-seconds", "0", "--warmup", "1", "--threads", "1", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "this tree ms" in run.stdout and "S7 RNN:" in run.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["id"], r["cell"]) for r in rows] == [("S7", "RNN")] and rows[0]["steps"] >= 2
    assert rows[0]["ms"] > 0 and rows[0]["baseline_ms"] > 0


def test_a_baseline_without_tinyseq_is_refused(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH), "--baseline", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "--baseline must be a tree with tinyseq/" in run.stderr
