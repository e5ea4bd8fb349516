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


def content_hash(kind: str, fields: dict[str, Any]) -> str:
    """A short stable hash of a canonical JSON form (and of the numerics version, when not the first)."""
    record = {"kind": kind, **fields}
    if NUMERICS > 1:
        record["numerics"] = NUMERICS
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_name(kind: str, ident: dict[str, Any]) -> str:
    """The directory name of a run of `kind` identified by `ident` (e.g. `identity(config)` plus what else makes it)."""
    return f"{kind}_{content_hash(kind, ident)}"
