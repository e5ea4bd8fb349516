"""The figures of SPEC §8, drawn from a results table (a DataFrame, one row per result).

Matplotlib is used only through `matplotlib.figure.Figure`, never pyplot: drawing needs no display
and leaves no global state behind, so figures can be made from worker threads or tests.

Accuracies in the table are fractions; every figure and every number derived here is in %.
"density" = fraction of weights kept, "sparsity" = fraction pruned; the x-axes show density as
"% of weights remaining".

The data helpers here (`seed_stats`, `curve_keys`, `ordered_groups`, ...) are shared with
`ticketlab.report` and `ticketlab.claims`, so a number in the report is the number in the figure.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from ..core.errors import TicketlabError
from ..pruning.criteria import CRITERIA

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ITERATIVE_EXPERIMENTS: tuple[str, ...] = (
    "criteria",
    "large-final-signs",
    "magnitude-increase-signs",
    "mask1-actions",
    "mask0-actions",
)
SUPERMASK_EXPERIMENTS: tuple[str, ...] = ("supermask-at-init", "masking-is-training", "supermask-vs-training")

# SPEC order: legends list the criteria as the paper does.
CRITERIA_ORDER: tuple[str, ...] = CRITERIA
# The complementary pairs drawn as panels (the keep-rule first, its opposite second).
CRITERION_PAIRS: tuple[tuple[str, str], ...] = (
    ("large_final", "small_final"),
    ("large_init", "small_init"),
    ("magnitude_increase", "movement"),
    ("large_final_same_sign", "large_final_diff_sign"),
    ("magnitude_increase_same_sign", "magnitude_increase_diff_sign"),
    ("large_init_large_final", "small_init_small_final"),
)
SIGN_CRITERIA: dict[str, tuple[str, ...]] = {
    "large-final-signs": ("large_final", "large_final_same_sign", "large_final_diff_sign"),
    "magnitude-increase-signs": ("magnitude_increase", "magnitude_increase_same_sign", "magnitude_increase_diff_sign"),
}

# One hue per complementary pair, dark for the first member and light (but still legible on
# white) for the second, so a criterion has the same colour in every figure.
CRITERION_COLORS: dict[str, str] = {
    "large_final": "#1f4e9c",
    "small_final": "#74a9e0",
    "large_init": "#b35900",
    "small_init": "#f5a048",
    "magnitude_increase": "#1b7a3a",
    "movement": "#76c987",
    "random": "#6e6e6e",
    "large_final_same_sign": "#9b1c1c",
    "large_final_diff_sign": "#ee7d7d",
    "magnitude_increase_same_sign": "#5b2c83",
    "magnitude_increase_diff_sign": "#b596d8",
    "large_init_large_final": "#6b4226",
    "small_init_small_final": "#c9a27e",
}
_SECOND_OF_PAIR = {b for _, b in CRITERION_PAIRS}

_RANDOMISED_MASK1 = ("reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant")
MASK1_ORDER: tuple[str, ...] = ("rewind",) + _RANDOMISED_MASK1 + tuple(f"{a}_rescaled" for a in _RANDOMISED_MASK1)
MASK1_LABELS: dict[str, str] = {
    "rewind": "rewind (lottery ticket)",
    "reinit": "random reinit",
    "signed_reinit": "reinit, sign kept",
    "reshuffle": "reshuffle",
    "signed_reshuffle": "reshuffle, sign kept",
    "constant": "constant",
    "signed_constant": "constant, sign kept",
}
MASK1_COLORS: dict[str, str] = {
    "rewind": "#1f77b4",
    "reinit": "#ff7f0e",
    "signed_reinit": "#2ca02c",
    "reshuffle": "#d62728",
    "signed_reshuffle": "#9467bd",
    "constant": "#8c564b",
    "signed_constant": "#e377c2",
}
MASK0_ORDER: tuple[str, ...] = (
    "zero",
    "freeze_init",
    "freeze_init_zero_mask",
    "freeze_init_zero_all",
    "freeze_init_zero_random",
)
MASK0_LABELS: dict[str, str] = {
    "zero": "zero",
    "freeze_init": "freeze init",
    "freeze_init_zero_mask": "Variant 1 (freeze_init_zero_mask)",
    "freeze_init_zero_all": "Variant 2 (freeze_init_zero_all)",
    "freeze_init_zero_random": "random control (freeze_init_zero_random)",
}
MASK0_COLORS: dict[str, str] = {
    "zero": "#1f77b4",
    "freeze_init": "#ff7f0e",
    "freeze_init_zero_mask": "#2ca02c",
    "freeze_init_zero_all": "#d62728",
    "freeze_init_zero_random": "#7f7f7f",
}
START_DWR_ORDER: tuple[tuple[str, bool], ...] = (
    ("init", False),
    ("init", True),
    ("signed_constant", False),
    ("signed_constant", True),
)
NET_ORDER: tuple[str, ...] = ("fc", "conv2", "conv4", "conv6")
CHANCE_PERCENT = 10.0
BANDS = ("minmax", "std")

EXPERIMENT_TITLES: dict[str, str] = {
    "criteria": "Mask criteria (rewind, pruned weights zero)",
    "large-final-signs": "large_final and its sign variants",
    "magnitude-increase-signs": "magnitude_increase and its sign variants",
    "mask1-actions": "Mask-1 actions: start values of kept weights (large_final)",
    "mask0-actions": "Mask-0 actions: values of pruned weights (large_final)",
}
FIGURE_DESCRIPTIONS: dict[str, str] = {
    "criteria": "Test accuracy at early stop vs % of weights remaining, one curve per mask criterion "
    "(rewind, pruned weights zero). Line: mean over seeds; band: spread over seeds.",
    "criteria_pairs": "The criteria figure split into complementary pairs; grey: random.",
    "large-final-signs": "large_final and its sign variants: test accuracy at early stop vs % remaining.",
    "magnitude-increase-signs": "magnitude_increase and its sign variants: test accuracy at early stop vs % remaining.",
    "mask1-actions": "Start values of kept weights (mask-1 actions, SPEC §6): test accuracy at early stop vs "
    "% remaining.",
    "mask0-actions": "Values of pruned weights (mask-0 actions, SPEC §6): test accuracy at early stop vs % remaining.",
    "supermask-at-init": "Supermasks: test accuracy at init (no training) vs % remaining, per criterion; "
    "panels: start weights and dynamic weight rescaling (DWR).",
    "supermask-at-init_pairs": "Supermasks at init split into complementary pairs; grey: random.",
    "masking-is-training": "Masking is training: supermask accuracy at init vs % remaining, with masks from "
    "bases stopped at 25/50/75% validation accuracy or converged.",
    "supermask-vs-training": "Best supermask accuracy at init (over levels) vs the base's training iterations; "
    "black: the base's own test accuracy.",
}


# ---------------------------------------------------------------------------------------------
# Labels, ordering, styles


def net_label(net: str) -> str:
    """'fc' -> 'FC', 'conv2' -> 'Conv2'."""
    return "FC" if net == "fc" else str(net).capitalize()


def dataset_label(dataset: str) -> str:
    """'mnist' -> 'MNIST', 'cifar10' -> 'CIFAR-10'."""
    return {"mnist": "MNIST", "cifar10": "CIFAR-10"}.get(str(dataset), str(dataset))


def mask1_label(name: str) -> str:
    """Paper name of a mask-1 action; the rescaled forms say so."""
    base = name.removesuffix("_rescaled")
    label = MASK1_LABELS.get(base, base)
    return f"{label} (rescaled)" if name.endswith("_rescaled") else label


def mask0_label(name: str) -> str:
    """Paper name of a mask-0 action."""
    return MASK0_LABELS.get(name, name)


def base_label(base: str) -> str:
    """'val_accuracy_0.25' -> 'stopped at 25% val acc', 'iterations_10' -> '10 iterations'."""
    m = re.fullmatch(r"val_accuracy_([0-9.]+)", str(base))
    if m:
        return f"stopped at {float(m.group(1)) * 100:g}% val acc"
    m = re.fullmatch(r"iterations_(\d+)", str(base))
    if m:
        return f"{int(m.group(1))} iterations"
    return str(base)


def start_dwr_label(start: str, dwr: bool) -> str:
    """'init' + DWR -> 'init + DWR'."""
    return f"{str(start).replace('_', ' ')}{' + DWR' if dwr else ''}"


def start_dwr_slug(start: str, dwr: bool) -> str:
    """A file-name form of a (start, dwr) combination: 'signed-constant-dwr'."""
    return f"{str(start).replace('_', '-')}{'-dwr' if dwr else ''}"


def _order_index(order: Sequence[Any], value: Any) -> tuple[int, str]:
    # Unknown values sort after known ones, alphabetically, rather than failing.
    return (order.index(value), "") if value in order else (len(order), str(value))


def sort_key(column: str, value: Any) -> tuple:
    """Canonical order of a column's values (criteria as in SPEC §5, bases by training, ...)."""
    if column == "criterion":
        return _order_index(CRITERIA_ORDER, value)
    if column == "mask1":
        return _order_index(MASK1_ORDER, value)
    if column == "mask0":
        return _order_index(MASK0_ORDER, value)
    if column == "net":
        return _order_index(NET_ORDER, value)
    if column == "start":
        return _order_index(("init", "signed_constant"), value)
    if column == "dwr":
        return (int(bool(value)),)
    if column == "base":
        s = str(value)
        m = re.fullmatch(r"val_accuracy_([0-9.]+)", s)
        if m:
            return (0, float(m.group(1)), s)
        m = re.fullmatch(r"iterations_(\d+)", s)
        if m:
            return (1, float(m.group(1)), s)
        return (2 if s == "converged" else 3, 0.0, s)
    return (str(value),)


