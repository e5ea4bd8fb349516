"""Floating-point modes (public API, kept where it has always been): `flush_denormals()` before any
torch work gives command-line-identical numbers. The code lives in `ticketlab.core.numerics`."""
from .core.numerics import NUMERICS, cuda_float32, flush_denormals, flush_everywhere

__all__ = ["NUMERICS", "cuda_float32", "flush_denormals", "flush_everywhere"]
