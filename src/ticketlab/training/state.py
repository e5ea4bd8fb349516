"""The state of a cohort in training: K networks of one architecture, their parameters, gradients and
optimiser state in flat buffers, and one training step over all of them.

Two seams: *what* the loop trains is a `CohortLearner` (anything with `step(x, y)` and the
networks to evaluate, `weights` and `biases`), built by a `Learner` from the members' starts; the
default, `train_weights`, trains the weights themselves (`CohortState`). *How* they move is an
`Optimizer` on flat buffers; the default is protocol §3's TF1 Adam (`adam.TF1Adam`), which also holds
pruned weights at their start values.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Protocol, Sequence

import torch

from ..core.numerics import cuda_float32
from ..nets.forward import ALIGN, CUDA_LANES, FCPass, fc_grads, forward, member_losses
from ..nets.sparse import SparseMembers, trains_sparse
from ..nets.specs import NetSpec, init_buffers
from .adam import ADAM_BETA1, ADAM_BETA2, ADAM_EPS, TF1Adam
from .schedule import MemberStart, Schedule


class Optimizer(Protocol):
    """How a cohort's parameters move given their gradients, on pieces of its flat buffers
    (`FlatLayout`), each piece a run of whole member blocks, so that a member's update does not depend
    on its cohort. Built by `optimizers.make_optimizer` from a run's recipe (`recipes.OPTIMIZER_TABLE`)."""

    slots: tuple[str, ...]  # names of its per-parameter state buffers, zeros at the start
    # True: an element's update depends on the element and its offset in the piece modulo ALIGN only
    # (torch's fused kernels), so the state calls it once on the whole buffers; False: on each
    # member's block of each tensor, the calls the member gets alone (torch's elementwise kernels
    # split a tensor across threads by its length). An optimiser that does not say is called so.
    whole_buffer: bool
    # True: its update is TF1 Adam's, which `nets.sparse`'s kernels compute, so low-density FC members
    # may train there (the state then hands it the dense members' pieces only). An optimiser that does
    # not say trains every member dense.
    sparse_kernels: bool

    def hold(self, slots: dict[str, list[torch.Tensor]], member: int, masks: list[torch.Tensor]) -> bool:
        """Make `member`'s pruned weights (masks False) hold their start values through its state, if it
        can (return True); False: the cohort zeroes their gradients at every step instead."""

    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
             iteration: int, learning_rate: float) -> None:
        """One update of the parameter pieces from the gradient pieces (slots: per slot, its pieces);
        `iteration` counts this state's updates from 1, `learning_rate` is the schedule's for this step."""


class CohortLearner(Protocol):
    """What the training loop drives: a step on a shared batch, and the networks it evaluates and
    returns (stacked (K, ...) kernels and (K, out) biases)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None: ...


Learner = Callable[[NetSpec, Sequence[MemberStart], Schedule, torch.device], CohortLearner]


def train_weights(spec: NetSpec, starts: Sequence[MemberStart], schedule: Schedule, device: torch.device) -> "CohortState":
    """The default learner: the weights themselves, pruned weights held, by the schedule's optimiser
    (protocol §3: TF1 Adam) at the schedule's learning rates, from its start step on."""
    from .optimizers import make_optimizer

    return CohortState(spec, list(starts), schedule.learning_rate, device,
                       optimizer=make_optimizer(schedule.recipe, schedule.learning_rate),
                       learning_rates=lambda i: schedule.learning_rate_at(schedule.start_iteration + i - 1))


def cohort_lanes(spec: NetSpec, device: torch.device) -> int:
    """A cohort's member count is padded to a multiple of this: CUDA_LANES for dense stacks (FC) on a
    CUDA GPU (whose products run in calls of that many members, `forward`), else 1. Conv nets' dense
    heads pad their products themselves: filler members would cost whole conv stacks."""
    return CUDA_LANES if device.type == "cuda" and spec.dense_stack else 1


