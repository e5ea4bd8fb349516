"""A sweep: one experiment of protocol §4–8 over seeds, declared as a TOML file (the presets are such
files). Top-level keys give the experiment; a `[quick]` or `[full]` table overrides them per scale.
The fields every sweep has are `SweepSpec`'s; each experiment kind declares its own (`kinds.py`), and
a sweep file may use those of its kind only.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..core.errors import TicketlabError
from ..core.fields import MAX_SEED, check_fields, ranged
from ..data import DATASETS
from ..nets.specs import NETS
from ..training.config import TrainConfig
from ..training.schedule import Recipe
from .kinds import ExperimentKind, field_shape, get_kind, kind_names

SCALES = ("quick", "full")
PAPER_ROUNDS = 24  # Protocol §4: 24 rounds after the dense run; protocol §7: one-shot levels p = 0..24
MAX_SEEDS = 1000  # the papers use 5; this bound only catches typos (a job list of 10^12 seeds)
# A sweep's name becomes the file OUT/sweeps/NAME.json: no separators, no leading dot, no NUL.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class SweepSpec(Recipe):
    """Everything a sweep runs: the fields every kind shares (net, seeds, training schedule, and the
    `Recipe`'s optimiser, learning-rate schedule and batch order), and the kind's own fields in
    `params` (an instance of `get_kind(kind).params`). A kind's field named as a shared one is the
    kind's (learned_supermask's `momentum` is its mask learners')."""

    name: str
    kind: str
    description: str = ""
    net: str = "fc"
    dataset: str | None = None
    seeds: int = ranged(5, "number of seeds", low=1, high=MAX_SEEDS)
    first_seed: int = ranged(0, "first seed", low=0, high=MAX_SEED)
    # training of every run (None = protocol §3 defaults for the net)
    epochs: int | None = None
    iterations: int | None = None
    learning_rate: float | None = None
    eval_every: int = 100
    batch_size: int = 60
    params: Any = None
    scale: str = "full"
    source: str = ""

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

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
            batch_size=self.batch_size,
            test_eval="on_best",
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)},
        )

    def record(self) -> dict[str, Any]:
        """The stored form (a manifest's `spec`): the shared fields and the kind's, in one flat table, as
        a sweep file writes them."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "params"}
        if self.params is not None:
            out.update(dataclasses.asdict(self.params))
        return out


_COMMON = {f.name: f for f in dataclasses.fields(SweepSpec) if f.name != "params"}
_COMMON_USER = set(_COMMON) - {"scale", "source"}


def names_field(default: tuple[str, ...], valid: tuple[str, ...] | Callable[[], tuple[str, ...]], help: str = "",
                all_of: tuple[str, ...] | None = None) -> Any:
    """A kind's field listing names from `valid` (a tuple, or a function giving the names in use, e.g.
    the criteria, registered ones included). With `all_of`, the string "all" in a sweep file means
    that fixed list (for criteria: the table's, so that registering one of one's own renames no
    preset's runs)."""
    return dataclasses.field(default=default, metadata={"choices": valid, "all": all_of, "help": help})


def _choices(meta: Any) -> tuple[str, ...]:
    valid = meta["choices"]
    return tuple(valid() if callable(valid) else valid)


def _fields_of(kind: ExperimentKind) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(kind.params)}


def _field_types(kind: ExperimentKind) -> dict[str, Any]:
    hints = dict(typing.get_type_hints(SweepSpec))
    hints.update(typing.get_type_hints(kind.params))
    return hints


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line) or re.match(rf"\s*\[{re.escape(key)}\]", line):
            return i
    return None


def _where(source: str, text: str, key: str) -> str:
    line = _line_of(text, key)
    return f"{source}:{line}" if line else source


