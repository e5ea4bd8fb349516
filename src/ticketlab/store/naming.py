"""The one naming rule of the run store: a run's directory is `<kind>_<hash>`, the hash of what
identifies it (OpenLTH's rule).

A config's identity is its *resolved* fields with every field that equals its default for that net
left out: adding a new field with a default never renames old runs, and `--epochs 55` names the same
run as no flag at all. The numerics version is hashed too, so that runs of two numerics never share
a name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from ..core.numerics import NUMERICS


def identity(config: Any) -> dict[str, Any]:
    """The fields of a resolved config that differ from the resolved defaults for the same net."""
    resolved = config.resolved() if hasattr(config, "resolved") else config
    base = type(config)(net=config.net) if hasattr(config, "net") else type(config)()
    base = base.resolved() if hasattr(base, "resolved") else base
    out = {}
    for f in dataclasses.fields(resolved):
        value = getattr(resolved, f.name)
        if f.name == "net" or value != getattr(base, f.name):
            out[f.name] = value
    return out


def content_hash(kind: str, fields: dict[str, Any], numerics: int = NUMERICS) -> str:
    """A short stable hash of a canonical JSON form (and of the numerics version, when not the first)."""
    record = {"kind": kind, **fields}
    if numerics > 1:
        record["numerics"] = numerics
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_name(kind: str, ident: dict[str, Any], numerics: int = NUMERICS) -> str:
    """The directory name of a run of `kind` identified by `ident` (e.g. `identity(config)` plus what else
    makes it), as this release names it (or as the release of `numerics` did)."""
    return f"{kind}_{content_hash(kind, ident, numerics)}"


def name_problem(dir_name: str, record: Any) -> str | None:
    """Why a run's `config.json` (`record`) does not belong to the directory `dir_name`, or None if
    it does: the name it records must be the directory's, and its kind and identity must hash to it
    (under the numerics version it records; a run that records none, under any version up to this
    one). A directory renamed, or swapped with another run's, is caught here: its files match their
    own checksums, but not the name they are found under."""
    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict) or not isinstance(record.get("kind"), str):
        return "its config.json records no kind and identity"
    recorded = record.get("name")
    if recorded is not None and recorded != dir_name:
        return f"its config.json is that of run {recorded}: the directory was renamed or swapped with another run's"
    numerics = record.get("numerics", (record.get("environment") or {}).get("numerics"))
    versions = [numerics] if isinstance(numerics, int) else range(1, NUMERICS + 1)
    if not any(run_name(record["kind"], record["identity"], v) == dir_name for v in versions):
        return "the identity its config.json records does not hash to its name: the directory was renamed or its config edited"
    return None
