"""Learned supermasks (protocol §7) and edge-popup: masks trained over frozen random weights.

Per seed, one cohort per learner: Bernoulli masks for every (start, dwr), edge-popup for every
(start, kept_fraction), all from the seed's init (protocol §2, the dense run's own start). Each cohort
is one stored run (`learned_<hash>`): per variant its evaluation (mean/std test accuracy over
`eval_samples` seeded sampled masks, the expected density Σsigmoid/N, their realised density, the
deterministic mask sigmoid > 0.5; edge-popup: its top-k mask), its history and trained parameters.
For the figure, the seed's dense base and its heuristic supermasks at init (the supermask kind's
runs, shared by content hash) are run too.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.device import resolve_device
from ..core.errors import TicketlabError
from ..core.fields import ranged
from ..core.numerics import NUMERICS
from ..core.seeds import generator
from ..data import train_size
from ..nets.specs import init_weights
from ..pruning.criteria import criterion_names
from ..store.files import NUMBER, SUMMARY, checked, finished, is_complete, read_json, reading_run
from ..store.runs import run_dir, write_run
from ..training import MemberStart, Schedule, evaluate, train_cohort
from ..training.config import MAX_ITERATIONS
from ..training.cost import CohortWork
from ..training.masks import LEARNERS, MaskLearner, MaskVariant, kept_count, sampled_masks
from .dense import ensure_dense
from .jobs import DataCache
from .kinds import Blame, Curves, ExperimentKind, JobProgress, Report, check_steps, register_kind
from .spec import PAPER_ROUNDS, names_field
from .supermask import STARTS, run_supermask, signed_constant, supermask_identity, supermask_work

if TYPE_CHECKING:
    from .jobs import Runtime
    from .spec import SweepSpec

# Protocol §7 for FC; the conv nets have no published settings: unsearched defaults (docs/protocol.md)
MASK_EPOCHS = {"fc": 2000, "conv2": 100, "conv4": 100, "conv6": 100}
BERNOULLI_LR = 100.0
EDGE_POPUP_LR = 0.1
HEURISTIC_CRITERIA = ("large_final", "large_final_same_sign", "magnitude_increase", "movement")


@dataclass(frozen=True)
class LearnedParams:
    """A learned-supermask sweep's own fields."""

    learners: tuple[str, ...] = names_field(LEARNERS, LEARNERS, "mask learners")
    starts: tuple[str, ...] = names_field(("init", "signed_constant"), STARTS, "frozen weights")
    dwr: tuple[bool, ...] = (False, True)  # Bernoulli: dynamic weight rescaling per sampled mask
    kept_fractions: tuple[float, ...] = ranged((0.1, 0.3, 0.5, 0.7), "edge-popup's kept fraction k per layer",
                                               above=0, high=1)
    logit_init: float = ranged(0.0, "the Bernoulli logits' start value")
    mask_epochs: int | None = ranged(None, "epochs of mask training (default: MASK_EPOCHS of the net)", low=1,
                                     high=MAX_ITERATIONS)
    mask_iterations: int | None = ranged(None, "steps of mask training (replaces mask_epochs)", low=1,
                                         high=MAX_ITERATIONS)
    mask_batch: int = ranged(250, "examples per mask-training step", low=1, high=MAX_ITERATIONS)
    bernoulli_lr: float = ranged(BERNOULLI_LR, "the Bernoulli learner's SGD learning rate", above=0)
    edge_popup_lr: float = ranged(EDGE_POPUP_LR, "edge-popup's SGD learning rate (cosine to 0)", above=0)
    momentum: float = ranged(0.9, "SGD momentum of both learners", low=0, below=1)
    mask_eval_every: int = ranged(1000, "evaluate the deterministic mask every this many steps", low=1,
                                  high=MAX_ITERATIONS)
    eval_samples: int = ranged(10, "sampled masks averaged for the reported accuracy", low=1, high=MAX_ITERATIONS)
    heuristic_criteria: tuple[str, ...] = names_field(HEURISTIC_CRITERIA, criterion_names, "criteria of the heuristic supermasks drawn beside")
    level_step: int = ranged(1, "the heuristic supermasks' level step", low=1, high=PAPER_ROUNDS,
                             why=f"protocol §7's one-shot levels are p = 0..{PAPER_ROUNDS}")


