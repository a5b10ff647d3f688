"""Loops and conditionals: netdef.functional.scan / while_loop / cond / reverse_sequence, executed
by the reference runner from the TensorRT network with dynamic sequence lengths, against torch's
semantics of the same constructs written as plain Python loops (torch's own prototype scan and
while_loop compile their body with dynamo, several seconds per test; tests/test_nn_rnn.py checks
the loop layers against torch.nn.LSTM/GRU/RNN, docs/recurrent.md against torch's scan itself)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree

import netdef
import netdef.reference as R
from netdef import functional as F
from netdef import nn
from netdef.tolerance import assert_close

t = netdef.backend.trt()


def torch_scan(f, init, xs, dim=0, reverse=False, length=None):
    """torch._higher_order_ops.scan's semantics: steps run from the last slice when reversed, ys still
    line up with xs; each y is stacked along dim (along 0 when it has fewer dimensions)."""
    leaves = [x for x in pytree.tree_leaves(xs) if isinstance(x, torch.Tensor)]
    dim = dim % leaves[0].ndim if leaves else dim  # torch normalizes dim once, against the first leaf
    n = leaves[0].shape[dim] if leaves else length
    carry, ys = init, [None] * n
    for i in (range(n - 1, -1, -1) if reverse else range(n)):
        carry, ys[i] = f(carry, pytree.tree_map(lambda x, i=i: x.select(dim, i), xs) if leaves else None)
    if n == 0:
        return carry, None
    flat, spec = zip(*(pytree.tree_flatten(y) for y in ys))
    stacked = [torch.stack(parts, dim if dim <= parts[0].ndim else 0) for parts in zip(*flat)]
    return carry, pytree.tree_unflatten(stacked, spec[0])


def torch_while_loop(cond_fn, body_fn, carried):
    while cond_fn(*carried):
        carried = body_fn(*carried)
    return carried


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scan_body(lib):
    """One body for both libraries: a tuple carry, a dict of slices, two per-step outputs."""
    def body(carry, xs):
        h, total = carry
        h = lib.tanh(h * 0.5 + (xs["a"].unsqueeze(-2) @ xs["w"]).squeeze(-2))
        total = total + xs["b"]
        return (h, total), (h * 2, total.sum())
    return body


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_matches_torch_at_every_length_of_one_dynamic_profile(reverse: bool) -> None:
    def model(a, w, b, h0):
        xs = {"a": a, "w": w, "b": b}
        return F.scan(scan_body(F), (h0, b[:, 0] * 0), xs, dim=1, reverse=reverse)

    net = netdef.trace(model, netdef.Input("a", (2, ("T", 1, 4, 7), 3)), netdef.Input("w", (2, ("T", 1, 4, 7), 3, 3)),
                       netdef.Input("b", (4, ("T", 1, 4, 7))), netdef.Input("h0", (2, 3)))
    kinds = [layer.type.name for layer in net.layers]
    assert kinds.count("ITERATOR") == 3 and kinds.count("RECURRENCE") == 2 and kinds.count("LOOP_OUTPUT") == 4
    for steps in (1, 4, 7):
        g = gen(steps)
        a, w, b, h0 = (torch.randn(2, steps, 3, generator=g), torch.randn(2, steps, 3, 3, generator=g),
                       torch.randn(4, steps, generator=g), torch.randn(2, 3, generator=g))
        (h, total), (ys, sums) = torch_scan(scan_body(torch), (h0, b[:, 0] * 0), {"a": a, "w": w, "b": b},
                                            dim=1, reverse=reverse)
        got = R.run(net, {"a": a, "w": w, "b": b, "h0": h0})
        for name, want in zip(("output0", "output1", "output2", "output3"), (h, total, ys, sums)):
            assert got[name].shape == want.shape, (name, steps)
            assert_close(got[name], want, "float32", what=f"{name} at T={steps}")


def test_counted_scan_without_xs_follows_a_dynamic_length() -> None:
    def step(carry, _):  # torch's scan takes no tensors from outside the body: c0 rides in the carry
        c, k = carry
        return (c * 1.5 + k, k), c

    def model(x, c0):
        return F.scan(step, (c0, c0), None, length=x.size(0))

    net = netdef.trace(model, netdef.Input("x", (("n", 0, 3, 6), 2)), netdef.Input("c0", (2,)))
    c0 = torch.randn(2, generator=gen(9))
    for n in (0, 1, 5):
        (want_c, _), want_ys = torch_scan(step, (c0, c0), None, length=n)
        got = R.run(net, {"x": torch.randn(n, 2), "c0": c0})
        assert got["output2"].shape == (n, 2)
        assert_close(got["output0"], want_c, "float32")
        if n:
            assert_close(got["output2"], want_ys, "float32")


def test_while_loop_matches_torch() -> None:
    def cond_fn(i, v):
        return abs(v).sum() < 50.0

    def body(lib):
        return lambda i, v: (i + 1, v * 1.7 + 0.3)

    net = netdef.trace(lambda v: F.while_loop(cond_fn, body(F), (F.constant(np.array(0, np.int32)), v)),
                       netdef.Input("v", (3,)))
    counts = set()
    for seed in range(4):
        v = torch.randn(3, generator=gen(seed)) * (seed + 1)
        want_i, want_v = torch_while_loop(cond_fn, body(torch), (torch.tensor(0, dtype=torch.int32), v))
        got = R.run(net, {"v": v})
        assert int(got["output0"]) == int(want_i)
        assert_close(got["output1"], want_v, "float32")
        counts.add(int(want_i))
    assert len(counts) > 1  # the inputs take different numbers of iterations


class Gate(nn.Module):
    """cond in a module (its layers are named after the module path), on a condition TensorRT computes
    from a dynamic shape; the true branch is valid only for an even length, so the runner must not run
    it otherwise (TensorRT's conditionals are lazy)."""

    def forward(self, x, y):
        n = x.size(0)
        even = (n - (n // 2) * 2) == 0

        def true_fn(a, b):
            return F.reshape(F.transpose(F.reshape(a, 2, -1), 0, 1), -1) + b, {"n": F.sum(b)}

        def false_fn(a, b):
            return a - b, {"n": F.sum(a)}
        return F.cond(even, true_fn, false_fn, (x, y))


def test_cond_matches_torch_and_runs_only_the_taken_branch() -> None:
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = Gate()

        def forward(self, x, y):
            return self.gate(x, y)

    model = Model()
    net = netdef.trace(model, netdef.Input("x", (("n", 1, 4, 6),)), netdef.Input("y", (("n", 1, 4, 6),)))
    names = [layer.name for layer in net.layers]
    assert {"gate/condition", "gate/cond_input", "gate/cond_input_1", "gate"} <= set(names), names
    for n in (1, 4, 5, 6):
        x, y = torch.randn(n, generator=gen(n)), torch.randn(n, generator=gen(n + 10))
        want = (x.reshape(2, -1).t().reshape(-1) + y, {"n": y.sum()}) if n % 2 == 0 else (x - y, {"n": x.sum()})
        got = R.run(net, {"x": x, "y": y})
        assert_close(got["output0"], want[0], "float32")
        assert_close(got["output1"], want[1]["n"], "float32")
    plan = netdef.build(model, netdef.Input("x", (("n", 1, 4, 6),)), netdef.Input("y", (("n", 1, 4, 6),)),
                        progress=False)
    assert len(plan) > 0


def test_loops_and_conditionals_nest() -> None:
    """A scan whose body holds a cond and an inner scan; a cond whose branch holds a scan."""
    def model(x, flag):
        def outer(c, row):
            inner_c, _ = F.scan(lambda ic, v: (ic + v * c.sum(), ic), c * 0, row)
            c = F.cond(row.sum() > 0, lambda a: a + inner_c, lambda a: a * 0.5, (c,))
            return c, c
        final, ys = F.scan(outer, x[0] * 0 + 1, x)
        side = F.cond(F.sum(flag) > 0, lambda: F.scan(lambda c, v: (c + v, c), x[0] * 0, x)[0], lambda: final)
        return ys, side

    def reference(x, flag):
        c, ys = x[0] * 0 + 1, []
        for row in x:
            ic = c * 0
            for v in row:
                ic = ic + v * c.sum()
            c = c + ic if row.sum() > 0 else c * 0.5
            ys.append(c)
        return torch.stack(ys), (x.sum(0) if flag.sum() > 0 else c)

    net = netdef.trace(model, netdef.Input("x", (("T", 1, 3, 6), 3)), netdef.Input("flag", (1,)))
    for steps, flag in ((1, 1.0), (3, -1.0), (6, 1.0)):
        x, f = torch.randn(steps, 3, generator=gen(steps)) * 0.5, torch.tensor([flag])
        got = R.run(net, {"x": x, "flag": f})
        want = reference(x, f)
        assert_close(got["output0"], want[0], "float32")
        assert_close(got["output1"], want[1], "float32")


@pytest.mark.parametrize("seq_dim,batch_dim", [(0, 1), (1, 0), (2, 0)])
def test_reverse_sequence(seq_dim: int, batch_dim: int) -> None:
    shape = [5, 6, 5]
    shape[batch_dim] = 3
    lengths = [2, 0, 5]

    def expected(x):
        out = x.clone()
        for b, n in enumerate(lengths):
            src = x.select(batch_dim, b).narrow(seq_dim - (seq_dim > batch_dim), 0, n)
            out.select(batch_dim, b).narrow(seq_dim - (seq_dim > batch_dim), 0, n).copy_(
                src.flip(seq_dim - (seq_dim > batch_dim)))
        return out

    x = torch.randn(*shape, generator=gen(7))
    as_list = netdef.trace(lambda v: F.reverse_sequence(v, lengths, seq_dim, batch_dim), netdef.Input("x", x.shape))
    as_input = netdef.trace(lambda v, n: F.reverse_sequence(v, n, seq_dim, batch_dim),
                            netdef.Input("x", x.shape), netdef.Input("n", (3,), "int64"))
    assert_close(R.run(as_list, {"x": x})["output"], expected(x), "float32", atol=0, rtol=0)
    got = R.run(as_input, {"x": x, "n": torch.tensor(lengths)})["output"]
    assert_close(got, expected(x), "float32", atol=0, rtol=0)


def test_control_flow_engine_builds_with_dynamic_length() -> None:
    def model(x):
        _, ys = F.scan(lambda c, v: (F.tanh(c + v), c), x[0], x, reverse=True)
        _, n = F.while_loop(lambda c, k: F.sum(c) < 10.0, lambda c, k: (c + 1.0, k + 1), (x[0], x.size(0)))
        return F.cond(n > 3, lambda: ys * 2, lambda: ys), n

    plan = netdef.build(model, netdef.Input("x", (("T", 1, 8, 64), 16)), dtype="float16", progress=False)
    assert plan.metadata["inputs"][0]["max"] == [64, 16] and len(plan) > 0


# ---- errors: they name the user's line, the layer or the loop -----------------------------------
def test_a_carry_that_changes_shape_is_named_at_the_users_line() -> None:
    def model(x):
        return F.scan(lambda c, v: (F.cat([c, v]), v), x[0], x)  # the carry grows: TensorRT cannot

    with pytest.raises(netdef.TraceError, match=r"scan: next carry\[0\] has shape \(6,\).*init\[0\] has shape "
                                                 r"\(3,\)(.|\n)*test_control_flow.py:\d+: return F.scan"):
        netdef.trace(model, netdef.Input("x", (4, 3)))


def test_scan_normalizes_a_negative_dim_once_against_the_first_leaf() -> None:
    # a (3, 3, 4) and b (3, 3) with dim=-2: torch scans both along dimension 1, not b along its 0
    a, b = torch.randn(3, 3, 4, generator=gen(11)), torch.randn(3, 3, generator=gen(12))

    def body(lib):
        return lambda c, x: (c + x[0].sum(-1) * x[1], x[0] * x[1].sum())

    net = netdef.trace(lambda u, v: F.scan(body(F), v[:, 0], (u, v), dim=-2),
                       netdef.Input("a", a.shape), netdef.Input("b", b.shape))
    got = R.run(net, {"a": a, "b": b})
    carry, ys = torch_scan(body(torch), b[:, 0], (a, b), dim=-2)
    assert_close(got["output0"], carry, "float32")
    assert_close(got["output1"], ys, "float32")


def test_scan_names_the_xs_leaf_without_the_scanned_dimension() -> None:
    with pytest.raises(netdef.TraceError, match=r"scan: xs leaf 1 has shape \(2, 3\), which has no dimension 2"):
        netdef.trace(lambda a, b: F.scan(lambda c, x: (c + x[0].sum(), c), a[0, 0, 0], (a, b), dim=2),
                     netdef.Input("a", (2, 3, 4)), netdef.Input("b", (2, 3)))
    with pytest.raises(netdef.TraceError, match=r"reverse_sequence: dimension 3 is out of range for a tensor of "
                                                 r"rank 2(.|\n)*test_control_flow.py"):
        netdef.trace(lambda x: F.reverse_sequence(x, [1, 2], 3, 0), netdef.Input("x", (2, 3)))


def test_cond_needs_a_one_element_bool() -> None:
    with pytest.raises(netdef.TraceError, match=r"cond: pred must be a bool Tensor, got float32 \(compare it"):
        netdef.trace(lambda x: F.cond(F.sum(x), lambda: x, lambda: -x), netdef.Input("x", (3,)))
    with pytest.raises(netdef.TraceError, match=r"pred must have one element, got shape \(3,\)"):
        netdef.trace(lambda x: F.cond(x > 0, lambda: x, lambda: -x), netdef.Input("x", (3,)))
    with pytest.raises(netdef.TraceError, match=r"false_fn's result\[0\] has shape \(3,\) and dtype int32 but "
                                                 r"true_fn's result\[0\] has shape \(3,\) and dtype float32"):
        netdef.trace(lambda x: F.cond(F.sum(x) > 0, lambda: x, lambda: x.to("int32")), netdef.Input("x", (3,)))


def raw_loop(make_outputs):
    net = netdef.Network()
    n = net.network
    x = n.add_input("x", t.float32, (4, 3))
    loop = n.add_loop()
    loop.name = "L"
    count = n.add_constant((), net.weights(np.array(4, np.int32))).get_output(0)
    loop.add_trip_limit(count, t.TripLimit.COUNT)
    it = loop.add_iterator(x, 0, False)
    it.name = "it"
    for o in make_outputs(net, n, loop, it.get_output(0), count):
        n.mark_output(o)
    return net


def test_values_that_cross_a_loop_boundary_are_named() -> None:
    """A layer that uses an iterator's value is inside the loop (TensorRT's rule, too): it cannot be a
    network output, and the loop's trip count cannot come from inside it."""
    def leak(net, n, loop, xi, count):
        inside = n.add_unary(xi, t.UnaryOperation.EXP)
        inside.name = "inside"
        out = loop.add_loop_output(inside.get_output(0), t.LoopOutput.CONCATENATE, 0)
        out.set_input(1, count)
        return [out.get_output(0), n.add_unary(inside.get_output(0), t.UnaryOperation.ABS).get_output(0)]

    with pytest.raises(netdef.NetdefError, match=r"network output '.*Unary.*' is computed inside loop 'L', where "
                                                 r"TensorRT does not allow a network output"):
        R.run(raw_loop(leak), {"x": torch.randn(4, 3)})

    def count_from_inside(net, n, loop, xi, count):
        rec = loop.add_recurrence(count)
        bad = loop.add_trip_limit(rec.get_output(0), t.TripLimit.COUNT)
        bad.name = "bad_limit"
        rec.set_input(1, rec.get_output(0))
        return [loop.add_loop_output(rec.get_output(0), t.LoopOutput.LAST_VALUE).get_output(0)]

    with pytest.raises(netdef.NetdefError, match=r"layer 'bad_limit' reads tensor '.*Recurrence.*', which is "
                                                 r"computed inside loop 'L'; a value leaves a loop only through"):
        R.run(raw_loop(count_from_inside), {"x": torch.randn(4, 3)})


def test_loop_output_semantics_padding_and_running_past_the_input() -> None:
    """CONCATENATE pads with zeros up to its length input; an iterator past its input's end is an
    error (TensorRT: "iterations beyond the tensor's extent are invalid")."""
    def make(net, n, loop, xi, count):
        longer = n.add_constant((), net.weights(np.array(6, np.int32))).get_output(0)
        out = loop.add_loop_output(xi, t.LoopOutput.CONCATENATE, 1)
        out.set_input(1, longer)
        out.get_output(0).name = "stacked"
        return [out.get_output(0)]

    x = torch.randn(4, 3, generator=gen(8))
    got = R.run(raw_loop(make), {"x": x})["stacked"]
    assert got.shape == (3, 6)
    assert torch.equal(got[:, :4], x.t()) and torch.equal(got[:, 4:], torch.zeros(3, 2))

    def past_end(net, n, loop, xi, count):
        y = n.add_input("y", t.float32, (2, 3))
        it = loop.add_iterator(y, 0, False)
        it.name = "short"
        s = n.add_elementwise(xi, it.get_output(0), t.ElementWiseOperation.SUM).get_output(0)
        out = loop.add_loop_output(s, t.LoopOutput.CONCATENATE, 0)
        out.set_input(1, count)
        return [out.get_output(0)]

    with pytest.raises(netdef.NetdefError, match="iterator 'short' reads slice 2 of axis 0 of a tensor of shape "
                                                 r"\(2, 3\): the loop runs past the end of its input"):
        R.run(raw_loop(past_end), {"x": x, "y": torch.randn(2, 3)})


def test_a_cycle_outside_any_loop_is_named() -> None:
    net = netdef.Network()
    n = net.network
    x = n.add_input("x", t.float32, (3,))
    a = n.add_elementwise(x, x, t.ElementWiseOperation.SUM)
    a.name = "a"
    b = n.add_unary(a.get_output(0), t.UnaryOperation.EXP)
    b.name = "b"
    a.set_input(1, b.get_output(0))
    n.mark_output(b.get_output(0))
    netdef.backend.logger().take_errors()
    with pytest.raises(netdef.NetdefError, match="the network has a cycle through layer '(a|b)'"):
        R.run(net, {"x": torch.randn(3)})
