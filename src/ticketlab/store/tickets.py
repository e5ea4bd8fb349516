"""Tickets out of the lab: one run's subnetwork as a `safetensors` file plain PyTorch can use.

The file follows `torch.nn.utils.prune`'s convention, per layer (`fc1`, `conv1`, `blocks.0.conv1`,
...): `<layer>.weight_orig` and `<layer>.weight_mask` (1 = kept; the weight is their product), and
`<layer>.bias` where the layer has one, in torch's layouts (a dense layer's weight is (out, in), as
`nn.Linear` holds it; ticketlab's own kernels are (in, out)). Where pruned weights hold non-zero
values (the mask-0 actions that freeze them at init), `<layer>.weight_held` holds those, zero at
kept positions: the network the run evaluated is `weight_orig * weight_mask + weight_held`. A
BatchNorm is `<bn>.weight`, `<bn>.bias`, `<bn>.running_mean` and `<bn>.running_var`, as torch's
state_dict names them (ResNet-20's and VGG-16's names are OpenLTH's). The metadata (all strings)
names the run, the net and its layers (every declared attribute: kind, sizes, stride, padding,
BatchNorm, residual inputs, pools), the input and image shapes, the dataset, seed, criterion, mask-1
and mask-0 actions, round, which weights (init: the ticket to retrain, with the run's start
parameters: zero biases, BatchNorm at its start and torch's start statistics; final: as trained)
and the densities of the prunable layers. `load_ticket` rebuilds it as an `nn.Module` with the
masks attached by `prune.custom_from_mask`; the README shows how to use a file with torch and
safetensors alone. A supermask run holds one network per row; `experiments.supermask.supermask_ticket`
builds one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import TicketlabError
from ..data import IMAGE_SHAPES, classes
from ..nets.specs import BN_EPS, BN_MOMENTUM, NETS, NetSpec, get_net, init_buffers
from .files import SUMMARY, UnreadableFile, finished, load_arrays, read_json, unpack_masks, write_output
from .runs import buffer_arrays, start_biases

WEIGHTS = ("init", "final")  # runs keep no weights at the early-stopping iteration
FORMAT = "ticketlab-ticket-1"
# run kinds that hold one network (a supermask run holds one per row: experiments.supermask.supermask_ticket)
_EXPORTABLE = ("train", "dense", "round")


def _need_safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise TicketlabError('exporting and loading tickets needs safetensors: pip install "ticketlab[export]"') from None
    return safetensors.torch


def _run_arrays(run_dir: Path, which: str) -> tuple[dict[str, np.ndarray], str]:
    """The arrays of a run's start or final weights, and the file they came from (train runs before
    this version named them weights_start.npz / weights_final.npz)."""
    for name in ((f"{which}.npz", f"weights_{which}.npz")):
        if (run_dir / name).is_file():
            return load_arrays(run_dir / name), name
    raise TicketlabError(f"run {run_dir} has no {which}.npz: it is not a finished run of one network; rerun it")


def ticket_tensors(run_dir: Path, weights: str = "final") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of one run's ticket (see the module docstring)."""
    run_dir = Path(run_dir)
    if weights not in WEIGHTS:
        raise TicketlabError(f"unknown --weights {weights!r}: choose one of {', '.join(WEIGHTS)}")
    kind = run_kind(run_dir)
    try:
        record = read_json(run_dir / "config.json")
        identity = record["identity"]
        net_name = identity["net"]
    except (UnreadableFile, KeyError, TypeError) as e:
        raise TicketlabError(f"run {run_dir} is damaged ({e}); rerun it with --repair") from None
    if kind not in _EXPORTABLE:
        raise TicketlabError(f"run {run_dir} is a {kind} run, which holds no single network: export a train, "
                             "dense or round run (a supermask run with --criterion, --level, --start and --dwr)")
    if net_name not in NETS:
        raise TicketlabError(f"run {run_dir} is of net {net_name!r}, unknown to this ticketlab")
    dataset = str(record.get("config", {}).get("dataset", identity.get("dataset") or get_net(net_name).dataset))
    if dataset not in IMAGE_SHAPES:
        raise TicketlabError(f"run {run_dir} trained on dataset {dataset!r}, unknown to this ticketlab: register it "
                             "(ticketlab.data.register_dataset) before exporting")
    spec = get_net(net_name, IMAGE_SHAPES[dataset], classes(dataset))  # the net as built for the run's images
    arrays, source = _run_arrays(run_dir, "start" if weights == "init" else "final")
    names = [layer.name for layer in spec.layers]
    try:
        masks = (unpack_masks(names, load_arrays(run_dir / "masks.npz")) if (run_dir / "masks.npz").is_file()
                 else [torch.ones(layer.weight_shape, dtype=torch.bool) for layer in spec.layers])
        kernels = [torch.from_numpy(arrays[f"{n}.weight"]) for n in names]
        if weights == "final":
            biases, buffers = [torch.from_numpy(arrays[t.name]) for t in spec.params], buffer_arrays(spec, arrays)
        else:  # every run starts at zero biases, its BatchNorm where start.npz keeps it, torch's statistics
            biases = start_biases(spec, arrays) or [torch.zeros(t.shape) for t in spec.params]
            buffers = init_buffers(spec)
    except (UnreadableFile, KeyError, ValueError) as e:
        raise TicketlabError(f"run {run_dir} is damaged ({e}); rerun it with --repair") from None
    meta = {"kind": kind, "dataset": dataset,
            "seed": str(identity.get("seed", 0)), "criterion": str(identity.get("criterion", "")),
            "mask1": str(identity.get("mask1", "")), "mask0": str(identity.get("mask0", "")),
            "round": str(identity.get("round", 0)), "weights": weights, "weights_file": source}
    return build_ticket(spec, run_dir.name, kernels, masks, biases, meta, buffers=buffers)


