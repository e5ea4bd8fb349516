"""Sparse dense-stack layers: a member's layer trained from the compressed form of its kept weights.

A pruned network whose pruned weights are zero (and, held by the trainer, stay zero) does a
density-sized fraction of a dense layer's work. `SparseLayer` holds one member's layer in compressed
sparse column form (kept weights by output unit, ascending input index within a unit) and the
kernels below run the three products of a training step on it, in the feature-major layout
(activations (features, batch)) where every inner loop runs over the batch, contiguous:
- forward: z[j, :] = b[j] + sum over the kept i of column j, ascending, of w[i, j] * h[i, :];
- weight gradient at the kept positions only (a sampled dense-dense product): g[k] = h[i_k, :] . dz[j_k, :];
- input gradient (not for the first layer): dh[i, :] = sum over the kept (i, j), j ascending, of w[i, j] * dz[j, :].

Numerics: every sum has a fixed order given the mask and the batch size, nothing depends on the
cohort or on the machine's load, and each call handles one member: a member's numbers are the same
alone and in any cohort. The kernels are single-threaded (no numba threading layer: its worker
threads would not carry the denormal flushing that `core.numerics` sets on torch's threads), called
from the training thread. The weight and bias gradients are dot products over the batch compiled
with reassociation allowed, so that LLVM vectorises them: that changes the order of the sum, but the
compiled code (and so the order) is fixed for a given machine and batch size. They round otherwise
than MKL's gemm, hence numerics 5 (`core.numerics.NUMERICS`).

Which layers train sparse is a deterministic function of the mask (`trains_sparse`): its density
against a per-shape threshold (`SPARSE_BELOW`) measured with `ticketlab bench`, never a timing
decision at run time, so results never depend on the machine's load.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

# Layer (fan_in, fan_out) -> the density below which a member's layer trains sparse. Measured with
# `ticketlab bench` (one FC member, batch 60, the gradients phase of the step, sparse kernels vs the
# trainer's per-member gemms) on a 2-core Intel Xeon (AVX-512), torch 2.13.0 CPU, numba 0.68.1: see
# `bench.sparse_crossover`. Shapes not listed always train dense.
SPARSE_BELOW: dict[tuple[int, int], float] = {
    (784, 300): 0.3,
    (300, 100): 0.3,
    (100, 10): 0.3,
}


def trains_sparse(mask: torch.Tensor | None, start: torch.Tensor,
                  below: dict[tuple[int, int], float] | None = None) -> bool:
    """Whether a member's dense layer with this mask and start kernel trains sparse: its density is
    below the shape's `SPARSE_BELOW` threshold and its pruned weights are zero (they never move, so
    the compressed form stays exact; a mask-0 action that keeps them at other values trains dense).
    below: another threshold table (the benchmark's dense reference passes {})."""
    if mask is None or start.dim() != 2:
        return False
    threshold = (SPARSE_BELOW if below is None else below).get((int(start.shape[0]), int(start.shape[1])), 0.0)
    density = float(mask.sum()) / mask.numel()
    if density >= threshold:
        return False
    return not bool(start.masked_select(mask.logical_not()).any())


class SparseLayer:
    """One member's (fan_in, fan_out) kernel in compressed sparse column form.

    `cols` (fan_out + 1) delimits each output unit's kept weights, `rows` their input indices
    (ascending), `flat` their positions in the row-major dense kernel; `w` their values (by default a
    fresh array; the trainer passes a view of its compressed parameter buffer)."""

    def __init__(self, mask: torch.Tensor, start: torch.Tensor, w: np.ndarray | None = None):
        fan_in, fan_out = mask.shape
        self.shape = (int(fan_in), int(fan_out))
        kept = mask.t().contiguous().numpy().reshape(-1)  # column-major order: by output unit, then input
        pos = np.flatnonzero(kept)
        self.rows = (pos % fan_in).astype(np.int32)
        cols = (pos // fan_in).astype(np.int64)
        self.flat = (self.rows.astype(np.int64) * fan_out + cols).astype(np.int64)
        self.cols = np.zeros(fan_out + 1, dtype=np.int32)
        np.cumsum(np.bincount(cols, minlength=fan_out), out=self.cols[1:])
        self.nnz = len(pos)
        dense = start.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
        self.w = np.empty(self.nnz, dtype=np.float32) if w is None else w
        self.w[:] = dense[self.flat]

    @property
    def density(self) -> float:
        return self.nnz / (self.shape[0] * self.shape[1])

    def forward_t(self, h_t: np.ndarray, bias: np.ndarray, out_t: np.ndarray, relu: bool) -> None:
        """out_t (fan_out, B) <- bias + (h @ W).T for h_t (fan_in, B), ReLU applied if `relu`."""
        _forward(h_t, self.cols, self.rows, self.w, bias, out_t, relu)


def dense_kernel(layer: SparseLayer) -> torch.Tensor:
    """The (fan_in, fan_out) dense kernel of a sparse layer (zeros at pruned positions)."""
    out = np.zeros(layer.shape[0] * layer.shape[1], dtype=np.float32)
    out[layer.flat] = layer.w
    return torch.from_numpy(out.reshape(layer.shape))


@njit(cache=True)
def _forward(h_t, cols, rows, w, bias, out_t, relu):  # pragma: no cover - compiled
    n_out, b = out_t.shape
    for j in range(n_out):
        z = out_t[j]
        bj = bias[j]
        for t in range(b):
            z[t] = bj
        for k in range(cols[j], cols[j + 1]):
            wk = w[k]
            h = h_t[rows[k]]
            for t in range(b):
                z[t] += wk * h[t]
        if relu:
            for t in range(b):
                if z[t] < 0:
                    z[t] = 0


@njit(cache=True, fastmath={"reassoc", "nsz"})
def _dot(a, c):  # pragma: no cover - compiled
    s = np.float32(0)
    for t in range(a.shape[0]):
        s += a[t] * c[t]
    return s


@njit(cache=True, fastmath={"reassoc", "nsz"})
def _sum(a):  # pragma: no cover - compiled
    s = np.float32(0)
    for t in range(a.shape[0]):
        s += a[t]
    return s


@njit(cache=True)
def _backward(h_t, dz_t, cols, rows, w, g, gb, dh_t, h_prev_t, want_dh):  # pragma: no cover - compiled
    n_out = dz_t.shape[0]
    b = dz_t.shape[1]
    for j in range(n_out):
        d = dz_t[j]
        gb[j] = _sum(d)
        for k in range(cols[j], cols[j + 1]):
            g[k] = _dot(h_t[rows[k]], d)
    if want_dh:
        dh_t[:, :] = 0
        for j in range(n_out):
            d = dz_t[j]
            for k in range(cols[j], cols[j + 1]):
                wk = w[k]
                dh = dh_t[rows[k]]
                for t in range(b):
                    dh[t] += wk * d[t]
        # ReLU's backward, on the previous layer's output: the gradient where it is > 0
        n_in = dh_t.shape[0]
        for i in range(n_in):
            dh = dh_t[i]
            hp = h_prev_t[i]
            for t in range(b):
                if not hp[t] > 0:
                    dh[t] = 0


def backward_t(layer: SparseLayer, h_t: np.ndarray, dz_t: np.ndarray, g: np.ndarray, gb: np.ndarray,
               dh_t: np.ndarray | None, h_prev_t: np.ndarray | None) -> None:
    """Gradients of a sparse layer from dz_t (fan_out, B): the kept weights' into g (nnz), the bias's
    into gb (fan_out) and, if dh_t is given, the input's (fan_in, B), masked by ReLU's backward on
    h_prev_t (the layer's input, a ReLU output)."""
    want = dh_t is not None
    _backward(h_t, dz_t, layer.cols, layer.rows, layer.w, g, gb, dh_t if want else dz_t,
              h_prev_t if want else dz_t, want)


@njit(cache=True)
def _adam(w, g, m, v, flat, dense, beta1, beta2, lr_t, eps):  # pragma: no cover - compiled
    one = np.float32(1)
    for k in range(w.shape[0]):
        gk = g[k]
        mk = beta1 * m[k] + (one - beta1) * gk
        vk = beta2 * v[k] + (one - beta2) * (gk * gk)
        m[k] = mk
        v[k] = vk
        wk = w[k] - lr_t * (mk / (np.sqrt(vk) + eps))
        w[k] = wk
        dense[flat[k]] = wk


def tf1_adam_sparse(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, flat: np.ndarray,
                    dense: np.ndarray, step: int, lr: float, beta1: float, beta2: float, eps: float) -> None:
    """TF1 Adam (SPEC §3) on compressed weights, element by element in float32: m, v updated, w moved,
    and each new value written into `dense` (a flat parameter buffer) at its position `flat`."""
    lr_t = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    f = np.float32
    _adam(w, g, m, v, flat, dense, f(beta1), f(beta2), f(lr_t), f(eps))


def forward_eval(layers: list[SparseLayer | None], weights: list[torch.Tensor], biases: list[torch.Tensor],
                 x: torch.Tensor) -> torch.Tensor:
    """Logits (B, out) of one member for inputs x (B, in): its sparse layers through the sparse
    kernels, the others as one plain gemm each (as `forward(..., plain_gemm=True)`); weights and
    biases are the member's (in, out) kernels and (out,) biases."""
    n = len(layers)
    h = x
    h_t: np.ndarray | None = None  # the feature-major copy of h, when the last layer was sparse
    for i, layer in enumerate(layers):
        relu = i < n - 1
        if layer is None:
            if h_t is not None:
                h = torch.from_numpy(h_t).t()
                h_t = None
            h = torch.addmm(biases[i], h, weights[i])
            if relu:
                h = h.relu_()
        else:
            src = h_t if h_t is not None else h.t().contiguous().numpy()
            out = np.empty((layer.shape[1], src.shape[1]), dtype=np.float32)
            layer.forward_t(src, biases[i].contiguous().numpy(), out, relu)
            h_t = out
    return torch.from_numpy(h_t).t() if h_t is not None else h
