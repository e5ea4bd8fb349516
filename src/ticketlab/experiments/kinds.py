"""The experiment-kind registry: what a sweep of each kind declares, runs and reports.

A kind is one `ExperimentKind` subclass in one module of this package, registered with
`register_kind` (a built-in kind is imported by the package's `__init__`): its own spec fields (a
frozen dataclass, `params`), how it checks them, how it runs one job (one seed), the result rows it
reads back from the store and their columns, and how its curves are drawn (`curves`, which the
analysis layer follows for any sweep of the kind, a user's own TOML file included). `run_job`, the results table and the figures dispatch through `get_kind`, never on a
kind's name.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..core.errors import TicketlabError

if TYPE_CHECKING:
    from .spec import SweepSpec
    from .jobs import Runtime

Report = Callable[..., None]  # report(fraction of the job done in [0, 1], note: what runs now = "")
Blame = Callable[[str], str]  # how an error names a spec field (its flag, or its file and line)


@dataclass(frozen=True)
class Curves:
    """How a kind's results are drawn: `value` (a results column, a fraction) against % of weights
    remaining, one curve per distinct `keys`, one panel per distinct `panels`."""

    value: str
    keys: tuple[str, ...]
    panels: tuple[str, ...] = ()
    ylabel: str = "test accuracy (%)"
    chance: bool = True  # the value is an accuracy: its figure marks chance (10%)


class JobProgress:
    """A job's progress as the share of its work's predicted cost (`training.cost`) done, each report
    with a note of what runs: the sweep's progress line weighs jobs and rounds by what they cost."""

    def __init__(self, report: Report | None, work: list[Any]):
        from ..training.cost import relative_cost

        self.report, self.work = report, work
        self.costs = [relative_cost(w) for w in work]
        self.total = sum(self.costs)
        self.done, self.index, self.current = 0.0, -1, 0.0

    def next(self) -> Callable[..., None]:
        """Start the next work item (in the order of `work`): its fraction-done callback."""
        return self.span(1)

    def span(self, count: int) -> Callable[..., None]:
        """Start the next `count` work items as one (a call that does them all, e.g. the iterative kind's
        `run_chains`): the callback of the fraction of their summed cost done, and optionally the note of
        what runs (default: the first item's label)."""
        self.done += self.current
        first = self.index + 1
        self.index += count
        cost, label = sum(self.costs[first : first + count]), self.work[first].label
        self.current = cost

        def part(fraction: float, note: str = "") -> None:
            if self.report is not None and self.total > 0:
                self.report(min(1.0, (self.done + fraction * cost) / self.total), note or label)

        part(0.0)
        return part


class ExperimentKind:
    """One kind of experiment. Subclasses set `name`, `params` and `curves` and implement the methods."""

    name: ClassVar[str]
    params: ClassVar[type]  # a frozen dataclass of the kind's own spec fields, with defaults
    curves: ClassVar[Curves]
    columns: ClassVar[tuple[str, ...]] = ()  # the results-table columns its rows fill, beyond experiment/net/dataset/seed
    # True: its columns no other kind has join the CSV only when some row fills them, so that adding the
    # kind leaves every other sweep's CSV as it was
    columns_when_present: ClassVar[bool] = False
    # columns its rows fill only sometimes (a field a sweep sets): they join the CSV only when some row
    # fills them, so that adding one leaves every other sweep's CSV as it was
    optional_columns: ClassVar[tuple[str, ...]] = ()

    def check(self, spec: "SweepSpec", where: Blame, blame: Blame) -> None:
        """Refuse nonsense in the kind's fields beyond their types and listed names (which `spec` checks):
        a one-line TicketlabError naming the field by `where(field)` (its file and line) or, for a value a
        flag may have set, `blame(field)`."""

    def run_job(self, spec: "SweepSpec", seed: int, root: Path, runtime: "Runtime", report: Report | None) -> None:
        """Train or evaluate whatever of one seed's runs is not yet in the store at `root`."""
        raise NotImplementedError

    def result_rows(self, spec: "SweepSpec", root: Path) -> list[dict[str, Any]]:
        """One dict per finished result of the sweep in the store (keys: columns of the results table)."""
        raise NotImplementedError

    def expected_results(self, spec: "SweepSpec") -> int | None:
        """How many rows a complete sweep gives, where that is known in advance (else None)."""
        return None

    def plan(self, spec: "SweepSpec", seed: int, root: Path, claimed: set[str], device: str,
             done: Callable[[Path], bool] | None = None) -> list[Any] | None:
        """The work one seed's job has left (`training.cost` items), in the order it does it, leaving out
        runs `done(path)` says are finished (default: their summary exists) or named in `claimed`
        (planned by an earlier job of the batch), and
        adding the names of the runs it plans to `claimed`. None: not known (the progress line then
        counts the job by its reports alone)."""
        return None

    def protocol(self, spec: "SweepSpec") -> tuple[bool, str]:
        """Whether the kind's own schedule (rounds, levels) is the paper's, and a phrase saying what ran."""
        return True, ""


