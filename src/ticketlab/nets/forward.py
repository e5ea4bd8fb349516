"""The forward pass of a cohort: K networks of one architecture, weights stacked on a member axis.

On the CPU every product of a member (a dense layer's forward, its weight, input and bias gradients)
is its own gemm call, on operands whose every member block starts on a 64-byte boundary (`ALIGN`
floats): the very call the member gets when it trains alone. That is what makes a member trained in
a cohort bitwise identical to the same member trained alone, and it rests on nothing but a gemm
call being deterministic for given shapes, strides, alignment and thread count. Two shortcuts that
looked free did not hold on every host (both measured on an AMD EPYC with torch 2.13's MKL):
- one `bmm` over the member axis: with 16 threads MKL split a batch of 6 or more members
  differently from a batch of two, so a member's forward rounded differently in a cohort;
- operands packed member after member: a (60, 10) block is 2,400 bytes, so every other member's
  block started 32 bytes off a 64-byte line, and MKL's kernels summed it in another order (even
  with one thread; AVX-512 Xeons did not show it). Buffers made by `member_buffer` pad each
  member's block to a multiple of ALIGN floats.
Convolutions run member by member too (a grouped conv would be faster but does not match a lone
network bitwise), and so do whole nets that declare a `member_forward` (ResNets, VGGs: `walk`).
Evaluation on the CPU runs one member at a time, the same way.

A dense layer's backward (`_Affine`, what autograd runs; `fc_grads` runs the same calls) is made of
products too: the weight and input gradients are products with transposed operands, and the bias
gradient, a sum over the batch, is the product of a row of ones with the output gradient. A
`torch.sum` over the batch would not do: with many threads torch splits that reduction across
threads by the size of the whole tensor, so a cohort's split differs from a lone member's.

On a CUDA GPU per-member calls would leave the GPU idle, so there the members run in batched
products, and since the batch count itself picks cuBLAS's kernel (seen on an H100: after 4 steps a
member's weights differed between a cohort of 13 and the member alone), every batched product runs
in calls of exactly `CUDA_LANES` members, a call with another count padded with copies of its first
member (`_in_lanes`); the trainer pads an FC cohort itself with filler members, so that its
training step never copies.

`fc_grads` is the training pass of an all-dense network written out by hand: the same kernels as
`forward` for the forward pass and the same kernels autograd runs for the backward pass (`_Affine`'s
products, threshold_backward for the ReLU, the log-softmax/nll backward for the loss), so its
gradients equal autograd's bitwise, without the graph and with every gradient written straight into
caller-provided buffers (views of the trainer's flat gradient buffer).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..nets.specs import BN_EPS, BN_MOMENTUM, NetSpec

# Members per batched product on a CUDA GPU. Part of the numerics on a GPU (the batch count picks
# cuBLAS's kernel), so a constant, not the size of whichever cohort runs: a member's bits must not
# depend on its cohort. 13 lets the criteria figure's cohort (the paper's 13 criteria of one seed and
# round) run unpadded; other cohorts are padded to a multiple of it (`training.state.cohort_lanes`).
CUDA_LANES = 13
# Every member's block of a buffer starts at a multiple of this many floats: 64 bytes, one cache line
# and one AVX-512 vector (module docstring).
ALIGN = 16


def padded_size(n: int) -> int:
    """n rounded up to a multiple of ALIGN."""
    return -(-n // ALIGN) * ALIGN


def member_buffer(k: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised (k, *shape) tensor (dtype and device of `like`) whose every member block is
    contiguous and starts on a 64-byte boundary (torch's CPU allocator aligns to 64 bytes)."""
    n = math.prod(shape)
    inner = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    return torch.empty_strided((k, *shape), (padded_size(n), *inner), dtype=like.dtype, device=like.device)


def aligned_members(t: torch.Tensor) -> torch.Tensor:
    """t (K, ...) if each member block is contiguous and starts on a 64-byte boundary (or t is one
    such block shared by every member: an expanded input), else such a copy. For operands before any
    transposing: a copy is contiguous."""
    return t if _aligned(t) else member_buffer(t.shape[0], tuple(t.shape[1:]), t).copy_(t)


