"""The criteria table: one entry per criterion is all a new criterion needs."""
from __future__ import annotations

import pytest
import torch

from ticketlab import prune_layer
from ticketlab.experiments.spec import parse_spec
from ticketlab.pruning import criteria
from ticketlab.pruning.criteria import CRITERIA, Criterion, complementary_pairs, criterion, straddle_pairs


@pytest.fixture
def toy_criterion():
    """`largest_step_toward_zero`: keeps the weights whose magnitude shrank most (the opposite of
    magnitude_increase), registered beside the table's, and taken out again."""
    entry = Criterion("largest_step_toward_zero", lambda w_i, w_f, g: w_i.abs() - w_f.abs(), "#000000")
    criteria.register_criterion(entry)
    yield entry
    criteria.unregister_criterion(entry.name)


def test_a_registered_criterion_prunes_and_sweeps(toy_criterion):
    w_i = torch.tensor([0.5, -0.2, 0.1, 0.4, -0.3])
    w_f = torch.tensor([0.1, -0.3, 0.1, 0.45, 0.0])
    # scores |w_i| - |w_f| = [0.4, -0.1, 0, -0.05, 0.3]; keep 0.6 of 5 prunes int(5 * 40.00000000000001 / 100) = 2,
    # the two lowest
    mask = prune_layer(toy_criterion.name, w_i, w_f, torch.ones(5, dtype=torch.bool), keep=0.6, seed=0)
    assert mask.tolist() == [True, False, True, False, True]
    text = 'name = "t"\nkind = "iterative"\ncriteria = "all"\nseeds = 1\niterations = 5\nrounds = 1\n'
    spec = parse_spec(text, "t.toml", "full")
    assert spec.params.criteria == CRITERIA  # "all" is the table's: registering renames no preset's runs
    named = parse_spec(text.replace('"all"', f'["{toy_criterion.name}"]'), "t.toml", "full")
    assert named.params.criteria == (toy_criterion.name,)


def test_unregistered_again_it_is_unknown(toy_criterion):
    criteria.unregister_criterion(toy_criterion.name)
    with pytest.raises(Exception, match="unknown mask criterion 'largest_step_toward_zero'"):
        criterion(toy_criterion.name)
    criteria.register_criterion(toy_criterion)  # for the fixture's teardown


def test_the_table_pairs_and_styles_what_the_figures_and_claims_read():
    assert ("magnitude_increase", "movement") in complementary_pairs()
    assert ("magnitude_increase", "movement") not in straddle_pairs()  # the study makes no straddle claim for it
    assert len(complementary_pairs()) == 6 and len(straddle_pairs()) == 5
    assert [c for c in CRITERIA if criterion(c).is_percentile_rule] == ["large_init_large_final", "small_init_small_final"]
    assert [c for c in CRITERIA if criterion(c).needs_generator] == ["random"]
    assert len({criterion(c).color for c in CRITERIA}) == 13


def test_an_entry_needs_exactly_one_of_a_score_and_a_rule():
    with pytest.raises(ValueError, match="exactly one of a score and a percentile rule"):
        criteria.register_criterion(Criterion("neither", None, "#000000"))
    with pytest.raises(ValueError, match="percentile is 'large' or 'small'"):
        criteria.register_criterion(Criterion("medium_rule", None, "#000000", percentile="medium"))
    with pytest.raises(ValueError, match="registered twice"):
        criteria.register_criterion(Criterion("random", lambda w_i, w_f, g: w_f, "#000000"))
