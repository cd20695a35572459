"""examples/gradient_flow.py: the vanishing and exploding story, measured on seven networks."""

import json
import shutil

import pytest

from helpers import load_example as load

UsageError = load("common").UsageError

example = load("gradient_flow")


def test_quick_run_tells_the_vanishing_story(tmp_path):
    results = example.main(["--quick", "--out", str(tmp_path)])
    runs = {r["model"]: r for r in results["runs"]}
    assert list(runs) == list(example.MODELS)
    for name in ("tanh rho=0.5", "tanh rho=1.0", "tanh rho=1.5"):
        assert runs[name]["spectral_radius"] == pytest.approx(float(name.split("=")[1]), rel=1e-9)
    for run in runs.values():  # the loss is at the last step: its gradient there has norm 1
        assert run["grad_norm"][-1] == pytest.approx(1.0, rel=1e-9)
        assert len(run["grad_norm"]) == len(run["product_norm"]) == 30
    # The smaller the spectral radius, the less gradient reaches the first step.
    first = [runs[f"tanh rho={r}"]["grad_norm"][0] for r in ("0.5", "1.0", "1.5")]
    assert first[0] < 1e-6 * first[1] and first[1] < first[2]
    assert runs["tanh rho=0.5"]["factor_per_step"] < 0.5
    assert json.loads((tmp_path / "results.json").read_text())["config"]["steps"] == 30
    assert (tmp_path / "gradient_flow.png").stat().st_size > 10_000
    if shutil.which("dot"):  # .ci/run installs Graphviz
        assert (tmp_path / "rnn_graph.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert results["graph"] is None


def test_bad_flags_are_refused():
    with pytest.raises(UsageError, match="--steps"):
        example.main(["--steps", "1"])
    with pytest.raises(UsageError, match="--hidden: must be an integer >= 1, got 0"):  # not the default 64
        example.main(["--hidden", "0"])
    with pytest.raises(UsageError, match="--models: unknown"):
        example.main(["--models", "lstm,transformer"])
