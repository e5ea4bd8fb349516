"""Iterative pruning (SPEC §4): chains of (criterion, mask-1 action, mask-0 action) over rounds.

Round 0 of every chain is the dense run of its seed, trained once and shared. Each later round of
all chains of one seed trains as one cohort. A finished run is never redone: a rerun starts each
chain from its last finished round.
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
from ..nets.specs import NetSpec, get_net
from ..pruning.actions import MASK0_ACTIONS, Mask1Context, mask1_names, round_start
from ..pruning.criteria import CRITERIA, criterion_names
from ..pruning.prune import prune_count, prune_n
from ..store.files import NUMBER, SUMMARY, checked, finished, read_json, reading_run
from ..store.naming import identity
from ..store.runs import RunState, mask_arrays, read_state, run_dir, weight_arrays, write_run
from ..training import MemberResult, MemberStart, train_cohort
from ..training.config import TrainConfig
from .dense import dense_identity, ensure_dense
from .jobs import DataCache
from .kinds import Curves, ExperimentKind, Report, register_kind
from .spec import SPEC_ROUNDS, names_field

if TYPE_CHECKING:
    from .jobs import Runtime
    from .spec import SweepSpec

Fraction = Callable[[float], None]  # reports progress of the current job in [0, 1]
_ROUNDS_WHY = f"SPEC §4 prunes {SPEC_ROUNDS} rounds after the dense run"


@dataclass(frozen=True)
class IterativeParams:
    """An iterative sweep's own fields: every (criterion, mask-1, mask-0) chain, over SPEC rounds."""

    criteria: tuple[str, ...] = names_field(("large_final",), criterion_names, "mask criteria (SPEC §5), or \"all\"", all_of=CRITERIA)
    mask1: tuple[str, ...] = names_field(("rewind",), mask1_names, "mask-1 actions (SPEC §6)")
    mask0: tuple[str, ...] = names_field(("zero",), MASK0_ACTIONS, "mask-0 actions (SPEC §6)")
    rounds: int = ranged(SPEC_ROUNDS, "SPEC rounds covered", low=0, high=SPEC_ROUNDS, why=_ROUNDS_WHY)
    round_step: int = ranged(1, "SPEC rounds of pruning per trained round (quick scale: > 1)", low=1,
                             high=SPEC_ROUNDS, why=_ROUNDS_WHY)

    @property
    def round_list(self) -> list[int]:
        """The SPEC rounds this sweep trains (0 = the dense run)."""
        return list(range(0, self.rounds + 1, self.round_step))


@dataclass(frozen=True)
class Chain:
    criterion: str
    mask1: str
    mask0: str


def chains_of(params: IterativeParams) -> list[Chain]:
    return [Chain(c, m1, m0) for c in params.criteria for m1 in params.mask1 for m0 in params.mask0]


def round_identity(config: TrainConfig, criterion: str, mask1: str, mask0: str, round_: int, round_step: int) -> dict[str, Any]:
    """What names one round of one chain: the training config, the chain and the round."""
    ident = {**identity(config), "criterion": criterion, "mask1": mask1, "mask0": mask0, "round": round_}
    if round_step != 1:
        ident["round_step"] = round_step
    return ident


def remaining_after(spec: NetSpec, remaining: list[int], round_step: int) -> list[int]:
    """Per-layer remaining counts after `round_step` SPEC rounds of the count rule."""
    out = list(remaining)
    for _ in range(round_step):
        out = [r - prune_count(r, layer.keep) for r, layer in zip(out, spec.layers)]
    return out


