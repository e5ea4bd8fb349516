"""Supermasks at initialisation (SPEC §7): one-shot masks from a trained base, no training.

For each criterion the masks of every level p come from one score ordering per layer
(`oneshot_masks`); the masked networks of all levels and start-weight variants are evaluated in
stacks through the cohort evaluator, not one network at a time.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..pruning.actions import density_multiplier
from ..training.config import TrainConfig
from ..nets.specs import NetSpec, get_net
from ..pruning.prune import oneshot_masks, oneshot_prune_count
from ..store.runs import RUNS, dense_identity, read_base, run_dir
from ..core.seeds import derive_seed
from ..store.files import SUMMARY, building, finished, read_json, reading_run, write_json
from ..training.evaluate import evaluate

EVAL_STACK = 26  # networks evaluated together


def signed_constant(w: torch.Tensor) -> torch.Tensor:
    """c * sign(w), c = the population std of the whole layer (SPEC §6)."""
    return float(w.double().std(correction=0)) * torch.sign(w)


def supermask_identity(config: TrainConfig, base: str, criteria, levels, starts, dwrs) -> dict[str, Any]:
    return {
        "dense": dense_identity(config),
        "base": base,
        "criteria": list(criteria),
        "levels": list(levels),
        "starts": list(starts),
        "dwr": list(dwrs),
    }


def evaluate_supermasks(
    spec: NetSpec,
    w_init: list[torch.Tensor],
    w_final: list[torch.Tensor],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    criteria: list[str],
    levels: list[int],
    starts: list[str],
    dwrs: list[bool],
    seed: int,
    base: str,
    device: torch.device,
    report: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (criterion, level, start, dwr): remaining weights and test accuracy at init."""
    start_weights = {"init": w_init, "signed_constant": [signed_constant(w) for w in w_init]}
    counts = [[oneshot_prune_count(layer.size, layer.keep, p) for p in levels] for layer in spec.layers]
    rows: list[dict[str, Any]] = []
    zero_biases = None
    x, y = test_x.to(device), test_y.to(device)
    for ci, criterion in enumerate(criteria):
        per_layer = [
            oneshot_masks(criterion, w_init[i], w_final[i], counts[i], derive_seed(seed, "oneshot", base, criterion, i))
            for i in range(len(spec.layers))
        ]
        variants = list(itertools.product(range(len(levels)), starts, dwrs))
        for chunk_start in range(0, len(variants), EVAL_STACK):
            chunk = variants[chunk_start : chunk_start + EVAL_STACK]
            stacks = []
            for i in range(len(spec.layers)):
                layer_nets = []
                for li, start, dwr in chunk:
                    mask = per_layer[i][li]
                    w = start_weights[start][i] * mask
                    if dwr:
                        w = w * density_multiplier(mask)
                    layer_nets.append(w)
                stacks.append(torch.stack(layer_nets).to(device))
            zero_biases = [torch.zeros(len(chunk), layer.out_channels, device=device) for layer in spec.layers]
            _, accuracy = evaluate(spec, stacks, zero_biases, x, y)
            for (li, start, dwr), acc in zip(chunk, accuracy):
                remaining = sum(int(per_layer[i][li].sum()) for i in range(len(spec.layers)))
                rows.append(
                    {
                        "criterion": criterion,
                        "round": levels[li],
                        "remaining_weights": remaining,
                        "start": start,
                        "dwr": dwr,
                        "test_accuracy_at_init": acc,
                    }
                )
        if report is not None:
            report((ci + 1) / len(criteria))
    return rows


def run_supermask(
    root: Path,
    config: TrainConfig,
    base: str,
    criteria: list[str],
    levels: list[int],
    starts: list[str],
    dwrs: list[bool],
    device: torch.device,
    data,
    report: Callable[[float], None] | None = None,
    repair: bool = False,
) -> Path | None:
    """The supermask run of one base of one seed's dense run (which must exist); None if the base
    was never reached (e.g. a val-accuracy target the run did not attain)."""
    ident = supermask_identity(config, base, criteria, levels, starts, dwrs)
    path = run_dir(root, "supermask", ident)
    if finished(path, repair):
        return path
    spec = get_net(config.net)
    dense_path = run_dir(root, "dense", dense_identity(config))
    with reading_run(dense_path):
        found = read_base(dense_path, spec, base)
    if found is None:
        return None
    w_init, w_final, b_final, base_iterations = found
    dataset = data.get(config.resolved_dataset)
    t0 = time.perf_counter()
    _, (base_acc,) = evaluate(
        spec,
        [w.unsqueeze(0).to(device) for w in w_final],
        [b.unsqueeze(0).to(device) for b in b_final],
        dataset.test_x.to(device),
        dataset.test_y.to(device),
    )
    rows = evaluate_supermasks(
        spec, w_init, w_final, dataset.test_x, dataset.test_y, criteria, levels, starts, dwrs, config.seed, base, device, report
    )
    summary = {
        "base": base,
        "base_iterations": base_iterations,
        "base_test_accuracy": base_acc,
        "seed": config.seed,
        "rows": len(rows),
        "wall_seconds": time.perf_counter() - t0,
    }
    with building(path) as tmp:
        write_json(tmp / "config.json", {"kind": "supermask", "name": path.name, "identity": ident, "dense_run": dense_path.name})
        write_json(tmp / "rows.json", rows)
        write_json(tmp / SUMMARY, summary)
    return path


def read_rows(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return read_json(path / SUMMARY), read_json(path / "rows.json")


__all__ = ["run_supermask", "evaluate_supermasks", "read_rows", "signed_constant", "RUNS"]

