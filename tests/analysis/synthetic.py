"""Synthetic results tables with a known structure (no training needed), for the analysis tests.

Other test rooms may build on them too: `from synthetic import synthetic_results`.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd

from ticketlab.pruning.criteria import CRITERIA

ROUNDS = range(11)  # 100% .. 10.7% remaining: levels near 41% and 17% exist, none near 7%
# Offsets from random in accuracy per round (x 0.1 percentage point): the good members of a pair
# above random, the bad ones below.
OFFSETS = {
    "large_final": 3.0, "small_final": -6.0, "large_init": 1.5, "small_init": -2.0, "magnitude_increase": 2.5,
    "movement": 1.0, "random": 0.0, "large_final_same_sign": 3.5, "large_final_diff_sign": -8.0,
    "magnitude_increase_same_sign": 2.0, "magnitude_increase_diff_sign": -4.0, "large_init_large_final": 2.8,
    "small_init_small_final": -7.0,
}
MASK1 = ("rewind", "reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant",
         "reinit_rescaled", "signed_constant_rescaled")
MASK0 = ("zero", "freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all", "freeze_init_zero_random")
DATASET = {"fc": "mnist", "conv2": "cifar10"}
BASES = {  # masking-is-training / supermask-vs-training bases: (iterations, test accuracy, mask quality)
    "masking-is-training": {"val_accuracy_0.25": (30, 0.30, 0.4), "val_accuracy_0.5": (60, 0.55, 0.6),
                            "val_accuracy_0.75": (150, 0.78, 0.8), "converged": (5000, 0.975, 1.0)},
    "supermask-vs-training": {"iterations_10": (10, 0.2, 0.3), "iterations_100": (100, 0.85, 0.7),
                              "iterations_1000": (1000, 0.95, 0.9), "converged": (5000, 0.975, 1.0)},
}


def remaining(r: int) -> float:
    return round(100 * 0.8**r, 2)


def iterative_accuracy(offset: float, r: int, seed: int, index: int) -> float:
    """Dense 97.0% + 0.1 pp per seed at round 0 (the same dense run for every curve), then a slope."""
    if r == 0:
        return 0.970 + 0.001 * seed
    # A seed effect that differs per curve, so paired differences have a spread.
    return 0.970 + 0.001 * seed - 0.004 * r + 0.001 * offset * r + 0.0004 * ((seed * (index + 1)) % 3)


def _iterative_rows(experiment: str, net: str, seeds, curves) -> list[dict]:
    rows = []
    for index, (criterion, mask1, mask0, offset) in enumerate(curves):
        for seed in seeds:
            for r in ROUNDS:
                acc = iterative_accuracy(offset, r, seed, index)
                rows.append({
                    "experiment": experiment, "net": net, "dataset": DATASET[net], "seed": seed, "criterion": criterion,
                    "mask1": mask1, "mask0": mask0, "round": r, "remaining_weights": int(2662 * 0.8**r),
                    "remaining_percent": remaining(r), "early_stop_iteration": 1000 + 10 * r,
                    "test_accuracy_at_early_stop": acc, "val_loss_at_early_stop": 0.1,
                    "final_test_accuracy": acc - 0.001,
                })
    return rows


def supermask_accuracy(criterion: str, r: int, seed: int, quality: float, start: str, dwr: bool) -> float:
    """9.4% unpruned; good masks peak near round 6, bad ones stay near chance."""
    if r == 0:
        return 0.094 + 0.001 * seed
    gain = max(0.0, 0.05 + OFFSETS[criterion] / 10) * quality
    gain += 0.1 * (start == "signed_constant") + 0.05 * dwr
    shape = 1 - abs(r - 6) / 8
    return 0.094 + gain * shape + 0.002 * seed * (CRITERIA.index(criterion) % 2)


def _supermask_rows(experiment: str, net: str, seeds, bases: dict, combos) -> list[dict]:
    rows = []
    for base, (iterations, base_acc, quality) in bases.items():
        for start, dwr in combos:
            for criterion in CRITERIA:
                for seed in seeds:
                    for r in ROUNDS:
                        rows.append({
                            "experiment": experiment, "net": net, "dataset": DATASET[net], "seed": seed,
                            "criterion": criterion, "round": r, "remaining_weights": int(2662 * 0.8**r),
                            "remaining_percent": remaining(r),
                            "test_accuracy_at_init": supermask_accuracy(criterion, r, seed, quality, start, dwr),
                            "base": base, "base_iterations": iterations + seed,
                            "base_test_accuracy": base_acc + 0.001 * seed,
                            "start": start, "dwr": dwr,
                        })
    return rows


ALL_COMBOS = (("init", False), ("init", True), ("signed_constant", False), ("signed_constant", True))


def synthetic_results(seeds=(0, 1, 2), nets=("fc",), experiments=None) -> pd.DataFrame:
    """Every experiment (or those named) for each net, with accuracies from the formulas above."""
    rows: list[dict] = []
    for net in nets:
        rows += _iterative_rows("criteria", net, seeds, [(c, "rewind", "zero", o) for c, o in OFFSETS.items()])
        for name, crits in (("large-final-signs", ("large_final", "large_final_same_sign", "large_final_diff_sign")),
                            ("magnitude-increase-signs", ("magnitude_increase", "magnitude_increase_same_sign",
                                                          "magnitude_increase_diff_sign"))):
            rows += _iterative_rows(name, net, seeds, [(c, "rewind", "zero", OFFSETS[c]) for c in crits])
        rows += _iterative_rows("mask1-actions", net, seeds,
                                [("large_final", a, "zero", 3.0 - 1.5 * i) for i, a in enumerate(MASK1)])
        rows += _iterative_rows("mask0-actions", net, seeds,
                                [("large_final", "rewind", a, 3.0 - 2.0 * i) for i, a in enumerate(MASK0)])
        rows += _supermask_rows("supermask-at-init", net, seeds, {"converged": (5000, 0.975, 1.0)}, ALL_COMBOS)
        rows += _supermask_rows("masking-is-training", net, seeds, BASES["masking-is-training"], (("init", False),))
        rows += _supermask_rows("supermask-vs-training", net, seeds, BASES["supermask-vs-training"],
                                (("init", False), ("signed_constant", True)))
    table = pd.DataFrame.from_records(rows)
    return table if experiments is None else table[table["experiment"].isin(experiments)].reset_index(drop=True)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails unless the file is a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def toy_iterative(name: str = "my-exp", seeds=(0, 1, 2), net: str = "fc") -> pd.DataFrame:
    """A user's own iterative experiment: large_final, small_final and random, rewind and zero."""
    curves = [(c, "rewind", "zero", OFFSETS[c]) for c in ("large_final", "small_final", "random")]
    return pd.DataFrame.from_records(_iterative_rows(name, net, seeds, curves))


