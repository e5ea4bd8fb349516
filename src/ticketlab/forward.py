"""The forward pass of a cohort: K networks of one architecture, weights stacked on a member axis.

Dense layers use one `bmm` over the member axis, a lone member as a batch of two (`affine`; on a
CUDA GPU, calls of exactly CUDA_LANES members, see below);
convolutions run member by member (a grouped conv would be faster but does not match a lone network
bitwise). Either way, member k's numbers are computed by exactly the same kernels whether the
cohort has 1 or 13 members, which is what makes a member trained in a cohort bitwise identical to
the same member trained alone. (Evaluation on the CPU runs one member at a time, every member the
same way, with a plain gemm per dense layer.)

A dense layer's backward (`_Affine`, what autograd runs; `fc_grads` runs the same calls) is made of
batched products too: the weight and input gradients are products with transposed operands, and the
bias gradient, a sum over the batch, is the product of a row of ones with the output gradient. A
`torch.sum` over the batch would not do: with many threads (16 on a 2-core machine, and so on a
16-core one) torch splits that reduction across threads differently for a cohort than for a lone
member, and the member's bias gradient rounds differently.

On a CUDA GPU the batch count itself picks cuBLAS's kernel (seen on an H100: after 4 steps a
member's weights differed between a cohort of 13 and the member alone, run as a batch of two), and
two kernels round differently. So there every batched product runs in calls of exactly
`CUDA_LANES` members, a call with another count padded with copies of its first member (`_in_lanes`);
the trainer pads an FC cohort itself with filler members, so that its training step never copies.

`fc_grads` is the training pass of an all-dense network written out by hand: the same kernels as
`forward` for the forward pass and the same kernels autograd runs for the backward pass (`_Affine`'s
products, threshold_backward for the ReLU, the log-softmax/nll backward for the loss), so its
gradients equal autograd's bitwise, without the graph and with every gradient written straight into
caller-provided buffers (views of the trainer's flat gradient buffer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .nets import NetSpec

# Members per batched product on a CUDA GPU: the criteria figure's cohort (13 criteria of one seed
# and round), so that its step runs unpadded.
CUDA_LANES = 13


def forward(spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor,
            plain_gemm: bool = False) -> torch.Tensor:
    """Logits (K, B, 10) for a shared input batch `x` (B, ...) and stacked weights (K, ...).

    plain_gemm (one member, no autograd): dense layers as one plain gemm each, the fastest for a
    lone member, but not the numbers of the batched products (`affine`) a cohort member gets; for
    callers that evaluate every member this way (`trainer.evaluate` on the CPU)."""
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
                # in place: the conv output is fresh and conv's backward does not need it
                hm = F.conv2d(hm, w[m], b[m], padding=1).relu_()
                if layer.pool_after:
                    hm = F.max_pool2d(hm, 2)
            members.append(hm.flatten(1))
        h = torch.stack(members)
        first_fc = sum(layer.kind == "conv" for layer in layers)
    else:
        h = x.expand(k, *x.shape)
        first_fc = 0
    for i in range(first_fc, n):
        if plain_gemm:
            h = torch.addmm(biases[i][0], h[0], weights[i][0]).unsqueeze(0)
        else:
            h = affine(h, weights[i], biases[i])
        if i < n - 1:
            h = h.relu_()  # same values as F.relu; _Affine's backward does not need its output
    return h


def affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + h @ w for every member as one batched product: h (K or expanded, B, in), w (K, in, out),
    b (K, out); differentiable through `_Affine`. (On a CUDA GPU: ceil(K / CUDA_LANES) padded calls.)

    A lone member (K = 1) runs as a batch of two, the member twice, the copy's output dropped:
    torch hands a batch of one to a plain gemm, which MKL may split across threads in ways the
    batched kernel does not (seen on AVX-512 with 2 threads: the sum over 784 inputs), rounding
    differently from the product of the same member in a cohort. It costs a lone network a second
    core's worth of matmul; cohorts are unaffected."""
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _Affine.apply(h, w, b)
    return _affine(h, w, b)


def _affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if w.is_cuda:
        return _in_lanes(torch.baddbmm, b.unsqueeze(1), h, w)
    if w.shape[0] > 1:
        return torch.baddbmm(b.unsqueeze(1), h, w)
    return torch.baddbmm(b.unsqueeze(1).expand(2, -1, -1), h.expand(2, -1, -1), w.expand(2, -1, -1))[:1]


def bias_grad(dz: torch.Tensor) -> torch.Tensor:
    """The sum over the batch of dz (K, B, out), per member, (K, out): a row of ones times dz, so that a
    member's sum is the same product whatever the cohort and the thread count (see the module docstring)."""
    k, b, _ = dz.shape
    return product(dz.new_ones((k, 1, b)), dz).squeeze(1)  # contiguous: expanded ones cost 3x more


