"""Optional dependencies: the one place that imports them and, when one is missing, says in one
line what to install, with the versions netdef's own extras pin (read from the installed metadata,
so pyproject.toml stays the only place a version is written)."""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from types import ModuleType

from netdef.errors import MissingDependency

# import name -> (distribution name, the netdef extra that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "torchvision": ("torchvision", "torchvision"),
    "sklearn": ("scikit-learn", "demo"),
    "safetensors": ("safetensors", "dev"),
    "onnx": ("onnx", "dev"),
    "onnxscript": ("onnxscript", "dev"),
}


def require(module: str, needed_for: str) -> ModuleType:
    """`import module`, or a MissingDependency naming what needs it and the pip command.

    `needed_for` completes "... needs torch": e.g. "netdef compare". Only the absence of the
    package itself is translated; a package that is installed but fails to import (a broken
    install, one of *its* dependencies missing) raises its own error unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if (exc.name or "").split(".")[0] != top:
            raise
        dist, _ = PACKAGES.get(top, (top, None))
        raise MissingDependency(f"{needed_for} needs {dist}, which is not installed: {install_hint(top)}") from None


def install_hint(top: str) -> str:
    """'pip install ...' for the import name `top`, with the version netdef's extras pin. An extra
    named after the package (torch, torchvision) is given whole: [torchvision] also pins the one torch
    release that torchvision works with. The bare name when the installed metadata lacks the extra."""
    dist, extra = PACKAGES.get(top, (top, None))
    reqs = _extra_requirements(extra) if extra else []
    own = [r for r in reqs if _req_name(r) == _norm(dist)]
    if not own:
        return f"pip install {dist}"
    if extra == top:
        return "pip install " + " ".join(f"'{r}'" for r in reqs) + f"  (netdef's [{extra}] extra)"
    return f"pip install '{own[0]}'"


def _extra_requirements(extra: str) -> list[str]:
    try:
        requires = importlib.metadata.requires("netdef") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    out = []
    for line in requires:
        spec, _, marker = line.partition(";")
        if re.search(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""", marker):
            out.append(spec.strip().replace(" ", ""))
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9._-]+", req).group(0))
