"""Iterative pruning (protocol §4): chains of (criterion, mask-1 action, mask-0 action) over rounds.

Round 0 of every chain is the dense run of its seed, trained once and shared. Each later round of
all chains of one seed that start from the same step trains as one cohort. A finished run is never
redone: a rerun starts each chain from its last finished round.

A chain may rewind to a later step k of the dense run (`rewind_iteration`, for mask-1 actions
whose entry `rewinds`): the dense run's weights and biases at k are then the chain's start, the
values its first pruned round reads as the previous run's start (for the criterion, the mask-1 and
the mask-0 actions), and every round trains the schedule's steps k+1.. with a fresh optimiser state.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..core.device import resolve_device
from ..core.fields import ranged
from ..core.seeds import derive_seed, generator
from ..nets.specs import NETS, NetSpec
from ..core.errors import TicketlabError
from ..pruning.actions import MASK0_ACTIONS, Mask1Context, mask1_action, mask1_names, round_start
from ..pruning.criteria import CRITERIA, criterion_names
from ..pruning.prune import global_prune_count, prune_count, prune_global, prune_n, pruning_schedule
from ..store.files import NUMBER, SUMMARY, checked, finished, is_complete, read_json, reading_run
from ..store.naming import identity
from ..store.runs import RunState, mask_arrays, read_state, run_dir, weight_arrays, write_run
from ..training import MemberResult, MemberStart, train_cohort
from ..training.config import TrainConfig
from ..training.cost import CohortWork, trains_sparse_at
from ..training.schedule import MAX_ITERATIONS
from .dense import dense_identity, ensure_dense, in_snapshot_plan, rewind_point, snapshot_identity
from .jobs import DataCache
from .kinds import Blame, Curves, ExperimentKind, JobProgress, Report, check_steps, register_kind
from .spec import PAPER_ROUNDS, names_field

if TYPE_CHECKING:
    from .jobs import Runtime
    from .spec import SweepSpec

_ROUNDS_WHY = f"protocol §4 prunes {PAPER_ROUNDS} rounds after the dense run"
SCOPES = ("layer", "global")


@dataclass(frozen=True)
class IterativeParams:
    """An iterative sweep's own fields: every (criterion, mask-1, mask-0) chain, over pruning rounds."""

    criteria: tuple[str, ...] = names_field(("large_final",), criterion_names, "mask criteria (protocol §5), or \"all\"", all_of=CRITERIA)
    mask1: tuple[str, ...] = names_field(("rewind",), mask1_names, "mask-1 actions (protocol §6)")
    mask0: tuple[str, ...] = names_field(("zero",), MASK0_ACTIONS, "mask-0 actions (protocol §6)")
    rounds: int = ranged(PAPER_ROUNDS, "pruning rounds covered", low=0, high=PAPER_ROUNDS, why=_ROUNDS_WHY)
    round_step: int = ranged(1, "rounds of pruning per trained round (quick scale: > 1)", low=1,
                             high=PAPER_ROUNDS, why=_ROUNDS_WHY)
    rewind_iteration: tuple[int, ...] = ranged((0,), "the dense run's steps kept weights rewind to (late rewinding, "
                                               "for mask-1 actions that rewind); 0 = the init", low=0,
                                               high=MAX_ITERATIONS)
    scope: tuple[str, ...] = names_field(("layer",), SCOPES, "pruning scope: layer = each layer at its own rate from the paper "
                                         "(§4); global = one ranking of every prunable weight at global_rate")
    global_rate: float = ranged(0.2, "scope global: the fraction of the remaining weights a round prunes (OpenLTH's "
                                "pruning_fraction)", above=0, below=1)
    output_layer_rate: float | None = ranged(None, "scope global: the output layer pruned apart at this rate per round "
                                             "(0: never, as OpenLTH's LeNet); default: ranked with the others",
                                             low=0, below=1)

    @property
    def round_list(self) -> list[int]:
        """The pruning rounds this sweep trains (0 = the dense run)."""
        return list(range(0, self.rounds + 1, self.round_step))


@dataclass(frozen=True)
class Chain:
    criterion: str
    mask1: str
    mask0: str
    rewind_iteration: int = 0
    scope: str = "layer"
    global_rate: float = 0.2  # scope global only
    output_layer_rate: float | None = None  # scope global only

    @property
    def start_step(self) -> int:
        """The schedule step its rounds train from: the rewind iteration, for an action that rewinds."""
        return self.rewind_iteration if mask1_action(self.mask1).rewinds else 0


