"""A sweep: one experiment of SPEC §4–8 over seeds, declared as a TOML file (the presets are such
files). Top-level keys give the experiment; a `[quick]` or `[full]` table overrides them per scale.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..pruning.actions import MASK0_ACTIONS, MASK1_ACTIONS
from ..training.config import MAX_SEED, TrainConfig
from ..pruning.criteria import CRITERIA
from ..data.idx import DATASETS
from ..core.errors import TicketlabError
from ..nets.specs import NETS

KINDS = ("iterative", "supermask")
SCALES = ("quick", "full")
STARTS = ("init", "signed_constant")
VAL_ACCURACY_BASES = (0.25, 0.5, 0.75)
BASE_ITERATIONS = (10, 30, 100, 300, 1000, 3000, 10000, 30000)
SPEC_ROUNDS = 24  # SPEC §4: 24 rounds after the dense run; SPEC §7: one-shot levels p = 0..24
MAX_SEEDS = 1000  # the papers use 5; this bound only catches typos (a job list of 10^12 seeds)
# A sweep's name becomes the file OUT/sweeps/NAME.json: no separators, no leading dot, no NUL.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep runs. Iterative sweeps use criteria x mask1 x mask0 chains; supermask
    sweeps prune one-shot from trained base nets and evaluate at init."""

    name: str
    kind: str
    description: str = ""
    net: str = "fc"
    dataset: str | None = None
    seeds: int = 5
    first_seed: int = 0
    # training of every run (None = SPEC §3 defaults for the net)
    epochs: int | None = None
    iterations: int | None = None
    learning_rate: float | None = None
    eval_every: int = 100
    # iterative pruning (SPEC §4)
    criteria: tuple[str, ...] = ("large_final",)
    mask1: tuple[str, ...] = ("rewind",)
    mask0: tuple[str, ...] = ("zero",)
    rounds: int = 24  # SPEC rounds covered
    round_step: int = 1  # SPEC rounds of pruning per trained round (quick scale: > 1)
    # supermasks (SPEC §7)
    bases: tuple[str, ...] = ("converged",)
    starts: tuple[str, ...] = ("init",)
    dwr: tuple[bool, ...] = (False,)
    levels: int = 24  # one-shot levels p = 0..levels
    level_step: int = 1
    scale: str = "full"
    source: str = ""

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def round_list(self) -> list[int]:
        """The SPEC rounds this sweep trains (0 = the dense run)."""
        return list(range(0, self.rounds + 1, self.round_step))

    @property
    def level_list(self) -> list[int]:
        return list(range(0, self.levels + 1, self.level_step))

    def train_config(self, seed: int) -> TrainConfig:
        """The training config of every run of this sweep for one seed."""
        return TrainConfig(
            net=self.net,
            dataset=self.dataset,
            seed=seed,
            epochs=self.epochs,
            iterations=self.iterations,
            learning_rate=self.learning_rate,
            eval_every=self.eval_every,
            test_eval="on_best",
        )


_FIELDS = {f.name: f for f in dataclasses.fields(SweepSpec)}
_TUPLE_FIELDS = {"criteria", "mask1", "mask0", "bases", "starts", "dwr"}
_USER_FIELDS = set(_FIELDS) - {"scale", "source"}


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line) or re.match(rf"\s*\[{re.escape(key)}\]", line):
            return i
    return None


