"""Several sweeps as one batch of jobs (`run_sweeps`, what `reproduce` runs): the same store as the
sweeps one after another, each dense run trained once, every manifest complete."""
from __future__ import annotations

import json
from pathlib import Path

from ticketlab.analysis.table import result_rows, to_csv
from ticketlab.execution.sweep import run_sweep, run_sweeps, seed_groups
from ticketlab.experiments.jobs import Job, Runtime
from ticketlab.experiments.spec import parse_spec

TINY = """\
name = "{name}"
kind = "iterative"
criteria = {criteria}
mask1 = ["rewind"]
mask0 = ["zero"]
seeds = 2
iterations = 30
eval_every = 15
rounds = 1
"""


def _specs(tmp_path: Path):
    specs = []
    for name, criteria in (("first", '["large_final", "random"]'), ("second", '["large_final", "small_final"]')):
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY.format(name=name, criteria=criteria))
        specs.append(parse_spec(path.read_text(), str(path), "full"))
    return specs


def test_a_batch_leaves_the_store_of_sweeps_run_one_by_one(tmp_path):
    specs = _specs(tmp_path)
    runtime = Runtime(device="cpu", threads=1)
    one_by_one, batch = tmp_path / "one", tmp_path / "batch"
    for spec in specs:
        run_sweep(spec, one_by_one, runtime, workers=1, quiet=True)
    run_sweeps(specs, batch, runtime, workers=2, quiet=True, executor="processes")

    assert to_csv(result_rows(batch)) == to_csv(result_rows(one_by_one))
    names = lambda root: sorted(p.name for p in (root / "runs").iterdir())  # noqa: E731
    assert names(batch) == names(one_by_one)
    # 2 seeds: a dense run each (shared by both sweeps) and 3 distinct chains' round 1
    assert sum(n.startswith("dense_") for n in names(batch)) == 2
    assert len(names(batch)) == 2 * (1 + 3)
    manifests = [json.loads(p.read_text()) for p in (batch / "sweeps").glob("*.json")]
    assert sorted(m["status"] for m in manifests) == ["complete", "complete"]
    assert all(m["wall_seconds"] > 0 for m in manifests)


def test_jobs_of_one_seed_count_once_for_the_workers(tmp_path):
    specs = _specs(tmp_path)
    jobs = [Job(spec, seed) for spec in specs for seed in spec.seed_list]
    assert len(jobs) == 4 and seed_groups(jobs) == 2
