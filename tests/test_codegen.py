"""netdef.codegen: the raw-API script rebuilds the same network, layer for layer and output for output.

For every shipped model (small inputs), the generated script's `define()` is run on a fresh network
and the result is compared with the netdef network through TensorRT's API only: the same layer types,
names, inputs, outputs (names, dtypes, shapes), every attribute TensorRT exposes, and the same weight
bytes; then the reference runner must give identical outputs for both. The script also runs in an
interpreter that cannot import netdef, and builds a plan for each model there.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from helpers import bare_env
from netdef.models import MODELS, create

import netdef
from netdef import backend, codegen
from netdef.arrays import weights_array
from netdef.inspect import layer_attributes

torch = pytest.importorskip("torch")

# small inputs, so the whole file stays fast; ViT's position embedding fixes 224x224
SHAPES = {"lenet5": (1, 1, 28, 28), "vit_b_16": (1, 3, 224, 224), "crnn": (1, 1, 32, 64),
          "gru_classifier": (2, 7, 40)}


def shape_of(name: str) -> tuple:
    return SHAPES.get(name, (1, 3, 32, 32))


def load_script(path: str):
    spec = importlib.util.spec_from_file_location(f"generated_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_LOADED = []  # the scripts' modules hold the weights TensorRT points to: kept for the session


def rebuild(script_path: str):
    """The network the script defines, on netdef's builder (one TensorRT logger per process)."""
    t = backend.trt()
    module = load_script(script_path)
    _LOADED.append(module)
    network = backend.builder().create_network(1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    module.define(network)
    return module, network


def _value(v):
    """A comparable form of one attribute value: weights by dtype and bytes (empty weights alike),
    loops/conditionals by name, the rest by value."""
    t = backend.trt()
    if isinstance(v, (np.ndarray, t.Weights)):
        arr = weights_array(v)
        return None if arr is None else (str(arr.dtype), arr.shape if arr.ndim > 1 else arr.size, arr.tobytes())
    if isinstance(v, (t.ILoop, t.IIfConditional)):
        return (type(v).__name__, v.name)
    if isinstance(v, t.IAttention):  # the attention's own configuration and inputs
        ins = [None if v.get_input(j) is None else v.get_input(j).name for j in range(v.num_inputs)]
        return (v.name, v.metadata, str(v.norm_op), str(v.causal_kind), v.decomposable, ins,
                str(v.normalization_quantize_to_type), v.get_output(0).name)
    if isinstance(v, float):
        return np.float32(v).tobytes() if np.isfinite(v) else str(v)
    if isinstance(v, t.Dims):
        return tuple(v)
    return str(v)


def differences(a, b) -> list[str]:
    """What differs between two INetworkDefinitions, read through TensorRT's API."""
    out = []
    a, b = getattr(a, "network", a), getattr(b, "network", b)
    for what, n in (("inputs", "num_inputs"), ("outputs", "num_outputs"), ("layers", "num_layers")):
        if getattr(a, n) != getattr(b, n):
            out.append(f"{getattr(a, n)} {what} != {getattr(b, n)}")
    if out:
        return out

    def tensor(x):
        if x is None:
            return None
        for _ in range(2):  # TensorRT's shape query may fail once in some parser-made loops
            try:
                shape = tuple(x.shape)
                break
            except RuntimeError:
                shape = "?"
        return x.name, x.dtype.name, shape
    for i in range(a.num_inputs):
        if tensor(a.get_input(i)) != tensor(b.get_input(i)):
            out.append(f"input {i}: {tensor(a.get_input(i))} != {tensor(b.get_input(i))}")
    for i in range(a.num_outputs):
        if tensor(a.get_output(i)) != tensor(b.get_output(i)):
            out.append(f"output {i}: {tensor(a.get_output(i))} != {tensor(b.get_output(i))}")
    for i in range(a.num_layers):
        la, lb = a.get_layer(i), b.get_layer(i)
        where = f"layer {i} {la.name!r}"
        if (la.type, la.name, la.metadata) != (lb.type, lb.name, lb.metadata):
            out.append(f"{where}: {la.type.name} {la.name!r} != {lb.type.name} {lb.name!r}")
            continue
        ins = [[tensor(layer.get_input(j)) for j in range(layer.num_inputs)] for layer in (la, lb)]
        outs = [[tensor(layer.get_output(j)) for j in range(layer.num_outputs)] for layer in (la, lb)]
        if ins[0] != ins[1]:
            out.append(f"{where}: inputs {ins[0]} != {ins[1]}")
        if outs[0] != outs[1]:
            out.append(f"{where}: outputs {outs[0]} != {outs[1]}")
        attrs = [{k: _value(v) for k, v in layer_attributes(layer).items()} for layer in (la, lb)]
        for k in sorted(set(attrs[0]) | set(attrs[1])):
            if attrs[0].get(k) != attrs[1].get(k):
                show = [str(x.get(k))[:80] for x in attrs]
                out.append(f"{where}: .{k} {show[0]} != {show[1]}")
    return out


def random_vectors(model, seed: int) -> None:
    """Random biases, norm affines and BatchNorm statistics (which start as 0s and 1s), so every
    weight array is distinct; kernels keep their random initial values."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        value = np.asarray(value)
        if value.ndim == 1 and value.dtype.kind == "f":
            value = (rng.standard_normal(value.shape) * 0.1).astype(value.dtype)
            if key.endswith(("running_var", "weight")):
                value = np.abs(value) + 0.5
        state[key] = value
    model.load_state_dict(state)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """model name -> (netdef network, script path): traced once, with random weights (and random
    BatchNorm statistics) so every weight is distinct."""
    tmp = tmp_path_factory.mktemp("codegen")
    cache = {}

    def get(name: str):
        if name not in cache:
            model = create(name)
            random_vectors(model, seed=1)
            net = netdef.trace(model, netdef.Input("x", shape_of(name)))
            path, _ = codegen.python(net, f"{name}.safetensors").save(tmp / f"{name}.py")
            cache[name] = (net, path)
        return cache[name]
    return get


# ---- the script's TensorRT names exist in classic TensorRT too -----------------------------------
API_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tensorrt_api")


def classic_api(version: str) -> dict:
    with open(os.path.join(API_DIR, f"tensorrt-{version}.json")) as f:
        return json.load(f)


def missing_names(source: str, api: dict) -> set[str]:
    """The TensorRT names a generated script uses that `api` (a recorded bindings API,
    tests/data/tensorrt_api) lacks: `trt.X` and `trt.X.Y`, and every attribute or method used on a
    variable whose class follows from the calls that made it (signatures' return types)."""
    classes, module = api["classes"], set(api["module"])
    types = {"network": "INetworkDefinition"}  # define(network)
    missing = set()

    def returns(cls: str, method: str) -> str | None:
        sigs = classes.get(cls, {}).get("signatures", {}).get(method) or []
        m = re.search(r"-> (\w+)$", sigs[0]) if sigs else None
        return m.group(1) if m and m.group(1) in classes else None

    def type_of(node) -> str | None:
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if f.value.id == "trt":
                    return f.attr if f.attr in classes else None
                owner = types.get(f.value.id)
                return returns(owner, f.attr) if owner else None
            if isinstance(f, ast.Name) and f.id == "named":
                return "ITensor"
        if isinstance(node, ast.Name):
            return types.get(node.id)
        return None

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "trt":
            if node.attr not in classes.get(node.value.attr, {}).get("members", ()):
                missing.add(f"{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "trt":
            if node.attr not in module and node.attr not in classes and not node.attr.startswith("__"):
                missing.add(node.attr)
    for node in ast.walk(tree):  # assignments in source order: the variables' classes
        if isinstance(node, ast.Assign):
            t = type_of(node.value)
            for target in node.targets:
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                for name in names:
                    if isinstance(name, ast.Name) and t is not None:
                        types[name.id] = t
        for sub in ast.walk(node) if isinstance(node, (ast.Assign, ast.Expr)) else ():
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id in types:
                cls = types[sub.value.id]
                if sub.attr not in classes.get(cls, {}).get("members", ()):
                    missing.add(f"{cls}.{sub.attr}")
    return missing


@pytest.fixture(scope="module")
def python_without_netdef(tmp_path_factory):
    """An interpreter that sees TensorRT and numpy but cannot import netdef."""
    tmp = tmp_path_factory.mktemp("bare")
    python = bare_env(tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([str(python), "-c", "import netdef"], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0 and "No module named 'netdef'" in res.stderr
    return python


def run_script(python, path, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), str(path), *args], cwd=os.path.dirname(path), env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", list(MODELS))
def test_script_rebuilds_the_same_network(generated, python_without_netdef, name):
    net, path = generated(name)
    engine = path[:-3] + ".engine"
    res = run_script(python_without_netdef, path, "--engine", engine)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert f"built {engine}" in res.stdout and backend.name() in res.stdout
    from netdef.plan import load_plan

    header = load_plan(engine).header
    assert header is not None and header.backend == backend.name()
    os.remove(engine)
    _, network = rebuild(path)
    assert not differences(net, network), "\n".join(differences(net, network)[:20])
    source = open(path).read()
    assert not missing_names(source, classic_api("11.4.0.106"))
    if "add_attention" not in source:  # classic TensorRT 10 has no attention layer
        assert not missing_names(source, classic_api("10.13.3.9"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape_of(name), generator=gen)
    ours, theirs = netdef.reference.run(net, {"x": x}), netdef.reference.run(network, {"x": x})
    for out in net.outputs:
        assert torch.isfinite(ours[out]).all() and ours[out].abs().max() > 0
        assert torch.equal(ours[out], theirs[out]), f"{name}: output {out!r} differs"


# ---- beyond the shipped models: every family of ops, precisions, and networks netdef did not make --------
def _w(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def every_family(x):
    """One network holding every op family netdef emits beyond the shipped models' layers."""
    from netdef import functional as F

    rng = np.random.default_rng(3)
    outs = []
    y = F.conv_transpose2d(x, _w(rng, 3, 4, 3, 3), _w(rng, 4), stride=2, padding=1, output_padding=1)
    y = F.group_norm(y, 2, _w(rng, 4), _w(rng, 4))
    outs.append(F.interpolate(y, size=(5, 7), mode="bilinear", align_corners=False))
    outs.append(F.interpolate(x, scale_factor=2, mode="nearest"))
    outs.append(F.max_pool2d(x, 3, 2, 1, ceil_mode=True))
    outs.append(F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    outs.append(F.adaptive_avg_pool2d(x, (3, 5)))
    flat = x.flatten(1)
    values, indices = F.topk(flat, 5, -1)
    outs += [values, indices]
    outs.append(F.gather(flat, 1, indices))
    outs.append(F.index_select(x, 2, np.array([3, 0, 1], np.int64)))
    outs.append(F.scatter(flat, 1, indices, values * 2))
    outs.append(F.cumsum(x, 3))
    outs.append(F.nonzero(x > 1.0))
    outs.append(F.arange(x.size(3)))
    outs.append(F.einsum("bchw,bchv->bcwv", x, x))
    outs.append(F.embedding(indices, _w(rng, 192, 6)))
    outs.append(F.tril(x))
    outs.append(F.pad(x, (1, 2, 2, 1), mode="reflect"))
    outs.append(F.prelu(x, np.full(3, 0.25, np.float32)))
    q = x.reshape(x.size(0), 3, 8, 8)
    outs.append(F.scaled_dot_product_attention(q, q, q, is_causal=True))
    with F.emission(attention="decomposed"):
        outs.append(F.scaled_dot_product_attention(q, q, q, attn_mask=q[:1, :1] > 0))
    cos, sin = F.cos(q[:, 0, :, :4]), F.sin(q[:, 0, :, :4])
    outs.append(F.rotary_embedding(q, cos, sin))
    carry, ys = F.scan(lambda c, v: (c + v, c * v), x[:, :, 0], x, dim=2, reverse=True)
    outs += [carry, ys]
    outs.append(F.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, s * 0.5), (F.arange(1)[0], x))[1])
    outs.append(F.cond(x.sum() > 0, lambda a: a + 1, lambda a: a - 1, (x,)))
    boxes = F.cat([x[:, 0, :, :2], x[:, 0, :, :2] + 1], -1)
    outs.append(F.non_max_suppression(boxes, F.sigmoid(x[:, :, :, 0]).transpose(1, 2), 2, 0.5, 0.1)[0])
    return tuple(outs)


def _functional_cases(x):
    import test_functional_ops as ops

    from netdef import functional as F

    return tuple(t for _, fn, _, _ in ops.CASES for t in (lambda r: r if isinstance(r, (tuple, list)) else [r])(fn(F, x)))


def _int8_resnet18():
    from netdef.quantize import calibrate

    model = create("resnet18")
    random_vectors(model, seed=2)
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    config = calibrate(model, [batch])
    return netdef.trace(model, netdef.Input("x", (1, 3, 32, 32)), quantization=config), (1, 3, 32, 32)


def _model(name, dims, shape, **kwargs):
    """A shipped model traced with `dims` (dynamic ranges allowed), run on `shape`."""
    def make():
        model = create(name)
        random_vectors(model, seed=2)
        return netdef.trace(model, netdef.Input("x", dims), **kwargs), shape
    return make


VARIANTS = {
    "lenet5-float16-override": _model("lenet5", (1, 1, 28, 28), (1, 1, 28, 28), dtype="float16",
                                      dtype_overrides={"fc3": "float32"}),
    "gru-bfloat16": _model("gru_classifier", ((1, 2, 4), 7, 40), (2, 7, 40), dtype="bfloat16"),
    "crnn-float16-dynamic": _model("crnn", (1, 1, 32, (32, 64, 128)), (1, 1, 32, 48), dtype="float16"),
    "resnet18-int8": _int8_resnet18,
    "every-family-float32": lambda: (netdef.trace(every_family, netdef.Input("x", ((1, 2, 4), 3, 8, 8))), (2, 3, 8, 8)),
    "functional-float16": lambda: (netdef.trace(_functional_cases, netdef.Input("x", ((1, 2, 4), 3, 4, 5)),
                                                dtype="float16"), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_script_rebuilds_precisions_and_every_op_family(tmp_path, variant):
    net, shape = VARIANTS[variant]()
    path, _ = codegen.python(net, "w.safetensors").save(tmp_path / "net.py")
    _, network = rebuild(path)
    assert not differences(net, network), "\n".join(differences(net, network)[:20])
    assert not missing_names(open(path).read(), classic_api("11.4.0.106"))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours, theirs = netdef.reference.run(net, {"x": x}), netdef.reference.run(network, {"x": x})
    for out in net.outputs:
        assert torch.equal(ours[out], theirs[out]) or torch.testing.assert_close(
            ours[out], theirs[out], rtol=0, atol=0, equal_nan=True) is None, f"{variant}: {out!r} differs"


# networks NVIDIA's ONNX parser made: loops, conditionals, attention masks, k from an input, fp8, grid
# sample, LRN, one-hot, KV-cache updates, squeeze without axes, and the small graphs of tests/_oracle.py
ONNX_CASES = ["test_if", "test_top_k", "test_gridsample",
              "test_lrn", "test_hardmax_one_hot", "test_tensorscatter", "test_attention_4d_attn_mask_bool",
              "test_attention_4d_causal", "test_dequantizelinear_e4m3fn", "test_quantizelinear_axis",
              "test_nonmaxsuppression_two_batches", "test_reversesequence_batch", "test_cumsum_1d_reverse_exclusive",
              "test_einsum_batch_matmul", "test_rotary_embedding", "test_linear_attention_linear_expanded",
              "test_gru_defaults", "test_scatter_elements_with_axis"]


def test_script_rebuilds_networks_the_onnx_parser_made(tmp_path):
    onnx = pytest.importorskip("onnx")  # noqa: F841
    import _oracle

    checked = 0
    for name in ONNX_CASES:
        case = _oracle.cases()[name]
        network, _parser = _oracle.parse(case.model)  # the parser holds the weights: keep it
        path, _ = codegen.python(network, f"{name}.safetensors").save(tmp_path / f"{name}.py")
        _, rebuilt = rebuild(path)
        assert not differences(network, rebuilt), f"{name}:\n" + "\n".join(differences(network, rebuilt)[:10])
        inputs, _ = case.data_sets[0]
        feeds = _oracle.feed(case.model, inputs, network)
        ours, theirs = netdef.reference.run(network, feeds), netdef.reference.run(rebuilt, feeds)
        for out in ours:
            assert torch.equal(ours[out], theirs[out]) or torch.testing.assert_close(
                ours[out], theirs[out], rtol=0, atol=0, equal_nan=True) is None, f"{name}: {out!r} differs"
        checked += 1
    for gid, spec in _oracle.GRAPHS.items():
        dtype = "float16" if "float16" in spec.dtypes else spec.dtypes[0]
        g = _oracle.Graph(dtype, dtype)
        spec.build(g)
        network, _parser = _oracle.parse(g.model(spec.opset))
        path, _ = codegen.python(network, "w.safetensors").save(tmp_path / "graph.py")
        _, rebuilt = rebuild(path)
        assert not differences(network, rebuilt), f"{gid}:\n" + "\n".join(differences(network, rebuilt)[:10])
        checked += 1
    assert checked > 60


def test_differences_name_a_changed_attribute_or_weight(generated, tmp_path):
    """The comparison above can fail: a padding left out, or one weight value changed, is named."""
    net, path = generated("lenet5")
    source = open(path).read()
    assert "layer.padding_nd = (2, 2)\n" in source
    (tmp_path / "lenet5.py").write_text(source.replace("    layer.padding_nd = (2, 2)\n", "", 1))
    shutil.copy(os.path.join(os.path.dirname(path), "lenet5.safetensors"), tmp_path)
    _, network = rebuild(str(tmp_path / "lenet5.py"))
    diff = differences(net, network)
    assert any(d.startswith("layer 0 'conv1': .padding_nd") for d in diff), diff

    module = load_script(path)
    _LOADED.append(module)
    module._WEIGHTS.update(module.read_safetensors(module.WEIGHTS_FILE))
    dtype, values = module._WEIGHTS["conv2.bias"]
    changed = values.copy()
    changed[3] += 1
    module._WEIGHTS["conv2.bias"] = (dtype, changed)
    flags = 1 << int(backend.trt().NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = backend.builder().create_network(flags)
    module.define(network)
    assert [d for d in differences(net, network) if d.startswith("layer 3 'conv2': .bias")]


def test_cli_writes_the_script_and_its_weights(tmp_path, capsys):
    from netdef.models.lenet import WEIGHTS_DIR

    from netdef.cli import main

    out = tmp_path / "lenet.py"
    weights = os.path.join(WEIGHTS_DIR, "lenet5.safetensors")
    assert main(["inspect", "lenet5", "--python", "-o", str(out), "-w", weights]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "lenet.safetensors").exists()
    _, network = rebuild(str(out))
    model = create("lenet5")
    model.load_state_dict(netdef.weights.load(weights))
    assert not differences(netdef.trace(model, netdef.Input("x", (1, 1, 28, 28))), network)
    assert main(["inspect", "lenet5", "--python"]) == 2
    assert "--python needs -o FILE.py" in capsys.readouterr().err


def test_missing_names_finds_what_a_backend_lacks():
    """The name check can fail: attention is not in classic TensorRT 10.13, and an invented
    attribute is in no backend."""
    source = """
def define(network):
    attention = network.add_attention_v2(q, k, v, trt.AttentionNormalizationOp.SOFTMAX, trt.CausalMaskKind.NONE)
    layer = network.add_convolution_nd(x, 6, (5, 5), w, b)
    layer.padding_nd = (2, 2)
    layer.paddding_nd = (2, 2)
    y = named(layer, "conv1")
    y.name = "y"
"""
    assert missing_names(source, classic_api("11.4.0.106")) == {"IConvolutionLayer.paddding_nd"}
    old = missing_names(source, classic_api("10.13.3.9"))
    assert {"INetworkDefinition.add_attention_v2", "AttentionNormalizationOp", "CausalMaskKind"} <= old
