"""Stability to SGD noise (protocol §17): two copies from one start, the path between them, the barrier."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ticketlab.core.errors import TicketlabError
from ticketlab.core.seeds import generator
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments.dense import rewind_point
from ticketlab.experiments.iterative import chain_round_identity
from ticketlab.experiments.jobs import DataCache, Runtime
from ticketlab.experiments.kinds import get_kind
from ticketlab.experiments.spec import load_sweep, parse_spec
from ticketlab.experiments.stability import (
    Endpoint, Start, StabilityParams, alpha_grid, evaluate_path, instability, member_start, order_seeds,
    path_networks, random_masks, run_stability, stability_path, starts_of, path_errors, ticket_chain, train_copies,
)
from ticketlab.nets.sparse import trains_sparse
from ticketlab.nets.specs import get_net, init_params, init_weights
from ticketlab.pruning.prune import pruning_schedule
from ticketlab.store.files import load_arrays, read_json, unpack_masks
from ticketlab.store.runs import run_dir
from ticketlab.training.config import TrainConfig

FC = get_net("fc")
CONFIG = TrainConfig(iterations=40, eval_every=20, test_eval="on_best")
TINY = """\
name = "tiny-stability"
kind = "stability"
masks = ["dense", "large_final", "random"]
ticket_rounds = [1]
rewind_iteration = [0, 30]
alphas = 5
seeds = 1
iterations = 40
eval_every = 20
"""


def _starts(k: int = 0) -> tuple[list[Start], list]:
    """Dense, a random mask of round 1 (trains dense) and one of round 8 (17%: trains sparse on the CPU),
    their kept weights at the seed's init (k = 0)."""
    weights, biases = init_weights(FC, generator(0, "init")), init_params(FC, generator(0, "init_params"))
    starts = [Start("dense"), Start("random", 1), Start("random", 8)]
    masks = [None, random_masks(FC, 0, 1), random_masks(FC, 0, 8)]
    return starts, [member_start(weights, biases, m) for m in masks]


@pytest.fixture(scope="module")
def copies(mnist):
    """Copy a and copy b of the three starts, each copy's starts one cohort (as the kind trains them)."""
    starts, members = _starts()
    a, b = order_seeds(CONFIG)
    return members, train_copies(FC, mnist, members, CONFIG, 0, a, "cpu"), train_copies(FC, mnist, members, CONFIG, 0,
                                                                                       b, "cpu")


def test_the_alpha_grid_holds_both_ends_exactly_and_the_middle():
    grid = alpha_grid(31)
    assert len(grid) == 31 and grid[0] == 0.0 and grid[-1] == 1.0 and grid[15] == 0.5
    assert all(b - a == pytest.approx(1 / 30) for a, b in zip(grid, grid[1:]))


def test_instability_is_the_largest_error_minus_the_mean_of_the_ends():
    assert instability([0.02, 0.05, 0.03, 0.04]) == pytest.approx(0.05 - 0.03)
    assert instability([0.10, 0.02, 0.04]) == pytest.approx(0.10 - 0.07)  # an end can be the largest
    assert instability([0.0311] * 31) == 0.0
    assert path_errors([0.9811, 1.0, 0.0], 10_000) == [0.0189, 0.0, 1.0]  # from the count: no 1 - x rounding


def test_random_masks_keep_a_rounds_counts_per_layer_and_differ_by_seed():
    for r in (1, 8, 16):
        masks = random_masks(FC, 0, r)
        assert [int(m.sum()) for m in masks] == pruning_schedule(FC, r)[r]
    assert not all(torch.equal(a, b) for a, b in zip(random_masks(FC, 0, 3), random_masks(FC, 1, 3)))
    assert all(torch.equal(a, b) for a, b in zip(random_masks(FC, 0, 3), random_masks(FC, 0, 3)))


def test_the_two_copies_data_orders_differ_and_follow_the_data_order_seed():
    a, b = order_seeds(CONFIG)
    assert a != b
    assert order_seeds(TrainConfig(seed=1)) != (a, b)
    assert order_seeds(TrainConfig(seed=1, data_order_seed=0)) == (a, b)  # derived from the data order's seed


def test_the_low_density_start_trains_sparse_so_its_evaluation_path_is_covered():
    _, members = _starts()
    assert [trains_sparse(m.weights, m.masks) for m in members] == [False, False, True]


def test_the_path_ends_give_exactly_the_copies_recorded_test_accuracies(copies, mnist):
    members, a, b = copies
    for member, ra, rb in zip(members, a, b):
        losses, accuracies = evaluate_path(FC, CONFIG, 0, path_networks(Endpoint.of(ra), Endpoint.of(rb), [0.0, 0.5, 1.0]),
                                           member.masks, mnist, torch.device("cpu"))
        assert accuracies[0] == ra.history["test_accuracy"][-1]
        assert accuracies[-1] == rb.history["test_accuracy"][-1]
        assert losses[0] == ra.history["test_loss"][-1] and losses[-1] == rb.history["test_loss"][-1]


def test_copies_with_different_orders_end_apart(copies):
    _, a, b = copies
    assert not any(torch.equal(x, y) for x, y in zip(a[0].final_weights, b[0].final_weights))


