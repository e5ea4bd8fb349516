"""Pruning scope: one global ranking of every prunable weight, against the paper's per-layer rates."""
from __future__ import annotations

import pytest

from ticketlab.core.errors import TicketlabError
from ticketlab.execution.sweep import run_sweep
from ticketlab.experiments.jobs import Runtime
from ticketlab.experiments.spec import load_sweep
from ticketlab.pruning.prune import pruning_schedule

TINY = """\
name = "scope"
kind = "iterative"
criteria = ["large_final", "random"]
mask1 = ["rewind"]
mask0 = ["zero"]
seeds = 1
iterations = 40
eval_every = 20
rounds = 2
scope = ["layer", "global"]
"""


def test_global_rounds_prune_one_ranking_and_record_each_layers_density(tmp_path):
    from ticketlab.analysis.table import result_rows, to_csv

    path = tmp_path / "scope.toml"
    path.write_text(TINY + "output_layer_rate = 0.0\n")
    run_sweep(load_sweep(str(path), "full"), tmp_path / "o", Runtime(device="cpu"), workers=1, quiet=True)
    rows = result_rows(tmp_path / "o")
    by = {(r["criterion"], r["scope"], r["round"]): r for r in rows}
    for criterion in ("large_final", "random"):
        # fc1 + fc2 ranked together: 265,200, then 212,160 (a fifth, rounded up, each round); fc3 kept whole
        g1, g2 = by[(criterion, "global", 1)], by[(criterion, "global", 2)]
        assert g1["remaining_weights"] == 212160 + 1000 and g2["remaining_weights"] == 169728 + 1000
        assert g1["density_fc3"] == g2["density_fc3"] == 1.0
        assert 235200 * g1["density_fc1"] + 30000 * g1["density_fc2"] == pytest.approx(212160)
        layer = by[(criterion, "layer", 1)]  # the paper's count rule: 80%, 80%, 90%, as the released code rounds
        kept = pruning_schedule("fc", 1)[1]
        assert (layer["density_fc1"], layer["density_fc2"], layer["density_fc3"]) == \
            (kept[0] / 235200, kept[1] / 30000, kept[2] / 1000)
        assert by[(criterion, "global", 0)]["density_fc1"] == 1.0
    # large_final's global ranking keeps the layers unevenly; random prunes them alike (up to sampling)
    assert abs(by[("random", "global", 2)]["density_fc1"] - by[("random", "global", 2)]["density_fc2"]) < 0.02
    header = to_csv(rows).splitlines()[0].split(",")
    assert {"scope", "density_fc1", "density_fc2", "density_fc3"} <= set(header)
    assert "density_conv1" not in header  # only the layers of the nets the rows are of


@pytest.mark.parametrize("extra, message", [
    ("global_rate = 1.0\n", r"field 'global_rate' must be < 1, got 1.0"),
    ("global_rate = 0\n", r"field 'global_rate' must be > 0, got 0"),
    ('scope = ["layer"]\nglobal_rate = 0.3\n', r"field 'global_rate' is for scope global"),
    ('scope = ["lobal"]\n', r"unknown scope 'lobal'; valid: layer, global"),
])
def test_scope_errors(tmp_path, extra, message):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace('scope = ["layer", "global"]\n', "") + extra if "scope" in extra else TINY + extra)
    with pytest.raises(TicketlabError, match=message):
        load_sweep(str(path), "full")
