"""Sweep manifests: `OUT/sweeps/<name>_<hash>.json` says which sweeps a store holds, and whether each
finished (`ticketlab results` reads the store through them)."""
from __future__ import annotations

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


def write_manifest(root: Path, spec: SweepSpec, status: str, environment: dict[str, Any],
                   wall: float | None = None) -> None:
    """What a sweep directory holds, for `ticketlab results`: written before the work and after it."""
    path = manifest_path(root, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"spec": spec.record(), "status": status, "environment": environment}
    if wall is not None:
        record["wall_seconds"] = wall
    write_json(path, record)


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


def covered_by_complete_manifest(root: Path, spec: SweepSpec) -> bool:
    """Whether the store already records this sweep as complete for a superset of these seeds."""
    import dataclasses

    path = manifest_path(root, spec)
    if not path.is_file():
        return False
    try:
        record = read_json(path)
        done = spec_from_manifest(record)
    except (OSError, ValueError, KeyError, TypeError, TicketlabError):  # damaged: this sweep rewrites it
        return False
    same = dataclasses.replace(done, seeds=spec.seeds, first_seed=spec.first_seed) == spec
    return record.get("status") == "complete" and same and set(spec.seed_list) <= set(done.seed_list)
