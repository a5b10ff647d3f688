"""Every backend-dependent decision (netdef.backend.capabilities) checked for both backends.

Classic TensorRT cannot be installed here, but its bindings' Python API was recorded from the
wheels themselves (tests/data/tensorrt_api/*.json, written by generate.py there: 10.0.1, the
first 10.x; 10.1.0; 10.13.3.9; 11.4.0.106). TensorRT-RTX's API is read from the installed module
with the same code. The tests prove that each row of the decision table makes netdef call only
names its backend has, that each capability classic TensorRT lacks really is missing there, and
that every TensorRT name the runtime uses that some backend lacks sits behind its capability.
"""
from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
from dataclasses import fields

import pytest

from netdef import backend

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
API_DIR = os.path.join(HERE, "data", "tensorrt_api")


def _load_generator():
    spec = importlib.util.spec_from_file_location("tensorrt_api_generate", os.path.join(API_DIR, "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLASSIC = {}
for _path in sorted(glob.glob(os.path.join(API_DIR, "tensorrt-*.json"))):
    with open(_path) as _f:
        _api = json.load(_f)
    CLASSIC[_api["provenance"]["version"]] = _api
RTX = _load_generator().describe(backend.trt()) if backend.is_rtx() else None
CAPS = [f.name for f in fields(backend.Capabilities) if f.type in ("bool", bool)]


def has(api: dict, qualified: str) -> bool:
    """'Class.member' (attribute, enum member, or a method Python overrides) or a top-level name."""
    if "." not in qualified:
        return qualified in api["module"]
    cls, member = qualified.split(".", 1)
    entry = api["classes"].get(cls)
    return entry is not None and (member in entry["members"] or member in entry["overridable"])


def rows():
    """(label, api, capabilities row) for every recorded classic version and the installed RTX."""
    out = [(f"tensorrt {v}", api, backend.capabilities_of("tensorrt", v)) for v, api in CLASSIC.items()]
    if RTX is not None:
        out.append((f"tensorrt_rtx {backend.version()}", RTX, backend.capabilities_of("tensorrt_rtx", backend.version())))
    return out


def test_recorded_classic_apis_are_the_ones_documented():
    assert set(CLASSIC) == {"10.0.1", "10.1.0", "10.13.3.9", "11.4.0.106"}
    for version, api in CLASSIC.items():
        prov = api["provenance"]
        assert prov["backend"] == "tensorrt" and prov["wheel"].startswith("tensorrt_cu1")
        assert len(prov["wheel_sha256"]) == 64 and len(api["classes"]) > 150, version


def test_every_capability_has_its_api_listed():
    assert set(backend.API) == set(CAPS)
    for cap, by_state in backend.API.items():
        assert set(by_state) == {True, False} and by_state[True], cap


@pytest.mark.parametrize("label,api,caps", rows(), ids=lambda r: r if isinstance(r, str) else "")
def test_each_row_calls_only_names_its_backend_has(label, api, caps):
    for cap in CAPS:
        names = backend.API[cap][getattr(caps, cap)]
        missing = [n for n in names if not has(api, n)]
        assert not missing, f"{label}: capability {cap}={getattr(caps, cap)} uses {missing}, which it lacks"


def _version(v: str) -> tuple[int, ...]:
    return backend.version_tuple(v)


@pytest.mark.parametrize("version", sorted(CLASSIC))
def test_what_the_classic_row_turns_off_is_really_missing(version):
    """Off for classic version v only because v, or an older classic netdef supports, lacks it."""
    caps = backend.capabilities_of("tensorrt", version)
    older = [api for v, api in CLASSIC.items() if _version(v) <= _version(version)]
    for cap in CAPS:
        if not getattr(caps, cap):
            assert any(not all(has(api, n) for n in backend.API[cap][True]) for api in older), \
                f"every classic TensorRT up to {version} has what {cap} needs: the table turns it off needlessly"


def test_probing_for_create_runtime_config_mistakes_classic_for_rtx():
    """The bug this table replaces: classic 10.13 and 11.4 have create_runtime_config, but not the
    runtime cache or CUDA-graph strategy TensorRT-RTX hangs off it."""
    for version in ("10.13.3.9", "11.4.0.106"):
        api = CLASSIC[version]
        assert has(api, "ICudaEngine.create_runtime_config")
        assert not has(api, "IRuntimeConfig.create_runtime_cache")
        assert not has(api, "IRuntimeConfig.cuda_graph_strategy")
        assert not backend.capabilities_of("tensorrt", version).runtime_config


def test_classic_device_memory_call_follows_the_version():
    assert not backend.capabilities_of("tensorrt", "10.0.1.6").set_device_memory
    assert backend.capabilities_of("tensorrt", "10.1.0").set_device_memory
    assert not has(CLASSIC["10.0.1"], "IExecutionContext.set_device_memory")
    assert has(CLASSIC["10.1.0"], "IExecutionContext.set_device_memory")
    sig = CLASSIC["10.1.0"]["classes"]["IExecutionContext"]["signatures"]["set_device_memory"]
    assert any("memory" in s and "size" in s for s in sig)


@pytest.mark.parametrize("label,api,caps", rows(), ids=lambda r: r if isinstance(r, str) else "")
def test_calls_made_on_every_backend_have_the_signatures_netdef_uses(label, api, caps):
    classes = api["classes"]
    contexts = classes["ICudaEngine"]["signatures"]["create_execution_context"]
    assert any("strategy: ExecutionContextAllocationStrategy" in s for s in contexts), label
    assert "USER_MANAGED" in classes["ExecutionContextAllocationStrategy"]["members"], label
    assert any("serialized_engine" in s for s in classes["Runtime"]["signatures"]["deserialize_cuda_engine"])
    for member in ("set_input_shape", "update_device_memory_size_for_shapes", "set_tensor_address",
                   "get_tensor_shape", "set_output_allocator", "execute_async_v3"):
        assert has(api, f"IExecutionContext.{member}"), (label, member)
    # the callbacks netdef's subclasses implement
    assert {"reallocate_output", "reallocate_output_async", "notify_shape"} <= set(
        classes["IOutputAllocator"]["overridable"]), label
    assert "log" in classes["ILogger"]["overridable"], label
    assert {"phase_start", "step_complete", "phase_finish"} <= set(classes["IProgressMonitor"]["members"]), label


def test_unknown_backend_is_refused():
    with pytest.raises(netdef_errors().BackendError, match="unknown backend 'tensorrt_llm'"):
        backend.capabilities_of("tensorrt_llm", "1.0")


def netdef_errors():
    from netdef import errors

    return errors


# ---- the code: TensorRT names some backend lacks are used only behind their capability --------------
SCANNED = ["netdef/runtime/*.py", "netdef/backend.py", "netdef/build.py", "netdef/plan.py",
           "netdef/network.py", "netdef/inspect.py", "netdef/sidecar.py", "netdef/fileio.py"]
# names that TensorRT classes also use, but that netdef reads from other objects here
NOT_TENSORRT = {
    "itemsize": "numpy dtype.itemsize",
    "write": "file objects",
    "ctypes": "numpy's ndarray.ctypes",
    "warnings": "ErrorSink.warnings",
    "update": "dict/hashlib update",
    "strides": "numpy ndarray.strides",
}


def _all_apis() -> list[dict]:
    return list(CLASSIC.values()) + ([RTX] if RTX is not None else [])


def _member_names(api: dict) -> set[str]:
    names = set(api["module"])
    for entry in api["classes"].values():
        names |= set(entry["members"]) | set(entry["overridable"])
    return names


def _is_capability_read(node: ast.Attribute) -> bool:
    """`caps.set_device_memory`, `backend.capabilities().x`: a row of the table, not a TensorRT call."""
    return node.attr in CAPS and any(
        (isinstance(n, ast.Name) and "caps" in n.id) or (isinstance(n, ast.Attribute) and n.attr in ("caps", "capabilities"))
        for n in ast.walk(node.value))


def _uses(tree: ast.AST):
    """(name, node) for attribute accesses and getattr/hasattr with a constant name; accesses on
    `self`/`cls` are netdef's own attributes."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) \
                    and not _is_capability_read(node):
                yield node.attr, node
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            yield node.args[1].value, node


def _parents(tree: ast.AST) -> dict:
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def _mentions(expr: ast.AST, caps: set[str]) -> bool:
    return any((isinstance(n, ast.Attribute) and n.attr in caps) or (isinstance(n, ast.Name) and n.id in caps)
               for n in ast.walk(expr))


def _guarded(node: ast.AST, parents: dict, caps: set[str], trees: dict) -> bool:
    """Inside `if <cap>:` (or a conditional expression / `and` on it), after an early
    `if not <cap>: return/raise` in the enclosing function, or in a class only made under such a guard."""
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, (ast.If, ast.IfExp, ast.While)) and child is not cur.test and _mentions(cur.test, caps):
            return True
        if isinstance(cur, ast.BoolOp) and any(_mentions(v, caps) for v in cur.values if v is not child):
            return True
        if isinstance(cur, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for stmt in cur.body:
                if getattr(stmt, "lineno", 0) >= node.lineno:
                    break
                if (isinstance(stmt, ast.If) and _mentions(stmt.test, caps)
                        and stmt.body and isinstance(stmt.body[-1], (ast.Return, ast.Raise))):
                    return True
        if isinstance(cur, ast.ClassDef):
            made = [(n, p) for t, p in trees.values() for n in ast.walk(t)
                    if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == cur.name]
            return bool(made) and all(_guarded(n, p, caps, trees) for n, p in made)
        child, cur = cur, parents.get(cur)
    return False


def test_runtime_uses_names_some_backend_lacks_only_behind_their_capability():
    apis = _all_apis()
    everywhere = set.intersection(*(_member_names(a) for a in apis))
    anywhere = set.union(*(_member_names(a) for a in apis))
    gated: dict[str, set[str]] = {}
    for cap, by_state in backend.API.items():
        for names in by_state.values():
            for qualified in names:
                member = qualified.split(".")[-1]
                if not all(has(a, qualified) for a in apis):
                    gated.setdefault(member, set()).add(cap)
                    gated.setdefault(qualified.split(".")[0], set()).add(cap)
    trees = {}
    for pattern in SCANNED:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            trees[path] = (tree, _parents(tree))
    problems = []
    for path, (tree, parents) in trees.items():
        rel = os.path.relpath(path, ROOT)
        for name, node in _uses(tree):
            if name not in anywhere or name in everywhere or name in NOT_TENSORRT:
                continue
            if name not in gated:
                problems.append(f"{rel}:{node.lineno}: {name} is missing from some backend and no capability "
                                f"in netdef.backend.API lists it")
            elif not _guarded(node, parents, gated[name], trees):
                problems.append(f"{rel}:{node.lineno}: {name} is used outside `if caps.{'/'.join(sorted(gated[name]))}`")
    assert not problems, "\n".join(problems)


def test_the_guard_check_catches_an_unguarded_call():
    """The checker above is not vacuous: the old probe-based code fails it."""
    code = ("def f(engine, t):\n"
            "    if hasattr(engine, 'create_runtime_config'):\n"
            "        config = engine.create_runtime_config()\n"
            "        config.cuda_graph_strategy = t.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE\n")
    tree = ast.parse(code)
    parents = _parents(tree)
    uses = [(n, node) for n, node in _uses(tree) if n == "cuda_graph_strategy"]
    assert uses and not _guarded(uses[0][1], parents, {"builtin_cuda_graphs"}, {"x": (tree, parents)})
    good = ast.parse("def f(caps, config, t):\n    if caps.builtin_cuda_graphs:\n        config.cuda_graph_strategy = 1\n")
    gp = _parents(good)
    node = next(node for n, node in _uses(good) if n == "cuda_graph_strategy")
    assert _guarded(node, gp, {"builtin_cuda_graphs"}, {"x": (good, gp)})
