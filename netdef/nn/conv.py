"""Convolution modules with torch.nn's signatures and state_dict names (weight, bias)."""
from __future__ import annotations

import math
from typing import Any

from netdef import functional as F
from netdef.functional._core import tuple_n
from netdef.nn import init
from netdef.nn.module import Module, Parameter


class _ConvNd(Module):
    _n = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"padding_mode={padding_mode!r}: only 'zeros' is supported; "
                                      "pad explicitly with netdef.functional.pad")
        n = self._n
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tuple_n(kernel_size, n)
        self.stride, self.dilation = tuple_n(stride, n), tuple_n(dilation, n)
        self.padding = padding if isinstance(padding, str) else tuple_n(padding, n)
        self.groups, self.padding_mode = groups, padding_mode
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        self.weight = Parameter(init.kaiming_uniform((out_channels, in_channels // groups, *self.kernel_size), fan_in))
        self.bias = Parameter(init.uniform_bias(out_channels, fan_in)) if bias else None
        if not bias:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0,) * self._n,):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    _n = 2

    def forward(self, input: Any) -> Any:
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

__all__ = ["Conv2d"]
