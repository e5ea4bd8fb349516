"""ResNet-20 and VGG-16 as OpenLTH defines them: parameter counts, what is pruned, and the registry's
forward against hand-written nn.Modules (written here from the papers' and OpenLTH's description,
independently of ticketlab's declarations) given the same weights, in evaluation and training mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ticketlab.core.seeds import generator
from ticketlab.nets.forward import forward
from ticketlab.nets.specs import get_net, init_buffers, init_params, init_weights


class Block(nn.Module):
    def __init__(self, f_in: int, f_out: int, down: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=2 if down else 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(f_in, f_out, 1, stride=2, bias=False), nn.BatchNorm2d(f_out))
                         if down or f_in != f_out else nn.Sequential())

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, f = [], 16
        for segment, width in enumerate((16, 32, 64)):
            for b in range(3):
                blocks.append(Block(f, width, segment > 0 and b == 0))
                f = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.avg_pool2d(out, out.shape[3]).flatten(1))


class VGG16(nn.Module):
    PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]

    def __init__(self, channels: int = 3, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        for entry in self.PLAN:
            if entry == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(nn.Sequential(nn.Conv2d(channels, entry, 3, padding=1), nn.BatchNorm2d(entry), nn.ReLU()))
                channels = entry
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(x)
        return self.fc(F.avg_pool2d(x, 2).flatten(1))  # OpenLTH: a 2x2 average of CIFAR-10's last 2x2 map


def _openlth_names(name: str) -> str:
    """VGG16 above nests conv and BN as layers.i.0 / layers.i.1; OpenLTH (and ticketlab) call them layers.i.conv / .bn."""
    return name.replace(".conv.", ".0.").replace(".bn.", ".1.")


def _tensors(spec, seed=0):
    """A member's kernels, parameters (BatchNorm scales drawn) and buffers, the running statistics
    moved off their start so that evaluation mode tests them."""
    g = torch.Generator().manual_seed(seed + 100)
    buffers = [t + torch.rand(t.shape, generator=g) for t in init_buffers(spec)]
    params = [t + 0.1 * torch.rand(t.shape, generator=g) for t in init_params(spec, generator(seed, "init_params"))]
    return init_weights(spec, generator(seed, "init")), params, buffers


def _load(module: nn.Module, spec, weights, params, buffers, rename=lambda n: n) -> None:
    state = {}
    for layer, w in zip(spec.layers, weights):
        state[rename(f"{layer.name}.weight")] = w.t() if layer.kind == "fc" else w  # nn.Linear holds (out, in)
    for t, v in zip(spec.params, params):
        state[rename(t.name)] = v
    for t, v in zip(spec.buffers, buffers):
        state[rename(t.name)] = v.clone()
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)


@pytest.mark.parametrize("name, total, prunable, output_pruned", [
    ("resnet20", 272_474, 270_896, True),  # OpenLTH's test_cifar_resnet counts 272,474 parameters
    ("vgg16", 14_728_266, 14_710_464, False),  # and test_cifar_vgg 14,728,266; its fc is not pruned
])
def test_openlth_parameter_counts_and_prunable_layers(name, total, prunable, output_pruned):
    spec = get_net(name)
    module = ResNet20() if name == "resnet20" else VGG16()
    assert spec.parameter_count == total == sum(p.numel() for p in module.parameters())
    assert spec.prunable_weights == prunable
    # every conv and dense kernel is a layer; BatchNorm's parameters are not, and are never pruned
    kernels = {n for n, p in module.named_parameters() if p.dim() > 1}
    assert {(_openlth_names if name == "vgg16" else str)(f"{l.name}.weight") for l in spec.layers} == kernels
    assert all(layer.prunable for layer in spec.layers if layer.kind == "conv")
    assert spec.layers[-1].prunable is output_pruned
    assert all(layer.keep == (0.8 if layer.prunable else 1.0) for layer in spec.layers)
    bn = {f"{l.batchnorm}.{p}" for l in spec.layers if l.batchnorm for p in ("weight", "bias")}
    assert bn <= {t.name for t in spec.params} and not bn & {l.name for l in spec.layers}


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
@pytest.mark.parametrize("training", [False, True])
def test_resnet20_equals_a_hand_written_module(shape, training):
    spec = get_net("resnet20", shape)
    weights, params, buffers = _tensors(spec)
    module = ResNet20(shape[0])
    _load(module, spec, weights, params, buffers)
    module.train(training)
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(1))
    stacked = [b.unsqueeze(0).clone() for b in buffers]
    with torch.no_grad():
        expected = module(x)
        got = forward(spec, [w.unsqueeze(0) for w in weights], [p.unsqueeze(0) for p in params], x, buffers=stacked,
                      training=training)
    assert got.shape == (1, 6, 10)
    assert torch.equal(got[0], expected)
    # training mode updates the running statistics as torch's BatchNorm does; evaluation leaves them
    state = module.state_dict()
    for t, b, start in zip(spec.buffers, stacked, buffers):
        assert torch.equal(b[0], state[t.name])
        assert torch.equal(b[0], start) is not training


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_vgg16_equals_a_hand_written_module(shape):
    spec = get_net("vgg16", shape)
    weights, params, buffers = _tensors(spec, seed=2)
    module = VGG16(shape[0])
    if shape[1] < 32:  # the pools leave 1x1 of a 28x28 image, which ticketlab averages as it is
        module.forward = lambda x: module.fc(module.layers(x).flatten(1))
    _load(module, spec, weights, params, buffers, _openlth_names)
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(1))
    for training in (False, True):
        module.train(training)
        stacked = [b.unsqueeze(0).clone() for b in buffers]
        with torch.no_grad():
            expected = module(x)
            got = forward(spec, [w.unsqueeze(0) for w in weights], [p.unsqueeze(0) for p in params], x,
                          buffers=stacked, training=training)
        assert torch.equal(got[0], expected)


def test_openlth_init():
    """Kernels kaiming_normal (std sqrt(2 / fan_in), not truncated), BatchNorm scales U[0, 1), shifts and biases 0."""
    spec = get_net("vgg16")
    weights = init_weights(spec, generator(0, "init"))
    big = [(layer, w) for layer, w in zip(spec.layers, weights) if w.numel() > 100_000]
    for layer, w in big:
        std = (2.0 / layer.fan_in) ** 0.5
        assert abs(float(w.std()) / std - 1) < 0.02, layer.name
        assert float(w.abs().max()) > 3 * std  # not truncated at 2 sigma as TF1's glorot_normal
    params = init_params(spec, generator(0, "init_params"))
    for t, v in zip(spec.params, params):
        if t.name.endswith(".weight"):  # a BatchNorm scale
            assert 0 <= float(v.min()) and float(v.max()) < 1 and float(v.std()) > 0.1
        else:
            assert torch.count_nonzero(v) == 0


def test_a_net_too_small_for_its_pools_says_so_in_one_line():
    from ticketlab.nets.specs import DoesNotFit

    with pytest.raises(DoesNotFit, match=r"^net vgg16 does not fit 8x8x3 images: its 4 2x2 max-pools need images of "
                                         r"at least 16x16 pixels$"):
        get_net("vgg16", (3, 8, 8))
    with pytest.raises(DoesNotFit, match="conv6 does not fit 4x4x1 images: its 3 2x2 max-pools need .* 8x8"):
        get_net("conv6", (1, 4, 4))
    assert get_net("resnet20", (1, 4, 4)).layers[-1].fan_in_channels == 64  # a ResNet takes any size
