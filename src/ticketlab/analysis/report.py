"""The reproduction report: an HTML page (figures embedded) and a Markdown twin, from a results table.

Every number comes from `summary_tables`, `published_comparison` and `ticketlab.claims.check_claims`,
which tests can call to recompute what the page shows. Accuracies are shown in % with 2 decimals;
"x ± y" is the mean ± standard deviation over seeds.
"""
from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from .claims import Claim, check_claims
from ..core.errors import TicketlabError
from .stats import (
    LEVEL_TOLERANCE,
    LEVELS,
    Experiment,
    dense_baseline,
    experiment_rows,
    experiments,
    net_groups,
    published_comparison,
    summary_tables,
)
from .style import MEASURES, TRAINED_MEASURES, dataset_label, describe_figure, measure_text, net_label

DEFAULT_TITLE = "Deconstructing Lottery Tickets — reproduction report"


# ---------------------------------------------------------------------------------------------
# Formatting (shared by HTML and Markdown: a cell is (text, tooltip))


Cell = tuple[str, str]


def fmt_pct(value: float) -> str:
    """A % number with 2 decimals, blank for NaN."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def fmt_mean_std(mean: float, std: float) -> str:
    """'97.12 ± 0.33'; just the mean when there is no std (one seed); blank for NaN."""
    if mean is None or math.isnan(mean):
        return ""
    return f"{mean:.2f}" if std is None or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


_PAPER_NAMES = {"rewind": "lottery ticket", "freeze_init_zero_mask": "Variant 1", "freeze_init_zero_all": "Variant 2",
                "freeze_init_zero_random": "random control"}


def _key_text(column: str, value: Any) -> str:
    if column == "dwr":
        return "yes" if value else "no"
    paper = _PAPER_NAMES.get(str(value)) if column in ("mask1", "mask0") else None
    return f"{value} ({paper})" if paper else str(value)


_KEY_HEADERS = {"criterion": "criterion", "mask1": "mask-1 action", "mask0": "mask-0 action", "base": "base",
                "start": "start weights", "dwr": "DWR"}


def summary_display(table: pd.DataFrame) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of a summary table as the report shows it."""
    keys = [c for c in table.columns if c in _KEY_HEADERS]
    headers = ["net", "dataset", *(_KEY_HEADERS[k] for k in keys), "seeds", "best pruned (%)", "best at % remaining",
               *(f"at {level:g}% (%)" for level in LEVELS)]
    body = []
    for r in table.to_dict("records"):
        cells: list[Cell] = [(net_label(r["net"]), ""), (dataset_label(r["dataset"]), "")]
        cells += [(_key_text(k, r[k]), "") for k in keys]
        cells += [(str(r["n_seeds"]), ""), (fmt_mean_std(r["best_mean"], r["best_std"]), ""),
                  (fmt_pct(r["best_remaining"]), "")]
        for level in LEVELS:
            tag = f"at_{level:g}"
            where = r[f"{tag}_remaining"]
            tip = "" if math.isnan(where) else f"at {where:.2f}% remaining"
            cells.append((fmt_mean_std(r[f"{tag}_mean"], r[f"{tag}_std"]), tip))
        body.append(cells)
    return headers, body


