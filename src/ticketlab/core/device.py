"""Choosing the device a run trains on."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import TicketlabError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when available, else CPU; 'cuda' without a GPU is a one-line error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TicketlabError("--device cuda but no CUDA GPU is visible to torch: use --device cpu or install a CUDA build of torch")
        return torch.device(name)
    raise TicketlabError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")


def environment(device: torch.device) -> dict[str, object]:
    """What a result was computed with, recorded beside it."""
    import platform

    import torch

    import numpy

    env: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    from ..core.numerics import NUMERICS, flush_everywhere

    env["numerics"] = NUMERICS
    if device.type == "cpu":
        env["flush_denormals"] = flush_everywhere()
        env["cpu"] = cpu_model()
        env["blas"] = blas()
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what platform says): bits are promised on the
    same machine, so results record which."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas() -> str:
    """The BLAS torch runs its CPU products with, as its build reports it (e.g. 'mkl')."""
    import re

    import torch

    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else "unknown"


def cpu_ticks(count_niced: bool = True) -> tuple[float, float, float] | None:
    """(seconds all cores were busy, seconds this process ran, wall clock), Linux /proc; None elsewhere.
    Without `count_niced`, time spent in niced processes (which yield the cores to anyone who wants
    them) does not count as busy."""
    import os
    import time

    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0) + (0.0 if count_niced else fields[1])
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    t = os.times()
    return (sum(fields) - idle) / ticks, t.user + t.system, time.perf_counter()


def background_between(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> float | None:
    """Cores kept busy by other processes between two `cpu_ticks` snapshots."""
    if a is None or b is None or b[2] <= a[2]:
        return None
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / (b[2] - a[2]))


def background_cpu_load(seconds: float = 0.5, count_niced: bool = True) -> float | None:
    """Cores kept busy by other processes while this one sleeps (Linux /proc; None elsewhere)."""
    import time

    a = cpu_ticks(count_niced)
    time.sleep(seconds)
    return background_between(a, cpu_ticks(count_niced))
