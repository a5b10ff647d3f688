"""Write the Python API of a classic TensorRT bindings wheel as JSON, without TensorRT's libraries.

The classic bindings (`tensorrt-cu12-bindings`, `tensorrt-cu13-bindings`) are a pybind11
extension that links libnvinfer, libnvinfer_plugin and libnvonnxparser, which cannot be
installed where netdef is developed. Importing the extension only needs those libraries to
resolve its few undefined C functions (their factory functions, never called while the module
initializes), so this script compiles empty stand-ins for them, imports the extension in a
subprocess, and records every class's attributes, the methods its trampoline classes let Python
override (from their docstrings), and each method's pybind11 signatures.

    pip download --no-deps tensorrt-cu12-bindings==10.13.3.9 -d /tmp/w
    python tests/data/tensorrt_api/generate.py /tmp/w/tensorrt_cu12_bindings-10.13.3.9-*.whl

writes tests/data/tensorrt_api/tensorrt-10.13.3.9.json. `describe(module)` is also what
tests/test_backend_api.py applies to the installed backend, so both sides use one format.
Needs gcc and binutils' nm. Not run by the tests (they read the JSON files).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
_DEF = re.compile(r"def (\w+)\(self")


_QUALIFIER = re.compile(r"\btensorrt(_rtx_bindings\.tensorrt_rtx|_rtx)?\.")


def _signatures(name: str, doc: str | None) -> list[str]:
    """pybind11 puts one 'name(args) -> result' line per overload at the top of a docstring;
    kept without `self` and the module qualifier, so both backends' read alike."""
    found = []
    for line in (doc or "").splitlines():
        m = re.match(rf"\s*(\d+\. )?({re.escape(name)}\(.*)", line)
        if m and m.group(2) != f"{name}(*args, **kwargs)":
            found.append(re.sub(r"\(self(: [\w.]+)?(, )?", "(", _QUALIFIER.sub("", m.group(2))))
    return found


def describe(module: Any) -> dict[str, Any]:
    """{'module': top-level names, 'classes': {class: {'members', 'overridable', 'signatures'}}}."""
    classes = {}
    for cname, cls in sorted(vars(module).items()):
        if cname.startswith("_") or not inspect.isclass(cls):
            continue
        members = sorted(n for n in dir(cls) if not n.startswith("_"))
        signatures = {}
        for n in members:
            attr = getattr(cls, n, None)
            if callable(attr) and not inspect.isclass(attr):
                sig = _signatures(n, getattr(attr, "__doc__", None))
                if sig:
                    signatures[n] = sig
        for n in ("__init__",):
            sig = _signatures(n, getattr(getattr(cls, n, None), "__doc__", None))
            if sig:
                signatures[n] = sig
        classes[cname] = {"members": members,
                          "overridable": sorted(set(_DEF.findall(cls.__doc__ or ""))),
                          "signatures": signatures}
    return {"module": sorted(n for n in vars(module) if not n.startswith("_")), "classes": classes}


_STUB_LIBS = ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser")


def _undefined_functions(so: str) -> list[str]:
    out = subprocess.run(["nm", "-D", "--undefined-only", so], check=True, capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U" and "@" not in parts[1] and not parts[1].startswith(("Py", "_Py")):
            names.append(parts[1])
    return names


def _needed(so: str) -> list[str]:
    out = subprocess.run(["readelf", "-d", so], check=True, capture_output=True, text=True).stdout
    return re.findall(r"Shared library: \[([^\]]+)\]", out)


def generate(wheel: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        so = next(os.path.join(r, f) for r, _, fs in os.walk(tmp) for f in fs if f == "tensorrt.so")
        src = os.path.join(tmp, "stub.c")
        with open(src, "w") as f:
            f.writelines(f"void *{n}(void) {{ return 0; }}\n" for n in _undefined_functions(so)
                         if n not in ("dlopen", "dlsym", "dlclose"))
        stubdir = os.path.join(tmp, "stubs")
        os.makedirs(stubdir)
        for lib in _needed(so):
            if lib.startswith(_STUB_LIBS):
                subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{lib}", "-o",
                                os.path.join(stubdir, lib), src], check=True)
        code = (f"import importlib.util, json, sys; sys.path.insert(0, {HERE!r}); from generate import describe\n"
                f"spec = importlib.util.spec_from_file_location('tensorrt', {so!r})\n"
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
                "print(json.dumps(describe(m)))")
        env = dict(os.environ, LD_LIBRARY_PATH=stubdir)
        api = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                        text=True, env=env).stdout)
    name = os.path.basename(wheel)
    version = name.split("-")[1]
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    api = {"provenance": {"backend": "tensorrt", "version": version, "wheel": name, "wheel_sha256": digest,
                          "source": f"https://pypi.org/project/{name.split('-')[0].replace('_', '-')}/{version}/",
                          "generator": "tests/data/tensorrt_api/generate.py"}, **api}
    out = os.path.join(HERE, f"tensorrt-{version}.json")
    with open(out, "w") as f:
        json.dump(api, f, indent=0, sort_keys=True)
        f.write("\n")
    return out


if __name__ == "__main__":
    for w in sys.argv[1:]:
        print(generate(w))