def comparison_display(table: pd.DataFrame) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of the published-numbers comparison."""
    headers = ["quantity", "published (%)", "published note", "ours (%)", "ours − published (pp)", "our detail"]
    body = []
    for r in table.to_dict("records"):
        ours = "not run" if r["status"] == "not run" else fmt_pct(r["ours"])
        diff = "" if r["status"] == "not run" else f"{r['difference']:+.2f}"
        body.append([(r["quantity"], ""), (fmt_pct(r["published"]), ""), (r["published_note"], ""), (ours, ""),
                     (diff, ""), (r["detail"], "")])
    return headers, body


def verdict_text(claim: Claim) -> str:
    """'holds', 'does not hold' or 'insufficient data'."""
    return {True: "holds", False: "does not hold", None: "insufficient data"}[claim.holds]


def claims_display(claims: Sequence[Claim]) -> tuple[list[str], list[list[Cell]]]:
    """Headers and cells of the claims table."""
    headers = ["claim", "statement", "verdict", "mean paired diff (pp)", "95% CI (pp)", "n", "evidence"]
    body = []
    for c in claims:
        ci = "" if math.isnan(c.ci_low) else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        mean = "" if math.isnan(c.mean_diff) else f"{c.mean_diff:+.2f}"
        body.append([(c.name, ""), (c.statement, ""), (verdict_text(c), ""), (mean, ""), (ci, ""), (str(c.n), ""),
                     (c.evidence, "")])
    return headers, body


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


# ---------------------------------------------------------------------------------------------
# HTML


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1250px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scale{background:#fff4d6;border:2px solid #e0a800;padding:.7em 1em;font-size:1.15em;margin:1em 0}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;white-space:nowrap}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}
.holds{color:#126b12;font-weight:bold}.fails{color:#a11;font-weight:bold}.undecided{color:#777}
"""


