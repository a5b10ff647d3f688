"""Functional ops: one function per op, each adding TensorRT layers to the active network.

Signatures and semantics follow torch.nn.functional / torch; broadcasting follows torch.
"""
from netdef.functional._core import cast, constant, identity, shape_of, to_tensor  # noqa: F401
from netdef.functional.elementwise import add, div, mul, sub  # noqa: F401
from netdef.functional.activation import relu  # noqa: F401
from netdef.functional.conv import conv2d  # noqa: F401
