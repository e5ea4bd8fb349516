"""The report: its document, both renderings and their numbers, on the synthetic results table."""
from __future__ import annotations

import base64
import html
import math
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from synthetic import png_size, synthetic_results, toy_iterative, toy_supermask
from ticketlab.analysis.figures import make_figures
from ticketlab.analysis.document import render_html, render_markdown
from ticketlab.analysis.report import build_document, published_comparison, summary_tables, write_report
from ticketlab.core.errors import TicketlabError

META = {
    "scale": "quick: fewer rounds, shorter training; qualitative only",
    "seeds": [0, 1, 2],
    "nets": ["fc"],
    "environment": {"torch": "2.13.0", "device": "cpu"},
    "note": "<script>alert(1)</script> & more",
}


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return synthetic_results()


@pytest.fixture(scope="module")
def report(results, tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    # A few figures are enough to check embedding; test_figures checks every figure.
    subset = results[results["experiment"].isin(["criteria", "large-final-signs"])]
    figures = make_figures(subset, out / "figures", formats=("png",))
    html_path, md_path = write_report(results, out, META, figures)
    return html_path, md_path, figures


def _mean_std_at(rows: pd.DataFrame, value: str, round_: int) -> str:
    per_seed = rows[rows["round"] == round_].groupby("seed")[value].mean() * 100
    return f"{per_seed.mean():.2f} ± {per_seed.std():.2f}"


def test_html_embeds_real_pngs(report):
    html_path, _, figures = report
    page = html_path.read_text(encoding="utf-8")
    blobs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(blobs) == len([f for f in figures if f.suffix == ".png"]) == 3
    for blob in blobs:
        path = html_path.parent / "decoded.png"
        path.write_bytes(base64.b64decode(blob))
        w, h = png_size(path)
        assert w >= 400 and h >= 300


def test_markdown_links_existing_pngs(report):
    _, md_path, _ = report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text(encoding="utf-8"))
    assert len(links) == 3
    for link in links:
        assert not Path(link).is_absolute()
        png_size(md_path.parent / link)


def test_scale_meta_and_escaping(report):
    page = report[0].read_text(encoding="utf-8")
    assert re.search(r'<div class="scale">.*quick: fewer rounds, shorter training; qualitative only', page)
    assert "environment.torch" in page and "2.13.0" in page and "0, 1, 2" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


def test_numbers_in_the_page_equal_the_table(results, report):
    page = report[0].read_text(encoding="utf-8")
    value = "test_accuracy_at_early_stop"
    crit = results[results["experiment"] == "criteria"]
    # Dense baseline: round-0 rows, each seed once.
    assert f"dense baseline (round 0): {_mean_std_at(crit, value, 0)}%" in page
    # large_final at the 17% column: round 8 is at 16.78% remaining.
    lf = crit[crit["criterion"] == "large_final"]
    expected_17 = _mean_std_at(lf, value, 8)
    assert expected_17 in page
    row = summary_tables(results)["criteria"].set_index("criterion").loc["large_final"]
    assert f"{row['at_17_mean']:.2f} ± {row['at_17_std']:.2f}" == expected_17
    assert math.isnan(row["at_7_mean"])  # nearest level 10.74% is more than 1.5x away from 7%
    # Best pruned level: accuracy falls every round here, so round 1 (80%).
    assert f"<td>{_mean_std_at(lf, value, 1)}</td><td>80.00</td>" in page
    # Best supermask accuracy of large_final_same_sign at init (original init, no DWR).
    sm = results[(results["experiment"] == "supermask-at-init") & (results["criterion"] == "large_final_same_sign")
                 & (results["start"] == "init") & results["dwr"].eq(False)]
    curve = sm.groupby("round")["test_accuracy_at_init"].mean()
    best_round = int(curve.idxmax())
    assert best_round == 6
    expected_best = _mean_std_at(sm, "test_accuracy_at_init", best_round)
    assert expected_best in page
    table = summary_tables(results)["supermask-at-init"]
    pick = table[(table["criterion"] == "large_final_same_sign") & (table["start"] == "init") & (~table["dwr"])]
    assert f"{pick['best_mean'].iloc[0]:.2f} ± {pick['best_std'].iloc[0]:.2f}" == expected_best
    assert pick["best_remaining"].iloc[0] == pytest.approx(100 * 0.8**6, abs=0.01)


