"""Experiments: the sweep spec and presets, the experiment-kind registry and its kinds, the jobs.

The built-in kinds register themselves when the registry is first used (`kinds.BUILTIN_KIND_MODULES`;
a new kind: one module, named there).
"""
