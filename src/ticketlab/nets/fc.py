"""FC, the dense network of protocol §2 (LeNet-300-100): 300 and 100 ReLU units, then one per class.

Its input is the image flattened, so it takes any data set: 784 inputs for 28x28 grey images
(MNIST, Fashion-MNIST, its default), 3,072 for CIFAR-10. It declares itself a `dense_stack`, which
gives it the engine's FC fast paths: the hand-written cohort products (`forward.FCPass`), the sparse
kernels of low-density members (`sparse`), CUDA lanes and batched evaluation.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .specs import ImageShape, Layer, NetSpec, register_net

if TYPE_CHECKING:
    import torch

# Protocol §3: Adam at 1.2e-3 for 55 epochs of batch 60 (50,380 steps on MNIST)
LEARNING_RATE, EPOCHS = 1.2e-3, 55


def forward(spec: NetSpec, weights: list["torch.Tensor"], biases: list["torch.Tensor"], x: "torch.Tensor",
            plain_gemm: bool) -> "torch.Tensor":
    """The cohort's logits: every member's dense stack on the shared batch (`forward.dense_head`)."""
    from .forward import dense_head

    k = weights[0].shape[0]
    return dense_head(x.expand(k, *x.shape), weights, biases, 0, plain_gemm)


def build(image_shape: ImageShape, classes: int) -> NetSpec:
    inputs = math.prod(image_shape)
    layers = (
        Layer("fc1", "fc", inputs, 300, 0.8),
        Layer("fc2", "fc", 300, 100, 0.8),
        Layer("fc3", "fc", 100, classes, 0.9, relu=False),
    )
    return NetSpec("fc", layers, (inputs,), "mnist", LEARNING_RATE, EPOCHS, image_shape, classes, forward=forward,
                   dense_stack=True, eval_chunk=5000, title="FC")


register_net("fc", build, (1, 28, 28))
