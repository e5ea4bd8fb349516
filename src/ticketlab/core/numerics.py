"""Floating-point modes: on the CPU denormals flushed to zero (FTZ and DAZ), as TensorFlow runs; on a
CUDA GPU full float32 products (no TF32) and deterministic cuDNN kernels (`cuda_float32`).

TensorFlow 1 sets flush-to-zero and denormals-are-zero on every thread of its CPU thread pool, so
the original code never computed with denormal floats on the CPU. Here it also matters for speed:
Adam's first moment of a weight whose input is rarely non-zero (an MNIST border pixel) decays by
0.9 per step into the denormal range, and the CPU handles denormal operands in microcode, tens of
times slower. Measured on a 2-core Xeon, a 13-member FC cohort ran 11.8 ms per step without flushing
and 8.1 ms with it, on the same numbers (a denormal moment moves no weight: its update is far below
a weight's last bit).

The mode is a per-thread CPU register. A thread inherits it from the thread that creates it, so it
should be set before torch starts its intra-op thread pool (the first parallel op): the command
line sets it first thing, so does each sweep worker process, and `train_cohort` sets it and checks.
When the pool already runs (a library user did torch work first), `flush_denormals` sets the mode on
the pool's threads through one OpenMP parallel region (libgomp, as torch's wheels ship it, or a
runtime that exports the same entry point).
`flush_everywhere` tells whether every intra-op thread flushes.
"""
from __future__ import annotations

import ctypes
import os
import warnings

import torch

# Bumped when training computes different bits for the same config (rounding order, float mode), so
# that a store never mixes runs of two numerics under one name (`config.content_hash`). 2: denormals
# flushed to zero, Adam as one call over a flat buffer, lone members as batches of two, evaluation
# member by member. 3: bias gradients as products with a row of ones (`forward.bias_grad`). 4: on the
# CPU every product of a member its own gemm on 64-byte-aligned blocks (`forward`), which a lone
# member and a cohort member get alike on every host (AMD EPYC too), instead of one bmm per layer.
# 5: FC members of low density train sparse (`nets.sparse`: kernels of their own, which round
# otherwise than MKL's gemm); batches gathered through numpy on the CPU (the same values).
NUMERICS = 5

_PROBE_SIZE = 1 << 20  # large enough that every intra-op thread takes part of the multiply


def flush_everywhere() -> bool:
    """Whether every thread of torch's CPU pool flushes denormals: one parallel multiply whose exact
    results are all denormal must give all zeros."""
    tiny = torch.full((_PROBE_SIZE,), 1e-30, dtype=torch.float32)
    return not bool((tiny * 1e-10).any())


_OPENMP_RUNTIMES = ("libgomp", "libiomp5", "libomp")  # the last two also export GOMP_parallel


def _loaded_openmp() -> str | None:
    """Path of the OpenMP runtime loaded in this process (Linux), torch's own copy first, if any."""
    found: list[str] = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)  # the path is the sixth field and may hold spaces
                if len(parts) == 6:
                    path = parts[5].strip()
                    if os.path.basename(path).startswith(_OPENMP_RUNTIMES) and path not in found:
                        found.append(path)
    except OSError:
        return None
    torch_dir = os.path.dirname(torch.__file__)
    found.sort(key=lambda path: not path.startswith(torch_dir))
    return found[0] if found else None


def _flush_on_pool_threads() -> None:
    """Run `torch.set_flush_denormal(True)` on every thread of the running OpenMP team, once; does
    nothing where that cannot be done (the caller checks the result)."""
    path = _loaded_openmp()
    if path is None:
        return
    try:
        parallel = ctypes.CDLL(path).GOMP_parallel
    except (OSError, AttributeError):
        return
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: torch.set_flush_denormal(True))
    parallel(callback, None, ctypes.c_uint(torch.get_num_threads()), ctypes.c_uint(0))


def flush_denormals(check: bool = True) -> bool:
    """Turn on flush-to-zero on this thread (and on intra-op threads created from now on).

    With `check`: if some intra-op thread still does not flush (its pool was started earlier), set
    the mode on the pool's threads too; returns whether every thread now flushes, and warns if not
    (numbers may then differ from a command-line run in denormal-sized values, and training is
    slower). Without `check`: returns whether this CPU supports the mode."""
    supported = torch.set_flush_denormal(True)
    if not check or not supported:
        return supported
    if flush_everywhere():
        return True
    _flush_on_pool_threads()
    if flush_everywhere():
        return True
    warnings.warn(
        "ticketlab: some of torch's CPU threads do not flush denormals to zero and ticketlab could "
        "not set them; call ticketlab.numerics.flush_denormals() before any other torch work, or use "
        "the ticketlab command, for command-line-identical numbers and full speed",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def cuda_float32() -> None:
    """Make CUDA products and convolutions full float32 and deterministic, for this process.

    The paper's networks train in float32. torch lets cuDNN convolutions use TF32 (10-bit mantissa products)
    by default on Ampere and later GPUs, and lets cuDNN pick among kernels by timing them, some of
    which accumulate with atomics; either would make a conv run's bits depend on the GPU's mood
    rather than its config and seed."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
