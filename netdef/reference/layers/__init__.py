"""Reference semantics of every TensorRT layer type, one file per family (mirroring
netdef/functional/), all registered in the one registry `netdef.reference.registry.LAYERS`."""
from netdef.reference.layers import (  # noqa: F401
    attention,
    control,
    conv,
    detection,
    elementwise,
    linalg,
    quantize,
    reduce,
    resize,
    shape,
)
from netdef.reference.registry import LAYERS, Context, register  # noqa: F401
