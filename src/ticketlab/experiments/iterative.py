"""Iterative pruning (SPEC §4): chains of (criterion, mask-1 action, mask-0 action) over rounds.

Round 0 of every chain is the dense run of its seed, trained once and shared. Each later round of
all chains of one seed trains as one cohort. A finished run is never redone: a rerun starts each
chain from its last finished round.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..pruning.actions import start_weights
from ..training.config import TrainConfig
from ..data.idx import Dataset, load_dataset
from ..nets.specs import NetSpec, get_net, init_weights
from ..pruning.prune import prune_count, prune_n
from ..store.runs import (
    RunState,
    dense_identity,
    dense_snapshots,
    read_state,
    round_identity,
    run_dir,
    write_dense,
    write_round,
)
from ..core.seeds import derive_seed, generator
from ..store.files import finished, reading_run
from ..training.loop import MemberStart, train_cohort

Fraction = Callable[[float], None]  # reports progress of the current job in [0, 1]


@dataclass(frozen=True)
class Chain:
    criterion: str
    mask1: str
    mask0: str


class DataCache:
    """Loads a dataset the first time a job needs it (a job whose runs are all done loads nothing)."""

    def __init__(self, data_dir: str | None, download: bool) -> None:
        self.data_dir, self.download = data_dir, download
        self._cache: dict[str, Dataset] = {}

    def get(self, name: str) -> Dataset:
        if name not in self._cache:
            self._cache[name] = load_dataset(name, self.data_dir, self.download)
        return self._cache[name]


def ensure_dense(root: Path, config: TrainConfig, device: torch.device, data: DataCache, report: Fraction | None = None,
                 repair: bool = False) -> Path:
    """The dense run of `config` (with its snapshots), trained if not yet in the store (or, with
    `repair`, if its files no longer match their checksums)."""
    path = run_dir(root, "dense", dense_identity(config))
    if finished(path, repair):
        return path
    spec = get_net(config.net)
    start = init_weights(spec, generator(config.seed, "init"))
    iters, accs = dense_snapshots(config.resolved().iterations)
    schedule = config.schedule(snapshot_iterations=iters, snapshot_val_accuracies=accs)

    def progress(it: int, total: int, _: list[float]) -> None:
        if report is not None:
            report(it / total)

    t0 = time.perf_counter()
    (result,) = train_cohort(spec, data.get(config.resolved_dataset), [MemberStart(start)], schedule, config.seed, device, progress)
    write_dense(path, spec, config, dense_identity(config), start, result, time.perf_counter() - t0, device)
    return path


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
        starts.append(
            start_weights(chain.mask1, chain.mask0, prev.start[i], prev.start[i], prev.final[i], dense_init[i], mask, gen)
        )
        masks.append(mask)
    return starts, masks


def run_chains(
    root: Path,
    config: TrainConfig,
    chains: list[Chain],
    rounds: list[int],
    device: torch.device,
    data: DataCache,
    report: Fraction | None = None,
    repair: bool = False,
) -> None:
    """Train every missing round of `chains` for one seed; `rounds` are SPEC rounds 0, s, 2s, ...

    The chains missing a round train as one cohort, whichever they are: a member's numbers do not
    depend on its cohort (forward.py), so a round resumed with some of its members already done
    (or shared with another preset's chains) gives every run the bits of an uninterrupted sweep."""
    spec = get_net(config.net)
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
            data.get(config.resolved_dataset),
            [MemberStart(s, m) for s, m in inputs],
            config.schedule(),
            config.seed,
            device,
            lambda it, total, _: sub(it / total),
        )
        wall = (time.perf_counter() - t0) / len(members)
        for c, (s, m), result in zip(members, inputs, results):
            ident = round_identity(config, c.criterion, c.mask1, c.mask0, r, step)
            write_round(paths[(c, r)], spec, config, ident, s, m, result, wall, device)
            state[c] = RunState(s, result.final_weights, m)
        done += 1
        sub(0.0)
