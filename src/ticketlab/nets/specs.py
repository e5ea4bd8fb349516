"""What a network is, as data: its layers (`Layer`), its spec for one image shape (`NetSpec`), the
registry of architectures (`register_net`, `get_net`, `NETS`) and its init.

A network is described by data, never by an nn.Module: the trainer keeps each tensor of all cohort
members stacked along a leading member axis in flat buffers, and the forward pass is plain tensor
code over those stacks. An architecture is one module of this package (`fc`, `conv`, `resnet`,
`vgg`) with a builder `(image_shape, classes) -> NetSpec` that declares its layers for that input,
and its forward; it registers itself with `register_net` at the bottom, and `nets/__init__.py`
imports it. Everything the engine, the store and the command line know about a net comes from
its declaration.

This module and the architecture modules' top levels import no torch: the command line reads the
registry (choices, help) before it decides whether it needs torch at all.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from ..core.errors import TicketlabError

if TYPE_CHECKING:
    import torch

# TF1's truncated_normal keeps draws in [-2 sigma, 2 sigma]; the std of that truncated unit
# normal is this constant, so glorot_normal divides by it to realise the Glorot std.
TRUNCATED_NORMAL_STD = 0.87962566103423978
# PyTorch's BatchNorm defaults, which OpenLTH's nets use
BN_MOMENTUM, BN_EPS = 0.1, 1e-5
LAYER_KINDS = ("conv", "fc")
WEIGHT_INITS = ("glorot_normal", "kaiming_normal")
PARAM_INITS = ("zeros", "ones", "uniform")

ImageShape = tuple[int, int, int]  # one example: (channels, height, width)


@dataclass(frozen=True)
class Layer:
    """One weight layer: a convolution or a dense layer, and what follows it.

    The forward of a layer (`forward.walk`) is: its product (a conv of `kernel` x `kernel`, `stride`,
    `padding`; a dense layer flattens its input first), plus its bias if it has one; its BatchNorm if
    `batchnorm` names one; the input of layer `residual` added (through the projection layer
    `shortcut`, or as it is); ReLU if `relu`; a 2x2 max-pool if `pool_after`; an average over the
    whole feature map if `global_pool`. A `projection` layer (a ResNet's 1x1 shortcut) is not in
    the chain: it runs where a later layer's `shortcut` names it, on that layer's `residual` input.

    Prunable layers lose a fraction of their remaining weights each round (`keep`, protocol §4); a layer
    that is not prunable keeps every weight (keep 1.0) and is left out of densities."""

    name: str
    kind: str  # "conv" or "fc"
    fan_in_channels: int  # conv: C_in; fc: inputs
    out_channels: int  # conv: C_out; fc: outputs
    keep: float  # fraction of remaining weights kept per pruning round (protocol §4)
    pool_after: bool = False
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    bias: bool = True
    batchnorm: str = ""  # the name of the BatchNorm after it ("": none); its parameters are never pruned
    prunable: bool = True
    relu: bool = True
    residual: str = ""
    shortcut: str = ""
    projection: bool = False
    global_pool: bool = False
    init: str = "glorot_normal"  # or "kaiming_normal" (OpenLTH's: N(0, 2 / fan_in), not truncated)

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS or self.init not in WEIGHT_INITS:
            raise ValueError(f"layer {self.name}: kind {self.kind!r} or init {self.init!r} unknown")
        if not self.prunable and self.keep != 1.0:
            raise ValueError(f"layer {self.name} is not prunable, so its keep factor must be 1.0")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of one member's kernel: conv (C_out, C_in, k, k) as torch wants; fc (in, out)."""
        if self.kind == "conv":
            return (self.out_channels, self.fan_in_channels, self.kernel, self.kernel)
        return (self.fan_in_channels, self.out_channels)

    @property
    def size(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def receptive(self) -> int:
        """Weights per input and output channel: k * k for a conv, 1 for a dense layer."""
        return self.kernel * self.kernel if self.kind == "conv" else 1

    @property
    def fan_in(self) -> int:
        return self.receptive * self.fan_in_channels

    @property
    def glorot_std(self) -> float:
        """sqrt(2 / (fan_in + fan_out)); for a conv both fans include the k x k receptive field."""
        k = self.receptive
        return math.sqrt(2.0 / (k * self.fan_in_channels + k * self.out_channels))

    def describe(self) -> dict[str, Any]:
        """The layer as JSON-ready data (a ticket's metadata)."""
        return {"name": self.name, "kind": self.kind, "in": self.fan_in_channels, "out": self.out_channels,
                "pool_after": self.pool_after, "kernel": self.kernel, "stride": self.stride, "padding": self.padding,
                "bias": self.bias, "batchnorm": self.batchnorm, "prunable": self.prunable, "relu": self.relu,
                "residual": self.residual, "shortcut": self.shortcut, "projection": self.projection,
                "global_pool": self.global_pool}


@dataclass(frozen=True)
class TensorSpec:
    """A net's tensor other than a kernel: a trainable parameter (bias, BatchNorm scale or shift) or a
    state buffer (BatchNorm running statistics), with its start value."""

    name: str  # as torch's state_dict names it, e.g. "fc1.bias", "blocks.0.bn1.running_var"
    shape: tuple[int, ...]
    init: str = "zeros"  # "zeros", "ones", or "uniform" (U[0, 1): OpenLTH's BatchNorm scales)


# (spec, weights, biases, x, plain_gemm) -> logits (K, B, classes): a whole cohort at once
CohortForward = Callable[..., "torch.Tensor"]
# (spec, weights, params, buffers, x, training) -> logits (B, classes): one member's tensors
MemberForward = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class NetSpec:
    """A network built for one image shape and class count, and its training defaults.

    Exactly one of `forward` (the cohort at once) and `member_forward` (one member; the engine runs
    the members one after another and stacks their logits) is given. `dense_stack` declares that
    the net is a plain stack of ReLU dense layers with a bias each, which lets the engine run its FC
    fast paths (the hand-written cohort products, the sparse kernels, CUDA lanes, batched
    evaluation). `eval_chunk`, examples per evaluation batch, is part of the numerics."""

    name: str
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]  # one example as the forward takes it: (784,) or (C, H, W)
    dataset: str  # its default dataset
    learning_rate: float  # default learning rate (TF1 Adam, protocol §3)
    epochs: int  # default epochs
    image_shape: ImageShape = (1, 28, 28)
    classes: int = 10
    forward: CohortForward | None = None
    member_forward: MemberForward | None = None
    dense_stack: bool = False
    eval_chunk: int = 250
    batchnorm_init: str = "uniform"  # start of BatchNorm scales (shifts start at 0)
    title: str = ""  # how figures and tables name it, e.g. "ResNet-20"

    def __post_init__(self) -> None:
        if (self.forward is None) == (self.member_forward is None):
            raise ValueError(f"net {self.name}: give exactly one of forward and member_forward")

    @property
    def prunable_weights(self) -> int:
        """Kernel weights of the prunable layers: what densities are fractions of."""
        return sum(layer.size for layer in self.layers if layer.prunable)

    @property
    def params(self) -> tuple[TensorSpec, ...]:
        """The trainable tensors other than kernels, in layer order: each layer's bias, then its
        BatchNorm's scale and shift. For a net without BatchNorm, one bias per layer."""
        out: list[TensorSpec] = []
        for layer in self.layers:
            if layer.bias:
                out.append(TensorSpec(f"{layer.name}.bias", (layer.out_channels,)))
            if layer.batchnorm:
                out.append(TensorSpec(f"{layer.batchnorm}.weight", (layer.out_channels,), self.batchnorm_init))
                out.append(TensorSpec(f"{layer.batchnorm}.bias", (layer.out_channels,)))
        return tuple(out)

    @property
    def buffers(self) -> tuple[TensorSpec, ...]:
        """State that is not trained by gradients: BatchNorm's running mean and variance."""
        out: list[TensorSpec] = []
        for layer in self.layers:
            if layer.batchnorm:
                out.append(TensorSpec(f"{layer.batchnorm}.running_mean", (layer.out_channels,)))
                out.append(TensorSpec(f"{layer.batchnorm}.running_var", (layer.out_channels,), "ones"))
        return tuple(out)

    @property
    def parameter_count(self) -> int:
        """Every trainable number: kernels, biases, BatchNorm scales and shifts (as torch counts them)."""
        return sum(layer.size for layer in self.layers) + sum(math.prod(t.shape) for t in self.params)

    @property
    def random_param_init(self) -> bool:
        """Whether some parameter other than a kernel starts at a drawn value (so a run keeps it)."""
        return any(t.init == "uniform" for t in self.params)

    def kept_weights(self, masks: list[Any]) -> int:
        """Kept weights of the prunable layers under `masks` (one bool tensor per layer)."""
        return sum(int(m.sum()) for layer, m in zip(self.layers, masks) if layer.prunable)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Position of each named tensor in its list: a layer's kernel among the weights, a
        parameter among the params, a buffer among the buffers."""
        out = {layer.name: i for i, layer in enumerate(self.layers)}
        out.update({t.name: i for i, t in enumerate(self.params)})
        out.update({t.name: i for i, t in enumerate(self.buffers)})
        return out


class DoesNotFit(TicketlabError):
    """A net cannot be built for an image shape (e.g. too small for its pooling); the message says
    why, and `reason` is the why alone (a builder raises it with the reason only)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason if reason is not None else message


# (image_shape, classes) -> NetSpec; raises DoesNotFit(reason) for a shape it cannot take
Builder = Callable[[ImageShape, int], NetSpec]


@dataclass(frozen=True)
class _Entry:
    build: Builder
    image_shape: ImageShape  # its default dataset's
    classes: int


_REGISTRY: dict[str, _Entry] = {}


def register_net(name: str, build: Builder, image_shape: ImageShape, classes: int = 10) -> None:
    """Make `get_net(name, shape, classes)` return `build(shape, classes)`. `image_shape` and
    `classes` are those of the net's default dataset (`NetSpec.dataset`): `get_net(name)` builds for
    them. A name can be registered once; registering it again is a programming error."""
    if name in _REGISTRY:
        raise ValueError(f"net {name!r} is already registered")
    _REGISTRY[name] = _Entry(build, tuple(image_shape), classes)  # type: ignore[arg-type]


def shape_text(shape: tuple[int, ...]) -> str:
    """(1, 28, 28) -> '28x28x1'."""
    c, h, w = shape
    return f"{h}x{w}x{c}"


@functools.lru_cache(maxsize=None)
def _built(name: str, image_shape: ImageShape, classes: int) -> NetSpec:
    try:
        return _REGISTRY[name].build(image_shape, classes)
    except DoesNotFit as e:
        raise DoesNotFit(f"net {name} does not fit {shape_text(image_shape)} images: {e.reason}", e.reason) from None


def get_net(name: str, image_shape: tuple[int, ...] | None = None, classes: int | None = None) -> NetSpec:
    """The spec of a network by name, built for `image_shape` (channels, height, width) and `classes`
    (default: its default dataset's); a one-line error for an unknown name or a shape it cannot take."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise TicketlabError(f"unknown net {name!r}: choose one of {', '.join(_REGISTRY)}")
    shape = entry.image_shape if image_shape is None else tuple(int(d) for d in image_shape)
    return _built(name, shape, entry.classes if classes is None else int(classes))  # type: ignore[arg-type]


class _Nets(Mapping[str, NetSpec]):
    """Name -> the net built for its default dataset, read live from the registry (argparse choices
    and config checks hold this object, so a net registered later shows in them too)."""

    def __getitem__(self, name: str) -> NetSpec:
        if name not in _REGISTRY:
            raise KeyError(name)
        return get_net(name)

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


NETS: Mapping[str, NetSpec] = _Nets()


def net_title(name: str) -> str:
    """How figures name a net ('ResNet-20'); the name itself for one not registered."""
    return get_net(name).title or name if name in _REGISTRY else str(name)


def truncated_normal_(t: "torch.Tensor", std: float, generator: "torch.Generator") -> "torch.Tensor":
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


def init_weights(spec: NetSpec, generator: "torch.Generator") -> list["torch.Tensor"]:
    """One member's kernels, drawn on the CPU so every device agrees: TF1 glorot_normal (protocol §2), or
    OpenLTH's kaiming_normal where a layer declares it."""
    import torch

    out = []
    for layer in spec.layers:
        t = torch.empty(layer.weight_shape)
        if layer.init == "glorot_normal":
            out.append(truncated_normal_(t, layer.glorot_std / TRUNCATED_NORMAL_STD, generator))
        else:  # kaiming_normal, fan_in mode, ReLU's gain: torch.nn.init.kaiming_normal_'s defaults
            out.append(t.normal_(0.0, math.sqrt(2.0 / layer.fan_in), generator=generator))
    return out


def init_params(spec: NetSpec, generator: "torch.Generator") -> list["torch.Tensor"]:
    """One member's other parameters at their start (`NetSpec.params`): biases and BatchNorm shifts
    zero, BatchNorm scales as the net declares (OpenLTH: U[0, 1)). Draws nothing for a net whose
    parameters all start at a constant."""
    import torch

    out = []
    for t in spec.params:
        if t.init == "uniform":
            out.append(torch.rand(t.shape, generator=generator))
        else:
            out.append(torch.zeros(t.shape) if t.init == "zeros" else torch.ones(t.shape))
    return out


def init_buffers(spec: NetSpec) -> list["torch.Tensor"]:
    """One member's state buffers at their start: running means 0, running variances 1 (torch's)."""
    import torch

    return [torch.zeros(t.shape) if t.init == "zeros" else torch.ones(t.shape) for t in spec.buffers]
