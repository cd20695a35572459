"""The main job, examples/char_lm.py: it learns, resumes bitwise after Ctrl-C, samples, exports."""

import importlib.util
import json
import os
import pathlib
import signal

import numpy as np
import pytest

import tinyseq as ts
from helpers import load_example as load

UsageError = load("common").UsageError

char_lm = load("char_lm")
UsageError = load("common").UsageError

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
    with pytest.raises(UsageError, match="no checkpoint"):
        char_lm.main(["--sample-only", "--out", out])
    char_lm.main(TINY + ["--steps", "4", "--out", out])
    results = char_lm.main(["--sample-only", "--out", out, "--prompt", "import ", "--sample-chars", "50",
                            "--top-k", "5", "--temperature", "0.5"])
    assert results["sample"].startswith("import ") and len(results["sample"]) == 7 + 50
    with pytest.raises(UsageError, match="holds an earlier run .*; --resume continues it"):
        char_lm.main(TINY + ["--steps", "4", "--out", out])  # a new run never replaces a checkpoint silently
    assert char_lm.main(TINY + ["--steps", "2", "--out", out, "--overwrite"])["steps"] == 2
    with pytest.raises(UsageError, match="--hidden 32 differs from the checkpoint's 24"):
        char_lm.main(["--resume", "--hidden", "32", "--out", out])
    with pytest.raises(UsageError, match="--prompt '\u2603': the characters '\u2603' are not in the corpus"):
        char_lm.main(["--sample-only", "--out", out, "--prompt", "\u2603"])
    with pytest.raises(UsageError, match="--temperature > 0"):
        char_lm.main(["--sample-only", "--out", out, "--temperature", "0"])


def greek(path, chars=2400):
    """A UTF-8 Greek text of about ``chars`` characters at ``path`` (it has no 'd', 'e', 'f')."""
    words = "καλημέρα κόσμε η γλώσσα μου δόθηκε ελληνική το σπίτι φτωχικό στις αμμουδιές του Ομήρου".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 8)) for _ in range(chars // 60)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_the_default_prompt_falls_back_to_the_corpus_and_a_given_one_is_checked_before_training(tmp_path, capsys):
    data = greek(tmp_path / "greek.txt")
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="--prompt 'def ': the characters 'def' are not in the corpus"):
        char_lm.main(TINY + ["--steps", "2", "--data", data, "--out", str(out), "--prompt", "def "])
    assert not out.exists()  # refused before anything was trained or written
    first = pathlib.Path(data).read_text(encoding="utf-8")[:4]
    results = char_lm.main(TINY + ["--steps", "2", "--data", data, "--out", str(out)])
    assert f"starting samples from its first characters {first!r}" in capsys.readouterr().out
    assert results["sample"].startswith(first) and (out / "checkpoint.npz").exists()


def test_an_empty_prompt_needs_a_newline_in_the_corpus(tmp_path):
    data = tmp_path / "one_line.txt"
    data.write_text(" ".join(["def", "abc", "xy"] * 800), encoding="utf-8")  # no newline anywhere
    out = tmp_path / "run"
    with pytest.raises(UsageError, match=r"--prompt '': the characters '\\n' are not in the corpus \(an empty"):
        char_lm.main(TINY + ["--steps", "2", "--data", str(data), "--out", str(out), "--prompt", ""])
    assert not out.exists()  # refused before training, not a traceback from the first sample after it


def test_an_error_after_training_starts_saves_the_steps_done_first(tmp_path, capsys):
    def fail(step):
        if step == 3:
            raise RuntimeError("a bug at step 3")

    with pytest.raises(RuntimeError, match="a bug at step 3"):
        char_lm.main(TINY + ["--steps", "10", "--out", str(tmp_path)], on_step=fail)
    assert weights(tmp_path)[0] == 3
    assert "checkpoint saved; --resume continues" in capsys.readouterr().err


def test_resume_trains_to_the_checkpoints_own_target_unless_steps_says_otherwise(tmp_path, capsys):
    out = str(tmp_path)

    def ctrl_c(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    char_lm.main(TINY + ["--steps", "6", "--out", out], on_step=ctrl_c)
    assert char_lm.main(["--resume", "--out", out])["steps"] == 6  # not the default 1600
    assert "resuming at step 2 of 6" in capsys.readouterr().out
    assert char_lm.main(["--resume", "--steps", "8", "--out", out])["steps"] == 8
    assert ts.load(tmp_path / "checkpoint.npz")["target_steps"] == 8
    char_lm.main(["--resume", "--out", out])
    assert "resuming at step 8 of 8: nothing left to train" in capsys.readouterr().out

    state = ts.load(tmp_path / "checkpoint.npz")  # a checkpoint from before targets were saved
    del state["target_steps"]
    ts.save(state, tmp_path / "checkpoint.npz")
    assert char_lm.main(["--resume", "--quick", "--out", out])["steps"] == 120
    assert "predates saved targets: training on to the default 120 steps" in capsys.readouterr().out


def test_sample_only_takes_any_seed_and_the_seed_changes_the_sample(tmp_path):
    out = str(tmp_path)
    char_lm.main(TINY + ["--steps", "2", "--out", out])
    samples = {char_lm.main(["--sample-only", "--out", out, "--seed", str(seed), "--sample-chars", "40"])["sample"]
               for seed in (0, 1, 2)}
    assert len(samples) == 3
    assert ts.load(tmp_path / "checkpoint.npz")["config"]["seed"] == 0  # the run's own seed is unchanged
    with pytest.raises(UsageError, match="--seed 1 differs from the checkpoint's 0"):
        char_lm.main(["--resume", "--seed", "1", "--out", out])  # training still refuses another seed


def test_export_torch_without_torch_is_refused_before_training(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    with pytest.raises(UsageError, match=r'--export-torch needs torch, .*pip install -e "\.\[interop\]"'):
        char_lm.main(TINY + ["--steps", "2", "--out", str(tmp_path / "run"), "--export-torch", "m.pt"])
    assert not (tmp_path / "run").exists()


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