def build_ticket(spec: NetSpec, run: str, kernels: list[torch.Tensor], masks: list[torch.Tensor],
                 biases: list[torch.Tensor], meta: dict[str, str], scales: list[float] | None = None,
                 buffers: list[torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a ticket from ticketlab-layout kernels ((in, out) for dense layers),
    bool masks, the net's other parameters (`NetSpec.params`: biases, BatchNorm scales and shifts) and
    its buffers (BatchNorm running statistics; default: their start values); `scales` (per layer,
    e.g. dynamic weight rescaling) multiply weight_orig."""
    tensors: dict[str, torch.Tensor] = {}
    kept = []
    for i, (layer, w, m) in enumerate(zip(spec.layers, kernels, masks)):
        if scales is not None:
            w = w * scales[i]
        if layer.kind == "fc":  # ticketlab's (in, out) to nn.Linear's (out, in)
            w, m = w.t(), m.t()
        mask = m.to(torch.float32)
        tensors[f"{layer.name}.weight_orig"] = w.contiguous()
        tensors[f"{layer.name}.weight_mask"] = mask.contiguous()
        held = w * (1 - mask)
        if bool(held.ne(0).any()):
            tensors[f"{layer.name}.weight_held"] = held.contiguous()
        kept.append(int(m.sum()))
    for t, b in zip(spec.params, biases):
        tensors[t.name] = b.to(torch.float32).contiguous()
    for t, r in zip(spec.buffers, buffers if buffers is not None else init_buffers(spec)):
        tensors[t.name] = r.to(torch.float32).contiguous()
    metadata = {
        "format": FORMAT,
        "run": run,
        "net": spec.name,
        "layers": json.dumps([layer.describe() for layer in spec.layers]),
        "input_shape": json.dumps(list(spec.input_shape)),
        "image_shape": json.dumps(list(spec.image_shape)),
        **meta,
        "density": repr(spec.kept_weights(masks) / spec.prunable_weights),
        "layer_density": json.dumps({layer.name: k / layer.size for layer, k in zip(spec.layers, kept)}),
    }
    metadata["sha256"] = tensors_digest(tensors)
    return tensors, metadata


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a ticket's tensors (names, dtypes, shapes and bytes, in name order): recorded at export,
    checked by `load_ticket`, so that a damaged or altered file is refused rather than loaded."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def write_ticket(tensors: dict[str, torch.Tensor], metadata: dict[str, str], out: Path) -> Path:
    """Write a ticket's tensors and metadata to `out` (a .safetensors file, written whole or not at all)."""
    st = _need_safetensors()
    out = Path(out)

    def save(tmp: Path) -> None:
        try:
            st.save_file(tensors, str(tmp), metadata=metadata)
        except Exception as e:  # safetensors reports I/O failures as its own error type
            raise OSError(str(e).split(": ")[-1] if str(e) else type(e).__name__) from None

    write_output(out, save, "ticket")
    return out


def run_kind(run_dir: Path) -> str:
    """The kind of a finished run (`train`, `dense`, `round`, `supermask`), or a one-line error. Every
    file of the run is checked first (`files.finished`): what is exported is what was trained."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TicketlabError(f"{run_dir} is not a run directory: give one run's folder, e.g. OUT/runs/round_<hash>")
    if not finished(run_dir):
        raise TicketlabError(f"{run_dir} is not a finished run (no summary.json): finish it with the command that "
                             "started it, or give another run")
    try:
        return str(read_json(run_dir / "config.json")["kind"])
    except (UnreadableFile, KeyError, TypeError) as e:
        raise TicketlabError(f"run {run_dir} is damaged ({e}); rerun it with --repair") from None


def export_ticket(run_dir: Path, out: Path, weights: str = "final") -> Path:
    """Write the ticket of a run of one network to `out` (a .safetensors file, written whole or not at all)."""
    _need_safetensors()
    tensors, metadata = ticket_tensors(run_dir, weights)
    return write_ticket(tensors, metadata, out)


def load_ticket(path: str | Path) -> torch.nn.Module:
    """A ticket file as an `nn.Module` in evaluation mode whose masks are attached with
    `prune.custom_from_mask`, so that they survive `state_dict` round trips as `weight_orig` and
    `weight_mask`. Inputs: (N, C, H, W) images or rows of their pixels.

    Nets of plain layers (FC, Conv2/4/6: convolutions with biases, ReLU, max-pools, dense layers)
    come as an `nn.Sequential`; nets with BatchNorm or residual connections (ResNet-20, VGG-16) as a
    module whose submodules carry the layers' own names, so that its state_dict keys are the
    ticket's (OpenLTH's for those two), and whose forward follows the declared layers."""
    st = _need_safetensors()
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = st.load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors' own error type, OSError, ...: all mean "not readable"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TicketlabError(f"cannot read ticket {path}: {reason}; export it again with ticketlab export") from None
    if metadata.get("format") != FORMAT:
        raise TicketlabError(f"{path} is not a ticketlab ticket (no format {FORMAT!r} in its metadata): export one "
                             "with ticketlab export")
    if "sha256" in metadata and tensors_digest(tensors) != metadata["sha256"]:
        raise TicketlabError(f"ticket {path} is damaged (its tensors do not match the checksum recorded at export): "
                             "export it again with ticketlab export")
    return ticket_module(tensors, metadata).eval()


def ticket_module(tensors: dict[str, torch.Tensor], metadata: dict[str, str], masked: bool = True) -> torch.nn.Module:
    """The nn.Module of a ticket's tensors and metadata (`load_ticket`, in training mode); with
    masked=False a plain module of the product weights, no pruning hooks (the benchmark's plain loop)."""
    # tickets written before layers declared these keys are of plain nets: the defaults are theirs
    layers = [{**_PLAIN_LAYER, **layer} for layer in json.loads(metadata["layers"])]
    input_shape = tuple(json.loads(metadata.get("input_shape", "[]")))
    plain = all(layer["bias"] and not layer["batchnorm"] and not layer["residual"] and not layer["projection"]
                and not layer["global_pool"] and layer["stride"] == 1 for layer in layers)
    net = (_sequential(layers, tensors, input_shape, masked) if plain
           else _TicketNet(layers, tensors, input_shape, masked))
    net.ticket_metadata = metadata  # type: ignore[attr-defined]
    return net


_PLAIN_LAYER = {"kernel": 3, "stride": 1, "padding": 1, "bias": True, "batchnorm": "", "prunable": True,
                "residual": "", "shortcut": "", "projection": False, "global_pool": False}


def _weight_module(layer: dict[str, Any], tensors: dict[str, torch.Tensor], masked: bool = True) -> torch.nn.Module:
    """The layer's nn.Conv2d or nn.Linear with the ticket's weights, mask (and held values) attached;
    masked=False: the network's weights themselves, no hooks."""
    from torch import nn
    from torch.nn.utils import prune

    if layer["kind"] == "conv":
        module: nn.Module = nn.Conv2d(layer["in"], layer["out"], layer["kernel"], stride=layer["stride"],
                                      padding=layer["padding"], bias=layer["bias"])
    else:
        module = nn.Linear(layer["in"], layer["out"], bias=layer["bias"])
    name = layer["name"]
    with torch.no_grad():
        module.weight.copy_(tensors[f"{name}.weight_orig"])
        if layer["bias"]:
            module.bias.copy_(tensors[f"{name}.bias"])
    if not masked:
        with torch.no_grad():
            module.weight.mul_(tensors[f"{name}.weight_mask"]).add_(tensors.get(f"{name}.weight_held", 0))
        return module
    prune.custom_from_mask(module, "weight", tensors[f"{name}.weight_mask"])
    if f"{name}.weight_held" in tensors:
        _attach_held(module, tensors[f"{name}.weight_held"])
    return module


class _AsInput(torch.nn.Module):
    """Rows of pixels (or images) as the net takes them: (N, *input_shape)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.shape)


def _sequential(layers: list[dict[str, Any]], tensors: dict[str, torch.Tensor], input_shape: tuple[int, ...],
                masked: bool = True) -> torch.nn.Module:
    """3x3 'same' convolutions, ReLU, 2x2 max-pooling, then dense layers, as an nn.Sequential (FC,
    Conv2/4/6); a conv net's input is first shaped as its images."""
    from torch import nn

    modules: list[nn.Module] = [_AsInput(input_shape)] if len(input_shape) == 3 else []
    flattened = False
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if layer["kind"] != "conv" and not flattened:  # images (or MNIST's 784 pixels) into one row, channel-major
            modules.append(nn.Flatten())
            flattened = True
        modules.append(_weight_module(layer, tensors, masked))
        if not last:
            modules.append(nn.ReLU())
            if layer["kind"] == "conv" and layer["pool_after"]:
                modules.append(nn.MaxPool2d(2))
    return nn.Sequential(*modules)


class _TicketNet(torch.nn.Module):
    """A ticket's net by its declared layers (`nets.specs.Layer`), each conv, dense layer and
    BatchNorm a submodule under its own dotted name (containers made for the prefixes)."""

    def __init__(self, layers: list[dict[str, Any]], tensors: dict[str, torch.Tensor], input_shape: tuple[int, ...],
                 masked: bool = True):
        from torch import nn

        super().__init__()
        # underscored: the layers' own names (VGG's `layers.0.conv`) are submodules of this module
        self._declared, self._input_shape = layers, input_shape
        self._by_name = {layer["name"]: layer for layer in layers}
        for layer in layers:
            self._place(layer["name"], _weight_module(layer, tensors, masked))
            bn_name = layer["batchnorm"]
            if bn_name:
                bn = nn.BatchNorm2d(layer["out"], eps=BN_EPS, momentum=BN_MOMENTUM)
                with torch.no_grad():
                    for part in ("weight", "bias", "running_mean", "running_var"):
                        getattr(bn, part).copy_(tensors[f"{bn_name}.{part}"])
                self._place(bn_name, bn)

    def _place(self, dotted: str, module: torch.nn.Module) -> None:
        *parents, leaf = dotted.split(".")
        node: torch.nn.Module = self
        for p in parents:
            if p not in node._modules:
                node.add_module(p, torch.nn.Module())
            node = node._modules[p]
        node.add_module(leaf, module)

    def _apply_layer(self, layer: dict[str, Any], h: torch.Tensor) -> torch.Tensor:
        module = self.get_submodule(layer["name"])
        z = module(h if layer["kind"] == "conv" else h.flatten(1))
        return self.get_submodule(layer["batchnorm"])(z) if layer["batchnorm"] else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h = x.reshape(len(x), *self._input_shape)
        inputs: dict[str, torch.Tensor] = {}
        for layer in self._declared:
            if layer["projection"]:  # a shortcut: runs where a later layer adds it
                continue
            inputs[layer["name"]] = h
            z = self._apply_layer(layer, h)
            if layer["residual"]:
                skip = inputs[layer["residual"]]
                z = z + (self._apply_layer(self._by_name[layer["shortcut"]], skip) if layer["shortcut"] else skip)
            if layer["relu"]:
                z = F.relu(z)
            if layer["pool_after"]:
                z = F.max_pool2d(z, 2)
            if layer["global_pool"]:
                z = F.avg_pool2d(z, tuple(z.shape[-2:])).flatten(1)
            h = z
        return h


def _attach_held(module: torch.nn.Module, held: torch.Tensor) -> None:
    """Add the held values of pruned weights after pruning's own hook has masked them."""
    module.register_buffer("weight_held", held)

    def add_held(mod: torch.nn.Module, _inputs: Any) -> None:
        mod.weight = mod.weight + mod.weight_held

    module.register_forward_pre_hook(add_held)
