"""Command-line flags derived from a typed dataclass: one flag per field, with its type, help,
choices and default (hyperparameters are declared once, as the dataclass)."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def _base_type(annotation: Any) -> type:
    hint = annotation
    if isinstance(hint, str):
        hint = eval(hint, {"typing": typing}, {})  # annotations are postponed strings here
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field: --field-name, typed, with its help, choices and default."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(f.type)
        help_text = f.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        default_text = "" if f.default is None else f" (default: {f.default})"
        parser.add_argument(
            flag,
            type=kind,
            default=f.default,
            choices=f.metadata.get("choices"),
            help=help_text + default_text,
            metavar=None if f.metadata.get("choices") else f.name.upper(),
        )


def dataclass_from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
