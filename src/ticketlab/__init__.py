"""ticketlab: reproducible experiments of Deconstructing Lottery Tickets (Zhou et al., NeurIPS 2019).

The layers, lowest first: core, data and nets, pruning and training, store, experiments, execution,
analysis, then the command line (docs/architecture.md). `prune_layer` and `pruning_schedule` are
re-exported here, and `load_ticket` (a ticket file as an nn.Module), loaded on first use so that
`import ticketlab` stays light.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_ticket", "prune_layer", "pruning_schedule"]


def __getattr__(name: str) -> Any:
    if name in ("prune_layer", "pruning_schedule"):
        from .pruning import prune

        return getattr(prune, name)
    if name == "load_ticket":
        from .store.tickets import load_ticket

        return load_ticket
    raise AttributeError(f"module 'ticketlab' has no attribute {name!r}")
