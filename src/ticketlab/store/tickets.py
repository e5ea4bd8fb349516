"""Tickets out of the lab: one run's subnetwork as a `safetensors` file plain PyTorch can use.

The file follows `torch.nn.utils.prune`'s convention, per layer (`fc1`, `conv1`, ...):
`<layer>.weight_orig` and `<layer>.weight_mask` (1 = kept; the weight is their product), and
`<layer>.bias`, in torch's layouts (a dense layer's weight is (out, in), as `nn.Linear` holds it;
ticketlab's own kernels are (in, out)). Where pruned weights hold non-zero values (the mask-0 actions
that freeze them at init), `<layer>.weight_held` holds those, zero at kept positions: the network the
run evaluated is `weight_orig * weight_mask + weight_held`. The metadata (all strings) names the run,
the net and its layers, the dataset, seed, criterion, mask-1 and mask-0 actions, round, which weights
(init: the ticket to retrain, with zero biases as every run starts; final: as trained) and the
densities. `load_ticket` rebuilds it as an `nn.Sequential` with the masks attached by
`prune.custom_from_mask`; the README shows how to use a file with torch and safetensors alone.
A supermask run holds one network per row; `experiments.supermask.supermask_ticket` builds one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import TicketlabError
from ..nets.specs import NETS, NetSpec, get_net
from .files import SUMMARY, UnreadableFile, finished, load_arrays, read_json, unpack_masks, write_output

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
    spec = get_net(net_name)
    arrays, source = _run_arrays(run_dir, "start" if weights == "init" else "final")
    names = [layer.name for layer in spec.layers]
    try:
        masks = (unpack_masks(names, load_arrays(run_dir / "masks.npz")) if (run_dir / "masks.npz").is_file()
                 else [torch.ones(layer.weight_shape, dtype=torch.bool) for layer in spec.layers])
        kernels = [torch.from_numpy(arrays[f"{n}.weight"]) for n in names]
        biases = ([torch.from_numpy(arrays[f"{n}.bias"]) for n in names] if weights == "final"
                  else [torch.zeros(layer.out_channels) for layer in spec.layers])  # every run starts at zero biases
    except (UnreadableFile, KeyError, ValueError) as e:
        raise TicketlabError(f"run {run_dir} is damaged ({e}); rerun it with --repair") from None
    meta = {"kind": kind, "dataset": str(record.get("config", {}).get("dataset", identity.get("dataset") or spec.dataset)),
            "seed": str(identity.get("seed", 0)), "criterion": str(identity.get("criterion", "")),
            "mask1": str(identity.get("mask1", "")), "mask0": str(identity.get("mask0", "")),
            "round": str(identity.get("round", 0)), "weights": weights, "weights_file": source}
    return build_ticket(spec, run_dir.name, kernels, masks, biases, meta)


def build_ticket(spec: NetSpec, run: str, kernels: list[torch.Tensor], masks: list[torch.Tensor],
                 biases: list[torch.Tensor], meta: dict[str, str], scales: list[float] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a ticket from ticketlab-layout kernels ((in, out) for dense layers),
    bool masks and biases; `scales` (per layer, e.g. dynamic weight rescaling) multiply weight_orig."""
    tensors: dict[str, torch.Tensor] = {}
    kept = []
    for i, (layer, w, m, b) in enumerate(zip(spec.layers, kernels, masks, biases)):
        if scales is not None:
            w = w * scales[i]
        if layer.kind == "fc":  # ticketlab's (in, out) to nn.Linear's (out, in)
            w, m = w.t(), m.t()
        mask = m.to(torch.float32)
        tensors[f"{layer.name}.weight_orig"] = w.contiguous()
        tensors[f"{layer.name}.weight_mask"] = mask.contiguous()
        tensors[f"{layer.name}.bias"] = b.to(torch.float32).contiguous()
        held = w * (1 - mask)
        if bool(held.ne(0).any()):
            tensors[f"{layer.name}.weight_held"] = held.contiguous()
        kept.append(int(m.sum()))
    layers = [{"name": layer.name, "kind": layer.kind, "in": layer.fan_in_channels, "out": layer.out_channels,
               "pool_after": layer.pool_after} for layer in spec.layers]
    metadata = {
        "format": FORMAT,
        "run": run,
        "net": spec.name,
        "layers": json.dumps(layers),
        "input_shape": json.dumps(list(spec.input_shape)),
        **meta,
        "density": repr(sum(kept) / spec.prunable_weights),
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
    """A ticket file as an `nn.Sequential` (3x3 'same' convolutions, ReLU, 2x2 max-pooling, then dense
    layers; inputs (N, 784) or (N, C, H, W)) whose masks are attached with `prune.custom_from_mask`,
    so that they survive `state_dict` round trips as `weight_orig` and `weight_mask`."""
    st = _need_safetensors()
    from safetensors import safe_open
    from torch import nn
    from torch.nn.utils import prune

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
    layers = json.loads(metadata["layers"])
    modules: list[nn.Module] = []
    flattened = False
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if layer["kind"] == "conv":
            module: nn.Module = nn.Conv2d(layer["in"], layer["out"], 3, padding=1)
        else:
            if not flattened:  # images (or MNIST's 784 pixels) into one row per example, channel-major
                modules.append(nn.Flatten())
                flattened = True
            module = nn.Linear(layer["in"], layer["out"])
        name = layer["name"]
        with torch.no_grad():
            module.weight.copy_(tensors[f"{name}.weight_orig"])
            module.bias.copy_(tensors[f"{name}.bias"])
        prune.custom_from_mask(module, "weight", tensors[f"{name}.weight_mask"])
        if f"{name}.weight_held" in tensors:
            _attach_held(module, tensors[f"{name}.weight_held"])
        modules.append(module)
        if not last:
            modules.append(nn.ReLU())
            if layer["kind"] == "conv" and layer["pool_after"]:
                modules.append(nn.MaxPool2d(2))
    net = nn.Sequential(*modules)
    net.ticket_metadata = metadata  # type: ignore[attr-defined]
    return net


def _attach_held(module: torch.nn.Module, held: torch.Tensor) -> None:
    """Add the held values of pruned weights after pruning's own hook has masked them."""
    module.register_buffer("weight_held", held)

    def add_held(mod: torch.nn.Module, _inputs: Any) -> None:
        mod.weight = mod.weight + mod.weight_held

    module.register_forward_pre_hook(add_held)
