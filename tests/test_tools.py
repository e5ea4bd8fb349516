"""The scripts in tools/: the GPU smoke check (run here in its cpu mode) and the bitwise store comparison
it ends with, which must see a changed bit and overlook only timings."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ticketlab.cli import main

TOOLS = Path(__file__).parents[1] / "tools"

TINY = """\
name = "tiny"
kind = "iterative"
criteria = ["large_final"]
seeds = 1
iterations = 20
eval_every = 10
rounds = 1
"""


def _same_runs(a: Path, b: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / "same_runs.py"), str(a), str(b), *more], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tools")
    (root / "tiny.toml").write_text(TINY)
    assert main(["sweep", str(root / "tiny.toml"), "--scale", "full", "--out", str(root / "a")]) == 0
    return root / "a"


def test_same_runs_overlooks_timings_only(store, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(store, copy)
    summary = next((copy / "runs").glob("round_*")) / "summary.json"
    record = json.loads(summary.read_text())
    record["wall_seconds"] += 1.0  # a second run takes another time: not a difference
    summary.write_text(json.dumps(record))
    done = _same_runs(store, copy)
    assert done.returncode == 0 and "2 runs, bitwise the same" in done.stdout

    record["final_test_accuracy"] += 1e-4  # a number a run computed: a difference
    summary.write_text(json.dumps(record))
    done = _same_runs(store, copy)
    assert done.returncode == 1 and f"{summary.parent.name}: summary.json differs" in done.stdout

    history = summary.parent / "history.json"  # a timing's name elsewhere is not overlooked
    record = json.loads(history.read_text())
    record["eval_seconds"] = 1.0
    history.write_text(json.dumps(record))
    done = _same_runs(store, copy)
    assert done.returncode == 1 and f"{summary.parent.name}: history.json differs" in done.stdout


def test_same_runs_sees_one_changed_bit_and_a_missing_run(store, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(store, copy)
    final = next((copy / "runs").glob("round_*")) / "final.npz"
    with np.load(final) as f:
        arrays = {k: f[k].copy() for k in f.files}
    key = sorted(arrays)[0]
    flat = arrays[key].reshape(-1).view(np.uint32 if arrays[key].dtype == np.float32 else np.uint8)
    flat[0] ^= 1  # the lowest bit of one float
    np.savez(final, **arrays)
    done = _same_runs(store, copy, "--keep", str(tmp_path / "kept"))
    assert done.returncode == 1 and f"{final.parent.name}: final.npz: array {key}: 1 of {arrays[key].size} elements " \
        "differ" in done.stdout
    kept = tmp_path / "kept" / f"b-{final.parent.name}" / "final.npz"
    assert kept.read_bytes() == final.read_bytes() and (tmp_path / "kept" / f"a-{final.parent.name}").is_dir()

    shutil.rmtree(final.parent)
    done = _same_runs(store, copy)
    assert done.returncode == 1 and f"{final.parent.name}: in {store} only" in done.stdout
    assert _same_runs(store, tmp_path / "nowhere").returncode == 2


def test_the_gpu_check_passes_in_its_cpu_mode(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(TOOLS / "gpu-check.sh"), "cpu"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bitwise the same" in done.stdout and "passed" in (tmp_path / "gpu-check.log").read_text()
    assert json.loads((tmp_path / "bench.json").read_text())["bench_seconds"] > 0  # the bench's JSON line, whole
    no_torch = subprocess.run(["bash", str(TOOLS / "gpu-check.sh"), "cpu"], capture_output=True, text=True,
                              env={**env, "PYTHON": "/bin/false"})
    assert no_torch.returncode == 2 and "cannot import torch" in no_torch.stderr
    wrong = subprocess.run(["bash", str(TOOLS / "gpu-check.sh"), "tpu"], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "unknown device 'tpu'" in wrong.stderr
