"""SPEC §2: parameter counts and TF1's truncated Glorot-normal init."""
from __future__ import annotations

import math

import pytest
import torch

from ticketlab.nets.specs import NETS, TRUNCATED_NORMAL_STD, get_net, init_weights
from ticketlab.core.seeds import generator

SPEC_COUNTS = {"fc": 266_200, "conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184}


@pytest.mark.parametrize("name", SPEC_COUNTS)
def test_prunable_weight_counts(name):
    spec = get_net(name)
    assert spec.prunable_weights == SPEC_COUNTS[name]
    weights = init_weights(spec, generator(0, "init"))
    assert sum(w.numel() for w in weights) == SPEC_COUNTS[name]


def test_fc_layer_sizes():
    assert [l.size for l in NETS["fc"].layers] == [235_200, 30_000, 1_000]


@pytest.mark.parametrize("name", ["fc", "conv6"])
def test_init_std_and_truncation(name):
    spec = get_net(name)
    for layer, w in zip(spec.layers, init_weights(spec, generator(3, "init"))):
        k = 9 if layer.kind == "conv" else 1
        target = math.sqrt(2.0 / (k * layer.fan_in_channels + k * layer.out_channels))
        sigma = target / TRUNCATED_NORMAL_STD
        assert float(w.abs().max()) <= 2 * sigma
        if w.numel() >= 1000:  # smaller layers are too noisy for a 3% bound
            assert abs(float(w.std()) / target - 1) < 0.03, layer.name
        assert abs(float(w.mean())) < 0.1 * target


def test_init_is_seeded():
    spec = get_net("fc")
    a = init_weights(spec, generator(0, "init"))
    b = init_weights(spec, generator(0, "init"))
    c = init_weights(spec, generator(1, "init"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
