"""Whether two stores hold the same runs to the bit: `python tools/same_runs.py STORE_A STORE_B [--keep DIR]`.

The same run names in both, the same files in each run (but `checksums.json`, whose hashes cover the
.npz files' zip timestamps), every array of every .npz file equal in dtype, shape and bytes, and every
JSON file equal as written (ticketlab writes JSON deterministically), except the timings a second run
on the same machine changes: the top-level `*_seconds` keys of `summary.json`. Exit 0 and one line
when equal; exit 1 listing every difference (an array's count of differing elements and its largest
difference), with `--keep DIR` copying the first differing run of each store into DIR; exit 2 when a
store cannot be read."""
from __future__ import annotations

import json
import shutil
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

SKIPPED_FILES = {"checksums.json"}
TIMED_FILE = "summary.json"


def _json_text(path: Path) -> str:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if path.name == TIMED_FILE and isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if not k.endswith("_seconds")}
    return json.dumps(doc, sort_keys=True)  # floats as repr: -0.0, 1.0 and NaN stay themselves


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _array_difference(u: np.ndarray, v: np.ndarray) -> str | None:
    if u.dtype != v.dtype or u.shape != v.shape:
        return f"{u.dtype}{list(u.shape)} against {v.dtype}{list(v.shape)}"
    if u.tobytes() == v.tobytes():
        return None
    if u.dtype.kind in "fiub":  # numbers: say how many differ and by how much
        a, b = u.astype(np.float64).ravel(), v.astype(np.float64).ravel()
        unequal = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        largest = float(np.nanmax(np.abs(a - b))) if unequal.any() else 0.0
        return f"{int(unequal.sum())} of {a.size} elements differ (largest difference {largest:.3g})"
    return "bytes differ"


def _runs(store: Path) -> dict[str, Path]:
    return {p.name: p for p in (store / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")}


def differences(a: Path, b: Path) -> list[tuple[str, str]]:
    """Every difference between the runs of stores `a` and `b`, as (run name, what differs); empty when
    they are the same."""
    runs_a, runs_b = _runs(a), _runs(b)
    found: list[tuple[str, str]] = []
    if set(runs_a) != set(runs_b):
        found += [(name, f"in {a if name in runs_a else b} only") for name in sorted(set(runs_a) ^ set(runs_b))]
    if not runs_a and not runs_b:
        return [("", f"no runs in {a / 'runs'} or {b / 'runs'}")]
    for name in sorted(set(runs_a) & set(runs_b)):
        files_a = {p.name for p in runs_a[name].iterdir() if p.name not in SKIPPED_FILES}
        files_b = {p.name for p in runs_b[name].iterdir() if p.name not in SKIPPED_FILES}
        if files_a != files_b:
            found.append((name, f"files in one run only: {sorted(files_a ^ files_b)}"))
        for file in sorted(files_a & files_b):
            pa, pb = runs_a[name] / file, runs_b[name] / file
            if file.endswith(".npz"):
                xa, xb = _arrays(pa), _arrays(pb)
                if set(xa) != set(xb):
                    found.append((name, f"{file}: arrays in one file only: {sorted(set(xa) ^ set(xb))}"))
                for key in sorted(set(xa) & set(xb)):
                    what = _array_difference(xa[key], xb[key])
                    if what:
                        found.append((name, f"{file}: array {key}: {what}"))
            elif file.endswith(".json"):
                if _json_text(pa) != _json_text(pb):
                    found.append((name, f"{file} differs"))
            elif pa.read_bytes() != pb.read_bytes():
                found.append((name, f"{file} differs"))
    return found


def main(argv: list[str]) -> int:
    keep = None
    if len(argv) == 4 and argv[2] == "--keep":
        keep, argv = Path(argv[3]), argv[:2]
    if len(argv) != 2:
        print("usage: python tools/same_runs.py STORE_A STORE_B [--keep DIR]", file=sys.stderr)
        return 2
    a, b = (Path(p) for p in argv)
    for store in (a, b):
        if not (store / "runs").is_dir():
            print(f"same_runs: {store} has no runs/ folder: give two sweep directories", file=sys.stderr)
            return 2
    try:
        found = differences(a, b)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        print(f"same_runs: cannot read a run: {e}", file=sys.stderr)
        return 2
    if not found:
        print(f"same_runs: {len(_runs(a))} runs, bitwise the same in {a} and {b}")
        return 0
    print(f"same_runs: NOT the same: {len(found)} difference{'s' if len(found) != 1 else ''}")
    for name, what in found:
        print(f"  {name}: {what}")
    first = next((name for name, _ in found if name in _runs(a) and name in _runs(b)), None)
    if keep is not None and first is not None:
        for label, store in (("a", a), ("b", b)):
            shutil.copytree(store / "runs" / first, keep / f"{label}-{first}", dirs_exist_ok=True)
        print(f"  kept {first} of both stores in {keep}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
