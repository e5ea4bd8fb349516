"""Sparse training of low-density FC members: the kept weights in compressed form, and kernels that
do only their share of a dense step's work.

A pruned FC network whose pruned weights are zero (they never move) needs, per layer, a product over
its kept weights only. `SparseMembers` holds the sparse members of a cohort: for every member and
layer its kept weights in compressed sparse column form (by output unit, kept inputs ascending),
with the biases one flat parameter vector per member, its gradient and TF1 Adam moments. They are the
truth while it trains; `write_back` copies them into the trainer's flat parameter buffer
(`training.state.CohortState` does whenever its weights are read): scattering every step's values
there would touch most cache lines of a 14 MB buffer per step, more than the step's own work.

The kernels (numba, compiled for this machine) work on feature-major activations (features, batch),
so every inner loop runs over the contiguous batch:
- forward: z[j, :] = b[j] + sum over the kept i of unit j, ascending, of w[i, j] * h[i, :];
- weight gradient at the kept positions only (a sampled dense-dense product): g = h[i, :] . dz[j, :];
- input gradient (not for the first layer): dh[i, :] = sum over the kept (i, j), j ascending, of
  w[i, j] * dz[j, :], then ReLU's backward;
- loss: softmax cross-entropy's gradient, (softmax - onehot) / batch, per example;
- TF1 Adam over the member's parameter vector.

Numerics. A member's numbers come from one call on one thread, in an order fixed by its mask and
the batch size: the same alone and in any cohort, and on any number of threads. The dot products
(weight and bias gradients) are compiled with reassociation allowed, so that LLVM vectorises them;
the order of their sums is then that of the compiled code, fixed for a machine. They round otherwise
than MKL's gemm: numerics 5 (`core.numerics.NUMERICS`). The worker threads flush denormals to
zero, as torch's do (`core.numerics`).

Which members train sparse is a function of the masks and start weights only (`trains_sparse`):
the member's kept fraction of kernel weights against a per-network threshold (`SPARSE_BELOW`)
measured with `ticketlab bench`, never a timing decision at run time.
"""
from __future__ import annotations

import math
import os
import tempfile
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numba
import numpy as np
import torch
from numba import njit


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _kernel_cache() -> bool:
    """Whether numba may cache the compiled kernels, choosing where first. numba caches beside this
    file, or in a user-wide folder it picks; in a shared or system install that no user can write
    (and with no writable home) it finds neither and raises at import. Then the kernels go to
    $XDG_CACHE_HOME/ticketlab/numba (or ~/.cache/..., else the temporary folder, per user), and with
    no writable folder at all they are compiled at each start instead of cached. The cache holds
    compiled code only; the numbers are the same either way."""
    if numba.config.CACHE_DIR:  # the user chose (NUMBA_CACHE_DIR)
        return True
    here = Path(__file__).parent
    if os.access(here, os.W_OK) and _writable_folder(here / "__pycache__"):
        return True
    home_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for folder in (Path(home_cache) / "ticketlab" / "numba", Path(tempfile.gettempdir()) / f"ticketlab-numba-{uid}"):
        if _writable_folder(folder):
            numba.config.CACHE_DIR = str(folder)  # read when each kernel below is decorated
            return True
    return False


_CACHE = _kernel_cache()

# Kernel shapes of a network -> the density (kept fraction of all its kernel weights) below which a
# member trains sparse. Measured on a 2-core AMD EPYC (torch 2.13.0 CPU, numba 0.68.1), the 13-member
# cohort step with every member sparse against every member dense (the step `ticketlab bench` times
# at the paper's densities), interleaved blocks: sparse/dense speed 0.61x at 51%, 0.74x at 41%, 0.95x at
# 33%, 1.09x at 26%, 1.9x at 17%, 4.3x at 7%. Networks not listed always train dense.
SPARSE_BELOW: dict[tuple[tuple[int, int], ...], float] = {
    ((784, 300), (300, 100), (100, 10)): 0.30,
}

_DOT = {"reassoc", "nsz", "contract"}  # vectorised sums: their order is the compiled code's
_AXPY = {"contract"}  # fused multiply-adds, each output a sum in the written order