def test_every_point_of_a_tickets_path_has_its_pruned_weights_at_zero(copies):
    members, a, b = copies
    for member, ra, rb in zip(members[1:], a[1:], b[1:]):
        points = path_networks(Endpoint.of(ra), Endpoint.of(rb), alpha_grid(31))
        assert len(points) == 31
        for point in points:
            for w, m in zip(point.weights, member.masks):
                assert torch.count_nonzero(w[~m]) == 0
            # and the kept weights do move along the path
        assert not torch.equal(points[1].weights[0], points[0].weights[0])
        assert all(torch.equal(p, q) for p, q in zip(points[0].weights, ra.final_weights))
        assert all(torch.equal(p, q) for p, q in zip(points[-1].weights, rb.final_weights))


def test_a_copy_is_bitwise_the_same_alone_and_in_its_cohort(copies, mnist):
    members, a, _ = copies
    order = order_seeds(CONFIG)[0]
    for j in (0, 2):  # the dense member and the sparse one
        (alone,) = train_copies(FC, mnist, [members[j]], CONFIG, 0, order, "cpu")
        assert all(torch.equal(x, y) for x, y in zip(alone.final_weights, a[j].final_weights))
        assert all(torch.equal(x, y) for x, y in zip(alone.final_biases, a[j].final_biases))
        assert json.dumps(alone.history) == json.dumps(a[j].history)


def test_copies_of_one_data_order_are_bitwise_identical_and_their_instability_is_exactly_0(tmp_path, mnist):
    spec = parse_spec(TINY, "tiny", "full")
    params = StabilityParams(masks=("large_final", "random"), ticket_rounds=(1,), rewind_iteration=(30,), alphas=5)
    config = spec.train_config(0)
    same = (order_seeds(config)[0],) * 2
    run_stability(tmp_path, config, params, torch.device("cpu"), DataCache(None, False), orders=same)
    for start in starts_of(params):
        path = stability_path(tmp_path, config, start, 30, params.alphas, same)
        a, b = load_arrays(path / "final_a.npz"), load_arrays(path / "final_b.npz")
        assert sorted(a) == sorted(b) and all((a[key] == b[key]).all() for key in a)
        summary = read_json(path / "summary.json")
        assert summary["instability"] == 0.0 and summary["error_at_0"] == summary["error_at_1"] == summary["max_error"]
        assert len(set(read_json(path / "path.json")["test_accuracy"])) == 1


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("stability")
    path = root / "tiny.toml"
    path.write_text(TINY)
    run_sweep(load_sweep(str(path), "full"), root / "out", Runtime(device="cpu"), workers=1, quiet=True)
    return load_sweep(str(path), "full"), root / "out"


def test_a_sweep_gives_a_row_per_start_and_k_and_reruns_nothing(swept):
    spec, root = swept
    kind = get_kind("stability")
    rows = kind.result_rows(spec, root)
    assert len(rows) == kind.expected_results(spec) == 6
    assert {(r["mask"], r["round"], r["rewind_iteration"]) for r in rows} == \
        {(m, r, k) for m, r in (("dense", 0), ("large_final", 1), ("random", 1)) for k in (0, 30)}
    for r in rows:
        errors = json.loads(r["error_path"])
        assert len(errors) == 5 and r["error_at_0"] == errors[0] and r["error_at_1"] == errors[-1]
        assert r["instability"] == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
        assert r["remaining_percent"] == pytest.approx(100.0 if r["mask"] == "dense" else 80.0387, abs=1e-3)
    assert kind.plan(spec, 0, root, set(), "cpu") == []


def test_a_sweeps_runs_record_both_copies_and_the_path_ends_match_them(swept):
    spec, root = swept
    for run in (root / "runs").glob("stability_*"):
        path = read_json(run / "path.json")
        a, b = read_json(run / "history_a.json"), read_json(run / "history_b.json")
        assert path["alpha"] == alpha_grid(5)
        assert path["test_accuracy"][0] == a["test_accuracy"][-1] and path["test_accuracy"][-1] == b["test_accuracy"][-1]
        assert a["iteration"][0] == read_json(run / "config.json")["identity"]["rewind_iteration"]


def test_a_tickets_start_is_its_chains_mask_on_the_dense_weights_at_k(swept, mnist):
    spec, root = swept
    config = spec.train_config(0)
    chain = run_dir(root, "round", chain_round_identity(config, ticket_chain("large_final"), 1, 1))
    chain_masks = unpack_masks([layer.name for layer in FC.layers], load_arrays(chain / "masks.npz"))
    weights, biases = rewind_point(root, config, 30, torch.device("cpu"), None)
    for mask in ("large_final", "random"):
        run = stability_path(root, config, Start(mask, 1), 30, 5)
        masks = unpack_masks([layer.name for layer in FC.layers], load_arrays(run / "masks.npz"))
        start = load_arrays(run / "start.npz")
        if mask == "large_final":
            assert all(torch.equal(m, c) for m, c in zip(masks, chain_masks))
        else:
            assert [int(m.sum()) for m in masks] == [int(c.sum()) for c in chain_masks]
        for layer, w, m in zip(FC.layers, weights, masks):
            assert torch.equal(torch.from_numpy(start[f"{layer.name}.weight"]), torch.where(m, w, torch.zeros_like(w)))
        for t, b in zip(FC.params, biases):
            assert torch.equal(torch.from_numpy(start[t.name]), b)


def test_a_rewind_step_past_the_schedule_is_refused():
    with pytest.raises(TicketlabError, match="rewind_iteration.*below the schedule's 40 steps"):
        parse_spec(TINY.replace("[0, 30]", "[0, 40]"), "tiny", "full")