def chains_of(params: IterativeParams) -> list[Chain]:
    def scoped(scope: str) -> dict[str, Any]:
        return {"scope": scope, "global_rate": params.global_rate, "output_layer_rate": params.output_layer_rate} \
            if scope == "global" else {}

    return [Chain(c, m1, m0, k, **scoped(scope)) for c in params.criteria for m1 in params.mask1
            for m0 in params.mask0 for k in params.rewind_iteration for scope in params.scope]


_CHAIN_DEFAULTS = Chain("", "", "")


def round_identity(config: TrainConfig, criterion: str, mask1: str, mask0: str, round_: int, round_step: int,
                   **chain: Any) -> dict[str, Any]:
    """What names one round of one chain: the training config, the chain and the round. The chain's
    other fields (`Chain`: rewind_iteration, scope, ...) are named only where they differ from their
    defaults, as the config's are."""
    ident = {**identity(config), "criterion": criterion, "mask1": mask1, "mask0": mask0, "round": round_}
    if round_step != 1:
        ident["round_step"] = round_step
    ident.update({k: v for k, v in chain.items() if v != getattr(_CHAIN_DEFAULTS, k)})
    return ident


def chain_round_identity(config: TrainConfig, chain: Chain, round_: int, round_step: int) -> dict[str, Any]:
    return round_identity(config, chain.criterion, chain.mask1, chain.mask0, round_, round_step,
                          rewind_iteration=chain.rewind_iteration, scope=chain.scope, global_rate=chain.global_rate,
                          output_layer_rate=chain.output_layer_rate)


def remaining_after(spec: NetSpec, remaining: list[int], round_step: int) -> list[int]:
    """Per-layer remaining counts after `round_step` pruning rounds of the count rule."""
    out = list(remaining)
    for _ in range(round_step):
        out = [r - prune_count(r, layer.keep) for r, layer in zip(out, spec.layers)]
    return out


def global_count(remaining: int, rate: float, round_step: int) -> int:
    """How many of `remaining` weights `round_step` rounds of global pruning at `rate` prune."""
    pruned = 0
    for _ in range(round_step):
        pruned += global_prune_count(remaining - pruned, rate)
    return pruned


def next_masks(spec: NetSpec, chain: Chain, prev: RunState, seed: int, round_: int, round_step: int) -> list[torch.Tensor]:
    """The masks of a chain's round from its previous round: each layer at the paper's rate (scope layer,
    protocol §4), or one ranking of every layer's remaining weights (scope global; the output layer apart at
    its own rate where the chain says)."""
    def prune_seed(part: Any) -> int:
        return derive_seed(seed, "prune", chain.criterion, chain.mask1, chain.mask0, round_, part)

    def one_layer(i: int, n: int) -> torch.Tensor:
        return prune_n(chain.criterion, prev.start[i], prev.final[i], prev.masks[i], n, prune_seed(i))

    if chain.scope == "layer":
        targets = remaining_after(spec, [int(m.sum()) for m in prev.masks], round_step)
        return [one_layer(i, int(prev.masks[i].sum()) - targets[i]) if layer.prunable else prev.masks[i]
                for i, layer in enumerate(spec.layers)]
    last = len(spec.layers) - 1
    ranked = [i for i, layer in enumerate(spec.layers)
              if layer.prunable and not (i == last and chain.output_layer_rate is not None)]
    n = global_count(sum(int(prev.masks[i].sum()) for i in ranked), chain.global_rate, round_step)
    masks = dict(zip(ranked, prune_global(chain.criterion, [prev.start[i] for i in ranked], [prev.final[i] for i in ranked],
                                          [prev.masks[i] for i in ranked], n, prune_seed("global"))))
    masks.update({i: prev.masks[i] for i, layer in enumerate(spec.layers) if not layer.prunable})
    if chain.output_layer_rate is not None and spec.layers[last].prunable:
        kept = int(prev.masks[last].sum())
        masks[last] = one_layer(last, global_count(kept, chain.output_layer_rate, round_step)
                                if chain.output_layer_rate else 0)
    return [masks[i] for i in range(len(spec.layers))]