def check_range(params: Any, key: str, low: int, high: int, blame: Blame, why: str = "") -> None:
    """Refuse `params.<key>` outside low..high in one line naming the field by `blame` (and why the bound)."""
    value = getattr(params, key)
    if value < low:
        raise TicketlabError(f"{blame(key)} must be >= {low}, got {value}")
    if value > high:
        raise TicketlabError(f"{blame(key)} must be <= {high}{f' ({why})' if why else ''}, got {value}")


def check_steps(last: int, step: int, last_name: str, step_name: str, blame: Blame) -> None:
    """Refuse a step that does not reach `last` (rounds = 24 in steps of 5 would stop at round 20 and
    leave 21-24 out without a word), naming both fields and the values that would."""
    if last % step:
        lower, upper = last - last % step, last - last % step + step
        raise TicketlabError(f"{blame(step_name)} {step} does not divide {last_name} {last}: the last trained would be "
                             f"{lower}, leaving {lower + 1}-{last} out; choose {last_name} = {lower}"
                             f"{f' or {upper}' if upper <= 24 else ''}, or a {step_name} that divides {last}")


_SCALARS = (int, float, str, bool)


def field_shape(hint: Any) -> tuple[str, tuple[type, ...]]:
    """('list', element types) or ('scalar', accepted types) for a field's type hint: a sweep file's
    values are int, float, str or bool, or a tuple of one of them (tuple[str, ...]), or optional."""
    if typing.get_origin(hint) is tuple and len(typing.get_args(hint)) == 2 and typing.get_args(hint)[1] is Ellipsis \
            and typing.get_args(hint)[0] in _SCALARS:
        return "list", (typing.get_args(hint)[0],)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
    if hint not in _SCALARS:
        raise TypeError(f"a sweep field's type must be int, float, str, bool or a tuple[X, ...] of one, not {hint}")
    return "scalar", ((float, int) if hint is float else (hint,))


def check_params_class(params: type) -> None:
    """Refuse (at registration) a kind's params whose field types a sweep file cannot give."""
    if not dataclasses.is_dataclass(params):
        raise TypeError(f"{params.__name__} must be a frozen dataclass of the kind's sweep fields")
    for hint in typing.get_type_hints(params).values():
        field_shape(hint)


KINDS: dict[str, ExperimentKind] = {}
# The built-in kinds' modules, in registration order (the results table's column order). They are
# imported at the registry's first use, not with the package: a sweep file is parsed and checked, and
# the command line answers, before torch loads.
BUILTIN_KIND_MODULES = ("iterative", "supermask", "learned", "stability")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # first: each module registers itself through register_kind
    import importlib

    for module in BUILTIN_KIND_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def register_kind(kind: ExperimentKind) -> ExperimentKind:
    """Add a kind to the registry (its name must be new); returns it."""
    _load_builtins()
    if kind.name in KINDS and type(KINDS[kind.name]) is not type(kind):
        raise ValueError(f"experiment kind {kind.name!r} is registered twice")
    check_params_class(kind.params)
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Take a kind out of the registry (tests that register a toy kind put the registry back)."""
    KINDS.pop(name, None)


def get_kind(name: str) -> ExperimentKind:
    """The registered kind `name`, or a one-line error listing the kinds."""
    _load_builtins()
    try:
        return KINDS[name]
    except KeyError:
        raise TicketlabError(f"unknown experiment kind {name!r}: choose one of {', '.join(kind_names())}") from None


def kind_names() -> tuple[str, ...]:
    """The registered kinds: the built-in ones in `BUILTIN_KIND_MODULES` order (iterative, supermask,
    learned_supermask: the results table's column order), then the others in registration order."""
    _load_builtins()
    builtin = [kind.name for kind in KINDS.values() if type(kind).__module__.rsplit(".", 1)[-1] in BUILTIN_KIND_MODULES]
    builtin.sort(key=lambda name: BUILTIN_KIND_MODULES.index(type(KINDS[name]).__module__.rsplit(".", 1)[-1]))
    return (*builtin, *(name for name in KINDS if name not in builtin))
