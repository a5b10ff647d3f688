"""netdef triton: a Triton model repository whose config.pbtxt parses with Triton's own schema.

The schema is the `model_config` protobuf that ships in tritonclient (tritonclient/grpc/
model_config_pb2.py, loaded from its file so that tritonclient's gRPC client, an optional extra,
is not needed); protobuf's text_format refuses any field or value the schema lacks.
"""
from __future__ import annotations

import importlib.util
import os

import pytest

import netdef
from netdef import triton
from netdef.models import create
from netdef.plan import load_plan


@pytest.fixture(scope="module")
def ModelConfig():
    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip("tritonclient is not installed (the dev extra installs it)")
    path = os.path.join(os.path.dirname(spec.origin), "grpc", "model_config_pb2.py")
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig


def parse(ModelConfig, text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, ModelConfig())


def _engine(tmp_path, name: str, *inputs, model=None, **kwargs) -> str:
    plan = netdef.build(model if model is not None else create("lenet5"), *inputs, **kwargs)
    return netdef.save_engine(plan, tmp_path / f"{name}.engine")


def test_static_engine_is_not_batched(tmp_path, ModelConfig):
    engine = _engine(tmp_path, "static", netdef.Input("x", (1, 1, 28, 28)))
    repo = triton.write_repository(engine, tmp_path / "repo", allow_rtx=netdef.backend.is_rtx())
    config = parse(ModelConfig, open(repo.config_path).read())
    assert config.name == "static" and config.platform == "tensorrt_plan" and config.max_batch_size == 0
    assert [(i.name, ModelConfig.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"]
             .enum_type.values_by_number[i.data_type].name, list(i.dims)) for i in config.input] == \
        [("x", "TYPE_FP32", [1, 1, 28, 28])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [1, 10])]
    assert not config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, config.instance_group[0].KIND_GPU)]
    assert repo.plan_path == str(tmp_path / "repo" / "static" / "1" / "model.plan")
    copied = load_plan(repo.plan_path)  # the plan and its sidecar, as netdef saved them
    assert bytes(copied) == bytes(load_plan(engine)) and copied.metadata["inputs"][0]["name"] == "x"


def test_dynamic_batch_engine_gets_dynamic_batching_and_instance_groups(tmp_path, ModelConfig):
    engine = _engine(tmp_path, "dyn", netdef.Input("x", (("batch", 1, 8, 32), 1, 28, 28)), dtype="float16")
    repo = triton.write_repository(engine, tmp_path / "repo", "lenet", version=3, instances=2, gpus=[0, 1],
                                   max_queue_delay_us=250, allow_rtx=netdef.backend.is_rtx())
    config = parse(ModelConfig, repo.config)
    assert config.name == "lenet" and config.max_batch_size == 32 == repo.max_batch_size
    assert list(config.input[0].dims) == [1, 28, 28] and list(config.output[0].dims) == [10]
    assert config.input[0].data_type == config.output[0].data_type  # float32 at the boundary (casts inside)
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.count, list(g.gpus)) for g in config.instance_group] == [(2, [0, 1])]
    assert os.path.exists(tmp_path / "repo" / "lenet" / "3" / "model.plan")


