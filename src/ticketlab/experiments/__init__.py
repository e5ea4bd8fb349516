"""Experiments: the sweep spec and presets, the experiment-kind registry and its kinds, the jobs.

Importing the package registers the built-in kinds (a new kind: one module, imported here).
"""
from . import iterative, learned, supermask  # noqa: F401  (they register themselves)
