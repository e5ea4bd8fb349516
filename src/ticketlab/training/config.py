"""The training config of one run (protocol §3), declared once as a typed dataclass: the command line's
flags (`core.fields`), the defaults per net and the run's identity (`store.naming`) derive from it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..core.errors import TicketlabError
from ..core.fields import MAX_SEED, check_fields, described, ranged
from ..data import DATASETS, IMAGE_SHAPES, train_size
from ..data import classes as data_classes
from ..nets.specs import NETS, DoesNotFit, NetSpec, get_net, shape_text
from .schedule import MAX_ITERATIONS, TEST_EVAL_POLICIES, Recipe, Schedule


def cli_flag(name: str) -> str:
    """How an error names a TrainConfig field given on the command line: `--field-name`."""
    return "--" + name.replace("_", "-")


def net_spec(net: str, dataset: str) -> NetSpec:
    """The net built for a registered dataset's images and classes (`nets.specs.DoesNotFit`, one
    line, if its images are too small for the net's pooling)."""
    return get_net(net, IMAGE_SHAPES[dataset], data_classes(dataset))


def net_fits(net: str, dataset: str) -> bool:
    """Whether a network can be built for that dataset's images (every net flattens or convolves any
    image shape; only pooling that would leave nothing refuses one)."""
    try:
        net_spec(net, dataset)
    except DoesNotFit:
        return False
    return True


def _default_datasets() -> str:
    """'mnist for fc, cifar10 for conv2, conv4, ...': each net's default dataset, from the registry."""
    by_dataset: dict[str, list[str]] = {}
    for name in NETS:
        by_dataset.setdefault(NETS[name].dataset, []).append(name)
    return "; ".join(f"{dataset} for {', '.join(nets)}" for dataset, nets in by_dataset.items())


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """One training run (protocol §3). None means 'the paper's default for this net'. Each numeric field
    declares its range (`core.fields.ranged`), checked for flags, sweep files and Python alike. The
    optimiser, its schedule and the batch order are the `Recipe`'s fields."""

    net: str = described("fc", "network", NETS)
    dataset: str | None = described(None, "dataset; every net builds for its images and classes (default: the net's "
                                    f"own: {_default_datasets()})", DATASETS)
    seed: int = ranged(0, "run seed: init and batch order derive from it", low=0, high=MAX_SEED)
    epochs: int | None = ranged(None, "epochs (default: the paper's per net; at most 10^8 steps in all); exclusive with "
                                "--iterations", low=1)
    iterations: int | None = ranged(None, "training steps (default: epochs x floor(N_train / batch))", low=1,
                                    high=MAX_ITERATIONS)
    learning_rate: float | None = ranged(None, "base learning rate (default: the paper's per net, for TF1 Adam)", above=0)
    batch_size: int = ranged(60, "examples per step", low=1)
    eval_every: int = ranged(100, "evaluate val and test every this many steps (and at 0 and the end)", low=1,
                             high=MAX_ITERATIONS)
    test_eval: str = described("on_best", "evaluate test only where val loss reaches a new minimum (and at 0 and the "
                               "end), or at every point (all: the full test curve)", TEST_EVAL_POLICIES)
    eval_train: bool = described(False, "also evaluate the whole training set at each point (slow)")
    stop_at_val_accuracy: float | None = ranged(None, "evaluate val after every step and stop once it reaches this "
                                                "fraction", above=0, high=1)

    def validate(self, flag: Callable[[str], str] = cli_flag) -> None:
        """Refuse nonsense before any work starts, naming the field and the fix.

        `flag(field)` says where a field's value came from in the messages: a command-line flag by
        default; a sweep file names its file and line instead."""
        get_net(self.net)
        if self.dataset is not None and self.dataset not in DATASETS:
            raise TicketlabError(f"unknown dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        try:
            self.net_spec()
        except DoesNotFit as e:
            dataset = self.resolved_dataset
            raise TicketlabError(f"{flag('net')} {self.net} does not fit dataset {dataset} "
                                 f"({shape_text(IMAGE_SHAPES[dataset])} images): {e.reason}; choose another net or "
                                 "dataset") from None
        check_fields(self, flag)
        if self.epochs is not None and self.iterations is not None:
            raise TicketlabError(f"give {flag('epochs')} or {flag('iterations')}, not both")
        size = train_size(self.resolved_dataset)
        if size is None and self.iterations is None:
            raise TicketlabError(
                f"dataset {self.resolved_dataset} does not say its training size before it is loaded: give "
                f"{flag('iterations')} rather than epochs"
            )
        if size is not None and self.batch_size > size:
            raise TicketlabError(f"{flag('batch_size')} {self.batch_size} exceeds the training set of {self.resolved_dataset}")
        steps = self.resolved().iterations
        if steps > MAX_ITERATIONS:
            raise TicketlabError(
                f"{flag('epochs')} {self.epochs} means {steps:,} training steps: at most {MAX_ITERATIONS:,} are allowed"
            )
        self.check_recipe(flag, steps)

    @property
    def recipe(self) -> Recipe:
        return Recipe(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)})

    @property
    def resolved_dataset(self) -> str:
        return self.dataset or get_net(self.net).dataset

    def net_spec(self) -> NetSpec:
        """The net built for this run's dataset (its image shape and classes)."""
        return net_spec(self.net, self.resolved_dataset)

    def resolved(self) -> "TrainConfig":
        """The same run with every None replaced by its paper default (epochs folded into iterations)."""
        spec = get_net(self.net)
        size = train_size(self.resolved_dataset)
        iterations = self.iterations or (self.epochs or spec.epochs) * ((size or 0) // self.batch_size)
        return dataclasses.replace(
            self,
            dataset=self.resolved_dataset,
            epochs=None,
            iterations=iterations,
            learning_rate=self.learning_rate if self.learning_rate is not None else spec.learning_rate,
        )

    def schedule(self, **extra: Any) -> Schedule:
        r = self.resolved()
        return Schedule(
            iterations=r.iterations,
            learning_rate=r.learning_rate,
            batch_size=r.batch_size,
            eval_every=r.eval_every,
            test_eval=r.test_eval,
            eval_train=r.eval_train,
            stop_at_val_accuracy=r.stop_at_val_accuracy,
            recipe=r.recipe,
            **extra,
        )