def test_dtypes_scalars_and_batching_off(tmp_path, ModelConfig):
    from netdef import functional as F

    def fn(x):
        values, indices = F.topk(x, 3, -1)
        return values, indices, x.sum()
    engine = _engine(tmp_path, "mixed", netdef.Input("x", ((1, 4, 16), 8)), model=fn, dtype="float16",
                     output_dtype="float16")
    repo = triton.write_repository(engine, tmp_path / "repo", allow_rtx=netdef.backend.is_rtx())
    config = parse(ModelConfig, repo.config)
    types = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    enum = ModelConfig.DESCRIPTOR.fields_by_name["output"].message_type.fields_by_name["data_type"].enum_type
    assert {n: (enum.values_by_number[t].name, d) for n, (t, d) in types.items()} == {
        "output0": ("TYPE_FP16", [-1, 3]), "output1": ("TYPE_INT64", [-1, 3]), "output2": ("TYPE_FP16", [1])}
    assert config.max_batch_size == 0  # the sum's output has no batch dimension: full shapes
    assert list(config.output[2].reshape.shape) == []  # a scalar: dims [1], reshaped to []
    assert list(config.input[0].dims) == [-1, 8]
    two = load_plan(engine).metadata
    two["outputs"] = two["outputs"][:2]  # without the sum, the engine is batched ...
    text, batch = triton.model_config(two, "m")
    assert batch == 16 and list(parse(ModelConfig, text).output[1].dims) == [3]
    text, batch = triton.model_config(two, "m", max_batch_size=0)  # ... unless told not to be
    assert batch == 0 and list(parse(ModelConfig, text).output[1].dims) == [-1, 3]
    with pytest.raises(triton.TritonError, match="max_batch_size=64.*batches of 1 to 16"):
        triton.model_config(two, "m", max_batch_size=64)


def test_rtx_plans_are_refused_with_the_reason(tmp_path, capsys):
    if not netdef.backend.is_rtx():
        pytest.skip("the refusal is for TensorRT-RTX plans")
    from netdef.cli import main

    engine = _engine(tmp_path, "rtx", netdef.Input("x", (1, 1, 28, 28)))
    with pytest.raises(triton.TritonError, match="classic TensorRT plans only"):
        triton.write_repository(engine, tmp_path / "repo")
    assert not os.path.exists(tmp_path / "repo")
    assert main(["triton", engine, "-o", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("netdef triton: error:") and "--allow-rtx" in err[0]
    assert main(["triton", engine, "-o", str(tmp_path / "repo"), "--allow-rtx", "--gpus", "0"]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "will refuse to load it" in captured.err


def test_plans_without_a_sidecar_or_with_unservable_dtypes_are_refused(tmp_path):
    engine = _engine(tmp_path, "bare", netdef.Input("x", (1, 1, 28, 28)))
    os.remove(engine + ".json")
    with pytest.raises(triton.TritonError, match="no sidecar"):
        triton.write_repository(engine, tmp_path / "repo", allow_rtx=True)
    meta = {"inputs": [{"name": "x", "dtype": "float8_e4m3fn", "shape": [4], "min": [4], "opt": [4], "max": [4]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}]}
    with pytest.raises(triton.TritonError, match="input 'x' has dtype float8_e4m3fn"):
        triton.model_config(meta, "m")


@pytest.mark.parametrize("edit, named", [
    (lambda m: m.update(outputs=[o["name"] for o in m["outputs"]]), "output 'output' by name only"),
    (lambda m: m["inputs"][0].pop("dtype"), "no dtype for input 'x'"),
    (lambda m: [m["inputs"][0].pop(k) for k in ("min", "max")], "no min or max for input 'x'"),
])
def test_sidecars_the_schema_accepts_but_triton_cannot_use_are_one_error(tmp_path, capsys, edit, named):
    """The sidecar schema lets a tensor record less than a config needs; the CLI says what, in one line."""
    import json

    from netdef.cli import main

    engine = _engine(tmp_path, "dyn", netdef.Input("x", (("batch", 1, 2, 4), 1, 28, 28)))
    with open(engine + ".json") as f:
        meta = json.load(f)
    edit(meta)
    with open(engine + ".json", "w") as f:
        json.dump(meta, f)
    assert load_plan(engine).metadata["inputs"][0]["name"] == "x"  # the schema accepts the edit
    with pytest.raises(triton.TritonError, match=named):
        triton.write_repository(engine, tmp_path / "repo", allow_rtx=True)
    assert main(["triton", engine, "-o", str(tmp_path / "repo"), "--allow-rtx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("netdef triton: error:") and named in err[0]
