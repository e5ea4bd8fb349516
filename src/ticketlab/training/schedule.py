"""What a cohort trains for (`Schedule`), what each member starts from and what it ends with."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the type hints need torch: TrainConfig, which the command line parses with, imports this
    import torch

TEST_EVAL_POLICIES = ("all", "on_best")



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
    augment: str = "none"  # "crop_flip": random crops of the 4-padded image and horizontal flips (`data.augment`)


@dataclass
class MemberStart:
    """One member's start kernels (pruned positions already hold their fixed value) and bool masks,
    and the start of its other parameters (`NetSpec.params`; None: all zero, SPEC §2's biases)."""

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

