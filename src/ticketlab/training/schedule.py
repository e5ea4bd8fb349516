"""What a cohort trains for (`Schedule`), what each member starts from and what it ends with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from typing import TYPE_CHECKING

from ..core.errors import TicketlabError
from ..core.fields import MAX_SEED, described, ranged
from ..data.augment import AUGMENTATIONS
from .recipes import LR_SCHEDULE_TABLE, LR_SCHEDULES, OPTIMIZER_TABLE, OPTIMIZERS, learning_rate, lr_schedule, \
    optimizer_entry

if TYPE_CHECKING:  # only the type hints need torch: TrainConfig, which the command line parses with, imports this
    import torch

TEST_EVAL_POLICIES = ("all", "on_best")
# An upper bound that no real run comes near (the paper's longest schedule is 50,380 steps) but that stops
# a typo from starting a run of centuries, and keeps every number within int64 (JSON, Parquet).
MAX_ITERATIONS = 10**8


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How the weights move: the optimiser, its learning-rate schedule, the batch order and its
    augmentation. Every
    default is protocol §3's (TF1 Adam at a constant rate, batches drawn from the run's seed), and a run's
    identity leaves fields at their defaults out, so a run that sets none keeps its name. Fields of
    `TrainConfig` and of every sweep (flags, sweep files and the run's hash follow)."""

    optimizer: str = described("tf1_adam", "optimiser: " + "; ".join(f"{e.name} = {e.help}" for e in OPTIMIZER_TABLE),
                               OPTIMIZERS)
    momentum: float = ranged(0.0, "SGD momentum (sgd)", low=0, below=1)
    nesterov: bool = described(False, "Nesterov momentum (sgd, with a momentum above 0)")
    weight_decay: float = ranged(0.0, "L2 weight decay added to the gradient (sgd, adam); pruned weights stay held",
                                 low=0)
    lr_schedule: str = described("constant", "learning-rate schedule: " + "; ".join(
        f"{e.name} = {e.help}" for e in LR_SCHEDULE_TABLE), LR_SCHEDULES)
    milestones: tuple[int, ...] = ranged((), "multistep: the steps after which the rate is multiplied by gamma, "
                                         "increasing", low=1, high=MAX_ITERATIONS)
    gamma: float = ranged(0.1, "multistep: the factor at each milestone", above=0, high=1)
    warmup_steps: int = ranged(0, "steps of linear warmup, the rate rising from lr / warmup_steps to lr (any "
                               "schedule)", low=0, high=MAX_ITERATIONS)
    data_order_seed: int | None = ranged(None, "seed of the batch order (default: the run's seed; the init always "
                                         "comes from the run's seed)", low=0, high=MAX_SEED)
    augment: str = described("none", "training-batch augmentation: crop_flip = random crops of the image padded by 4 "
                             "pixels and horizontal flips (the CIFAR-10 recipe of ResNets and VGGs), drawn from the "
                             "batch order's seed and the step", AUGMENTATIONS)

    def check_recipe(self, flag: Callable[[str], str], iterations: int) -> None:
        """Refuse what the ranges cannot: fields the chosen optimiser or schedule does not read, Nesterov
        without momentum, milestones out of order or past the schedule, warmup as long as the schedule.
        One line naming the field by `flag(field)` (its flag, or its file and line)."""
        if self.optimizer not in OPTIMIZERS:
            raise TicketlabError(f"{flag('optimizer')} is {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TicketlabError(f"{flag('lr_schedule')} is {self.lr_schedule!r}: choose one of "
                                 f"{', '.join(LR_SCHEDULES)}")
        base = Recipe()
        for table, chosen, what in ((OPTIMIZER_TABLE, optimizer_entry(self.optimizer), "optimizer"),
                                    (LR_SCHEDULE_TABLE, lr_schedule(self.lr_schedule), "lr_schedule")):
            for name in sorted({n for e in table for n in e.takes} - set(chosen.takes)):
                if getattr(self, name) != getattr(base, name):
                    takers = ", ".join(e.name for e in table if name in e.takes)
                    raise TicketlabError(f"{flag(name)} is for {what} {takers}, not {chosen.name}: choose "
                                         f"{takers} or drop it")
        if self.nesterov and self.momentum == 0:
            raise TicketlabError(f"{flag('nesterov')} needs a momentum above 0: give {flag('momentum')}")
        if self.lr_schedule == "multistep" and not self.milestones:
            raise TicketlabError(f"{flag('milestones')} must list at least one step for lr_schedule multistep")
        ms = list(self.milestones)
        if ms != sorted(set(ms)):
            raise TicketlabError(f"{flag('milestones')} must be strictly increasing steps, got {ms}")
        if ms and ms[-1] >= iterations:
            raise TicketlabError(f"{flag('milestones')} must lie within the schedule (below its {iterations:,} steps), "
                                 f"got {ms[-1]:,}")
        if self.warmup_steps >= iterations:
            raise TicketlabError(f"{flag('warmup_steps')} must be below the schedule's {iterations:,} steps, got "
                                 f"{self.warmup_steps:,}")