def _coerce(source: str, text: str, key: str, value: Any, kind: ExperimentKind | None,
            where: Callable[[str], str] | None = None) -> Any:
    """Check a TOML value's type against the field of the shared spec or of the kind; lists become tuples.
    Errors name the value's place: `where(key)` if given (an override), else the file and line."""
    if where is None:
        def where(k: str) -> str:
            return _where(source, text, k)
    user_fields = _COMMON_USER | (set(_fields_of(kind)) if kind is not None else set())
    if key not in user_fields:
        others = [name for name in kind_names() if key in _fields_of(get_kind(name))]
        hint = f" ({key!r} is a field of {' and '.join(others)} sweeps)" if kind is not None and others else ""
        raise TicketlabError(f"{where(key)}: unknown field {key!r}; valid fields: {', '.join(sorted(user_fields))}"
                             f"{hint}")
    shape, want_types = field_shape(_field_types(kind)[key] if kind is not None else typing.get_type_hints(SweepSpec)[key])
    if shape == "list":
        own = _fields_of(kind) if kind is not None else {}
        field = (own if key in own else _COMMON)[key]
        meta = field.metadata
        if value == "all" and meta.get("all"):
            return tuple(meta["all"])
        if not isinstance(value, (list, tuple)) or (not value and field.default != ()):  # () by default: may be empty
            what = ' (or "all")' if meta.get("all") else ""
            raise TicketlabError(f"{where(key)}: field {key!r} must be a non-empty list{what}")
        want = want_types[0]
        if not all(isinstance(v, want) and (want is bool or not isinstance(v, bool)) for v in value):
            raise TicketlabError(f"{where(key)}: field {key!r} must list {want.__name__} values")
        return tuple(value)
    if (isinstance(value, bool) and bool not in want_types) or not isinstance(value, want_types):
        raise TicketlabError(
            f"{where(key)}: field {key!r} must be {' or '.join(t.__name__ for t in want_types)}, got {value!r}"
        )
    return value


def flag_name(key: str) -> str:
    """How the command line's overrides are named in errors: the flag that set them."""
    return "--" + key.replace("_", "-")


def python_override(key: str) -> str:
    """How a Python caller's overrides (`load_sweep(..., overrides)`) are named in errors."""
    return f"override {key!r}"


def _blamer(source: str, text: str, overrides: dict[str, Any],
            override_name: Callable[[str], str] = python_override) -> Callable[[str], str]:
    """How an error names a field: the override that set it (`override_name`: a flag, or the Python
    argument), else the file, line and field."""

    def blame(key: str) -> str:
        key = {"seed": "first_seed"}.get(key, key)  # TrainConfig's seed is the sweep's first_seed
        if overrides.get(key) is not None:
            return override_name(key)
        return f"{_where(source, text, key)}: field {key!r}"

    return blame


def _check(source: str, text: str, spec: SweepSpec, kind: ExperimentKind, blame: Callable[[str], str]) -> None:
    if not NAME_PATTERN.fullmatch(spec.name):
        raise TicketlabError(
            f"{blame('name')} is {spec.name!r}: a sweep name is 1 to 64 letters, digits, '-', '_' or '.', "
            "not starting with '.' (it names the file OUT/sweeps/NAME.json)"
        )
    for key, values, valid in [("net", (spec.net,), tuple(NETS))] + (
            [("dataset", (spec.dataset,), DATASETS)] if spec.dataset is not None else []):
        _check_names(source, text, key, values, valid)
    for f in dataclasses.fields(kind.params):
        values = getattr(spec.params, f.name)
        if "choices" in f.metadata:
            _check_names(source, text, f.name, values, _choices(f.metadata))
        if isinstance(values, tuple):  # a repeated entry would train nothing new and list its rows twice
            repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if repeated is not None:
                raise TicketlabError(f"{_where(source, text, f.name)}: field {f.name!r} lists {repeated!r} twice")
    check_fields(spec, blame)
    if spec.first_seed + spec.seeds - 1 > MAX_SEED:
        raise TicketlabError(f"{blame('first_seed')} + seeds - 1 must be at most 2^63-1, got {spec.first_seed}")
    check_fields(spec.params, blame)  # each kind declares its fields' ranges beside their types
    kind.check(spec, lambda key: _where(source, text, key), blame)
    if spec.epochs is not None and spec.iterations is not None:
        raise TicketlabError(f"{source}: give epochs or iterations, not both")


def _check_names(source: str, text: str, key: str, values: tuple, valid: tuple) -> None:
    for v in values:
        if v not in valid:
            raise TicketlabError(f"{_where(source, text, key)}: unknown {key} {v!r}; valid: {', '.join(valid)}")


def _build(values: dict[str, Any], where: str, text: str, overrides: dict[str, Any],
           override_name: Callable[[str], str] = python_override, **extra: Any) -> SweepSpec:
    """A checked SweepSpec from coerced flat values (the kind's fields split off into `params`)."""
    for key in ("name", "kind"):
        if key not in values:
            raise TicketlabError(f"{where}: missing required field {key!r}")
    kind = get_kind(values["kind"])
    own = _fields_of(kind)
    params = kind.params(**{k: v for k, v in values.items() if k in own})
    spec = SweepSpec(**{k: v for k, v in values.items() if k in _COMMON and k not in own}, params=params, **extra)
    blame = _blamer(where, text, overrides, override_name)
    _check(where, text, spec, kind, blame)
    spec.train_config(spec.first_seed).validate(blame)
    return spec


