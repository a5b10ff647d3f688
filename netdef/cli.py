"""The `netdef` command: export weights, build engines, inspect networks and plans, compare ports."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
from typing import Any, Callable, Sequence

from netdef.errors import NetdefError

EPILOG = """model specs: a file and a name (path/to/model.py:MyNet), a module and a name
(mypkg.nets:MyNet), or a bundled model name (lenet5, resnet50, mobilenet_v2, yolov5s, ...).
shapes: NAME=D,D,... where a dynamic D is MIN-OPT-MAX, e.g. x=1-8-32,3,224,224"""


def _load_attr(spec: str, what: str) -> Any:
    """Resolve 'file.py:Name' or 'pkg.module:Name' to the object."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        if not os.path.exists(target):
            raise NetdefError(f"{what} file not found: {target}")
        mod_name = "_netdef_user_" + os.path.splitext(os.path.basename(target))[0]
        module_spec = importlib.util.spec_from_file_location(mod_name, target)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise NetdefError(f"cannot import {target!r} for {what} {spec!r}: {exc}") from None
    if not hasattr(module, attr):
        raise NetdefError(f"{what} {spec!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)


def resolve_model(spec: str) -> Any:
    """A netdef model instance from a spec (see EPILOG)."""
    from netdef.models import MODELS, create
    from netdef.nn import Module

    if ":" not in spec:
        if spec.lower() not in MODELS:
            raise NetdefError(f"unknown model {spec!r}; bundled models: {', '.join(MODELS)}")
        model = create(spec)
        object.__setattr__(model, "example_input_shape", MODELS[spec.lower()].input_shape)
        return model
    factory = _load_attr(spec, "model")
    return factory if isinstance(factory, Module) else factory()


def resolve_original(spec: str) -> Any:
    """The torch original: 'file.py:Class', 'torchvision:name', or a bundled model's name."""
    from netdef.models import MODELS

    if spec.lower() in MODELS:
        return MODELS[spec.lower()].original()
    if spec.startswith("torchvision:"):
        import torchvision.models as tvm

        name = spec.split(":", 1)[1]
        if not hasattr(tvm, name):
            raise NetdefError(f"unknown original {spec!r}: torchvision.models has no {name!r}")
        return getattr(tvm, name)(weights=None)
    if ":" not in spec:
        raise NetdefError(f"unknown original {spec!r}: use file.py:Class, torchvision:NAME, or one of "
                          f"{', '.join(MODELS)}")
    obj = _load_attr(spec, "original")
    return obj() if isinstance(obj, type) else obj


def parse_shape(text: str) -> Any:
    """'x=1-8-32,3,224,224' -> netdef.Input('x', ((1, 8, 32), 3, 224, 224))."""
    from netdef.network import Input

    name, sep, dims = text.partition("=")
    if not sep or not name or not dims:
        raise NetdefError(f"bad --shape {text!r}: expected NAME=D,D,... (dynamic D: MIN-OPT-MAX)")
    parsed = []
    for d in dims.replace("x", ",").split(","):
        parts = d.strip().split("-")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise NetdefError(f"bad dimension {d!r} in --shape {text!r}") from None
        if len(values) == 1:
            parsed.append(values[0])
        elif len(values) == 3:
            parsed.append(tuple(values))
        else:
            raise NetdefError(f"bad dimension {d!r} in --shape {text!r}: use N or MIN-OPT-MAX")
    try:
        return Input(name, tuple(parsed))
    except ValueError as exc:
        raise NetdefError(str(exc)) from None


def _model_with_weights(args: argparse.Namespace) -> Any:
    from netdef import weights

    model = resolve_model(args.model)
    if getattr(args, "weights", None):
        model.load_state_dict(weights.load(args.weights), strict=not args.non_strict)
    return model


def _inputs(args: argparse.Namespace, model: Any) -> list:
    from netdef.network import Input

    if args.shape:
        return [parse_shape(s) for s in args.shape]
    default = getattr(model, "example_input_shape", None)
    if default is None:
        raise NetdefError(f"{type(model).__name__} has no default input shape; pass --shape NAME=D,D,...")
    return [Input("x", tuple(default))]


# ---- subcommands -----------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from netdef import weights

    summary = weights.convert(args.src, args.dst)
    print(f"wrote {args.dst}: " + ", ".join(f"{k}={v}" for k, v in summary.items() if k != "dst"))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import netdef

    model = _model_with_weights(args)
    inputs = _inputs(args, model)
    start = time.perf_counter()
    plan = netdef.build(model, *inputs, dtype=args.dtype, workspace=args.workspace,
                        optimization_level=args.opt_level, timing_cache=args.timing_cache)
    out = args.output or f"{type(model).__name__.lower()}.engine"
    netdef.save_engine(plan, out)
    print(f"built {out}: {len(plan):,} bytes, {plan.metadata['layers']} layers, {args.dtype}, "
          f"{time.perf_counter() - start:.2f} s ({plan.metadata['backend']} {plan.metadata['backend_version']})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from netdef import inspect as nd_inspect

    if os.path.isfile(args.model) and not args.model.endswith(".py"):
        print(nd_inspect.describe_plan(args.model))
        return 0
    import netdef

    model = _model_with_weights(args)
    net = netdef.trace(model, *_inputs(args, model), dtype=args.dtype)
    print(nd_inspect.describe_network(net, calls=args.calls))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    import netdef
    from netdef import weights

    model = resolve_model(args.model)
    state = weights.load(args.weights)
    model.load_state_dict(state, strict=not args.non_strict)
    original = resolve_original(args.original)
    tstate = weights.to_torch(state, like=original.state_dict())
    original.load_state_dict(tstate, strict=not args.non_strict)
    inputs = _inputs(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    feeds = [torch.randn(i.opt_shape, generator=gen) for i in inputs]
    report = netdef.compare(original, model, feeds, dtype=args.dtype, atol=args.atol, rtol=args.rtol,
                            input_names=[i.name for i in inputs])
    print(report)
    if args.json:
        from netdef.fileio import atomic_file

        with atomic_file(args.json) as f:
            f.write(report.to_json().encode())
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from netdef import demo

    return demo.main(engine_path=args.output)


def build_parser() -> argparse.ArgumentParser:
    from netdef import __version__

    p = argparse.ArgumentParser(prog="netdef", description="Build TensorRT networks in code from "
                                "PyTorch-named weights, and prove them layer by layer.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"netdef {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(fn=fn)
        return sp

    def model_args(sp: argparse.ArgumentParser, weights_required: bool = False) -> None:
        sp.add_argument("--weights", "-w", required=weights_required,
                        help="weights file: .wts, .safetensors, .pt or .pth")
        sp.add_argument("--shape", "-s", action="append", metavar="NAME=DIMS",
                        help="an input shape (repeat for several inputs)")
        sp.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="compute precision (default float32)")
        sp.add_argument("--non-strict", action="store_true", help="ignore missing/unexpected weight keys")

    sp = add("export", cmd_export, "Convert weights between .wts, .safetensors and .pt/.pth "
             "(replaces tensorrtx's gen_wts.py).")
    sp.add_argument("src", help="source weights: .wts, .safetensors, .pt or .pth")
    sp.add_argument("dst", help="destination: .wts or .safetensors")

    sp = add("build", cmd_build, "Build and save a serialized engine (plus a JSON sidecar).")
    sp.add_argument("model", help="model spec (see below)")
    model_args(sp)
    sp.add_argument("--output", "-o", help="engine path (default: <model>.engine)")
    sp.add_argument("--workspace", type=int, help="workspace memory pool limit in bytes")
    sp.add_argument("--opt-level", type=int, choices=range(6), help="builder optimization level 0-5")
    sp.add_argument("--timing-cache", help="timing cache file to read and update")

    sp = add("inspect", cmd_inspect, "Show a network's layers (name, type, attributes, output shapes "
             "and dtypes, weight bytes), or a saved plan's metadata.")
    sp.add_argument("model", metavar="MODEL_OR_PLAN", help="model spec, or an .engine file")
    model_args(sp)
    sp.add_argument("--calls", action="store_true", help="also show every layer attribute TensorRT holds")

    sp = add("compare", cmd_compare, "Compare every module of a netdef model with its torch original "
             "on random inputs; exit code 1 on failure.")
    sp.add_argument("model", help="netdef model spec")
    sp.add_argument("original", help="torch original: file.py:Class, torchvision:name, or a name")
    model_args(sp, weights_required=True)
    sp.add_argument("--atol", type=float, help="absolute tolerance (default by dtype)")
    sp.add_argument("--rtol", type=float, help="relative tolerance (default by dtype)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    sp.add_argument("--json", help="also write the report as JSON here")

    sp = add("demo", cmd_demo, "The main job: build LeNet-5 from the shipped weights, verify it layer "
             "by layer against PyTorch, classify held-out digits.")
    sp.add_argument("--output", "-o", default="lenet5.engine", help="engine path (default lenet5.engine)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (NetdefError, OSError, ValueError) as exc:
        print(f"netdef {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"netdef {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
