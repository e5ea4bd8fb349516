"""The reproduction report: what it says, built once as a `document.Document`, written as HTML and Markdown.

Every number comes from `stats.summary_tables`, `stats.published_comparison` and
`claims.check_claims`, which tests can call to recompute what the page shows. Accuracies are shown
in % with 2 decimals; "x ± y" is the mean ± standard deviation over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..core.errors import TicketlabError
from ..core.progress import format_seconds
from .claims import Claim, check_claims, paired_ci
from .document import (
    Cell,
    Document,
    Figure,
    Heading,
    KeyValues,
    Notice,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)
from .stats import (
    LEVEL_TOLERANCE,
    LEVELS,
    STABILITY,
    Experiment,
    coinciding_curves,
    dense_baseline,
    dwr_effect,
    experiment_rows,
    experiments,
    net_groups,
    paired_stability,
    published_comparison,
    stability_rows,
    stability_table,
    summary_tables,
)
from .style import (
    DENSITY_CAPTION,
    EXPERIMENT_NOTES,
    KEY_HEADERS,
    MEASURES,
    PRESET_ORDER,
    TRAINED_MEASURES,
    dataset_label,
    describe_figure,
    key_text,
    is_density_figure,
    measure_text,
    net_label,
)

DEFAULT_TITLE = "Deconstructing Lottery Tickets — reproduction report"


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt_pct(value: float) -> str:
    """A % number with 2 decimals, blank for NaN."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def fmt_mean_std(mean: float, std: float) -> str:
    """'97.12 ± 0.33'; just the mean when there is no std (one seed); blank for NaN."""
    if mean is None or math.isnan(mean):
        return ""
    return f"{mean:.2f}" if std is None or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def summary_display(table: pd.DataFrame) -> Table:
    """A summary table as the report shows it (the exact level of each "at L%" cell in its note)."""
    # the curve's key columns, as `summary_tables` puts them: after net and dataset, before the numbers
    keys = list(table.columns[2:table.columns.get_loc("n_seeds")])
    headers = ["net", "dataset", *(KEY_HEADERS.get(k, k) for k in keys), "seeds", "best pruned (%)",
               "best at % remaining", *(f"at {level:g}% (%)" for level in LEVELS)]
    body = []
    for r in table.to_dict("records"):
        cells = [Cell(net_label(r["net"])), Cell(dataset_label(r["dataset"]))]
        cells += [Cell(key_text(k, r[k])) for k in keys]
        cells += [Cell(str(r["n_seeds"])), Cell(fmt_mean_std(r["best_mean"], r["best_std"])),
                  Cell(fmt_pct(r["best_remaining"]))]
        for level in LEVELS:
            tag = f"at_{level:g}"
            where = r[f"{tag}_remaining"]
            note = "" if math.isnan(where) else f"at {where:.2f}% remaining"
            cells.append(Cell(fmt_mean_std(r[f"{tag}_mean"], r[f"{tag}_std"]), note))
        body.append(tuple(cells))
    return Table(tuple(headers), tuple(body))


def comparison_display(table: pd.DataFrame) -> Table:
    """Headers and cells of the published-numbers comparison."""
    headers = ["quantity", "published (%)", "published note", "ours (%)", "ours − published (pp)", "our detail"]
    body = []
    for r in table.to_dict("records"):
        ours = "not run" if r["status"] == "not run" else fmt_pct(r["ours"])
        diff = "" if r["status"] == "not run" else f"{r['difference']:+.2f}"
        body.append(tuple(Cell(t) for t in (r["quantity"], fmt_pct(r["published"]), r["published_note"], ours, diff,
                                            r["detail"])))
    return Table(tuple(headers), tuple(body))


