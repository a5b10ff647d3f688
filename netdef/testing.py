"""Random weights for checking a port without a checkpoint (nothing is ever downloaded).

A correct port matches its original on any weights, but all-default weights hide loading
bugs (zero biases, unit BatchNorm statistics) and random ones make deep networks' activations
explode. These give every parameter and BatchNorm statistic a random value and then scale
each convolution and linear layer so its output has unit standard deviation, as a trained
network's activations are bounded. Used by the tests, the mutation suite and
benchmarks/tolerances.py.
"""
from __future__ import annotations

from typing import Any


def randomize(torch_model: Any, seed: int = 0) -> Any:
    """Random BatchNorm statistics and affine parameters, so folding bugs cannot hide.

    running_mean ~ N(0, 0.1), running_var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1).
    Returns the model in eval mode.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:  # None without track_running_stats
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return torch_model.eval()


def random_original(torch_model: Any, example: Any, seed: int = 0) -> Any:
    """Randomize every parameter the comparison depends on, then rescale each conv/linear.

    BatchNorm statistics and affines come from `randomize`; LayerNorm affines and parameters
    that torch initialises to zero (biases, ViT's class token and head) get random values so
    they cannot hide a loading bug. Then one forward pass over `example` (a tensor, or a tuple of
    a model's inputs) scales each
    Conv2d/Linear so its output has unit standard deviation (LSUV-style): with random
    BatchNorm statistics a ResNet-152's residual stream would otherwise grow to ~1e10 and
    overflow float16, which a trained network never does.
    """
    import torch

    randomize(torch_model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in torch_model.modules():
            if isinstance(m, torch.nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        for p in torch_model.parameters():
            if not torch.any(p):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)

        def unit_std(module: Any, _inputs: Any, output: Any) -> Any:
            s = output.std()
            module.weight.div_(s)
            if module.bias is not None:
                module.bias.div_(s)
            return output / s

        scaled = (torch.nn.Conv2d, torch.nn.Linear)
        handles = [m.register_forward_hook(unit_std) for m in torch_model.modules() if isinstance(m, scaled)]
        try:
            torch_model(*example) if isinstance(example, tuple) else torch_model(example)
        finally:
            for h in handles:
                h.remove()
    return torch_model
