"""Functional ops: one function per op, each adding TensorRT layers to the active network.

Signatures and semantics follow torch.nn.functional / torch; broadcasting follows torch.
Each file owns one family of ops and lists them in its __all__.
"""
from netdef.functional._core import cast, constant, identity, shape_of, to_tensor  # noqa: F401
from netdef.functional.elementwise import *  # noqa: F401,F403
from netdef.functional.activation import *  # noqa: F401,F403
from netdef.functional.shape import *  # noqa: F401,F403
from netdef.functional.reduce import *  # noqa: F401,F403
from netdef.functional.linalg import *  # noqa: F401,F403
from netdef.functional.misc import *  # noqa: F401,F403
from netdef.functional.conv import *  # noqa: F401,F403
from netdef.functional.pool import *  # noqa: F401,F403
from netdef.functional.norm import *  # noqa: F401,F403
from netdef.functional.resize import *  # noqa: F401,F403
from netdef.functional.scatter import *  # noqa: F401,F403
from netdef.functional.control import *  # noqa: F401,F403
from netdef.functional.creation import *  # noqa: F401,F403
from netdef.functional.attention import *  # noqa: F401,F403
from netdef.functional.indexing import *  # noqa: F401,F403
from netdef.functional.detection import *  # noqa: F401,F403