@dataclass(frozen=True)
class Schedule:
    """What to train for and when to evaluate."""

    iterations: int
    learning_rate: float
    batch_size: int = 60
    eval_every: int = 100
    test_eval: str = "all"  # "all": every point; "on_best": where some val loss hits a new minimum, and at the end
    eval_train: bool = False
    stop_at_val_accuracy: float | None = None  # evaluate val after every step; stop once every member reaches it
    snapshot_iterations: tuple[int, ...] = ()  # keep the weights after these many steps
    snapshot_val_accuracies: tuple[float, ...] = ()  # keep the weights at the first step with val accuracy >= each
    recipe: Recipe = Recipe()  # the optimiser, the learning-rate schedule, the batch order
    # The steps this cohort trains: start_iteration + 1 .. end_iteration (None: iterations), with the
    # batches and learning rates those steps have in the whole schedule (late rewinding starts a round
    # at the rewind step; the optimiser's state starts fresh there).
    start_iteration: int = 0
    end_iteration: int | None = None

    @property
    def end(self) -> int:
        return self.iterations if self.end_iteration is None else self.end_iteration

    def learning_rate_at(self, update: int) -> float:
        """The learning rate of the update that makes step update + 1 of the schedule."""
        return learning_rate(self.learning_rate, update, self.iterations, self.recipe)


@dataclass
class MemberStart:
    """One member's start kernels (pruned positions already hold their fixed value) and bool masks,
    and the start of its other parameters (`NetSpec.params`: biases, BatchNorm's; None: as at init,
    protocol §2's zero biases; late rewinding gives the dense run's at the rewind step)."""

    weights: list[torch.Tensor]
    masks: list[torch.Tensor] | None = None  # None: dense
    biases: list[torch.Tensor] | None = None


@dataclass
class MemberResult:
    """What one member's training produced (tensors on the CPU)."""

    history: dict[str, list[float]]
    final_weights: list[torch.Tensor]
    final_biases: list[torch.Tensor]  # the net's other parameters (`NetSpec.params`)
    # (weights, biases, buffers) by name
    snapshots: dict[str, tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = field(default_factory=dict)
    snapshot_iterations: dict[str, int] = field(default_factory=dict)
    final_buffers: list[torch.Tensor] = field(default_factory=list)  # BatchNorm running statistics (`NetSpec.buffers`)

    @property
    def early_stop_index(self) -> int:
        """Index of the first evaluation point with the lowest val loss."""
        losses = self.history["val_loss"]
        return min(range(len(losses)), key=lambda i: (losses[i], i))

    def summary(self) -> dict[str, float | int]:
        h, i = self.history, self.early_stop_index
        return {
            "early_stop_iteration": int(h["iteration"][i]),
            "test_accuracy_at_early_stop": h["test_accuracy"][i],
            "val_loss_at_early_stop": h["val_loss"][i],
            "val_accuracy_at_early_stop": h["val_accuracy"][i],
            "test_accuracy_at_init": h["test_accuracy"][0],
            "final_test_accuracy": h["test_accuracy"][-1],
            "final_val_loss": h["val_loss"][-1],
            "iterations": int(h["iteration"][-1]),
        }


Progress = Callable[[int, int, list[float]], None]