def stability_display(results: pd.DataFrame, experiment: Experiment) -> tuple:
    """A stability experiment's numbers: per start and k the instability and the path's errors over
    seeds, and, where large_final tickets and random masks both ran, their paired difference per
    density and k (the cells the claim averages)."""
    rows = experiment_rows(results, experiment)
    table = stability_table(rows)
    if table.empty:
        return (Paragraph("No finished runs."),)
    headers = ["net", "mask", "% remaining", "k", "seeds", "instability (pp)", "error at alpha 0 (%)",
               "error at alpha 1 (%)", "largest error on the path (%)"]
    body = []
    for r in table.to_dict("records"):
        body.append((Cell(net_label(r["net"])), Cell(key_text("mask", r["mask"])), Cell(f"{r['remaining_percent']:.3g}"),
                     Cell(f"{int(r['rewind_iteration']):,}"), Cell(str(r["n_seeds"])),
                     *(Cell(fmt_mean_std(r[f"{v}_mean"], r[f"{v}_std"]))
                       for v in ("instability", "error_at_0", "error_at_1", "max_error"))))
    blocks: list = [Table(tuple(headers), tuple(body))]
    pairs = []
    for net, dataset, g in net_groups(stability_rows(rows)):
        cells = paired_stability(g, "random", "large_final")
        for (r, k), c in cells.groupby(["round", "rewind_iteration"], sort=True):
            mean, lo, hi, n = paired_ci(list(c["diff"]))
            pairs.append((c["remaining_percent"].mean(), k, net, mean, lo, hi, n))
    if pairs:
        body = []
        for x, k, net, mean, lo, hi, n in sorted(pairs, key=lambda p: (p[2], -p[0], p[1])):
            ci = "" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
            body.append(tuple(Cell(t) for t in (net_label(net), f"{x:.3g}", f"{int(k):,}", f"{mean:+.2f}", ci, str(n))))
        blocks += [Paragraph("Random masks minus large_final tickets of the same per-layer counts, paired by seed "
                             "(same seed, density and k): instability difference in pp, 95% t interval; > 0: the "
                             "ticket is more stable."),
                   Table(("net", "% remaining", "k", "random − large_final (pp)", "95% CI (pp)", "n"), tuple(body))]
    return tuple(blocks)


def verdict_text(claim: Claim) -> str:
    """'holds', 'does not hold' or 'insufficient data'."""
    return {True: "holds", False: "does not hold", None: "insufficient data"}[claim.holds]


def claims_display(claims: Sequence[Claim]) -> Table:
    """Headers and cells of the claims table."""
    headers = ["claim", "statement", "verdict", "mean paired diff (pp)", "95% CI (pp)", "n", "evidence"]
    body = []
    for c in claims:
        ci = "" if math.isnan(c.ci_low) else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        mean = "" if math.isnan(c.mean_diff) else f"{c.mean_diff:+.2f}"
        verdict = Cell(verdict_text(c), tone={True: "holds", False: "fails", None: "undecided"}[c.holds])
        body.append((Cell(c.name), Cell(c.statement), verdict, Cell(mean), Cell(ci), Cell(str(c.n)), Cell(c.evidence)))
    return Table(tuple(headers), tuple(body))


