"""Protocol §2: parameter counts and TF1's truncated Glorot-normal init."""
from __future__ import annotations

import math

import pytest
import torch

from ticketlab.nets.specs import NETS, TRUNCATED_NORMAL_STD, get_net, init_weights
from ticketlab.core.seeds import generator

PAPER_COUNTS = {"fc": 266_200, "conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184}


@pytest.mark.parametrize("name", PAPER_COUNTS)
def test_prunable_weight_counts(name):
    spec = get_net(name)
    assert spec.prunable_weights == PAPER_COUNTS[name]
    weights = init_weights(spec, generator(0, "init"))
    assert sum(w.numel() for w in weights) == PAPER_COUNTS[name]


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


# ---------------------------------------------------------------------------------------------
# The registry keeps FC and Conv2/4/6 as they were: their layers, and their numbers

# Protocol §2 as declared before the registry (name, kind, in, out, keep, pool after) for their default data sets
PAPER_LAYERS = {
    "fc": [("fc1", "fc", 784, 300, 0.8, False), ("fc2", "fc", 300, 100, 0.8, False), ("fc3", "fc", 100, 10, 0.9, False)],
    "conv2": [("conv1", "conv", 3, 64, 0.9, False), ("conv2", "conv", 64, 64, 0.9, True),
              ("fc1", "fc", 16384, 256, 0.8, False), ("fc2", "fc", 256, 256, 0.8, False), ("fc3", "fc", 256, 10, 0.9, False)],
    "conv6": [("conv1", "conv", 3, 64, 0.85, False), ("conv2", "conv", 64, 64, 0.85, True),
              ("conv3", "conv", 64, 128, 0.85, False), ("conv4", "conv", 128, 128, 0.85, True),
              ("conv5", "conv", 128, 256, 0.85, False), ("conv6", "conv", 256, 256, 0.85, True),
              ("fc1", "fc", 4096, 256, 0.8, False), ("fc2", "fc", 256, 256, 0.8, False), ("fc3", "fc", 256, 10, 0.9, False)],
}


@pytest.mark.parametrize("name", PAPER_LAYERS)
def test_spec_nets_keep_their_layers_and_defaults(name):
    spec = get_net(name)
    assert [(l.name, l.kind, l.fan_in_channels, l.out_channels, l.keep, l.pool_after) for l in spec.layers] == \
        PAPER_LAYERS[name]
    assert all(l.kernel == 3 and l.padding == 1 and l.stride == 1 and l.bias and not l.batchnorm and l.prunable
               for l in spec.layers if l.kind == "conv")
    # one bias per layer after the kernels: the flat layout of every run so far
    assert [t.name for t in spec.params] == [f"{l.name}.bias" for l in spec.layers] and spec.buffers == ()
    assert (spec.dense_stack, spec.eval_chunk) == ((True, 5000) if name == "fc" else (False, 250))
    assert (spec.dataset, spec.learning_rate, spec.epochs) == {"fc": ("mnist", 1.2e-3, 55), "conv2": ("cifar10", 2e-4, 27),
                                                               "conv6": ("cifar10", 3e-4, 40)}[name]


def _conv_forward_before_the_registry(spec, weights, biases, x):
    """The conv nets' forward pass as `nets.forward.forward` ran it before architectures were modules
    (copied from that version): the reference their numbers must keep."""
    import torch.nn.functional as F

    from ticketlab.nets.forward import affine, aligned_members

    k, n = weights[0].shape[0], len(spec.layers)
    members = []
    for m in range(k):
        hm = x
        for layer, w, b in zip(spec.layers, weights, biases):
            if layer.kind != "conv":
                break
            hm = F.conv2d(hm, w[m], b[m], padding=1).relu_()
            if layer.pool_after:
                hm = F.max_pool2d(hm, 2)
        members.append(hm.flatten(1))
    h = aligned_members(torch.stack(members))
    for i in range(sum(layer.kind == "conv" for layer in spec.layers), n):
        h = affine(h, weights[i], biases[i])
        if i < n - 1:
            h = h.relu_()
    return h


@pytest.mark.parametrize("name", ["conv2", "conv4", "conv6"])
def test_conv_nets_compute_the_bits_they_computed_before_the_registry(name):
    from ticketlab.nets.forward import forward, member_losses
    from ticketlab.training.state import CohortState
    from ticketlab.training.schedule import MemberStart

    spec = get_net(name)
    g = torch.Generator().manual_seed(4)
    state = CohortState(spec, [MemberStart(init_weights(spec, generator(s, "init"))) for s in (0, 1)], 1e-3, "cpu")
    for b in state.biases:
        b.copy_(0.1 * torch.randn(b.shape, generator=g))
    x, y = torch.rand(12, 3, 32, 32, generator=g), torch.randint(0, 10, (12,), generator=g)
    n = len(spec.layers)
    got, want = [], []
    for f, out in ((forward, got), (_conv_forward_before_the_registry, want)):
        params = [p.detach().clone().requires_grad_() for p in state.weights + state.biases]
        logits = f(spec, params[:n], params[n:], x)
        out += [logits.detach(), *torch.autograd.grad(member_losses(logits, y).mean(1).sum(), params)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    state.compute_grads(x, y)  # the trainer's step takes the same path
    assert all(torch.equal(a, b) for a, b in zip(state.grads, want[1:]))
