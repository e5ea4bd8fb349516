"""The training config of one run (SPEC §3), declared once as a typed dataclass: the command line's
flags (`core.fields`), the defaults per net and the run's identity (`store.naming`) derive from it."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..data import DATASETS, IMAGE_SHAPES, train_size
from ..data.augment import AUGMENTATIONS
from ..data import classes as data_classes
from ..core.errors import TicketlabError
from ..nets.specs import NETS, DoesNotFit, NetSpec, get_net, shape_text
from .schedule import TEST_EVAL_POLICIES, Schedule

# Upper bounds that no real run comes near (SPEC's longest schedule is 50,380 steps) but that stop
# a typo from starting a run of centuries, and keep every number within int64 (JSON, Parquet).
MAX_ITERATIONS = 10**8
MAX_SEED = 2**63 - 1


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


def _f(default: Any, help: str, choices: Any = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """One training run (SPEC §3). None means 'the SPEC default for this net'."""

    net: str = _f("fc", "network", NETS)
    dataset: str | None = _f(None, "dataset; every net builds for its images and classes (default: the net's own: "
                             f"{_default_datasets()})", DATASETS)
    seed: int = _f(0, "run seed, 0 to 2^63-1: init and batch order derive from it")
    epochs: int | None = _f(None, "epochs (default: SPEC's per net; at most 10^8 steps in all); exclusive with --iterations")
    iterations: int | None = _f(None, "training steps, 1 to 10^8 (default: epochs x floor(N_train / batch))")
    learning_rate: float | None = _f(None, "Adam learning rate (default: SPEC's per net)")
    batch_size: int = _f(60, "examples per step")
    eval_every: int = _f(100, "evaluate val and test every this many steps (and at 0 and the end), 1 to 10^8")
    test_eval: str = _f("on_best", "evaluate test only where val loss reaches a new minimum (and at 0 and the end), "
                        "or at every point (all: the full test curve)", TEST_EVAL_POLICIES)
    eval_train: bool = _f(False, "also evaluate the whole training set at each point (slow)")
    stop_at_val_accuracy: float | None = _f(None, "evaluate val after every step and stop once it reaches this (0-1)")
    augment: str = _f("none", "training-batch augmentation: crop_flip = random crops of the image padded by 4 pixels "
                      "and horizontal flips (the CIFAR-10 recipe of ResNets and VGGs), seeded by the run's seed",
                      AUGMENTATIONS)

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
        if self.seed < 0:
            raise TicketlabError(f"{flag('seed')} must be >= 0, got {self.seed}")
        if self.seed > MAX_SEED:
            raise TicketlabError(f"{flag('seed')} must be <= 2^63-1, got {self.seed}")
        if self.epochs is not None and self.iterations is not None:
            raise TicketlabError(f"give {flag('epochs')} or {flag('iterations')}, not both")
        for name in ("epochs", "iterations", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TicketlabError(f"{flag(name)} must be >= 1, got {value}")
        if self.eval_every > MAX_ITERATIONS:
            raise TicketlabError(f"{flag('eval_every')} must be <= {MAX_ITERATIONS:,}, got {self.eval_every}")
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise TicketlabError(f"{flag('learning_rate')} must be a positive number, got {self.learning_rate}")
        size = train_size(self.resolved_dataset)
        if size is None and self.iterations is None:
            raise TicketlabError(
                f"dataset {self.resolved_dataset} does not say its training size before it is loaded: give "
                f"{flag('iterations')} rather than epochs"
            )
        if size is not None and self.batch_size > size:
            raise TicketlabError(f"{flag('batch_size')} {self.batch_size} exceeds the training set of {self.resolved_dataset}")
        steps = self.resolved().iterations
        if self.iterations is not None and steps > MAX_ITERATIONS:
            raise TicketlabError(f"{flag('iterations')} must be <= {MAX_ITERATIONS:,}, got {self.iterations}")
        if steps > MAX_ITERATIONS:
            raise TicketlabError(
                f"{flag('epochs')} {self.epochs} means {steps:,} training steps: at most {MAX_ITERATIONS:,} are allowed"
            )
        target = self.stop_at_val_accuracy
        if target is not None and not (0 < target <= 1):
            raise TicketlabError(f"{flag('stop_at_val_accuracy')} is a fraction in (0, 1], got {target}")

    @property
    def resolved_dataset(self) -> str:
        return self.dataset or get_net(self.net).dataset

    def net_spec(self) -> NetSpec:
        """The net built for this run's dataset (its image shape and classes)."""
        return net_spec(self.net, self.resolved_dataset)

    def resolved(self) -> "TrainConfig":
        """The same run with every None replaced by its SPEC default (epochs folded into iterations)."""
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
            augment=r.augment,
            **extra,
        )
