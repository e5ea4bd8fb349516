"""The experiment-kind registry: a new kind is one class, registered once, and the sweep runner,
the results table and the figures take it as they take the built-in ones."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ticketlab.core.errors import TicketlabError
from ticketlab.core.seeds import generator
from ticketlab.data import load_dataset
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments import kinds
from ticketlab.experiments.dense import dense_identity
from ticketlab.experiments.jobs import Runtime
from ticketlab.experiments.kinds import Curves, ExperimentKind
from ticketlab.experiments.spec import parse_spec
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.store.files import SUMMARY, finished, read_json
from ticketlab.store.runs import run_dir, write_run
from ticketlab.training import evaluate


@dataclasses.dataclass(frozen=True)
class ProbeParams:
    halvings: int = 2  # densities 1, 1/2, ... 1/2**halvings
    signed: bool = False  # a scalar bool field, which a sweep file can set


class RandomProbe(ExperimentKind):
    """A toy kind: the seed's untrained net under random masks of halving density, evaluated on the test set."""

    name = "random-probe"
    params = ProbeParams
    curves = Curves("test_accuracy_at_init", ())
    columns = ("round", "remaining_weights", "remaining_percent", "test_accuracy_at_init", "probe_density")

    def check(self, spec, where, blame):
        if not 0 <= spec.params.halvings <= 10:
            raise TicketlabError(f"{blame('halvings')} must be 0 to 10, got {spec.params.halvings}")

    def _path(self, spec, seed, root):
        ident = {"dense": dense_identity(spec.train_config(seed)), "halvings": spec.params.halvings}
        return run_dir(root, "probe", ident), ident

    def run_job(self, spec, seed, root, runtime, report):
        path, ident = self._path(spec, seed, root)
        if finished(path):
            return
        net, data = get_net(spec.net), load_dataset("mnist")
        weights = init_weights(net, generator(seed, "init"))
        gen = generator(seed, "probe")
        rows = []
        for p in range(spec.params.halvings + 1):
            masks = [torch.rand(w.shape, generator=gen) < 0.5**p for w in weights]
            stacked = [(w * m).unsqueeze(0) for w, m in zip(weights, masks)]
            biases = [torch.zeros(1, layer.out_channels) for layer in net.layers]
            _, (accuracy,) = evaluate(net, stacked, biases, data.test_x, data.test_y)
            kept = sum(int(m.sum()) for m in masks)
            rows.append({"round": p, "remaining_weights": kept, "test_accuracy_at_init": accuracy,
                         "probe_density": 0.5**p})
        write_run(path, "probe", ident, {"rows": len(rows)}, config=spec.train_config(seed), records={"rows.json": rows})

    def result_rows(self, spec, root):
        out = []
        for seed in spec.seed_list:
            path, _ = self._path(spec, seed, root)
            if finished(path, names=(SUMMARY,)):
                for r in read_json(path / "rows.json"):
                    out.append({"experiment": spec.name, "net": spec.net, "dataset": "mnist", "seed": seed, **r,
                                "remaining_percent": 100.0 * r["remaining_weights"] / get_net(spec.net).prunable_weights})
        return out


TOY = 'name = "probe"\nkind = "random-probe"\nseeds = 2\nhalvings = 2\niterations = 10\n'


@pytest.fixture
def toy_kind():
    kind = kinds.register_kind(RandomProbe())
    yield kind
    kinds.unregister_kind(kind.name)


def test_a_new_kind_parses_runs_and_reads_back(toy_kind, tmp_path):
    from ticketlab.analysis.table import result_rows, table_columns, to_csv

    spec = parse_spec(TOY, "probe.toml", "full")
    assert spec.params == ProbeParams(2)
    run_sweep(spec, tmp_path, Runtime(device="cpu"), workers=1, quiet=True)
    rows = result_rows(tmp_path)
    assert len(rows) == 6 and {r["seed"] for r in rows} == {0, 1}
    assert table_columns(rows)[-1] == "probe_density" and to_csv(rows).splitlines()[0].endswith(",probe_density")
    by_round = {r["round"]: r for r in rows if r["seed"] == 0}
    assert by_round[0]["remaining_percent"] == 100.0
    assert 20 < by_round[2]["remaining_percent"] < 30  # a quarter of the weights, drawn at random
    assert all(0.0 <= r["test_accuracy_at_init"] <= 1.0 for r in rows)
    # a rerun finds every run done and changes nothing
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    run_sweep(spec, tmp_path, Runtime(device="cpu"), workers=1, quiet=True)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before and len(before) == 2


def test_a_kind_checks_its_own_fields(toy_kind):
    with pytest.raises(TicketlabError, match=r"probe.toml:4: field 'halvings' must be 0 to 10, got 11"):
        parse_spec(TOY.replace("halvings = 2", "halvings = 11"), "probe.toml", "full")
    with pytest.raises(TicketlabError, match=r"probe.toml:6: unknown field 'criteria'; valid fields: .*halvings"):
        parse_spec(TOY + 'criteria = ["random"]\n', "probe.toml", "full")
    with pytest.raises(TicketlabError, match=r"unknown kind 'random-prob'; valid: iterative, supermask, learned_supermask, stability, random-probe"):
        parse_spec(TOY.replace('"random-probe"', '"random-prob"'), "probe.toml", "full")


def test_the_built_in_kinds_are_registered():
    assert kinds.kind_names()[:2] == ("iterative", "supermask")
    with pytest.raises(TicketlabError, match="unknown experiment kind 'x'"):
        kinds.get_kind("x")


def test_a_kinds_scalar_bool_field_is_set_by_a_sweep_file(toy_kind):
    assert parse_spec(TOY + "signed = true\n", "probe.toml", "full").params.signed is True
    with pytest.raises(TicketlabError, match=r"probe.toml:6: field 'signed' must be bool, got 1"):
        parse_spec(TOY + "signed = 1\n", "probe.toml", "full")


def test_a_kind_whose_fields_a_sweep_file_cannot_give_is_refused_at_registration():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        widths: list = dataclasses.field(default_factory=list)

    class BadKind(RandomProbe):
        name = "bad"
        params = Bad

    with pytest.raises(TypeError, match="a sweep field's type must be"):
        kinds.register_kind(BadKind())
    assert "bad" not in kinds.kind_names()


@pytest.mark.parametrize("text,message", [
    ('name = "p"\nhalvings = 2\n', r"p.toml: missing required field 'kind' \(one of iterative, supermask"),
    ('name = "p"\nkind = "iterative"\n[quick]\nkind = "supermask"\n', r"p.toml:2: field 'kind' cannot change per scale"),
])
def test_the_kind_is_read_first_and_once(text, message):
    with pytest.raises(TicketlabError, match=message):
        parse_spec(text, "p.toml", "quick")


def test_a_store_of_an_unregistered_kind_says_what_to_import(toy_kind, tmp_path):
    from ticketlab.analysis.table import result_rows

    spec = parse_spec(TOY.replace("seeds = 2", "seeds = 1"), "probe.toml", "full")
    run_sweep(spec, tmp_path, Runtime(device="cpu"), workers=1, quiet=True)
    kinds.unregister_kind(toy_kind.name)
    try:
        with pytest.raises(TicketlabError, match="of experiment kind 'random-probe', which is not registered in this "
                                                 "process: if it is a kind of your own, import the module that registers it"):
            result_rows(tmp_path)
    finally:
        kinds.register_kind(toy_kind)
