"""Stability to SGD noise: linear mode connectivity of dense networks and tickets (Frankle, Dziugaite,
Roy and Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML 2020; protocol §17).

From a starting point (the dense network, a ticket's mask or a random mask of the same per-layer
counts, its kept weights at the dense run's weights after k steps) two copies train the schedule's
steps k+1 .. T, differing only in the order of their batches (`Recipe.data_order_seed`). Then the
test error is measured along the straight line between their final networks, at `alphas` evenly
spaced points of [0, 1] (both copies share the mask, so pruned weights are zero all along it), and
the instability is the largest error on the path minus the mean of its two ends' errors.

Copies with one data order train as one cohort: for each k, copy a of every start, then copy b of
every start (a cohort has one batch order; a member's numbers are the same alone and in any cohort).
A ticket's mask is the round-r mask of an iterative chain (criterion, rewind, zero, rewound to the
init, the paper's per-layer rates round by round), read from the store or trained there by the iterative
kind's `run_chains`; a random mask keeps as many weights per layer, drawn from a seeded generator.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..core.device import resolve_device
from ..core.errors import TicketlabError
from ..core.fields import ranged
from ..core.seeds import derive_seed
from ..nets.specs import NetSpec
from ..pruning.criteria import criterion_names
from ..pruning.prune import prune_n, pruning_schedule
from ..store.files import NUMBER, SUMMARY, UnreadableFile, checked, finished, is_complete, json_type, load_arrays, \
    read_json, reading_run, unpack_masks
from ..store.naming import identity
from ..store.runs import mask_arrays, run_dir, weight_arrays, write_run
from ..training import MemberResult, MemberStart, evaluate, train_cohort, train_weights
from ..training.config import TrainConfig
from ..training.cost import TEST_IMAGES, CohortWork, EvalWork, trains_sparse_at
from ..training.loop import as_input
from ..training.schedule import MAX_ITERATIONS
from .dense import dense_identity, ensure_dense, in_snapshot_plan, rewind_point, snapshot_identity
from .iterative import Chain, chain_round_identity, chain_work, run_chains
from .jobs import DataCache
from .kinds import Blame, Curves, ExperimentKind, JobProgress, Report, register_kind
from .spec import PAPER_ROUNDS, names_field

if TYPE_CHECKING:
    from .jobs import Runtime
    from .spec import SweepSpec

DENSE, RANDOM = "dense", "random"
COPIES = ("a", "b")
ALPHAS = 31  # Frankle et al. evaluate 30 evenly spaced alphas; 31 puts one at 0.5 and both ends on the grid
PATH_BYTES = 1 << 29  # the path's networks are built in cohorts of at most about this many bytes of state


def mask_names() -> tuple[str, ...]:
    """What a start's mask may be: none (dense), a random mask of a ticket's per-layer counts, or a
    ticket of any criterion but random (whose round-r mask is itself a random mask of those counts)."""
    return (DENSE, RANDOM, *(c for c in criterion_names() if c != RANDOM))


@dataclass(frozen=True)
class StabilityParams:
    """A stability sweep's own fields: the starts (masks and the rounds whose densities they have) and
    the steps their kept weights rewind to."""

    masks: tuple[str, ...] = names_field((DENSE,), mask_names, "the starts' masks: dense (none), a criterion's "
                                         "ticket (large_final: the lottery ticket), or random (a ticket's "
                                         "per-layer counts, drawn at random)")
    ticket_rounds: tuple[int, ...] = ranged((3, 8, 12, 16), "pruning rounds whose masks (and per-layer counts) tickets "
                                            "and random masks take (FC: 51%, 17%, 7%, 3% remaining)", low=1,
                                            high=PAPER_ROUNDS, why=f"protocol §4 prunes {PAPER_ROUNDS} rounds")
    rewind_iteration: tuple[int, ...] = ranged((0,), "the dense run's steps k that the starts' kept weights (and "
                                               "biases) take; both copies train the schedule's steps after k",
                                               low=0, high=MAX_ITERATIONS)
    alphas: int = ranged(ALPHAS, "points on the path between the copies, evenly spaced in [0, 1], both ends "
                         "included", low=2, high=1001)

    @property
    def alpha_list(self) -> list[float]:
        return alpha_grid(self.alphas)


def alpha_grid(n: int) -> list[float]:
    """n evenly spaced points of [0, 1], exactly 0 and 1 at the ends (i / (n - 1), in float64)."""
    return [i / (n - 1) for i in range(n)]


@dataclass(frozen=True)
class Start:
    """One starting point: `mask` (dense, random or a criterion) at pruning round `round` (0: dense)."""

    mask: str
    round: int = 0

    @property
    def ticket(self) -> bool:
        return self.mask not in (DENSE, RANDOM)


def starts_of(params: StabilityParams) -> list[Start]:
    """The sweep's starts: the dense one, then per ticket round each masked one, in the order given."""
    out = [Start(DENSE)] if DENSE in params.masks else []
    return out + [Start(m, r) for r in params.ticket_rounds for m in params.masks if m != DENSE]


