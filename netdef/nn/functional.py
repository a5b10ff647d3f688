"""`netdef.nn.functional` is `netdef.functional`, as torch.nn.functional is for torch."""
from netdef.functional import *  # noqa: F401,F403
