"""MNIST LeNet-5 defined in code from a tensorrtx-style .wts file: the network-API tutorial.

tensorrtx's lenet.cpp looks weights up by name in a map read from a .wts file and calls
network->add* by hand. This is the same network, written with netdef.functional: each
call below adds TensorRT layers (print them with --show-calls, or run
`netdef inspect lenet5 --calls`), weights are looked up by their PyTorch names, a wrong
or missing weight is an error that names the key, and the result is checked against
real held-out digits.

Run: python examples/mnist_lenet_wts.py [--weights models/weights/lenet5.wts] [--show-calls]
"""
from __future__ import annotations

import argparse

import numpy as np

import netdef
from netdef import functional as F
from netdef.inspect import describe_network
from netdef.models.lenet import WEIGHTS_DIR

DEFAULT_WEIGHTS = WEIGHTS_DIR / "lenet5.wts"
SHAPES = {  # .wts stores no shapes: the network definition supplies them
    "conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
    "fc1.weight": (120, 400), "fc1.bias": (120,), "fc2.weight": (84, 120), "fc2.bias": (84,),
    "fc3.weight": (10, 84), "fc3.bias": (10,),
}


def weight(w: dict, key: str) -> np.ndarray:
    """The named weight, reshaped; a missing or mis-sized entry names the key."""
    if key not in w:
        raise netdef.WeightsError(f"{w.source}: no weight named {key!r}")
    arr = w[key]
    if arr.size != int(np.prod(SHAPES[key])):
        raise netdef.WeightsError(f"{w.source}: {key} has {arr.size} values, LeNet-5 needs {SHAPES[key]}")
    return arr.reshape(SHAPES[key])


def lenet5(x: netdef.Tensor, w: dict) -> netdef.Tensor:
    """LeNet-5 on (N, 1, 28, 28): every line adds TensorRT layers to the active network."""
    x = F.conv2d(x, weight(w, "conv1.weight"), weight(w, "conv1.bias"), padding=2)  # IConvolutionLayer
    x = F.avg_pool2d(F.relu(x), 2)                                                   # IActivation, IPooling
    x = F.conv2d(x, weight(w, "conv2.weight"), weight(w, "conv2.bias"))
    x = F.avg_pool2d(F.relu(x), 2)
    x = F.flatten(x, 1)                                                              # IShuffleLayer
    x = F.relu(F.linear(x, weight(w, "fc1.weight"), weight(w, "fc1.bias")))       # matmul + bias add
    x = F.relu(F.linear(x, weight(w, "fc2.weight"), weight(w, "fc2.bias")))
    return F.linear(x, weight(w, "fc3.weight"), weight(w, "fc3.bias"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="a .wts file (default: the shipped one)")
    p.add_argument("--show-calls", action="store_true", help="print every layer and its attributes")
    args = p.parse_args(argv)

    w = netdef.weights.load(args.weights)
    net = netdef.trace(lambda x: lenet5(x, w), netdef.Input("x", (("batch", 1, 16, 256), 1, 28, 28)))
    print(describe_network(net, calls=args.show_calls))
    plan = netdef.build(net, progress=False)
    print(f"engine: {len(plan):,} bytes, {plan.metadata['layers']} layers")

    from netdef.data import load_digits

    images, labels = load_digits("test")
    images, labels = images[:256], labels[:256]
    logits = netdef.reference.run(net, {"x": images})["output"].numpy()
    acc = float((logits.argmax(1) == labels).mean())
    print(f"accuracy on {len(labels)} held-out digits (reference runner): {acc:.2%}")
    return 0 if acc > 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
