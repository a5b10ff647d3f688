"""Reference semantics: assertion."""
from __future__ import annotations

from netdef.errors import RunnerError
from netdef.reference.registry import register


@register("ASSERTION")
def assertion(layer, ctx):
    name, message = layer.name, layer.message

    def fn(cond):
        if not bool(cond.all()):
            raise RunnerError(f"assertion layer {name!r} failed: {message}")
        return ()
    return fn
