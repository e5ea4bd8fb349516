"""Networks as plug-ins: the registry and what a net is (`specs.py`), one module per architecture
(`fc`, `conv`, `resnet`, `vgg`), the cohort's forward pass (`forward.py`) and the sparse kernels of
low-density FC members (`sparse.py`). Importing the package registers the built-in architectures."""
# each registers itself, in this order: the order of --net choices and of figures
from . import fc  # noqa: F401, I001
from . import conv  # noqa: F401
from . import resnet  # noqa: F401
from . import vgg  # noqa: F401
from .specs import NETS, Layer, NetSpec, get_net, init_weights, register_net

__all__ = ["NETS", "Layer", "NetSpec", "get_net", "init_weights", "register_net"]
