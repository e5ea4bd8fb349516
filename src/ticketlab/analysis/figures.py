"""The figures of protocol §8, drawn from a results table (a DataFrame, one row per result).

Matplotlib is used only through `matplotlib.figure.Figure`, never pyplot: drawing needs no display
and leaves no global state behind, so figures can be made from worker threads or tests.

Accuracies in the table are fractions; every figure and every number derived here is in %.
"density" = fraction of weights kept, "sparsity" = fraction pruned; the x-axes show density as
"% of weights remaining".

Labels, orders and colours come from `style`, the numbers drawn from `stats` (shared with the
report and the claims, so a number in the report is the number in the figure).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.errors import TicketlabError
from ..pruning.criteria import complementary_pairs
from .stats import (
    Experiment,
    base_accuracy,
    best_over_levels,
    converged_only,
    curve_keys,
    dense_baseline,
    drawn_rows,
    experiments,
    net_groups,
    net_tag,
    net_tags,
    ordered_groups,
    over_seeds,
    path_stats,
    seed_stats,
    stability_rows,
    supermask_combos,
)
from .style import (
    BANDS,
    CHANCE_PERCENT,
    EXPERIMENT_TITLES,
    SIGN_CRITERIA,
    TRAINED_MEASURES,
    UNSTYLED,
    base_label,
    curve_style,
    dataset_label,
    legend_rank,
    net_label,
    panel_label,
    sort_key,
    start_dwr_label,
    start_dwr_slug,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Drawn = tuple[str, "Figure"]  # a figure and the file stem it is saved under


# ---------------------------------------------------------------------------------------------
# Drawing primitives


def _new_figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=150, layout="constrained")


def _bad_band(band: str) -> TicketlabError:
    return TicketlabError(f"unknown band {band!r}: choose minmax (the spread over seeds) or std (mean ± std)")


def _band(stats: pd.DataFrame, band: str) -> tuple[np.ndarray, np.ndarray] | None:
    if band == "minmax":
        lo, hi = stats["min"], stats["max"]
    elif band == "std":
        lo, hi = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    else:
        raise _bad_band(band)
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


def _unique_legend(axes: Iterable["Axes"]) -> tuple[list, list[str]]:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = sorted(handles, key=legend_rank)
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
# Curves of a kind (every experiment; the iterative presets add their titles and pairs)


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
    for index, (key, stats) in enumerate(ordered_groups(seed_stats(rows, value, by=[*keys, "round"]), keys)):
        name = str(key[-1])
        style = curve_style(main, name)
        if style["color"] == UNSTYLED:  # no table colours it: matplotlib's cycle, in the curves' order
            style["color"] = f"C{index % 10}"
        if len(keys) > 1:
            style["label"] = f"{style['label']} ({', '.join(str(k) for k in key[:-1])})"
        if grey_random and name == "random":
            style.update(color="#a0a0a0", marker="")  # a reference, not a competitor
        x = stats["remaining_percent"].to_numpy(dtype=float)
        draw_curve(ax, x, stats, style, band)
        levels.extend(x)
    return levels


def _single_axes_figure(
    rows: pd.DataFrame, experiment: Experiment, title: str, band: str, only: Sequence[str] | None = None
) -> "Figure":
    """All curves of one (net, dataset) in one axes, the dense baseline dashed."""
    value = experiment.curves.value
    keys = curve_keys(rows, experiment)
    fig = _new_figure(8.5, 4.8)
    ax = fig.add_subplot()
    levels = _draw_level_curves(ax, rows, keys, value, band, only)
    reference_lines(ax, dense_baseline(rows, value) if value in TRAINED_MEASURES else None, "dense",
                    chance=experiment.curves.chance)
    format_level_axis(ax, levels)
    fit_y([ax])
    ax.set_ylabel(experiment.curves.ylabel)
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
    pairs = [p for p in complementary_pairs() if present & set(p)]
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


def _panel_grid(n: int) -> tuple[int, int]:
    return (1, n) if n <= 2 else (math.ceil(n / 2), 2)


def _level_panels(
    panels: list[tuple[str, pd.DataFrame]], keys: Sequence[str], value: str, title: str, band: str, ylabel: str,
    chance: bool = True,
) -> "Figure":
    """Panels of curves (one per group of `keys`) vs % remaining, each with its base; one legend outside."""
    nrows, ncols = _panel_grid(len(panels))
    fig = _new_figure(4.6 * ncols + 2.6, 3.5 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    levels: list[float] = []
    for ax, (name, rows) in zip(axes, panels):
        levels += _draw_level_curves(ax, rows, keys, value, band)
        base = base_accuracy(rows)
        if base is not None or value not in TRAINED_MEASURES:
            # Bases differ between panels: the value goes in the panel title, not the shared legend.
            reference_lines(ax, base, "trained base, own weights", chance=chance, value_in_label=False)
            ax.set_title(name + (f"\nbase test accuracy {base:.2f}%" if base is not None else ""), fontsize=8.5)
        else:
            dense = dense_baseline(rows, value)
            reference_lines(ax, dense, "dense", chance=chance, value_in_label=False)
            ax.set_title(name + (f"\ndense {dense:.2f}%" if dense is not None else ""), fontsize=8.5)
    return _finish_panels(fig, axes, len(panels), ncols, levels, ylabel, title, label_size=8.5)


def _kind_figures(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """The figure any experiment gets from its kind's `curves`: one panel per panel combination."""
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title(experiment.name, net, dataset, rows)
    panels = list(experiment.curves.panels)
    if not panels:
        yield _stem(experiment.name, "", tag), _single_axes_figure(rows, experiment, title, band)
        return
    keys = curve_keys(rows, experiment)[len(panels):]
    groups = [(panel_label(dict(zip(panels, key))), g) for key, g in ordered_groups(rows, panels)]
    fig = _level_panels(groups, keys, experiment.curves.value, title, band, experiment.curves.ylabel,
                        experiment.curves.chance)
    yield _stem(experiment.name, "", tag), fig


