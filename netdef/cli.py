"""The `netdef` command: export weights, build engines, inspect networks and plans, compare ports.

Exit codes: 0 success; 1 `compare` found a divergent module (and only that); 2 a user error,
reported in one line `netdef COMMAND: error: ...` (a bad argument, a missing file or package, a
model spec that does not import, weights that do not fit); 3 an unexpected exception (a bug in
netdef or in the model's own code), reported with its traceback; 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import textwrap
import time
import traceback
from typing import Any, Callable, NoReturn, Sequence

from netdef.errors import NetdefError

EPILOG = """model specs: a file and a name (path/to/model.py:MyNet), a module and a name
(mypkg.nets:MyNet), or a bundled model name (lenet5, resnet50, mobilenet_v2, yolov5s, ...).
shapes: NAME=D,D,... where a dynamic D is MIN-OPT-MAX, e.g. x=1-8-32,3,224,224
sizes: bytes, or with a binary unit: 512M, 4G, 1.5GiB
exit codes: 0 ok, 1 compare found a divergent module, 2 user error, 3 unexpected error"""

EXIT_MISMATCH, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3
_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


class _Parser(argparse.ArgumentParser):
    """argparse, with every error one line (`netdef build: error: ...`, exit 2) and no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type=` that reports netdef's own message for a bad value."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except (NetdefError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def _failure(exc: BaseException) -> str:
    """'RuntimeError: boom (nets.py:3)': an exception raised by the user's code, with the innermost
    line of it (not of importlib or netdef)."""
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg} ({exc.filename}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((_PKG_DIR + os.sep, "<frozen")) and "importlib" not in f.filename]
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _load_attr(spec: str, what: str) -> Any:
    """Resolve 'file.py:Name' or 'pkg.module:Name' to the object; any failure is one NetdefError."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise NetdefError(f"{what} spec {spec!r}: expected FILE.py:NAME or MODULE:NAME")
    try:
        if target.endswith(".py"):
            if not os.path.isfile(target):
                raise NetdefError(f"{what} file not found: {target}")
            mod_name = "_netdef_user_" + os.path.splitext(os.path.basename(target))[0]
            module_spec = importlib.util.spec_from_file_location(mod_name, target)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except NetdefError:
        raise
    except Exception as exc:  # the user's module failed to import: say where, not a traceback
        raise NetdefError(f"cannot import {target} for {what} {spec!r}: {_failure(exc)}") from None
    if not hasattr(module, attr):
        raise NetdefError(f"{what} {spec!r}: {target} has no attribute {attr!r}")
    return getattr(module, attr)


def _call(factory: Any, spec: str, what: str) -> Any:
    """factory() for a spec naming a class or function; its failure is one NetdefError."""
    try:
        return factory()
    except NetdefError:
        raise
    except Exception as exc:
        raise NetdefError(f"{what} {spec!r}: {getattr(factory, '__name__', 'it')}() failed: {_failure(exc)}") from None


def _unknown(spec: str, what: str) -> NetdefError:
    """Why a spec without ':' that is no bundled model name was not understood."""
    from netdef.models import MODELS

    if spec.endswith(".py") and os.path.isfile(spec):
        return NetdefError(f"{what} {spec!r}: name the class or function in it, e.g. {spec}:MyNet")
    if os.sep in spec or os.path.splitext(spec)[1]:
        return NetdefError(f"no such file: {spec}")
    return NetdefError(f"unknown {what} {spec!r}; bundled models: {', '.join(MODELS)}")


def resolve_model(spec: str) -> Any:
    """A netdef model instance from a spec (see EPILOG)."""
    from netdef.models import MODELS, create
    from netdef.nn import Module

    if ":" not in spec:
        if spec.lower() not in MODELS:
            raise _unknown(spec, "model")
        model = create(spec)
        object.__setattr__(model, "example_input_shape", MODELS[spec.lower()].input_shape)
        return model
    factory = _load_attr(spec, "model")
    _refuse_torch(factory, spec)  # before calling: a torch class would be built for nothing
    model = factory if isinstance(factory, Module) else _call(factory, spec, "model")
    _refuse_torch(model, spec)
    return model


def _refuse_torch(obj: Any, spec: str) -> None:
    """A torch module (or class) given where the netdef port belongs: say so instead of failing later."""
    torch = sys.modules.get("torch")  # a torch object exists only if torch was imported
    if torch is None:
        return
    cls = obj if isinstance(obj, type) else type(obj)
    if issubclass(cls, torch.nn.Module):
        raise NetdefError(f"model {spec!r} is a torch module; MODEL must be the netdef port "
                          "(the torch original is compare's ORIGINAL argument)")


def resolve_original(spec: str) -> Any:
    """The torch original: 'file.py:Class', 'torchvision:name', or a bundled model's name."""
    from netdef.models import MODELS
    from netdef.optional import require

    if spec.lower() in MODELS:
        return MODELS[spec.lower()].original()
    if spec.startswith("torchvision:"):
        tvm = require("torchvision.models", f"the original {spec!r}")
        name = spec.split(":", 1)[1]
        if not hasattr(tvm, name):
            raise NetdefError(f"unknown original {spec!r}: torchvision.models has no {name!r}")
        return _call(lambda: getattr(tvm, name)(weights=None), spec, "original")
    if ":" not in spec:
        raise _unknown(spec, "original")
    obj = _load_attr(spec, "original")
    return _call(obj, spec, "original") if isinstance(obj, type) else obj


def engine_name(spec: str) -> str:
    """The default engine file of a model spec: 'resnet18' -> resnet18.engine, 'nets.py:MyNet' ->
    MyNet.engine (named after the spec, so resnet18/34/50 do not overwrite one another)."""
    name = spec.rpartition(":")[2] if ":" in spec else spec.lower()
    return f"{name}.engine"


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
            raise NetdefError(f"bad dimension {d!r} in --shape {text!r}: use N or MIN-OPT-MAX") from None
        if len(values) == 1:
            parsed.append(values[0])
        elif len(values) == 3:
            parsed.append(tuple(values))
        else:
            raise NetdefError(f"bad dimension {d!r} in --shape {text!r}: use N or MIN-OPT-MAX")
    try:
        return Input(name, tuple(parsed))
    except ValueError as exc:
        raise NetdefError(f"{text!r}: {exc}") from None


def workspace_size(text: str) -> int:
    from netdef.build import memory_size

    return memory_size(text)


def _warn(args: argparse.Namespace, what: str, keys: Sequence[str]) -> None:
    """Every key, wrapped, under one warning line on stderr."""
    if keys:
        body = textwrap.fill(", ".join(keys), width=100, initial_indent="  ", subsequent_indent="  ")
        print(f"netdef {args.command}: warning: {len(keys)} {what}:\n{body}", file=sys.stderr)


def _report_unloaded(args: argparse.Namespace, result: Any, model: str) -> None:
    """What a --non-strict load left out, listed in full: a key left random is how a port goes wrong."""
    _warn(args, f"keys of {model} are not in {args.weights} and keep their initial (random) values",
          result.missing_keys)
    _warn(args, f"keys in {args.weights} are not in {model} and were ignored", result.unexpected_keys)


def _model_with_weights(args: argparse.Namespace) -> Any:
    from netdef import weights

    model = resolve_model(args.model)
    if getattr(args, "weights", None):
        result = model.load_state_dict(weights.load(args.weights), strict=not args.non_strict)
        _report_unloaded(args, result, type(model).__name__)
    return model


def _inputs(args: argparse.Namespace, model: Any) -> list:
    from netdef.network import Input

    if args.shape:
        return list(args.shape)
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

    if bool(args.weights) == args.random_weights:
        raise NetdefError("pass the weights with -w FILE, or --random-weights to build with random values "
                          "(to try the pipeline; the engine computes nothing useful)"
                          if not args.weights else "-w and --random-weights exclude each other")
    model = _model_with_weights(args)
    inputs = _inputs(args, model)
    start = time.perf_counter()
    plan = netdef.build(model, *inputs, dtype=args.dtype, workspace=args.workspace,
                        optimization_level=args.opt_level, timing_cache=args.timing_cache)
    out = args.output or engine_name(args.model)
    netdef.save_engine(plan, out)
    weights = args.weights or "RANDOM weights"
    print(f"built {out}: {len(plan):,} bytes, {plan.metadata['layers']} layers, {args.dtype}, {weights}, "
          f"{time.perf_counter() - start:.2f} s ({plan.metadata['backend']} {plan.metadata['backend_version']})")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from netdef import inspect as nd_inspect

    is_plan = os.path.isfile(args.model) and not args.model.endswith(".py")
    if args.python and is_plan:
        raise NetdefError(f"--python writes a network's layers, and a plan's cannot be read back: name the model "
                          f"that {args.model} was built from")
    if args.output and not args.python:
        raise NetdefError("-o/--output is where --python writes the script; add --python")
    if args.python and not args.output:
        raise NetdefError("--python needs -o FILE.py: the script and its weights (FILE.safetensors) are written there")
    if is_plan:
        print(nd_inspect.describe_plan(args.model))
        return 0
    import netdef

    model = _model_with_weights(args)
    net = netdef.trace(model, *_inputs(args, model), dtype=args.dtype)
    if args.python:
        return _write_python(args, net)
    print(nd_inspect.describe_network(net, calls=args.calls))
    return 0


def _write_python(args: argparse.Namespace, net: Any) -> int:
    """`inspect --python`: the raw-API script and its weights beside it."""
    from netdef import codegen

    stem = os.path.splitext(os.path.basename(args.output))[0]
    script = codegen.python(net, f"{stem}.safetensors")
    path, weights_path = script.save(args.output)
    size = os.path.getsize(weights_path)
    print(f"wrote {args.output} ({script.layers} layers in {len(script.modules)} module blocks) and "
          f"{os.path.relpath(weights_path)} ({size:,} bytes); run `python {args.output} --engine "
          f"{stem}.engine` to build it without netdef")
    if not args.weights:
        print(f"netdef {args.command}: warning: no -w given: the weights are the model's random initial values",
              file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from netdef.optional import require

    torch = require("torch", "netdef compare")
    import netdef
    from netdef import weights

    model = resolve_model(args.model)
    original = resolve_original(args.original)  # before reading weights: a missing torchvision fails fast
    state = weights.load(args.weights)
    _report_unloaded(args, model.load_state_dict(state, strict=not args.non_strict), type(model).__name__)
    tstate = weights.to_torch(state, like=original.state_dict())
    result = original.load_state_dict(tstate, strict=not args.non_strict)
    _report_unloaded(args, result, f"the original {type(original).__name__}")
    inputs = _inputs(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    feeds = [torch.randn(i.opt_shape, generator=gen) for i in inputs]
    _check_original_runs(original, feeds, inputs)
    report = netdef.compare(original, model, feeds, dtype=args.dtype, atol=args.atol, rtol=args.rtol,
                            input_names=[i.name for i in inputs], prefix=args.prefix, ignore=args.ignore,
                            tf32=not args.no_tf32, fold_batchnorm=not args.no_fold)
    print(report)
    from netdef.fileio import atomic_file

    if args.json:
        with atomic_file(args.json) as f:
            f.write(report.to_json().encode())
    if args.html:
        with atomic_file(args.html) as f:
            f.write(report.to_html(f"netdef compare {args.model} {args.original}").encode())
        print(f"wrote {args.html}")
    return 0 if report.ok else EXIT_MISMATCH


def _check_original_runs(original: Any, feeds: Sequence[Any], inputs: Sequence[Any]) -> None:
    """Inputs the torch original rejects (wrong rank, channels or count) are a user error, found
    before the comparison starts rather than as a traceback from inside torch."""
    import torch

    try:
        with torch.no_grad():
            original.eval()(*feeds)
    except Exception as exc:
        shapes = ", ".join(f"{i.name}={tuple(f.shape)}" for i, f in zip(inputs, feeds))
        raise NetdefError(f"the original {type(original).__name__} does not run on the inputs {shapes}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                          "check --shape") from None


def cmd_triton(args: argparse.Namespace) -> int:
    from netdef import triton

    repo = triton.write_repository(args.engine, args.output, args.name, version=args.version,
                                   max_batch_size=args.max_batch_size, instances=args.instances,
                                   gpus=triton.parse_gpus(args.gpus) if args.gpus else None,
                                   max_queue_delay_us=args.max_queue_delay_us, allow_rtx=args.allow_rtx)
    print(triton.describe(repo))
    if args.allow_rtx:
        print(f"netdef {args.command}: warning: {args.engine} is a TensorRT-RTX plan: Triton's TensorRT backend "
              "(classic TensorRT) will refuse to load it; see docs/serving.md", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from netdef import demo

    return demo.main(engine_path=args.output)


def build_parser() -> argparse.ArgumentParser:
    from netdef import __version__

    p = _Parser(prog="netdef", description="Build TensorRT networks in code from "
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
        sp.add_argument("--shape", "-s", action="append", metavar="NAME=DIMS", type=_arg(parse_shape),
                        help="an input shape (repeat for several inputs, one name each)")
        sp.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="compute precision (default float32)")
        sp.add_argument("--non-strict", action="store_true",
                        help="load what matches; list the keys left random and the keys ignored")

    sp = add("export", cmd_export, "Convert weights between .wts, .safetensors and .pt/.pth "
             "(replaces tensorrtx's gen_wts.py).")
    sp.add_argument("src", help="source weights: .wts, .safetensors, .pt or .pth")
    sp.add_argument("dst", help="destination: .wts or .safetensors")

    sp = add("build", cmd_build, "Build and save a serialized engine (plus a JSON sidecar).")
    sp.add_argument("model", help="model spec (see below)")
    model_args(sp)
    sp.add_argument("--random-weights", action="store_true",
                    help="build without -w: the model's random initial values (to try the pipeline)")
    sp.add_argument("--output", "-o", help="engine path (default: named after the model spec, e.g. resnet18.engine)")
    sp.add_argument("--workspace", type=_arg(workspace_size), metavar="SIZE",
                    help="workspace memory pool limit: bytes, or 512M, 4G, 1.5GiB (binary units)")
    sp.add_argument("--opt-level", type=int, choices=range(6), help="builder optimization level 0-5")
    sp.add_argument("--timing-cache", help="timing cache file to read and update")

    sp = add("inspect", cmd_inspect, "Show a network's layers (name, type, attributes, output shapes "
             "and dtypes, weight bytes), or a saved plan's metadata.")
    sp.add_argument("model", metavar="MODEL_OR_PLAN", help="model spec, or an .engine file")
    model_args(sp)
    sp.add_argument("--calls", action="store_true", help="also show every layer attribute TensorRT holds")
    sp.add_argument("--python", action="store_true",
                    help="write the network as a standalone raw TensorRT API script (-o FILE.py; weights beside it)")
    sp.add_argument("--output", "-o", metavar="FILE.py", help="where --python writes the script")

    sp = add("compare", cmd_compare, "Compare every module of a netdef model with its torch original "
             "on random inputs; exit code 1 when a module diverges.")
    sp.add_argument("model", help="netdef model spec")
    sp.add_argument("original", help="torch original: file.py:Class, torchvision:name, or a name")
    model_args(sp, weights_required=True)
    sp.add_argument("--atol", type=_arg(_tolerance),
                    help="stage one's floor, in units of each output's RMS (default netdef.tolerance.FLOAT32)")
    sp.add_argument("--rtol", type=_arg(_tolerance), help="stage one's relative term (default 0)")
    sp.add_argument("--prefix", default=None,
                    help="a prefix the original's module paths have and the port's lack (e.g. 'model.')")
    sp.add_argument("--ignore", action="append", default=[], metavar="PATH",
                    help="a module path (or pattern, or '<output NAME>') not to compare; repeatable")
    sp.add_argument("--no-tf32", action="store_true",
                    help="stage two without TF32 math (for engines built with tf32=False)")
    sp.add_argument("--no-fold", action="store_true",
                    help="stage two without BatchNorm folding (for engines built with fold_batchnorm=False)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    sp.add_argument("--json", help="also write the report as JSON here")
    sp.add_argument("--html", help="also write the report as a self-contained HTML page here (chart, table, "
                    "module tree)")

    sp = add("triton", cmd_triton, "Write a Triton Inference Server model repository for a saved engine: "
             "<name>/config.pbtxt (platform tensorrt_plan, inputs/outputs, batching from the profile, instance "
             "groups) and <name>/<version>/model.plan.")
    sp.add_argument("engine", help="a saved engine (with its .json sidecar)")
    sp.add_argument("--output", "-o", required=True, metavar="REPOSITORY", help="the model repository folder")
    sp.add_argument("--name", help="model name (default: the engine file's name)")
    sp.add_argument("--version", type=int, default=1, help="model version folder (default 1)")
    sp.add_argument("--max-batch-size", type=int, metavar="N",
                    help="Triton's max_batch_size (default: the profile's largest batch when every input and "
                         "output is batched along a dynamic first dimension, else 0; 0 turns batching off)")
    sp.add_argument("--instances", type=int, default=1, help="engine instances per GPU (default 1)")
    sp.add_argument("--gpus", help="GPU indices to place instances on, e.g. 0,1 (default: every GPU)")
    sp.add_argument("--max-queue-delay-us", type=int, default=100,
                    help="how long dynamic batching waits to fill a batch, in microseconds (default 100)")
    sp.add_argument("--allow-rtx", action="store_true",
                    help="write the repository for a TensorRT-RTX plan anyway (Triton's TensorRT backend cannot load it)")

    sp = add("demo", cmd_demo, "The main job: build LeNet-5 from the shipped weights, verify it layer "
             "by layer against PyTorch, classify held-out digits.")
    sp.add_argument("--output", "-o", default="lenet5.engine", help="engine path (default lenet5.engine)")
    return p


def _tolerance(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise ValueError(f"a tolerance is a number >= 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (NetdefError, OSError) as exc:
        # the first line is the error; library messages may add indented context (the user's line)
        print(f"netdef {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # a bad value reached torch/numpy/netdef from the arguments or the model's code
        print(f"netdef {args.command}: error: {_failure(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"netdef {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep the traceback, but never exit 1, which means "compare failed"
        traceback.print_exc()
        print(f"netdef {args.command}: internal error (traceback above): a bug in netdef or in the model's "
              "own code", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
