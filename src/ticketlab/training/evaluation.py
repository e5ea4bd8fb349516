"""Evaluating every member of a cohort on a whole set: loss and accuracy, member by member."""
from __future__ import annotations

import torch

from ..core.numerics import cuda_float32
from ..nets.forward import CUDA_LANES, aligned_members, forward, member_losses
from ..nets.sparse import SparseMembers
from ..nets.specs import NetSpec


def eval_chunk(spec: NetSpec) -> int:
    """Examples per evaluation batch, as the net declares it (FC: the whole val set at once; conv
    nets 250). Independent of the cohort size: a member's loss is a sum over chunks, and a different
    chunking would round differently."""
    return spec.eval_chunk


@torch.no_grad()
def evaluate(
    spec: NetSpec, weights: list[torch.Tensor], biases: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
    members: list[int] | None = None, per_member: bool | None = None, sparse: SparseMembers | None = None,
    buffers: list[torch.Tensor] | None = None,
) -> tuple[list[float], list[float]]:
    """Mean cross-entropy and accuracy over a whole set of each member in `members` (default: all).

    per_member (the default on the CPU, and for nets other than dense stacks everywhere): one member at a time, a plain
    product per dense layer; on the CPU its activations stay in cache from layer to layer (20% faster
    than layer by layer across the cohort for FC). Otherwise the members together, one batched
    product per layer: on the CPU all of them; on a GPU (the FC default: a fifth of the launches) in
    groups of exactly CUDA_LANES members, a short group padded with copies of its first member, so
    that every call, reductions included, has the same shapes whatever the cohort. Either way a
    member's numbers do not depend on which members are evaluated with it (tested on the CPU and,
    where there is one, a GPU).

    sparse: a trainer's sparse members (`CohortState.sparse`): on the CPU each of them evaluates
    through the kernels it trains with (`SparseMembers.logits`), from its own compressed parameters
    (per_member is then the CPU default whatever is asked).

    buffers: the members' state buffers (`NetSpec.buffers`, BatchNorm's running statistics), stacked
    as the weights; BatchNorm normalises by them (evaluation mode)."""
    chosen = list(range(weights[0].shape[0])) if members is None else list(members)
    lanes = x.device.type == "cuda"
    if lanes:
        cuda_float32()  # also when nothing was trained in this process (a resumed supermask job)
    if per_member is None or (sparse is not None and not lanes):
        per_member = not lanes or not spec.dense_stack  # sparse members evaluate member by member, on their kernels
    if per_member:
        groups = [[m] for m in chosen]
    elif lanes:
        groups = [chosen[i : i + CUDA_LANES] for i in range(0, len(chosen), CUDA_LANES)]
    else:
        groups = [chosen]
    loss_out: list[float] = []
    acc_out: list[float] = []
    n = len(x)
    # the sparse members' logits over the whole set, all at once (on the kernels' threads)
    wanted = [m for m in chosen if sparse is not None and m in sparse.index and per_member and not lanes]
    precomputed = sparse.logits(wanted, x) if wanted else {}
    for group in groups:
        rows = group + [group[0]] * (CUDA_LANES - len(group)) if lanes and not per_member else group
        if len(rows) == 1:
            m = rows[0]
            # a member's weights at the alignment they have in training, whatever stack holds them
            ws, bs = [aligned_members(w[m : m + 1]) for w in weights], [aligned_members(b[m : m + 1]) for b in biases]
            rs = [aligned_members(r[m : m + 1]) for r in buffers or []]
        elif rows == list(range(weights[0].shape[0])) and not lanes:
            ws, bs, rs = weights, biases, list(buffers or [])
        # on a GPU always fresh contiguous copies: a cohort's own views have other strides (padded
        # blocks) than a subset's copies, and the layout is part of what picks cuBLAS's kernel
        else:
            idx = torch.tensor(rows, device=weights[0].device)
            ws, bs = [w.index_select(0, idx) for w in weights], [b.index_select(0, idx) for b in biases]
            rs = [r.index_select(0, idx) for r in buffers or []]
        loss = torch.zeros(len(rows), dtype=torch.float64, device=x.device)
        correct = torch.zeros(len(rows), dtype=torch.int64, device=x.device)
        chunk = eval_chunk(spec)
        for start in range(0, n, chunk):
            xb, yb = x[start : start + chunk], y[start : start + chunk]
            if len(rows) == 1 and rows[0] in precomputed:
                logits = precomputed[rows[0]][start : start + chunk].unsqueeze(0)
            else:
                logits = forward(spec, ws, bs, xb, plain_gemm=per_member, buffers=rs)
            loss += member_losses(logits, yb).sum(1, dtype=torch.float64)
            correct += (logits.argmax(2) == yb).sum(1)
        loss_out += (loss[: len(group)] / n).tolist()
        acc_out += (correct[: len(group)].double() / n).tolist()
    return loss_out, acc_out
