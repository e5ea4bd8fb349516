"""The four networks of SPEC §2: layer shapes, per-round keep factors, training schedules, init.

A network is described by data (a `NetSpec`), never by an nn.Module: the trainer keeps each
layer's weights of all cohort members stacked along a leading member axis, and the forward pass
(`ticketlab.forward`) is plain tensor code over those stacks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import TicketlabError

if TYPE_CHECKING:  # the specs are data the command line reads before torch loads; init needs torch
    import torch

# TF1's truncated_normal keeps draws in [-2 sigma, 2 sigma]; the std of that truncated unit
# normal is this constant, so glorot_normal divides by it to realise the Glorot std.
TRUNCATED_NORMAL_STD = 0.87962566103423978


@dataclass(frozen=True)
class Layer:
    """One weight layer: a 3x3 'same' conv or a dense layer, with its per-round keep factor."""

    name: str
    kind: str  # "conv" or "fc"
    fan_in_channels: int  # conv: C_in; fc: inputs
    out_channels: int  # conv: C_out; fc: outputs
    keep: float  # fraction of remaining weights kept per pruning round (SPEC §4)
    pool_after: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of one member's kernel: conv (C_out, C_in, 3, 3) as torch wants; fc (in, out)."""
        if self.kind == "conv":
            return (self.out_channels, self.fan_in_channels, 3, 3)
        return (self.fan_in_channels, self.out_channels)

    @property
    def size(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def glorot_std(self) -> float:
        """sqrt(2 / (fan_in + fan_out)); for a conv both fans include the 3x3 receptive field."""
        k = 9 if self.kind == "conv" else 1
        return math.sqrt(2.0 / (k * self.fan_in_channels + k * self.out_channels))


@dataclass(frozen=True)
class NetSpec:
    """A network and its SPEC §3 training defaults."""

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]  # one example: (784,) or (C, H, W)
    dataset: str
    learning_rate: float
    epochs: int

    @property
    def prunable_weights(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def is_conv(self) -> bool:
        return self.layers[0].kind == "conv"


def _conv_net(name: str, widths: tuple[int, ...], conv_keep: float, lr: float, epochs: int) -> NetSpec:
    layers: list[Layer] = []
    c_in, side = 3, 32
    for i, w in enumerate(widths):
        pool = i % 2 == 1  # conv, conv, pool blocks
        layers.append(Layer(f"conv{i + 1}", "conv", c_in, w, conv_keep, pool_after=pool))
        c_in = w
        side //= 2 if pool else 1
    flat = c_in * side * side
    layers += [
        Layer("fc1", "fc", flat, 256, 0.8),
        Layer("fc2", "fc", 256, 256, 0.8),
        Layer("fc3", "fc", 256, 10, 0.9),
    ]
    return NetSpec(name, tuple(layers), (3, 32, 32), "cifar10", lr, epochs)


NETS: dict[str, NetSpec] = {
    "fc": NetSpec(
        "fc",
        (
            Layer("fc1", "fc", 784, 300, 0.8),
            Layer("fc2", "fc", 300, 100, 0.8),
            Layer("fc3", "fc", 100, 10, 0.9),
        ),
        (784,),
        "mnist",
        1.2e-3,
        55,
    ),
    "conv2": _conv_net("conv2", (64, 64), 0.9, 2e-4, 27),
    "conv4": _conv_net("conv4", (64, 64, 128, 128), 0.9, 3e-4, 34),
    "conv6": _conv_net("conv6", (64, 64, 128, 128, 256, 256), 0.85, 3e-4, 40),
}


def get_net(name: str) -> NetSpec:
    """The spec of a network by name, or a one-line error listing the valid names."""
    try:
        return NETS[name]
    except KeyError:
        raise TicketlabError(f"unknown net {name!r}: choose one of {', '.join(NETS)}") from None


def truncated_normal_(t: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Fill `t` from N(0, std^2) truncated to [-2 std, 2 std] by redrawing outliers (TF1 rule)."""
    import torch

    t.normal_(0.0, std, generator=generator)
    bound = 2.0 * std
    while True:
        bad = t.abs() > bound
        n = int(bad.sum())
        if n == 0:
            return t
        t[bad] = torch.empty(n, dtype=t.dtype).normal_(0.0, std, generator=generator)


def init_weights(spec: NetSpec, generator: torch.Generator) -> list[torch.Tensor]:
    """One member's kernels, TF1 glorot_normal (SPEC §2), drawn on the CPU so every device agrees."""
    import torch

    return [
        truncated_normal_(torch.empty(layer.weight_shape), layer.glorot_std / TRUNCATED_NORMAL_STD, generator)
        for layer in spec.layers
    ]
