"""Row selection, seed statistics and the summary tables of a results table (no matplotlib).

Accuracies in the table are fractions; every statistic here is in %. The figures, the report and the
claims all read their numbers through these helpers, so a number in the report is the number in the figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .style import PRESET_CURVE_COLUMN, PRESET_ORDER, START_DWR_ORDER, net_label, sort_key

if TYPE_CHECKING:
    from ..experiments.kinds import Curves

STABILITY = "stability"  # the kind whose rows are error barriers per (mask, round, rewind iteration), not accuracy curves
SUPERMASK_INFERRED = "supermask"  # the kind of rows with a `start`, when neither `kinds` nor a preset names it
ITERATIVE_INFERRED = "iterative"


@dataclass(frozen=True)
class Experiment:
    """One experiment of a results table as the analysis sees it.

    `curves` (from its kind) says what is drawn and tabled; `preset` is True when the experiment is
    the preset of that name and kind, so the preset's own figures and the papers' claims apply to it;
    `main` is the column that names its curves (the preset's, else the first key that varies).
    """

    name: str
    kind: str
    curves: "Curves"
    preset: bool
    main: str | None = None


def _inferred_kind(rows: pd.DataFrame) -> str:
    # Supermask rows carry their start weights; iterative rows leave the column empty.
    return SUPERMASK_INFERRED if "start" in rows and rows["start"].notna().any() else ITERATIVE_INFERRED


def experiments(results: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> dict[str, Experiment]:
    """Every experiment in `results`, the presets first in the papers' order, then the others by name.

    An experiment's kind is `kinds[name]`, else the preset's of that name, else inferred from its rows
    (a non-null `start` column: supermask; else iterative).
    """
    if "experiment" not in results.columns or results.empty:
        return {}
    # The kinds and the presets load the training layer (and torch): imported only when a table is read.
    from ..experiments.kinds import get_kind
    from ..experiments.spec import preset_kinds

    kinds = dict(kinds or {})
    names = [str(n) for n in results["experiment"].dropna().unique()]
    presets = preset_kinds()
    order = {name: i for i, name in enumerate(PRESET_ORDER)}
    found: dict[str, Experiment] = {}
    for name in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
        kind = kinds.get(name) or presets.get(name) or _inferred_kind(results[results["experiment"] == name])
        preset = presets.get(name) == kind
        main = PRESET_CURVE_COLUMN.get(name) if preset else None
        found[name] = Experiment(name, kind, get_kind(kind).curves, preset, main)
    return found


def _to_bool(v: Any) -> bool:
    # CSV round trips turn booleans into strings, and NaN must not read as True.
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def _start(column: pd.Series) -> pd.Series:
    return column.map(lambda v: "init" if pd.isna(v) else str(v))


# How a panel column is read, and its value where a table (e.g. one written before the column
# existed) lacks it: rows without start weights started from the init, bases are converged.
_PANEL_COLUMNS: dict[str, tuple[Callable[[pd.Series], pd.Series], Any]] = {
    "start": (_start, "init"),
    "dwr": (lambda column: column.map(_to_bool), False),
    "base": (lambda column: column, "converged"),
}


def experiment_rows(results: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """The rows of one experiment, `round`/`seed` as ints and its kind's panel columns normalised."""
    if "experiment" not in results.columns:
        return results.iloc[0:0]
    rows = results[results["experiment"] == experiment.name].copy()
    if rows.empty:
        return rows
    for column in ("round", "seed"):  # a learner's rows have no round: nullable integers then
        values = pd.to_numeric(rows[column], errors="coerce")
        rows[column] = values.astype(int) if values.notna().all() else values.astype("Int64")
    for column in experiment.curves.panels:
        read, missing = _PANEL_COLUMNS.get(column, (lambda c: c, None))
        rows[column] = read(rows[column]) if column in rows else missing
    return rows


def drawn_rows(results: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """`experiment_rows` with a value to draw (the kind's `curves.value` not null) and the column of its
    main curve key (rows another writer left under a kind's name lack it)."""
    rows = experiment_rows(results, experiment)
    value = experiment.curves.value
    if rows.empty or value not in rows or experiment.curves.keys[0] not in rows:
        return rows.iloc[0:0]
    return rows.dropna(subset=[value])


def curve_keys(rows: pd.DataFrame, experiment: Experiment) -> list[str]:
    """Columns that together identify one curve (one line of a table) within a (net, dataset).

    The kind's panel columns, then those of its curve keys that vary, the main one (which names and
    styles the curve) last.
    """
    curves = experiment.curves
    varying = [k for k in curves.keys if k in rows and rows[k].nunique() > 1]
    main = experiment.main or (varying[0] if varying else curves.keys[0])
    return [*curves.panels, *(k for k in varying if k != main), main]


def ordered_groups(rows: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """groupby(keys) in canonical order (criteria as in protocol §5, ...), NaN keys kept."""
    if not keys:
        yield (), rows
        return
    groups = [((k if isinstance(k, tuple) else (k,)), g) for k, g in rows.groupby(list(keys), dropna=False, sort=False)]
    groups.sort(key=lambda kg: tuple(sort_key(c, v) for c, v in zip(keys, kg[0])))
    yield from groups


def net_groups(rows: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(net, dataset, rows) in the order FC, Conv2, Conv4, Conv6."""
    for (net, dataset), g in ordered_groups(rows, ["net", "dataset"]):
        yield str(net), str(dataset), g


def seed_stats(rows: pd.DataFrame, value: str, by: Sequence[str] = ("round",)) -> pd.DataFrame:
    """Per level (`by`): mean/std/min/max over seeds of `value`, in %, and the mean % remaining.

    Duplicate rows of one seed at one level are averaged first, so every seed counts once.
    """
    by = list(by)
    per_seed = rows.groupby(by + ["seed"], dropna=False, sort=False)[[value, "remaining_percent"]].mean()
    level = per_seed.groupby(level=by, dropna=False, sort=False)
    v = level[value]
    stats = pd.DataFrame(
        {
            "remaining_percent": level["remaining_percent"].mean(),
            "mean": v.mean(),
            "std": v.std(),
            "min": v.min(),
            "max": v.max(),
            "n": v.count(),
        }
    ).reset_index()
    for c in ("mean", "std", "min", "max"):
        stats[c] = stats[c] * 100.0
    return stats.sort_values("remaining_percent", ascending=False).reset_index(drop=True)


def coinciding_curves(rows: pd.DataFrame, experiment: Experiment) -> list[tuple[str, str, str, list[tuple]]]:
    """Pairs of curves of one panel whose values are equal at every pruned level and seed: (main
    column, curve a, curve b, the panels (values of the kind's panel columns) where they coincide).
    A reader would otherwise take one of them for missing or a plotting bug."""
    value, panels = experiment.curves.value, list(experiment.curves.panels)
    if rows.empty or value not in rows:
        return []
    main = curve_keys(rows, experiment)[-1]
    pruned = rows[rows["round"] > 0]
    found: dict[tuple[str, str], list[tuple]] = {}
    for panel, g in (pruned.groupby(panels, dropna=False, sort=False) if panels else [((), pruned)]):
        series = {name: c.set_index(["seed", "round"])[value].sort_index() for name, c in g.groupby(main, sort=False)}
        names = list(series)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                sa, sb = series[a], series[b]
                if len(sa) and sa.index.equals(sb.index) and (sa.to_numpy() == sb.to_numpy()).all():
                    found.setdefault((a, b), []).append(panel if isinstance(panel, tuple) else (panel,))
    return [(main, a, b, where) for (a, b), where in found.items()]


def dwr_effect(rows: pd.DataFrame, value: str) -> float | None:
    """The largest |difference| (in the value's units) between a supermask row with DWR and the same row
    without (same seed, level, criterion, base and start); None when no row has both."""
    if rows.empty or "dwr" not in rows or rows["dwr"].nunique() < 2:
        return None
    keys = [k for k in ("seed", "round", "criterion", "base", "start") if k in rows]
    on = rows[rows["dwr"]].set_index(keys)[value]
    off = rows[~rows["dwr"]].set_index(keys)[value]
    both = on.index.intersection(off.index)
    if not len(both):
        return None
    return float((on.loc[both] - off.loc[both]).abs().max())


def dense_baseline(rows: pd.DataFrame, value: str) -> float | None:
    """Mean over seeds (each seed's round-0 rows averaged first) of `value`, in %; None if absent."""
    dense = rows[rows["round"] == 0]
    if dense.empty or value not in dense or dense[value].isna().all():
        return None
    return float(dense.groupby("seed")[value].mean().mean() * 100.0)


def nearest_level(stats: pd.DataFrame, target: float, tolerance: float = 1.5) -> pd.Series | None:
    """The row of `stats` whose % remaining is nearest `target` (in ratio), if within `tolerance`×."""
    x = stats["remaining_percent"].to_numpy(dtype=float)
    ok = x > 0
    if not ok.any():
        return None
    ratio = np.where(ok, np.maximum(x / target, target / np.where(ok, x, 1.0)), np.inf)
    i = int(np.argmin(ratio))
    return stats.iloc[i] if ratio[i] <= tolerance else None


def supermask_combos(rows: pd.DataFrame) -> list[tuple[str, bool]]:
    """The (start, dwr) combinations present, in the order init, init+DWR, signed constant, +DWR."""
    present = {(str(s), bool(d)) for s, d in rows[["start", "dwr"]].drop_duplicates().itertuples(index=False)}
    known = [c for c in START_DWR_ORDER if c in present]
    return known + sorted(present - set(known))


DEFAULT_PAIR = ("fc", "mnist")  # the papers' main network and data: figures of it carry no tag


def net_tag(net: str, dataset: str) -> str:
    """A figure's file-name tag for (net, dataset), fixed whatever else the store holds (so that a
    figure keeps its name when another net or data set joins): none for FC on MNIST, the net on its
    own data set (conv2: CIFAR-10), else net-dataset."""
    from ..nets.specs import NETS

    if (net, dataset) == DEFAULT_PAIR:
        return ""
    return net if net in NETS and NETS[net].dataset == dataset else f"{net}-{dataset}"


def net_tags(results: pd.DataFrame) -> dict[tuple[str, str], str]:
    """File-name tag per (net, dataset) in `results` (`net_tag`)."""
    pairs = results[["net", "dataset"]].dropna().drop_duplicates()
    return {(str(n), str(d)): net_tag(str(n), str(d)) for n, d in pairs.itertuples(index=False)}


def converged_only(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows on the converged base, if any (else all rows)."""
    # Supermask-at-init is defined on the converged base; other bases belong to the ablations.
    return rows[rows["base"] == "converged"] if (rows["base"] == "converged").any() else rows


def base_accuracy(rows: pd.DataFrame) -> float | None:
    """Mean over seeds of the base net's own test accuracy, in %; None if absent."""
    if "base_test_accuracy" not in rows or rows["base_test_accuracy"].isna().all():
        return None
    return float(rows.groupby("seed")["base_test_accuracy"].mean().mean() * 100.0)


def best_over_levels(rows: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """Per (`by`, seed): the best `value` over levels (rounds), with mean base iterations/accuracy."""
    agg: dict[str, tuple[str, str]] = {"best": (value, "max")}
    for c in ("base_iterations", "base_test_accuracy"):
        if c in rows:
            agg[c] = (c, "mean")
    return rows.groupby(list(by) + ["seed"], dropna=False).agg(**agg).reset_index()


def over_seeds(per_seed: pd.DataFrame, column: str) -> pd.DataFrame:
    """mean/std/min/max over seeds per base (in %), x = mean base iterations, sorted by x."""
    s = (
        per_seed.groupby("base")
        .agg(
            x=("base_iterations", "mean"),
            mean=(column, "mean"),
            std=(column, "std"),
            min=(column, "min"),
            max=(column, "max"),
            n=(column, "count"),
        )
        .reset_index()
    )
    for c in ("mean", "std", "min", "max"):
        s[c] = s[c] * 100.0
    return s.dropna(subset=["x"]).sort_values("x").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Summary tables


LEVELS: tuple[float, ...] = (41.0, 17.0, 7.0, 3.0, 1.2)  # % remaining columns of the summary tables
LEVEL_TOLERANCE = 1.5  # a level counts as "at L%" within this factor of L


def _level_entry(stats: pd.DataFrame, target: float) -> dict[str, float]:
    row = nearest_level(stats, target, LEVEL_TOLERANCE)
    tag = f"at_{target:g}"
    if row is None:
        return {f"{tag}_mean": math.nan, f"{tag}_std": math.nan, f"{tag}_remaining": math.nan}
    return {f"{tag}_mean": row["mean"], f"{tag}_std": row["std"], f"{tag}_remaining": row["remaining_percent"]}


def _curve_summary(stats: pd.DataFrame) -> dict[str, float]:
    """Best seed-mean accuracy over levels (and where), and the accuracy at the fixed levels."""
    # Round 0 is the same dense run for every curve: "best" means the best pruned level, and a curve
    # with none yet (an unfinished chain) has no best.
    pruned = stats[stats["round"] > 0].dropna(subset=["mean"])
    best = pruned.loc[pruned["mean"].idxmax()] if not pruned.empty else None
    out = {
        "n_seeds": int(stats["n"].max()),
        "best_mean": math.nan if best is None else best["mean"],
        "best_std": math.nan if best is None else best["std"],
        "best_remaining": math.nan if best is None else best["remaining_percent"],
    }
    for level in LEVELS:
        out.update(_level_entry(stats, level))
    return out


def summary_tables(results: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Per experiment: one row per (net, dataset, curve) with best accuracy and fixed-level accuracies.

    Every experiment counts, a user's own included, its curves as its kind says (`experiments`).
    Accuracies in %, mean/std over seeds; `best_remaining` and `at_L_remaining` say at which %
    remaining (the level nearest L within a factor 1.5; NaN if none). The seed mean is taken per
    level first, so "best" is the best pruned level (round > 0) of the mean curve.
    """
    tables: dict[str, pd.DataFrame] = {}
    for experiment in experiments(results, kinds).values():
        if experiment.kind == STABILITY:  # its table is `stability_table`'s: no "best" level of a barrier
            continue
        rows = drawn_rows(results, experiment)
        value = experiment.curves.value
        keys = curve_keys(rows, experiment)
        records = []
        for net, dataset, g in net_groups(rows):
            # One groupby for all curves: per-curve calls are slow with hundreds of curves.
            stats = seed_stats(g, value, by=[*keys, "round"])
            for key, curve in ordered_groups(stats, keys):
                records.append({"net": net, "dataset": dataset, **dict(zip(keys, key)), **_curve_summary(curve)})
        if records:
            tables[experiment.name] = pd.DataFrame.from_records(records)
    return tables


def _seed_values(rows: pd.DataFrame, value: str) -> pd.Series:
    """One value per seed (its rows averaged), in %."""
    return rows.groupby("seed")[value].mean().dropna() * 100.0


def _presets_of_kind(results: pd.DataFrame, found: Mapping[str, Experiment], kind: str) -> pd.DataFrame:
    """The rows of every preset of `kind` (the published numbers are the papers' protocols)."""
    parts = [experiment_rows(results, e) for e in found.values() if e.preset and e.kind == kind]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts) if parts else pd.DataFrame(columns=["net", "round", "seed", "start", "dwr", "criterion"])


def _entry(quantity: str, net: str, published: float, note: str, seeds: pd.Series | None, detail: str = "") -> dict:
    """A comparison row from per-seed values (None or empty: not run)."""
    if seeds is None or seeds.empty:
        return {"quantity": quantity, "net": net, "published": published, "published_note": note,
                "ours": math.nan, "difference": math.nan, "n_seeds": 0, "detail": "", "status": "not run"}
    ours = float(seeds.mean())
    spread = f"range {seeds.min():.2f}–{seeds.max():.2f} over {len(seeds)} seeds" if len(seeds) > 1 else "1 seed"
    return {"quantity": quantity, "net": net, "published": published, "published_note": note, "ours": ours,
            "difference": ours - published, "n_seeds": int(len(seeds)),
            "detail": "; ".join(p for p in (detail, spread) if p),
            "status": "ok"}


def _best_curve_point(rows: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.Series | None, str]:
    """Per-seed values at the best (key..., level) of the seed-mean curve, and where it was."""
    if rows.empty:
        return None, ""
    means = rows.groupby(list(keys) + ["round"], dropna=False)["test_accuracy_at_init"].mean()
    if means.dropna().empty:
        return None, ""
    where = means.idxmax()
    where = where if isinstance(where, tuple) else (where,)  # a single key gives a scalar
    sel = rows
    for k, v in zip(list(keys) + ["round"], where):
        sel = sel[sel[k] == v]
    detail = ", ".join(f"{k}={v}" for k, v in zip(keys, where))
    remaining = sel["remaining_percent"].mean()
    where_text = f"best: {detail + ', ' if detail else ''}at {remaining:.2f}% remaining"
    return _seed_values(sel, "test_accuracy_at_init"), where_text


def preset_of(found: Mapping[str, Experiment], name: str) -> Experiment | None:
    """The preset `name` if the table holds it (under its own kind), else None."""
    experiment = found.get(name)
    return experiment if experiment is not None and experiment.preset else None


def preset_rows(results: pd.DataFrame, found: Mapping[str, Experiment], name: str) -> pd.DataFrame:
    """`experiment_rows` of the preset `name`; no rows if the table does not hold it."""
    experiment = preset_of(found, name)
    return experiment_rows(results, experiment) if experiment is not None else results.iloc[0:0]


def _supermask_converged(results: pd.DataFrame, found: Mapping[str, Experiment]) -> pd.DataFrame:
    rows = preset_rows(results, found, "supermask-at-init")
    if not rows.empty and (rows["base"] == "converged").any():
        rows = rows[rows["base"] == "converged"]
    return rows


def published_comparison(results: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Protocol §9's published numbers beside ours (in %); `status` is "not run" where no rows exist.

    Only the presets count (a user's experiment may run another protocol). How ours are computed:
    dense = round-0 rows of the iterative presets (each seed's rows averaged, then the seeds);
    untrained = supermask preset rows at level 0 with start=init; best supermask = the best
    (criterion, DWR, level) of the seed-mean curve, with the per-seed values at that point.
    """
    found = experiments(results, kinds)
    it = _presets_of_kind(results, found, "iterative")
    sm = _presets_of_kind(results, found, "supermask")
    sm_conv = _supermask_converged(results, found)
    value = "test_accuracy_at_early_stop"

    def dense(net: str) -> pd.Series | None:
        rows = it[(it["net"] == net) & (it["round"] == 0)] if not it.empty else it
        return _seed_values(rows, value) if not rows.empty and value in rows else None

    def untrained(net: str) -> pd.Series | None:
        rows = sm[(sm["net"] == net) & (sm["round"] == 0) & (sm["start"] == "init")] if not sm.empty else sm
        return _seed_values(rows, "test_accuracy_at_init") if not rows.empty else None

    out = [
        _entry("Dense FC, MNIST: test accuracy at early stop", "fc", 97.92, "mean of 5 seeds; range 97.82–97.99",
               dense("fc")),
        _entry("Untrained dense FC, MNIST: test accuracy", "fc", 9.4, "about 9.4% (chance)", untrained("fc")),
    ]
    signed = sm_conv[sm_conv["start"] == "signed_constant"] if not sm_conv.empty else sm_conv
    vals, where = _best_curve_point(signed[signed["net"] == "fc"] if not signed.empty else signed, ["criterion", "dwr"])
    out.append(_entry("Supermask at init, best mask, signed constant: FC, MNIST", "fc", 86.0, "paper abstract",
                      vals, where))
    conv = signed[signed["net"] != "fc"] if not signed.empty else signed
    vals, where = _best_curve_point(conv, ["net", "criterion", "dwr"])
    out.append(_entry("Supermask at init, best mask, signed constant: conv, CIFAR-10", "conv", 41.0,
                      "paper abstract (best conv net)", vals, where))
    plain = sm_conv[(sm_conv["start"] == "init") & (~sm_conv["dwr"]) & (sm_conv["net"] == "fc")
                    & (sm_conv["criterion"] == "large_final_same_sign")] if not sm_conv.empty else sm_conv
    vals, where = _best_curve_point(plain, [])
    out.append(_entry("large_final_same_sign supermask, original init, no DWR: FC", "fc", 80.0, "paper: above 80%",
                      vals, where))
    out.append(_entry("large_final_same_sign supermask, original init, no DWR: FC", "fc", 76.3,
                      "study: mean of 5 seeds, no DWR", vals, where))
    for net, paper in (("conv2", 69.2), ("conv4", 75.4), ("conv6", 78.3)):
        out.append(_entry(f"Trained dense {net_label(net)}, CIFAR-10: test accuracy at early stop", net, paper,
                          "paper (learned-supermask table)", dense(net)))
    out += _learned_entries(results, found)
    return pd.DataFrame.from_records(out)


LEARNED_PUBLISHED = (("conv2", 66.0), ("conv4", 72.5), ("conv6", 76.5))


def _learned_entries(results: pd.DataFrame, found: Mapping[str, Experiment]) -> list[dict]:
    """Protocol §9's learned supermasks with DWR beside ours: the `learned-supermask` preset's Bernoulli rows
    with DWR, at the start (init or signed constant) of the higher seed mean, mean over 10 sampled masks."""
    rows = preset_rows(results, found, "learned-supermask")
    out = []
    for net, paper in LEARNED_PUBLISHED:
        sel = rows[(rows["net"] == net) & (rows["learner"] == "bernoulli") & (rows["dwr"] == True)] \
            if not rows.empty and "learner" in rows and "expected_density" in rows else rows.iloc[0:0]  # noqa: E712
        vals, detail = None, ""
        if not sel.empty:
            best = sel.groupby("start")["test_accuracy"].mean().idxmax()
            sel = sel[sel["start"] == best]
            vals = _seed_values(sel, "test_accuracy")
            detail = f"start={best}, expected density {100 * sel['expected_density'].astype(float).mean():.1f}%"
        out.append(_entry(f"Learned supermask, DWR: {net_label(net)}, CIFAR-10", net, paper,
                          "paper (learned-supermask table)", vals, detail))
    return out



# ---------------------------------------------------------------------------------------------
# Stability (protocol §17)


STABILITY_KEYS = ("mask", "round", "rewind_iteration")  # one start at one k; its rows: one per seed


def error_path_values(cell: Any) -> np.ndarray:
    """A row's `error_path` (a JSON array of test errors, fractions) as an array (empty if none)."""
    import json

    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return np.array([], dtype=float)
    return np.asarray(json.loads(str(cell)), dtype=float)


def stability_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """A stability experiment's rows with `mask` as text and `round`/`rewind_iteration` as ints."""
    rows = rows.dropna(subset=["instability"]).copy()
    rows["mask"] = rows["mask"].astype(str)
    for column in ("round", "rewind_iteration", "seed"):
        rows[column] = pd.to_numeric(rows[column]).astype(int)
    return rows


def stability_stats(rows: pd.DataFrame, value: str = "instability") -> pd.DataFrame:
    """Per (mask, round, rewind_iteration): mean/std/min/max over seeds of `value`, in % (pp for the
    instability), with the mean % remaining; sorted by mask, density (dense first) and k."""
    stats = seed_stats(rows, value, by=list(STABILITY_KEYS))
    order = sorted(stats.index, key=lambda i: (sort_key("mask", stats.at[i, "mask"]), -stats.at[i, "remaining_percent"],
                                               stats.at[i, "rewind_iteration"]))
    return stats.loc[order].reset_index(drop=True)


def path_stats(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (mask, round, rewind_iteration): the test error along the path, mean, min and max over seeds
    (each seed's rows averaged first) in %, as arrays over alpha (`alpha`: evenly spaced in [0, 1])."""
    records = []
    for key, g in rows.groupby(list(STABILITY_KEYS), sort=False):
        per_seed = [np.mean([error_path_values(c) for c in s["error_path"]], axis=0) for _, s in g.groupby("seed")]
        lengths = {len(p) for p in per_seed}
        if len(lengths) != 1 or 0 in lengths:
            continue
        paths = np.vstack(per_seed) * 100.0
        n = paths.shape[1]
        records.append({**dict(zip(STABILITY_KEYS, key)), "remaining_percent": float(g["remaining_percent"].mean()),
                        "alpha": np.arange(n) / (n - 1), "mean": paths.mean(0), "min": paths.min(0),
                        "max": paths.max(0), "std": paths.std(0, ddof=1) if len(paths) > 1 else np.full(n, np.nan),
                        "n": len(paths)})
    return pd.DataFrame.from_records(records)


def paired_stability(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per (seed, round, rewind_iteration) where both masks ran: instability of `a` minus that of `b`,
    in percentage points (`diff`), with the mean % remaining."""
    keyed = rows.groupby(["mask", "seed", "round", "rewind_iteration"])[["instability", "remaining_percent"]].mean()
    if a not in keyed.index.get_level_values("mask") or b not in keyed.index.get_level_values("mask"):
        return pd.DataFrame(columns=["seed", "round", "rewind_iteration", "remaining_percent", "diff"])
    both = keyed.loc[a].add_suffix("_a").join(keyed.loc[b].add_suffix("_b"), how="inner").dropna()
    out = pd.DataFrame({"remaining_percent": (both["remaining_percent_a"] + both["remaining_percent_b"]) / 2,
                        "diff": (both["instability_a"] - both["instability_b"]) * 100.0})
    return out.reset_index()


def stability_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (net, dataset, mask, round, rewind_iteration) of a stability experiment: seeds, and
    mean and std over seeds of the instability (pp), the two ends' test errors and the path's largest
    (%), in the order of `stability_stats`."""
    records = []
    for net, dataset, g in net_groups(stability_rows(rows)):
        stats = {value: stability_stats(g, value) for value in ("instability", "error_at_0", "error_at_1", "max_error")}
        base = stats["instability"]
        for i, row in base.iterrows():
            record = {"net": net, "dataset": dataset, **{k: row[k] for k in STABILITY_KEYS},
                      "remaining_percent": row["remaining_percent"], "n_seeds": int(row["n"])}
            for value, table in stats.items():
                record[f"{value}_mean"], record[f"{value}_std"] = table.loc[i, "mean"], table.loc[i, "std"]
            records.append(record)
    return pd.DataFrame.from_records(records)
