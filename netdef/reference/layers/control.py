"""Reference semantics: assertion, loops, conditionals and reverse_sequence.

A loop's or conditional's boundary layers compute little on their own; what they mean
together (a loop runs its body once per iteration, a conditional only the taken branch)
is the schedule in netdef/reference/program.py, over the structure netdef/reference/structure.py
reads. The builders here hold what each boundary layer does with the values the schedule
hands it, following TensorRT's formal loop semantics (docs/reference.md): a RECURRENCE yields
its initial value, then each iteration's next value; an ITERATOR the i-th slice of its input
(the (M-1-i)-th when reversed, M the COUNT trip limit); a LAST_VALUE output the recurrence's
value after the last iteration; a CONCATENATE output the values of iterations 0..n-1 stacked
on its axis and padded with zeros to its length input; REVERSE the same, last iteration first.
"""
from __future__ import annotations

from typing import Sequence

import torch

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


# ---- loops ---------------------------------------------------------------------------------------
@register("TRIP_LIMIT")
def trip_limit(layer, ctx):
    """COUNT: the number of iterations (a 0-d int); WHILE: whether the next iteration runs (0-d bool)."""
    name = layer.name
    if layer.kind.name == "COUNT":
        def count(n: torch.Tensor) -> int:
            if n.numel() != 1:
                raise RunnerError(f"trip limit {name!r} needs a 0-d trip count, got shape {tuple(n.shape)}")
            return int(n.reshape(()).item())
        return count
    return lambda c: bool(c.reshape(()).item())


@register("ITERATOR")
def iterator(layer, ctx):
    """Slice i of the input on `axis` (slice M-1-i when reversed, M the COUNT trip limit)."""
    axis, reverse, name = layer.axis, layer.reverse, layer.name

    def fn(x: torch.Tensor, i: int, count: int | None) -> torch.Tensor:
        a = axis % x.ndim
        j = count - 1 - i if reverse else i
        if not 0 <= j < x.shape[a]:
            raise RunnerError(f"iterator {name!r} reads slice {j} of axis {a} of a tensor of shape "
                              f"{tuple(x.shape)}: the loop runs past the end of its input")
        return x.select(a, j)
    return fn


@register("RECURRENCE")
def recurrence(layer, ctx):
    """The value the recurrence holds: its initial value, then each iteration's next value."""
    return lambda value: value


@register("LOOP_OUTPUT")
def loop_output(layer, ctx):
    kind, axis, name = layer.kind.name, layer.axis, layer.name
    if kind == "LAST_VALUE":
        return lambda final: final

    def fn(values: Sequence[torch.Tensor], length: torch.Tensor, element_shape: tuple) -> torch.Tensor:
        total = int(length.reshape(()).item())
        if total < len(values):
            raise RunnerError(f"loop output {name!r}: the loop ran {len(values)} iterations but the "
                              f"concatenation length is {total}")
        if values:
            out = torch.stack(list(values[::-1] if kind == "REVERSE" else values), axis)
        elif all(d >= 0 for d in element_shape):
            out = torch.zeros((*element_shape[:axis], 0, *element_shape[axis:]), device=ctx.device)
        else:
            raise RunnerError(f"loop output {name!r}: the loop ran no iteration and the shape of its "
                              f"elements {element_shape} is not known before it runs")
        if total > len(values):  # post-padding with zeros up to the declared length
            pad = list(out.shape)
            pad[axis] = total - len(values)
            out = torch.cat([out, out.new_zeros(pad)], axis)
        return out
    return fn


# ---- conditionals ------------------------------------------------------------------------------
@register("CONDITION")
def condition(layer, ctx):
    """True selects the true branch (input 0 of every CONDITIONAL_OUTPUT)."""
    name = layer.name

    def fn(c: torch.Tensor) -> bool:
        if c.numel() != 1:
            raise RunnerError(f"condition {name!r} needs a 0-d bool, got shape {tuple(c.shape)}")
        return bool(c.reshape(()).item())
    return fn


@register("CONDITIONAL_INPUT", "CONDITIONAL_OUTPUT")
def conditional_boundary(layer, ctx):
    """A value entering a conditional, or the taken branch's value leaving it, unchanged."""
    return lambda value: value


# ---- sequences ---------------------------------------------------------------------------------
@register("REVERSE_SEQUENCE")
def reverse_sequence(layer, ctx):
    """Along `sequence_axis`, the first lengths[b] elements of batch entry b in reverse order
    (b on `batch_axis`); the rest stay in place (ONNX ReverseSequence)."""
    batch_axis, seq_axis, name = layer.batch_axis, layer.sequence_axis, layer.name

    def fn(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b_ax, s_ax = batch_axis % x.ndim, seq_axis % x.ndim
        steps, lengths = x.shape[s_ax], lengths.to(torch.int64).reshape(-1)
        if lengths.numel() != x.shape[b_ax]:
            raise RunnerError(f"reverse_sequence {name!r}: {lengths.numel()} lengths for batch axis "
                              f"{b_ax} of size {x.shape[b_ax]}")
        if bool(((lengths < 0) | (lengths > steps)).any()):
            raise RunnerError(f"reverse_sequence {name!r}: lengths {lengths.tolist()} outside [0, {steps}]")
        t = torch.arange(steps, device=x.device)
        idx = torch.where(t[None, :] < lengths[:, None], lengths[:, None] - 1 - t[None, :], t[None, :])
        shape = [1] * x.ndim
        shape[b_ax], shape[s_ax] = x.shape[b_ax], steps
        if b_ax > s_ax:
            idx = idx.t()
        return torch.gather(x, s_ax, idx.reshape(shape).expand(x.shape))
    return fn
