"""The main job, examples/char_lm.py: it learns, resumes bitwise after Ctrl-C, samples, exports."""

import json
import os
import signal

import numpy as np
import pytest

import tinyseq as ts
from helpers import load_example as load

char_lm = load("char_lm")

TINY = ["--max-chars", "40000", "--hidden", "24", "--embed", "16", "--batch-size", "8", "--bptt", "16",
        "--eval-every", "6", "--save-every", "4", "--sample-chars", "30", "--dropout", "0.3"]


def weights(out):
    state = ts.load(out / "checkpoint.npz")
    return state["step"], state["model"], state["optimizer"]["state"]


def test_quick_run_learns_and_writes_its_outputs(tmp_path):
    results = char_lm.main(["--quick", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "loss.png").stat().st_size > 10_000 and (tmp_path / "checkpoint.npz").exists()
    assert written["steps"] == results["steps"] == 120
    assert written["val_bpc"] < written["unigram_bpc"] - 0.5  # it learned more than letter frequencies
    assert results["sample"].startswith("def ") and len(results["sample"]) == 4 + 120


def test_a_run_stopped_by_ctrl_c_and_resumed_equals_the_run_never_stopped(tmp_path):
    char_lm.main(TINY + ["--steps", "10", "--out", str(tmp_path / "whole")])

    def ctrl_c(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C: the loop ends after this step

    char_lm.main(TINY + ["--steps", "10", "--out", str(tmp_path / "split")], on_step=ctrl_c)
    assert weights(tmp_path / "split")[0] == 5
    char_lm.main(TINY + ["--steps", "10", "--resume", "--out", str(tmp_path / "split")])

    step_a, model_a, adam_a = weights(tmp_path / "whole")
    step_b, model_b, adam_b = weights(tmp_path / "split")
    assert step_a == step_b == 10
    for name in model_a:
        np.testing.assert_array_equal(model_a[name], model_b[name], err_msg=name)  # bitwise
    for index in adam_a:
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(adam_a[index][key], adam_b[index][key])


def test_sample_only_and_resume_errors(tmp_path, capsys):
    out = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        char_lm.main(["--sample-only", "--out", out])
    char_lm.main(TINY + ["--steps", "4", "--out", out])
    results = char_lm.main(["--sample-only", "--out", out, "--prompt", "import ", "--sample-chars", "50",
                            "--top-k", "5", "--temperature", "0.5"])
    assert results["sample"].startswith("import ") and len(results["sample"]) == 7 + 50
    with pytest.raises(FileExistsError, match="holds an earlier run; --resume continues it"):
        char_lm.main(TINY + ["--steps", "4", "--out", out])  # a new run never replaces a checkpoint silently
    assert char_lm.main(TINY + ["--steps", "2", "--out", out, "--overwrite"])["steps"] == 2
    with pytest.raises(ValueError, match="--hidden 32 differs from the checkpoint's 24"):
        char_lm.main(["--resume", "--hidden", "32", "--out", out])
    with pytest.raises(ValueError, match="character '\u2603' is not in the vocabulary"):
        char_lm.main(["--sample-only", "--out", out, "--prompt", "\u2603"])
    with pytest.raises(ValueError, match="--temperature > 0"):
        char_lm.main(["--sample-only", "--out", out, "--temperature", "0"])


def test_top_k_one_is_greedy():
    ts.manual_seed(0)
    vocab = ts.data.Vocab("abcd")
    model = char_lm.CharLM(len(vocab), "gru", embed=4, hidden=8, layers=1)
    draws = {char_lm.sample(model, vocab, "ab", 12, temperature=2.0, top_k=1, rng=np.random.default_rng(s))
             for s in range(4)}
    assert len(draws) == 1  # the same whatever the seed


@pytest.mark.torch
def test_export_to_torch_and_continue_with_ddp_on_two_processes(tmp_path):
    pytest.importorskip("torch")
    export = tmp_path / "model.pt"
    trained = char_lm.main(TINY + ["--steps", "30", "--eval-every", "30", "--out", str(tmp_path),
                                   "--export-torch", str(export)])
    results = load("continue_in_torch").main([str(export), "--quick"])
    assert results["processes"] == 2 and results["steps"] == 10
    assert results["tinyseq_val_bpc"] == trained["val_bpc"]
    assert results["torch_start_val_bpc"] == pytest.approx(trained["val_bpc"], abs=1e-4)  # the same model
    assert results["torch_end_val_bpc"] < results["torch_start_val_bpc"]  # and it trains on
