"""ticketlab: reproducible experiments of Deconstructing Lottery Tickets (Zhou et al., NeurIPS 2019)."""
from __future__ import annotations

from .pruning.prune import prune_layer, pruning_schedule

__version__ = "0.1.0"

__all__ = ["__version__", "prune_layer", "pruning_schedule"]
