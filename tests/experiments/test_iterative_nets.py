"""Iterative pruning of ResNet-20 and VGG-16: the prunable layers lose their declared fraction per
round (VGG-16's output layer none), BatchNorm's parameters are never pruned and every round starts
them where the dense run started them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_registry import registry_restored
from ticketlab.core.errors import TicketlabError
from ticketlab.core.seeds import generator
from ticketlab.data import Dataset, register_dataset
from ticketlab.experiments.dense import dense_identity
from ticketlab.experiments.iterative import Chain, next_start, round_identity, run_chains
from ticketlab.experiments.jobs import DataCache
from ticketlab.experiments.spec import parse_spec
from ticketlab.nets.specs import get_net, init_weights
from ticketlab.pruning.prune import prune_count
from ticketlab.store.runs import RunState, run_dir
from ticketlab.training.config import TrainConfig


@pytest.mark.parametrize("net", ["resnet20", "vgg16"])
@pytest.mark.parametrize("criterion, round_step", [("large_final", 1), ("random", 3)])
def test_counts_per_round_follow_the_declared_rates(net, criterion, round_step):
    spec = get_net(net, (1, 28, 28))
    init = init_weights(spec, generator(0, "init"))
    final = init_weights(spec, generator(1, "init"))
    ones = [torch.ones(w.shape, dtype=torch.bool) for w in init]
    state = RunState(init, final, ones)
    for r in (1, 2):
        starts, masks = next_start(spec, Chain(criterion, "rewind", "zero"), state, init, 0, r * round_step, round_step)
        for layer, before, mask, start in zip(spec.layers, state.masks, masks, starts):
            expected = int(before.sum())
            for _ in range(round_step):
                expected -= prune_count(expected, layer.keep)
            assert int(mask.sum()) == expected, layer.name
            assert (expected < int(before.sum())) is layer.prunable  # the output layer of VGG-16 keeps every weight
            assert bool((mask <= before).all()) and torch.count_nonzero(start[~mask]) == 0
        state = RunState(starts, final, masks)
    # density 0.8 per round of every prunable layer, up to the count rule's rounding down of what it prunes
    density = spec.kept_weights(masks) / spec.prunable_weights
    assert 0 <= density - 0.8 ** (2 * round_step) < 2 * round_step * len(spec.layers) / spec.prunable_weights


@pytest.fixture
def grey_28():
    g = torch.Generator().manual_seed(0)

    def split(n):
        return torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)

    data = Dataset("iter-grey-28", *split(256), *split(64), *split(64))
    with registry_restored():
        register_dataset("iter-grey-28", lambda data_dir, download: data, (1, 28, 28), train_size=256)
        yield "iter-grey-28"


def test_a_resnet20_chain_rewinds_batchnorm_and_never_prunes_it(grey_28, tmp_path):
    config = TrainConfig(net="resnet20", dataset=grey_28, iterations=3, eval_every=3, batch_size=32, test_eval="on_best")
    chains = [Chain("large_final", "rewind", "zero"), Chain("random", "rewind", "zero")]
    run_chains(tmp_path, config, chains, [0, 1], torch.device("cpu"), DataCache(None, False))
    spec = config.net_spec()
    dense = np.load(run_dir(tmp_path, "dense", dense_identity(config)) / "start.npz")
    bn = [t.name for t in spec.params]
    assert set(bn) <= set(dense.files)  # drawn BatchNorm scales are kept with the start weights
    for chain in chains:
        path = run_dir(tmp_path, "round", round_identity(config, chain.criterion, "rewind", "zero", 1, 1))
        start, final = np.load(path / "start.npz"), np.load(path / "final.npz")
        for name in bn:
            assert np.array_equal(start[name], dense[name])  # rewound to the dense run's start
            assert not np.array_equal(final[name], dense[name])  # and trained, never held
        summary = json.loads((path / "summary.json").read_text())
        per_layer = [l.size - prune_count(l.size, l.keep) for l in spec.layers]
        assert summary["remaining_per_layer"] == per_layer
        assert summary["remaining_weights"] == sum(per_layer)
        assert {f"{t.name}" for t in spec.buffers} <= set(final.files)


def test_supermask_sweeps_refuse_batchnorm_nets():
    text = 'name = "s"\nkind = "supermask"\nnet = "resnet20"\nseeds = 1\niterations = 10\n'
    with pytest.raises(TicketlabError, match="supermask sweeps evaluate untrained masked networks, and resnet20 has "
                                             "BatchNorm.*use a net without it \\(fc, conv2, conv4, conv6\\)"):
        parse_spec(text, "s.toml", "full")