def curve_style(column: str, name: str) -> dict[str, Any]:
    """Label, colour, marker and line style of one curve, the same in every figure."""
    if column == "criterion":
        marker = "D" if name == "random" else ("s" if name in _SECOND_OF_PAIR else "o")
        return {"label": name, "color": CRITERION_COLORS.get(name, "#333333"), "marker": marker, "linestyle": "-"}
    if column == "mask1":
        rescaled = name.endswith("_rescaled")
        base = name.removesuffix("_rescaled")
        return {
            "label": mask1_label(name),
            "color": MASK1_COLORS.get(base, "#333333"),
            "marker": "^" if rescaled else "o",
            "linestyle": "--" if rescaled else "-",
        }
    if column == "mask0":
        return {"label": mask0_label(name), "color": MASK0_COLORS.get(name, "#333333"), "marker": "o", "linestyle": "-"}
    return {"label": str(name), "color": "#333333", "marker": "o", "linestyle": "-"}


# ---------------------------------------------------------------------------------------------
# Data helpers


def value_column(experiment: str) -> str:
    """The accuracy column an experiment's figures and tables use."""
    return "test_accuracy_at_init" if experiment in SUPERMASK_EXPERIMENTS else "test_accuracy_at_early_stop"


def _to_bool(v: Any) -> bool:
    # CSV round trips turn booleans into strings, and NaN must not read as True.
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def experiment_rows(results: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The rows of one experiment, with `round`/`seed` as ints and supermask columns normalised."""
    if "experiment" not in results.columns:
        return results.iloc[0:0]
    rows = results[results["experiment"] == experiment].copy()
    if rows.empty:
        return rows
    rows["round"] = rows["round"].astype(int)
    rows["seed"] = rows["seed"].astype(int)
    if experiment in SUPERMASK_EXPERIMENTS:
        rows["start"] = rows["start"].map(lambda v: "init" if pd.isna(v) else str(v)) if "start" in rows else "init"
        rows["dwr"] = rows["dwr"].map(_to_bool) if "dwr" in rows else False
        if "base" not in rows:
            rows["base"] = "converged"
    return rows


def main_column(experiment: str) -> str:
    """The column that names an experiment's curves."""
    return {"mask1-actions": "mask1", "mask0-actions": "mask0"}.get(experiment, "criterion")


def curve_keys(rows: pd.DataFrame, experiment: str) -> list[str]:
    """Columns that together identify one curve (one line of a table) within a (net, dataset)."""
    if experiment in SUPERMASK_EXPERIMENTS:
        return ["base", "start", "dwr", "criterion"]
    main = main_column(experiment)
    extra = [c for c in ("criterion", "mask1", "mask0") if c != main and c in rows and rows[c].nunique() > 1]
    return extra + [main]


def ordered_groups(rows: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """groupby(keys) in canonical order (criteria as in SPEC §5, ...), NaN keys kept."""
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


def dense_baseline(rows: pd.DataFrame, value: str = "test_accuracy_at_early_stop") -> float | None:
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


def net_tags(results: pd.DataFrame) -> dict[tuple[str, str], str]:
    """File-name tag per (net, dataset): empty when the table holds a single one."""
    pairs = results[["net", "dataset"]].dropna().drop_duplicates()
    combos = [(str(n), str(d)) for n, d in pairs.itertuples(index=False)]
    if len(combos) <= 1:
        return {c: "" for c in combos}
    nets_unique = pairs["net"].nunique() == len(pairs)
    return {(n, d): (n if nets_unique else f"{n}-{d}") for n, d in combos}


# ---------------------------------------------------------------------------------------------
# Drawing primitives


def _new_figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=150, layout="constrained")


def _band(stats: pd.DataFrame, band: str) -> tuple[np.ndarray, np.ndarray] | None:
    if band == "minmax":
        lo, hi = stats["min"], stats["max"]
    elif band == "std":
        lo, hi = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    else:
        raise ValueError(f"band must be one of {BANDS}, not {band!r}")
    if lo.isna().all() or (stats["n"] < 2).all():
        return None  # one seed: no spread to show
    return lo.to_numpy(dtype=float), hi.to_numpy(dtype=float)


def draw_curve(ax: "Axes", x: np.ndarray, stats: pd.DataFrame, style: dict[str, Any], band: str) -> None:
    """The seed mean as a line with markers and the band over seeds."""
    ax.plot(x, stats["mean"], lw=1.4, ms=3.5, **style)
    spread = _band(stats, band)
    if spread is not None:
        ax.fill_between(x, spread[0], spread[1], color=style["color"], alpha=0.15, lw=0)


def format_level_axis(ax: "Axes", levels: Iterable[float]) -> None:
    """Log x-axis of % remaining running from 100 down to the smallest level, ticked at levels."""
    from matplotlib.ticker import NullFormatter, NullLocator

    xs = np.array(sorted({float(v) for v in levels if v > 0}, reverse=True))
    if xs.size == 0:
        return
    ax.set_xscale("log")
    step = max(1, math.ceil(len(xs) / 9))
    ticks = list(xs[::step])
    if ticks[-1] != xs[-1]:
        if len(ticks) > 1 and ticks[-1] / xs[-1] < 10 ** (math.log10(xs[0] / xs[-1]) / 20):
            ticks[-1] = xs[-1]  # too close to the last tick: replace rather than crowd
        else:
            ticks.append(xs[-1])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    ax.set_xlim(xs[0] * 1.12, xs[-1] / 1.12)  # inverted: dense on the left
    ax.set_xlabel("% of weights remaining")
    ax.grid(True, which="major", alpha=0.3, lw=0.5)


def reference_lines(
    ax: "Axes", baseline: float | None, baseline_label: str, chance: bool = True, value_in_label: bool = True
) -> None:
    """Dashed line at the dense/base accuracy, dotted at chance (10%)."""
    if baseline is not None and not math.isnan(baseline):
        label = f"{baseline_label} ({baseline:.2f}%)" if value_in_label else baseline_label
        ax.axhline(baseline, color="black", ls="--", lw=1.0, label=label, gid="baseline")
    if chance:
        ax.axhline(CHANCE_PERCENT, color="black", ls=":", lw=1.0, label="chance (10%)", gid="chance")


def _drawn_y(ax: "Axes") -> list[float]:
    ys: list[float] = []
    for line in ax.lines:
        if line.get_gid() != "chance":
            ys += [float(y) for y in np.atleast_1d(line.get_ydata()) if np.isfinite(y)]
    for coll in ax.collections:
        for path in coll.get_paths():
            ys += [float(y) for y in path.vertices[:, 1] if np.isfinite(y)]
    return ys


def fit_y(axes: Sequence["Axes"]) -> None:
    """Y limits from the data; the chance line joins them unless it would squash the curves.

    When chance lies far below every curve (e.g. a short run that never collapses), drawing it
    would compress the curves into a sliver, so it is left off-axis and its legend entry says so.
    """
    ys = [y for ax in axes for y in _drawn_y(ax)]
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    if lo - CHANCE_PERCENT <= 0.5 * (hi - lo):
        lo = min(lo, CHANCE_PERCENT)
    else:
        for ax in axes:
            for line in ax.lines:
                if line.get_gid() == "chance":
                    line.set_label("chance (10%, below the axis)")
    pad = max(0.05 * (hi - lo), 0.5)
    for ax in axes:
        ax.set_ylim(lo - pad, hi + pad)


def _legend_rank(label: str) -> tuple[int, int]:
    known = (
        [curve_style("criterion", c)["label"] for c in CRITERIA_ORDER]
        + [mask1_label(m) for m in MASK1_ORDER]
        + [mask0_label(m) for m in MASK0_ORDER]
    )
    name = label.split(" (")[0] if label not in known else label
    if label in known:
        return (0, known.index(label))
    if name in known:
        return (0, known.index(name))
    return (1, 0)  # reference lines last, in the order drawn (sort is stable)


def _unique_legend(axes: Iterable["Axes"]) -> tuple[list, list[str]]:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = sorted(handles, key=_legend_rank)
    return [handles[k] for k in labels], labels


def _title(name: str, net: str, dataset: str, rows: pd.DataFrame) -> str:
    n = rows["seed"].nunique()
    return f"{name} — {net_label(net)}, {dataset_label(dataset)}, {n} seed{'s' if n != 1 else ''}"


def _save(fig: "Figure", out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    from ..store.files import write_output  # the run store pulls in torch: only when saving

    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        write_output(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150))
        paths.append(path)
    return paths


def _stem(name: str, variant: str, tag: str) -> str:
    return "_".join(p for p in (name, variant, tag) if p)


# ---------------------------------------------------------------------------------------------
# Iterative experiments


def _draw_level_curves(
    ax: "Axes",
    rows: pd.DataFrame,
    keys: Sequence[str],
    value: str,
    band: str,
    only: Sequence[str] | None = None,
    grey_random: bool = False,
) -> list[float]:
    """One curve per group of `keys` (the last key styles it); returns the x levels drawn."""
    levels: list[float] = []
    main = keys[-1]
    if only is not None:
        rows = rows[rows[main].isin(only)]
    for key, stats in ordered_groups(seed_stats(rows, value, by=[*keys, "round"]), keys):
        name = str(key[-1])
        style = curve_style(main, name)
        if len(keys) > 1:
            style["label"] = f"{style['label']} ({', '.join(str(k) for k in key[:-1])})"
        if grey_random and name == "random":
            style.update(color="#a0a0a0", marker="")  # a reference, not a competitor
        x = stats["remaining_percent"].to_numpy(dtype=float)
        draw_curve(ax, x, stats, style, band)
        levels.extend(x)
    return levels


def _iterative_figure(
    rows: pd.DataFrame, experiment: str, title: str, band: str, only: Sequence[str] | None = None
) -> "Figure":
    value = value_column(experiment)
    keys = curve_keys(rows, experiment)
    fig = _new_figure(8.5, 4.8)
    ax = fig.add_subplot()
    levels = _draw_level_curves(ax, rows, keys, value, band, only)
    reference_lines(ax, dense_baseline(rows, value), "dense")
    format_level_axis(ax, levels)
    fit_y([ax])
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.set_title(title, fontsize=10)
    handles, labels = _unique_legend([ax])
    # Outside the axes: with up to 13 curves no spot inside is guaranteed free.
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=7.5, frameon=False
    )
    return fig