def next_start(
    spec: NetSpec, chain: Chain, prev: RunState, dense_init: list[torch.Tensor], seed: int, round_: int, round_step: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(start kernels, masks) of a chain's round from its previous round (protocol §4 and §6)."""
    starts, masks = [], []
    for i, mask in enumerate(next_masks(spec, chain, prev, seed, round_, round_step)):
        gen = generator(seed, "actions", chain.criterion, chain.mask1, chain.mask0, round_, i)
        starts.append(round_start(chain.mask1, chain.mask0, Mask1Context(prev.start[i], dense_init[i], prev.final[i], mask, gen)))
        masks.append(mask)
    return starts, masks


def chain_work(root: Path, config: TrainConfig, chains: list[Chain], rounds: list[int], done: Callable[[Path], bool],
               claimed: set[str], on_cpu: bool, label: str) -> list[tuple[str, int, list[Chain], CohortWork]]:
    """What one seed's chains still need, in training order, as (what, step or round, members, work):
    ("dense", 0, ...) the dense run; ("replay", k, ...) the dense run's first k steps replayed, for a
    late rewind step its snapshots lack; ("round", r, members, ...) the chains of round r that start
    from one step, one cohort. A run is needed unless `done(path)` or its name is in `claimed`; the
    names of the needed runs are added to `claimed`."""
    net = config.net_spec()
    resolved = config.resolved()
    step = rounds[1] - rounds[0] if len(rounds) > 1 else 1
    out: list[tuple[str, int, list[Chain], CohortWork]] = []

    def needed(path: Path) -> bool:
        if path.name in claimed or done(path):
            return False
        claimed.add(path.name)
        return True

    if needed(run_dir(root, "dense", dense_identity(config))):
        out.append(("dense", 0, [], CohortWork(f"{label}, dense run", (1.0,), (False,), resolved.iterations,
                                               resolved.eval_every, batch=resolved.batch_size, snapshots=True)))
    rounds_todo = [(r, [c for c in chains if needed(run_dir(root, "round", chain_round_identity(config, c, r, step)))])
                   for r in rounds[1:]]
    starting = sorted({c.start_step for _, members in rounds_todo for c in members if c.start_step})
    for k in starting:
        if not in_snapshot_plan(config, k) and needed(run_dir(root, "snapshot", snapshot_identity(config, k))):
            out.append(("replay", k, [], CohortWork(f"{label}, dense run replayed to step {k:,}", (1.0,), (False,), k,
                                                    resolved.eval_every, batch=resolved.batch_size)))
    counts = pruning_schedule(net, rounds[-1]) if len(rounds) > 1 else []
    for r, members in rounds_todo:
        for k in sorted({c.start_step for c in members}):
            cohort = [c for c in members if c.start_step == k]
            layered = sum(n for n, layer in zip(counts[r], net.layers) if layer.prunable) / net.prunable_weights
            densities = tuple(layered if c.scope == "layer" else (1 - c.global_rate) ** r for c in cohort)
            sparse = tuple(on_cpu and trains_sparse_at(net, d, c.mask0 == "zero") for c, d in zip(cohort, densities))
            start = f", from step {k:,}" if k else ""
            out.append(("round", r, cohort, CohortWork(
                f"{label}, round {r}/{rounds[-1]} ({len(cohort)} chain{'s' if len(cohort) != 1 else ''}{start})",
                densities, sparse, resolved.iterations - k, resolved.eval_every, batch=resolved.batch_size,
                runs=len(cohort))))
    return out


def run_chains(
    root: Path,
    config: TrainConfig,
    chains: list[Chain],
    rounds: list[int],
    device: torch.device,
    data: Any,
    report: Report | None = None,
    repair: bool = False,
    label: str = "",
) -> None:
    """Train every missing round of `chains` for one seed; `rounds` are pruning rounds 0, s, 2s, ...
    `report(fraction, note)` gets the share of the job's predicted cost done and what trains (`label`
    starts each note).

    The chains missing a round and starting from the same step train as one cohort, whichever they
    are: a member's numbers do not depend on its cohort (forward.py), so a round resumed with some of
    its members already done (or shared with another preset's chains) gives every run the bits of an
    uninterrupted sweep. The net's other parameters (biases, BatchNorm's scales and shifts) start every
    round where the dense run started them (rewound, as OpenLTH rewinds a whole network), or where it
    had them at the chain's rewind step; they are never pruned."""
    spec = config.net_spec()
    resolved = config.resolved()
    step = rounds[1] - rounds[0] if len(rounds) > 1 else 1
    paths = {(c, r): run_dir(root, "round", chain_round_identity(config, c, r, step)) for c in chains for r in rounds[1:]}
    dense_path = run_dir(root, "dense", dense_identity(config))
    # every run checked once (it reads every file); what to train, in order
    work = chain_work(root, config, chains, rounds, lambda path: finished(path, repair), set(), device.type == "cpu",
                      label)
    progress = JobProgress(report, [w for *_, w in work])
    points: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}  # the dense run at later rewind steps
    dense: RunState | None = None
    state: dict[Chain, RunState] = {}
    for what, r, members, _ in work:
        part = progress.next()
        if what == "dense":
            ensure_dense(root, config, device, data, part)
            continue
        if what == "replay":
            points[r] = rewind_point(root, config, r, device, data, part, repair)
            continue
        if dense is None:
            with reading_run(dense_path):
                dense = read_state(dense_path, spec)
        prev_round = rounds[rounds.index(r) - 1]
        inputs = []
        for c in members:
            if c not in state:
                if prev_round == 0:  # the dense run, seen from the chain's rewind point
                    k = c.start_step
                    if k and k not in points:
                        points[k] = rewind_point(root, config, k, device, data, None, repair)
                    state[c] = dense if k == 0 else RunState(points[k][0], dense.final, dense.masks)
                else:
                    with reading_run(paths[(c, prev_round)]):
                        state[c] = read_state(paths[(c, prev_round)], spec)
            starts, masks = next_start(spec, c, state[c], dense.start, config.seed, r, step)
            biases = points[c.start_step][1] if c.start_step else dense.start_biases
            inputs.append(MemberStart(starts, masks, biases))
        t0 = time.perf_counter()
        results = train_cohort(
            spec,
            data.get(resolved.dataset),
            inputs,
            config.schedule(start_iteration=members[0].start_step),
            config.seed,
            device,
            lambda it, total, _: part(it / total),
        )
        wall = (time.perf_counter() - t0) / len(members)
        for c, member, result in zip(members, inputs, results):
            _write_round(paths[(c, r)], spec, config, chain_round_identity(config, c, r, step), member, result, wall,
                         device)
            state[c] = RunState(member.weights, result.final_weights, member.masks)