def _iterative_figures(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """An iterative preset: its kind's figure with the preset's title (and criteria), and for
    `criteria` the complementary pairs."""
    name = experiment.name
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title(EXPERIMENT_TITLES.get(name, name), net, dataset, rows)
    yield _stem(name, "", tag), _single_axes_figure(rows, experiment, title, band, SIGN_CRITERIA.get(name))
    if name == "criteria":
        value = experiment.curves.value
        pairs = _pairs_figure(
            rows, value, curve_keys(rows, experiment), title + " — complementary pairs",
            "test acc. at early stop (%)", band, dense_baseline(rows, value), "dense",
        )
        if pairs is not None:
            yield _stem(name, "pairs", tag), pairs


# ---------------------------------------------------------------------------------------------
# Supermask presets


def _supermask_at_init(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    value = experiment.curves.value
    rows = converged_only(rows)
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title("supermask at init", net, dataset, rows)
    combos = supermask_combos(rows)
    panels = [(start_dwr_label(s, d), rows[(rows["start"] == s) & (rows["dwr"] == d)]) for s, d in combos]
    yield _stem(experiment.name, "", tag), _level_panels(panels, ["criterion"], value, title, band,
                                                         "test accuracy at init (%)")
    for (s, d), (label, sub) in zip(combos, panels):
        fig = _pairs_figure(
            sub, value, ["criterion"], f"{title} — {label} — complementary pairs",
            "test acc. at init (%)", band, base_accuracy(sub), "trained base",
        )
        if fig is not None:
            yield _stem(experiment.name, f"pairs_{start_dwr_slug(s, d)}", tag), fig


def _masking_is_training(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    combos = supermask_combos(rows)
    for s, d in combos:
        sub = rows[(rows["start"] == s) & (rows["dwr"] == d)]
        panels = []
        for (base,), g in ordered_groups(sub, ["base"]):
            its = g["base_iterations"].mean() if "base_iterations" in g else float("nan")
            suffix = f" (~{its:.0f} iterations)" if not math.isnan(its) else ""
            panels.append((f"base {base_label(base)}{suffix}", g))
        title = _title(f"masking is training ({start_dwr_label(s, d)})", net, dataset, sub)
        fig = _level_panels(panels, ["criterion"], experiment.curves.value, title, band, "test accuracy at init (%)")
        variant = "" if len(combos) == 1 else start_dwr_slug(s, d)
        yield _stem(experiment.name, variant, tag), fig


def _supermask_vs_training(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    if "base_iterations" not in rows or rows["base_iterations"].isna().all():
        return
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    combos = supermask_combos(rows)
    nrows, ncols = _panel_grid(len(combos))
    fig = _new_figure(4.8 * ncols + 2.6, 3.6 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    xs: list[float] = []
    for ax, (s, d) in zip(axes, combos):
        sub = rows[(rows["start"] == s) & (rows["dwr"] == d)]
        per_seed = best_over_levels(sub, experiment.curves.value, ["criterion", "base"])
        for (crit,), g in ordered_groups(per_seed, ["criterion"]):
            stats = over_seeds(g, "best")
            draw_curve(ax, stats["x"].to_numpy(dtype=float), stats, curve_style("criterion", str(crit)), band)
            xs += list(stats["x"])
        if "base_test_accuracy" in per_seed and per_seed["base_test_accuracy"].notna().any():
            per_base = per_seed.groupby(["base", "seed"]).mean(numeric_only=True).reset_index()
            base = over_seeds(per_base, "base_test_accuracy")
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
    yield _stem(experiment.name, "", tag), fig


def _learned_supermask(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """Accuracy vs % of weights kept: learned Bernoulli masks (one point per start x dwr: their density
    is learned), edge-popup over its kept fractions, the best heuristic supermask at init per level,
    the trained dense base dashed; seed means, with error bars over seeds (min-max or std)."""
    if "learner" not in rows or rows["learner"].isna().all() or "remaining_percent" not in rows:
        return
    rows = rows.dropna(subset=["learner", "remaining_percent"])
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    fig = _new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    rows = rows.assign(pct=100.0 * rows["test_accuracy"].astype(float), x=rows["remaining_percent"].astype(float))
    colors = iter(("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"))
    learned = rows[rows["learner"] != "heuristic_best"]
    groups = [((learner, start, dwr), g) for (learner, start, dwr), g in
              learned.groupby(["learner", "start", "dwr"], sort=True, dropna=False)]
    groups.append((("heuristic_best", None, None), rows[rows["learner"] == "heuristic_best"]))
    for (learner, start, dwr), g in groups:
        if g.empty:
            continue
        by = {"heuristic_best": "round", "edge_popup": "kept_fraction"}.get(learner, "learner")
        stats = g.groupby(by, dropna=False).agg(x=("x", "mean"), mean=("pct", "mean"), lo=("pct", "min"),
                                                hi=("pct", "max"), std=("pct", "std")).sort_values("x", ascending=False)
        if band == "std":
            err = np.vstack([stats["std"].fillna(0).to_numpy()] * 2)
        else:
            err = np.vstack([(stats["mean"] - stats["lo"]).to_numpy(), (stats["hi"] - stats["mean"]).to_numpy()])
        label = "best heuristic supermask at init" if learner == "heuristic_best" else \
            f"{learner}, {start}{', DWR' if dwr is True else ''}"
        ax.errorbar(stats["x"], stats["mean"], yerr=err, color=next(colors), marker="o", ms=3.5, lw=1.2,
                    ls="none" if learner == "bernoulli" else "-", capsize=2, label=label)
    dense = rows["base_test_accuracy"].dropna().astype(float)
    reference_lines(ax, 100.0 * float(dense.mean()) if len(dense) else None, "trained dense net")
    format_level_axis(ax, list(rows["x"].dropna()))
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, frameon=False)
    fig.suptitle(_title("learned supermasks", net, dataset, rows), fontsize=10)
    yield _stem(experiment.name, "", tag), fig


# ---------------------------------------------------------------------------------------------
# Beyond the paper: late rewinding, pruning scope


def _late_rewinding(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """One panel per criterion (and any other key that varies), a curve per rewind iteration k."""
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    keys = curve_keys(rows, experiment)
    panels = [(", ".join(str(v) for v in key) or experiment.name, g) for key, g in ordered_groups(rows, keys[:-1])]
    title = _title(EXPERIMENT_TITLES.get(experiment.name, experiment.name), net, dataset, rows)
    yield _stem(experiment.name, "", tag), _level_panels(panels, keys[-1:], experiment.curves.value, title, band,
                                                         experiment.curves.ylabel)


def _global_vs_layer(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """All curves in one axes: a colour per criterion (the table's), solid for the global ranking,
    dashed for the paper's per-layer rates."""
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    value = experiment.curves.value
    keys = [k for k in curve_keys(rows, experiment) if k != "scope"] + ["scope"]
    fig = _new_figure(8.5, 4.8)
    ax = fig.add_subplot()
    levels: list[float] = []
    for key, stats in ordered_groups(seed_stats(rows, value, by=[*keys, "round"]), keys):
        named = dict(zip(keys, key))
        style = curve_style("scope", str(named["scope"]))
        criterion = named.get("criterion")
        if criterion is not None:
            style["color"] = curve_style("criterion", str(criterion))["color"]
        style["label"] = f"{', '.join(str(named[k]) for k in keys[:-1])} — {style['label']}"
        x = stats["remaining_percent"].to_numpy(dtype=float)
        draw_curve(ax, x, stats, style, band)
        levels.extend(x)
    reference_lines(ax, dense_baseline(rows, value), "dense")
    format_level_axis(ax, levels)
    fit_y([ax])
    ax.set_ylabel(experiment.curves.ylabel)
    ax.set_title(_title(EXPERIMENT_TITLES.get(experiment.name, experiment.name), net, dataset, rows), fontsize=10)
    handles, labels = _unique_legend([ax])
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=7.5,
              frameon=False)
    yield _stem(experiment.name, "", tag), fig


def density_columns(rows: pd.DataFrame) -> list[str]:
    """The per-layer density columns (`density_<layer>`) the rows fill."""
    return [c for c in rows.columns if c.startswith("density_") and rows[c].notna().any()]


def _densities(rows: pd.DataFrame, experiment: Experiment, tag: str) -> Iterator[Drawn]:
    """Where a global ranking takes its weights from: each layer's density vs the % of all weights
    remaining, one panel per criterion (and other varying key), global solid, per-layer rates dashed."""
    columns = density_columns(rows)
    if not columns or "scope" not in rows or not (rows["scope"] == "global").any():
        return
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    keys = [k for k in curve_keys(rows, experiment) if k != "scope"]
    groups = list(ordered_groups(rows, keys))
    nrows, ncols = _panel_grid(len(groups))
    fig = _new_figure(4.6 * ncols + 2.6, 3.5 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    levels: list[float] = []
    for ax, (key, g) in zip(axes, groups):
        for (scope,), sg in ordered_groups(g, ["scope"]):
            per_round = sg.groupby("round")[["remaining_percent", *columns]].mean().sort_values("remaining_percent",
                                                                                                  ascending=False)
            x = per_round["remaining_percent"].to_numpy(dtype=float)
            for i, column in enumerate(columns):
                layer = column.removeprefix("density_")
                ax.plot(x, 100.0 * per_round[column].to_numpy(dtype=float), color=f"C{i}", lw=1.3, ms=3,
                        marker="o" if scope == "global" else "", linestyle="-" if scope == "global" else "--",
                        label=f"{layer}, {curve_style('scope', str(scope))['label']}")
            levels.extend(x)
        ax.set_yscale("log")
        ax.set_title(", ".join(str(v) for v in key) or experiment.name, fontsize=8.5)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    for ax in axes[: len(groups)]:
        format_level_axis(ax, levels)
        ax.tick_params(labelsize=7.5, labelbottom=True)
        ax.grid(True, which="major", alpha=0.3, lw=0.5)
    for ax in axes[::ncols]:
        ax.set_ylabel("layer density (% kept)", fontsize=8.5)
    handles, labels = _unique_legend(axes)
    fig.legend(handles, labels, loc="outside right upper", fontsize=7.5, frameon=False)
    fig.suptitle(_title(f"{experiment.name}: per-layer density", net, dataset, rows), fontsize=10)
    yield _stem(experiment.name, "densities", tag), fig


# ---------------------------------------------------------------------------------------------
# Beyond the paper: stability to SGD noise (protocol §17)


def _stability_panels(rows: pd.DataFrame) -> list[tuple[str, int | None, pd.DataFrame]]:
    """(title, round, rows) per density of the masked starts, densest first; the dense start alone when
    no start is masked (round None: the panel holds the dense rows themselves)."""
    masked = rows[rows["mask"] != "dense"]
    if masked.empty:
        return [("dense (100% remaining)", None, rows)]
    panels = []
    for r, g in masked.groupby("round", sort=False):
        panels.append((f"{g['remaining_percent'].mean():.3g}% remaining (round {r})", int(r), g))
    return sorted(panels, key=lambda p: -p[2]["remaining_percent"].mean())


def _k_axis(ax: "Axes", ks: Sequence[int]) -> None:
    """x-axis of start iterations k: symmetric-log (linear below the smallest k > 0), so that k = 0 shows."""
    positive = sorted(k for k in ks if k > 0)
    ax.set_xscale("symlog", linthresh=positive[0] if positive else 1.0, linscale=0.5)
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    ticks = sorted(set(ks))
    ax.set_xticks(ticks, labels=[f"{k:,}" for k in ticks])
    ax.set_xlabel("iteration k the copies start from", fontsize=8.5)
    ax.grid(True, which="major", alpha=0.3, lw=0.5)


def _mask_curve(ax: "Axes", rows: pd.DataFrame, mask: str, band: str, reference: bool = False) -> list[int]:
    """Instability vs k of one mask over seeds (pp); `reference`: the dense start drawn black, dashed."""
    stats = seed_stats(rows, "instability", by=["rewind_iteration"]).sort_values("rewind_iteration")
    style = curve_style("mask", mask)
    if reference:
        style.update(color="black", linestyle="--", marker="", label="dense (100%)")
    x = stats["rewind_iteration"].to_numpy(dtype=float)
    draw_curve(ax, x, stats, style, band)
    return [int(k) for k in x]


def _stability(rows: pd.DataFrame, experiment: Experiment, tag: str, band: str) -> Iterator[Drawn]:
    """Instability vs the start iteration k, one panel per density (each mask a curve: large_final
    tickets and random masks side by side, the dense start black, dashed); and the test error along the path."""
    rows = stability_rows(rows)
    if rows.empty:
        return
    net, dataset = str(rows["net"].iloc[0]), str(rows["dataset"].iloc[0])
    title = _title(EXPERIMENT_TITLES.get(experiment.name, experiment.name), net, dataset, rows)
    dense = rows[rows["mask"] == "dense"]
    panels = _stability_panels(rows)
    nrows, ncols = _panel_grid(len(panels))
    fig = _new_figure(max(8.0, 4.2 * ncols + 2.4), 3.2 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    ks: list[int] = []
    for ax, (name, r, g) in zip(axes, panels):
        for (mask,), m in ordered_groups(g, ["mask"]):
            ks += _mask_curve(ax, m, str(mask), band)
        if r is not None and not dense.empty:
            ks += _mask_curve(ax, dense, "dense", band, reference=True)
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_title(name, fontsize=8.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[: len(panels)]:
        _k_axis(ax, ks)
        ax.tick_params(labelsize=7.5, labelbottom=True)
    for ax in axes[::ncols]:
        ax.set_ylabel("instability (pp of test error)", fontsize=8.5)
    handles, labels = _unique_legend(axes)
    fig.legend(handles, labels, loc="outside right center", fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=10)
    yield _stem(experiment.name, "", tag), fig
    paths = _stability_paths(rows, panels, title, band)
    if paths is not None:
        yield _stem(experiment.name, "path", tag), paths


def _stability_paths(rows: pd.DataFrame, panels: list[tuple[str, int | None, pd.DataFrame]], title: str,
                     band: str) -> "Figure | None":
    """Test error (%) along alpha: for the dense start alone, one axes with a curve per k; else one row
    per k and one column per density, each mask a curve (the dense start black, dashed)."""
    stats = path_stats(rows)
    if stats.empty:
        return None
    ks = sorted(int(k) for k in stats["rewind_iteration"].unique())
    dense_only = panels[0][1] is None
    nrows, ncols = (1, 1) if dense_only else (len(ks), len(panels))
    fig = _new_figure(max(8.0, 3.3 * ncols + 2.4), (3.4 if dense_only else 2.6) * nrows + 0.6)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False))

    def curve(ax: "Axes", s: pd.Series, style: dict[str, Any]) -> None:
        # one (mask, round, k)'s path: its arrays over alpha as the per-point stats `draw_curve` reads
        points = pd.DataFrame({c: s[c] for c in ("mean", "min", "max", "std")}).assign(n=s["n"])
        draw_curve(ax, s["alpha"], points, style, band)

    if dense_only:
        ax = axes[0, 0]
        from matplotlib import colormaps

        colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(ks)))
        for colour, k in zip(colours, ks):
            for _, s in stats[stats["rewind_iteration"] == k].iterrows():
                curve(ax, s, {"color": colour, "marker": "o", "label": f"k = {k:,}"})
        ax.set_title("dense", fontsize=8.5)
    else:
        for i, k in enumerate(ks):
            at_k = stats[stats["rewind_iteration"] == k]
            for j, (name, r, _) in enumerate(panels):
                ax = axes[i, j]
                cell = at_k[at_k["round"] == r]
                for _, s in cell.sort_values("mask", key=lambda c: c.map(lambda v: sort_key("mask", v))).iterrows():
                    curve(ax, s, curve_style("mask", str(s["mask"])))
                for _, s in at_k[at_k["mask"] == "dense"].iterrows():
                    curve(ax, s, {"color": "black", "linestyle": "--", "marker": "", "label": "dense (100%)"})
                ax.set_title(f"{name}, k = {k:,}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xlim(0.0, 1.0)
        ax.grid(True, alpha=0.3, lw=0.5)
        ax.tick_params(labelsize=7.5, labelbottom=True)
    for ax in axes[-1, :]:
        ax.set_xlabel("alpha (0: copy a, 1: copy b)", fontsize=8.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("test error (%)", fontsize=8.5)
    handles, labels = _unique_legend(axes.ravel())
    fig.legend(handles, labels, loc="outside right center", fontsize=7.5, frameon=False)
    fig.suptitle(f"{title}:\ntest error along the path", fontsize=10)
    return fig


Draw = Callable[[pd.DataFrame, Experiment, str, str], Iterator[Drawn]]
# The presets' own figures (protocol §8), in place of their kind's; every other experiment gets `_kind_figures`.
PRESET_FIGURES: dict[str, Draw] = {
    "criteria": _iterative_figures,
    "large-final-signs": _iterative_figures,
    "magnitude-increase-signs": _iterative_figures,
    "mask1-actions": _iterative_figures,
    "mask0-actions": _iterative_figures,
    "supermask-at-init": _supermask_at_init,
    "masking-is-training": _masking_is_training,
    "supermask-vs-training": _supermask_vs_training,
    "learned-supermask": _learned_supermask,
    "late-rewinding": _late_rewinding,
    "global-vs-layer": _global_vs_layer,
    "stability-dense": _stability,
    "stability-tickets": _stability,
}


# ---------------------------------------------------------------------------------------------
# Entry points


def draw_figures(
    results: pd.DataFrame, band: str = "minmax", kinds: Mapping[str, str] | None = None
) -> Iterator[Drawn]:
    """(file stem, figure) for every figure of `results`, one experiment and (net, dataset) at a time.

    A preset gets its own protocol §8 figures; any other experiment (a user's TOML sweep, say) the
    figure of its kind's `curves`. `kinds` maps experiment names to kind names (see
    `stats.experiments` for the fallbacks).
    """
    if band not in BANDS:
        raise _bad_band(band)
    if not {"experiment", "net", "dataset"} <= set(results.columns):
        return
    found = experiments(results, kinds)
    drawn = {name: drawn_rows(results, e) for name, e in found.items()}
    # Only nets that get figures decide whether file names need the net.
    tags = net_tags(pd.concat(drawn.values())) if drawn else {}
    for name, experiment in found.items():
        draw = PRESET_FIGURES.get(name, _kind_figures) if experiment.preset else _kind_figures
        for net, dataset, g in net_groups(drawn[name]) if not drawn[name].empty else ():
            yield from draw(g, experiment, tags.get((net, dataset), ""), band)
            yield from _densities(g, experiment, tags.get((net, dataset), ""))  # any sweep that prunes globally


def make_figures(
    results: pd.DataFrame, out_dir: Path, band: str = "minmax", formats: Sequence[str] = ("png", "svg"),
    kinds: Mapping[str, str] | None = None,
) -> list[Path]:
    """Draw every figure whose data are in `results` into `out_dir` (see `draw_figures`); return the files.

    `band` is "minmax" (the spread over seeds, the papers' choice) or "std" (mean ± std).
    Experiments absent from the table, or without values to draw, are skipped.
    """
    if band not in BANDS:
        raise _bad_band(band)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TicketlabError(f"cannot create the figures folder {out_dir}: {e.strerror or e}; pass a writable --out") from None
    paths: list[Path] = []
    for stem, fig in draw_figures(results, band, kinds):
        paths += _save(fig, out_dir, stem, formats)
    _forget_stale(out_dir, paths)
    return paths


FIGURES_RECORD = ".ticketlab-figures.json"  # in a figures folder: the files the last drawing wrote


def _forget_stale(out_dir: Path, paths: list[Path]) -> None:
    """Delete the figures an earlier drawing into `out_dir` wrote that this one did not (an
    experiment gone from the store, a format no longer asked for), so that no stale figure sits
    beside the new ones; files ticketlab did not write are never touched."""
    import json

    record = out_dir / FIGURES_RECORD
    try:
        earlier = json.loads(record.read_text())
    except (OSError, ValueError):
        earlier = []
    now = {p.name for p in paths}
    for name in earlier if isinstance(earlier, list) else []:
        if isinstance(name, str) and name not in now and "/" not in name and not name.startswith("."):
            (out_dir / name).unlink(missing_ok=True)
    try:
        record.write_text(json.dumps(sorted(now)))
    except OSError:
        pass


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


# ---------------------------------------------------------------------------------------------
# A user's curves over the reference's bands (`compare.compare`)


def reference_figures(comparison: pd.DataFrame, found: Mapping[str, Experiment]) -> Iterator[Drawn]:
    """Per experiment and (net, dataset) of a comparison: the reference's seed range as a band and its
    mean dashed, the user's seed mean as a line with markers, one colour per curve; points outside the
    band are ringed. One panel per panel combination of the kind."""
    for name, rows in comparison.groupby("experiment", sort=False):
        experiment = found[name]
        panels = [p for p in experiment.curves.panels if p in rows]
        main = experiment.main or next((k for k in experiment.curves.keys if k in rows and rows[k].nunique() > 1),
                                       experiment.curves.keys[0])
        others = [k for k in experiment.curves.keys if k in rows and k != main]
        for (net, dataset), g in rows.groupby(["net", "dataset"], sort=False):
            groups = list(ordered_groups(g, panels)) if panels else [((), g)]
            nrows, ncols = _panel_grid(len(groups))
            fig = _new_figure(4.6 * ncols + 2.6, 3.5 * nrows + 0.6)
            axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
            levels: list[float] = []
            for ax, (key, panel) in zip(axes, groups):
                for curve, c in ordered_groups(panel, [main, *others]):
                    c = c.sort_values("remaining_percent", ascending=False)
                    style = curve_style(main, str(curve[0]))
                    x = c["remaining_percent"].to_numpy(dtype=float)
                    levels += list(x)
                    ax.fill_between(x, c["reference_min"], c["reference_max"], color=style["color"], alpha=0.15, lw=0)
                    ax.plot(x, c["reference_mean"], color=style["color"], lw=0.9, ls="--")
                    ax.plot(x, c["ours_mean"], lw=1.4, ms=3.5, color=style["color"], marker=style["marker"],
                            label=style["label"])
                    out = c[c["outside"]]
                    ax.plot(out["remaining_percent"], out["ours_mean"], ls="none", marker="o", ms=8, mfc="none",
                            mec="black", mew=0.8, label="outside the reference's range")
                if panels:
                    ax.set_title(panel_label(dict(zip(panels, key))), fontsize=8.5)
            title = (f"{name} — {net_label(str(net))}: yours (line) over the reference (band: min–max over its "
                     "seeds; dashed: its mean)")
            fig = _finish_panels(fig, axes, len(groups), ncols, levels, experiment.curves.ylabel, title, label_size=8.5)
            yield _stem(f"reference_{name}", "", net_tag(str(net), str(dataset))), fig


def make_reference_figures(comparison: pd.DataFrame, found: Mapping[str, Experiment], out_dir: Path,
                           formats: Sequence[str] = ("png",)) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, fig in reference_figures(comparison, found):
        paths += _save(fig, out_dir, stem, formats)
    _forget_stale(out_dir, paths)
    return paths
