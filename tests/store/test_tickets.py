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
    # Protocol §4's count rule: fc1 keeps 235,200 - 47,039 weights, fc3 1,000 - 99
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


# ---------------------------------------------------------------------------------------------
# Conv nets, BatchNorm and residual connections: Conv2, ResNet-20 and VGG-16 on 28x28 grey images

# The README's recipe for any ticket, plain PyTorch and safetensors only.
PLAIN_ANY = r"""
import json, sys
import numpy as np, torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
path, data = sys.argv[1], np.load(sys.argv[2])
t = load_file(path)
with safe_open(path, "pt") as f:
    meta = f.metadata()
layers = {layer["name"]: layer for layer in json.loads(meta["layers"])}
shape = json.loads(meta["input_shape"])

def apply(layer, h):
    n = layer["name"]
    w = t[n + ".weight_orig"] * t[n + ".weight_mask"] + t.get(n + ".weight_held", 0)
    if layer["kind"] == "conv":
        h = F.conv2d(h, w, t.get(n + ".bias"), stride=layer["stride"], padding=layer["padding"])
    else:
        h = F.linear(h.flatten(1), w, t.get(n + ".bias"))
    if layer["batchnorm"]:
        b = layer["batchnorm"]
        h = F.batch_norm(h, t[b + ".running_mean"], t[b + ".running_var"], t[b + ".weight"], t[b + ".bias"], eps=1e-5)
    return h

def net(x):
    h, inputs = x.reshape(len(x), *shape), {}
    for name, layer in layers.items():
        if layer["projection"]:
            continue
        inputs[name] = h
        h = apply(layer, h)
        if layer["residual"]:
            skip = inputs[layer["residual"]]
            h = h + (apply(layers[layer["shortcut"]], skip) if layer["shortcut"] else skip)
        h = h.relu() if layer["relu"] else h
        h = F.max_pool2d(h, 2) if layer["pool_after"] else h
        h = F.avg_pool2d(h, h.shape[-2:]).flatten(1) if layer["global_pool"] else h
    return h

x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
with torch.no_grad():
    accuracy = (net(x).argmax(1) == y).double().mean().item()
print(json.dumps({"accuracy": accuracy, "ticketlab": "ticketlab" in sys.modules}))
"""

GREY = "tickets-grey-28"  # a small 28x28x1 data set, so that these nets evaluate in seconds


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    from test_registry import registry_restored
    from ticketlab.data import Dataset, register_dataset

    g = torch.Generator().manual_seed(0)

    def split(n):
        return torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)

    data = Dataset(GREY, *split(320), *split(120), *split(150))
    path = tmp_path_factory.mktemp("grey") / "test.npz"
    np.savez(path, x=data.test_x.numpy(), y=data.test_y.numpy())
    with registry_restored():
        register_dataset(GREY, lambda data_dir, download: data, (1, 28, 28), train_size=320)
        yield path


@pytest.fixture(scope="module")
def grey_runs(grey, tmp_path_factory):
    """A masked ResNet-20 run, a dense Conv2 run and a masked VGG-16 run on the grey data set."""
    out = tmp_path_factory.mktemp("grey-runs")
    g = torch.Generator().manual_seed(1)
    runs = {}
    for net in ("resnet20", "conv2", "vgg16"):
        args = ["train", "--net", net, "--dataset", GREY, "--iterations", "6", "--eval-every", "3", "--batch-size",
                "32", "--learning-rate", "1e-3", "--out", str(out / net), "--device", "cpu"]
        if net != "conv2":
            from ticketlab.training.config import TrainConfig

            spec = TrainConfig(net=net, dataset=GREY).net_spec()
            masks = {l.name: (torch.rand(l.weight_shape, generator=g) < 0.6).numpy() for l in spec.layers if l.prunable}
            np.savez(out / f"{net}-mask.npz", **masks)
            args += ["--mask", str(out / f"{net}-mask.npz")]
        assert main(args) == 0
        (runs[net],) = (out / net).glob("train_*")
    return runs


def _plain_any_accuracy(ticket: Path, test_set: Path) -> float:
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", PLAIN_ANY, str(ticket), str(test_set)], capture_output=True,
                          text=True, env=env, cwd=ticket.parent)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ticketlab"] is False
    return result["accuracy"]


@pytest.mark.parametrize("net", ["resnet20", "conv2", "vgg16"])
@pytest.mark.parametrize("weights", ["final", "init"])
def test_conv_and_batchnorm_tickets_give_the_runs_recorded_accuracy_in_plain_torch(grey, grey_runs, net, weights,
                                                                                  tmp_path):
    run = grey_runs[net]
    summary = json.loads((run / "summary.json").read_text())
    expected = summary["final_test_accuracy" if weights == "final" else "test_accuracy_at_init"]
    ticket = tmp_path / f"{net}.safetensors"
    assert main(["export", str(run), "--out", str(ticket), "--weights", weights]) == 0
    assert _plain_any_accuracy(ticket, grey) == expected
    assert _module_accuracy(load_ticket(ticket), grey) == expected


def test_a_resnet20_ticket_is_openlths_state_dict_with_running_statistics(grey_runs, tmp_path):
    from safetensors.torch import load_file

    run = grey_runs["resnet20"]
    ticket = tmp_path / "r.safetensors"
    assert main(["export", str(run), "--out", str(ticket)]) == 0
    tensors = load_file(str(ticket))
    final = np.load(run / "final.npz")
    # BatchNorm as torch's state_dict names it, running statistics as trained
    for key in ("bn.running_mean", "blocks.3.shortcut.1.running_var", "blocks.8.bn2.weight"):
        assert np.array_equal(tensors[key].numpy(), final[key]) and tensors[key].shape == (final[key].shape)
    assert not np.array_equal(final["bn.running_var"], np.ones(16, dtype=np.float32))
    assert "conv.bias" not in tensors and tensors["fc.weight_orig"].shape == (10, 64)
    net = load_ticket(ticket)
    state = net.state_dict()
    assert {"blocks.3.shortcut.0.weight_orig", "blocks.3.shortcut.0.weight_mask", "blocks.3.shortcut.1.running_mean",
            "fc.weight_orig", "fc.bias"} <= set(state) and not net.training
    meta = net.ticket_metadata
    spec_density = json.loads(meta["layer_density"])
    assert 0.5 < spec_density["blocks.3.shortcut.0"] < 0.7 and float(meta["density"]) < 0.7


def test_vgg16_output_layer_is_not_pruned_and_not_in_the_density(grey_runs, tmp_path):
    ticket = tmp_path / "v.safetensors"
    assert main(["export", str(grey_runs["vgg16"]), "--out", str(ticket)]) == 0
    meta = load_ticket(ticket).ticket_metadata
    layers = json.loads(meta["layers"])
    assert layers[-1]["name"] == "fc" and layers[-1]["prunable"] is False
    assert json.loads(meta["layer_density"])["fc"] == 1.0 and float(meta["density"]) < 0.61
