"""Supermasks at initialisation (protocol §7): one-shot masks from a trained base, no training.

For each criterion the masks of every level p come from one score ordering per layer
(`oneshot_masks`); the masked networks of all levels and start-weight variants are evaluated in
stacks through the cohort evaluator, not one network at a time.
"""
from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..core.device import resolve_device
from ..core.errors import TicketlabError
from ..core.fields import ranged
from ..core.seeds import derive_seed
from ..nets.specs import NETS, NetSpec, get_net
from ..pruning.actions import density_multiplier
from ..pruning.criteria import CRITERIA, criterion_names
from ..pruning.prune import oneshot_masks, oneshot_prune_count
from ..store.files import NUMBER, SUMMARY, UnreadableFile, checked, finished, is_complete, json_type, read_json, reading_run
from ..store.runs import read_base, run_dir, write_run
from ..store.tickets import build_ticket
from ..training.config import TrainConfig, net_spec
from ..training.cost import CohortWork, EvalWork
from ..training.evaluation import evaluate
from .dense import dense_bases, dense_identity, ensure_dense
from .jobs import DataCache
from .kinds import Blame, Curves, ExperimentKind, JobProgress, Report, check_steps, register_kind
from .spec import PAPER_ROUNDS, names_field

if TYPE_CHECKING:
    from .jobs import Runtime
    from .spec import SweepSpec

STARTS = ("init", "signed_constant")
_LEVELS_WHY = f"protocol §7's one-shot levels are p = 0..{PAPER_ROUNDS}, as §4's rounds"


@dataclass(frozen=True)
class SupermaskParams:
    """A supermask sweep's own fields: the bases masks come from, and what is evaluated at init."""

    criteria: tuple[str, ...] = names_field(("large_final",), criterion_names, "mask criteria (protocol §5), or \"all\"", all_of=CRITERIA)
    bases: tuple[str, ...] = ("converged",)  # converged, val_accuracy_0.NN or iterations_N
    starts: tuple[str, ...] = names_field(("init",), STARTS, "start weights of the kept weights")
    dwr: tuple[bool, ...] = (False,)  # dynamic weight rescaling
    levels: int = ranged(PAPER_ROUNDS, "one-shot levels p = 0..levels", low=0, high=PAPER_ROUNDS, why=_LEVELS_WHY)
    level_step: int = ranged(1, "one-shot levels between evaluated ones", low=1, high=PAPER_ROUNDS, why=_LEVELS_WHY)

    @property
    def level_list(self) -> list[int]:
        return list(range(0, self.levels + 1, self.level_step))


def bases_of(params: SupermaskParams, iterations: int) -> list[str]:
    """The sweep's bases, without iteration snapshots the run never gets to (documented behaviour)."""
    return [b for b in params.bases if not (b.startswith("iterations_") and int(b.split("_")[1]) >= iterations)]


EVAL_STACK = 26  # networks evaluated together


def signed_constant(w: torch.Tensor) -> torch.Tensor:
    """c * sign(w), c = the population std of the whole layer (protocol §6)."""
    return float(w.double().std(correction=0)) * torch.sign(w)


def check_no_batchnorm(spec: SweepSpec, blame: Blame, kind: str) -> None:
    """Refuse a net with BatchNorm in a sweep of untrained masked networks: at init its running
    statistics are torch's 0 and 1, which say nothing of the masked net's activations, and protocol §7
    defines supermasks on nets without it."""
    if spec.net in NETS and NETS[spec.net].buffers:
        plain = ", ".join(n for n in NETS if not NETS[n].buffers)
        raise TicketlabError(f"{blame('net')}: {kind} sweeps evaluate untrained masked networks, and {spec.net} has "
                             f"BatchNorm, whose statistics at init are undefined for them: use a net without it ({plain})")


def supermask_identity(config: TrainConfig, base: str, criteria, levels, starts, dwrs) -> dict[str, Any]:
    return {
        "dense": dense_identity(config),
        "base": base,
        "criteria": list(criteria),
        "levels": list(levels),
        "starts": list(starts),
        "dwr": list(dwrs),
    }


