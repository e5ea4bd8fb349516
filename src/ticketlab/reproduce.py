"""`ticketlab plot`, `report` and `reproduce`: from a sweep directory to figures and a report."""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from .training.config import TrainConfig
from .training.schedule import Recipe
from .core.device import environment, resolve_device
from .core.errors import TicketlabError
from .store.files import ensure_writable
from .execution.sweep import run_sweeps
from .experiments.jobs import Runtime
from .experiments.kinds import get_kind
from .experiments.manifests import read_manifests, spec_from_manifest
from .experiments.spec import SweepSpec, load_sweep

# every figure of SPEC §8 that runs on MNIST (the learned supermasks are their own preset), in the order their
# jobs run: the study's own figures first (criteria, whose runs the two sign presets reuse, then the supermasks),
# the mask actions last, so that a long full-scale run that is stopped has the headline results
STUDY_PRESETS = ("criteria", "large-final-signs", "magnitude-increase-signs", "supermask-at-init", "masking-is-training",
                 "supermask-vs-training", "mask1-actions", "mask0-actions")
PAPER_SEEDS = 5
# The quick reproduction's seeds: a claim's paired interval needs 2 or more, and 3 give it a width worth reading.
QUICK_SEEDS = 3


def _frame(root: Path):
    from .analysis.table import rows_frame

    return rows_frame(root)


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
    out = out or root / "figures"
    ensure_writable(out)
    return make_figures(frame, out, band=band, formats=formats, kinds=kinds_of(root))


def _sweep_scale(spec: SweepSpec) -> tuple[bool, str]:
    """Whether one sweep ran the paper protocol (SPEC §3, §4, §7 at 5 seeds), and what it ran."""
    ran = spec.train_config(spec.first_seed).resolved()
    paper = TrainConfig(net=spec.net, dataset=spec.dataset).resolved()
    schedule = ran.iterations == paper.iterations and ran.learning_rate == paper.learning_rate and ran.eval_every == paper.eval_every
    recipe = _recipe_text(ran.recipe)
    schedule = schedule and not recipe
    parts = [f"{spec.seeds} seed{'s' if spec.seeds != 1 else ''}"]
    if schedule:
        parts.append(f"the full SPEC §3 schedule ({ran.iterations:,} steps per run)")
    else:
        parts.append(f"{ran.iterations:,} training steps per run (SPEC §3: {paper.iterations:,})")
        if ran.learning_rate != paper.learning_rate:
            parts.append(f"learning rate {ran.learning_rate:g} (SPEC: {paper.learning_rate:g})")
        if ran.eval_every != paper.eval_every:
            parts.append(f"evaluated every {ran.eval_every:,} steps (SPEC: {paper.eval_every})")
    if recipe:
        parts.append(recipe)
    pruning, what = get_kind(spec.kind).protocol(spec)
    if what:
        parts.append(what)
    return spec.seeds >= PAPER_SEEDS and schedule and pruning, ", ".join(parts)


def _recipe_text(recipe: Recipe) -> str:
    """What a run's recipe changes from SPEC §3's ('optimizer sgd, momentum 0.9'), '' for SPEC's."""
    base = Recipe()
    return ", ".join(f"{f.name} {getattr(recipe, f.name)}" for f in dataclasses.fields(Recipe)
                     if getattr(recipe, f.name) != getattr(base, f.name))


def scale_label(specs: list[SweepSpec]) -> str:
    """The report's scale banner, from what the sweeps actually ran (seeds, rounds, steps), not from
    the name of their scale: "the paper protocol" only when every sweep ran it."""
    if not specs:
        return "no sweep recorded"
    groups: dict[str, list[str]] = {}
    paper = True
    for spec in specs:
        is_paper, text = _sweep_scale(spec)
        paper = paper and is_paper
        groups.setdefault(text, []).append(spec.name)
    ran = "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())
    scales = "/".join(sorted({s.scale for s in specs}))
    if paper:
        return f"{scales}: the paper protocol. {ran}."
    return f"{scales}: not the paper protocol, qualitative only (compare shapes, not numbers). {ran}."


def kinds_of(root: Path) -> dict[str, str]:
    """Each sweep's kind, by its name, from the store's manifests: what the figures and the report draw by."""
    return {s.name: s.kind for s in (spec_from_manifest(m) for m in read_manifests(root))}


def meta_of(root: Path, extra: dict | None = None) -> dict:
    """What the report says about how its data were made, from the sweep manifests."""
    manifests = read_manifests(root)
    specs = [spec_from_manifest(m) for m in manifests]
    meta: dict = {
        "scale": scale_label(specs),
        "sweeps": {s.name: f"{s.kind}, net {s.net}, seeds {s.first_seed}..{s.first_seed + s.seeds - 1}" for s in specs},
        "wall_seconds": {s.name: round(m.get("wall_seconds", float("nan")), 1) for s, m in zip(specs, manifests)},
    }
    if manifests and "environment" in manifests[-1]:
        meta["environment"] = manifests[-1]["environment"]
    meta.update(extra or {})
    return meta


def report(root: Path, out: Path | None, band: str = "minmax", extra_meta: dict | None = None) -> tuple[Path, Path]:
    """Figures plus the HTML and Markdown report of a sweep directory."""
    _need_plotting()
    from .analysis.figures import make_figures
    from .analysis.report import write_report

    frame = _frame(root)  # a damaged store is reported before any output folder is made
    meta = meta_of(root, extra_meta)
    out = out or root / "report"
    ensure_writable(out)
    kinds = kinds_of(root)
    figures = make_figures(frame, out / "figures", band=band, kinds=kinds)
    return write_report(frame, out, meta, figures, kinds=kinds)


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
