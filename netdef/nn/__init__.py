"""PyTorch-like modules whose forward adds TensorRT layers; torch.nn's names and signatures."""
from netdef.nn.module import IncompatibleKeys, Module, Parameter  # noqa: F401
from netdef.nn.containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from netdef.nn.activation import *  # noqa: F401,F403
from netdef.nn.conv import *  # noqa: F401,F403
from netdef.nn.linear import *  # noqa: F401,F403
from netdef.nn.norm import *  # noqa: F401,F403
from netdef.nn.pooling import *  # noqa: F401,F403
from netdef.nn.misc import *  # noqa: F401,F403
from netdef.nn.rnn import *  # noqa: F401,F403
from netdef.nn.transformer import *  # noqa: F401,F403
from netdef.nn import functional  # noqa: F401,E402  (torch-style `nn.functional`)
