"""Conv2, Conv4 and Conv6 of protocol §2 (the VGG-like nets of Frankle & Carbin): pairs of 3x3 'same'
ReLU convolutions, each pair followed by a 2x2 max-pool, then dense layers of 256, 256 and one
unit per class. Built for any image shape whose sides survive the pools (CIFAR-10's 32x32x3 by
default; Fashion-MNIST's 28x28x1 too): the first dense layer takes what the last pool leaves.

The cohort's forward: each member's convolutions on its own (a grouped conv would be faster but
does not match a lone member bitwise), then the dense layers as the cohort's products.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .specs import DoesNotFit, ImageShape, Layer, NetSpec, register_net

if TYPE_CHECKING:
    import torch


def forward(spec: NetSpec, weights: list["torch.Tensor"], biases: list["torch.Tensor"], x: "torch.Tensor",
            plain_gemm: bool) -> "torch.Tensor":
    import torch
    import torch.nn.functional as F

    from .forward import aligned_members, dense_head

    k = weights[0].shape[0]
    convs = [layer for layer in spec.layers if layer.kind == "conv"]
    members = []
    for m in range(k):
        hm = x
        for layer, w, b in zip(convs, weights, biases):
            # in place: the conv output is fresh and conv's backward does not need it
            hm = F.conv2d(hm, w[m], b[m], padding=layer.padding).relu_()
            if layer.pool_after:
                hm = F.max_pool2d(hm, 2)
        members.append(hm.flatten(1))
    return dense_head(aligned_members(torch.stack(members)), weights, biases, len(convs), plain_gemm)


def _builder(name: str, widths: tuple[int, ...], conv_keep: float, lr: float, epochs: int) -> Callable[[ImageShape, int], NetSpec]:
    pools = len(widths) // 2

    def build(image_shape: ImageShape, classes: int) -> NetSpec:
        c_in, height, width = image_shape
        if min(height, width) < 2**pools:
            raise DoesNotFit(f"its {pools} 2x2 max-pools need images of at least {2**pools}x{2**pools} pixels")
        layers: list[Layer] = []
        for i, w in enumerate(widths):
            pool = i % 2 == 1  # conv, conv, pool blocks
            layers.append(Layer(f"conv{i + 1}", "conv", c_in, w, conv_keep, pool_after=pool))
            c_in = w
            if pool:
                height, width = height // 2, width // 2
        layers += [
            Layer("fc1", "fc", c_in * height * width, 256, 0.8),
            Layer("fc2", "fc", 256, 256, 0.8),
            Layer("fc3", "fc", 256, classes, 0.9, relu=False),
        ]
        return NetSpec(name, tuple(layers), tuple(image_shape), "cifar10", lr, epochs, image_shape, classes,
                       forward=forward, title=name.capitalize())

    return build


# Protocol §2-3: widths, keep factors of the conv layers, Adam learning rates and epochs
register_net("conv2", _builder("conv2", (64, 64), 0.9, 2e-4, 27), (3, 32, 32))
register_net("conv4", _builder("conv4", (64, 64, 128, 128), 0.9, 3e-4, 34), (3, 32, 32))
register_net("conv6", _builder("conv6", (64, 64, 128, 128, 256, 256), 0.85, 3e-4, 40), (3, 32, 32))
