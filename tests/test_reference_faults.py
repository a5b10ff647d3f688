"""Reference-runner faults found from outside, each pinned by a test that failed before its fix."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import netdef
import netdef.reference as R
from helpers import randn
from netdef import functional as F
from netdef import nn
from netdef.fold import fold_batchnorm
from netdef.reference.registry import round_tf32

t = netdef.backend.trt()


def raw(shapes: dict, make):
    net = netdef.Network()
    ins = [net.network.add_input(k, t.float32, s) for k, s in shapes.items()]
    outs = make(net, net.network, *ins)
    for o in outs if isinstance(outs, (list, tuple)) else [outs]:
        net.network.mark_output(o)
    return net


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def test_folding_in_place_recompiles_the_cached_program(rng):
    model = ConvBN()
    model.bn.running_mean = randn(rng, 4)
    model.bn.running_var = np.abs(randn(rng, 4)) + 0.5
    x = randn(rng, 1, 3, 8, 8)
    net = netdef.trace(model, netdef.Input("x", x.shape))
    conv = net.module_outputs["conv"][0][0]
    before = R.run(net, {"x": x}, all_tensors=True)
    assert fold_batchnorm(net) == 1
    after = R.run(net, {"x": x}, all_tensors=True)
    # the folded convolution now computes what conv + BatchNorm computed; a stale program
    # would still return the unfolded convolution here
    netdef.tolerance.assert_close(after[conv], before[net.module_outputs["bn"][0][0]], "float32")
    assert not torch.allclose(after[conv], before[conv], atol=1e-3)
    netdef.tolerance.assert_close(after["output"], before["output"], "float32")


def test_rewiring_a_layer_recompiles():
    def make(net, n, x):
        a = n.add_activation(x, t.ActivationType.RELU).get_output(0)
        n.add_unary(x, t.UnaryOperation.NEG)
        return n.add_identity(a).get_output(0)

    net = raw({"x": (2, 3)}, make)
    x = torch.randn(2, 3)
    assert torch.equal(R.run(net, {"x": x})[net.network.get_output(0).name], torch.relu(x))
    ident, neg = net.network.get_layer(2), net.network.get_layer(1)
    ident.set_input(0, neg.get_output(0))
    assert torch.equal(R.run(net, {"x": x})[net.network.get_output(0).name], -x)


def test_squeeze_without_axes_removes_every_static_unit_dim():
    net = raw({"x": (2, 1, 3, 1)}, lambda net, n, x: n.add_squeeze(x).get_output(0))
    x = torch.randn(2, 1, 3, 1)
    (out,) = R.run(net, {"x": x}).values()
    assert out.shape == (2, 3) and torch.equal(out, x.reshape(2, 3))


@pytest.mark.parametrize("op", ["MAX", "MIN"])
@pytest.mark.parametrize("k", [1, 3])
def test_topk_ties_take_the_lower_index_first(op, k):
    x = torch.tensor([[1.0, 3.0, 3.0, -2.0, 3.0, -2.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])

    def make(net, n, inp):
        layer = n.add_topk(inp, getattr(t.TopKOperation, op), k, 1 << 1)
        return [layer.get_output(0), layer.get_output(1)]

    values, indices = R.run(raw({"x": (2, 6)}, make), {"x": x}).values()
    sign = -1.0 if op == "MAX" else 1.0
    order = sorted(range(6), key=lambda i: (sign * x[0, i].item(), i))[:k]  # by value, then by index
    assert indices[0].tolist() == order
    assert indices[1].tolist() == list(range(k))  # all equal: lowest indices, in order
    assert values[0].tolist() == [x[0, i].item() for i in order]


def test_unsupported_layer_type_is_named_before_any_graph_check():
    """The error names the layer type the runner lacks even when the graph has problems of its own
    that a later check would report: here a network output computed inside a loop (the loop
    structure check) and a tensor name used twice (the uniqueness check)."""
    assert "RAGGED_SOFTMAX" not in R.registry.LAYERS, "pick a layer type the runner still lacks"

    def make(net, n, x):
        loop = n.add_loop()
        count = n.add_constant((), net.weights(np.array(2, np.int32))).get_output(0)
        loop.add_trip_limit(count, t.TripLimit.COUNT)
        inside = n.add_unary(loop.add_iterator(x, 0, False).get_output(0), t.UnaryOperation.EXP).get_output(0)
        bounds = n.add_constant((2, 1), net.weights(np.array([[3], [1]], np.int32))).get_output(0)
        ragged = n.add_ragged_softmax(x, bounds)
        ragged.name = "ragged"
        twin = n.add_identity(x).get_output(0)
        twin.name = ragged.get_output(0).name
        return [inside, ragged.get_output(0)]

    net = raw({"x": (2, 3)}, make)
    with pytest.raises(netdef.NetdefError, match=r"layer 'ragged' has type RAGGED_SOFTMAX, which the reference "
                                                 r"runner does not support"):
        R.run(net, {"x": torch.randn(2, 3)})


def test_round_tf32_keeps_ten_mantissa_bits_rounding_to_nearest():
    one_ulp = 2.0 ** -10  # TF32's spacing just above 1.0
    x = torch.tensor([1.0, 1.0 + one_ulp / 2, 1.0 + one_ulp / 2 - 2 ** -20, -(1.0 + one_ulp / 2),
                      1.0 + one_ulp * 0.75, float("inf"), 3.0e38])
    got = round_tf32(x)
    assert got.tolist()[:5] == [1.0, 1.0 + one_ulp, 1.0, -(1.0 + one_ulp), 1.0 + one_ulp]
    assert got[5] == float("inf") and torch.isfinite(got[6])
    assert torch.equal(round_tf32(got), got)  # idempotent
    half = torch.randn(100).half()
    assert torch.equal(round_tf32(half.float()), half.float())  # fp16 values are TF32 values


def test_tf32_models_rounded_operands_of_convolution_and_matmul(rng):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x):
            return self.fc(torch_free_flatten(self.conv(x)))

    def torch_free_flatten(y):
        return y.flatten(1)

    model = Net()
    x = torch.from_numpy(randn(rng, 2, 3, 8, 8))
    net = netdef.trace(model, netdef.Input("x", tuple(x.shape)))
    exact = R.run(net, {"x": x})["output"]
    tf32 = R.run(net, {"x": x}, tf32=True)["output"]
    w, b = (torch.from_numpy(model.conv.weight.data), torch.from_numpy(model.conv.bias.data))
    fw, fb = (torch.from_numpy(model.fc.weight.data), torch.from_numpy(model.fc.bias.data))
    y = torch.nn.functional.conv2d(round_tf32(x), round_tf32(w), b)
    want = round_tf32(y.flatten(1)) @ round_tf32(fw).T + fb
    netdef.tolerance.assert_close(tf32, want, "float32", atol=1e-6, rtol=1e-6)
    assert (tf32 - exact).abs().max() > 1e-5  # TF32 is a real precision change ...
    assert (tf32 - exact).abs().max() < 1e-2  # ... of TF32's size
    with pytest.raises(netdef.NetdefError, match="tf32=True models float32 math"):
        R.run(net, {"x": x}, tf32=True, compute_dtype=torch.float64)


@pytest.mark.gpu
def test_cuda_float32_is_ieee_and_the_callers_settings_survive(rng):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    model = nn.Conv2d(64, 64, 3)
    x = torch.from_numpy(randn(rng, 2, 64, 32, 32))
    net = netdef.trace(model, netdef.Input("x", tuple(x.shape)))
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    got = R.run(net, {"x": x}, device="cuda")["output"].cpu()
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before
    want = torch.nn.functional.conv2d(x.double(), torch.from_numpy(model.weight.data).double(),
                                      torch.from_numpy(model.bias.data).double()).float()
    netdef.tolerance.assert_close(got, want, "float32", atol=1e-5, rtol=1e-5)


def test_zero_dimensional_numpy_inputs_stay_scalars():
    """np.ascontiguousarray turns 0-d arrays into shape (1,); a scalar input must stay a scalar."""
    net = netdef.Network()
    x = net.network.add_input("x", t.float32, (3,))
    lo = net.network.add_input("lo", t.float32, ())
    layer = net.network.add_shuffle(lo)
    layer.reshape_dims = (1,)
    out = net.network.add_elementwise(x, layer.get_output(0), t.ElementWiseOperation.MAX).get_output(0)
    net.network.mark_output(out)
    got = R.run(net, {"x": np.array([-1.0, 0.5, 2.0], np.float32), "lo": np.float32(0.25)})
    assert got[out.name].tolist() == [0.25, 0.5, 2.0]


def test_layers_nothing_reads_run_only_for_all_tensors(rng):
    """After folding, the BatchNorm's scale layer reads the folded convolution and feeds nothing:
    TensorRT prunes it, and so does the runner, unless every tensor is asked for."""
    model = ConvBN()
    x = randn(rng, 1, 3, 8, 8)
    net = netdef.trace(model, netdef.Input("x", x.shape))
    bn = net.module_outputs["bn"][0][0]
    fold_batchnorm(net)
    program = R.compile(net)
    assert bn in {st.name for st in program.steps} and bn not in {st.name for st in program.live}
    assert bn not in program({"x": x}) and bn in program({"x": x}, all_tensors=True)


# ---- code review of the reference runner ----------------------------------------------------------
def _fill_linspace(alpha, beta, dtype):
    net = netdef.Network()
    layer = net.network.add_fill((3,), t.FillOperation.LINSPACE, dtype)
    layer.alpha, layer.beta = alpha, beta
    net.network.mark_output(layer.get_output(0))
    (out,) = R.run(net, {}).values()
    return out


@pytest.mark.parametrize("alpha", [123456789, 123456789.0], ids=["int64", "double"])
def test_fill_linspace_integer_output_is_exact(alpha):
    """alpha past 2**24 is not a float32: computed in float32 all three values came out 123456792."""
    step = type(alpha)(7)  # alpha and beta are both int64 or both double (isAlphaBetaInt64)
    out = _fill_linspace(alpha, step, t.int64)
    assert out.dtype == torch.int64
    assert out.tolist() == (np.arange(3, dtype=np.int64) * 7 + 123456789).tolist()
    assert _fill_linspace(alpha, -step, t.int32).tolist() == [123456789, 123456782, 123456775]


def _attention(norm, causal, mask=None, kv_lengths=None):
    net = netdef.Network()
    n = net.network
    q, k, v = (n.add_input(name, t.float32, (1, 2, 4, 8)) for name in "qkv")
    layer = n.add_attention_v2(q, k, v, getattr(t.AttentionNormalizationOp, norm), getattr(t.CausalMaskKind, causal))
    if mask is not None:
        layer.mask = n.add_input("m", mask, (1, 1, 4, 4))
    if kv_lengths:
        layer.key_value_lengths = n.add_input("kv", t.int32, (1,))
    n.mark_output(layer.get_output(0))
    return net


@pytest.mark.parametrize("causal, mask, kv_lengths, named", [
    ("UPPER_LEFT", None, False, "causal mask (UPPER_LEFT)"),
    ("NONE", "bool", False, "bool mask"),
    ("NONE", None, True, "key/value lengths")])
def test_attention_without_softmax_refuses_masks(causal, mask, kv_lengths, named):
    """Without a softmax, masked scores reach the output and TensorRT does not say what they are:
    the runner filled -inf (so -inf/NaN outputs) instead of saying it cannot know."""
    net = _attention("NONE", causal, getattr(t, mask) if mask else None, kv_lengths)
    with pytest.raises(netdef.errors.RunnerError, match=rf"\(ATTENTION_INPUT\): attention with norm_op NONE "
                       rf"and .*{re.escape(named)}.* TensorRT does not document what masked scores become"):
        R.compile(net)


def test_attention_without_softmax_unmasked_and_with_added_mask(rng):
    q, k, v = (torch.from_numpy(randn(rng, 1, 2, 4, 8)) for _ in range(3))
    (out,) = R.run(_attention("NONE", "NONE"), {"q": q, "k": k, "v": v}).values()
    want = (q.double() @ k.double().transpose(-1, -2)) @ v.double()
    netdef.tolerance.assert_close(out, want.float(), "float32")
    m = torch.from_numpy(randn(rng, 1, 1, 4, 4))
    (out,) = R.run(_attention("NONE", "NONE", t.float32), {"q": q, "k": k, "v": v, "m": m}).values()
    want = (q.double() @ k.double().transpose(-1, -2) + m.double()) @ v.double()
    netdef.tolerance.assert_close(out, want.float(), "float32")


@pytest.mark.parametrize("partial", [False, True])
def test_topk_refuses_several_axes(partial, rng):
    """add_topk(x, MAX, 2, 0b110) escaped as ValueError 'too many values to unpack', naming no layer,
    and partial=True (which stops at a layer that cannot run) let it through too. (TensorRT itself
    keeps a softmax to one axis: its axes setter ignores 0b110.)"""
    net = netdef.Network()
    n = net.network
    relu = n.add_activation(n.add_input("x", t.float32, (2, 6, 4)), t.ActivationType.RELU).get_output(0)
    n.mark_output(relu)
    layer = n.add_topk(relu, t.TopKOperation.MAX, 2, 0b110)
    layer.name = "picky"
    n.mark_output(layer.get_output(0))
    x = torch.from_numpy(randn(rng, 2, 6, 4))
    if partial:
        got = R.run(net, {"x": x}, partial=True)
        assert torch.equal(got[relu.name], torch.relu(x)) and got[layer.get_output(0).name] is None
        return
    with pytest.raises(netdef.errors.RunnerError, match=r"layer 'picky' \(TOPK\): axes bitmask 0b110 "
                                                         r"selects axes \[1, 2\].*exactly one axis"):
        R.compile(net)


def test_builder_and_shape_failures_name_the_layer():
    """A RuntimeError 'Could not get tensor shape.' from TensorRT, raised while a builder reads the
    layer (SHUFFLE) or while the runner reads its output shape (ELEMENTWISE), escaped unnamed."""
    net = netdef.Network()
    n = net.network
    x = n.add_input("x", t.float32, (2, 3))
    shuffle = n.add_shuffle(x)
    shuffle.reshape_dims, shuffle.name = (4,), "bad_reshape"
    n.mark_output(shuffle.get_output(0))
    with pytest.raises(netdef.errors.RunnerError, match=r"layer 'bad_reshape' \(SHUFFLE\): RuntimeError: "
                                                         r"Could not get tensor shape"):
        R.compile(net)
    net = netdef.Network()
    n = net.network
    add = n.add_elementwise(n.add_input("x", t.float32, (2, 3)), n.add_input("y", t.float32, (2, 4)),
                            t.ElementWiseOperation.SUM)
    add.name = "bad_add"
    n.mark_output(add.get_output(0))
    with pytest.raises(netdef.errors.RunnerError, match=r"layer 'bad_add' \(ELEMENTWISE\): .*RuntimeError: "
                                                         r"Could not get tensor shape"):
        R.compile(net)