def _aligned(t: torch.Tensor) -> bool:
    block = t[0]
    return (block.is_contiguous() and block.data_ptr() % (ALIGN * t.element_size()) == 0
            and (t.shape[0] == 1 or t.stride(0) == 0 or t.stride(0) % ALIGN == 0))


def _aligned_out(out: torch.Tensor | None, k: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Where a product writes: `out` if its member blocks are aligned, else a fresh `member_buffer`
    (the destination's alignment changes the gemm's rounding too); the caller copies it into `out`."""
    return out if out is not None and _aligned(out) else member_buffer(k, shape, like)


def forward(spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor,
            plain_gemm: bool = False, buffers: list[torch.Tensor] | None = None, training: bool = False) -> torch.Tensor:
    """Logits (K, B, classes) for a shared input batch `x` (B, ...) and stacked tensors (K, ...):
    kernels per layer, the net's other parameters (`NetSpec.params`: biases, BatchNorm scales and
    shifts) and its buffers (`NetSpec.buffers`: BatchNorm running statistics, updated in place
    when `training`; BatchNorm then normalises by the batch's statistics).

    The net's own forward runs: the cohort at once (`NetSpec.forward`), or each member on its own
    (`NetSpec.member_forward`) with the logits stacked into a `member_buffer`.

    plain_gemm (one member, no autograd): dense layers as one plain gemm each, the fastest for a
    lone member, but not the numbers of the batched products (`affine`) a cohort member gets; for
    callers that evaluate every member this way (`trainer.evaluate` on the CPU)."""
    if tuple(x.shape[1:]) != spec.input_shape:  # a data set's images as the net takes them (a view)
        x = x.reshape(x.shape[0], *spec.input_shape)
    if spec.member_forward is None:
        return spec.forward(spec, weights, biases, x, plain_gemm)
    k = weights[0].shape[0]
    buffers = buffers if buffers is not None else []
    if len(buffers) != len(spec.buffers):
        raise ValueError(f"net {spec.name} needs its {len(spec.buffers)} buffers (BatchNorm running statistics)")
    logits = [spec.member_forward(spec, [w[m] for w in weights], [b[m] for b in biases], [r[m] for r in buffers],
                                  x, training) for m in range(k)]
    return aligned_members(torch.stack(logits))


def dense_head(h: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], first: int,
               plain_gemm: bool = False) -> torch.Tensor:
    """Layers `first`.. of a stack of ReLU dense layers (no ReLU after the last) on h (K or expanded,
    B, in): the cohort's products (`affine`), or with plain_gemm one plain gemm per layer for a lone member."""
    n = len(weights)
    for i in range(first, n):
        if plain_gemm:
            h = torch.addmm(biases[i][0], h[0], weights[i][0]).unsqueeze(0)
        else:
            h = affine(h, weights[i], biases[i])
        if i < n - 1:
            h = h.relu_()  # same values as F.relu; _Affine's backward does not need its output
    return h


def walk(spec: NetSpec, weights: list[torch.Tensor], params: list[torch.Tensor], buffers: list[torch.Tensor],
         x: torch.Tensor, training: bool) -> torch.Tensor:
    """One member's logits (B, classes) by the net's declared layers (`specs.Layer` says what each
    does), in order: a `member_forward` for any net its declaration describes (ResNets, VGGs).
    weights, params, buffers: the member's own tensors, in the net's order."""
    index = spec.index
    inputs: dict[str, torch.Tensor] = {}
    h = x
    for i, layer in enumerate(spec.layers):
        if layer.projection:  # runs where the layer that adds it asks for it
            continue
        inputs[layer.name] = h
        z = _layer(spec, i, h, weights, params, buffers, training)
        if layer.residual:
            skip = inputs[layer.residual]
            if layer.shortcut:
                skip = _layer(spec, index[layer.shortcut], skip, weights, params, buffers, training)
            z = z + skip
        if layer.relu:
            z = F.relu(z)
        if layer.pool_after:
            z = F.max_pool2d(z, 2)
        if layer.global_pool:
            z = F.avg_pool2d(z, tuple(z.shape[-2:])).flatten(1)
        h = z
    return h


def _layer(spec: NetSpec, i: int, h: torch.Tensor, weights: list[torch.Tensor], params: list[torch.Tensor],
           buffers: list[torch.Tensor], training: bool) -> torch.Tensor:
    """Layer i's product, bias and BatchNorm on h."""
    layer, index = spec.layers[i], spec.index
    bias = params[index[f"{layer.name}.bias"]] if layer.bias else None
    if layer.kind == "conv":
        z = F.conv2d(h, weights[i], bias, stride=layer.stride, padding=layer.padding)
    else:
        # as nn.Linear holds it, (out, in): a gemm on the transposed layout rounds otherwise, and this
        # way a ticket in plain torch gives the run's numbers bitwise (a copy of one small layer)
        z = F.linear(h.flatten(1), weights[i].t().contiguous(), bias)
    if layer.batchnorm:
        bn = layer.batchnorm
        z = F.batch_norm(z, buffers[index[f"{bn}.running_mean"]], buffers[index[f"{bn}.running_var"]],
                         params[index[f"{bn}.weight"]], params[index[f"{bn}.bias"]], training, BN_MOMENTUM, BN_EPS)
    return z


def affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bias + h @ w for every member: h (K or expanded, B, in), w (K, in, out), b (K, out);
    differentiable through `_Affine`. On the CPU one addmm per member into a `member_buffer`; on a
    CUDA GPU ceil(K / CUDA_LANES) padded batched calls (module docstring)."""
    if torch.is_grad_enabled() and (h.requires_grad or w.requires_grad or b.requires_grad):
        return _Affine.apply(h, w, b)
    return _affine(h, w, b)


def _affine(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if w.is_cuda:
        return _in_lanes(torch.baddbmm, b.unsqueeze(1), h, w)
    h, w = aligned_members(h), aligned_members(w)  # no copy for the trainer's own buffers
    k = w.shape[0]
    out = member_buffer(k, (h.shape[1], w.shape[2]), w)
    _prefill_bias(out, b)
    for m in range(k):
        out[m].addmm_(h[m], w[m])
    return out


def _prefill_bias(out: torch.Tensor, b: torch.Tensor) -> None:
    # Every member's bias in one copy (exact); each member's gemm then adds its product to it (beta 1):
    # the bits of addmm(b, h, w), which copies the bias itself, 13 slow broadcast copies a layer.
    out.copy_(b.unsqueeze(1).expand(out.shape))


def bias_grad(dz: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """The sum over the batch of dz (K, B, out), per member, (K, out): a row of ones times dz, so that a
    member's sum is the same product whatever the cohort and the thread count (see the module docstring)."""
    k, b, width = dz.shape
    if dz.is_cuda:
        g = product(dz.new_ones((k, 1, b)), dz).squeeze(1)  # contiguous: expanded ones cost 3x more
        return g if out is None else out.copy_(g)
    target = _aligned_out(out, k, (width,), dz)
    ones = dz.new_ones((1, b))
    for m in range(k):
        torch.mm(ones, dz[m], out=target[m].unsqueeze(0))
    return target if out is None or target is out else out.copy_(target)


class _Affine(torch.autograd.Function):
    """`affine` under autograd, its backward made of `product`s (the calls `fc_grads` makes)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not w.is_cuda:
            h, w = aligned_members(h), aligned_members(w)  # what _affine multiplies, and so the backward
        ctx.save_for_backward(h, w)
        out = _affine(h, w, b)
        # a padded CUDA call's output is a view of its lanes; callers apply ReLU in place, which
        # autograd refuses on a view
        return out.clone() if out._is_view() else out

    @staticmethod
    def backward(ctx, dz: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w = ctx.saved_tensors
        dz = dz if dz.is_cuda else aligned_members(dz)
        dh = product(dz, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        dw = product(h.transpose(1, 2), dz) if ctx.needs_input_grad[1] else None
        db = bias_grad(dz) if ctx.needs_input_grad[2] else None
        return dh, dw, db


def product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b for every member, a (K, M, N), b (K, N, P), without autograd: on the CPU one mm per
    member (into a `member_buffer` unless `out` is given; operands' member blocks 64-byte aligned,
    as `aligned_members` makes them); on a CUDA GPU in calls of CUDA_LANES members (module docstring)."""
    if a.is_cuda:
        return _in_lanes(torch.bmm, a, b, out=out)
    k = max(a.shape[0], b.shape[0])
    target = _aligned_out(out, k, (a.shape[1], b.shape[2]), b)
    for m in range(k):
        torch.mm(a[m], b[m], out=target[m])
    return target if out is None or target is out else out.copy_(target)


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


class FCPass:
    """The training pass of an all-dense cohort on the CPU (`fc_grads`), with every per-member view
    and intermediate buffer made once: a step's hundreds of per-member calls would otherwise spend
    as long making views as some of them spend multiplying. The same calls on the same aligned
    blocks as `fc_grads`, so the same bits. Holds views of the given tensors: build it once per
    cohort state and batch size."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], grad_weights: list[torch.Tensor],
                 grad_biases: list[torch.Tensor], batch: int, members: list[int] | None = None):
        """members: the members it trains (default all); the others' gradients are left alone (the
        trainer's sparse members, `nets.sparse`). A member's calls are the same either way."""
        for t in (*weights, *grad_weights, *grad_biases):
            if not _aligned(t):
                raise ValueError("FCPass needs parameter and gradient tensors whose member blocks are 64-byte aligned")
        chosen = list(range(weights[0].shape[0])) if members is None else list(members)
        k = self.k = len(chosen)
        self.batch = batch
        self.biases = biases
        self._bias_rows = None if members is None else torch.tensor(chosen, device=weights[0].device)
        self.w = [[w[m] for m in chosen] for w in weights]
        self.wt = [[w[m].t() for m in chosen] for w in weights]
        self.gw = [[g[m] for m in chosen] for g in grad_weights]
        self.gb = [[g[m].unsqueeze(0) for m in chosen] for g in grad_biases]
        self.h = [member_buffer(k, (batch, w.shape[2]), w) for w in weights]  # each layer's output
        self.hv = [[h[m] for m in range(k)] for h in self.h]
        self.ht = [[h[m].t() for m in range(k)] for h in self.h]
        self.dz = [member_buffer(k, (batch, w.shape[2]), w) for w in weights]  # d loss / d each layer's output
        self.dzv = [[d[m] for m in range(k)] for d in self.dz]
        self.ones = weights[0].new_ones((1, batch))

    @torch.no_grad()
    def grads(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Gradients of the sum of member mean losses on the batch (x, y), into the gradient tensors."""
        n, k = len(self.w), self.k
        for i in range(n):
            b = self.biases[i] if self._bias_rows is None else self.biases[i].index_select(0, self._bias_rows)
            _prefill_bias(self.h[i], b)
            for m in range(k):
                self.hv[i][m].addmm_(x if i == 0 else self.hv[i - 1][m], self.w[i][m])
            if i < n - 1:
                self.h[i].relu_()
        self.dz[n - 1].copy_(loss_grad(self.h[n - 1], y))
        xt = x.t()
        for i in range(n - 1, -1, -1):
            dz = self.dzv[i]
            for m in range(k):
                torch.mm(xt if i == 0 else self.ht[i - 1][m], dz[m], out=self.gw[i][m])
                torch.mm(self.ones, dz[m], out=self.gb[i][m])
            if i > 0:
                for m in range(k):
                    torch.mm(dz[m], self.wt[i][m], out=self.dzv[i - 1][m])
                # ReLU's backward, on its output, in place
                torch.ops.aten.threshold_backward.grad_input(self.dz[i - 1], self.h[i - 1], 0, grad_input=self.dz[i - 1])


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
    if not dz.is_cuda:
        dz = aligned_members(dz)
    for i in range(n - 1, -1, -1):
        # _Affine's backward
        product(inputs[i].transpose(1, 2), dz, out=grad_weights[i])
        bias_grad(dz, out=grad_biases[i])
        if i > 0:
            dh = product(dz, weights[i].transpose(1, 2))
            # ReLU's backward, on its output, in place: dh is a fresh buffer with aligned member blocks
            dz = torch.ops.aten.threshold_backward.grad_input(dh, inputs[i], 0, grad_input=dh)