def _write_round(path: Path, spec: NetSpec, config: TrainConfig, ident: dict, member: MemberStart,
                 result: MemberResult, wall: float, device: torch.device) -> None:
    start, masks = member.weights, member.masks
    remaining = [int(m.sum()) for m in masks]
    summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall,
               "remaining_weights": spec.kept_weights(masks), "remaining_per_layer": remaining}
    write_run(path, "round", ident, summary, config=config, device=device, history=result.history,
              # the start of the other parameters where it is not the init's (a chain rewound to a later step,
              # BatchNorm's drawn scales)
              arrays={"masks.npz": mask_arrays(spec, masks), "start.npz": weight_arrays(spec, start, member.biases),
                      "final.npz": weight_arrays(spec, result.final_weights, result.final_biases,
                                                 buffers=result.final_buffers)},
              compress=("start.npz", "final.npz"))


def _densities(net: NetSpec, summary: dict[str, Any], round_: int, path: Path) -> dict[str, float]:
    """density_<layer> of a round (its summary's remaining_per_layer; round 0 is dense)."""
    kept = summary.get("remaining_per_layer") if round_ else [layer.size for layer in net.layers]
    if not (isinstance(kept, list) and len(kept) == len(net.layers) and all(type(k) is int for k in kept)):
        raise TicketlabError(f"run {path} is damaged (its summary.json has no valid remaining_per_layer): delete it "
                             "and rerun the sweep")
    return {f"density_{layer.name}": k / layer.size for layer, k in zip(net.layers, kept)}


SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "remaining_weights": (int,), "early_stop_iteration": (int,), "test_accuracy_at_early_stop": NUMBER,
    "val_loss_at_early_stop": NUMBER, "final_test_accuracy": NUMBER,
}


