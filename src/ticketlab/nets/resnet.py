"""ResNet-20 for CIFAR-10 as OpenLTH defines it (`cifar_resnet_20`; He et al. 2016, §4.2).

A 3x3 convolution of 16 channels, then three segments of three residual blocks of 16, 32 and 64
channels, global average pooling and a dense output layer: 20 weight layers, 272,474 parameters.
Every convolution is 3x3 with padding 1 and no bias, followed by BatchNorm; a block is conv-BN-ReLU,
conv-BN, plus its input, then ReLU. The first block of the second and third segments halves the
map (stride 2) and reaches its input through a projection shortcut: a 1x1 convolution of stride 2
and a BatchNorm. Names are OpenLTH's (`blocks.3.conv1`, `blocks.3.shortcut.0`, ...), so a
ticket's tensors are the state_dict of OpenLTH's module.

Init as OpenLTH's defaults: kernels kaiming_normal, BatchNorm scales U[0, 1) ('uniform'), shifts
zero. The output layer's bias starts at zero (ticketlab's rule for every bias; torch would draw it).
Pruned as OpenLTH's `sparse_global` default for this net: every convolution, shortcuts included,
and the output layer (its VGG leaves the output layer out); ticketlab prunes layer by layer, 20% of
each layer's remaining weights per round (OpenLTH: 20% of all, by one global threshold).
BatchNorm's parameters are never pruned.

Any image shape fits: a stride-2 convolution keeps at least one pixel, and the pooling averages
whatever map is left (7x7 for 28x28 images, 8x8 for CIFAR-10's 32x32).
"""
from __future__ import annotations

from .specs import ImageShape, Layer, NetSpec, register_net

DEPTH, WIDTH = 20, 16  # cifar_resnet_20: 2 + 6 * 3 layers, 16 channels in the first segment
KEEP = 0.8  # OpenLTH's pruning_fraction 0.2
# The learning rate of `ticketlab train --net resnet20` and of sweeps that keep the default optimiser
# (TF1 Adam, at torch's and Keras's default rate); the preset `resnet20` trains with OpenLTH's recipe
# (SGD, momentum, weight decay, step schedule, batch 128, crops and flips).
ADAM_LEARNING_RATE = 1e-3


def build(image_shape: ImageShape, classes: int, depth: int = DEPTH, width: int = WIDTH) -> NetSpec:
    blocks_per_segment = (depth - 2) // 6

    def conv(name: str, bn: str, c_in: int, c_out: int, **kw) -> Layer:
        return Layer(name, "conv", c_in, c_out, KEEP, bias=False, batchnorm=bn, init="kaiming_normal", **kw)

    layers = [conv("conv", "bn", image_shape[0], width)]
    c_in, b = width, 0
    for segment in range(3):
        c_out = width * 2**segment
        for block in range(blocks_per_segment):
            down = segment > 0 and block == 0
            p = f"blocks.{b}"
            shortcut = f"{p}.shortcut.0" if down or c_in != c_out else ""
            last = segment == 2 and block == blocks_per_segment - 1
            layers.append(conv(f"{p}.conv1", f"{p}.bn1", c_in, c_out, stride=2 if down else 1))
            layers.append(conv(f"{p}.conv2", f"{p}.bn2", c_out, c_out, residual=f"{p}.conv1", shortcut=shortcut,
                               global_pool=last))
            if shortcut:
                layers.append(conv(shortcut, f"{p}.shortcut.1", c_in, c_out, kernel=1, stride=2, padding=0,
                                   relu=False, projection=True))
            c_in, b = c_out, b + 1
    layers.append(Layer("fc", "fc", c_in, classes, KEEP, relu=False, init="kaiming_normal"))

    return NetSpec("resnet20", tuple(layers), tuple(image_shape), "cifar10", ADAM_LEARNING_RATE, 160, image_shape,
                   classes, member_forward=member_forward, title="ResNet-20")


def member_forward(spec, weights, params, buffers, x, training):
    """One member's logits by its declared layers (`forward.walk`)."""
    from .forward import walk

    return walk(spec, weights, params, buffers, x, training)


register_net("resnet20", build, (3, 32, 32))
