"""The forward pass of a cohort: K networks of one architecture, weights stacked on a member axis.

Dense layers use one `bmm` over the member axis; convolutions run member by member (a grouped conv
would be faster but does not match a lone network bitwise). Either way, member k's numbers are
computed by exactly the same kernels whether the cohort has 1 or 13 members, which is what makes a
member trained in a cohort bitwise identical to the same member trained alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .nets import NetSpec


def forward(spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits (K, B, 10) for a shared input batch `x` (B, ...) and stacked weights (K, ...)."""
    k = weights[0].shape[0]
    layers = spec.layers
    n = len(layers)
    h: torch.Tensor | list[torch.Tensor]
    if spec.is_conv:
        members = []
        for m in range(k):
            hm = x
            for layer, w, b in zip(layers, weights, biases):
                if layer.kind != "conv":
                    break
                hm = F.relu(F.conv2d(hm, w[m], b[m], padding=1))
                if layer.pool_after:
                    hm = F.max_pool2d(hm, 2)
            members.append(hm.flatten(1))
        h = torch.stack(members)
        first_fc = sum(layer.kind == "conv" for layer in layers)
    else:
        h = x.expand(k, *x.shape)
        first_fc = 0
    for i in range(first_fc, n):
        h = torch.baddbmm(biases[i].unsqueeze(1), h, weights[i])
        if i < n - 1:
            h = F.relu(h)
    return h


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example softmax cross-entropy, (K, B)."""
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.repeat(k), reduction="none").view(k, b)
