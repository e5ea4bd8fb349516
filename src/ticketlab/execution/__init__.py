"""Execution: how a sweep's jobs run (executors by name) and the sweep runner above them.

The built-in executors register themselves when first asked for (`base.BUILTIN_EXECUTORS`, the
module of each; a new one: one module, named there), so that the command line lists them without
loading what they run with.
"""
