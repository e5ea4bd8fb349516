"""The results table: one row per result of every sweep in a directory (`ticketlab results`).

Each sweep's kind reads its rows (`ExperimentKind.result_rows`). A finished run whose files are
damaged (unreadable JSON, a field missing or of the wrong type) is reported in one line naming the
run and the remedy; fields a run has beyond those the table reads are ignored, so a store written by
a newer ticketlab still reads.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..core.errors import TicketlabError
from ..experiments.kinds import get_kind, kind_names
from ..experiments.manifests import read_manifests, spec_from_manifest

# Every row names its experiment and where it ran; each experiment kind adds the columns it fills.
LEADING_COLUMNS = ("experiment", "net", "dataset", "seed")


def table_columns(rows: list[dict[str, Any]] | None = None) -> tuple[str, ...]:
    """The results table's columns: the leading ones, then each registered kind's new ones in
    registration order (built in: iterative, then supermask). Given `rows`, a kind's
    `optional_columns`, and the new columns of a kind marked `columns_when_present`, join only if some
    row fills them."""
    always = [c for name in kind_names() if not get_kind(name).columns_when_present for c in get_kind(name).columns]
    sometimes = [c for name in kind_names() for c in get_kind(name).optional_columns] + \
        [c for name in kind_names() if get_kind(name).columns_when_present for c in get_kind(name).columns]
    extra = [c for c in sometimes if c not in always and (rows is None or any(r.get(c) is not None for r in rows))]
    return tuple(dict.fromkeys(LEADING_COLUMNS + tuple(always) + tuple(extra)))


def result_rows(root: Path) -> list[dict[str, Any]]:
    """Every finished result of every sweep recorded in `root` (unfinished runs are left out), each
    read by its sweep's kind; one dict per row with every column of `table_columns()`."""
    root = Path(root)
    manifests = read_manifests(root)
    if not manifests:
        raise TicketlabError(f"no sweep found in {root}: run `ticketlab sweep PRESET --out {root}` first")
    columns = table_columns()
    rows: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for record in manifests:
        spec = spec_from_manifest(record)
        for found in get_kind(spec.kind).result_rows(spec, root):
            row = {c: found.get(c) for c in columns}
            key = tuple(row.values())  # two records of the same runs (a file swept at both scales) list them once
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def incomplete_sweeps(root: Path) -> list[str]:
    """One line for each sweep recorded in `root` that did not finish (its finished runs are in the
    table all the same), saying how to finish it."""
    notes = []
    for record in read_manifests(Path(root)):
        spec = spec_from_manifest(record)
        what = f"sweep {spec.name} ({spec.net}, {spec.scale})"
        kind = get_kind(spec.kind)
        expected = kind.expected_results(spec)
        if record["status"] != "complete":
            notes.append(f"{what} is {record['status']}, not complete: its finished runs are in the table; run the "
                         "same `ticketlab sweep` again to finish it")
        elif expected is not None:
            found = len(kind.result_rows(spec, Path(root)))
            if found < expected:
                notes.append(f"{what} is complete, but {expected - found} of its {expected} runs are missing from the "
                             "store (deleted?): run the same `ticketlab sweep` again to train them")
    return notes


# Names (categories), counts (nullable ints), flags (nullable bools); every other column is a float.
CATEGORY_COLUMNS = ("experiment", "net", "dataset", "criterion", "mask1", "mask0", "base", "start", "scope")
INT_COLUMNS = ("seed", "round", "remaining_weights", "early_stop_iteration", "base_iterations", "rewind_iteration")
BOOL_COLUMNS = ("dwr",)


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise TicketlabError("pandas is needed for DataFrames: pip install 'ticketlab[plot]'") from None
    return pd


def rows_frame(root: Path):
    """The results table as a DataFrame of plain object/float columns, as the figures and the report
    read it (their numbers do not depend on pandas' dtype rules)."""
    return _pandas().DataFrame(result_rows(root), columns=list(table_columns()))


def results_frame(root: Path):
    """The results table as a pandas DataFrame (columns: `table_columns()`), typed: names as
    categories, counts as nullable integers (`Int64`), `dwr` as nullable booleans, accuracies and
    losses as floats; a blank cell is <NA> (NaN for floats). A kind's own columns get pandas' best
    type for their values."""
    pd = _pandas()
    frame = rows_frame(root)
    types: dict[str, str] = {}
    for column in frame.columns:
        if column in CATEGORY_COLUMNS:
            types[column] = "category"
        elif column in INT_COLUMNS:
            types[column] = "Int64"
        elif column in BOOL_COLUMNS:
            types[column] = "boolean"
    frame = frame.astype(types)
    others = [c for c in frame.columns if c not in types]
    for column in others:
        converted = pd.to_numeric(frame[column], errors="coerce") if frame[column].notna().any() else frame[column]
        if converted.notna().sum() == frame[column].notna().sum():  # numbers (or all blank): floats
            frame[column] = converted.astype("float64")
        else:
            frame[column] = frame[column].convert_dtypes()
    return frame


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The table as CSV text: a header of `table_columns(rows)`, empty cells for missing values."""
    columns = table_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else r[c] for c in columns])
    return buf.getvalue()


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned text; columns that are blank in every row are left out to fit a terminal."""
    shown = [c for c in table_columns() if any(_text(r.get(c)) for r in rows)]
    cells = [[_text(r.get(c)) for c in shown] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
