"""The report as data, rendered twice: a self-contained HTML page and its Markdown twin.

`report.build_document` decides what the report says (sections of headings, paragraphs, tables,
figures and key/value lists); this module only says how each block looks in HTML (through the
Jinja2 template `templates/report.html.j2`, autoescaped) and in Markdown. Both renderers walk the
same `Document`, so the two files carry the same sections, numbers and text.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Union

from ..core.errors import TicketlabError

TONES = ("holds", "fails", "undecided")  # the verdict colours of the HTML page


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional note (the HTML page shows it on hover) and tone."""

    text: str
    note: str = ""
    tone: str = ""  # one of TONES, or "" for plain text


@dataclass(frozen=True)
class Heading:
    """A heading inside a section (level 3: one experiment of the results)."""

    text: str
    level: int = 3
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; `hover_hint` is a sentence about the HTML page's cell notes, which Markdown lacks."""

    text: str
    hover_hint: str = ""
    kind: ClassVar[str] = "paragraph"


@dataclass(frozen=True)
class Notice:
    """A highlighted line with a bold label (the report's scale)."""

    label: str
    text: str
    kind: ClassVar[str] = "notice"


@dataclass(frozen=True)
class Table:
    """Headers and rows of cells."""

    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    kind: ClassVar[str] = "table"


@dataclass(frozen=True)
class KeyValues:
    """(key, value) pairs, shown as a two-column table."""

    items: tuple[tuple[str, str], ...]
    headers: tuple[str, str] = ("key", "value")
    kind: ClassVar[str] = "keyvalues"


@dataclass(frozen=True)
class Figure:
    """A PNG file and its caption (embedded in HTML, linked from Markdown)."""

    path: Path
    caption: str
    kind: ClassVar[str] = "figure"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def alt(self) -> str:
        return self.path.stem


Block = Union[Heading, Paragraph, Notice, Table, KeyValues, Figure]


@dataclass(frozen=True)
class Section:
    """A titled part of the report (a level-2 heading) and its blocks."""

    heading: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    """The whole report: a title, blocks before the first section, and the sections."""

    title: str
    intro: tuple[Block, ...]
    sections: tuple[Section, ...]

    def headings(self) -> list[str]:
        """Every section and sub-heading, in order (what both renderings must show)."""
        out: list[str] = []
        for section in self.sections:
            out.append(section.heading)
            out += [b.text for b in section.blocks if isinstance(b, Heading)]
        return out


# ---------------------------------------------------------------------------------------------
# HTML


def png_data_uri(path: Path) -> str:
    """The file as a data URI, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(doc: Document) -> str:
    """The report as one self-contained HTML page (figures embedded as PNG data URIs)."""
    try:
        import jinja2
    except ImportError:
        raise TicketlabError('the HTML report needs jinja2: pip install "ticketlab[plot]"') from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ticketlab.analysis", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["data_uri"] = png_data_uri
    return env.get_template("report.html.j2").render(doc=doc)


# ---------------------------------------------------------------------------------------------
# Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(headers: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_md_escape(t) for t in row) + " |" for row in rows]
    return lines


def _md_block(block: Block, relative_to: Path) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text]
    if isinstance(block, Paragraph):
        return [block.text]
    if isinstance(block, Notice):
        return [f"> **{block.label}** {block.text}"]
    if isinstance(block, Table):
        return _md_table(block.headers, tuple(tuple(c.text for c in row) for row in block.rows))
    if isinstance(block, KeyValues):
        return _md_table(block.headers, block.items)
    if isinstance(block, Figure):
        rel = Path(os.path.relpath(Path(block.path).resolve(), Path(relative_to).resolve())).as_posix()
        return [f"![{block.alt}]({rel})", "", f"*{block.name}*: {block.caption}"]
    raise TypeError(f"not a report block: {block!r}")


def render_markdown(doc: Document, relative_to: Path) -> str:
    """The report as Markdown, figures linked by path relative to `relative_to` (the .md file's folder)."""
    parts: list[str] = [f"# {doc.title}", ""]
    for block in doc.intro:
        parts += [*_md_block(block, relative_to), ""]
    for section in doc.sections:
        parts += [f"## {section.heading}", ""]
        for block in section.blocks:
            parts += [*_md_block(block, relative_to), ""]
    return "\n".join(parts)
