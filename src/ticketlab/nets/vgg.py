"""VGG-16 for CIFAR-10 as OpenLTH defines it (`cifar_vgg_16`; Simonyan & Zisserman 2015).

Thirteen 3x3 convolutions with padding 1, each followed by BatchNorm and ReLU, in five stages of
64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3 channels with a 2x2 max-pool between stages, then
an average over the last feature map and one dense output layer of 512 inputs: 14,728,266
parameters. Its convolutions have biases (before BatchNorm, as OpenLTH's do). Names are
OpenLTH's (`layers.0.conv`, `layers.0.bn`, ...; `layers.N` counts the pools too).

The average: OpenLTH pools CIFAR-10's last 2x2 map with a 2x2 average pool; here the pool covers
the whole last map, which is the same thing on 32x32 images and lets the net take smaller ones
(28x28: the four max-pools leave 1x1, floor division as torch's pools). Images of at least 16x16 fit.

Init as OpenLTH's defaults (kernels kaiming_normal, BatchNorm scales U[0, 1), shifts zero); the
conv and output biases start at zero. Pruned as OpenLTH's `sparse_global` default for this net
(`pruning_layers_to_ignore='fc.weight'`): every convolution, not the output layer; 20% of each
layer's remaining weights per round. BatchNorm's parameters are never pruned.
"""
from __future__ import annotations

from .resnet import ADAM_LEARNING_RATE
from .specs import DoesNotFit, ImageShape, Layer, NetSpec, register_net

PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
KEEP = 0.8  # OpenLTH's pruning_fraction 0.2; the preset `vgg16` trains with OpenLTH's recipe


def build(image_shape: ImageShape, classes: int) -> NetSpec:
    pools = PLAN.count("M")
    if min(image_shape[1:]) < 2**pools:
        raise DoesNotFit(f"its {pools} 2x2 max-pools need images of at least {2**pools}x{2**pools} pixels")
    layers: list[Layer] = []
    c_in = image_shape[0]
    for i, entry in enumerate(PLAN):
        if entry == "M":
            layers[-1] = _replace(layers[-1], pool_after=True)
            continue
        layers.append(Layer(f"layers.{i}.conv", "conv", c_in, entry, KEEP, batchnorm=f"layers.{i}.bn",
                            init="kaiming_normal"))
        c_in = entry
    layers[-1] = _replace(layers[-1], global_pool=True)
    layers.append(Layer("fc", "fc", c_in, classes, 1.0, relu=False, prunable=False, init="kaiming_normal"))
    return NetSpec("vgg16", tuple(layers), tuple(image_shape), "cifar10", ADAM_LEARNING_RATE, 160, image_shape,
                   classes, member_forward=member_forward, title="VGG-16")


def _replace(layer: Layer, **changes) -> Layer:
    from dataclasses import replace

    return replace(layer, **changes)


def member_forward(spec, weights, params, buffers, x, training):
    """One member's logits by its declared layers (`forward.walk`)."""
    from .forward import walk

    return walk(spec, weights, params, buffers, x, training)


register_net("vgg16", build, (3, 32, 32))
