"""The networks of SPEC §2 as data (`specs.py`) and the cohort's forward pass (`forward.py`)."""
from .specs import NETS, Layer, NetSpec, get_net, init_weights

__all__ = ["NETS", "Layer", "NetSpec", "get_net", "init_weights"]
