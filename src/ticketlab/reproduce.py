"""`ticketlab plot`, `report` and `reproduce`: from a sweep directory to figures and a report."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .device import environment, resolve_device
from .errors import TicketlabError
from .sweep import Runtime, read_manifests, run_sweep
from .sweep_spec import load_sweep

STUDY_PRESETS = ("criteria", "large-final-signs", "magnitude-increase-signs", "supermask-at-init", "masking-is-training")
SCALE_MEANING = {
    "quick": "quick: CPU-sized, qualitative only. 1 seed by default, 1,000 training steps per run instead of the "
    "full schedule, 3 SPEC rounds of pruning per trained round (remaining levels of rounds 0, 3, …, 24), "
    "supermask levels p = 0, 2, …, 24, fewer criteria for masking-is-training. Compare shapes, not numbers.",
    "full": "full: the paper protocol. 5 seeds, 24 rounds, the full SPEC §3 schedule, supermask levels p = 0…24.",
}


def _frame(root: Path):
    from .results import results_frame

    return results_frame(root)


def _need_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        raise TicketlabError("figures need matplotlib and pandas: pip install 'ticketlab[plot]'") from None


def plot(root: Path, out: Path | None, band: str = "minmax", formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Figures of every experiment in a sweep directory."""
    _need_plotting()
    from .figures import make_figures

    return make_figures(_frame(root), out or root / "figures", band=band, formats=formats)


def meta_of(root: Path, extra: dict | None = None) -> dict:
    """What the report says about how its data were made, from the sweep manifests."""
    manifests = read_manifests(root)
    specs = [m["spec"] for m in manifests]
    scales = sorted({s["scale"] for s in specs})
    meta: dict = {
        "scale": " | ".join(SCALE_MEANING.get(s, s) for s in scales),
        "sweeps": {s["name"]: f"{s['kind']}, net {s['net']}, seeds {s['first_seed']}..{s['first_seed'] + s['seeds'] - 1}" for s in specs},
        "wall_seconds": {m["spec"]["name"]: round(m.get("wall_seconds", float("nan")), 1) for m in manifests},
    }
    if manifests:
        meta["environment"] = manifests[-1]["environment"]
    meta.update(extra or {})
    return meta


def report(root: Path, out: Path | None, band: str = "minmax", extra_meta: dict | None = None) -> tuple[Path, Path]:
    """Figures plus the HTML and Markdown report of a sweep directory."""
    _need_plotting()
    from .figures import make_figures
    from .report import write_report

    out = out or root / "report"
    frame = _frame(root)
    figures = make_figures(frame, out / "figures", band=band)
    return write_report(frame, out, meta_of(root, extra_meta), figures)


def reproduce(scale: str, out: Path, runtime: Runtime, seeds: int | None, workers: int | None) -> tuple[Path, Path]:
    """The study's experiments at a scale, then figures and the report."""
    _need_plotting()
    resolve_device(runtime.device)
    specs = [load_sweep(name, scale, {"seeds": seeds}) for name in STUDY_PRESETS]
    t0 = time.perf_counter()
    for i, spec in enumerate(specs, start=1):
        print(f"[reproduce {scale}] {i}/{len(specs)}: {spec.name}: {spec.description}", file=sys.stderr, flush=True)
        run_sweep(spec, out, runtime, workers)
    wall = time.perf_counter() - t0
    print(f"[reproduce {scale}] experiments done in {wall:.0f} s; drawing figures and the report", file=sys.stderr, flush=True)
    extra = {"command": " ".join(sys.argv), "total_wall_seconds": round(wall, 1), "device": str(resolve_device(runtime.device)),
             "environment": environment(resolve_device(runtime.device))}
    return report(out, out / "report", extra_meta=extra)
