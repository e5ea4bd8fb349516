"""Late rewinding: chains whose kept weights rewind to step k of the dense run, and train from there."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ticketlab.core.errors import TicketlabError
from ticketlab.core.seeds import generator
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments.jobs import Runtime
from ticketlab.experiments.spec import load_sweep
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.store.files import load_arrays, unpack_masks
from ticketlab.training import MemberStart, Schedule, train_cohort

FC = get_net("fc")
TINY = """\
name = "late"
kind = "iterative"
criteria = ["large_final"]
mask1 = ["{mask1}"]
mask0 = ["zero"]
seeds = 1
iterations = 120
eval_every = 40
rounds = 1
"""


def _run(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    root = tmp / name
    run_sweep(load_sweep(str(path), "full"), root, Runtime(device="cpu"), workers=1, quiet=True)
    return root


def _round(root: Path, k: int) -> Path:
    for p in (root / "runs").glob("round_*"):
        if json.loads((p / "config.json").read_text())["identity"].get("rewind_iteration", 0) == k:
            return p
    raise AssertionError(f"no round rewound to {k}")


def test_rewind_iteration_0_is_todays_rewind_byte_for_byte(tmp_path):
    plain = _run(tmp_path, "plain", TINY.format(mask1="rewind"))
    zero = _run(tmp_path, "zero", TINY.format(mask1="rewind") + "rewind_iteration = [0]\n")
    from ticketlab.analysis.table import result_rows, to_csv

    assert to_csv(result_rows(plain)).encode() == to_csv(result_rows(zero)).encode()
    assert sorted(p.name for p in (plain / "runs").iterdir()) == sorted(p.name for p in (zero / "runs").iterdir())
    assert "rewind_iteration" not in to_csv(result_rows(zero)).splitlines()[0]


def test_a_member_rewound_to_k_starts_from_the_dense_runs_weights_at_k(tmp_path, mnist):
    # k = 30: a snapshot the dense run keeps; k = 50: not in its plan, replayed
    root = _run(tmp_path, "late", TINY.format(mask1="rewind") + "rewind_iteration = [0, 30, 50]\n")
    init = init_weights(FC, generator(0, "init"))
    (dense,) = train_cohort(FC, mnist, [MemberStart(init)], Schedule(120, 1.2e-3, eval_every=40,
                                                                     snapshot_iterations=(30, 50)), seed=0)
    for k in (30, 50):
        run = _round(root, k)
        start = load_arrays(run / "start.npz")
        masks = unpack_masks([l.name for l in FC.layers], load_arrays(run / "masks.npz"))
        w, b, _ = dense.snapshots[f"iteration_{k}"]
        for layer, wk, bk, m in zip(FC.layers, w, b, masks):
            assert torch.equal(torch.from_numpy(start[f"{layer.name}.weight"]), torch.where(m, wk, torch.zeros_like(wk)))
            assert torch.equal(torch.from_numpy(start[f"{layer.name}.bias"]), bk)
        history = json.loads((run / "history.json").read_text())
        assert history["iteration"] == [k] + [i for i in (40, 80, 120) if i > k]  # the rest of the schedule
    assert len(list((root / "runs").glob("snapshot_*"))) == 1  # only k = 50 was replayed
    from ticketlab.analysis.table import result_rows

    rows = [r for r in result_rows(root) if r["round"] == 1]
    assert sorted(r["rewind_iteration"] for r in rows) == [0, 30, 50]


def test_rewind_iteration_errors(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.format(mask1="rewind") + "rewind_iteration = [0, 120]\n")
    with pytest.raises(TicketlabError, match=r"bad.toml:10: field 'rewind_iteration' must be below the schedule's 120 "
                                             r"steps"):
        load_sweep(str(path), "full")
    path.write_text(TINY.format(mask1="rewind").replace('["rewind"]', '["reinit"]')
                    + "rewind_iteration = [0, 30]\n")
    with pytest.raises(TicketlabError, match=r"lists 30, but mask-1 action 'reinit' does not rewind"):
        load_sweep(str(path), "full")
    path.write_text(TINY.format(mask1="rewind") + "rewind_iteration = [-1]\n")
    with pytest.raises(TicketlabError, match=r"field 'rewind_iteration' must be >= 0, got -1"):
        load_sweep(str(path), "full")