def _pairs_figure(
    rows: pd.DataFrame, value: str, keys: Sequence[str], title: str, ylabel: str, band: str, baseline: float | None,
    baseline_label: str,
) -> "Figure | None":
    present = set(rows["criterion"].dropna().astype(str))
    pairs = [p for p in CRITERION_PAIRS if present & set(p)]
    if not pairs:
        return None
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = _new_figure(4.2 * ncols + 2.4, 3.3 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    levels: list[float] = []
    for ax, pair in zip(axes, pairs):
        levels += _draw_level_curves(ax, rows, keys, value, band, only=(*pair, "random"), grey_random=True)
        reference_lines(ax, baseline, baseline_label)
        ax.set_title(f"{pair[0]} vs {pair[1]}", fontsize=9)
    return _finish_panels(fig, axes, len(pairs), ncols, levels, ylabel, title, label_size=8)


def _iterative_figures(
    rows: pd.DataFrame, experiment: str, tag: str, band: str, out: Path, fmts: Sequence[str]
) -> list[Path]:
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title(EXPERIMENT_TITLES.get(experiment, experiment), net, dataset, rows)
    only = SIGN_CRITERIA.get(experiment)
    paths: list[Path] = []
    fig = _iterative_figure(rows, experiment, title, band, only)
    paths += _save(fig, out, _stem(experiment, "", tag), fmts)
    if experiment == "criteria":
        value = value_column(experiment)
        pairs = _pairs_figure(
            rows, value, curve_keys(rows, experiment), title + " — complementary pairs",
            "test acc. at early stop (%)", band, dense_baseline(rows, value), "dense",
        )
        if pairs is not None:
            paths += _save(pairs, out, _stem(experiment, "pairs", tag), fmts)
    return paths


# ---------------------------------------------------------------------------------------------
# Supermask experiments


def _converged_only(rows: pd.DataFrame) -> pd.DataFrame:
    # Supermask-at-init is defined on the converged base; other bases belong to the ablations.
    return rows[rows["base"] == "converged"] if (rows["base"] == "converged").any() else rows


def _base_accuracy(rows: pd.DataFrame) -> float | None:
    if "base_test_accuracy" not in rows or rows["base_test_accuracy"].isna().all():
        return None
    return float(rows.groupby("seed")["base_test_accuracy"].mean().mean() * 100.0)


def _panel_grid(n: int) -> tuple[int, int]:
    return (1, n) if n <= 2 else (math.ceil(n / 2), 2)


def _level_panels(
    panels: list[tuple[str, pd.DataFrame]], title: str, band: str, ylabel: str
) -> "Figure":
    """Panels of per-criterion accuracy-at-init curves vs % remaining, one legend outside."""
    nrows, ncols = _panel_grid(len(panels))
    fig = _new_figure(4.6 * ncols + 2.6, 3.5 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    levels: list[float] = []
    for ax, (name, rows) in zip(axes, panels):
        levels += _draw_level_curves(ax, rows, ["criterion"], "test_accuracy_at_init", band)
        base = _base_accuracy(rows)
        # Bases differ between panels: the value goes in the panel title, not the shared legend.
        reference_lines(ax, base, "trained base, own weights", value_in_label=False)
        ax.set_title(name + (f"\nbase test accuracy {base:.2f}%" if base is not None else ""), fontsize=8.5)
    return _finish_panels(fig, axes, len(panels), ncols, levels, ylabel, title, label_size=8.5)


def _supermask_at_init(rows: pd.DataFrame, tag: str, band: str, out: Path, fmts: Sequence[str]) -> list[Path]:
    rows = _converged_only(rows)
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title("supermask at init", net, dataset, rows)
    combos = supermask_combos(rows)
    panels = [(start_dwr_label(s, d), rows[(rows["start"] == s) & (rows["dwr"] == d)]) for s, d in combos]
    fig = _level_panels(panels, title, band, "test accuracy at init (%)")
    paths = _save(fig, out, _stem("supermask-at-init", "", tag), fmts)
    for (s, d), (label, sub) in zip(combos, panels):
        fig = _pairs_figure(
            sub, "test_accuracy_at_init", ["criterion"], f"{title} — {label} — complementary pairs",
            "test acc. at init (%)", band, _base_accuracy(sub), "trained base",
        )
        if fig is not None:
            paths += _save(fig, out, _stem("supermask-at-init", f"pairs_{start_dwr_slug(s, d)}", tag), fmts)
    return paths


def _masking_is_training(rows: pd.DataFrame, tag: str, band: str, out: Path, fmts: Sequence[str]) -> list[Path]:
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    combos = supermask_combos(rows)
    paths: list[Path] = []
    for s, d in combos:
        sub = rows[(rows["start"] == s) & (rows["dwr"] == d)]
        panels = []
        for (base,), g in ordered_groups(sub, ["base"]):
            its = g["base_iterations"].mean() if "base_iterations" in g else float("nan")
            suffix = f" (~{its:.0f} iterations)" if not math.isnan(its) else ""
            panels.append((f"base {base_label(base)}{suffix}", g))
        title = _title(f"masking is training ({start_dwr_label(s, d)})", net, dataset, sub)
        fig = _level_panels(panels, title, band, "test accuracy at init (%)")
        variant = "" if len(combos) == 1 else start_dwr_slug(s, d)
        paths += _save(fig, out, _stem("masking-is-training", variant, tag), fmts)
    return paths


def best_over_levels(rows: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """Per (`by`, seed): the best `value` over levels (rounds), with mean base iterations/accuracy."""
    agg: dict[str, tuple[str, str]] = {"best": (value, "max")}
    for c in ("base_iterations", "base_test_accuracy"):
        if c in rows:
            agg[c] = (c, "mean")
    return rows.groupby(list(by) + ["seed"], dropna=False).agg(**agg).reset_index()


def _over_seeds(per_seed: pd.DataFrame, column: str) -> pd.DataFrame:
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


def _supermask_vs_training(rows: pd.DataFrame, tag: str, band: str, out: Path, fmts: Sequence[str]) -> list[Path]:
    if "base_iterations" not in rows or rows["base_iterations"].isna().all():
        return []
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    combos = supermask_combos(rows)
    nrows, ncols = _panel_grid(len(combos))
    fig = _new_figure(4.8 * ncols + 2.6, 3.6 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    xs: list[float] = []
    for ax, (s, d) in zip(axes, combos):
        sub = rows[(rows["start"] == s) & (rows["dwr"] == d)]
        per_seed = best_over_levels(sub, "test_accuracy_at_init", ["criterion", "base"])
        for (crit,), g in ordered_groups(per_seed, ["criterion"]):
            stats = _over_seeds(g, "best")
            draw_curve(ax, stats["x"].to_numpy(dtype=float), stats, curve_style("criterion", str(crit)), band)
            xs += list(stats["x"])
        if "base_test_accuracy" in per_seed and per_seed["base_test_accuracy"].notna().any():
            per_base = per_seed.groupby(["base", "seed"]).mean(numeric_only=True).reset_index()
            base = _over_seeds(per_base, "base_test_accuracy")
            style = {"label": "base net, trained weights", "color": "black", "marker": "o", "linestyle": "-"}
            draw_curve(ax, base["x"].to_numpy(dtype=float), base, style, band)
        reference_lines(ax, None, "")
        ax.set_title(start_dwr_label(s, d), fontsize=9)
    for ax in axes[len(combos):]:
        ax.set_visible(False)
    positive = [x for x in xs if x > 0]
    for ax in axes[: len(combos)]:
        if positive and len(positive) == len(xs):
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=1.0)  # a base with 0 iterations is the untrained net
        ax.set_xlabel("base training iterations", fontsize=8.5)
        ax.grid(True, alpha=0.3, lw=0.5)
        ax.tick_params(labelsize=7.5, labelbottom=True)
    fit_y(axes[: len(combos)])
    for ax in axes[::ncols]:
        ax.set_ylabel("best test accuracy at init (%)", fontsize=8.5)
    handles, labels = _unique_legend(axes)
    fig.legend(handles, labels, loc="outside right upper", fontsize=7.5, frameon=False)
    # left-aligned: centred over a one-panel figure, the title runs into the outside legend
    fig.suptitle(_title("best supermask at init vs base training", net, dataset, rows), fontsize=10, x=0.02, ha="left")
    return _save(fig, out, _stem("supermask-vs-training", "", tag), fmts)


# ---------------------------------------------------------------------------------------------
# Entry point


def make_figures(
    results: pd.DataFrame, out_dir: Path, band: str = "minmax", formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Draw every SPEC §8 figure whose data are in `results` into `out_dir`; return the files.

    `band` is "minmax" (the spread over seeds, the papers' choice) or "std" (mean ± std).
    Experiments absent from the table, and `learned-supermask` (a table, not a figure), are skipped.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {BANDS}, not {band!r}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TicketlabError(f"cannot create the figures folder {out_dir}: {e.strerror or e}; pass a writable --out") from None
    drawn = ITERATIVE_EXPERIMENTS + SUPERMASK_EXPERIMENTS
    has_columns = {"experiment", "net", "dataset"} <= set(results.columns)
    # Only nets that get figures decide whether file names need the net.
    tags = net_tags(results[results["experiment"].isin(drawn)]) if has_columns else {}
    paths: list[Path] = []
    for experiment in drawn:
        rows = experiment_rows(results, experiment)
        rows = rows.dropna(subset=[value_column(experiment)]) if not rows.empty else rows
        for net, dataset, g in net_groups(rows) if not rows.empty else ():
            tag = tags.get((net, dataset), "")
            if experiment in ITERATIVE_EXPERIMENTS:
                paths += _iterative_figures(g, experiment, tag, band, out_dir, formats)
            elif experiment == "supermask-at-init":
                paths += _supermask_at_init(g, tag, band, out_dir, formats)
            elif experiment == "masking-is-training":
                paths += _masking_is_training(g, tag, band, out_dir, formats)
            else:
                paths += _supermask_vs_training(g, tag, band, out_dir, formats)
    return paths


def describe_figure(path: Path) -> str:
    """A one-sentence caption for a file written by `make_figures`, from its name."""
    stem = Path(path).stem
    best = max((k for k in FIGURE_DESCRIPTIONS if stem == k or stem.startswith(k + "_")), key=len, default=None)
    return FIGURE_DESCRIPTIONS.get(best, stem) if best else stem


def _finish_panels(fig: "Figure", axes, used: int, ncols: int, levels: list[float], ylabel: str, title: str,
                   label_size: float) -> "Figure":
    """Shared tail of the panel figures: hide spare axes, level x-axes, shared y range, one legend."""
    for ax in axes[used:]:
        ax.set_visible(False)
    for ax in axes[:used]:
        format_level_axis(ax, levels)
        ax.tick_params(labelsize=7.5, labelbottom=True)
        ax.xaxis.label.set_size(label_size)
    fit_y(axes[:used])
    for ax in axes[::ncols]:
        ax.set_ylabel(ylabel, fontsize=label_size)
    handles, labels = _unique_legend(axes)
    fig.legend(handles, labels, loc="outside right upper", fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig
