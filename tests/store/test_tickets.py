"""Tickets out of the lab: a run's subnetwork as a safetensors file that plain PyTorch evaluates to
the run's own recorded test accuracy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_bad_data import refused
from ticketlab import load_ticket
from ticketlab.cli import main
from ticketlab.data import load_dataset

pytest.importorskip("safetensors")

# Plain PyTorch and safetensors only, as the README shows: no ticketlab import anywhere.
PLAIN = r"""
import json, sys
import numpy as np, torch
from safetensors import safe_open
from safetensors.torch import load_file
path, data = sys.argv[1], np.load(sys.argv[2])
t = load_file(path)
with safe_open(path, "pt") as f:
    meta = f.metadata()
x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
layers = json.loads(meta["layers"])
h = x.flatten(1)
for i, layer in enumerate(layers):
    n = layer["name"]
    w = t[n + ".weight_orig"] * t[n + ".weight_mask"] + t.get(n + ".weight_held", 0)
    h = torch.nn.functional.linear(h, w, t[n + ".bias"])
    if i < len(layers) - 1:
        h = h.relu()
print(json.dumps({"accuracy": (h.argmax(1) == y).double().mean().item(), "ticketlab": "ticketlab" in sys.modules}))
"""


@pytest.fixture(scope="module")
def test_set(tmp_path_factory) -> Path:
    data = load_dataset("mnist")
    path = tmp_path_factory.mktemp("data") / "test.npz"
    np.savez(path, x=data.test_x.numpy(), y=data.test_y.numpy())
    return path


@pytest.fixture(scope="module")
def held_round(tmp_path_factory) -> Path:
    """A round run whose pruned weights hold their init values (mask-0 freeze_init)."""
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "s.toml"
    spec.write_text('name = "t"\nkind = "iterative"\ncriteria = ["large_final"]\nmask0 = ["freeze_init"]\n'
                    "seeds = 1\niterations = 40\neval_every = 20\nrounds = 1\n")
    assert main(["sweep", str(spec), "--out", str(root), "--device", "cpu"]) == 0
    (run,) = (root / "runs").glob("round_*")
    return run


@pytest.fixture(scope="module")
def masked_train(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    g = torch.Generator().manual_seed(0)
    shapes = {"fc1": (784, 300), "fc2": (300, 100), "fc3": (100, 10)}
    np.savez(out / "mask.npz", **{k: (torch.rand(s, generator=g) < 0.3).numpy() for k, s in shapes.items()})
    assert main(["train", "--iterations", "50", "--eval-every", "25", "--mask", str(out / "mask.npz"),
                 "--out", str(out / "runs"), "--device", "cpu"]) == 0
    (run,) = (out / "runs").glob("train_*")
    return run


def _plain_accuracy(ticket: Path, test_set: Path) -> float:
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", PLAIN, str(ticket), str(test_set)], capture_output=True, text=True,
                          env=env, cwd=ticket.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ticketlab"] is False
    return result["accuracy"]


def _module_accuracy(net: torch.nn.Module, test_set: Path) -> float:
    data = np.load(test_set)
    with torch.no_grad():
        logits = net(torch.from_numpy(data["x"]))
    return (logits.argmax(1) == torch.from_numpy(data["y"])).double().mean().item()


@pytest.mark.parametrize("which", ["masked_train", "held_round"])
def test_plain_pytorch_gets_the_runs_recorded_accuracy(request, which, test_set, tmp_path):
    run = request.getfixturevalue(which)
    summary = json.loads((run / "summary.json").read_text())
    ticket = tmp_path / "ticket.safetensors"
    assert main(["export", str(run), "--out", str(ticket)]) == 0
    assert _plain_accuracy(ticket, test_set) == summary["final_test_accuracy"]
    assert _module_accuracy(load_ticket(ticket), test_set) == summary["final_test_accuracy"]


def test_init_weights_give_the_accuracy_at_init_and_carry_the_metadata(held_round, test_set, tmp_path):
    from safetensors import safe_open

    ticket = tmp_path / "init.safetensors"
    assert main(["export", str(held_round), "--out", str(ticket), "--weights", "init"]) == 0
    summary = json.loads((held_round / "summary.json").read_text())
    assert _module_accuracy(load_ticket(ticket), test_set) == summary["test_accuracy_at_init"]
    with safe_open(str(ticket), "pt") as f:
        meta = f.metadata()
        assert f.get_tensor("fc1.weight_orig").shape == (300, 784)  # nn.Linear's (out, in)
        assert "fc1.weight_held" in f.keys()  # freeze_init: pruned weights hold their init values
    assert (meta["criterion"], meta["mask1"], meta["mask0"], meta["round"], meta["weights"]) == \
        ("large_final", "rewind", "freeze_init", "1", "init")
    kept = json.loads(meta["layer_density"])
    # SPEC §4's count rule: fc1 keeps 235,200 - 47,039 weights, fc3 1,000 - 99
    assert kept["fc1"] == 188161 / 235200 and kept["fc3"] == 901 / 1000


def test_masks_survive_a_state_dict_round_trip(masked_train, test_set, tmp_path):
    ticket = tmp_path / "t.safetensors"
    assert main(["export", str(masked_train), "--out", str(ticket)]) == 0
    net = load_ticket(ticket)
    state = net.state_dict()
    assert {"1.weight_orig", "1.weight_mask", "1.bias"} <= set(state)
    again = load_ticket(ticket)
    with torch.no_grad():
        for p in again.parameters():
            p.zero_()
    again.load_state_dict(state)
    x = torch.from_numpy(np.load(test_set)["x"][:100])
    assert torch.equal(net(x), again(x))
    mask = state["1.weight_mask"]
    assert torch.equal(again[1].weight == 0, mask == 0)  # pruned weights are zero in the masked module


def test_bad_exports_are_one_line(masked_train, tmp_path, capsys):
    refused(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t.safetensors")], capsys,
            "is not a run directory")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text("{}")
    refused(["export", str(half), "--out", str(tmp_path / "t.safetensors")], capsys, "is not a finished run")
    refused(["export", str(masked_train), "--out", str(tmp_path / "no" / "t.safetensors")], capsys, "cannot write")
    with pytest.raises(SystemExit) as exit_:  # not offered: runs keep no early-stopping weights
        main(["export", str(masked_train), "--out", str(tmp_path / "t.safetensors"), "--weights", "early_stop"])
    assert exit_.value.code == 2 and "invalid choice: 'early_stop'" in capsys.readouterr().err
    assert not (tmp_path / "t.safetensors").exists()
    not_a_ticket = tmp_path / "x.safetensors"
    not_a_ticket.write_bytes(b"not a safetensors file")
    with pytest.raises(Exception, match="cannot read ticket"):
        load_ticket(not_a_ticket)


@pytest.fixture(scope="module")
def supermask_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("supermask")
    spec = root / "s.toml"
    spec.write_text('name = "sm"\nkind = "supermask"\ncriteria = ["large_final", "random"]\nstarts = ["init", '
                    '"signed_constant"]\ndwr = [false, true]\nlevels = 4\nlevel_step = 2\nseeds = 1\niterations = 40\n')
    assert main(["sweep", str(spec), "--out", str(root), "--device", "cpu"]) == 0
    (run,) = (root / "runs").glob("supermask_*")
    return run


@pytest.mark.parametrize("criterion,level,start,dwr", [("large_final", 2, "init", "false"),
                                                       ("random", 4, "signed_constant", "true"),
                                                       ("large_final", 4, "signed_constant", "true")])
def test_a_supermask_row_exports_to_its_recorded_accuracy(supermask_run, test_set, tmp_path, criterion, level, start, dwr):
    rows = json.loads((supermask_run / "rows.json").read_text())
    (row,) = [r for r in rows if (r["criterion"], r["round"], r["start"], str(r["dwr"]).lower()) ==
              (criterion, level, start, dwr)]
    ticket = tmp_path / "sm.safetensors"
    assert main(["export", str(supermask_run), "--out", str(ticket), "--criterion", criterion, "--level", str(level),
                 "--start", start, "--dwr", dwr]) == 0
    assert _plain_accuracy(ticket, test_set) == row["test_accuracy_at_init"]
    net = load_ticket(ticket)
    assert _module_accuracy(net, test_set) == row["test_accuracy_at_init"]
    assert sum(int(m.sum()) for name, m in net.state_dict().items() if name.endswith("weight_mask")) == \
        row["remaining_weights"]


def test_a_supermask_export_names_the_choices_it_needs(supermask_run, tmp_path, capsys):
    refused(["export", str(supermask_run), "--out", str(tmp_path / "t.safetensors")], capsys,
            "give --criterion, one of large_final, random (none given)")
    refused(["export", str(supermask_run), "--out", str(tmp_path / "t.safetensors"), "--criterion", "random",
             "--level", "3"], capsys, "give --level, one of 0, 2, 4 (3 is not one of them)")
