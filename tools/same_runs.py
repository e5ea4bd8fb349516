"""Whether two stores hold the same runs to the bit: `python tools/same_runs.py STORE_A STORE_B`.

The same run names in both, and in each run every array of every .npz file equal in dtype, shape and
bytes, and every JSON file equal, leaving out what a second run on the same machine may change: the
timings (keys ending in `_seconds`) and the files' checksums (an .npz file's zip entries carry their
write time). Exit 0 and one line when equal; exit 1 naming the first difference."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

SKIPPED_FILES = {"checksums.json"}


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not k.endswith("_seconds")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def difference(a: Path, b: Path) -> str | None:
    """The first difference between the runs of stores `a` and `b`, or None when they are the same."""
    runs_a = {p.name: p for p in (a / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    runs_b = {p.name: p for p in (b / "runs").iterdir() if p.is_dir() and not p.name.startswith(".")}
    if set(runs_a) != set(runs_b):
        return f"runs in one store only: {sorted(set(runs_a) ^ set(runs_b))}"
    if not runs_a:
        return f"no runs in {a / 'runs'}"
    for name in sorted(runs_a):
        files_a = {p.name for p in runs_a[name].iterdir() if p.name not in SKIPPED_FILES}
        files_b = {p.name for p in runs_b[name].iterdir() if p.name not in SKIPPED_FILES}
        if files_a != files_b:
            return f"{name}: files in one run only: {sorted(files_a ^ files_b)}"
        for file in sorted(files_a):
            pa, pb = runs_a[name] / file, runs_b[name] / file
            if file.endswith(".npz"):
                xa, xb = _arrays(pa), _arrays(pb)
                if set(xa) != set(xb):
                    return f"{name}/{file}: arrays in one file only: {sorted(set(xa) ^ set(xb))}"
                for key in sorted(xa):
                    u, v = xa[key], xb[key]
                    if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                        return f"{name}/{file}: array {key} differs"
            elif file.endswith(".json"):
                if _untimed(json.loads(pa.read_text())) != _untimed(json.loads(pb.read_text())):
                    return f"{name}/{file} differs"
            elif pa.read_bytes() != pb.read_bytes():
                return f"{name}/{file} differs"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tools/same_runs.py STORE_A STORE_B", file=sys.stderr)
        return 2
    a, b = (Path(p) for p in argv)
    for store in (a, b):
        if not (store / "runs").is_dir():
            print(f"same_runs: {store} has no runs/ folder: give two sweep directories", file=sys.stderr)
            return 2
    try:
        found = difference(a, b)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        print(f"same_runs: cannot read a run: {e}", file=sys.stderr)
        return 2
    if found:
        print(f"same_runs: NOT the same: {found}")
        return 1
    count = sum(1 for p in (a / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    print(f"same_runs: {count} runs, bitwise the same in {a} and {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
