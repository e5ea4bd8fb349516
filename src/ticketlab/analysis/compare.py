"""A user's results beside a reference table (by default the full-scale reference results that ship
with ticketlab): per experiment, curve and level, the user's seed mean beside the reference's mean and
min–max range over its seeds, flagged where outside; and figures overlaying the user's curves on the
reference's bands.

Rows are matched on what names a point of a curve: the experiment, net and data set, the kind's curve
and panel columns (`Curves.keys`, `Curves.panels`) and the level (`round`: a pruning round, or a one-shot
level p, which the quick and full scales share). Whatever the user ran, a subset of seeds, of
criteria or of levels, is compared where the reference has the same point; the rest is listed as
not in the reference.
"""
from __future__ import annotations

import gzip
import io
from importlib import resources
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..core.errors import TicketlabError
from .stats import experiment_rows, experiments

# The shipped reference table: ticketlab/analysis/reference/<name>.csv.gz (package data).
REFERENCE_NAME = "fc-mnist-full"


def packaged_reference() -> Path | None:
    """The reference results table shipped in the package, or None if this release ships none."""
    path = resources.files("ticketlab.analysis") / "reference" / f"{REFERENCE_NAME}.csv.gz"
    return Path(str(path)) if path.is_file() else None


def read_results_csv(path: Path) -> pd.DataFrame:
    """A results table written by `ticketlab results --csv` (gzipped if the name ends in .gz), as the
    figures and the report read a store's (`table.rows_frame`): names and flags as text or None,
    numbers as floats, seed and round as given."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        frame = pd.read_csv(io.BytesIO(raw), keep_default_na=False, na_values=[""], dtype=str)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise TicketlabError(f"cannot read results table {path}: {e}; give a file written by ticketlab results --csv") from None
    if "experiment" not in frame.columns or "seed" not in frame.columns:
        raise TicketlabError(f"{path} is not a ticketlab results table (no experiment and seed columns): give a file "
                             "written by ticketlab results --csv")
    return _typed(frame)


_TEXT = ("experiment", "net", "dataset", "criterion", "mask1", "mask0", "base", "start", "learner", "run_dir")
_BOOL = ("dwr",)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for column in frame.columns:
        values = frame[column]
        if column in _TEXT:
            out[column] = values.astype(object).where(values.notna(), None)
        elif column in _BOOL:
            out[column] = values.map(lambda v: None if pd.isna(v) else v.strip().lower() == "true").astype(object)
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            if numbers.notna().sum() == values.notna().sum():
                whole = numbers.dropna()
                if column in ("seed", "round", "remaining_weights", "early_stop_iteration", "base_iterations") \
                        and numbers.notna().all() and (whole == whole.round()).all():
                    out[column] = numbers.astype("int64")
                else:
                    out[column] = numbers.astype(float)
            else:
                out[column] = values.astype(object).where(values.notna(), None)
    return pd.DataFrame(out)


def _point_columns(experiment, rows: pd.DataFrame) -> list[str]:
    curves = experiment.curves
    return [c for c in dict.fromkeys(("net", "dataset", *curves.panels, *curves.keys, "round")) if c in rows]


def compare(ours: pd.DataFrame, reference: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per point (experiment, net, dataset, curve, level) of `ours` that `reference` also has:
    the user's seed mean and seed count, the reference's mean, min, max and seed count (all in %), the
    % of weights remaining, and `outside` (the user's mean outside the reference's min–max range).
    Points the reference lacks are left out (`missing_from_reference` counts them)."""
    found = experiments(ours, kinds)
    theirs = experiments(reference, kinds)
    parts = []
    for name, experiment in found.items():
        if name not in theirs or theirs[name].kind != experiment.kind:
            continue
        value = experiment.curves.value
        mine = experiment_rows(ours, experiment)
        ref = experiment_rows(reference, theirs[name])
        if mine.empty or ref.empty or value not in mine or value not in ref:
            continue
        keys = _point_columns(experiment, mine)
        if any(k not in ref for k in keys):
            continue
        mine, ref = mine.dropna(subset=[value]), ref.dropna(subset=[value])
        a = _per_point(mine, keys, value, "ours")
        b = _per_point(ref, keys, value, "reference")
        joined = a.merge(b, on=keys, how="inner")
        if joined.empty:
            continue
        joined.insert(0, "experiment", name)
        joined["outside"] = (joined["ours_mean"] < joined["reference_min"] - 1e-9) | \
                            (joined["ours_mean"] > joined["reference_max"] + 1e-9)
        parts.append(joined)
    if not parts:
        return pd.DataFrame(columns=["experiment", "net", "dataset", "round", "remaining_percent", "ours_mean",
                                     "ours_seeds", "reference_mean", "reference_min", "reference_max",
                                     "reference_seeds", "outside"])
    return pd.concat(parts, ignore_index=True)


def _per_point(rows: pd.DataFrame, keys: list[str], value: str, who: str) -> pd.DataFrame:
    """Per point: the seed mean (each seed's duplicates averaged first), min, max and seed count, in %."""
    per_seed = rows.groupby([*keys, "seed"], dropna=False, sort=False)[[value, "remaining_percent"]].mean().reset_index()
    group = per_seed.groupby(keys, dropna=False, sort=False)
    out = pd.DataFrame({
        f"{who}_mean": group[value].mean() * 100.0,
        f"{who}_seeds": group[value].count(),
        "remaining_percent": group["remaining_percent"].mean(),
    })
    if who == "reference":
        out["reference_min"] = group[value].min() * 100.0
        out["reference_max"] = group[value].max() * 100.0
        out = out.drop(columns=["remaining_percent"])
    return out.reset_index()


def missing_from_reference(ours: pd.DataFrame, reference: pd.DataFrame, kinds: Mapping[str, str] | None = None) -> list[str]:
    """The user's experiments the reference has no point of (their own sweeps, another net, ...)."""
    compared = set(compare(ours, reference, kinds)["experiment"])
    return [name for name in experiments(ours, kinds) if name not in compared]
