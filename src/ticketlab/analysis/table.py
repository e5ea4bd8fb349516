"""The results table: one row per result of every sweep in a directory (`ticketlab results`).

Each sweep's kind reads its rows (`ExperimentKind.result_rows`). A finished run whose files are
damaged (unreadable JSON, a field missing or of the wrong type) is reported in one line naming the
run and the remedy; fields a run has beyond those the table reads are ignored, so a store written by
a newer ticketlab still reads.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

from ..core.errors import TicketlabError
from ..experiments.kinds import get_kind, kind_names
from ..experiments.manifests import manifest_seeds, manifest_specs, read_manifests, spec_from_manifest

# Every row names its experiment and where it ran; each experiment kind adds the columns it fills;
# the last column names the run (its folder in the store) each row was read from.
LEADING_COLUMNS = ("experiment", "net", "dataset", "seed")
TRAILING_COLUMNS = ("run_dir",)


def table_columns(rows: list[dict[str, Any]] | None = None) -> tuple[str, ...]:
    """The results table's columns: the leading ones, then each registered kind's new ones in
    registration order (built in: iterative, supermask, learned_supermask), with the optional ones a
    kind fills only for some sweeps (`optional_columns`), then `run_dir`. Given `rows`, only the
    columns some row fills: a store of one kind gets no blank columns of the others."""
    always = [c for name in kind_names() if not get_kind(name).columns_when_present for c in get_kind(name).columns]
    sometimes = [c for name in kind_names() for c in get_kind(name).optional_columns] + \
        [c for name in kind_names() if get_kind(name).columns_when_present for c in get_kind(name).columns]
    columns = tuple(dict.fromkeys(LEADING_COLUMNS + tuple(always) + tuple(sometimes) + TRAILING_COLUMNS))
    if rows is None:
        return columns
    return tuple(c for c in columns if c in LEADING_COLUMNS or any(r.get(c) is not None for r in rows))


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
        for spec in manifest_specs(record):  # every seed any slice recorded
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
        specs = manifest_specs(record)
        spec = specs[0]
        what = f"sweep {spec.name} ({spec.net}, {spec.scale})"
        kind = get_kind(spec.kind)
        if record["status"] != "complete":
            open_seeds = [seed for seed, entry in manifest_seeds(record).items() if entry["status"] != "complete"]
            notes.append(f"{what} is {record['status']}, not complete (seed{'s' if len(open_seeds) != 1 else ''} "
                         f"{seed_ranges(open_seeds)}): its finished runs are in the table; run the same `ticketlab "
                         "sweep` again to finish it")
            continue
        counts = [kind.expected_results(s) for s in specs]
        if None not in counts:
            expected = sum(counts)
            found = sum(len(kind.result_rows(s, Path(root))) for s in specs)
            if found < expected:
                notes.append(f"{what} is complete, but {expected - found} of its {expected} runs are missing from the "
                             "store (deleted?): run the same `ticketlab sweep` again to train them")
    return notes


def coverage(root: Path, found: list[tuple[str, int, str]]) -> list[dict[str, Any]]:
    """How much of each sweep recorded in `root` its results hold, from `found`: one (experiment, seed,
    run_dir) per row of the results table (`result_rows`). One dict per sweep, in manifest order:

    experiment, kind, net, scale; `seeds`: the seeds its manifests record; `complete_seeds`: those with
    every result their kind expects (`ExperimentKind.expected_results`; a kind that cannot say: those
    whose job finished); `results` and `expected` (None: not known in advance); `run_seconds`: the wall
    time its runs recorded, summed (a run shared with another sweep, such as the dense one, counts in
    each), None when no run recorded one.
    """
    root = Path(root)
    by_seed = Counter((experiment, int(seed)) for experiment, seed, _ in found)
    dirs: dict[str, set[str]] = {}
    for experiment, _, run in found:
        dirs.setdefault(experiment, set()).add(run)
    out = []
    for record in read_manifests(root):
        spec, statuses = spec_from_manifest(record), manifest_seeds(record)
        kind = get_kind(spec.kind)
        seeds = sorted(statuses)
        expected = {seed: kind.expected_results(dataclasses.replace(spec, first_seed=seed, seeds=1)) for seed in seeds}

        def complete(seed: int) -> bool:
            if expected[seed] is None:
                return statuses[seed]["status"] == "complete"
            return by_seed[(spec.name, seed)] >= expected[seed]

        out.append({"experiment": spec.name, "kind": spec.kind, "net": spec.net, "scale": spec.scale, "seeds": seeds,
                    "complete_seeds": [seed for seed in seeds if complete(seed)],
                    "results": sum(by_seed[(spec.name, seed)] for seed in seeds),
                    "expected": None if None in expected.values() else sum(expected.values()),
                    "run_seconds": _recorded_seconds(root, dirs.get(spec.name, ()))})
    return out


def _recorded_seconds(root: Path, runs) -> float | None:
    """The wall time the runs' summaries record, summed (a cohort member records its share of the cohort's)."""
    from ..store.files import SUMMARY, read_json

    seconds = []
    for run in runs:
        try:
            wall = read_json(root / run / SUMMARY).get("wall_seconds")
        except (TicketlabError, OSError, AttributeError):
            continue
        if isinstance(wall, (int, float)) and math.isfinite(wall):
            seconds.append(float(wall))
    return sum(seconds) if seconds else None


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as ranges: [0, 1, 2, 4] -> '0-2, 4'."""
    parts: list[list[int]] = []
    for seed in sorted(seeds):
        if parts and seed == parts[-1][-1] + 1:
            parts[-1].append(seed)
        else:
            parts.append([seed])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)


# Names (categories), counts (nullable ints), flags (nullable bools); every other column is a float.
CATEGORY_COLUMNS = ("experiment", "net", "dataset", "criterion", "mask1", "mask0", "base", "start", "scope", "mask")
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
    rows = result_rows(root)
    return _pandas().DataFrame(rows, columns=list(table_columns(rows)))


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