def test_published_comparison(results, report):
    table = published_comparison(results).set_index("quantity")
    dense = table.loc["Dense FC, MNIST: test accuracy at early stop"]
    ours = results[(results["experiment"].isin(["criteria"])) & (results["round"] == 0)]
    expected = ours.groupby("seed")["test_accuracy_at_early_stop"].mean().mean() * 100
    assert dense["ours"] == pytest.approx(expected)
    assert dense["difference"] == pytest.approx(expected - 97.92)
    untrained = table.loc["Untrained dense FC, MNIST: test accuracy"]
    assert untrained["ours"] == pytest.approx(9.5)
    assert table.loc["Trained dense Conv4, CIFAR-10: test accuracy at early stop", "status"] == "not run"
    page = report[0].read_text(encoding="utf-8")
    assert f"<td>{expected:.2f}</td><td>{expected - 97.92:+.2f}</td>" in page
    assert "not run" in page


def test_report_without_optional_experiments(tmp_path):
    results = synthetic_results(seeds=(0,), experiments=("criteria",))
    html_path, md_path = write_report(results, tmp_path, {"scale": "tiny"}, [])
    page = html_path.read_text(encoding="utf-8")
    assert "insufficient data" in page and "not run" in page and "No figures." in page
    assert md_path.read_text(encoding="utf-8").startswith("# ")


def test_rows_without_their_kinds_value_are_skipped(tmp_path):
    # e.g. a table of the learned-supermask preset's name written by something else (no `learner`
    # column): its rows are skipped, and the learned-supermask comparison rows say "not run"
    learned = pd.DataFrame({
        "experiment": "learned-supermask", "net": "conv2", "dataset": "cifar10", "seed": [0, 1, 2, 3],
        "round": 0, "remaining_percent": 100.0, "dwr": True, "test_accuracy": [0.65, 0.66, 0.67, 0.68],
    })
    results = pd.concat([synthetic_results(seeds=(0, 1), experiments=("mask0-actions",)), learned], ignore_index=True)
    table = published_comparison(results)
    learned_rows = table[table["quantity"].str.contains("Learned supermask")]
    assert len(learned_rows) == 3 and (learned_rows["status"] == "not run").all()
    assert set(summary_tables(results)) == {"mask0-actions"}
    assert [p.name for p in make_figures(results, tmp_path, formats=("png",))] == ["mask0-actions.png"]


def test_a_users_experiments_get_report_sections(tmp_path):
    results = pd.concat([synthetic_results(seeds=(0, 1), experiments=("criteria",)), toy_iterative("my-exp"),
                         toy_supermask("my-sm")], ignore_index=True)
    figures = make_figures(results, tmp_path / "figures", formats=("png",))
    html_path, md_path = write_report(results, tmp_path, {"scale": "tiny"}, figures)
    page, md = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    row = summary_tables(results)["my-exp"].set_index("criterion").loc["large_final"]
    expected = f"{row['at_17_mean']:.2f} ± {row['at_17_std']:.2f}"
    in_html = page.split("<h3>my-exp</h3>")[1].split("<h3>")[0]
    in_md = md.split("### my-exp\n")[1].split("\n### ")[0]
    for section in (in_html, in_md):
        assert "Test accuracy at early stop, in %. FC dense baseline (round 0):" in section
        assert expected in section
    assert "<h3>my-sm</h3>" in page and "### my-sm" in md
    # their figures, captioned from their kind
    assert "](figures/my-exp.png)" in md and "](figures/my-sm.png)" in md
    assert "my-sm (supermask): test accuracy at initialisation" in page
    assert "my-sm (supermask): test accuracy at initialisation" in md


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _html_text(page: str) -> str:
    body = re.sub(r"</?(strong|span)[^>]*>", "", page.split("</head>", 1)[1])
    return html.unescape(re.sub(r"<[^>]+>", " ", body))  # attributes (figure data, notes) go with the tags


def _markdown_text(md: str) -> str:
    return re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", md).replace("\\|", "|")  # image links: their file is the caption's