class IterativeKind(ExperimentKind):
    """Iterative pruning (protocol §4): chains of (criterion, mask-1 action, mask-0 action) over rounds."""

    name = "iterative"
    params = IterativeParams
    curves = Curves("test_accuracy_at_early_stop", ("criterion", "mask1", "mask0", "rewind_iteration", "scope"),
                    ylabel="test accuracy at early stop (%)")
    columns = ("criterion", "mask1", "mask0", "round", "remaining_weights", "remaining_percent", "early_stop_iteration",
               "test_accuracy_at_early_stop", "val_loss_at_early_stop", "final_test_accuracy", "test_accuracy_at_init")

    @property
    def optional_columns(self) -> tuple[str, ...]:
        """Filled by the rows of a sweep that sets the field, so that other sweeps' tables keep their
        columns: the rewind iteration, the scope, and, for sweeps that prune globally, each layer's
        density (fraction kept) by layer name, over every net."""
        return ("rewind_iteration", "scope",
                *dict.fromkeys(f"density_{layer.name}" for net in NETS.values() for layer in net.layers))

    def check(self, spec: SweepSpec, where: Blame, blame: Blame) -> None:
        p: IterativeParams = spec.params
        check_steps(p.rounds, p.round_step, "rounds", "round_step", blame)
        iterations = spec.train_config(spec.first_seed).resolved().iterations
        late = [k for k in p.rewind_iteration if k]
        if late and max(late) >= iterations:
            raise TicketlabError(f"{blame('rewind_iteration')} must be below the schedule's {iterations:,} steps (a "
                                 f"round trains the steps after it), got {max(late):,}")
        if "global" not in p.scope:
            for key, default in (("global_rate", 0.2), ("output_layer_rate", None)):
                if getattr(p, key) != default:
                    raise TicketlabError(f"{blame(key)} is for scope global; add \"global\" to scope or drop it")
        still = [m for m in p.mask1 if not mask1_action(m).rewinds]
        if late and still:
            rewinding = ", ".join(m for m in mask1_names() if mask1_action(m).rewinds) or "none yet"
            raise TicketlabError(f"{blame('rewind_iteration')} lists {late[0]:,}, but mask-1 action {still[0]!r} does "
                                 f"not rewind (those that do: {rewinding}): give rewind_iteration = [0] or drop "
                                 f"{still[0]}")

    def run_job(self, spec: SweepSpec, seed: int, root: Path, runtime: Runtime, report: Report | None) -> None:
        run_chains(root, spec.train_config(seed), chains_of(spec.params), spec.params.round_list,
                   resolve_device(runtime.device), DataCache(runtime.data_dir, runtime.download), report,
                   repair=runtime.repair, label=f"{spec.name} seed {seed}")

    def plan(self, spec: SweepSpec, seed: int, root: Path, claimed: set[str], device: str, done: Any = is_complete) -> list[CohortWork]:
        return [w for *_, w in chain_work(root, spec.train_config(seed), chains_of(spec.params),
                                           spec.params.round_list, done, claimed, device == "cpu",
                                           f"{spec.name} seed {seed}")]

    def result_rows(self, spec: SweepSpec, root: Path) -> list[dict[str, Any]]:
        p: IterativeParams = spec.params
        rows = []
        for seed in spec.seed_list:
            config = spec.train_config(seed)
            net = config.net_spec()
            dataset = config.resolved_dataset
            for chain in chains_of(p):
                for r in p.round_list:
                    if r == 0:
                        path = run_dir(root, "dense", dense_identity(config))
                    else:
                        path = run_dir(root, "round", chain_round_identity(config, chain, r, p.round_step))
                    if not finished(path, names=(SUMMARY,)):
                        continue
                    with reading_run(path):
                        s = checked(read_json(path / SUMMARY), SUMMARY_FIELDS, SUMMARY)
                    rows.append(dict(
                        experiment=spec.name, net=spec.net, dataset=dataset, seed=seed,
                        criterion=chain.criterion, mask1=chain.mask1, mask0=chain.mask0, round=r,
                        remaining_weights=s["remaining_weights"],
                        remaining_percent=100.0 * s["remaining_weights"] / net.prunable_weights,
                        early_stop_iteration=s["early_stop_iteration"],
                        test_accuracy_at_early_stop=s["test_accuracy_at_early_stop"],
                        val_loss_at_early_stop=s["val_loss_at_early_stop"],
                        final_test_accuracy=s["final_test_accuracy"],
                        test_accuracy_at_init=s.get("test_accuracy_at_init"),
                        **({"rewind_iteration": chain.rewind_iteration} if p.rewind_iteration != (0,) else {}),
                        **({"scope": chain.scope} if p.scope != ("layer",) else {}),
                        **(_densities(net, s, r, path) if "global" in p.scope else {}),
                        run_dir=str(path.relative_to(root)),
                    ))
        return rows

    def expected_results(self, spec: SweepSpec) -> int | None:
        return len(spec.seed_list) * len(chains_of(spec.params)) * len(spec.params.round_list)

    def protocol(self, spec: SweepSpec) -> tuple[bool, str]:
        p: IterativeParams = spec.params
        step = f" in steps of {p.round_step}" if p.round_step != 1 else ""
        full = p.rounds == PAPER_ROUNDS and p.round_step == 1
        return full, f"{PAPER_ROUNDS} rounds" if full else f"pruning rounds 0–{p.rounds}{step}"


register_kind(IterativeKind())
