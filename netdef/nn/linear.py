"""Linear and Identity, as in torch.nn.modules.linear."""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef.nn import init
from netdef.nn.module import Module, Parameter


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments, like torch's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.kaiming_uniform((out_features, in_features), in_features, dtype))
        if bias:
            self.bias = Parameter(init.uniform_bias(out_features, in_features, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input: Any) -> Any:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


__all__ = ["Identity", "Linear"]