def test_html_and_markdown_say_the_same(results, report, tmp_path):
    doc = build_document(results, META, report[2])
    page, md = render_html(doc), render_markdown(doc, tmp_path)
    headings = doc.headings()
    assert "Results by experiment" in headings and "supermask-at-init" in headings
    assert [html.unescape(h) for h in re.findall(r"<h[23]>([^<]*)</h[23]>", page)] == headings
    assert re.findall(r"^#{2,3} (.*)$", md, flags=re.M) == headings
    numbers = NUMBER.findall(_html_text(page))
    assert len(numbers) > 1000
    assert numbers == NUMBER.findall(_markdown_text(md))
    # the text too, up to Markdown's marks and the one sentence about the page's hover notes
    plain = re.sub(r"^(#+|>) ", "", _markdown_text(md), flags=re.M)
    plain = re.sub(r"^\|( --- \|)+$", "", plain, flags=re.M)
    plain = re.sub(r"\*\*?([^*\n]+?)\*\*?", r"\1", plain)
    plain = re.sub(r"(^\| | \|$)", "", plain, flags=re.M).replace(" | ", " ")
    assert _html_text(page).replace("Hover a cell for the exact level.", "").split() == plain.split()


def test_no_jinja2_no_report(results, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(TicketlabError, match="needs jinja2"):
        write_report(results, tmp_path, META, [])
    assert list(tmp_path.iterdir()) == []


def test_the_presets_beyond_the_paper_get_their_sections_and_captions(tmp_path):
    from synthetic import beyond_results
    from ticketlab.analysis.document import Heading, Paragraph, Table
    from ticketlab.analysis.style import DENSITY_CAPTION

    results = beyond_results()
    figures = make_figures(results, tmp_path, formats=("png",))
    doc = build_document(results, META, figures)
    section = next(s for s in doc.sections if s.heading == "Results by experiment")
    blocks = list(section.blocks)
    for name, note, key in (("late-rewinding", "rewound to the dense run's weights", "rewind iteration"),
                            ("global-vs-layer", "one ranking of every prunable weight", "scope")):
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == name)
        assert isinstance(blocks[at + 1], Paragraph) and note in blocks[at + 1].text
        table = next(b for b in blocks[at:] if isinstance(b, Table))
        assert key in table.headers
    captions = {Path(f.path).stem: f.caption for s in doc.sections for f in s.blocks if hasattr(f, "caption")}
    assert captions["global-vs-layer_densities"] == DENSITY_CAPTION
    assert captions["late-rewinding"].startswith("Late rewinding")


def test_a_stability_preset_gets_its_numbers_and_the_paired_differences(tmp_path):
    from synthetic import stability_results
    from ticketlab.analysis.document import Heading, Paragraph, Table

    results = stability_results()
    doc = build_document(results, META, make_figures(results, tmp_path, formats=("png",)))
    section = next(s for s in doc.sections if s.heading == "Results by experiment")
    blocks = list(section.blocks)
    at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "stability-tickets")
    assert isinstance(blocks[at + 1], Paragraph) and "percentage points of test error" in blocks[at + 1].text
    numbers, pairs = [b for b in blocks[at:] if isinstance(b, Table)][:2]
    assert "instability (pp)" in numbers.headers and len(numbers.rows) == 27  # 9 starts x 3 k
    first = {h: c.text for h, c in zip(numbers.headers, numbers.rows[0])}
    assert first["mask"] == "dense" and first["k"] == "0" and first["instability (pp)"] == "3.00 ± 0.00"
    assert pairs.headers[3] == "random − large_final (pp)" and len(pairs.rows) == 12
    assert pairs.rows[0][3].text == "+1.10"
    claims = next(s for s in doc.sections if s.heading == "The papers' claims, checked")
    assert "large_final tickets are more stable than random masks [FC]" in str(claims.blocks)
    captions = {Path(f.path).stem: f.caption for s in doc.sections for f in s.blocks if hasattr(f, "caption")}
    assert captions["stability-tickets"].startswith("Instability") and "along the straight line" in \
        captions["stability-tickets_path"]
    assert "stability-tickets" not in summary_tables(results)


def test_a_chain_with_no_pruned_round_yet_has_no_best(results):
    """An unfinished run holds a mask action's round 0 (the shared dense run) before any of its
    rounds: its "best pruned" is blank, not the dense accuracy at 100%."""
    rows = results[results["experiment"] == "mask1-actions"]
    cut = rows[(rows["mask1"] == "rewind") | (rows["round"] == 0)]
    table = summary_tables(cut)["mask1-actions"].set_index("mask1")
    assert not math.isnan(table.loc["rewind", "best_mean"])
    others = table.drop(index="rewind")
    assert len(others) > 0 and others[["best_mean", "best_std", "best_remaining"]].isna().all().all()
    assert others["n_seeds"].min() >= 1