def ticket_chain(criterion: str) -> Chain:
    """The iterative chain whose rounds give a criterion's tickets: kept weights rewound to the init,
    pruned weights zero, the paper's per-layer rates (the lottery ticket's, for large_final)."""
    return Chain(criterion, "rewind", "zero")


def order_seeds(config: TrainConfig) -> tuple[int, int]:
    """The two copies' data-order seeds: derived from the run's data-order seed where the sweep sets
    one, else from its seed, by (seed, "stability", copy)."""
    base = config.seed if config.data_order_seed is None else config.data_order_seed
    a, b = (derive_seed(base, "stability", copy) for copy in COPIES)
    return a, b


def stability_identity(config: TrainConfig, start: Start, k: int, alphas: int,
                       orders: tuple[int, int]) -> dict[str, Any]:
    """What names one stability run: the training config, the start, k, the path's points and the two
    copies' data-order seeds."""
    return {**identity(config), "mask": start.mask, "round": start.round, "rewind_iteration": k, "alphas": alphas,
            "data_order_seeds": list(orders)}


def stability_path(root: Path, config: TrainConfig, start: Start, k: int, alphas: int,
                   orders: tuple[int, int] | None = None) -> Path:
    """Where the stability run of (start, k) lives (its copies' data orders: `order_seeds`, unless given)."""
    return run_dir(root, "stability", stability_identity(config, start, k, alphas, orders or order_seeds(config)))


def random_masks(net: NetSpec, seed: int, round_: int) -> list[torch.Tensor]:
    """A random mask with the per-layer counts of pruning round `round_` (§4's count rule): each prunable
    layer keeps a uniformly random subset of that size, drawn by `prune_n`'s random criterion from a
    generator seeded by (seed, "stability", "random", round, layer); other layers keep everything."""
    counts = pruning_schedule(net, round_)[round_]
    out = []
    for i, (layer, kept) in enumerate(zip(net.layers, counts)):
        full = torch.ones(layer.weight_shape, dtype=torch.bool)
        if not layer.prunable:
            out.append(full)
            continue
        w = torch.zeros(layer.weight_shape)
        out.append(prune_n(RANDOM, w, w, full, layer.size - kept, derive_seed(seed, "stability", RANDOM, round_, i)))
    return out


def start_masks(root: Path, config: TrainConfig, start: Start) -> list[torch.Tensor] | None:
    """The mask of a start (None: dense): a ticket's from its chain's round run (which must be in the
    store), a random one drawn."""
    net = config.net_spec()
    if start.mask == DENSE:
        return None
    if start.mask == RANDOM:
        return random_masks(net, config.seed, start.round)
    path = run_dir(root, "round", chain_round_identity(config, ticket_chain(start.mask), start.round, 1))
    if not finished(path, names=("masks.npz",)):
        raise TicketlabError(f"the {start.mask} chain's round {start.round} ({path}) is not in the store: rerun the sweep")
    with reading_run(path):
        return unpack_masks([layer.name for layer in net.layers], load_arrays(path / "masks.npz"))


def member_start(weights: list[torch.Tensor], biases: list[torch.Tensor],
                 masks: list[torch.Tensor] | None) -> MemberStart:
    """A copy's start: the kept weights at their values at k, pruned ones zero; biases (and BatchNorm's
    parameters) at k."""
    if masks is None:
        return MemberStart([w.clone() for w in weights], None, [b.clone() for b in biases])
    return MemberStart([torch.where(m, w, torch.zeros_like(w)) for w, m in zip(weights, masks)], masks,
                       [b.clone() for b in biases])


