"""Figures from a synthetic results table with a known structure (no training needed)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from synthetic import png_size, synthetic_results, toy_iterative, toy_supermask
from ticketlab.analysis import figures, style
from ticketlab.analysis.figures import FIGURES_RECORD, draw_figures, make_figures
from ticketlab.core.errors import TicketlabError
from ticketlab.experiments.kinds import get_kind
from ticketlab.pruning.criteria import complementary_pairs, criterion_colors

__all__ = ["png_size", "synthetic_results"]  # other test rooms build on these

EXPECTED_STEMS = {
    "criteria", "criteria_pairs", "large-final-signs", "magnitude-increase-signs", "mask1-actions", "mask0-actions",
    "supermask-at-init", "supermask-at-init_pairs_init", "supermask-at-init_pairs_signed-constant-dwr",
    "masking-is-training", "supermask-vs-training",
}


@pytest.fixture(scope="module")
def preset_figures(tmp_path_factory) -> list[Path]:
    results = synthetic_results()
    # Two of the four (start, DWR) combinations keep the test fast; each gets its own pairs figure.
    mixed = (results["experiment"] == "supermask-at-init") & (results["dwr"] != (results["start"] == "signed_constant"))
    return make_figures(results[~mixed], tmp_path_factory.mktemp("figs"))


def test_every_figure_is_a_real_png_and_svg(preset_figures):
    pngs = [p for p in preset_figures if p.suffix == ".png"]
    svgs = [p for p in preset_figures if p.suffix == ".svg"]
    assert {p.stem for p in pngs} == EXPECTED_STEMS
    assert {p.stem for p in svgs} == EXPECTED_STEMS
    for p in pngs:
        w, h = png_size(p)
        assert w >= 400 and h >= 300, (p.name, w, h)
    for p in svgs:
        assert "<svg" in p.read_text(encoding="utf-8")[:2000]


def test_missing_experiments_are_skipped(tmp_path):
    results = synthetic_results(seeds=(0, 1), experiments=("large-final-signs", "supermask-vs-training"))
    paths = make_figures(results, tmp_path, formats=("png",))
    assert {p.name for p in paths} == {"large-final-signs.png", "supermask-vs-training.png"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != FIGURES_RECORD) == sorted(p.name for p in paths)


def test_empty_table_draws_nothing(tmp_path):
    assert make_figures(synthetic_results().iloc[0:0], tmp_path) == []


def test_a_figure_keeps_its_name_when_another_net_joins(tmp_path):
    alone = synthetic_results(seeds=(0,), nets=("fc",), experiments=("mask0-actions",))
    assert {p.name for p in make_figures(alone, tmp_path, formats=("png",))} == {"mask0-actions.png"}
    both = synthetic_results(seeds=(0,), nets=("fc", "conv2"), experiments=("mask0-actions",))
    paths = make_figures(both, tmp_path, band="std", formats=("png",))
    assert {p.name for p in paths} == {"mask0-actions.png", "mask0-actions_conv2.png"}


def test_stale_figures_are_removed_and_other_files_kept(tmp_path):
    two = synthetic_results(seeds=(0, 1), experiments=("large-final-signs", "supermask-vs-training"))
    make_figures(two, tmp_path, formats=("png", "svg"))
    (tmp_path / "my-notes.txt").write_text("mine")
    one = synthetic_results(seeds=(0, 1), experiments=("large-final-signs",))
    make_figures(one, tmp_path, formats=("png",))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != FIGURES_RECORD) == ["large-final-signs.png",
                                                                                      "my-notes.txt"]


def test_bad_band_is_refused(tmp_path):
    with pytest.raises(TicketlabError, match="unknown band 'iqr': choose minmax"):
        make_figures(synthetic_results(experiments=("criteria",)), tmp_path, band="iqr")


# ---------------------------------------------------------------------------------------------
# Figures chosen by kind


def test_a_users_iterative_experiment_gets_a_figure(tmp_path):
    results = pd.concat([synthetic_results(seeds=(0, 1), experiments=("mask0-actions",)), toy_iterative("my-exp")],
                        ignore_index=True)
    paths = make_figures(results, tmp_path, formats=("png",))
    assert [p.name for p in paths] == ["mask0-actions.png", "my-exp.png"]
    w, h = png_size(tmp_path / "my-exp.png")
    assert w >= 400 and h >= 300
    fig = dict(draw_figures(toy_iterative("my-exp")))["my-exp"]
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines[:3]] == ["large_final", "small_final", "random"]
    assert ax.get_ylabel() == get_kind("iterative").curves.ylabel


def _seed_mean_curve(rows: pd.DataFrame, value: str) -> list[float]:
    per_seed = rows.groupby(["round", "seed"])[value].mean()
    return list(per_seed.groupby(level="round").mean() * 100)


def test_a_supermask_experiment_under_any_name_is_drawn_with_the_supermask_curves():
    rows = toy_supermask("my-sm")
    assert "test_accuracy_at_early_stop" not in rows  # drawn as iterative, it would have nothing to draw
    figs = dict(draw_figures(rows))
    assert list(figs) == ["my-sm"]
    panels = [ax for ax in figs["my-sm"].axes if ax.get_visible()]
    assert len(panels) == 2  # one per (base, start, DWR): init, signed constant + DWR
    assert panels[1].get_title().startswith("base converged — signed constant + DWR")
    line = next(ln for ln in panels[1].lines if ln.get_label() == "large_final_same_sign")
    mine = rows[(rows["criterion"] == "large_final_same_sign") & (rows["start"] == "signed_constant")]
    assert list(line.get_ydata()) == pytest.approx(_seed_mean_curve(mine, "test_accuracy_at_init"))
    assert panels[0].get_ylabel() == get_kind("supermask").curves.ylabel


def test_the_kinds_mapping_decides(tmp_path):
    rows = toy_supermask("criteria")  # a user's supermask sweep that took a preset's name
    assert list(draw_figures(rows)) == []  # read as the preset (iterative): no early-stop accuracy to draw
    figs = dict(draw_figures(rows, kinds={"criteria": "supermask"}))
    assert list(figs) == ["criteria"]  # its kind's figure: panels, no pairs figure
    assert sum(ax.get_visible() for ax in figs["criteria"].axes) == 2
    with pytest.raises(TicketlabError, match="unknown experiment kind"):
        make_figures(rows, tmp_path, kinds={"criteria": "learned"})


def test_criteria_colours_and_pairs_come_from_the_table(monkeypatch):
    results = synthetic_results(seeds=(0, 1), experiments=("criteria",))
    figs = dict(draw_figures(results))
    colors = criterion_colors()
    lines = [ln for ln in figs["criteria"].axes[0].lines if ln.get_label() in colors]
    assert len(lines) == len(colors)
    assert all(to_hex(ln.get_color()) == colors[ln.get_label()] for ln in lines)
    titles = [ax.get_title() for ax in figs["criteria_pairs"].axes if ax.get_visible()]
    assert titles == [f"{a} vs {b}" for a, b in complementary_pairs()]

    # Another table (one pair, another colour) where the analysis reads it: the figures follow.
    monkeypatch.setattr(style, "criterion_colors", lambda: {**colors, "large_init": "#123456"})
    monkeypatch.setattr(figures, "complementary_pairs", lambda: (("large_init", "small_init"),))
    figs = dict(draw_figures(results))
    assert [ax.get_title() for ax in figs["criteria_pairs"].axes if ax.get_visible()] == ["large_init vs small_init"]
    line = next(ln for ln in figs["criteria"].axes[0].lines if ln.get_label() == "large_init")
    assert to_hex(line.get_color()) == "#123456"


def test_late_rewinding_and_scope_figures(tmp_path):
    from synthetic import beyond_results

    figs = dict(draw_figures(beyond_results()))
    assert set(figs) == {"late-rewinding", "global-vs-layer", "global-vs-layer_densities"}
    # late rewinding: a panel per criterion, a curve per rewind iteration, each its own colour
    panels = [ax for ax in figs["late-rewinding"].axes if ax.get_visible() and ax.lines]
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["large_final", "random"]
    curves = [ln for ln in panels[0].lines if ln.get_label().startswith("rewind to")]
    assert [ln.get_label() for ln in curves] == ["rewind to init (k = 0)", "rewind to iteration 100",
                                                 "rewind to iteration 500", "rewind to iteration 2,000"]
    assert len({to_hex(ln.get_color()) for ln in curves}) == 4
    # global vs layer: the criterion's colour, solid global, dashed per-layer rates
    lines = {ln.get_label(): ln for ln in figs["global-vs-layer"].axes[0].lines}
    assert lines["large_final — global ranking"].get_linestyle() == "-"
    assert lines["large_final — per-layer rates (paper)"].get_linestyle() == "--"
    assert to_hex(lines["large_final — global ranking"].get_color()) == criterion_colors()["large_final"]
    # densities: three layers per scope, in %, on a log axis
    ax = figs["global-vs-layer_densities"].axes[0]
    assert len(ax.lines) == 6 and ax.get_yscale() == "log"
    fc1_global = next(ln for ln in ax.lines if ln.get_label() == "fc1, global ranking")
    assert fc1_global.get_ydata()[0] == pytest.approx(100.0) and fc1_global.get_ydata()[-1] == pytest.approx(
        100 * 0.72**10)


def test_stability_figures_plot_instability_against_k_and_the_error_along_alpha():
    from synthetic import stability_results

    results = pd.concat([stability_results(), stability_results(experiment="stability-dense",
                                                                 ks=(0, 100, 250, 500, 1000, 2000))])
    figs = dict(draw_figures(results))
    assert set(figs) == {"stability-dense", "stability-dense_path", "stability-tickets", "stability-tickets_path"}
    # tickets: a panel per density, densest first; large_final and random side by side, the dense start dashed
    panels = [ax for ax in figs["stability-tickets"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["51.3% remaining (round 3)", "16.9% remaining (round 8)",
                                                 "6.96% remaining (round 12)", "2.88% remaining (round 16)"]
    lines = {ln.get_label(): ln for ln in panels[0].lines}
    assert {"large_final ticket", "random mask", "dense (100%)"} <= set(lines)
    assert lines["dense (100%)"].get_linestyle() == "--"
    assert to_hex(lines["large_final ticket"].get_color()) == criterion_colors()["large_final"]
    assert list(lines["large_final ticket"].get_xdata()) == [0, 500, 2000] and panels[0].get_xscale() == "symlog"
    # in pp: the synthetic barrier of the ticket at 51% and k = 0 is 3.15 pp
    assert lines["large_final ticket"].get_ydata()[0] == pytest.approx(3.15)
    # the path: a row per k, a column per density; alpha from 0 to 1, errors in %
    path_axes = [ax for ax in figs["stability-tickets_path"].axes if ax.get_visible() and ax.lines]
    assert len(path_axes) == 12 and path_axes[0].get_title() == "51.3% remaining (round 3), k = 0"
    ticket = next(ln for ln in path_axes[0].lines if ln.get_label() == "large_final ticket")
    assert ticket.get_xdata()[0] == 0.0 and ticket.get_xdata()[-1] == 1.0 and len(ticket.get_xdata()) == 31
    assert ticket.get_ydata()[0] == pytest.approx(100 * results[(results["mask"] == "large_final")
                                                               & (results["rewind_iteration"] == 0)
                                                               & (results["round"] == 3)]["error_at_0"].mean())
    # dense alone: one panel, a curve per k
    dense = [ax for ax in figs["stability-dense_path"].axes if ax.get_visible() and ax.lines]
    assert len(dense) == 1 and [ln.get_label() for ln in dense[0].lines] == [
        "k = 0", "k = 100", "k = 250", "k = 500", "k = 1,000", "k = 2,000"]
    (only,) = [ax for ax in figs["stability-dense"].axes if ax.get_visible()]
    assert [ln.get_label() for ln in only.lines if not ln.get_label().startswith("_")] == ["dense"]


def test_a_users_stability_sweep_gets_its_kinds_figure_without_a_chance_line():
    from synthetic import stability_results

    figs = dict(draw_figures(stability_results(experiment="my-stability", ks=(0, 500)), kinds={"my-stability": "stability"}))
    assert set(figs) == {"my-stability"}
    labels = [ln.get_label() for ax in figs["my-stability"].axes for ln in ax.lines]
    assert not any(label.startswith("chance") for label in labels)