def mask_iterations(p: LearnedParams, net: str, dataset: str) -> int:
    if p.mask_iterations is not None:
        return p.mask_iterations
    return (p.mask_epochs or MASK_EPOCHS[net]) * (train_size(dataset) // p.mask_batch)


def variants(p: LearnedParams, learner: str) -> list[dict[str, Any]]:
    """The members of one learner's cohort, as stored: their start and setting."""
    if learner == "bernoulli":
        return [{"start": s, "dwr": d, "kept_fraction": None} for s in p.starts for d in p.dwr]
    return [{"start": s, "dwr": False, "kept_fraction": k} for s in p.starts for k in p.kept_fractions]


def learned_identity(spec: "SweepSpec", p: LearnedParams, seed: int, learner: str) -> dict[str, Any]:
    dataset = spec.train_config(seed).resolved_dataset
    return {
        "net": spec.net, "dataset": dataset, "seed": seed, "learner": learner, "variants": variants(p, learner),
        "iterations": mask_iterations(p, spec.net, dataset), "batch": p.mask_batch,
        "learning_rate": p.bernoulli_lr if learner == "bernoulli" else p.edge_popup_lr, "momentum": p.momentum,
        "logit_init": p.logit_init if learner == "bernoulli" else None, "eval_every": p.mask_eval_every,
        "eval_samples": p.eval_samples, "version": "v1",
    }


def _variant_name(v: dict[str, Any]) -> str:
    return f"{v['start']}/dwr={v['dwr']}/k={v['kept_fraction']}"


def run_learned(root: Path, spec: "SweepSpec", p: LearnedParams, seed: int, learner: str, device: torch.device,
                data: DataCache, report: Report | None = None, repair: bool = False) -> Path:
    """One seed's cohort of one mask learner, trained and evaluated unless already in the store."""
    ident = learned_identity(spec, p, seed, learner)
    path = run_dir(root, "learned", ident)
    if finished(path, repair):
        return path
    net = spec.train_config(seed).net_spec()
    dataset = data.get(ident["dataset"])
    w_init = init_weights(net, generator(seed, "init"))
    frozen = {"init": w_init, "signed_constant": [signed_constant(w) for w in w_init]}
    vs = variants(p, learner)
    mask_variants = [MaskVariant(_variant_name(v), ident["learning_rate"], p.momentum, p.logit_init, v["dwr"],
                                 v["kept_fraction"] if v["kept_fraction"] is not None else 0.5) for v in vs]
    mask_learner = MaskLearner(learner, mask_variants, seed)
    schedule = Schedule(ident["iterations"], ident["learning_rate"], batch_size=p.mask_batch,
                        eval_every=p.mask_eval_every, test_eval="on_best")

    def progress(it: int, total: int, _: list[float]) -> None:
        if report is not None:
            report(it / max(1, total))

    t0 = time.perf_counter()
    results = train_cohort(net, dataset, [MemberStart(frozen[v["start"]]) for v in vs], schedule, seed, device,
                           progress, learner=mask_learner)
    wall = time.perf_counter() - t0
    cohort = mask_learner.cohort
    rows, histories = [], {}
    x, y = dataset.test_x.to(device), dataset.test_y.to(device)
    biases = [torch.zeros(1, *t.shape, device=device) for t in net.params]
    for m, (v, result) in enumerate(zip(vs, results)):
        weights = frozen[v["start"]]
        row = dict(v, learner=learner, **{k: result.summary()[k] for k in ("early_stop_iteration", "iterations")})
        row["deterministic_test_accuracy"] = result.history["test_accuracy"][-1]
        if learner == "bernoulli":
            logits = cohort.member_parameters(m)
            probs = [torch.sigmoid(l) for l in logits]
            row["expected_density"] = float(sum(float(q.double().sum()) for q in probs) / net.prunable_weights)
            det = [l > 0 for l in logits]
            row["deterministic_density"] = sum(int(d.sum()) for d in det) / net.prunable_weights
            accs, dens = [], []
            for masks in sampled_masks(logits, seed, _variant_name(v), p.eval_samples):
                nets = [w * mk * (mk.numel() / max(1, int(mk.sum())) if v["dwr"] else 1.0) for w, mk in zip(weights, masks)]
                _, (acc,) = evaluate(net, [t.unsqueeze(0).to(device) for t in nets], biases, x, y)
                accs.append(acc)
                dens.append(sum(int(mk.sum()) for mk in masks) / net.prunable_weights)
            row.update(test_accuracy=statistics.fmean(accs), test_accuracy_std=statistics.pstdev(accs),
                       realised_density=statistics.fmean(dens), sampled_test_accuracies=accs)
        else:
            counts = [kept_count(layer.size, v["kept_fraction"]) for layer in net.layers]
            density = sum(counts) / net.prunable_weights
            row.update(test_accuracy=row["deterministic_test_accuracy"], test_accuracy_std=0.0,
                       expected_density=density, realised_density=density, deterministic_density=density)
        rows.append(row)
        histories[_variant_name(v)] = result.history
    summary = {"seed": seed, "learner": learner, "rows": len(rows), "wall_seconds": wall,
               "iterations": ident["iterations"], "numerics": NUMERICS}
    params = {f"{_variant_name(v)}/{layer.name}": cohort.member_parameters(m)[i].numpy()
              for m, v in enumerate(vs) for i, layer in enumerate(net.layers)}
    write_run(path, "learned", ident, summary, device=device, records={"rows.json": rows, "histories.json": histories},
              arrays={"parameters.npz": params})
    return path


ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "learner": (str,), "start": (str,), "dwr": (bool,), "test_accuracy": NUMBER, "test_accuracy_std": NUMBER,
    "expected_density": NUMBER, "realised_density": NUMBER, "deterministic_test_accuracy": NUMBER,
}


