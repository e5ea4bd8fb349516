"""The papers' qualitative claims, checked on a results table with seed-level statistics.

Every claim compares two arms (e.g. large_final vs random) by paired differences: for each seed,
the arms' accuracies at the same levels are subtracted and averaged over the levels the claim
names, giving one difference per seed. A 95% t confidence interval over the seeds decides:
the claim holds when the interval lies entirely on the claimed side (every difference is oriented
so that the claimed side is > 0), does not hold otherwise, and is undecided (`holds=None`) with
fewer than 2 seeds. Differences are in percentage points of test accuracy (of test error, for the
stability claim: random's barrier minus the ticket's, so that "more stable" is > 0).

scipy is deliberately not a dependency: the t quantile comes from a table (df 1..30) and a
Cornish-Fisher expansion beyond it (error < 1e-3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..pruning.criteria import straddle_pairs
from .stats import STABILITY, Experiment, best_over_levels, experiment_rows, experiments, net_groups, \
    paired_stability, preset_rows, stability_rows
from .style import net_label, sort_key

# Two-sided 95%: the 0.975 quantile of Student's t.
_T975: dict[int, float] = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
    26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
}
_Z975 = 1.959963984540054

MODERATE_DENSITY_PERCENT = 50.0  # claims on iterative runs average the levels at or below this


@dataclass(frozen=True)
class Claim:
    """One claim and its verdict; mean_diff/ci_* in percentage points, n = seeds paired."""

    name: str
    statement: str
    holds: bool | None
    evidence: str
    mean_diff: float
    ci_low: float
    ci_high: float
    n: int


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError("t quantile needs df >= 1")
    if df in _T975:
        return _T975[df]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def paired_ci(diffs: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, ci_low, ci_high, n) of paired differences, a 95% t interval; NaN bounds when n < 2."""
    d = np.asarray([x for x in diffs if not math.isnan(x)], dtype=float)
    n = int(d.size)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(d.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = t_quantile_975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _verdict(name: str, statement: str, diffs: pd.Series, context: str) -> Claim:
    mean, lo, hi, n = paired_ci(list(diffs))
    if n == 0:
        return Claim(name, statement, None, f"no paired data; {context}", mean, lo, hi, n)
    if n < 2:
        evidence = f"mean paired difference {mean:+.2f} pp; n=1: no interval; {context}"
        return Claim(name, statement, None, evidence, mean, lo, hi, n)
    evidence = f"mean paired difference {mean:+.2f} pp, 95% CI [{lo:+.2f}, {hi:+.2f}], n={n} seeds; {context}"
    return Claim(name, statement, bool(lo > 0), evidence, mean, lo, hi, n)


# ---------------------------------------------------------------------------------------------
# Paired differences


def _per_level(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """(seed, round) -> mean value and % remaining of one arm."""
    return rows.groupby(["seed", "round"]).agg(v=(value, "mean"), x=("remaining_percent", "mean"))


def moderate_rounds(x: pd.Series) -> tuple[list[int], str]:
    """Rounds (>0) at <= 50% remaining; else the sparsest pruned round. With a note saying which."""
    by_round = x.groupby(level="round").mean()
    pruned = by_round[by_round.index > 0]
    if pruned.empty:
        return [], "no pruned levels"
    chosen = pruned[pruned <= MODERATE_DENSITY_PERCENT]
    if chosen.empty:
        r = int(pruned.idxmin())
        return [r], f"no level <= 50% remaining: used the sparsest, {pruned[r]:.2f}%"
    note = f"averaged over {len(chosen)} levels, {chosen.max():.2f}%..{chosen.min():.2f}% remaining"
    return [int(r) for r in chosen.index], note


def all_pruned_rounds(x: pd.Series) -> tuple[list[int], str]:
    """Every pruned round (>0)."""
    by_round = x.groupby(level="round").mean()
    pruned = by_round[by_round.index > 0]
    if pruned.empty:
        return [], "no pruned levels"
    note = f"averaged over all {len(pruned)} pruned levels, down to {pruned.min():.2f}% remaining"
    return [int(r) for r in pruned.index], note


def paired_level_diffs(a: pd.DataFrame, b: pd.DataFrame, value: str, levels=moderate_rounds) -> tuple[pd.Series, str]:
    """Per seed: mean over the chosen levels of (a - b), in percentage points, with a note.

    Only (seed, level) cells present in both arms count, so a missing run never biases a seed.
    """
    joined = _per_level(a, value).add_suffix("_a").join(_per_level(b, value).add_suffix("_b"), how="inner").dropna()
    if joined.empty:
        return pd.Series(dtype=float), "no common seeds and levels"
    rounds, note = levels((joined["x_a"] + joined["x_b"]) / 2)
    sel = joined[joined.index.get_level_values("round").isin(rounds)]
    diffs = ((sel["v_a"] - sel["v_b"]) * 100.0).groupby(level="seed").mean()
    return diffs, note


def paired_best_diffs(a: pd.DataFrame, b: pd.DataFrame, value: str) -> pd.Series:
    """Per seed: (best over levels of a) - (best over levels of b), in percentage points."""
    best_a = best_over_levels(a, value, []).set_index("seed")["best"]
    best_b = best_over_levels(b, value, []).set_index("seed")["best"]
    both = pd.concat([best_a, best_b], axis=1, join="inner").dropna()
    return (both.iloc[:, 0] - both.iloc[:, 1]) * 100.0


# ---------------------------------------------------------------------------------------------
# The claims


def _crit(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    return rows[rows["criterion"] == name]


def _iterative_source(
    results: pd.DataFrame, found: Mapping[str, Experiment], criteria: Sequence[str]
) -> dict[tuple[str, str], tuple[pd.DataFrame, str]]:
    """Per (net, dataset): rows (and value column) of the first criteria preset holding all `criteria`."""
    sources: dict[tuple[str, str], tuple[pd.DataFrame, str]] = {}
    for name in ("criteria", "large-final-signs", "magnitude-increase-signs"):
        rows = preset_rows(results, found, name)
        if rows.empty:
            continue
        for net, dataset, g in net_groups(rows):
            if (net, dataset) not in sources and set(criteria) <= set(g["criterion"].dropna()):
                sources[(net, dataset)] = g, found[name].curves.value
    return sources


def _straddle_claims(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    """The criteria table says which complementary pairs the study expects to straddle random."""
    claims = []
    for good, bad in straddle_pairs():
        for (net, dataset), (rows, value) in _iterative_source(results, found, (good, bad, "random")).items():
            up, note = paired_level_diffs(_crit(rows, good), _crit(rows, "random"), value)
            down, _ = paired_level_diffs(_crit(rows, "random"), _crit(rows, bad), value)
            sides = [
                _verdict("", "", up, note),
                _verdict("", "", down, note),
            ]
            # The claim is as strong as its weaker side: report that side's numbers.
            weak = min(sides, key=lambda c: (c.ci_low if not math.isnan(c.ci_low) else c.mean_diff))
            if any(c.holds is None for c in sides):
                holds = None
            else:
                holds = all(c.holds for c in sides)
            evidence = f"{good} − random: {sides[0].evidence}. random − {bad}: {sides[1].evidence}"
            claims.append(
                Claim(
                    f"{good}/{bad} straddle random [{net_label(net)}]",
                    f"Iterative pruning ({net_label(net)}): {good} beats random and random beats {bad}.",
                    holds, evidence, weak.mean_diff, weak.ci_low, weak.ci_high, min(c.n for c in sides),
                )
            )
    return claims


def _large_final_beats_random(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    claims = []
    for (net, dataset), (rows, value) in _iterative_source(results, found, ("large_final", "random")).items():
        diffs, note = paired_level_diffs(_crit(rows, "large_final"), _crit(rows, "random"), value, all_pruned_rounds)
        claims.append(
            _verdict(
                f"large_final beats random [{net_label(net)}]",
                f"Iterative pruning ({net_label(net)}): large_final (the lottery ticket) beats random pruning.",
                diffs, note,
            )
        )
    return claims


def _action_claims(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    """Claims of the paper's Fig. 3 and 4 on the start and held values."""
    specs = (
        ("mask1-actions", "mask1", "rewind", "reinit", "rewinding to the original init beats random reinit"),
        ("mask1-actions", "mask1", "signed_reinit", "reinit", "keeping the init's signs improves a random reinit"),
        ("mask1-actions", "mask1", "signed_constant", "constant", "keeping the init's signs improves a constant start"),
        ("mask0-actions", "mask0", "zero", "freeze_init", "setting pruned weights to zero beats freezing them at init"),
        (
            "mask0-actions", "mask0", "freeze_init_zero_mask", "freeze_init_zero_random",
            "zeroing the pruned weights that moved toward zero (Variant 1) beats zeroing as many at random",
        ),
    )
    claims = []
    for experiment, column, a, b, statement in specs:
        rows = preset_rows(results, found, experiment)
        if rows.empty:
            continue
        for net, dataset, g in net_groups(rows):
            if not {a, b} <= set(g[column].dropna()):
                continue
            diffs, note = paired_level_diffs(g[g[column] == a], g[g[column] == b], found[experiment].curves.value)
            claims.append(
                _verdict(
                    f"{a} beats {b} [{net_label(net)}]", f"{experiment} ({net_label(net)}): {statement}.", diffs, note
                )
            )
    return claims


def _same_sign_at_init(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    rows = preset_rows(results, found, "supermask-at-init")
    if rows.empty:
        return []
    value = found["supermask-at-init"].curves.value
    rows = rows[(rows["start"] == "init") & (~rows["dwr"])]
    if (rows["base"] == "converged").any():
        rows = rows[rows["base"] == "converged"]
    claims = []
    for net, dataset, g in net_groups(rows):
        if not {"large_final", "large_final_same_sign"} <= set(g["criterion"].dropna()):
            continue
        diffs = paired_best_diffs(_crit(g, "large_final_same_sign"), _crit(g, "large_final"), value)
        claims.append(
            _verdict(
                f"large_final_same_sign beats large_final at init [{net_label(net)}]",
                f"Supermask at init ({net_label(net)}, original init, no DWR): the large_final_same_sign mask "
                "beats the large_final mask.",
                diffs, "best level per seed, paired by seed",
            )
        )
    return claims


def _base_training_claims(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    for experiment in ("masking-is-training", "supermask-vs-training"):
        rows = preset_rows(results, found, experiment)
        if not rows.empty and rows["base"].nunique() >= 2:
            break
    else:
        return []
    claims = []
    for net, dataset, g in net_groups(rows):
        crit = "large_final_same_sign" if (g["criterion"] == "large_final_same_sign").any() else "large_final"
        g = _crit(g, crit)
        plain = g[(g["start"] == "init") & (~g["dwr"])]
        g = plain if not plain.empty else g
        iterations = g.groupby("base")["base_iterations"].mean() if "base_iterations" in g else pd.Series(dtype=float)
        def trained(b: str) -> tuple:
            its = iterations.get(b, math.nan)
            return (math.inf if pd.isna(its) else float(its), sort_key("base", b))

        bases = sorted(g["base"].dropna().unique(), key=trained)
        if len(bases) < 2:
            continue
        best = "converged" if "converged" in bases else bases[-1]
        least = [b for b in bases if b != best][0]
        diffs = paired_best_diffs(g[g["base"] == best], g[g["base"] == least], found[experiment].curves.value)
        claims.append(
            _verdict(
                f"better-trained bases give better supermasks [{net_label(net)}]",
                f"{experiment} ({net_label(net)}): the {crit} supermask from the {best} base beats the one from "
                f"the least-trained base ({least}).",
                diffs, "best level per seed, paired by seed",
            )
        )
    return claims


def _tickets_are_stable(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[Claim]:
    """Stability (protocol §17): paired by seed, density and k, random masks' instability minus
    large_final tickets', averaged over the (density, k) cells of each seed. Read from every preset of
    the stability kind holding both (stability-tickets)."""
    claims = []
    for experiment in found.values():
        if not (experiment.preset and experiment.kind == STABILITY):
            continue
        rows = experiment_rows(results, experiment)
        if rows.empty or "mask" not in rows or not {"large_final", "random"} <= set(rows["mask"].dropna().astype(str)):
            continue
        for net, dataset, g in net_groups(stability_rows(rows)):
            cells = paired_stability(g, "random", "large_final")
            if cells.empty:
                continue
            diffs = cells.groupby("seed")["diff"].mean()
            per_density = cells.groupby("round").agg(x=("remaining_percent", "mean"), d=("diff", "mean"))
            detail = ", ".join(f"{r.x:.3g}%: {r.d:+.2f}" for r in per_density.sort_values("x", ascending=False)
                               .itertuples())
            ks = ", ".join(f"{int(k):,}" for k in sorted(cells["rewind_iteration"].unique()))
            note = (f"random − large_final instability, averaged per seed over {len(per_density)} densities x k = {ks} "
                    f"(mean by density: {detail})")
            claims.append(_verdict(
                f"large_final tickets are more stable than random masks [{net_label(net)}]",
                f"{experiment.name} ({net_label(net)}): large_final tickets are more stable to SGD noise (a lower "
                "test-error barrier between two copies trained with different data orders) than random masks of the "
                "same per-layer density, from the same iteration k.",
                diffs, note))
    return claims


def check_claims(results: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> list[Claim]:
    """Every claim whose data are in `results` (experiments absent are simply not checked).

    The claims are the papers', so they read the presets only (by name, under their own kind);
    `kinds` is as for `stats.experiments`.
    """
    if results.empty or "experiment" not in results:
        return []
    found = experiments(results, kinds)
    return (
        _straddle_claims(results, found)
        + _large_final_beats_random(results, found)
        + _action_claims(results, found)
        + _same_sign_at_init(results, found)
        + _base_training_claims(results, found)
        + _tickets_are_stable(results, found)
    )


__all__ = ["Claim", "check_claims", "paired_ci", "t_quantile_975"]