def _kind_of(source: str, text: str, doc: dict[str, Any]) -> ExperimentKind | None:
    """The kind a sweep file names (checked first: it decides which fields are valid), or None if it names none."""
    if "kind" not in doc:
        return None
    value = doc["kind"]
    if not isinstance(value, str):
        raise TicketlabError(f"{_where(source, text, 'kind')}: field 'kind' must be str, got {value!r}")
    if value not in kind_names():
        raise TicketlabError(f"{_where(source, text, 'kind')}: unknown kind {value!r}; valid: {', '.join(kind_names())}")
    return get_kind(value)


def parse_spec(text: str, source: str, scale: str, overrides: dict[str, Any] | None = None,
               override_name: Callable[[str], str] = python_override) -> SweepSpec:
    """A validated SweepSpec from TOML text at a scale, with overrides (None: not given) applied last,
    each checked as a sweep-file field is.

    An `iterations` override replaces the file's training length, whether the file gave it as
    iterations or as epochs. Errors name an overridden value by `override_name` (the flag, for the
    command line; the argument, for Python), any other by file, line and field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TicketlabError(f"{source}: malformed TOML: {e}") from None
    scales = {s: doc.pop(s) for s in SCALES if s in doc}
    for s, table in scales.items():
        if not isinstance(table, dict):
            raise TicketlabError(
                f"{_where(source, text, s)}: field {s!r} must be a table of overrides ([{s}] on its own line), got {table!r}"
            )
    for s, table in scales.items():
        if "kind" in table:
            raise TicketlabError(f"{_where(source, text, 'kind')}: field 'kind' cannot change per scale: give it once, "
                                 "at the top of the file")
    if "kind" not in doc:
        raise TicketlabError(f"{source}: missing required field 'kind' (one of {', '.join(kind_names())})")
    kind = _kind_of(source, text, doc)
    values: dict[str, Any] = {}
    for key, value in doc.items():
        values[key] = _coerce(source, text, key, value, kind)
    if scale not in scales and scales:
        raise TicketlabError(f"{source} has no [{scale}] table: it defines {', '.join(scales)}")
    for key, value in scales.get(scale, {}).items():
        values[key] = _coerce(source, text, key, value, kind)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        given[key] = _coerce(source, text, key, value, kind, where=override_name)
    if "iterations" in given:
        values["epochs"] = None
    values.update(given)
    return _build(values, source, text, given, override_name, scale=scale, source=source)


# Fields of the one flat spec that sweeps had before each kind declared its own (manifests written
# then hold them all), with their defaults: a manifest's name hashes them as it did then, so the
# manifests of an existing store keep their names.
_FLAT_DEFAULTS: dict[str, Any] = {
    "criteria": ["large_final"], "mask1": ["rewind"], "mask0": ["zero"], "rounds": 24, "round_step": 1,
    "bases": ["converged"], "starts": ["init"], "dwr": [False], "levels": 24, "level_step": 1,
}


# The fields manifests hashed before any field was added: always hashed. A field added since is hashed
# only when it differs from its default, so a sweep that sets none keeps its manifest's name.
_HASHED_ALWAYS = frozenset({
    "name", "kind", "description", "net", "dataset", "seeds", "first_seed", "epochs", "iterations", "learning_rate",
    "eval_every", "scale", "source", *_FLAT_DEFAULTS,
})
_KIND_FIELDS_HASHED_ALWAYS = frozenset({  # a kind's own fields of then (learned_supermask's)
    "learners", "kept_fractions", "logit_init", "mask_epochs", "mask_iterations", "mask_batch", "bernoulli_lr",
    "edge_popup_lr", "momentum", "mask_eval_every", "eval_samples", "heuristic_criteria",
})


def manifest_fields(spec: SweepSpec) -> dict[str, Any]:
    """What a sweep's manifest name hashes: every field but the seed slice (and the file it came from),
    fields added since the first manifests only where set."""
    defaults = {f.name: f.default for f in dataclasses.fields(SweepSpec) if f.name != "params"}
    own = {f.name: f.default for f in dataclasses.fields(spec.params)} if spec.params is not None else {}
    defaults.update(own)
    always = _HASHED_ALWAYS | (_KIND_FIELDS_HASHED_ALWAYS & set(own))
    record = {k: v for k, v in spec.record().items() if k in always or v != defaults.get(k, object())}
    return {**_FLAT_DEFAULTS, **record, "seeds": None, "first_seed": None, "source": None}


def spec_from_record(values: Any, source: str) -> SweepSpec:
    """A SweepSpec from its stored form (a manifest's `spec`), checked as a sweep file is:
    `TicketlabError` naming `source` for a wrong type or value. Fields of other kinds (a manifest
    of the one flat spec of earlier versions holds them all) are left out."""
    if not isinstance(values, dict):
        raise TicketlabError(f"{source}: its spec is not a table of fields")
    kind = _kind_of(source, "", values)
    own = set(_fields_of(kind)) if kind is not None else set()
    every = {**_COMMON, **(_fields_of(kind) if kind is not None else {})}
    optional = {name for name, f in every.items() if f.default is None}
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("scale", "source"):
            if not isinstance(value, str):
                raise TicketlabError(f"{source}: field {key!r} must be str, got {value!r}")
            extra[key] = value
        elif key in _FLAT_DEFAULTS and key not in own:
            continue
        elif value is None and key in optional:
            fields[key] = None  # an optional field left at its default (a kind's own included)
        else:
            fields[key] = _coerce(source, "", key, value, kind)
    return _build(fields, source, "", {}, **extra)


PAPER_SEEDS = 5  # the papers' figures average 5 seeds


def recipe_text(recipe: Recipe) -> str:
    """What a run's recipe changes from protocol §3's ('optimizer sgd, momentum 0.9'), '' for the paper's."""
    base = Recipe()
    return ", ".join(f"{f.name} {getattr(recipe, f.name)}" for f in dataclasses.fields(Recipe)
                     if getattr(recipe, f.name) != getattr(base, f.name))


def _paper_schedule(spec: SweepSpec) -> tuple[Any, Any, str, bool]:
    """(what ran, the paper's, what its recipe changes, whether it is the paper's schedule)."""
    ran = spec.train_config(spec.first_seed).resolved()
    paper = TrainConfig(net=spec.net, dataset=spec.dataset).resolved()
    recipe = recipe_text(ran.recipe)
    same = (ran.iterations, ran.learning_rate, ran.eval_every) == (paper.iterations, paper.learning_rate, paper.eval_every)
    return ran, paper, recipe, same and not recipe


def what_ran(spec: SweepSpec) -> tuple[bool, str]:
    """Whether a sweep ran the paper protocol (protocol §3, §4, §7 at 5 seeds), and a phrase saying what it ran."""
    ran, paper, recipe, schedule = _paper_schedule(spec)
    parts = [f"{spec.seeds} seed{'s' if spec.seeds != 1 else ''}"]
    if schedule:
        parts.append(f"the full protocol §3 schedule ({ran.iterations:,} steps per run)")
    else:
        parts.append(f"{ran.iterations:,} training steps per run (protocol §3: {paper.iterations:,})")
        if ran.learning_rate != paper.learning_rate:
            parts.append(f"learning rate {ran.learning_rate:g} (paper: {paper.learning_rate:g})")
        if ran.eval_every != paper.eval_every:
            parts.append(f"evaluated every {ran.eval_every:,} steps (paper: {paper.eval_every})")
    if recipe:
        parts.append(recipe)
    pruning, what = get_kind(spec.kind).protocol(spec)
    if what:
        parts.append(what)
    return spec.seeds >= PAPER_SEEDS and schedule and pruning, ", ".join(parts)


def scale_name(spec: SweepSpec) -> str:
    """How a sweep is labelled: "quick" at the quick scale, "full" when its runs are the paper
    protocol's (whatever its seeds), else "custom": a sweep file's own schedule is never called full."""
    if spec.scale == "quick":
        return "quick"
    return "full" if _paper_schedule(spec)[3] and get_kind(spec.kind).protocol(spec)[0] else "custom"


def preset_names() -> list[str]:
    folder = resources.files("ticketlab.experiments") / "presets"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    return (resources.files("ticketlab.experiments") / "presets" / f"{name}.toml").read_text()


def load_sweep(name_or_file: str, scale: str, overrides: dict[str, Any] | None = None,
               override_name: Callable[[str], str] = python_override) -> SweepSpec:
    """A preset by name, or a user's TOML file by path, with `overrides` (checked as its fields are,
    errors naming them by `override_name`)."""
    if scale not in SCALES:
        raise TicketlabError(f"unknown scale {scale!r}: choose quick or full")
    if name_or_file in preset_names():
        return parse_spec(preset_text(name_or_file), f"preset {name_or_file}", scale, overrides, override_name)
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
        return parse_spec(text, str(path), scale, overrides, override_name)
    raise TicketlabError(f"unknown preset {name_or_file!r}: choose one of {', '.join(preset_names())}, or give a .toml file")


def preset_kinds() -> dict[str, str]:
    """Each preset's name and its kind (for a results table read without its store's manifests)."""
    return {name: tomllib.loads(preset_text(name))["kind"] for name in preset_names()}
