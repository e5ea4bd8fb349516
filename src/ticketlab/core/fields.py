"""Typed fields declared once: a dataclass field carries its help, its choices and its range, and the
command line's flags, the sweep files' checks and the Python overrides all derive from it.

`ranged(...)` declares a numeric field's bounds beside its type; `check_fields(obj, blame)` enforces
every declared bound of a dataclass instance and refuses NaN and infinities in any float field, so
that a flag, a sweep-file field and a Python override get the same one-line error. This module
imports nothing heavy: the command line builds its parser and checks its flags before torch loads.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from .errors import TicketlabError

MAX_SEED = 2**63 - 1  # seeds are hashed as int64 and stored in JSON and Parquet


def number_text(value: float) -> str:
    """A bound as a person reads it: 2^63-1, 100,000,000, 0.5."""
    if value == MAX_SEED:
        return "2^63-1"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """A numeric field's valid range: `low`/`high` inclusive unless `open_low`/`open_high`; `why`
    says where a bound comes from (shown in the error)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    why: str = ""

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` ("must be >= 1"), or None if it is in range."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return f"must be {'>' if self.open_low else '>='} {number_text(self.low)}"
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return f"must be {'<' if self.open_high else '<='} {number_text(self.high)}"
        return None

    def text(self) -> str:
        """The range for a help text: '1 to 10,000', '> 0', 'in (0, 1]'."""
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            if not (self.open_low or self.open_high):
                return f"{number_text(lo)} to {number_text(hi)}"
            return f"in {'(' if self.open_low else '['}{number_text(lo)}, {number_text(hi)}{')' if self.open_high else ']'}"
        if lo is not None:
            return f"{'>' if self.open_low else '>='} {number_text(lo)}"
        if hi is not None:
            return f"{'<' if self.open_high else '<='} {number_text(hi)}"
        return "a finite number"


def ranged(default: Any, help: str = "", *, low: float | None = None, high: float | None = None,
           above: float | None = None, below: float | None = None, why: str = "",
           choices: tuple | None = None) -> Any:
    """A dataclass field with its help and bounds: `low`/`high` inclusive, `above`/`below` exclusive."""
    bounds = Bounds(low if above is None else above, high if below is None else below,
                    open_low=above is not None, open_high=below is not None, why=why)
    meta: dict[str, Any] = {"help": help, "bounds": bounds}
    if choices is not None:
        meta["choices"] = choices
    return dataclasses.field(default=default, metadata=meta)


def described(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with its help (and choices) and no bounds beyond finiteness."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def bounds_of(f: dataclasses.Field) -> Bounds | None:
    return f.metadata.get("bounds")


def field_problem(f: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with `value` for field `f` (each element of a list), or None."""
    if value is None:
        return None
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        bounds = bounds_of(f) or Bounds()
        problem = bounds.problem(v)
        if problem is not None:
            why = f" ({bounds.why})" if bounds.why else ""
            return f"{problem}{why}, got {v!r}"
    return None


def check_fields(obj: Any, blame: Callable[[str], str]) -> None:
    """Refuse a value outside a field's declared bounds, or a NaN or infinity in any numeric field
    of the dataclass instance `obj`: one line naming the field by `blame(name)` (its flag, or its
    file and line) and the bound."""
    for f in dataclasses.fields(obj):
        problem = field_problem(f, getattr(obj, f.name))
        if problem is not None:
            raise TicketlabError(f"{blame(f.name)} {problem}")


def _base_type(annotation: Any) -> type:
    hint = annotation
    if isinstance(hint, str):
        hint = eval(hint, {"typing": typing}, {})  # annotations are postponed strings here
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def flag_help(f: dataclasses.Field) -> str:
    """A field's help with its range and default, as the command line shows it."""
    text = f.metadata.get("help", "")
    bounds = bounds_of(f)
    if bounds is not None and bounds.text() not in text:
        text += f", {bounds.text()}" if text else bounds.text()
    if f.default is not None and f.default is not dataclasses.MISSING and not isinstance(f.default, bool):
        text += f" (default: {f.default})"
    return text


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field: --field-name, typed, with its help (and range), choices and default; the values
    are checked against their ranges by `check_fields` (the caller's), as a sweep file's are. A tuple
    field takes one or more values (--milestones 100 200). Inherited keyword-only fields (a mixin's)
    come after the class's own in --help."""
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.kw_only):
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(f.type)
        if typing.get_origin(kind) is tuple:
            parser.add_argument(flag, type=typing.get_args(kind)[0], nargs="+", default=f.default,
                                help=f.metadata.get("help", "") + (f", each {bounds_of(f).text()}" if bounds_of(f) else ""),
                                metavar=f.name.upper().removesuffix("S"))
            continue
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata.get("help", ""))
            continue
        parser.add_argument(
            flag,
            type=kind,
            default=f.default,
            choices=f.metadata.get("choices"),
            help=flag_help(f),
            metavar=None if f.metadata.get("choices") else f.name.upper(),
        )


def dataclass_from_namespace(cls: type, ns: argparse.Namespace) -> Any:
    def value(name: str) -> Any:
        v = getattr(ns, name)
        return tuple(v) if isinstance(v, list) else v  # a tuple field's flag gives a list

    return cls(**{f.name: value(f.name) for f in dataclasses.fields(cls)})