def flatten_meta(meta: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Every key/value of `meta`, nested dicts as dotted keys, lists joined by commas."""
    items: list[tuple[str, str]] = []
    for key, value in meta.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += flatten_meta(value, name + ".")
        elif isinstance(value, (list, tuple, set)):
            items.append((name, ", ".join(str(v) for v in value)))
        else:
            items.append((name, str(value)))
    return items


def _scale_text(meta: dict) -> str:
    scale = meta.get("scale")
    if scale is None:
        return "not stated"
    if isinstance(scale, dict):
        return "; ".join(f"{k}: {v}" for k, v in flatten_meta(scale))
    return str(scale)


def figure_caption(path: Path, found: Mapping[str, Experiment]) -> str:
    """A one-sentence caption for a file written by `make_figures`: a preset's own, else its kind's."""
    stem = Path(path).stem
    if is_density_figure(stem):
        return DENSITY_CAPTION
    owner = max((e for n, e in found.items() if stem == n or stem.startswith(n + "_")), key=lambda e: len(e.name),
                default=None)
    if owner is None or owner.preset:
        return describe_figure(path)
    curves = owner.curves
    panels = f"; one panel per {', '.join(curves.panels)}" if curves.panels else ""
    return (f"{owner.name} ({owner.kind}): {MEASURES.get(curves.value, curves.value).lower()} vs % of weights "
            f"remaining, one curve per value of {', '.join(curves.keys)} (those that vary){panels}. "
            "Line: mean over seeds; band: spread over seeds.")


def _experiment_intro(experiment: Experiment, results: pd.DataFrame) -> str:
    """One sentence naming the measure, plus the dense baselines where round 0 is the trained dense net
    (after what a preset beyond the paper runs)."""
    value = experiment.curves.value
    note = EXPERIMENT_NOTES.get(experiment.name, "") if experiment.preset else ""
    if value not in TRAINED_MEASURES:
        return " ".join(p for p in (note, measure_text(value)) if p)
    rows = experiment_rows(results, experiment)
    parts = []
    for net, dataset, g in net_groups(rows):
        base = dense_baseline(g, value)
        if base is not None:
            sd = g[g["round"] == 0].groupby("seed")[value].mean().std() * 100.0
            parts.append(f"{net_label(net)} dense baseline (round 0): {fmt_mean_std(base, sd)}%")
    return " ".join(p for p in (note, measure_text(value)) if p) + (" " + "; ".join(parts) + "." if parts else "")


# DWR panels differing by no more than this (pp; 10 of 10,000 test images) are the same up to rounding
DWR_ROUNDING_PP = 0.1


def _panel_text(experiment: Experiment, panel: tuple) -> str:
    return ", ".join(f"{column} {key_text(column, value)}" for column, value in zip(experiment.curves.panels, panel))


def explanations(experiment: Experiment, results: pd.DataFrame) -> list[Notice]:
    """What a reader would otherwise misread in an experiment's figure and table: DWR panels equal to
    the plain ones, and curves that coincide (`stats.coinciding_curves`)."""
    rows = experiment_rows(results, experiment)
    notes: list[Notice] = []
    effect = dwr_effect(rows, experiment.curves.value)
    if effect is not None and effect * 100.0 <= DWR_ROUNDING_PP:
        notes.append(Notice(
            "Why the DWR panels repeat the others:",
            f"with DWR and without, the numbers differ by at most {effect * 100.0:.2f} pp. This is expected, not a "
            "bug: the biases are zero at initialisation (protocol §2), and with zero biases dynamic weight rescaling "
            "multiplies each layer by a positive constant, which scales every logit by the same positive factor "
            "(ReLU is positively homogeneous) and so cannot change a prediction (the few that differ are near-ties "
            "that float rounding breaks either way). DWR matters once biases are "
            "non-zero, or during training (learned supermasks)."))
    for main, a, b, where in coinciding_curves(rows, experiment):
        if experiment.curves.panels:
            panels = "; ".join(_panel_text(experiment, p) for p in where)
            place = f" in {len(where)} panel{'s' if len(where) != 1 else ''} ({panels})"
        else:
            place = ""
        signs = b == f"{a}_same_sign" or a == f"{b}_same_sign"
        why = ("for example, at an early base no kept weight has changed sign yet, so the same-sign criterion "
               "ranks exactly as its plain form" if signs else "their scores rank the kept weights in the same order")
        notes.append(Notice(
            f"Identical curves, {key_text(main, a)} and {key_text(main, b)}:",
            f"equal at every pruned level and seed{place}; one line hides the other. Their masks coincide there: "
            f"{why}, so they prune the same weights."))
    return notes


# ---------------------------------------------------------------------------------------------
# The document


REFERENCE_ROWS_SHOWN = 60  # the points outside the reference's range listed in the page; the CSV has all


def reference_blocks(comparison: pd.DataFrame, source: str, missing: Sequence[str], figures: Sequence[Path],
                     found: Mapping[str, Experiment]) -> tuple:
    """The section setting a user's results beside a reference table (`compare.compare`)."""
    blocks: list = [Paragraph(
        f"Your seed means beside the reference results ({source}): at each point (experiment, curve, level) the "
        "reference's mean and its min–max range over its seeds. A point is flagged when your mean lies outside "
        "that range; with fewer seeds, or another scale, more points fall outside by chance or by design "
        "(quick-scale runs train 1,000 steps, not the paper's 50,380). The whole comparison is in "
        "reference-comparison.csv beside this report.")]
    if comparison.empty:
        blocks.append(Paragraph("No point of these results is in the reference."))
    else:
        headers = ["experiment", "net", "points compared", "outside the range", "mean |yours − reference| (pp)"]
        body = []
        for (name, net), g in comparison.groupby(["experiment", "net"], sort=False):
            body.append(tuple(Cell(t) for t in (name, net_label(str(net)), str(len(g)), str(int(g["outside"].sum())),
                                                f"{(g['ours_mean'] - g['reference_mean']).abs().mean():.2f}")))
        blocks.append(Table(tuple(headers), tuple(body)))
        outside = comparison[comparison["outside"]]
        if not outside.empty:
            keys = [c for c in comparison.columns if c not in ("experiment", "net", "dataset", "remaining_percent",
                                                               "ours_mean", "ours_seeds", "reference_mean",
                                                               "reference_min", "reference_max", "reference_seeds",
                                                               "outside")]
            headers = ["experiment", *(KEY_HEADERS.get(k, k) for k in keys), "% remaining", "yours (%)",
                       "reference mean (%)", "reference range (%)"]
            body = []
            for r in outside.head(REFERENCE_ROWS_SHOWN).to_dict("records"):
                body.append((Cell(r["experiment"]), *(Cell(key_text(k, r[k])) for k in keys),
                             Cell(f"{r['remaining_percent']:.3g}"), Cell(fmt_pct(r["ours_mean"])),
                             Cell(fmt_pct(r["reference_mean"])),
                             Cell(f"{r['reference_min']:.2f} – {r['reference_max']:.2f}")))
            more = len(outside) - REFERENCE_ROWS_SHOWN
            blocks += [Heading("Points outside the reference's range"), Table(tuple(headers), tuple(body))]
            if more > 0:
                blocks.append(Paragraph(f"… and {more} more (reference-comparison.csv)."))
    if missing:
        blocks.append(Paragraph(f"Not in the reference: {', '.join(missing)}."))
    blocks += [Figure(Path(f), f"{Path(f).stem.removeprefix('reference_')}: your seed mean (line) over the "
                               "reference's min–max band and its mean (dashed); ringed points lie outside.")
               for f in figures if Path(f).suffix.lower() == ".png"]
    return tuple(blocks)


def _seeds_text(seeds: Sequence[int]) -> str:
    from .table import seed_ranges

    return seed_ranges(list(seeds)) if seeds else "none"


def is_finished(entry: Mapping) -> bool:
    """Whether a `table.coverage` entry holds every result of its sweep."""
    if entry["expected"] is not None:
        return entry["results"] >= entry["expected"]
    return list(entry["complete_seeds"]) == list(entry["seeds"])


def _in_paper_order(coverage: Sequence[Mapping]) -> list[Mapping]:
    """Coverage entries in the order of the results sections: the presets in the papers' order, then by name."""
    order = {name: i for i, name in enumerate(PRESET_ORDER)}
    return sorted(coverage, key=lambda e: (order.get(e["experiment"], len(order)), e["experiment"]))


def coverage_display(coverage: Sequence[Mapping]) -> Table:
    """The coverage table (`table.coverage`): per experiment its seeds, those complete, its results
    against those a finished sweep gives, and the wall time its runs recorded."""
    headers = ["experiment", "seeds", "complete seeds", "results", "run time"]
    body = []
    for e in _in_paper_order(coverage):
        if e["expected"] is None:
            results = f"{e['results']:,}"
        else:
            results = f"{e['results']:,} of {e['expected']:,}" + ("" if is_finished(e) else " (unfinished)")
        time = "" if e["run_seconds"] is None else format_seconds(e["run_seconds"])
        body.append(tuple(Cell(t) for t in (e["experiment"], _seeds_text(e["seeds"]), _seeds_text(e["complete_seeds"]),
                                            results, time)))
    return Table(tuple(headers), tuple(body))


def coverage_notice(coverage: Sequence[Mapping]) -> Notice | None:
    """A warning at the top of the page when some experiment is unfinished; None when all are."""
    open_ = [e for e in _in_paper_order(coverage) if not is_finished(e)]
    if not open_:
        return None
    names = ", ".join(e["experiment"] + (f" ({e['results']:,} of {e['expected']:,} results)" if e["expected"] else "")
                      for e in open_)
    return Notice("Unfinished:", f"{len(open_)} of {len(coverage)} experiments have not finished: {names}. Their "
                  "figures, tables and claims rest on the seeds and levels that have; “What these results cover” "
                  "says which.")


def build_document(
    results: pd.DataFrame, meta: dict, figures: Sequence[Path], kinds: Mapping[str, str] | None = None,
    reference: tuple | None = None, coverage: Sequence[Mapping] | None = None,
) -> Document:
    """The whole report as data: the scale, how much of each sweep the results hold (`coverage`, from
    `table.coverage`; None for a results table, which records no sweep), the run's metadata, the
    figures (PNG files of `figures`), one results section per experiment (a user's own included), the
    published numbers and the claims."""
    found = experiments(results, kinds)
    tables = summary_tables(results, kinds)
    comparison = published_comparison(results, kinds)
    claims = check_claims(results, kinds)
    intro = (
        Notice("Scale:", _scale_text(meta)),
        Paragraph("Accuracies in %, 2 decimals; “a ± b” is the mean ± standard deviation over seeds. "
                  "Density = fraction of weights kept (shown as % remaining); sparsity = fraction pruned."),
    )
    unfinished = coverage_notice(coverage) if coverage else None
    if unfinished is not None:
        intro = (intro[0], unfinished, *intro[1:])
    pngs = [Path(f) for f in figures if Path(f).suffix.lower() == ".png"]
    shown: tuple = tuple(Figure(png, figure_caption(png, found)) for png in pngs) or (Paragraph("No figures."),)
    results_blocks: list = [Paragraph(
        "Best pruned = the best pruned level (round or level p > 0) of the seed-mean curve. "
        f"“at L%” = the level nearest L% remaining (within a factor {LEVEL_TOLERANCE:g}; blank if none).",
        hover_hint="Hover a cell for the exact level.",
    )]
    for name, experiment in found.items():
        if experiment.kind == STABILITY:
            results_blocks += [Heading(name), Paragraph(_experiment_intro(experiment, results)),
                               *stability_display(results, experiment)]
        elif name in tables:
            results_blocks += [Heading(name), Paragraph(_experiment_intro(experiment, results)),
                               *explanations(experiment, results), summary_display(tables[name])]
    claim_blocks = (
        Paragraph("Paired differences across seeds (same seed, same level), 95% t interval; a claim holds when the "
                  "interval lies entirely on the claimed side, and needs at least 2 seeds."),
        claims_display(claims) if claims else Paragraph("No claim could be checked on these rows."),
    )
    sections = [] if coverage is None else [Section("What these results cover", (Paragraph(
        "Per experiment: the seeds its sweep records, those that hold every result the experiment gives, its "
        "results against those of a finished sweep, and the wall time its runs recorded, summed (a run that "
        "experiments share, such as the dense one, counts in each)."), coverage_display(coverage)))]
    sections += [
        Section("Run configuration and environment", (KeyValues(tuple(flatten_meta(meta))),)),
        Section("Figures", shown),
        Section("Results by experiment", tuple(results_blocks)),
        Section("Comparison with the published numbers", (comparison_display(comparison),)),
        Section("The papers' claims, checked", claim_blocks),
    ]
    if reference is not None:
        sections.append(Section("Beside the reference results", reference_blocks(*reference, found)))
    return Document(title=str(meta.get("title", DEFAULT_TITLE)), intro=intro, sections=tuple(sections))


def write_report(
    results: pd.DataFrame, out_dir: Path, meta: dict, figures: list[Path], kinds: Mapping[str, str] | None = None,
    reference: tuple[Path, pd.DataFrame] | None = None, coverage: Sequence[Mapping] | None = None,
) -> tuple[Path, Path]:
    """Write `report.html` (self-contained) and `report.md` into `out_dir`; return both paths.

    `kinds` maps experiment names to kind names (see `stats.experiments`): every experiment gets a
    section of the results, a user's own included. `reference`: (its path, its table): a section
    setting the results beside it (`compare.compare`), its figures in `out_dir/reference/` and the
    whole comparison in `out_dir/reference-comparison.csv`. `coverage`: see `build_document`.
    """
    from ..store.files import write_output  # the run store pulls in torch: only when writing

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TicketlabError(f"cannot create the report folder {out_dir}: {e.strerror or e}; pass a writable --out") from None
    section = None
    if reference is not None:
        from .compare import compare
        from .figures import make_reference_figures

        path, table = reference
        comparison = compare(results, table, kinds)
        drawn = make_reference_figures(comparison, experiments(results, kinds), out_dir / "reference")
        write_output(out_dir / "reference-comparison.csv", lambda tmp: comparison.to_csv(tmp, index=False))
        compared = set(comparison["experiment"])
        missing = [name for name in experiments(results, kinds) if name not in compared]
        section = (comparison, str(path), missing, drawn)
    doc = build_document(results, meta, figures, kinds, section, coverage)
    page = render_html(doc)  # before any file is written: a missing jinja2 leaves no half report
    markdown = render_markdown(doc, out_dir)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    # each file appears whole or not at all (an interrupted write leaves no partial report.html)
    write_output(html_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    write_output(md_path, lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    return html_path, md_path
