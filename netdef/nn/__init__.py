"""PyTorch-like modules whose forward adds TensorRT layers; torch.nn's names and signatures."""
from netdef.nn.module import IncompatibleKeys, Module, Parameter  # noqa: F401
from netdef.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from netdef.nn.activation import ReLU  # noqa: F401
from netdef.nn.conv import Conv2d  # noqa: F401
from netdef.nn import functional  # noqa: F401,E402  (torch-style `nn.functional`)