def density_of(masks: Sequence[torch.Tensor]) -> float:
    """The kept fraction of a member's kernel weights."""
    return sum(float(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def trains_sparse(weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None,
                  below: dict[tuple[tuple[int, int], ...], float] | None = None) -> bool:
    """Whether a member with these start kernels and masks trains sparse: its network is listed in
    `SPARSE_BELOW` (or `below`), its density is below the threshold, and its pruned weights are zero
    (a mask-0 action that keeps them at other values trains dense)."""
    if masks is None or any(w.dim() != 2 for w in weights):
        return False
    shapes = tuple((int(w.shape[0]), int(w.shape[1])) for w in weights)
    threshold = (SPARSE_BELOW if below is None else below).get(shapes, 0.0)
    if density_of(masks) >= threshold:
        return False
    return not any(bool(w.masked_select(m.logical_not()).any()) for w, m in zip(weights, masks))


class SparseMembers:
    """The sparse members of a cohort (member indices `members`), trained from compressed kept weights.

    weights, biases, masks: per sparse member, its start kernels (in, out), biases (out,) and bool
    masks. dests: per sparse member, the flat-buffer index of each kernel's first element and each
    bias's (the trainer's `FlatLayout`): where updated values are written back into `flat`, the
    trainer's flat parameter buffer (a CPU float32 tensor). threads: worker threads (members are
    dealt to them round robin; results do not depend on it)."""

    def __init__(self, members: list[int], weights: list[list[torch.Tensor]], biases: list[list[torch.Tensor]],
                 masks: list[list[torch.Tensor]], dests: list[tuple[list[int], list[int]]], flat: torch.Tensor,
                 learning_rate: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 threads: int = 1):
        self.members = members
        self.index = {m: s for s, m in enumerate(members)}
        n_layers = len(weights[0])
        self.out_sizes = np.array([int(w.shape[1]) for w in weights[0]], dtype=np.int64)
        self.in_size = int(weights[0][0].shape[0])
        s_count = len(members)
        cols, rows, values, dest = [], [], [], []
        self.col_off = np.zeros((s_count, n_layers), dtype=np.int64)
        self.w_off = np.zeros((s_count, n_layers), dtype=np.int64)
        self.b_off = np.zeros((s_count, n_layers), dtype=np.int64)
        self.p_off = np.zeros(s_count + 1, dtype=np.int64)
        at = c_at = 0
        for s in range(s_count):
            self.p_off[s] = at
            kernel_dest, bias_dest = dests[s]
            for i in range(n_layers):
                w = weights[s][i].detach().to("cpu", torch.float32)
                keep = masks[s][i].to("cpu", torch.bool)
                fan_in, fan_out = w.shape
                pos = np.flatnonzero(keep.t().contiguous().numpy().reshape(-1))  # by output unit, then input
                r, j = pos % fan_in, pos // fan_in
                c = np.zeros(fan_out + 1, dtype=np.int64)
                np.cumsum(np.bincount(j, minlength=fan_out), out=c[1:])
                self.col_off[s, i], self.w_off[s, i] = c_at, at
                cols.append(c)
                rows.append(r.astype(np.int32))
                flat_pos = r * fan_out + j
                values.append(w.numpy().reshape(-1)[flat_pos])
                dest.append(kernel_dest[i] + flat_pos)
                at += len(pos)
                c_at += fan_out + 1
            for i in range(n_layers):
                b = biases[s][i].detach().to("cpu", torch.float32).numpy()
                self.b_off[s, i] = at
                rows.append(np.zeros(len(b), dtype=np.int32))  # rows stays aligned with the parameters
                values.append(b.copy())
                dest.append(bias_dest[i] + np.arange(len(b)))
                at += len(b)
        self.p_off[s_count] = at
        self.cols = np.concatenate(cols)
        self.rows = np.concatenate(rows)
        self.params = np.concatenate(values).astype(np.float32)
        self.dest = np.concatenate(dest).astype(np.int64)
        self.grads = np.zeros_like(self.params)
        self.exp_avg = np.zeros_like(self.params)
        self.exp_avg_sq = np.zeros_like(self.params)
        self.learning_rate, self.betas, self.eps = learning_rate, betas, eps
        self.flat = flat.numpy()
        self._dirty = False
        self._eval_cache: list[tuple[torch.Tensor, int, list[tuple[int, np.ndarray]]]] = []
        self.threads = max(1, min(threads, s_count))
        self._scratch: dict[tuple[int, int], tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        if self.threads > 1:
            self._get_pool()

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ticketlab-sparse",
                                            initializer=torch.set_flush_denormal, initargs=(True,))
            weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    @property
    def nnz(self) -> int:
        """Kept kernel weights of all sparse members."""
        return sum(int(self.cols[self.col_off[s, i] + self.out_sizes[i]])
                   for s in range(len(self.members)) for i in range(len(self.out_sizes)))

    def _buffers(self, thread: int, batch: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        key = (thread, batch)
        if key not in self._scratch:
            self._scratch[key] = (tuple(np.zeros((int(o), batch), np.float32) for o in self.out_sizes),
                                  tuple(np.zeros((int(o), batch), np.float32) for o in self.out_sizes))
        return self._scratch[key]

    def _run(self, work, count: int) -> None:
        """work(thread, share) for shares of range(count) (the sparse members, or a subset's positions),
        dealt round robin to the threads, waiting for all: on this thread when there is one share
        and this thread flushes denormals as the pool's do (else on a one-thread pool: a member's
        numbers must not depend on its caller's float mode)."""
        threads = max(1, min(self.threads, count))
        shares = [np.arange(t, count, threads, dtype=np.int64) for t in range(threads)]
        if threads == 1 and _flushes():
            work(0, shares[0])
            return
        futures = [self._get_pool().submit(work, t, share) for t, share in enumerate(shares)]
        for f in futures:
            f.result()

    @torch.no_grad()
    def grads_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Gradients of each sparse member's mean loss on the batch (x (B, in), y (B,)) into `grads`."""
        xt = np.ascontiguousarray(x.numpy().T)
        labels = y.numpy().astype(np.int64)
        batch = len(labels)
        if batch and (labels.min() < 0 or labels.max() >= self.out_sizes[-1]):
            raise ValueError(f"labels must lie in [0, {int(self.out_sizes[-1])}); got {labels.min()} to {labels.max()}")

        def work(t: int, share: np.ndarray) -> None:
            acts, dacts = self._buffers(t, batch)
            _grads(xt, labels, share, self.out_sizes, self.col_off, self.w_off, self.b_off, self.cols,
                   self.rows, self.params, self.grads, acts, dacts)

        self._run(work, len(self.members))

    def write_back(self) -> None:
        """Copy every sparse member's current parameters into `flat`, if they moved since the last copy."""
        if self._dirty:
            self.flat[self.dest] = self.params
            self._dirty = False

    def update(self, iteration: int) -> None:
        """TF1 Adam (protocol §3) on every sparse member's parameters (`write_back` puts them into `flat`)."""
        self._dirty = True
        (beta1, beta2), eps = self.betas, self.eps
        lr_t = self.learning_rate * math.sqrt(1 - beta2**iteration) / (1 - beta1**iteration)
        f = np.float32

        def work(t: int, share: np.ndarray) -> None:
            _adam(share, self.p_off, self.params, self.grads, self.exp_avg, self.exp_avg_sq,
                  f(beta1), f(beta2), f(lr_t), f(eps))

        self._run(work, len(self.members))

    @torch.no_grad()
    def logits(self, members: list[int], x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Logits (B, classes) of each cohort member in `members` (sparse ones) for inputs x (B, in),
        through the training kernels, in blocks of `EVAL_BLOCK` examples (an example's logits do not
        depend on its block), the members dealt to the worker threads."""
        blocks = self._eval_blocks(x)
        rows = [self.index[m] for m in members]
        out = {m: np.empty((int(self.out_sizes[-1]), len(x)), np.float32) for m in members}

        def work(t: int, share: np.ndarray) -> None:
            for j in share:
                s, dest = rows[j], out[members[j]]
                for start, xt in blocks:
                    acts, _ = self._buffers(t, xt.shape[1])
                    _forward(xt, s, self.out_sizes, self.col_off, self.w_off, self.b_off, self.cols, self.rows,
                             self.params, acts)
                    dest[:, start : start + xt.shape[1]] = acts[-1]

        self._run(work, len(members))
        return {m: torch.from_numpy(a).t() for m, a in out.items()}

    def _eval_blocks(self, x: torch.Tensor) -> list[tuple[int, np.ndarray]]:
        # every member of an evaluation reads the same set, and training evaluates the same two or
        # three sets again and again: each transposed once, found again by identity (the cache holds
        # the tensor, so its memory is not reused) and version (in-place writes bump it)
        for held, version, blocks in self._eval_cache:
            if held is x and version == x._version:
                return blocks
        if len(self._eval_cache) >= 3:
            self._eval_cache.pop(0)
        xt_all = x.numpy().T
        blocks = [(start, np.ascontiguousarray(xt_all[:, start : start + EVAL_BLOCK]))
                  for start in range(0, len(x), EVAL_BLOCK)]
        self._eval_cache.append((x, x._version, blocks))
        return blocks


@njit(cache=_CACHE, nogil=True)
def _denormal_product(a, b):  # pragma: no cover - compiled
    return a * b


def _flushes() -> bool:
    """Whether this thread flushes denormals to zero (as `train_cohort` and the pool's threads do)."""
    return _denormal_product(np.float32(1e-30), np.float32(1e-10)) == 0


EVAL_BLOCK = 250  # examples per forward block in evaluation: the activations stay in the L2 cache


@njit(cache=_CACHE, nogil=True, fastmath=_AXPY)
def _layer_forward(hin, cols, rows, w, bias, out, relu):  # pragma: no cover - compiled
    n_out, b = out.shape
    for j in range(n_out):
        bj = bias[j]
        for t in range(b):
            out[j, t] = bj
        k = cols[j]
        end = cols[j + 1]
        # four kept inputs per pass over the output row: a quarter of its loads and stores, the
        # same sum in the same order
        while k + 4 <= end:
            w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
            r0, r1, r2, r3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
            for t in range(b):
                out[j, t] = (((out[j, t] + w0 * hin[r0, t]) + w1 * hin[r1, t]) + w2 * hin[r2, t]) + w3 * hin[r3, t]
            k += 4
        while k < end:
            wk, r = w[k], rows[k]
            for t in range(b):
                out[j, t] += wk * hin[r, t]
            k += 1
        if relu:
            for t in range(b):
                if out[j, t] < 0:
                    out[j, t] = 0


@njit(cache=_CACHE, nogil=True, fastmath=_DOT)
def _layer_weight_grads(hin, dz, cols, rows, g, gb):  # pragma: no cover - compiled
    n_out, b = dz.shape
    for j in range(n_out):
        s = np.float32(0)
        for t in range(b):
            s += dz[j, t]
        gb[j] = s
        for k in range(cols[j], cols[j + 1]):
            r = rows[k]
            s = np.float32(0)
            for t in range(b):
                s += hin[r, t] * dz[j, t]
            g[k] = s


@njit(cache=_CACHE, nogil=True, fastmath=_AXPY)
def _layer_input_grads(dz, cols, rows, w, hin, din):  # pragma: no cover - compiled
    n_out, b = dz.shape
    din[:, :] = 0
    for j in range(n_out):
        for k in range(cols[j], cols[j + 1]):
            wk, r = w[k], rows[k]
            for t in range(b):
                din[r, t] += wk * dz[j, t]
    n_in = din.shape[0]
    for i in range(n_in):  # ReLU's backward, on its output (this layer's input)
        for t in range(b):
            if not hin[i, t] > 0:
                din[i, t] = 0


@njit(cache=_CACHE, nogil=True)
def _loss_grads(z, labels, dz):  # pragma: no cover - compiled
    # d(mean softmax cross-entropy)/dz: (softmax - onehot) / batch, per example (a column)
    c, b = z.shape
    inv = np.float32(1.0 / b)
    for t in range(b):
        mx = z[0, t]
        for i in range(1, c):
            if z[i, t] > mx:
                mx = z[i, t]
        total = np.float32(0)
        for i in range(c):
            e = np.exp(z[i, t] - mx)
            dz[i, t] = e
            total += e
        for i in range(c):
            dz[i, t] = dz[i, t] / total * inv
        dz[labels[t], t] -= inv


@njit(cache=_CACHE, nogil=True)
def _forward(xt, s, out_sizes, col_off, w_off, b_off, cols, rows, params, acts):  # pragma: no cover - compiled
    n = len(out_sizes)
    h = xt
    for i in range(n):
        c0, w0 = col_off[s, i], w_off[s, i]
        cl = cols[c0 : c0 + out_sizes[i] + 1]
        nnz = cl[out_sizes[i]]
        _layer_forward(h, cl, rows[w0 : w0 + nnz], params[w0 : w0 + nnz],
                       params[b_off[s, i] : b_off[s, i] + out_sizes[i]], acts[i], i < n - 1)
        h = acts[i]


@njit(cache=_CACHE, nogil=True)
def _grads(xt, labels, share, out_sizes, col_off, w_off, b_off, cols, rows, params, grads, acts,
           dacts):  # pragma: no cover - compiled
    n = len(out_sizes)
    for s in share:
        _forward(xt, s, out_sizes, col_off, w_off, b_off, cols, rows, params, acts)
        _loss_grads(acts[n - 1], labels, dacts[n - 1])
        for i in range(n - 1, -1, -1):
            c0, w0, b0 = col_off[s, i], w_off[s, i], b_off[s, i]
            cl = cols[c0 : c0 + out_sizes[i] + 1]
            nnz = cl[out_sizes[i]]
            hin = xt if i == 0 else acts[i - 1]
            _layer_weight_grads(hin, dacts[i], cl, rows[w0 : w0 + nnz], grads[w0 : w0 + nnz],
                                grads[b0 : b0 + out_sizes[i]])
            if i > 0:
                _layer_input_grads(dacts[i], cl, rows[w0 : w0 + nnz], params[w0 : w0 + nnz], acts[i - 1],
                                   dacts[i - 1])


@njit(cache=_CACHE, nogil=True)
def _adam(share, p_off, w, g, m, v, beta1, beta2, lr_t, eps):  # pragma: no cover - compiled
    one = np.float32(1)
    for s in share:
        for k in range(p_off[s], p_off[s + 1]):
            gk = g[k]
            mk = beta1 * m[k] + (one - beta1) * gk
            vk = beta2 * v[k] + (one - beta2) * (gk * gk)
            m[k] = mk
            v[k] = vk
            wk = w[k] - lr_t * (mk / (np.sqrt(vk) + eps))
            w[k] = wk
