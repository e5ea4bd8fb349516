"""The results table: one row per result of every sweep in a directory (`ticketlab results`).

A finished run whose files are damaged (unreadable JSON, a field missing or of the wrong type) is
reported in one line naming the run and the remedy; fields a run has beyond those the table reads
are ignored, so a store written by a newer ticketlab still reads.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..core.errors import TicketlabError
from ..nets.specs import get_net
from ..store.runs import dense_identity, round_identity, run_dir
from ..store.files import SUMMARY, UnreadableFile, finished, read_json, reading_run
from ..experiments.supermask import read_rows, supermask_identity
from ..execution.sweep import bases_of, chains_of, read_manifests, spec_from_manifest

COLUMNS = (
    "experiment", "net", "dataset", "seed", "criterion", "mask1", "mask0", "round", "remaining_weights",
    "remaining_percent", "early_stop_iteration", "test_accuracy_at_early_stop", "val_loss_at_early_stop",
    "final_test_accuracy", "test_accuracy_at_init", "base", "base_iterations", "base_test_accuracy", "start", "dwr",
)


_NUMBER = (int, float)
SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "remaining_weights": (int,), "early_stop_iteration": (int,), "test_accuracy_at_early_stop": _NUMBER,
    "val_loss_at_early_stop": _NUMBER, "final_test_accuracy": _NUMBER,
}
SUPERMASK_SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {"base_iterations": (int,), "base_test_accuracy": _NUMBER}
SUPERMASK_ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "criterion": (str,), "round": (int,), "remaining_weights": (int,), "test_accuracy_at_init": _NUMBER,
    "start": (str,), "dwr": (bool,),
}
_TYPE_NAMES = {(int,): "an integer", _NUMBER: "a number", (str,): "a string", (bool,): "true or false"}


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def checked(record: Any, fields: dict[str, tuple[type, ...]], source: str) -> dict[str, Any]:
    """`record` if it is a JSON object with each of `fields` of its type; `UnreadableFile` naming the
    file (`source`, e.g. "summary.json": `reading_run` names the run) and the field otherwise.
    Other keys are left alone."""
    if not isinstance(record, dict):
        raise UnreadableFile(f"{source} holds a JSON {_json_type(record)}, not an object")
    for key, types in fields.items():
        if key not in record:
            raise UnreadableFile(f"{source} has no field {key!r}")
        value = record[key]
        # JSON true/false are Python bools, which are ints: only a bool field takes them.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise UnreadableFile(f"{source} has {key} = {value!r}, not {_TYPE_NAMES[types]}")
    return record


def _row(**values: Any) -> dict[str, Any]:
    return {c: values.get(c) for c in COLUMNS}


def _iterative_rows(root: Path, spec) -> list[dict[str, Any]]:
    net = get_net(spec.net)
    rows = []
    for seed in spec.seed_list:
        config = spec.train_config(seed)
        step = spec.round_step
        for chain in chains_of(spec):
            for r in spec.round_list:
                if r == 0:
                    path = run_dir(root, "dense", dense_identity(config))
                else:
                    path = run_dir(root, "round", round_identity(config, chain.criterion, chain.mask1, chain.mask0, r, step))
                if not finished(path, names=(SUMMARY,)):
                    continue
                with reading_run(path):
                    s = checked(read_json(path / SUMMARY), SUMMARY_FIELDS, SUMMARY)
                rows.append(_row(
                    experiment=spec.name, net=spec.net, dataset=config.resolved_dataset, seed=seed,
                    criterion=chain.criterion, mask1=chain.mask1, mask0=chain.mask0, round=r,
                    remaining_weights=s["remaining_weights"],
                    remaining_percent=100.0 * s["remaining_weights"] / net.prunable_weights,
                    early_stop_iteration=s["early_stop_iteration"],
                    test_accuracy_at_early_stop=s["test_accuracy_at_early_stop"],
                    val_loss_at_early_stop=s["val_loss_at_early_stop"],
                    final_test_accuracy=s["final_test_accuracy"],
                ))
    return rows


def _supermask_rows(root: Path, spec) -> list[dict[str, Any]]:
    net = get_net(spec.net)
    rows = []
    for seed in spec.seed_list:
        config = spec.train_config(seed)
        for base in bases_of(spec, config.resolved().iterations):
            ident = supermask_identity(config, base, spec.criteria, spec.level_list, spec.starts, spec.dwr)
            path = run_dir(root, "supermask", ident)
            if not finished(path, names=(SUMMARY, "rows.json")):
                continue
            with reading_run(path):
                summary, entries = read_rows(path)
                checked(summary, SUPERMASK_SUMMARY_FIELDS, SUMMARY)
                if not isinstance(entries, list):
                    raise UnreadableFile(f"rows.json holds a JSON {_json_type(entries)}, not an array")
                for e in entries:
                    checked(e, SUPERMASK_ROW_FIELDS, "rows.json")
            for e in entries:
                rows.append(_row(
                    experiment=spec.name, net=spec.net, dataset=config.resolved_dataset, seed=seed,
                    criterion=e["criterion"], round=e["round"], remaining_weights=e["remaining_weights"],
                    remaining_percent=100.0 * e["remaining_weights"] / net.prunable_weights,
                    test_accuracy_at_init=e["test_accuracy_at_init"], base=base,
                    base_iterations=summary["base_iterations"], base_test_accuracy=summary["base_test_accuracy"],
                    start=e["start"], dwr=e["dwr"],
                ))
    return rows


def result_rows(root: Path) -> list[dict[str, Any]]:
    """Every finished result of every sweep recorded in `root` (unfinished runs are left out)."""
    root = Path(root)
    manifests = read_manifests(root)
    if not manifests:
        raise TicketlabError(f"no sweep found in {root}: run `ticketlab sweep PRESET --out {root}` first")
    rows: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for record in manifests:
        spec = spec_from_manifest(record)
        for row in _iterative_rows(root, spec) if spec.kind == "iterative" else _supermask_rows(root, spec):
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
        if record["status"] != "complete":
            notes.append(f"{what} is {record['status']}, not complete: its finished runs are in the table; run the "
                         "same `ticketlab sweep` again to finish it")
        elif spec.kind == "iterative":
            expected = len(spec.seed_list) * len(chains_of(spec)) * len(spec.round_list)
            found = len(_iterative_rows(Path(root), spec))
            if found < expected:
                notes.append(f"{what} is complete, but {expected - found} of its {expected} runs are missing from the "
                             "store (deleted?): run the same `ticketlab sweep` again to train them")
    return notes


def results_frame(root: Path):
    """The results table as a pandas DataFrame (columns: `COLUMNS`)."""
    try:
        import pandas as pd
    except ImportError:
        raise TicketlabError("pandas is needed for DataFrames: pip install 'ticketlab[plot]'") from None
    return pd.DataFrame(result_rows(root), columns=list(COLUMNS))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in COLUMNS])
    return buf.getvalue()


def format_table(rows: list[dict[str, Any]]) -> str:
    """Aligned text; columns that are blank in every row are left out to fit a terminal."""
    shown = [c for c in COLUMNS if any(_text(r[c]) for r in rows)]
    cells = [[_text(r[c]) for c in shown] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