def toy_supermask(name: str = "my-sm", seeds=(0, 1),
                  combos=(("init", False), ("signed_constant", True))) -> pd.DataFrame:
    """A user's own supermask experiment on the converged base, without any iterative column."""
    rows = pd.DataFrame.from_records(_supermask_rows(name, "fc", seeds, {"converged": (5000, 0.975, 1.0)}, combos))
    return rows[rows["criterion"].isin(["large_final", "large_final_same_sign", "random"])].reset_index(drop=True)


def beyond_results(seeds=(0, 1)) -> pd.DataFrame:
    """The presets beyond the paper: late rewinding (a curve per rewind iteration) and global vs
    per-layer pruning (with each layer's density, the global rounds taking more of fc1)."""
    rows = []
    for k_index, k in enumerate((0, 100, 500, 2000)):
        for row in _iterative_rows("late-rewinding", "fc", seeds, [(c, "rewind", "zero", OFFSETS[c] + k_index)
                                                                   for c in ("large_final", "random")]):
            rows.append({**row, "rewind_iteration": k})
    for s_index, scope in enumerate(("layer", "global")):
        for row in _iterative_rows("global-vs-layer", "fc", seeds, [(c, "rewind", "zero", OFFSETS[c] - s_index)
                                                                    for c in ("large_final", "random")]):
            r = row["round"]
            fc1 = 0.8**r * (0.9**r if scope == "global" else 1.0)
            rows.append({**row, "scope": scope, "density_fc1": fc1, "density_fc2": 0.8**r, "density_fc3": 0.9**r})
    return pd.DataFrame.from_records(rows)


STABILITY_ROUNDS = {3: 51.28, 8: 16.88, 12: 6.96, 16: 2.88}  # pruning rounds of stability-tickets, % remaining (FC)


def stability_errors(barrier: float, seed: int, copy_gap: float = 0.001) -> list[float]:
    """31 test errors (fractions) along a path: ends near 2%, a bump of `barrier` in the middle."""
    ends = (0.02 + 0.0005 * seed, 0.02 + 0.0005 * seed + copy_gap)
    return [round((1 - i / 30) * ends[0] + i / 30 * ends[1] + barrier * 4 * (i / 30) * (1 - i / 30), 6)
            for i in range(31)]


def stability_results(seeds=(0, 1, 2), ks=(0, 500, 2000), experiment: str = "stability-tickets",
                      random_gap: float = 0.01) -> pd.DataFrame:
    """A stability sweep: the dense start and, per ticket round, large_final tickets and random masks;
    barriers that fall with k, random's `random_gap` above the ticket's (plus a seed effect)."""
    rows = []
    starts = [("dense", 0, 100.0)] + [(m, r, pct) for r, pct in STABILITY_ROUNDS.items() for m in ("large_final", "random")]
    if experiment == "stability-dense":
        starts = starts[:1]
    for seed in seeds:
        for k_index, k in enumerate(ks):
            for mask, r, pct in starts:
                barrier = max(0.0, 0.03 / (1 + k_index) + (random_gap + 0.001 * seed if mask == "random" else 0.0)
                              + 0.002 * (r / 4))
                errors = stability_errors(barrier, seed)
                rows.append({
                    "experiment": experiment, "net": "fc", "dataset": "mnist", "seed": seed, "mask": mask, "round": r,
                    "remaining_weights": int(2662 * pct), "remaining_percent": pct, "rewind_iteration": k,
                    "instability": max(errors) - (errors[0] + errors[-1]) / 2, "error_at_0": errors[0],
                    "error_at_1": errors[-1], "max_error": max(errors),
                    "max_error_alpha": errors.index(max(errors)) / 30, "error_path": json.dumps(errors),
                })
    return pd.DataFrame.from_records(rows)