def evaluate_supermasks(
    spec: NetSpec,
    w_init: list[torch.Tensor],
    w_final: list[torch.Tensor],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    criteria: list[str],
    levels: list[int],
    starts: list[str],
    dwrs: list[bool],
    seed: int,
    base: str,
    device: torch.device,
    report: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (criterion, level, start, dwr): remaining weights and test accuracy at init."""
    start_weights = {"init": w_init, "signed_constant": [signed_constant(w) for w in w_init]}
    counts = [[oneshot_prune_count(layer.size, layer.keep, p) for p in levels] for layer in spec.layers]
    rows: list[dict[str, Any]] = []
    zero_biases = None
    x, y = test_x.to(device), test_y.to(device)
    for ci, criterion in enumerate(criteria):
        per_layer = [
            oneshot_masks(criterion, w_init[i], w_final[i], counts[i], derive_seed(seed, "oneshot", base, criterion, i))
            for i in range(len(spec.layers))
        ]
        variants = list(itertools.product(range(len(levels)), starts, dwrs))
        for chunk_start in range(0, len(variants), EVAL_STACK):
            chunk = variants[chunk_start : chunk_start + EVAL_STACK]
            stacks = []
            for i in range(len(spec.layers)):
                layer_nets = []
                for li, start, dwr in chunk:
                    mask = per_layer[i][li]
                    w = start_weights[start][i] * mask
                    if dwr:
                        w = w * density_multiplier(mask)
                    layer_nets.append(w)
                stacks.append(torch.stack(layer_nets).to(device))
            zero_biases = [torch.zeros(len(chunk), *t.shape, device=device) for t in spec.params]
            _, accuracy = evaluate(spec, stacks, zero_biases, x, y)
            for (li, start, dwr), acc in zip(chunk, accuracy):
                remaining = spec.kept_weights([per_layer[i][li] for i in range(len(spec.layers))])
                rows.append(
                    {
                        "criterion": criterion,
                        "round": levels[li],
                        "remaining_weights": remaining,
                        "start": start,
                        "dwr": dwr,
                        "test_accuracy_at_init": acc,
                    }
                )
        if report is not None:
            report((ci + 1) / len(criteria))
    return rows


def run_supermask(
    root: Path,
    config: TrainConfig,
    base: str,
    criteria: list[str],
    levels: list[int],
    starts: list[str],
    dwrs: list[bool],
    device: torch.device,
    data,
    report: Callable[[float], None] | None = None,
    repair: bool = False,
) -> Path | None:
    """The supermask run of one base of one seed's dense run (which must exist); None if the base
    was never reached (e.g. a val-accuracy target the run did not attain)."""
    ident = supermask_identity(config, base, criteria, levels, starts, dwrs)
    path = run_dir(root, "supermask", ident)
    if finished(path, repair):
        return path
    spec = config.net_spec()
    dense_path = run_dir(root, "dense", dense_identity(config))
    with reading_run(dense_path):
        found = read_base(dense_path, spec, base)
    if found is None:
        return None
    w_init, w_final, b_final, base_iterations = found
    dataset = data.get(config.resolved().dataset)
    t0 = time.perf_counter()
    _, (base_acc,) = evaluate(
        spec,
        [w.unsqueeze(0).to(device) for w in w_final],
        [b.unsqueeze(0).to(device) for b in b_final],
        dataset.test_x.to(device),
        dataset.test_y.to(device),
    )
    rows = evaluate_supermasks(
        spec, w_init, w_final, dataset.test_x, dataset.test_y, criteria, levels, starts, dwrs, config.seed, base, device, report
    )
    summary = {
        "base": base,
        "base_iterations": base_iterations,
        "base_test_accuracy": base_acc,
        "seed": config.seed,
        "rows": len(rows),
        "wall_seconds": time.perf_counter() - t0,
    }
    write_run(path, "supermask", ident, summary, records={"rows.json": rows}, extra_config={"dense_run": dense_path.name})
    return path


def supermask_work(root: Path, config: TrainConfig, criteria, levels, starts, dwrs, bases: list[str],
                   done: Callable[[Path], bool], claimed: set[str], label: str) -> list[tuple[str | None, Any]]:
    """What a seed's supermask runs still need, in order: (None, the dense run) if it is missing, then
    (base, the networks to evaluate) per missing base. Runs that `done` or `claimed` names are left
    out; the others are added to `claimed`."""
    out: list[tuple[str | None, Any]] = []

    def needed(path: Path) -> bool:
        if path.name in claimed or done(path):
            return False
        claimed.add(path.name)
        return True

    resolved = config.resolved()
    if needed(run_dir(root, "dense", dense_identity(config))):
        out.append((None, CohortWork(f"{label}, dense run", (1.0,), (False,), resolved.iterations, resolved.eval_every,
                                     batch=resolved.batch_size, snapshots=True)))
    networks = len(criteria) * len(levels) * len(starts) * len(dwrs) + 1  # and the base itself
    for base in bases:
        if needed(run_dir(root, "supermask", supermask_identity(config, base, criteria, levels, starts, dwrs))):
            out.append((base, EvalWork(f"{label}, supermasks of base {base}", networks)))
    return out


def read_rows(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return read_json(path / SUMMARY), read_json(path / "rows.json")


SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {"base_iterations": (int,), "base_test_accuracy": NUMBER}
ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "criterion": (str,), "round": (int,), "remaining_weights": (int,), "test_accuracy_at_init": NUMBER,
    "start": (str,), "dwr": (bool,),
}


class SupermaskKind(ExperimentKind):
    """Supermasks at initialisation (protocol §7): one-shot masks from trained bases, evaluated untrained."""

    name = "supermask"
    params = SupermaskParams
    curves = Curves("test_accuracy_at_init", ("criterion",), panels=("base", "start", "dwr"),
                    ylabel="test accuracy at init (%)")
    columns = ("criterion", "round", "remaining_weights", "remaining_percent", "test_accuracy_at_init", "base",
               "base_iterations", "base_test_accuracy", "start", "dwr")

    def check(self, spec: SweepSpec, where: Blame, blame: Blame) -> None:
        check_no_batchnorm(spec, blame, "supermask")
        p: SupermaskParams = spec.params
        known = dense_bases()
        for base in p.bases:
            if base not in known:
                raise TicketlabError(
                    f"{where('bases')}: base {base!r} is not one a dense run keeps; the bases are {', '.join(known)}"
                )
        check_steps(p.levels, p.level_step, "levels", "level_step", blame)

    def run_job(self, spec: SweepSpec, seed: int, root: Path, runtime: Runtime, report: Report | None) -> None:
        p: SupermaskParams = spec.params
        config = spec.train_config(seed)
        device = resolve_device(runtime.device)
        data = DataCache(runtime.data_dir, runtime.download)
        work = supermask_work(root, config, p.criteria, p.level_list, p.starts, p.dwr, bases_of(p, config.resolved().iterations),
                              lambda path: finished(path, runtime.repair), set(), f"{spec.name} seed {seed}")
        progress = JobProgress(report, [w for _, w in work])
        for base, _ in work:
            part = progress.next()
            if base is None:
                ensure_dense(root, config, device, data, part, repair=runtime.repair)
            else:
                run_supermask(root, config, base, list(p.criteria), p.level_list, list(p.starts), list(p.dwr), device,
                              data, part, repair=runtime.repair)

    def plan(self, spec: SweepSpec, seed: int, root: Path, claimed: set[str], device: str, done: Any = is_complete) -> list[Any]:
        p: SupermaskParams = spec.params
        config = spec.train_config(seed)
        return [w for _, w in supermask_work(root, config, p.criteria, p.level_list, p.starts, p.dwr,
                                             bases_of(p, config.resolved().iterations), done, claimed,
                                             f"{spec.name} seed {seed}")]

    def result_rows(self, spec: SweepSpec, root: Path) -> list[dict[str, Any]]:
        p: SupermaskParams = spec.params
        net = spec.train_config(spec.first_seed).net_spec()
        rows = []
        for seed in spec.seed_list:
            config = spec.train_config(seed)
            dataset = config.resolved_dataset
            for base in bases_of(p, config.resolved().iterations):
                path = run_dir(root, "supermask", supermask_identity(config, base, p.criteria, p.level_list, p.starts, p.dwr))
                if not finished(path, names=(SUMMARY, "rows.json")):
                    continue
                with reading_run(path):
                    summary, entries = read_rows(path)
                    checked(summary, SUMMARY_FIELDS, SUMMARY)
                    if not isinstance(entries, list):
                        raise UnreadableFile(f"rows.json holds a JSON {json_type(entries)}, not an array")
                    for e in entries:
                        checked(e, ROW_FIELDS, "rows.json")
                for e in entries:
                    rows.append(dict(
                        experiment=spec.name, net=spec.net, dataset=dataset, seed=seed,
                        criterion=e["criterion"], round=e["round"], remaining_weights=e["remaining_weights"],
                        remaining_percent=100.0 * e["remaining_weights"] / net.prunable_weights,
                        test_accuracy_at_init=e["test_accuracy_at_init"], base=base,
                        base_iterations=summary["base_iterations"], base_test_accuracy=summary["base_test_accuracy"],
                        start=e["start"], dwr=e["dwr"], run_dir=str(path.relative_to(root)),
                    ))
        return rows

    def expected_results(self, spec: SweepSpec) -> int | None:
        p: SupermaskParams = spec.params
        bases = bases_of(p, spec.train_config(spec.first_seed).resolved().iterations)
        return len(spec.seed_list) * len(bases) * len(p.criteria) * len(p.level_list) * len(p.starts) * len(p.dwr)

    def protocol(self, spec: SweepSpec) -> tuple[bool, str]:
        p: SupermaskParams = spec.params
        step = f" in steps of {p.level_step}" if p.level_step != 1 else ""
        return p.levels == PAPER_ROUNDS and p.level_step == 1, f"supermask levels p = 0…{p.levels}{step}"


register_kind(SupermaskKind())


def supermask_ticket(run_dir: Path, criterion: str | None, level: int | None, start: str | None,
                     dwr: bool | None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The ticket of one row of a supermask run: the mask of (criterion, level) from the run's base,
    on the start weights (init or signed constant), DWR as a per-layer scale of weight_orig, zero
    biases: the very network whose test accuracy at init the row records."""
    run_dir = Path(run_dir)
    try:
        record = read_json(run_dir / "config.json")
        ident, dense_name = record["identity"], record["dense_run"]
        dense_ident, base = ident["dense"], ident["base"]
        spec = net_spec(dense_ident["net"], dense_ident.get("dataset") or get_net(dense_ident["net"]).dataset)
    except (UnreadableFile, KeyError, TypeError) as e:
        raise TicketlabError(f"run {run_dir} is damaged ({e}); rerun it with --repair") from None
    choices = {"criterion": (criterion, ident["criteria"]), "level": (level, ident["levels"]),
               "start": (start, ident["starts"]), "dwr": (dwr, ident["dwr"])}
    for flag, (value, valid) in choices.items():
        if value is None or value not in valid:
            given = "none given" if value is None else f"{value!r} is not one of them"
            raise TicketlabError(f"run {run_dir} holds one network per (criterion, level, start, dwr): give --{flag}, "
                                 f"one of {', '.join(str(v).lower() if isinstance(v, bool) else str(v) for v in valid)} "
                                 f"({given})")
    dense_path = run_dir.parent / dense_name
    if not finished(dense_path):
        raise TicketlabError(f"the dense run {dense_path} that supermask run {run_dir} was made from is not in the "
                             "store: rerun the sweep that made it")
    with reading_run(dense_path):
        found = read_base(dense_path, spec, base)
    if found is None:
        raise TicketlabError(f"the dense run {dense_path} never reached base {base}: this supermask run has no masks")
    w_init, w_final, _, _ = found
    seed = int(dense_ident.get("seed", 0))
    masks = []
    for i, layer in enumerate(spec.layers):
        count = oneshot_prune_count(layer.size, layer.keep, level)
        (mask,) = oneshot_masks(criterion, w_init[i], w_final[i], [count], derive_seed(seed, "oneshot", base, criterion, i))
        masks.append(mask)
    # pruned weights are zero in the network evaluated (no held values), and DWR scales the masked kernel
    kernels = [w * m for w, m in zip(w_init if start == "init" else [signed_constant(w) for w in w_init], masks)]
    scales = [density_multiplier(m) for m in masks] if dwr else None
    meta = {"kind": "supermask", "dataset": str(dense_ident.get("dataset") or spec.dataset), "seed": str(seed),
            "criterion": criterion, "mask1": "", "mask0": "zero", "round": str(level), "weights": start,
            "base": base, "dwr": str(dwr).lower(),
            "dwr_scale": json.dumps([1.0] * len(masks) if scales is None else scales)}
    biases = [torch.zeros(t.shape) for t in spec.params]
    return build_ticket(spec, run_dir.name, kernels, masks, biases, meta, scales)
