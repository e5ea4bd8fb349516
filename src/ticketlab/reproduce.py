"""`ticketlab plot`, `report` and `reproduce`: from a sweep directory to figures and a report."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from .core.device import environment, resolve_device
from .analysis.table import seed_ranges
from .core.errors import TicketlabError
from .store.files import ensure_writable
from .execution.sweep import run_sweeps
from .experiments.jobs import Runtime
from .experiments.kinds import get_kind
from .experiments.manifests import manifest_seeds, read_manifests, spec_from_manifest
from .experiments.spec import PAPER_SEEDS, SweepSpec, load_sweep, scale_name, what_ran

# every figure of protocol §8 that runs on MNIST (the learned supermasks are their own preset), in the order their
# jobs run: the study's own figures first (criteria, whose runs the two sign presets reuse, then the supermasks),
# the mask actions last, so that a long full-scale run that is stopped has the headline results
STUDY_PRESETS = ("criteria", "large-final-signs", "magnitude-increase-signs", "supermask-at-init", "masking-is-training",
                 "supermask-vs-training", "mask1-actions", "mask0-actions")
# The quick reproduction's seeds: a claim's paired interval needs 2 or more, and 3 give it a width worth reading.
QUICK_SEEDS = 3


def is_table(source: Path) -> bool:
    """Whether a source of results is a results table (a CSV file) rather than a store."""
    return Path(source).is_file()


def _frame(root: Path):
    """The results of a store, or of a results table (`ticketlab results --csv`, gzipped or not)."""
    if is_table(root):
        from .analysis.compare import read_results_csv

        return read_results_csv(root)
    from .analysis.table import rows_frame

    return rows_frame(root)


def _kinds(root: Path) -> dict[str, str]:
    return {} if is_table(root) else kinds_of(root)  # a table's experiments: by preset name, else by their rows


def _default_out(root: Path, name: str) -> Path:
    return root.parent / name if is_table(root) else root / name


def reference_of(reference: Path | str | None):
    """The reference results table as a frame: `reference` a CSV file, or "packaged" for the one this
    release ships (`analysis.compare.packaged_reference`)."""
    from .analysis.compare import packaged_reference, read_results_csv

    if reference is None:
        return None
    if reference == "packaged":
        path = packaged_reference()
        if path is None:
            raise TicketlabError("this release ships no reference results yet (the full-scale run is still going: "
                                 "docs/results/fc-mnist-full/ says how far it got); give a table with --reference FILE")
        return path, read_results_csv(path)
    return Path(reference), read_results_csv(Path(reference))


def _need_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        raise TicketlabError("figures need matplotlib and pandas: pip install 'ticketlab[plot]'") from None


def plot(root: Path, out: Path | None, band: str = "minmax", formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Figures of every experiment in a sweep directory."""
    _need_plotting()
    from .analysis.figures import make_figures

    frame = _frame(root)  # a damaged store is reported before any output folder is made
    out = out or _default_out(root, "figures")
    ensure_writable(out)
    return make_figures(frame, out, band=band, formats=formats, kinds=_kinds(root))


def scale_label(specs: list[SweepSpec]) -> str:
    """The report's scale banner, from what the sweeps actually ran (seeds, rounds, steps), not from
    the name of their scale: "the paper protocol" only when every sweep ran it."""
    if not specs:
        return "no sweep recorded"
    groups: dict[str, list[str]] = {}
    paper = True
    for spec in specs:
        is_paper, text = what_ran(spec)
        paper = paper and is_paper
        groups.setdefault(text, []).append(spec.name)
    ran = "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())
    scales = "/".join(sorted({scale_name(s) for s in specs}))
    if paper:
        return f"{scales}: the paper protocol. {ran}."
    return f"{scales}: not the paper protocol, qualitative only (compare shapes, not numbers). {ran}."


def kinds_of(root: Path) -> dict[str, str]:
    """Each sweep's kind, by its name, from the store's manifests: what the figures and the report draw by."""
    return {s.name: s.kind for s in (spec_from_manifest(m) for m in read_manifests(root))}


