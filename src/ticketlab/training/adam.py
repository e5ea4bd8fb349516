"""TF1 Adam, as the original code trains with it: torch's fused kernel with TF1's arguments, and a reference."""
from __future__ import annotations

import math

import torch

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def _adam_step(params, grads, exp_avgs, exp_avg_sqs, step: int, lr: float) -> None:
    """The straightforward TF1 Adam step through foreach ops (the reference, and the path where torch has
    no fused kernel; `TF1Adam` uses the fused one where it runs)."""
    # TF1's AdamOptimizer form (the original code): eps is added to sqrt(v), lr carries the bias correction.
    lr_t = lr * math.sqrt(1 - ADAM_BETA2**step) / (1 - ADAM_BETA1**step)
    torch._foreach_mul_(exp_avgs, ADAM_BETA1)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - ADAM_BETA1)
    torch._foreach_mul_(exp_avg_sqs, ADAM_BETA2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - ADAM_BETA2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denom, ADAM_EPS)
    torch._foreach_addcdiv_(params, exp_avgs, denom, value=-lr_t)


def has_fused_adam(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on this device (CUDA since torch 2.0, CPU since 2.4)."""
    if not hasattr(torch, "_fused_adam_"):
        return False
    if device.type != "cpu":
        return True
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def tf1_adam_fused_args(step: int, lr: float) -> dict[str, float]:
    """Arguments that make torch's fused Adam compute TF1's update.

    torch: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps'); TF1: p -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps),
    with bc_i = 1 - beta_i**step. The two are equal when eps' = eps / sqrt(bc2)."""
    return dict(lr=lr, beta1=ADAM_BETA1, beta2=ADAM_BETA2, weight_decay=0.0,
                eps=ADAM_EPS / math.sqrt(1 - ADAM_BETA2**step), amsgrad=False, maximize=False)


class TF1Adam:
    """The optimiser of protocol §3 for a cohort's flat buffers (`state.Optimizer`): TF1 Adam, through
    torch's fused kernel where it runs (one call per step on the whole buffer), else the foreach form.

    Pruned weights hold by their second moment: +inf from the start, so their update
    -lr_t * m / (sqrt(inf) + eps) is exactly 0 at every step, whatever their gradient, with no pass
    over the gradients. With hold_by_inf=False they do not (`hold` says so), and the cohort zeroes
    their gradients instead: moments stay 0 and the update is 0 / (0 + eps). Kept weights get the
    same numbers either way (the tests' reference)."""

    slots = ("exp_avg", "exp_avg_sq")
    whole_buffer = True  # torch's fused kernel: lanes fixed by an element's offset (`state.Optimizer`)
    sparse_kernels = True  # the update `nets.sparse` computes; a subclass with another update sets False

    def __init__(self, learning_rate: float, hold_by_inf: bool = True):
        self.learning_rate, self.hold_by_inf = learning_rate, hold_by_inf
        self._step_t: torch.Tensor | None = None
        self._fused: bool | None = None  # whether the fused kernel runs on the buffers' device, found at the first step

    def hold(self, slots: dict[str, list[torch.Tensor]], member: int, masks: list[torch.Tensor]) -> bool:
        if not self.hold_by_inf:
            return False
        for v, mask in zip(slots["exp_avg_sq"], masks):
            v[member].masked_fill_(mask.logical_not(), math.inf)
        return True

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
             iteration: int, learning_rate: float | None = None) -> None:
        """One update of the pieces of the flat buffers (slots: per slot, its pieces), at `learning_rate`
        (None: the one it was built with). A piece that starts on a member block and is a multiple of
        ALIGN floats long gets the numbers of one call on the whole buffer: the state passes the whole
        buffers, or the dense members' blocks when others train sparse (`training.state`)."""
        if not params:
            return
        lr = self.learning_rate if learning_rate is None else learning_rate
        exp_avgs, exp_avg_sqs = slots
        if self._fused is None:
            self._fused = has_fused_adam(params[0].device)
            self._step_t = torch.zeros((), dtype=torch.float32, device=params[0].device)
        if self._fused:
            self._step_t.fill_(iteration)
            torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], [self._step_t] * len(params),
                               **tf1_adam_fused_args(iteration, lr))
        else:  # no fused kernel here (CPU before torch 2.4): the foreach form, which rounds differently
            _adam_step(params, grads, exp_avgs, exp_avg_sqs, iteration, lr)