def _html_table(headers: Sequence[str], body: Iterable[Sequence[Cell]], numeric_from: int = 0) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    rows = []
    for cells in body:
        tds = []
        for i, (text, tip) in enumerate(cells):
            attrs = ' class="num"' if numeric_from and i >= numeric_from else ""
            attrs += f' title="{e(tip)}"' if tip else ""
            css = {"holds": "holds", "does not hold": "fails", "insufficient data": "undecided"}.get(text)
            inner = f'<span class="{css}">{e(text)}</span>' if css else e(text)
            tds.append(f"<td{attrs}>{inner}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_caption(path: Path, found: Mapping[str, Experiment]) -> str:
    """A one-sentence caption for a file written by `make_figures`: a preset's own, else its kind's."""
    stem = Path(path).stem
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
    """One sentence naming the measure, plus the dense baselines where round 0 is the trained dense net."""
    value = experiment.curves.value
    if value not in TRAINED_MEASURES:
        return measure_text(value)
    rows = experiment_rows(results, experiment)
    parts = []
    for net, dataset, g in net_groups(rows):
        base = dense_baseline(g, value)
        if base is not None:
            sd = g[g["round"] == 0].groupby("seed")[value].mean().std() * 100.0
            parts.append(f"{net_label(net)} dense baseline (round 0): {fmt_mean_std(base, sd)}%")
    return measure_text(value) + " " + "; ".join(parts) + ("." if parts else "")


def render_html(results: pd.DataFrame, meta: dict, figures: Sequence[Path], tables: dict[str, pd.DataFrame],
                comparison: pd.DataFrame, claims: Sequence[Claim], kinds: Mapping[str, str] | None = None) -> str:
    """The whole report page, figures embedded as data URIs."""
    found = experiments(results, kinds)
    e = html.escape
    title = str(meta.get("title", DEFAULT_TITLE))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<div class="scale"><strong>Scale:</strong> {e(_scale_text(meta))}</div>',
        "<p>Accuracies in %, 2 decimals; “a ± b” is the mean ± standard deviation over seeds. "
        "Density = fraction of weights kept (shown as % remaining); sparsity = fraction pruned.</p>",
        "<h2>Run configuration and environment</h2>",
        _html_table(["key", "value"], [[(k, ""), (v, "")] for k, v in flatten_meta(meta)]),
        "<h2>Figures</h2>",
    ]
    pngs = [Path(f) for f in figures if Path(f).suffix.lower() == ".png"]
    if not pngs:
        parts.append("<p>No figures.</p>")
    for png in pngs:
        parts.append(
            f'<figure><img src="{_png_data_uri(png)}" alt="{e(png.stem)}">'
            f"<figcaption><strong>{e(png.name)}</strong>: {e(figure_caption(png, found))}</figcaption></figure>"
        )
    parts.append("<h2>Results by experiment</h2>")
    parts.append(
        "<p>Best pruned = the best pruned level (round or level p &gt; 0) of the seed-mean curve. "
        f"“at L%” = the level nearest L% remaining (within a factor {LEVEL_TOLERANCE:g}; blank if none); "
        "hover a cell for the exact level.</p>"
    )
    for experiment, table in tables.items():
        headers, body = summary_display(table)
        parts += [f"<h3>{e(experiment)}</h3>", f"<p>{e(_experiment_intro(found[experiment], results))}</p>",
                  _html_table(headers, body)]
    headers, body = comparison_display(comparison)
    parts += ["<h2>Comparison with the published numbers</h2>", _html_table(headers, body)]
    headers, body = claims_display(claims)
    parts += ["<h2>The papers' claims, checked</h2>",
              "<p>Paired differences across seeds (same seed, same level), 95% t interval; a claim holds when the "
              "interval lies entirely on the claimed side, and needs at least 2 seeds.</p>"]
    parts.append(_html_table(headers, body) if claims else "<p>No claim could be checked on these rows.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], body: Iterable[Sequence[Cell]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_md_escape(t) for t, _ in cells) + " |" for cells in body]
    return "\n".join(lines)


def render_markdown(results: pd.DataFrame, meta: dict, figures: Sequence[Path], out_dir: Path,
                    tables: dict[str, pd.DataFrame], comparison: pd.DataFrame, claims: Sequence[Claim],
                    kinds: Mapping[str, str] | None = None) -> str:
    """The report as Markdown, figures linked by path relative to `out_dir`."""
    found = experiments(results, kinds)
    title = str(meta.get("title", DEFAULT_TITLE))
    parts = [f"# {title}", "", f"> **Scale:** {_scale_text(meta)}", "",
             "Accuracies in %, 2 decimals; \"a ± b\" is the mean ± standard deviation over seeds.", "",
             "## Run configuration and environment", "",
             _md_table(["key", "value"], [[(k, ""), (v, "")] for k, v in flatten_meta(meta)]), "", "## Figures", ""]
    for png in (Path(f) for f in figures if Path(f).suffix.lower() == ".png"):
        rel = Path(os.path.relpath(png.resolve(), Path(out_dir).resolve())).as_posix()
        parts += [f"![{png.stem}]({rel})", "", f"*{png.name}*: {figure_caption(png, found)}", ""]
    parts += ["## Results by experiment", "",
              "Best pruned = the best pruned level (round or level p > 0) of the seed-mean curve; "
              f"\"at L%\" = the level nearest L% remaining (within a factor {LEVEL_TOLERANCE:g}; blank if none).", ""]
    for experiment, table in tables.items():
        headers, body = summary_display(table)
        parts += [f"### {experiment}", "", _experiment_intro(found[experiment], results), "", _md_table(headers, body), ""]
    headers, body = comparison_display(comparison)
    parts += ["## Comparison with the published numbers", "", _md_table(headers, body), ""]
    headers, body = claims_display(claims)
    parts += ["## The papers' claims, checked", "",
              "Paired differences across seeds (same seed, same level), 95% t interval; a claim holds when the "
              "interval lies entirely on the claimed side (n >= 2).", "",
              _md_table(headers, body) if claims else "No claim could be checked on these rows.", ""]
    return "\n".join(parts)


def write_report(
    results: pd.DataFrame, out_dir: Path, meta: dict, figures: list[Path], kinds: Mapping[str, str] | None = None
) -> tuple[Path, Path]:
    """Write `report.html` (self-contained) and `report.md` into `out_dir`; return both paths.

    `kinds` maps experiment names to kind names (see `stats.experiments`): every experiment gets a
    section of the results, a user's own included.
    """
    from ..store.files import write_output  # the run store pulls in torch: only when writing

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TicketlabError(f"cannot create the report folder {out_dir}: {e.strerror or e}; pass a writable --out") from None
    tables = summary_tables(results, kinds)
    comparison = published_comparison(results, kinds)
    claims = check_claims(results, kinds)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    page = render_html(results, meta, figures, tables, comparison, claims, kinds)
    markdown = render_markdown(results, meta, figures, out_dir, tables, comparison, claims, kinds)
    # each file appears whole or not at all (an interrupted write leaves no partial report.html)
    write_output(html_path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    write_output(md_path, lambda tmp: tmp.write_text(markdown, encoding="utf-8"))
    return html_path, md_path