class FlatLayout:
    """Where each parameter tensor of each member lives in one flat float32 buffer.

    Tensor i of the network is a (K, padded_i) block, padded_i = its size rounded up to ALIGN;
    `views` gives the (K, *shape_i) views of a buffer (contiguous when the size is a multiple of ALIGN,
    else strided by padded_i). Padding holds zeros and never moves."""

    def __init__(self, shapes: list[tuple[int, ...]], k: int):
        self.shapes, self.k = shapes, k
        self.sizes = [math.prod(shape) for shape in shapes]
        self.padded = [-(-n // ALIGN) * ALIGN for n in self.sizes]
        self.offsets = [0]
        for p in self.padded:
            self.offsets.append(self.offsets[-1] + k * p)

    @property
    def total(self) -> int:
        return self.offsets[-1]

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        return [
            buf[o : o + self.k * p].view(self.k, p)[:, :n].view(self.k, *shape)
            for o, p, n, shape in zip(self.offsets, self.padded, self.sizes, self.shapes)
        ]


class CohortState:
    """Everything one training step of a cohort reads and writes, and the step itself.

    Parameters, gradients and each optimiser slot (TF1 Adam: both moments) live in one flat buffer
    each (`FlatLayout`): per layer a (K, *shape) view for the kernels, then a (K, *shape) view for
    each of the net's other parameters (`NetSpec.params`: a dense stack's or conv net's one bias per
    layer; a BatchNorm's scale and shift), which `biases` lists: they are never masked. BatchNorm's
    running statistics (`NetSpec.buffers`) live in a flat buffer of their own (`buffers`), updated by
    the forward pass, never by the optimiser. The optimiser runs once per step on the whole buffer (TF1 Adam: torch's fused kernel with
    TF1's arguments, `adam.tf1_adam_fused_args`). That keeps a member's update bitwise independent of its cohort: the kernel handles
    elements in 16-float vectors from the start of the tensor, with scalar code (which rounds
    differently) only for a tail; every member's block of every tensor starts at a multiple of
    ALIGN and the buffer's length is a multiple of it, so each element gets the vector code, at the
    same lane, whatever the cohort (tests check it, cohort against alone).

    `step(x, y)`: forward, loss, backward (hand-written for dense stacks, `forward.FCPass` on the CPU,
    `forward.fc_grads` on a GPU: the same calls; autograd for the cohort of a conv net; autograd
    member by member for a net with a `member_forward`) and the optimiser. With the default TF1 Adam, pruned weights hold by their infinite second
    moment, and the weights are those of a state built with hold_by_inf=False (gradient masking
    instead), which the tests check; an optimiser that cannot hold them gets their gradients masked.
    `train_cohort` calls exactly `step`; so does the benchmark.

    On the CPU an FC member of low density whose pruned weights are zero trains sparse
    (`nets.sparse`; which members is a function of their masks and start weights, `trains_sparse`):
    its kept weights, biases, gradients and TF1 Adam moments in compressed arrays of their own
    (`sparse`), written back into the flat parameter buffer whenever `weights` or `biases` is read,
    so what they show is the truth; the dense pass and the fused Adam call then run over the other members' blocks only.
    For a sparse member `grads`, `exp_avgs` and `exp_avg_sqs` hold nothing (its own are in `sparse`).
    sparse_below: another threshold table than `nets.sparse.SPARSE_BELOW` ({}: every member dense,
    the benchmark's and the tests' reference).

    On a CUDA GPU an FC cohort is padded to a multiple of `forward.CUDA_LANES` members with fillers
    (copies of member 0, trained alongside and never read), so that its batched products run unpadded
    in calls of that many members; `weights`, `grads` and the other views show the real members only.
    Its gradients phase runs as a captured CUDA graph (one launch instead of about 30; the same
    kernels, so the same bits), the batch copied into the graph's input buffers.
    """

    def __init__(self, spec: NetSpec, starts: list[MemberStart], learning_rate: float, device: torch.device | str,
                 hold_by_inf: bool = True, optimizer: Optimizer | None = None,
                 sparse_below: dict[tuple[tuple[int, int], ...], float] | None = None,
                 learning_rates: Callable[[int], float] | None = None):
        self.spec = spec
        self.optimizer = optimizer if optimizer is not None else TF1Adam(learning_rate, hold_by_inf)
        # the learning rate of this state's update i (from 1): the schedule's, else constant
        self.learning_rates = learning_rates or (lambda i: learning_rate)
        device = torch.device(device)
        if device.type == "cuda":
            cuda_float32()
        k = self.k = len(starts)
        n = len(spec.layers)
        self._fast_fc = spec.dense_stack  # what the net declares, not what its layers look like
        lanes = cohort_lanes(spec, device)
        padded = -(-k // lanes) * lanes
        shapes = [tuple(w.shape) for w in starts[0].weights] + [t.shape for t in spec.params]
        self.layout = layout = FlatLayout(shapes, padded)
        # params, grads and the optimiser's slots: every member's, fillers included (`_all`), and the
        # real members' views
        self.flat = [torch.zeros(layout.total, dtype=torch.float32, device=device)
                     for _ in range(2 + len(self.optimizer.slots))]
        params_all, grads_all = layout.views(self.flat[0]), layout.views(self.flat[1])
        everyone = starts + [starts[0]] * (padded - k)
        for i in range(n):
            params_all[i].copy_(torch.stack([s.weights[i] for s in everyone]))
        # the other parameters start where the members say, else at zero (protocol §2's biases)
        if any(s.biases is not None for s in starts):
            for j, t in enumerate(spec.params):
                params_all[n + j].copy_(torch.stack([s.biases[j] if s.biases is not None else torch.zeros(t.shape)
                                                     for s in everyone]))
        # state buffers (BatchNorm's running statistics): their own flat buffer, which no optimiser
        # sees; every member's block 64-byte aligned, as the parameters'
        self.buffer_layout = FlatLayout([t.shape for t in spec.buffers], padded)
        self.buffer_flat = torch.zeros(self.buffer_layout.total, dtype=torch.float32, device=device)
        buffers_all = self.buffer_layout.views(self.buffer_flat)
        for view, start in zip(buffers_all, init_buffers(spec)):
            view.copy_(start.expand(view.shape))
        self.buffers = [t[:k] for t in buffers_all]
        self._weights_all, self._biases_all = params_all[:n], params_all[n:]
        self._grad_weights_all, self._grad_biases_all = grads_all[:n], grads_all[n:]
        params, self.grads, *slot_views = ([t[:k] for t in layout.views(b)] for b in self.flat)
        self.slots = dict(zip(self.optimizer.slots, slot_views))
        self._weights, self._biases = params[:n], params[n:]
        self.grad_weights, self.grad_biases = self.grads[:n], self.grads[n:]

        # Pruned weights hold their start values through the optimiser's state where it can (TF1 Adam:
        # an infinite second moment, no pass over the gradients); otherwise (the tests' reference) their
        # gradients are multiplied by a float 0/1 mask at every step.
        self.masked = [m for m, s in enumerate(starts) if s.masks is not None]
        self._mask_row = {m: row for row, m in enumerate(self.masked)}
        self.masks: list[torch.Tensor] = []
        held = all(self.optimizer.hold(self.slots, m, [mask.to(device, torch.bool) for mask in starts[m].masks])
                   for m in self.masked)
        if not held:
            self.masks = [
                torch.stack([starts[m].masks[i] for m in self.masked]).to(device, torch.float32) for i in range(n)
            ]
        self.iteration = 0
        # the views of each group of `lanes` members (the whole cohort where lanes = 1), made once:
        # the step is the hot path
        group = lanes if lanes > 1 else padded
        self._lane_groups = [
            tuple([t[c : c + group] for t in views] for views in
                  (self._weights_all, self._biases_all, self._grad_weights_all, self._grad_biases_all))
            for c in range(0, padded, group)
        ]
        self._graph: _GraphedGrads | None = None
        self._use_graph = device.type == "cuda" and self._fast_fc
        self._cpu_pass: FCPass | None = None  # the CPU's FC pass, its views and buffers made at the first step
        self.sparse: SparseMembers | None = None
        self._dense_members: list[int] | None = None  # None: every member trains dense
        # what the optimiser steps: per flat buffer, its pieces (see `Optimizer.whole_buffer`)
        if getattr(self.optimizer, "whole_buffer", False):
            self._pieces = [[b] for b in self.flat]
        else:
            self._pieces = [[b[o + m * p : o + (m + 1) * p] for o, p in zip(layout.offsets, layout.padded)
                             for m in range(padded)] for b in self.flat]
        if self._fast_fc and device.type == "cpu" and getattr(self.optimizer, "sparse_kernels", False):
            self._init_sparse(starts, sparse_below)

    def _init_sparse(self, starts: list[MemberStart],
                     below: dict[tuple[tuple[int, int], ...], float] | None) -> None:
        """Choose the members that train sparse (`nets.sparse.trains_sparse`) and build their
        compressed form; the dense members' blocks of the flat buffers, as pieces for the optimiser."""
        chosen = [m for m, s in enumerate(starts) if trains_sparse(s.weights, s.masks, below)]
        if not chosen:
            return
        n, layout = len(self.spec.layers), self.layout
        dests = [([layout.offsets[i] + m * layout.padded[i] for i in range(n)],
                  [layout.offsets[n + i] + m * layout.padded[n + i] for i in range(n)]) for m in chosen]
        self.sparse = SparseMembers(
            chosen, [starts[m].weights for m in chosen], [[b[m] for b in self._biases] for m in chosen],
            [[mask.to(torch.bool) for mask in starts[m].masks] for m in chosen], dests, self.flat[0],
            self.optimizer.learning_rate, (ADAM_BETA1, ADAM_BETA2), ADAM_EPS, threads=torch.get_num_threads())
        sparse = set(chosen)
        self._dense_members = [m for m in range(layout.k) if m not in sparse]
        # each run of consecutive dense members' blocks of every tensor: it starts on a member block
        # and its length is a multiple of ALIGN, so the fused kernel gives each element what one call
        # over the whole buffer would (`Optimizer.whole_buffer`)
        runs: list[tuple[int, int]] = []
        for t in range(2 * n):
            o, p = layout.offsets[t], layout.padded[t]
            for dense, group in itertools.groupby(range(layout.k), key=lambda m: m not in sparse):
                if dense:
                    members = list(group)
                    runs.append((o + members[0] * p, o + (members[-1] + 1) * p))
        self._pieces = [[b[a:e] for a, e in runs] for b in self.flat]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step on the shared batch (x, y): gradients, then the optimiser on every parameter."""
        self.compute_grads(x, y)
        self.mask_grads()  # a no-op when the optimiser holds pruned weights itself
        self.update()

    def compute_grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """grads <- d(sum over members of each member's mean loss) / d(params)."""
        if self._use_graph:
            if self._graph is None or not self._graph.fits(x, y):
                self._graph = _GraphedGrads(self._eager_fc_grads, x, y)
            self._graph.replay(x, y)
            return
        if self._fast_fc and x.device.type == "cpu":
            if self._dense_members != []:
                if self._cpu_pass is None or self._cpu_pass.batch != len(x):
                    self._cpu_pass = FCPass(self._weights_all, self._biases_all, self._grad_weights_all,
                                            self._grad_biases_all, len(x), self._dense_members)
                self._cpu_pass.grads(x, y)
            if self.sparse is not None:
                self.sparse.grads_step(x, y)
            return
        if self._fast_fc:
            self._eager_fc_grads(x, y)
            return
        if self.spec.member_forward is not None:
            self._member_grads(x, y)
            return
        with torch.enable_grad():
            params = [p.detach().requires_grad_() for p in self.weights + self.biases]
            n = len(self.weights)
            loss = member_losses(forward(self.spec, params[:n], params[n:], x), y).mean(1).sum()
            grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            torch._foreach_copy_(self.grads, list(grads))

    def _member_grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Autograd member by member, for nets with a `member_forward` (ResNets, VGGs): each member's
        graph on its own parameter blocks alone, so a member's numbers are those it gets alone, and
        memory holds one member's activations at a time. BatchNorm normalises by the batch and
        updates the member's running statistics in place."""
        n = len(self._weights)
        if tuple(x.shape[1:]) != self.spec.input_shape:
            x = x.reshape(x.shape[0], *self.spec.input_shape)
        for m in range(self.k):
            with torch.enable_grad():
                params = [t[m].detach().requires_grad_() for t in self._weights + self._biases]
                logits = self.spec.member_forward(self.spec, params[:n], params[n:], [b[m] for b in self.buffers], x,
                                                  True)
                loss = member_losses(logits.unsqueeze(0), y).mean(1).sum()
                grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                torch._foreach_copy_([g[m] for g in self.grads], list(grads))

    def _eager_fc_grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # member groups of `cohort_lanes` (one on the CPU): on a GPU every group's intermediates are
        # fresh allocations, aligned as a lone member's are whatever the batch size
        for weights, biases, grad_weights, grad_biases in self._lane_groups:
            fc_grads(weights, biases, x, y, grad_weights, grad_biases)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of pruned weights (only when the optimiser does not hold them itself)."""
        if not self.masks:
            return
        for g, mask in zip(self.grad_weights, self.masks):
            if len(self.masked) == self.k:
                g.mul_(mask)
            else:
                for m, row in self._mask_row.items():
                    g[m].mul_(mask[row])

    @torch.no_grad()
    def update(self) -> None:
        """The optimiser's step on every parameter from the gradients in `grads` (the step's last phase)."""
        self.iteration += 1
        lr = self.learning_rates(self.iteration)
        params, grads, *slots = self._pieces
        self.optimizer.step(params, grads, slots, self.iteration, lr)
        if self.sparse is not None:
            self.sparse.learning_rate = lr  # TF1 Adam's, as the dense members'
            self.sparse.update(self.iteration)

    @property
    def weights(self) -> list[torch.Tensor]:
        """The members' kernels (K, *shape) per layer: views of the flat parameter buffer, where a
        sparse member's trained values are written back when read (`nets.sparse`). Read-only for
        sparse members: their training reads their compressed values, not these."""
        if self.sparse is not None:
            self.sparse.write_back()
        return self._weights

    @property
    def biases(self) -> list[torch.Tensor]:
        """The members' biases (K, out) per layer (written back as `weights` are)."""
        if self.sparse is not None:
            self.sparse.write_back()
        return self._biases

    @property
    def exp_avgs(self) -> list[torch.Tensor]:
        """TF1 Adam's first moments (per layer, real members only), for the tests and the benchmark; another
        optimiser's slots are in `slots`."""
        return self.slots["exp_avg"]

    @property
    def exp_avg_sqs(self) -> list[torch.Tensor]:
        """TF1 Adam's second moments (+inf at pruned weights)."""
        return self.slots["exp_avg_sq"]


class _GraphedGrads:
    """A gradients pass captured once as a CUDA graph on input buffers shaped like (x, y), replayed per step."""

    def __init__(self, grads: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = torch.zeros_like(x), torch.zeros_like(y)  # class 0 of zero images: finite numbers
        with torch.cuda.device(x.device):
            side = torch.cuda.Stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):  # torch's recipe: warm up off the capturing stream first
                grads(self.x, self.y)
            torch.cuda.current_stream(x.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                grads(self.x, self.y)

    def fits(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        return x.shape == self.x.shape and y.shape == self.y.shape and x.device == self.x.device

    def replay(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