class LearnedSupermaskKind(ExperimentKind):
    """Masks learned over frozen random weights (protocol §7) and edge-popup, beside heuristic supermasks."""

    name = "learned_supermask"
    params = LearnedParams
    curves = Curves("test_accuracy", ("learner", "start", "dwr"), ylabel="test accuracy (%)")
    columns = ("learner", "start", "dwr", "kept_fraction", "remaining_percent", "test_accuracy", "test_accuracy_std",
               "expected_density", "realised_density", "deterministic_test_accuracy", "deterministic_density",
               "round", "base_test_accuracy")
    columns_when_present = True

    def check(self, spec: "SweepSpec", where: Blame, blame: Blame) -> None:
        p: LearnedParams = spec.params
        if spec.net not in MASK_EPOCHS:
            raise TicketlabError(f"{blame('net')}: learned supermasks run on {', '.join(MASK_EPOCHS)}, not {spec.net}")
        check_steps(PAPER_ROUNDS, p.level_step, "the heuristic supermasks' levels", "level_step", blame)
        dataset = spec.train_config(spec.first_seed).resolved_dataset
        size = train_size(dataset)
        if size is not None and p.mask_batch > size:
            raise TicketlabError(f"{blame('mask_batch')} must be at most the {size:,} training images of {dataset}, "
                                 f"got {p.mask_batch}")
        if p.mask_iterations is None and size is not None:
            steps = mask_iterations(p, spec.net, dataset)
            if steps > MAX_ITERATIONS:
                raise TicketlabError(f"{blame('mask_epochs')} {p.mask_epochs} means {steps:,} steps: at most "
                                     f"{MAX_ITERATIONS:,} are allowed")

    def _heuristic(self, spec: "SweepSpec", seed: int) -> tuple[Any, list[int]]:
        p: LearnedParams = spec.params
        return spec.train_config(seed), list(range(0, PAPER_ROUNDS + 1, p.level_step))

    def run_job(self, spec: "SweepSpec", seed: int, root: Path, runtime: "Runtime", report: Report | None) -> None:
        p: LearnedParams = spec.params
        device = resolve_device(runtime.device)
        data = DataCache(runtime.data_dir, runtime.download)
        config, levels = self._heuristic(spec, seed)
        work = self._work(spec, seed, root, lambda path: finished(path, runtime.repair), set())
        progress = JobProgress(report, [w for _, w in work])
        for step, _ in work:
            part = progress.next()
            if step == "dense":
                ensure_dense(root, config, device, data, part, repair=runtime.repair)
            elif step == "heuristic":
                run_supermask(root, config, "converged", list(p.heuristic_criteria), levels, list(p.starts),
                              list(p.dwr), device, data, part, repair=runtime.repair)
            else:
                run_learned(root, spec, p, seed, step, device, data, part, repair=runtime.repair)

    def _work(self, spec: "SweepSpec", seed: int, root: Path, done: Any, claimed: set[str]) -> list[tuple[str, Any]]:
        """What one seed still needs, in order: ("dense" | "heuristic" | a learner, its work)."""
        p: LearnedParams = spec.params
        config, levels = self._heuristic(spec, seed)
        label = f"{spec.name} seed {seed}"
        out: list[tuple[str, Any]] = [("heuristic" if base else "dense", w) for base, w in supermask_work(
            root, config, p.heuristic_criteria, levels, p.starts, p.dwr, ["converged"], done, claimed, label)]
        dataset = config.resolved_dataset
        for learner in p.learners:
            path = run_dir(root, "learned", learned_identity(spec, p, seed, learner))
            if path.name not in claimed and not done(path):
                claimed.add(path.name)
                members = len(variants(p, learner))
                out.append((learner, CohortWork(f"{label}, {learner} masks ({members} variants)", (1.0,) * members,
                                                (False,) * members, mask_iterations(p, spec.net, dataset),
                                                p.mask_eval_every, batch=p.mask_batch)))
        return out

    def plan(self, spec: "SweepSpec", seed: int, root: Path, claimed: set[str], device: str, done: Any = is_complete) -> list[Any]:
        return [w for _, w in self._work(spec, seed, root, done, claimed)]

    def result_rows(self, spec: "SweepSpec", root: Path) -> list[dict[str, Any]]:
        p: LearnedParams = spec.params
        net = spec.train_config(spec.first_seed).net_spec()
        rows: list[dict[str, Any]] = []
        for seed in spec.seed_list:
            config, levels = self._heuristic(spec, seed)
            common = dict(experiment=spec.name, net=spec.net, dataset=config.resolved_dataset, seed=seed)
            for learner in p.learners:
                path = run_dir(root, "learned", learned_identity(spec, p, seed, learner))
                if not finished(path, names=(SUMMARY, "rows.json")):
                    continue
                with reading_run(path):
                    entries = read_json(path / "rows.json")
                    for e in entries:
                        checked(e, ROW_FIELDS, "rows.json")
                for e in entries:
                    rows.append(dict(common, **{c: e.get(c) for c in self.columns if c in e},
                                     remaining_percent=100.0 * e["realised_density"],
                                     run_dir=str(path.relative_to(root))))
            # the best heuristic supermask at init of each level, and the trained dense net
            path = run_dir(root, "supermask", supermask_identity(config, "converged", p.heuristic_criteria, levels,
                                                                 p.starts, p.dwr))
            if finished(path, names=(SUMMARY, "rows.json")):
                with reading_run(path):
                    summary, entries = read_json(path / SUMMARY), read_json(path / "rows.json")
                best: dict[int, dict[str, Any]] = {}
                for e in entries:
                    if e["round"] not in best or e["test_accuracy_at_init"] > best[e["round"]]["test_accuracy_at_init"]:
                        best[e["round"]] = e
                for level, e in sorted(best.items()):
                    rows.append(dict(common, learner=f"heuristic_best", start=e["start"], dwr=e["dwr"], round=level,
                                     remaining_percent=100.0 * e["remaining_weights"] / net.prunable_weights,
                                     test_accuracy=e["test_accuracy_at_init"],
                                     base_test_accuracy=summary["base_test_accuracy"],
                                     run_dir=str(path.relative_to(root))))
        return rows

    def expected_results(self, spec: "SweepSpec") -> int | None:
        return None

    def protocol(self, spec: "SweepSpec") -> tuple[bool, str]:
        p: LearnedParams = spec.params
        dataset = spec.train_config(spec.first_seed).resolved_dataset
        steps = mask_iterations(p, spec.net, dataset)
        full = spec.net == "fc" and steps == mask_iterations(LearnedParams(), "fc", dataset) and p.mask_batch == 250
        return full, f"mask training {steps:,} steps at batch {p.mask_batch}"


register_kind(LearnedSupermaskKind())