def meta_of(root: Path, extra: dict | None = None) -> dict:
    """What the report says about how its data were made, from the sweep manifests."""
    manifests = read_manifests(root)
    seeds = [sorted(manifest_seeds(m)) for m in manifests]
    # one spec per sweep, counting every seed its slices recorded (what the scale banner judges)
    specs = [dataclasses.replace(spec_from_manifest(m), seeds=len(s)) for m, s in zip(manifests, seeds)]
    meta: dict = {
        "scale": scale_label(specs),
        "sweeps": {spec.name: f"{spec.kind}, net {spec.net}, seeds {seed_ranges(s)}" for spec, s in zip(specs, seeds)},
    }
    # each sweep's own time: the seconds its jobs ran, whatever else its batch ran (none until a job ends)
    walls = {s.name: round(m["wall_seconds"], 1) for s, m in zip(specs, manifests) if "wall_seconds" in m}
    if walls:
        meta["wall_seconds"] = walls
    if manifests and "environment" in manifests[-1]:
        meta["environment"] = manifests[-1]["environment"]
    meta.update(extra or {})
    return meta


def report(root: Path, out: Path | None, band: str = "minmax", extra_meta: dict | None = None,
           reference: Path | str | None = None) -> tuple[Path, Path]:
    """Figures plus the HTML and Markdown report of a sweep directory or of a results table; with
    `reference` (a results table, or "packaged"), a section setting the results beside it."""
    _need_plotting()
    from .analysis.figures import make_figures
    from .analysis.report import write_report

    frame = _frame(root)  # a damaged store is reported before any output folder is made
    ref = reference_of(reference)
    if is_table(root):
        meta = {"scale": f"as the rows of the results table {root} show (a table holds no sweep records)",
                "source": str(root), **(extra_meta or {})}
    else:
        meta = meta_of(root, extra_meta)
    out = out or _default_out(root, "report")
    ensure_writable(out)
    kinds = _kinds(root)
    covered = None
    if not is_table(root):
        from .analysis.table import coverage

        rows = zip(frame["experiment"], frame["seed"], frame["run_dir"]) if "run_dir" in frame.columns else ()  # none yet
        covered = coverage(root, list(rows))
    figures = make_figures(frame, out / "figures", band=band, kinds=kinds)
    return write_report(frame, out, meta, figures, kinds=kinds, reference=ref, coverage=covered)


def study_specs(scale: str, seeds: int | None) -> list[SweepSpec]:
    """The validated sweeps `reproduce` runs at a scale (validated before any file is written); seeds:
    default QUICK_SEEDS at quick scale, the presets' own (5) at full."""
    if seeds is None and scale == "quick":
        seeds = QUICK_SEEDS
    return [load_sweep(name, scale, {"seeds": seeds}) for name in STUDY_PRESETS]


def reproduce(specs: list[SweepSpec], out: Path, runtime: Runtime, workers: int | None,
              executor: str = "auto") -> tuple[Path, Path]:
    """The study's experiments (`study_specs`), then figures and the report."""
    _need_plotting()
    resolve_device(runtime.device)
    scale = "/".join(sorted({s.scale for s in specs}))
    t0 = time.perf_counter()
    for i, spec in enumerate(specs, start=1):
        print(f"[reproduce {scale}] {i}/{len(specs)}: {spec.name}: {spec.description}", file=sys.stderr, flush=True)
    seeds = sorted({s.seeds for s in specs})
    label = f"reproduce {scale}: {len(specs)} experiments x {'/'.join(map(str, seeds))} seeds"
    # one batch: an executor with room for more (a pool, a cluster) gets every experiment's seeds at once
    run_sweeps(specs, out, runtime, workers, executor=executor, label=label)
    wall = time.perf_counter() - t0
    print(f"[reproduce {scale}] experiments done in {wall:.0f} s; drawing figures and the report", file=sys.stderr, flush=True)
    extra = {"command": " ".join(sys.argv), "total_wall_seconds": round(wall, 1), "device": str(resolve_device(runtime.device)),
             "environment": environment(resolve_device(runtime.device))}
    return report(out, out / "report", extra_meta=extra)
