"""Smoke test of ``benchmarks/gemm.py`` (issue 25): one provider, one thread count, the table
printed and the JSON written; bad flags exit 2 naming the flag."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "gemm.py"


def test_it_times_each_shape_and_writes_json(tmp_path):
    out = tmp_path / "gemm.json"
    run = subprocess.run([sys.executable, str(BENCH), "--quick", "--providers", "openblas", "--threads", "1",
                          "--peak", "100", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "step B=32" in run.stdout and "openblas 1" in run.stdout
    result = json.loads(out.read_text())
    row = result["gflops"]["openblas 1"]
    assert len(row) == 8 and all(v > 0 for v in row.values())
    assert result["status"]["openblas 1"]["provider"] == "openblas" and "step B=32, 1 threads" in result["goals"]


@pytest.mark.parametrize("flag,value", [("--threads", "0"), ("--threads", "two"), ("--providers", "blis")])
def test_bad_flags_exit_2(flag, value):
    run = subprocess.run([sys.executable, str(BENCH), flag, value], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and flag in run.stderr