def _where(source: str, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{source}:{line}" if line else source


def _coerce(source: str, text: str, key: str, value: Any) -> Any:
    """Check a TOML value's type against the field; lists become tuples."""
    if key not in _USER_FIELDS:
        valid = ", ".join(sorted(_USER_FIELDS))
        raise TicketlabError(f"{_where(source, text, key)}: unknown field {key!r}; valid fields: {valid}")
    if key in _TUPLE_FIELDS:
        if not isinstance(value, list) or not value:
            raise TicketlabError(f"{_where(source, text, key)}: field {key!r} must be a non-empty list")
        want = bool if key == "dwr" else str
        if not all(isinstance(v, want) for v in value):
            raise TicketlabError(f"{_where(source, text, key)}: field {key!r} must list {want.__name__} values")
        return tuple(value)
    default = _FIELDS[key].default
    want_types: tuple[type, ...]
    if key in ("epochs", "iterations", "seeds", "first_seed", "eval_every", "rounds", "round_step", "levels", "level_step"):
        want_types = (int,)
    elif key == "learning_rate":
        want_types = (float, int)
    else:
        want_types = (str,)
    if isinstance(value, bool) or not isinstance(value, want_types):
        raise TicketlabError(
            f"{_where(source, text, key)}: field {key!r} must be {' or '.join(t.__name__ for t in want_types)}, got {value!r}"
        )
    del default
    return value


def _blamer(source: str, text: str, overrides: dict[str, Any]) -> Callable[[str], str]:
    """How an error names a field: the command-line flag if one set it, else the file, line and field."""

    def blame(key: str) -> str:
        key = {"seed": "first_seed"}.get(key, key)  # TrainConfig's seed is the sweep's first_seed
        if overrides.get(key) is not None:
            return "--" + key.replace("_", "-")
        return f"{_where(source, text, key)}: field {key!r}"

    return blame


def _check_names(source: str, text: str, spec: SweepSpec, blame: Callable[[str], str]) -> None:
    def bad(key: str, values: tuple, valid: tuple) -> None:
        for v in values:
            if v not in valid:
                raise TicketlabError(f"{_where(source, text, key)}: unknown {key} {v!r}; valid: {', '.join(valid)}")

    if not NAME_PATTERN.fullmatch(spec.name):
        raise TicketlabError(
            f"{blame('name')} is {spec.name!r}: a sweep name is 1 to 64 letters, digits, '-', '_' or '.', "
            "not starting with '.' (it names the file OUT/sweeps/NAME.json)"
        )
    bad("kind", (spec.kind,), KINDS)
    bad("net", (spec.net,), tuple(NETS))
    if spec.dataset is not None:
        bad("dataset", (spec.dataset,), DATASETS)
    bad("criteria", spec.criteria, CRITERIA)
    bad("mask1", spec.mask1, MASK1_ACTIONS)
    bad("mask0", spec.mask0, MASK0_ACTIONS)
    bad("starts", spec.starts, STARTS)
    for key in _TUPLE_FIELDS:  # a repeated entry would train nothing new and list its rows twice
        values = getattr(spec, key)
        repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if repeated is not None:
            raise TicketlabError(f"{_where(source, text, key)}: field {key!r} lists {repeated!r} twice")
    for base in spec.bases:
        if not (base == "converged" or re.fullmatch(r"val_accuracy_0\.\d+", base) or re.fullmatch(r"iterations_\d+", base)):
            raise TicketlabError(
                f"{_where(source, text, 'bases')}: unknown base {base!r}; use converged, val_accuracy_0.NN or iterations_N"
            )
    spec_rounds = f"must be <= {SPEC_ROUNDS} (SPEC §4 prunes {SPEC_ROUNDS} rounds after the dense run)"
    spec_levels = f"must be <= {SPEC_ROUNDS} (SPEC §7's one-shot levels are p = 0..{SPEC_ROUNDS}, as §4's rounds)"
    checks = [
        ("seeds", spec.seeds >= 1, "must be >= 1"),
        ("seeds", spec.seeds <= MAX_SEEDS, f"must be <= {MAX_SEEDS}"),
        ("first_seed", spec.first_seed >= 0, "must be >= 0"),
        ("first_seed", spec.first_seed + spec.seeds - 1 <= MAX_SEED, "+ seeds - 1 must be at most 2^63-1"),
        ("rounds", spec.rounds >= 0, "must be >= 0"),
        ("rounds", spec.rounds <= SPEC_ROUNDS, spec_rounds),
        ("round_step", spec.round_step >= 1, "must be >= 1"),
        ("round_step", spec.round_step <= SPEC_ROUNDS, spec_rounds),
        ("levels", spec.levels >= 0, "must be >= 0"),
        ("levels", spec.levels <= SPEC_ROUNDS, spec_levels),
        ("level_step", spec.level_step >= 1, "must be >= 1"),
        ("level_step", spec.level_step <= SPEC_ROUNDS, spec_levels),
    ]
    for key, ok, what in checks:
        if not ok:
            raise TicketlabError(f"{blame(key)} {what}, got {getattr(spec, key)}")
    if spec.epochs is not None and spec.iterations is not None:
        raise TicketlabError(f"{source}: give epochs or iterations, not both")


def parse_spec(text: str, source: str, scale: str, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A validated SweepSpec from TOML text at a scale, with command-line overrides applied last.

    An `iterations` override replaces the file's training length, whether the file gave it as
    iterations or as epochs. Errors name the flag for an overridden value, else file, line and field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TicketlabError(f"{source}: malformed TOML: {e}") from None
    values: dict[str, Any] = {}
    scales = {s: doc.pop(s) for s in SCALES if s in doc}
    for s, table in scales.items():
        if not isinstance(table, dict):
            raise TicketlabError(
                f"{_where(source, text, s)}: field {s!r} must be a table of overrides ([{s}] on its own line), got {table!r}"
            )
    for key, value in doc.items():
        values[key] = _coerce(source, text, key, value)
    if scale not in scales and scales:
        raise TicketlabError(f"{source} has no [{scale}] table: it defines {', '.join(scales)}")
    for key, value in scales.get(scale, {}).items():
        values[key] = _coerce(source, text, key, value)
    for key in ("name", "kind"):
        if key not in values:
            raise TicketlabError(f"{source}: missing required field {key!r}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "iterations" in given:
        values["epochs"] = None
    values.update(given)
    spec = SweepSpec(**values, scale=scale, source=source)
    blame = _blamer(source, text, given)
    _check_names(source, text, spec, blame)
    spec.train_config(spec.first_seed).validate(blame)
    return spec


def spec_from_record(values: Any, source: str) -> SweepSpec:
    """A SweepSpec from its stored form (a sweep manifest's `spec`), checked as a sweep file is:
    `TicketlabError` naming `source` for a wrong type or value."""
    if not isinstance(values, dict):
        raise TicketlabError(f"{source}: its spec is not a table of fields")
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("scale", "source"):
            if not isinstance(value, str):
                raise TicketlabError(f"{source}: field {key!r} must be str, got {value!r}")
            fields[key] = value
        elif value is None and key in _FIELDS and _FIELDS[key].default is None:
            fields[key] = None
        else:
            fields[key] = _coerce(source, "", key, value)
    for key in ("name", "kind"):
        if key not in fields:
            raise TicketlabError(f"{source}: missing required field {key!r}")
    spec = SweepSpec(**fields)
    blame = _blamer(source, "", {})
    _check_names(source, "", spec, blame)
    spec.train_config(spec.first_seed).validate(blame)
    return spec


def preset_names() -> list[str]:
    folder = resources.files("ticketlab.experiments") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    return (resources.files("ticketlab.experiments") / "presets" / f"{name}.toml").read_text()


def load_sweep(name_or_file: str, scale: str, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A preset by name, or a user's TOML file by path."""
    if scale not in SCALES:
        raise TicketlabError(f"unknown scale {scale!r}: choose quick or full")
    if name_or_file in preset_names():
        return parse_spec(preset_text(name_or_file), f"preset {name_or_file}", scale, overrides)
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise TicketlabError(f"cannot read sweep file {path}: {e.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise TicketlabError(
                f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}): TOML files are UTF-8; save it as UTF-8"
            ) from None
        return parse_spec(text, str(path), scale, overrides)
    raise TicketlabError(f"unknown preset {name_or_file!r}: choose one of {', '.join(preset_names())}, or give a .toml file")
