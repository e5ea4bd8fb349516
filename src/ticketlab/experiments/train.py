"""`ticketlab train`: one dense or masked network, stored as a run directory."""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..core.errors import TicketlabError
from ..core.progress import ProgressLine
from ..core.seeds import generator
from ..data import load_dataset
from ..nets.specs import NetSpec, init_params, init_weights
from ..store.files import UnreadableFile, finished, load_arrays, remove_stale_temporaries
from ..store.naming import identity, run_name
from ..store.runs import mask_arrays, weight_arrays, write_run
from ..training import MemberStart, train_cohort
from ..training.config import TrainConfig


def read_mask_file(path: Path, spec: NetSpec, allow_empty_layers: bool = False) -> tuple[list[torch.Tensor], str]:
    """Bool masks from an .npz with one array per prunable layer name (e.g. fc1, fc2, fc3), and its sha256.

    An array may be bool, or integer or float with every value exactly 0 or 1 (1 = keep); anything
    else (strings, 0.3, NaN, ...) is refused rather than cast, since a cast would keep every weight.
    A layer the net does not prune (VGG-16's output layer) may be left out (all kept) or given all ones.
    A layer that keeps no weight cuts the network in two (it trains to chance accuracy): refused,
    unless `allow_empty_layers` (`empty_layers` names them, for a warning)."""
    layers = ", ".join(layer.name for layer in spec.layers if layer.prunable)
    expected = f"give an .npz (numpy.savez) with one bool or 0/1 array per prunable layer: {layers}"
    if path.is_dir():
        raise TicketlabError(f"mask file {path} is a directory: {expected}")
    if not path.exists():
        raise TicketlabError(f"mask file {path} does not exist: {expected}")
    try:
        raw = path.read_bytes()
        arrays = load_arrays(path)
    except OSError as e:
        raise TicketlabError(f"cannot read mask file {path}: {e.strerror or e}") from None
    except UnreadableFile as e:  # its message names the file and what is wrong with it
        raise TicketlabError(f"bad mask file: {e}; {expected}") from None
    extra = sorted(set(arrays) - {layer.name for layer in spec.layers})
    if extra:
        raise TicketlabError(f"mask file {path} has arrays that net {spec.name} lacks ({', '.join(extra)}): {expected}")
    masks = []
    for layer in spec.layers:
        if layer.name not in arrays:
            if not layer.prunable:
                masks.append(torch.ones(layer.weight_shape, dtype=torch.bool))
                continue
            raise TicketlabError(f"mask file {path} has no array {layer.name!r}: {expected}")
        a = arrays[layer.name]
        if tuple(a.shape) != layer.weight_shape:
            raise TicketlabError(f"mask {layer.name} in {path} has shape {a.shape}, expected {layer.weight_shape}")
        mask = torch.from_numpy(_as_bool_mask(a, f"mask {layer.name} in {path}"))
        if not layer.prunable and not bool(mask.all()):
            raise TicketlabError(f"mask {layer.name} in {path} prunes weights of a layer net {spec.name} does not "
                                 f"prune: leave it out of the file (or give it all ones)")
        masks.append(mask)
    empty = empty_layers(spec, masks)
    if empty and not allow_empty_layers:
        raise TicketlabError(f"mask file {path} keeps no weight of layer {', '.join(empty)}: such a network can only "
                             "guess; fix the mask, or pass --allow-empty-layers to train it anyway")
    return masks, hashlib.sha256(raw).hexdigest()


def empty_layers(spec: NetSpec, masks: list[torch.Tensor]) -> list[str]:
    """The layers whose mask keeps no weight."""
    return [layer.name for layer, m in zip(spec.layers, masks) if not bool(m.any())]


def _as_bool_mask(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "iuf":
        raise TicketlabError(f"{what} has dtype {a.dtype}: a mask must be bool, or integers or floats that are all 0 or 1")
    bad = (a != 0) & (a != 1)  # NaN compares unequal to both, so it is caught too
    if bad.any():
        raise TicketlabError(
            f"{what} has values other than 0 and 1 (e.g. {a[bad][0].item()!r}): a mask must be bool, or integers or "
            "floats that are all 0 or 1"
        )
    return a == 1


def run_train(
    config: TrainConfig,
    out_root: Path,
    device: torch.device,
    data_dir: str | None = None,
    download: bool = False,
    mask_file: Path | None = None,
    quiet: bool = False,
    repair: bool = False,
    allow_empty_layers: bool = False,
) -> Path:
    """Train (or find already trained) the run of `config`; return its directory. A finished run whose
    files no longer match their checksums is an error, or with `repair` trained again."""
    config.validate()
    spec = config.net_spec()
    resolved = config.resolved()
    ident = identity(config)
    masks, mask_digest = (None, None)
    if mask_file is not None:
        masks, mask_digest = read_mask_file(mask_file, spec, allow_empty_layers)
        empty = empty_layers(spec, masks)
        if empty:
            print(f"ticketlab: warning: mask file {mask_file} keeps no weight of layer {', '.join(empty)}: the network "
                  "can only guess (chance accuracy)", file=sys.stderr, flush=True)
        ident["mask_sha256"] = mask_digest
    run_dir = out_root / run_name("train", ident)
    remove_stale_temporaries(out_root)  # what killed earlier runs of this host left
    if finished(run_dir, repair):
        if not quiet:
            print(f"already done: {run_dir}", file=sys.stderr, flush=True)  # stdout is the run directory alone
        return run_dir
    data = load_dataset(resolved.dataset, data_dir, download)
    if resolved.batch_size > len(data.train_x):  # validate() knows only the canonical sizes
        raise TicketlabError(
            f"--batch-size {resolved.batch_size} exceeds the {len(data.train_x):,} training images of "
            f"{resolved.dataset}{f' in {data_dir}' if data_dir else ''}: use a smaller batch or the complete dataset"
        )

    init = init_weights(spec, generator(config.seed, "init"))
    start = init if masks is None else [w * m for w, m in zip(init, masks)]
    params = init_params(spec, generator(config.seed, "init_params"))  # zeros but BatchNorm's scales
    bar = None if quiet else ProgressLine(f"[train {spec.name} seed {config.seed}] iter")

    def progress(it: int, total: int, val_acc: list[float]) -> None:
        if bar is not None:
            bar.update(it, total, f"val acc {100 * val_acc[0]:.2f}%", force=it == total)

    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    (result,) = train_cohort(spec, data, [MemberStart(start, masks, params)], config.schedule(), config.seed, device,
                             progress, timing)
    wall = time.perf_counter() - t0
    summary = {**result.summary(), "seed": config.seed, "net": spec.name, "dataset": resolved.dataset, "wall_seconds": wall,
               "train_seconds": timing["train_s"], "eval_seconds": timing["val_s"] + timing["test_s"] + timing["other_eval_s"]}
    if bar is not None:
        bar.close(
            f"early stop at iteration {summary['early_stop_iteration']}: "
            f"test accuracy {100 * summary['test_accuracy_at_early_stop']:.2f}% ({wall:.1f} s, "
            f"{summary['eval_seconds']:.1f} s of it evaluating)"
        )
    arrays = {"start.npz": weight_arrays(spec, start, params if spec.random_param_init else None),
              "final.npz": weight_arrays(spec, result.final_weights, result.final_biases,
                                         buffers=result.final_buffers)}
    if masks is not None:
        arrays["masks.npz"] = mask_arrays(spec, masks)
    write_run(run_dir, "train", ident, summary, config=config, device=device, history=result.history, arrays=arrays)
    return run_dir
