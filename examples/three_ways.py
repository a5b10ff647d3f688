"""One small network written three ways: raw TensorRT network API, netdef.functional, netdef.nn.

All three build the same INetworkDefinition — convolution, activation, pooling, shuffle,
constant + matrix multiply + elementwise for the linear layer — which this script prints
side by side, then checks that the three networks compute identical outputs.

Run: python examples/three_ways.py
"""
from __future__ import annotations

import numpy as np

import netdef
from netdef import backend
from netdef import functional as F
from netdef import nn

SHAPE = (("batch", 1, 4, 16), 1, 8, 8)  # dynamic batch 1..16, one 8x8 channel


def make_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32) * 0.5,
            "conv.bias": rng.standard_normal(4).astype(np.float32) * 0.1,
            "fc.weight": rng.standard_normal((10, 64)).astype(np.float32) * 0.1,
            "fc.bias": rng.standard_normal(10).astype(np.float32) * 0.1}


# ---- 1. the raw TensorRT network API ----------------------------------------------------
def raw_network(w: dict[str, np.ndarray]):
    """Every call by hand. TensorRT keeps pointers to the weight arrays: `w` must outlive the build."""
    trt = backend.trt()
    builder = backend.builder()  # netdef.build can build networks made by this builder
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("x", trt.float32, (-1, 1, 8, 8))
    conv = network.add_convolution_nd(x, 4, (3, 3), trt.Weights(w["conv.weight"]), trt.Weights(w["conv.bias"]))
    conv.padding_nd = (1, 1)
    relu = network.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    pool = network.add_pooling_nd(relu.get_output(0), trt.PoolingType.MAX, (2, 2))
    pool.stride_nd = (2, 2)
    flat = network.add_shuffle(pool.get_output(0))
    flat.zero_is_placeholder = False  # a 0 in reshape_dims means size 0, not "copy" (numpy semantics)
    flat.reshape_dims = (-1, 64)  # -1 is inferred at run time: the dynamic batch
    weight = network.add_constant((10, 64), trt.Weights(w["fc.weight"]))
    matmul = network.add_matrix_multiply(flat.get_output(0), trt.MatrixOperation.NONE,
                                         weight.get_output(0), trt.MatrixOperation.TRANSPOSE)
    bias = network.add_constant((1, 10), trt.Weights(w["fc.bias"]))
    fc = network.add_elementwise(matmul.get_output(0), bias.get_output(0), trt.ElementWiseOperation.SUM)
    for layer, name in [(conv, "conv"), (relu, "relu"), (pool, "pool"), (flat, "flatten"),
                        (weight, "fc/weight"), (matmul, "fc/matmul"), (bias, "fc/bias"), (fc, "fc")]:
        layer.name = name
    fc.get_output(0).name = "output"
    network.mark_output(fc.get_output(0))
    return network


# ---- 2. netdef.functional: one call per op, weights passed explicitly -------------------
def functional_forward(x: netdef.Tensor, w: dict[str, np.ndarray]) -> netdef.Tensor:
    x = F.max_pool2d(F.relu(F.conv2d(x, w["conv.weight"], w["conv.bias"], padding=1)), 2)
    return F.linear(F.flatten(x, 1), w["fc.weight"], w["fc.bias"])


# ---- 3. netdef.nn: modules with torch.nn's names; weights loaded by state_dict key -----------
class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


def three_networks(w: dict[str, np.ndarray]) -> dict[str, object]:
    model = Net()
    model.load_state_dict(w)
    return {"raw TensorRT API": raw_network(w),
            "netdef.functional": netdef.trace(lambda x: functional_forward(x, w), netdef.Input("x", SHAPE)),
            "netdef.nn": netdef.trace(model, netdef.Input("x", SHAPE))}


def layer_rows(network) -> list[str]:
    network = getattr(network, "network", network)
    return [f"{network.get_layer(i).type.name:<15} {network.get_layer(i).name}" for i in range(network.num_layers)]


def main() -> int:
    w = make_weights()
    nets = three_networks(w)
    columns = {k: layer_rows(v) for k, v in nets.items()}
    width = max(len(r) for rows in columns.values() for r in rows) + 2
    print("".join(f"{k:<{width}}" for k in columns))
    for row in zip(*columns.values()):
        print("".join(f"{r:<{width}}" for r in row))
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8)).astype(np.float32)
    outs = {k: netdef.reference.run(v, {"x": x})["output"].numpy() for k, v in nets.items()}
    ref = outs["raw TensorRT API"]
    same = all(np.array_equal(o, ref) for o in outs.values())
    print(f"\noutputs identical across the three: {same} (max |output| = {np.abs(ref).max():.3f})")
    for name, v in nets.items():  # the raw network needs its input range for the build profile
        plan = netdef.build(v, *([] if isinstance(v, netdef.Network) else [netdef.Input("x", SHAPE)]),
                            progress=False)
        print(f"{name}: engine of {len(plan):,} bytes")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
