"""Execution: how a sweep's jobs run (executors by name) and the sweep runner above them.

Importing the package registers the built-in executors (a new one: one module, imported here).
"""
from . import cluster, local, pool  # noqa: F401  (they register themselves)
