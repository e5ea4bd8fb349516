"""`ticketlab train` end to end, and the one-line errors of bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ticketlab.cli import main


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "ticketlab", *args], capture_output=True, text=True, env=env)


def test_train_writes_run_dir_and_rerun_skips(tmp_path):
    out = tmp_path / "runs"
    proc = _run(["train", "--net", "fc", "--iterations", "120", "--eval-every", "60", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert run_dir.parent == out and run_dir.name.startswith("train_")
    files = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "history.json", "summary.json", "start.npz", "final.npz"} <= files
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("early_stop_iteration", "test_accuracy_at_early_stop", "val_loss_at_early_stop",
                "final_test_accuracy", "iterations", "seed", "wall_seconds"):
        assert key in summary
    assert summary["iterations"] == 120 and summary["test_accuracy_at_early_stop"] > 0.8
    history = json.loads((run_dir / "history.json").read_text())
    assert history["iteration"] == [0, 60, 120]
    with np.load(run_dir / "final.npz", allow_pickle=False) as f:
        assert f["fc1.weight"].shape == (784, 300) and f["fc3.bias"].shape == (10,)
    # same command again: found, not retrained; the printed path is the same
    again = _run(["train", "--net", "fc", "--iterations", "120", "--eval-every", "60", "--out", str(out)])
    assert again.returncode == 0 and again.stdout.strip().splitlines() == [str(run_dir)]  # RUN=$(ticketlab train ...)
    assert "already done" in again.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_masked_train_and_rerun_identical_metrics(tmp_path):
    mask_path = tmp_path / "mask.npz"
    rng = np.random.RandomState(0)
    np.savez(mask_path, fc1=rng.rand(784, 300) < 0.3, fc2=rng.rand(300, 100) < 0.5, fc3=np.ones((100, 10), bool))
    args = ["train", "--iterations", "50", "--eval-every", "25", "--mask", str(mask_path)]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    (a,) = (tmp_path / "a").iterdir()
    (b,) = (tmp_path / "b").iterdir()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("wall_seconds", "train_seconds", "eval_seconds"):  # timings, not results
        assert 0 < sa.pop(key) and 0 < sb.pop(key)
    assert sa == sb
    with np.load(a / "final.npz") as f:
        w = f["fc1.weight"]
    with np.load(mask_path) as m:
        assert np.count_nonzero(w[~m["fc1"]]) == 0 and np.count_nonzero(w[m["fc1"]]) > 0


BAD_INPUTS = [
    (["train", "--net", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--dataset", "svhn"], "invalid choice: 'svhn'"),
    (["train", "--seed", "-1"], "--seed must be >= 0"),
    (["train", "--iterations", "0"], "--iterations must be >= 1"),
    (["train", "--epochs", "2", "--iterations", "5"], "not both"),
    (["train", "--learning-rate", "nan"], "--learning-rate must be a finite number, got nan"),
    (["train", "--learning-rate", "-0.1"], "--learning-rate must be > 0, got -0.1"),
    (["train", "--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"),
    (["train", "--iterations", "ten"], "invalid int value: 'ten'"),
    (["train", "--stop-at-val-accuracy", "75"], "--stop-at-val-accuracy must be <= 1, got 75.0"),
    (["train", "--stop-at-val-accuracy", "0"], "--stop-at-val-accuracy must be > 0, got 0.0"),
    (["train", "--batch-size", "100000"], "exceeds the training set"),
    (["train", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent"], "Fashion-MNIST not found"),
    (["train", "--net", "conv2", "--data-dir", "/nonexistent"], "--data-dir"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path):
    try:
        code = main([*args, "--out", str(tmp_path / "out"), "--threads", "1"])
    except SystemExit as e:  # argparse's own refusals (bad choice, bad type) exit from the parser
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not list((tmp_path / "out").glob("train_*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("command", [["train"], ["bench", "--quick"]])
def test_device_cuda_without_a_gpu_is_one_line_exit_2(command, capsys, tmp_path):
    out = ["--out", str(tmp_path / "out")] if command == ["train"] else []
    assert main([*command, "--device", "cuda", *out]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no CUDA GPU is visible" in err


def test_corrupt_data_and_unwritable_out_via_subprocess(tmp_path):
    from ticketlab.data.idx import IDX_FILES, mnist_dir

    bad = tmp_path / "mnist"
    bad.mkdir()
    for stem in IDX_FILES:
        (bad / f"{stem}.gz").write_bytes((mnist_dir() / f"{stem}.gz").read_bytes())
    raw = bytearray((bad / "t10k-images-idx3-ubyte.gz").read_bytes())
    raw[-20] ^= 0xFF  # flips bits inside the deflate stream
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(raw))
    proc = _run(["train", "--iterations", "5", "--data-dir", str(bad), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "t10k-images" in proc.stderr and "Traceback" not in proc.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = _run(["train", "--iterations", "5", "--out", str(blocker / "runs")])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot write to output directory" in proc.stderr


def test_a_sweep_of_ones_own_gets_figures_and_a_report(tmp_path, capsys):
    """A TOML experiment under a name no preset has is drawn and reported by its kind."""
    path = tmp_path / "my-exp.toml"
    path.write_text('name = "my-exp"\nkind = "iterative"\ncriteria = ["large_final", "random"]\nseeds = 1\n'
                    "iterations = 20\neval_every = 10\nrounds = 2\n")
    out = tmp_path / "store"
    assert main(["sweep", str(path), "--out", str(out), "--device", "cpu"]) == 0
    assert main(["plot", str(out), "--format", "png"]) == 0
    figures = capsys.readouterr().out.split()
    assert any(Path(f).name.startswith("my-exp") and Path(f).is_file() for f in figures), figures
    assert main(["report", str(out)]) == 0
    markdown = (out / "report" / "report.md").read_text()
    assert "my-exp" in markdown and "large_final" in markdown


@pytest.mark.parametrize("args, message", [
    (["sweep", "supermask-at-init", "--scope", "global"], "--scope: unknown field 'scope'; valid fields: .* \\('scope' is "
                                                          "a field of iterative sweeps\\)"),
    (["sweep", "criteria", "--rewind-iteration", "60000"], "--rewind-iteration must be below the schedule's 50,380 "
                                                          "steps"),
    (["sweep", "mask1-actions", "--rewind-iteration", "0", "100"], "--rewind-iteration lists 100, but mask-1 action "
                                                                   "'reinit' does not rewind"),
    (["sweep", "criteria", "--learning-rate", "-1"], "--learning-rate must be > 0, got -1.0"),
    (["train", "--optimizer", "sgd", "--momentum", "-0.9"], "--momentum must be >= 0, got -0.9"),
    (["train", "--lr-schedule", "multistep", "--milestones", "500", "100"], "--milestones must be strictly increasing"),
])
def test_beyond_the_paper_flags_fail_in_one_line_before_any_work(tmp_path, capsys, args, message):
    import re

    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_sweep_flags_override_the_preset(monkeypatch, tmp_path):
    import ticketlab.execution.sweep as sweep

    seen = {}
    monkeypatch.setattr(sweep, "run_sweep", lambda spec, *a, **k: seen.setdefault("spec", spec) and 0.0)
    assert main(["sweep", "late-rewinding", "--scale", "quick", "--optimizer", "sgd", "--learning-rate", "0.1",
                 "--rewind-iteration", "0", "300", "--scope", "global", "--out", str(tmp_path)]) == 0
    spec = seen["spec"]
    assert (spec.optimizer, spec.learning_rate, spec.params.rewind_iteration, spec.params.scope) == \
        ("sgd", 0.1, (0, 300), ("global",))