def next_start(
    spec: NetSpec, chain: Chain, prev: RunState, dense_init: list[torch.Tensor], seed: int, round_: int, round_step: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(start kernels, masks) of a chain's round from its previous round (SPEC §4 and §6)."""
    targets = remaining_after(spec, [int(m.sum()) for m in prev.masks], round_step)
    starts, masks = [], []
    for i, layer in enumerate(spec.layers):
        n = int(prev.masks[i].sum()) - targets[i]
        prune_seed = derive_seed(seed, "prune", chain.criterion, chain.mask1, chain.mask0, round_, i)
        mask = prune_n(chain.criterion, prev.start[i], prev.final[i], prev.masks[i], n, prune_seed)
        gen = generator(seed, "actions", chain.criterion, chain.mask1, chain.mask0, round_, i)
        starts.append(round_start(chain.mask1, chain.mask0, Mask1Context(prev.start[i], dense_init[i], prev.final[i], mask, gen)))
        masks.append(mask)
    return starts, masks


def run_chains(
    root: Path,
    config: TrainConfig,
    chains: list[Chain],
    rounds: list[int],
    device: torch.device,
    data: Any,
    report: Fraction | None = None,
    repair: bool = False,
) -> None:
    """Train every missing round of `chains` for one seed; `rounds` are SPEC rounds 0, s, 2s, ...

    The chains missing a round train as one cohort, whichever they are: a member's numbers do not
    depend on its cohort (forward.py), so a round resumed with some of its members already done
    (or shared with another preset's chains) gives every run the bits of an uninterrupted sweep."""
    spec = get_net(config.net)
    resolved = config.resolved()
    step = rounds[1] - rounds[0] if len(rounds) > 1 else 1
    paths = {(c, r): run_dir(root, "round", round_identity(config, c.criterion, c.mask1, c.mask0, r, step)) for c in chains for r in rounds[1:]}
    done_runs = {key: finished(p, repair) for key, p in paths.items()}  # checked once: it reads every file
    todo_rounds = sorted({r for c, r in paths if not done_runs[(c, r)]})
    dense_path = run_dir(root, "dense", dense_identity(config))
    dense_done = finished(dense_path, repair)
    units = len(todo_rounds) + (0 if dense_done else 1)
    done = 0

    def sub(fraction: float) -> None:
        if report is not None and units:
            report((done + fraction) / units)

    if not dense_done:
        ensure_dense(root, config, device, data, sub)
        done += 1
    if not todo_rounds:
        return
    with reading_run(dense_path):
        dense = read_state(dense_path, spec)
    state: dict[Chain, RunState] = {}
    for r_index, r in enumerate(rounds[1:], start=1):
        members = [c for c in chains if not done_runs[(c, r)]]
        if not members:
            continue
        prev_round = rounds[r_index - 1]
        inputs = []
        for c in members:
            if c not in state:
                if prev_round == 0:
                    state[c] = dense
                else:
                    with reading_run(paths[(c, prev_round)]):
                        state[c] = read_state(paths[(c, prev_round)], spec)
            inputs.append(next_start(spec, c, state[c], dense.start, config.seed, r, step))
        t0 = time.perf_counter()
        results = train_cohort(
            spec,
            data.get(resolved.dataset),
            [MemberStart(s, m) for s, m in inputs],
            config.schedule(),
            config.seed,
            device,
            lambda it, total, _: sub(it / total),
        )
        wall = (time.perf_counter() - t0) / len(members)
        for c, (s, m), result in zip(members, inputs, results):
            ident = round_identity(config, c.criterion, c.mask1, c.mask0, r, step)
            _write_round(paths[(c, r)], spec, config, ident, s, m, result, wall, device)
            state[c] = RunState(s, result.final_weights, m)
        done += 1
        sub(0.0)


def _write_round(path: Path, spec: NetSpec, config: TrainConfig, ident: dict, start: list[torch.Tensor],
                 masks: list[torch.Tensor], result: MemberResult, wall: float, device: torch.device) -> None:
    remaining = [int(m.sum()) for m in masks]
    summary = {**result.summary(), "seed": config.seed, "wall_seconds": wall, "remaining_weights": sum(remaining),
               "remaining_per_layer": remaining}
    write_run(path, "round", ident, summary, config=config, device=device, history=result.history,
              arrays={"masks.npz": mask_arrays(spec, masks), "start.npz": weight_arrays(spec, start),
                      "final.npz": weight_arrays(spec, result.final_weights, result.final_biases)},
              compress=("start.npz", "final.npz"))


SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "remaining_weights": (int,), "early_stop_iteration": (int,), "test_accuracy_at_early_stop": NUMBER,
    "val_loss_at_early_stop": NUMBER, "final_test_accuracy": NUMBER,
}


class IterativeKind(ExperimentKind):
    """Iterative pruning (SPEC §4): chains of (criterion, mask-1 action, mask-0 action) over rounds."""

    name = "iterative"
    params = IterativeParams
    curves = Curves("test_accuracy_at_early_stop", ("criterion", "mask1", "mask0"),
                    ylabel="test accuracy at early stop (%)")
    columns = ("criterion", "mask1", "mask0", "round", "remaining_weights", "remaining_percent", "early_stop_iteration",
               "test_accuracy_at_early_stop", "val_loss_at_early_stop", "final_test_accuracy")

    def run_job(self, spec: SweepSpec, seed: int, root: Path, runtime: Runtime, report: Report | None) -> None:
        run_chains(root, spec.train_config(seed), chains_of(spec.params), spec.params.round_list,
                   resolve_device(runtime.device), DataCache(runtime.data_dir, runtime.download), report,
                   repair=runtime.repair)

    def result_rows(self, spec: SweepSpec, root: Path) -> list[dict[str, Any]]:
        p: IterativeParams = spec.params
        net = get_net(spec.net)
        rows = []
        for seed in spec.seed_list:
            config = spec.train_config(seed)
            dataset = config.resolved_dataset
            for chain in chains_of(p):
                for r in p.round_list:
                    if r == 0:
                        path = run_dir(root, "dense", dense_identity(config))
                    else:
                        ident = round_identity(config, chain.criterion, chain.mask1, chain.mask0, r, p.round_step)
                        path = run_dir(root, "round", ident)
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
                    ))
        return rows

    def expected_results(self, spec: SweepSpec) -> int | None:
        return len(spec.seed_list) * len(chains_of(spec.params)) * len(spec.params.round_list)

    def protocol(self, spec: SweepSpec) -> tuple[bool, str]:
        p: IterativeParams = spec.params
        step = f" in steps of {p.round_step}" if p.round_step != 1 else ""
        full = p.rounds == SPEC_ROUNDS and p.round_step == 1
        return full, f"{SPEC_ROUNDS} rounds" if full else f"SPEC rounds 0–{p.rounds}{step}"


register_kind(IterativeKind())