def train_copies(net: NetSpec, data: Any, starts: list[MemberStart], config: TrainConfig, k: int, order_seed: int,
                 device: torch.device, progress: Callable[[float], None] | None = None) -> list[MemberResult]:
    """One copy of every start, as one cohort: the schedule's steps k+1 .. T with the batches of
    data-order seed `order_seed` (its steps' batches in the whole schedule of that order) and the
    schedule's learning rates, a fresh optimiser state (protocol §16)."""
    copy = dataclasses.replace(config, data_order_seed=order_seed)
    return train_cohort(net, data, starts, copy.schedule(start_iteration=k), config.seed, device,
                        None if progress is None else (lambda it, total, _: progress(it / total)))


def _mix(a: list[torch.Tensor], b: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    """(1 - alpha) a + alpha b, tensor by tensor in float32; exactly a at 0 and b at 1."""
    if alpha == 0.0:
        return [t.clone() for t in a]
    if alpha == 1.0:
        return [t.clone() for t in b]
    return [(1.0 - alpha) * x + alpha * y for x, y in zip(a, b)]


@dataclass
class Endpoint:
    """A copy's final network: kernels, other parameters (biases, BatchNorm's) and buffers (BatchNorm's
    running statistics; [] for nets without)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    buffers: list[torch.Tensor]

    @classmethod
    def of(cls, result: MemberResult) -> "Endpoint":
        return cls(result.final_weights, result.final_biases, list(result.final_buffers))


def path_networks(a: Endpoint, b: Endpoint, alphas: list[float]) -> list[Endpoint]:
    """The networks on the straight line from a to b at each alpha: every tensor interpolated,
    kernels, biases, BatchNorm's parameters and running statistics alike. Where both ends hold a zero
    (a pruned weight: the copies share the mask) every point holds it."""
    return [Endpoint(_mix(a.weights, b.weights, t), _mix(a.biases, b.biases, t), _mix(a.buffers, b.buffers, t))
            for t in alphas]


def _chunk(net: NetSpec) -> int:
    """Path networks per evaluation cohort: its state (parameters, gradients and two optimiser slots,
    float32) within `PATH_BYTES`."""
    size = sum(layer.size for layer in net.layers) + sum(math.prod(t.shape) for t in net.params)
    return max(1, PATH_BYTES // (16 * size))


@torch.no_grad()
def evaluate_path(net: NetSpec, config: TrainConfig, k: int, points: list[Endpoint],
                  masks: list[torch.Tensor] | None, data: Any, device: torch.device) -> tuple[list[float], list[float]]:
    """(test losses, test accuracies) of the path's networks, each evaluated exactly as the training
    loop evaluated the copies: built as members of the learner that trained them (on the CPU, an FC
    member of low density evaluates through the sparse kernels it trained with) and evaluated member
    by member by `training.evaluation.evaluate`, BatchNorm by the point's running statistics. A
    member's numbers do not depend on its cohort, so the end points give the copies' final test
    accuracies, bit for bit."""
    schedule = config.schedule(start_iteration=k)
    test = as_input(data.to(device), net)
    losses: list[float] = []
    accuracies: list[float] = []
    size = _chunk(net)
    for at in range(0, len(points), size):
        chunk = points[at : at + size]
        state = train_weights(net, [MemberStart(p.weights, masks, p.biases) for p in chunk], schedule, device)
        buffers = [torch.stack([p.buffers[i] for p in chunk]).to(device) for i in range(len(net.buffers))] or None
        loss, accuracy = evaluate(net, state.weights, state.biases, test.test_x, test.test_y,
                                  sparse=getattr(state, "sparse", None), buffers=buffers)
        losses += loss
        accuracies += accuracy
    return losses, accuracies


def instability(errors: list[float]) -> float:
    """The error barrier: the largest error on the path minus the mean of its two ends' errors."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def path_errors(accuracies: list[float], images: int) -> list[float]:
    """Test errors (fractions) from accuracies over `images` examples: the share misclassified,
    (images - correct) / images, from the count (1 - accuracy up to its last bit)."""
    return [(images - round(a * images)) / images for a in accuracies]


def stability_work(root: Path, config: TrainConfig, params: StabilityParams, done: Callable[[Path], bool],
                   claimed: set[str], on_cpu: bool, label: str,
                   orders: tuple[int, int] | None = None) -> list[tuple[str, Any, Any]]:
    """What one seed still needs, in order, as (what, detail, work item): the dense run and the ticket
    chains' rounds ("chains", the chains, their `chain_work` items, one block run by `run_chains`, or
    "dense" alone when no start is a ticket); ("replay", k) the dense run replayed to a rewind step
    its snapshots lack; then per k ("copy", (k, copy index, starts), cohort) the copies a, then b,
    of the starts whose run is missing and ("path", (k, starts), evaluation) their paths. Runs that
    `done` or `claimed` names are left out; the others are added to `claimed`."""
    net = config.net_spec()
    resolved = config.resolved()
    starts = starts_of(params)
    out: list[tuple[str, Any, Any]] = []

    def needed(path: Path) -> bool:
        if path.name in claimed or done(path):
            return False
        claimed.add(path.name)
        return True

    todo = {k: [s for s in starts if needed(stability_path(root, config, s, k, params.alphas, orders))]
            for k in params.rewind_iteration}
    todo = {k: members for k, members in todo.items() if members}
    criteria = list(dict.fromkeys(s.mask for members in todo.values() for s in members if s.ticket))
    if criteria:
        rounds = list(range(0, max(s.round for members in todo.values() for s in members if s.ticket) + 1))
        for item in chain_work(root, config, [ticket_chain(c) for c in criteria], rounds, done, claimed, on_cpu, label):
            out.append(("chains", (criteria, rounds), item[-1]))
    elif todo and needed(run_dir(root, "dense", dense_identity(config))):
        out.append(("dense", None, CohortWork(f"{label}, dense run", (1.0,), (False,), resolved.iterations,
                                              resolved.eval_every, batch=resolved.batch_size, snapshots=True)))
    for k in todo:
        if k and not in_snapshot_plan(config, k) and needed(run_dir(root, "snapshot", snapshot_identity(config, k))):
            out.append(("replay", k, CohortWork(f"{label}, dense run replayed to step {k:,}", (1.0,), (False,), k,
                                                resolved.eval_every, batch=resolved.batch_size)))
    counts = pruning_schedule(net, max([s.round for s in starts] + [0]))
    for k, members in todo.items():
        densities = tuple(sum(n for n, layer in zip(counts[s.round], net.layers) if layer.prunable) / net.prunable_weights
                          for s in members)
        sparse = tuple(s.mask != DENSE and on_cpu and trains_sparse_at(net, d, True) for s, d in zip(members, densities))
        for c, copy in enumerate(COPIES):
            out.append(("copy", (k, c, members), CohortWork(
                f"{label}, k = {k:,}, copy {copy} ({len(members)} start{'s' if len(members) != 1 else ''})",
                densities, sparse, resolved.iterations - k, resolved.eval_every, batch=resolved.batch_size, runs=0)))
        out.append(("path", (k, members), EvalWork(f"{label}, k = {k:,}, paths ({params.alphas} points each)",
                                                   params.alphas * len(members), TEST_IMAGES, runs=len(members))))
    return out


def run_stability(root: Path, config: TrainConfig, params: StabilityParams, device: torch.device, data: Any,
                  report: Report | None = None, repair: bool = False, label: str = "",
                  orders: tuple[int, int] | None = None) -> None:
    """Train and measure every missing stability run of one seed (`stability_work`'s order). `orders`:
    the copies' data-order seeds, if not `order_seeds(config)` (the tests give two equal ones)."""
    net = config.net_spec()
    resolved = config.resolved()
    orders = orders or order_seeds(config)
    work = stability_work(root, config, params, lambda path: finished(path, repair), set(), device.type == "cpu", label,
                          orders)
    progress = JobProgress(report, [w for *_, w in work])
    chained = [i for i, (what, *_) in enumerate(work) if what == "chains"]
    points: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    masks: dict[Start, list[torch.Tensor] | None] = {}
    results: list[MemberResult] = []
    t0 = time.perf_counter()

    def mask_of(start: Start) -> list[torch.Tensor] | None:
        if start not in masks:
            masks[start] = start_masks(root, config, start)
        return masks[start]

    for i, (what, detail, _) in enumerate(work):
        if what == "chains":
            if i == chained[0]:
                criteria, rounds = detail
                part = progress.span(len(chained))
                run_chains(root, config, [ticket_chain(c) for c in criteria], rounds, device, data,
                           lambda fraction, note="": part(fraction, note), repair, label)
            continue
        part = progress.next()
        if what == "dense":
            ensure_dense(root, config, device, data, part, repair)
        elif what == "replay":
            points[detail] = rewind_point(root, config, detail, device, data, part, repair)
        elif what == "copy":
            k, c, members = detail
            if k not in points:
                points[k] = rewind_point(root, config, k, device, data, None, repair)
            weights, biases = points[k]
            starts = [member_start(weights, biases, mask_of(s)) for s in members]
            if c == 0:
                results, t0 = [], time.perf_counter()
            results += train_copies(net, data.get(resolved.dataset), starts, config, k, orders[c], device, part)
        else:  # the paths of this k's starts, from the copies just trained
            k, members = detail
            wall = (time.perf_counter() - t0) / len(members)
            dataset = data.get(resolved.dataset)
            for j, s in enumerate(members):
                t1 = time.perf_counter()
                a, b = results[j], results[len(members) + j]
                start = member_start(*points[k], mask_of(s))
                _write_stability(root, config, params, s, k, orders, start, a, b, dataset, device,
                                 wall + time.perf_counter() - t1)
                part((j + 1) / len(members))


def _write_stability(root: Path, config: TrainConfig, params: StabilityParams, start: Start, k: int,
                     orders: tuple[int, int], member: MemberStart, a: MemberResult, b: MemberResult, data: Any,
                     device: torch.device, wall: float) -> None:
    net = config.net_spec()
    alphas = params.alpha_list
    losses, accuracies = evaluate_path(net, config, k, path_networks(Endpoint.of(a), Endpoint.of(b), alphas),
                                       member.masks, data, device)
    errors = path_errors(accuracies, len(data.test_y))
    top = max(range(len(errors)), key=lambda i: (errors[i], -i))
    masks = member.masks
    remaining = net.prunable_weights if masks is None else net.kept_weights(masks)
    summary = {
        "seed": config.seed, "mask": start.mask, "round": start.round, "rewind_iteration": k,
        "remaining_weights": remaining, "instability": instability(errors), "error_at_0": errors[0],
        "error_at_1": errors[-1], "max_error": errors[top], "max_error_alpha": alphas[top],
        "final_test_accuracy_a": a.history["test_accuracy"][-1], "final_test_accuracy_b": b.history["test_accuracy"][-1],
        "data_order_seeds": list(orders), "iterations": int(a.history["iteration"][-1]), "wall_seconds": wall,
    }
    record = {"alpha": alphas, "test_loss": losses, "test_accuracy": accuracies, "test_error": errors}
    arrays = {"start.npz": weight_arrays(net, member.weights, member.biases),
              **{f"final_{copy}.npz": weight_arrays(net, r.final_weights, r.final_biases, buffers=r.final_buffers)
                 for copy, r in zip(COPIES, (a, b))}}
    if masks is not None:
        arrays["masks.npz"] = mask_arrays(net, masks)
    extra = {"dense_run": run_dir(root, "dense", dense_identity(config)).name}
    if start.ticket:
        extra["mask_run"] = run_dir(root, "round", chain_round_identity(config, ticket_chain(start.mask), start.round,
                                                                         1)).name
    write_run(stability_path(root, config, start, k, params.alphas, orders), "stability",
              stability_identity(config, start, k, params.alphas, orders), summary, config=config, device=device,
              arrays=arrays, compress=("start.npz", "final_a.npz", "final_b.npz"),
              records={"path.json": record, **{f"history_{copy}.json": r.history for copy, r in zip(COPIES, (a, b))}},
              extra_config=extra)


SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "remaining_weights": (int,), "instability": NUMBER, "error_at_0": NUMBER, "error_at_1": NUMBER,
    "max_error": NUMBER, "max_error_alpha": NUMBER,
}


