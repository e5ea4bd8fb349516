"""Sweep manifests: `OUT/sweeps/<name>_<hash>.json` says which sweeps a store holds, which of their
seeds ran and whether each finished (`ticketlab results` reads the store through them). A manifest
is the union of every slice of seeds that ran into the store: a slice adds its seeds (`record_seeds`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ..core.errors import TicketlabError
from ..store.files import read_json, write_json
from .kinds import kind_names
from .spec import SweepSpec, manifest_fields, spec_from_record

SWEEPS = "sweeps"
MANIFEST_STATUSES = ("running", "complete", "failed", "interrupted")


def manifest_path(root: Path, spec: SweepSpec) -> Path:
    """OUT/sweeps/<name>_<hash>.json: the hash covers every field but the seed slice, so a sweep of
    the same name with another net (say) gets its own manifest instead of replacing a finished one,
    while slices of one sweep's seeds share theirs."""
    digest = hashlib.sha256(json.dumps(manifest_fields(spec), sort_keys=True, default=list).encode()).hexdigest()[:10]
    return root / SWEEPS / f"{spec.name}_{digest}.json"


SEEDS_KEY = "by_seed"  # the manifest's record of each seed: {"<seed>": {"status": ..., "wall_seconds": ...}}


def overall_status(seeds: dict[int, dict[str, Any]]) -> str:
    """A sweep's status from its seeds': complete when every recorded seed is; else running, interrupted
    or failed, the first of these that some seed has."""
    statuses = {entry["status"] for entry in seeds.values()}
    if statuses <= {"complete"}:
        return "complete"
    return next(s for s in ("running", "interrupted", "failed") if s in statuses)


def record_seeds(root: Path, spec: SweepSpec, statuses: dict[int, str], environment: dict[str, Any],
                 walls: dict[int, float] | None = None) -> None:
    """Record what happened to some of a sweep's seeds in its manifest, adding to what it records of
    the others: a slice of seeds (`--first-seed`, one per machine) adds its seeds, never replaces the
    record. A seed set "running" that is already complete stays complete (its runs are kept; the
    jobs skip them). `walls`: the seconds each seed's job ran (kept where not given). Read-modify-write
    under a lock, so that two sweeps of one store recording at once do not lose each other's seeds."""
    from ..store.files import holding
    from .jobs import LOCKS

    path = manifest_path(root, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with holding(root / LOCKS / f"{path.stem}.manifest.lock"):
        seeds: dict[int, dict[str, Any]] = {}
        if path.is_file():
            try:
                old = read_json(path)
                seeds = manifest_seeds(old) if old.get("spec", {}).get("name") == spec.name else {}
            except (TicketlabError, KeyError, TypeError, ValueError, AttributeError):
                seeds = {}  # a damaged record: this sweep writes it anew (its finished runs are in the store)
        for seed, status in statuses.items():
            entry = dict(seeds.get(seed, {"wall_seconds": None}))
            if not (status == "running" and entry.get("status") == "complete"):
                entry["status"] = status
            if walls is not None and seed in walls:
                entry["wall_seconds"] = walls[seed]
            seeds[seed] = entry
        ordered = sorted(seeds)
        shown = dataclasses.replace(spec, first_seed=ordered[0], seeds=ordered[-1] - ordered[0] + 1)
        known = [e["wall_seconds"] for e in seeds.values() if isinstance(e.get("wall_seconds"), (int, float))]
        record: dict[str, Any] = {"spec": shown.record(), "status": overall_status(seeds), "environment": environment,
                                  SEEDS_KEY: {str(seed): seeds[seed] for seed in ordered}}
        if known:
            record["wall_seconds"] = sum(known)
        write_json(path, record)


def write_manifest(root: Path, spec: SweepSpec, status: str, environment: dict[str, Any],
                   wall: float | None = None) -> None:
    """Record every seed of `spec` with one status (and the sweep's `wall` split evenly over them)."""
    walls = None if wall is None else {seed: wall / len(spec.seed_list) for seed in spec.seed_list}
    record_seeds(root, spec, {seed: status for seed in spec.seed_list}, environment, walls)


def manifest_seeds(record: dict) -> dict[int, dict[str, Any]]:
    """Each seed a manifest records, with its status and the seconds its job ran (None: unknown). A
    manifest written before seeds were recorded one by one gives its spec's seeds its one status."""
    seeds = record.get(SEEDS_KEY)
    if seeds is None:
        spec = record["spec"]
        first, count = int(spec.get("first_seed", 0)), int(spec.get("seeds", 5))
        return {seed: {"status": record["status"], "wall_seconds": None} for seed in range(first, first + count)}
    if not isinstance(seeds, dict) or not seeds:
        raise ValueError("its seeds are not a table of seeds")
    out = {}
    for key, entry in seeds.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(entry, dict)
                and entry.get("status") in MANIFEST_STATUSES
                and (entry.get("wall_seconds") is None or isinstance(entry["wall_seconds"], (int, float)))):
            raise ValueError(f"its record of seed {key!r} is not a status and a time")
        out[int(key)] = entry
    return out


def manifest_specs(record: dict) -> list[SweepSpec]:
    """The sweep a manifest records, as one spec per contiguous range of its recorded seeds (slices
    run on several machines may leave gaps)."""
    base = spec_from_manifest(record)
    seeds = sorted(manifest_seeds(record))
    ranges: list[list[int]] = []
    for seed in seeds:
        if ranges and seed == ranges[-1][-1] + 1:
            ranges[-1].append(seed)
        else:
            ranges.append([seed])
    return [dataclasses.replace(base, first_seed=r[0], seeds=len(r)) for r in ranges]


def read_manifests(root: Path) -> list[dict]:
    """Every sweep manifest of a store; a damaged one is a one-line error naming it and the remedy."""
    folder = root / SWEEPS
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = read_json(path)
            kind = record["spec"].get("kind") if isinstance(record.get("spec"), dict) else None
            if isinstance(kind, str) and kind not in kind_names():
                raise TicketlabError(
                    f"sweep manifest {path} is of experiment kind {kind!r}, which is not registered in this process: if "
                    "it is a kind of your own, import the module that registers it before reading the store "
                    "(docs/architecture.md); otherwise the manifest is damaged: delete it and rerun that sweep"
                )
            spec_from_record(record["spec"], "its spec")
            if record.get("status") not in MANIFEST_STATUSES:
                raise ValueError(f"unknown status {record.get('status')!r}")
            manifest_seeds(record)
        except TicketlabError as e:
            if "is not registered" in str(e):
                raise
            raise TicketlabError(
                f"sweep manifest {path} is damaged ({e}); delete it and rerun that sweep (finished runs are kept and "
                "not retrained)"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # UnreadableFile is a TicketlabError
            raise TicketlabError(
                f"sweep manifest {path} is damaged ({e}); delete it and rerun that sweep (finished runs are kept and "
                "not retrained)"
            ) from None
        record["path"] = str(path)
        records.append(record)
    return records


def spec_from_manifest(record: dict) -> SweepSpec:
    """The spec a manifest records, checked field by field as a sweep file is."""
    return spec_from_record(record["spec"], record.get("path", "sweep manifest"))