class _Affine(torch.autograd.Function):
    """`affine` under autograd, its backward made of `product`s (the calls `fc_grads` makes)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        out = _affine(h, w, b)
        # a lone member's output is a view of the batch of two (and a padded call's of its lanes);
        # callers apply ReLU in place, which autograd refuses on a view
        return out.clone() if out._is_view() else out

    @staticmethod
    def backward(ctx, dz: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w = ctx.saved_tensors
        dh = product(dz, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        dw = product(h.transpose(1, 2), dz) if ctx.needs_input_grad[1] else None
        db = bias_grad(dz) if ctx.needs_input_grad[2] else None
        return dh, dw, db


def product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b for every member, a (K, M, N), b (K, N, P), without autograd; a lone member as a batch
    of two, for the reason in `affine`; on a CUDA GPU in calls of CUDA_LANES members (module docstring)."""
    if a.is_cuda:
        return _in_lanes(torch.bmm, a, b, out=out)
    if a.shape[0] > 1:
        return torch.bmm(a, b, out=out)
    twice = torch.bmm(a.expand(2, -1, -1), b.expand(2, -1, -1))[:1]
    return twice if out is None else out.copy_(twice)


def _in_lanes(op, *operands: torch.Tensor, out: torch.Tensor | None = None, lanes: int = CUDA_LANES) -> torch.Tensor:
    """op(*operands, out=...), a batched product whose last two operands are its factors, over the
    member axis (dim 0) in calls of exactly `lanes` members each, the operands padded with copies of
    their first member to a multiple of it; returns the K members' rows (in `out` if given)."""
    k = max(t.shape[0] for t in operands)
    padded = -(-k // lanes) * lanes
    operands = tuple(_pad_members(t, padded) for t in operands)
    full = out if out is not None and padded == k else operands[-1].new_empty(
        (padded, operands[-2].shape[1], operands[-1].shape[2]))
    for c in range(0, padded, lanes):
        op(*(t[c : c + lanes] for t in operands), out=full[c : c + lanes])
    if full is out or padded == k:
        return full
    return full[:k] if out is None else out.copy_(full[:k])


def _pad_members(t: torch.Tensor, k: int) -> torch.Tensor:
    """t with k members, the extra ones copies of member 0, in t's own layout (a transposed view stays
    one: the layout is part of what picks the kernel). An expanded tensor (stride 0) stays expanded."""
    if t.shape[0] == k:
        return t
    if t.stride(0) == 0:
        return t[:1].expand(k, *t.shape[1:])
    extra = t[:1].expand(k - t.shape[0], *t.shape[1:])
    if t.stride(1) == 1 and t.stride(2) != 1:  # a transposed view (its member stride may have gaps)
        return torch.cat([t.transpose(1, 2), extra.transpose(1, 2)]).transpose(1, 2)
    return torch.cat([t, extra])


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example softmax cross-entropy, (K, B)."""
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.repeat(k), reduction="none").view(k, b)


def loss_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dlogits of the sum over members of each member's mean loss, (K, B, C).

    The ops autograd runs for `member_losses(logits, y).mean(1).sum()`, called directly: the
    mean's backward gives 1/B per example, nll_loss's backward puts -1/B at the target,
    log_softmax's backward turns that into softmax/B - onehot/B. Bitwise equal to autograd."""
    k, b, c = logits.shape
    flat = logits.reshape(k * b, c)
    log_probs = torch._log_softmax(flat, 1, False)
    # -1/b rounded from double equals float32's -(1/b) for every b up to 20,000 (checked): no tensor ops for it
    g = torch.zeros_like(flat).scatter_(1, y.repeat(k).unsqueeze(1), -1.0 / b)
    return torch._log_softmax_backward_data(g, log_probs, 1, flat.dtype).view(k, b, c)


@torch.no_grad()
def fc_grads(
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    grad_weights: list[torch.Tensor],
    grad_biases: list[torch.Tensor],
) -> None:
    """Gradients of the sum of member mean losses of a dense stack, written into grad_* (same shapes).

    Equal bitwise to `torch.autograd.grad(member_losses(forward(...), y).mean(1).sum(), params)`
    for an all-fc network: it runs the same ops in the same order on the same operands."""
    k = weights[0].shape[0]
    n = len(weights)
    h = x.expand(k, *x.shape)
    inputs = []
    for i in range(n):
        inputs.append(h)
        h = _affine(h, weights[i], biases[i])
        if i < n - 1:
            h = h.relu_()
    dz = loss_grad(h, y)
    for i in range(n - 1, -1, -1):
        # _Affine's backward
        product(inputs[i].transpose(1, 2), dz, out=grad_weights[i])
        grad_biases[i].copy_(bias_grad(dz))
        if i > 0:
            dh = product(dz, weights[i].transpose(1, 2))
            dz = torch.ops.aten.threshold_backward(dh, inputs[i], 0)  # ReLU's backward, on its output