def read_path(path: Path) -> dict[str, Any]:
    """A stability run's path record (alpha, test_loss, test_accuracy, test_error), checked."""
    record = read_json(path / "path.json")
    if not isinstance(record, dict):
        raise UnreadableFile(f"path.json holds a JSON {json_type(record)}, not an object")
    for key in ("alpha", "test_loss", "test_accuracy", "test_error"):
        values = record.get(key)
        if not isinstance(values, list) or not all(isinstance(v, NUMBER) and not isinstance(v, bool) for v in values):
            raise UnreadableFile(f"path.json has no list of numbers {key!r}")
    return record


def path_text(errors: list[float]) -> str:
    """The path's errors as the results table's `error_path` cell: a JSON array."""
    return json.dumps(errors)


class StabilityKind(ExperimentKind):
    """Stability to SGD noise (protocol §17): the error barrier between two copies trained from one start."""

    name = "stability"
    params = StabilityParams
    curves = Curves("instability", ("rewind_iteration", "mask"), ylabel="instability (pp of test error)",
                    chance=False)
    columns = ("mask", "round", "remaining_weights", "remaining_percent", "rewind_iteration", "instability",
               "error_at_0", "error_at_1", "max_error", "max_error_alpha", "error_path")
    columns_when_present = True

    def check(self, spec: SweepSpec, where: Blame, blame: Blame) -> None:
        p: StabilityParams = spec.params
        iterations = spec.train_config(spec.first_seed).resolved().iterations
        if max(p.rewind_iteration) >= iterations:
            raise TicketlabError(f"{blame('rewind_iteration')} must be below the schedule's {iterations:,} steps (the "
                                 f"copies train the steps after it), got {max(p.rewind_iteration):,}")

    def run_job(self, spec: SweepSpec, seed: int, root: Path, runtime: Runtime, report: Report | None) -> None:
        run_stability(root, spec.train_config(seed), spec.params, resolve_device(runtime.device),
                      DataCache(runtime.data_dir, runtime.download), report, runtime.repair, f"{spec.name} seed {seed}")

    def plan(self, spec: SweepSpec, seed: int, root: Path, claimed: set[str], device: str,
             done: Any = is_complete) -> list[Any]:
        return [w for *_, w in stability_work(root, spec.train_config(seed), spec.params, done, claimed,
                                               device == "cpu", f"{spec.name} seed {seed}")]

    def result_rows(self, spec: SweepSpec, root: Path) -> list[dict[str, Any]]:
        p: StabilityParams = spec.params
        rows = []
        for seed in spec.seed_list:
            config = spec.train_config(seed)
            net = config.net_spec()
            for k in p.rewind_iteration:
                for start in starts_of(p):
                    path = stability_path(root, config, start, k, p.alphas)
                    if not finished(path, names=(SUMMARY, "path.json")):
                        continue
                    with reading_run(path):
                        s = checked(read_json(path / SUMMARY), SUMMARY_FIELDS, SUMMARY)
                        errors = read_path(path)["test_error"]
                    rows.append(dict(
                        experiment=spec.name, net=spec.net, dataset=config.resolved_dataset, seed=seed,
                        mask=start.mask, round=start.round, remaining_weights=s["remaining_weights"],
                        remaining_percent=100.0 * s["remaining_weights"] / net.prunable_weights, rewind_iteration=k,
                        instability=s["instability"], error_at_0=s["error_at_0"], error_at_1=s["error_at_1"],
                        max_error=s["max_error"], max_error_alpha=s["max_error_alpha"], error_path=path_text(errors),
                        run_dir=str(path.relative_to(root)),
                    ))
        return rows

    def expected_results(self, spec: SweepSpec) -> int | None:
        p: StabilityParams = spec.params
        return len(spec.seed_list) * len(starts_of(p)) * len(p.rewind_iteration)

    def protocol(self, spec: SweepSpec) -> tuple[bool, str]:
        p: StabilityParams = spec.params
        ks = ", ".join(f"{k:,}" for k in p.rewind_iteration)
        return True, f"two copies per start from k = {ks}, {p.alphas} points on each path"


register_kind(StabilityKind())
