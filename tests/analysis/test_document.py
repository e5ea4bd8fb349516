"""The report's document model and its two renderings (HTML through the Jinja2 template, Markdown)."""
from __future__ import annotations

import base64
import re
import sys

import pytest

from synthetic import png_size
from ticketlab.analysis.document import (
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
from ticketlab.core.errors import TicketlabError

# The smallest valid PNG (1x1): figures are embedded from their bytes.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def doc(tmp_path) -> Document:
    (tmp_path / "figures").mkdir()
    png = tmp_path / "figures" / "my-exp.png"
    png.write_bytes(PNG)
    return Document(
        title="A <b>report</b>",
        intro=(Notice("Scale:", "quick & small"), Paragraph("Accuracies in %.")),
        sections=(
            Section("Run configuration", (KeyValues((("seeds", "0, 1"), ("note", "<script>x</script>"))),)),
            Section("Figures", (Figure(png, "one curve per criterion"),)),
            Section("Results", (
                Paragraph("Best pruned = the best level.", hover_hint="Hover a cell for the exact level."),
                Heading("my-exp"),
                Table(("criterion", "at 17% (%)", "verdict"),
                      ((Cell("large_final"), Cell("97.12 ± 0.33", note="at 16.78% remaining"),
                        Cell("holds", tone="holds")),
                       (Cell("a|b"), Cell(""), Cell("does not hold", tone="fails")))),
            )),
        ),
    )


def test_html_is_escaped_and_self_contained(doc):
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>A &lt;b&gt;report&lt;/b&gt;</title>" in page
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert '<div class="scale"><strong>Scale:</strong> quick &amp; small</div>' in page
    assert '<td title="at 16.78% remaining">97.12 ± 0.33</td>' in page
    assert '<td><span class="holds">holds</span></td>' in page and '<span class="fails">does not hold</span>' in page
    assert "<p>Best pruned = the best level. Hover a cell for the exact level.</p>" in page
    (blob,) = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="my-exp">', page)
    assert base64.b64decode(blob) == PNG
    assert "<figcaption><strong>my-exp.png</strong>: one curve per criterion</figcaption>" in page


def test_markdown_links_figures_relative_to_its_folder(doc, tmp_path):
    md = render_markdown(doc, tmp_path)
    assert md.startswith("# A <b>report</b>\n")
    assert "> **Scale:** quick & small" in md
    assert "![my-exp](figures/my-exp.png)" in md and "*my-exp.png*: one curve per criterion" in md
    png_size(tmp_path / "figures" / "my-exp.png")
    assert "| large_final | 97.12 ± 0.33 | holds |" in md and "| a\\|b |  | does not hold |" in md
    assert "Hover" not in md  # Markdown has no cell notes to hover


def test_both_renderings_carry_the_documents_headings(doc, tmp_path):
    assert doc.headings() == ["Run configuration", "Figures", "Results", "my-exp"]
    page, md = render_html(doc), render_markdown(doc, tmp_path)
    assert re.findall(r"<h[23]>([^<]*)</h[23]>", page) == doc.headings()
    assert re.findall(r"^#{2,3} (.*)$", md, flags=re.M) == doc.headings()


def test_html_without_jinja2_says_how_to_install_it(doc, monkeypatch):
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now raises ImportError
    with pytest.raises(TicketlabError, match=r'the HTML report needs jinja2: pip install "ticketlab\[plot\]"'):
        render_html(doc)
