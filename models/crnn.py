"""CRNN for text-line recognition (Shi et al. 2015), as in crnn.pytorch and tensorrtx's crnn:
a VGG-style conv stack turns a 32-pixel-high image into a sequence of column features, two
bidirectional LSTMs (each followed by a linear embedding) read it, and each column gets
CTC class scores: output (width steps, batch, classes), blank = class 0.

Module names are crnn.pytorch's (cnn.conv0 ... cnn.batchnorm6, rnn.0.rnn, rnn.0.embedding,
rnn.1...), so its checkpoints load unchanged. The LSTMs are TensorRT loops, so the image
width (and with it the sequence length) can be a dynamic dimension of the engine.
"""
from __future__ import annotations

from typing import Any

from netdef import functional as F
from netdef import network, nn

# channels, kernel, padding of conv0..conv6; BatchNorm after conv2, conv4 and conv6
_CHANNELS = (64, 128, 256, 256, 512, 512, 512)
_KERNELS = (3, 3, 3, 3, 3, 3, 2)
_PADDINGS = (1, 1, 1, 1, 1, 1, 0)
_BATCHNORM = (2, 4, 6)
# a pooling layer after these convs: (name, kernel, stride, padding)
_POOLS = {0: ("pooling0", 2, 2, 0), 1: ("pooling1", 2, 2, 0),
          3: ("pooling2", (2, 2), (2, 1), (0, 1)), 5: ("pooling3", (2, 2), (2, 1), (0, 1))}


class BidirectionalLSTM(nn.Module):
    def __init__(self, nIn: int, nHidden: int, nOut: int) -> None:
        super().__init__()
        self.rnn = nn.LSTM(nIn, nHidden, bidirectional=True)
        self.embedding = nn.Linear(nHidden * 2, nOut)

    def forward(self, input: Any) -> Any:
        recurrent, _ = self.rnn(input)
        steps, batch = recurrent.size(0), recurrent.size(1)
        output = self.embedding(F.reshape(recurrent, -1, recurrent.shape[-1]))  # (steps * batch, nOut)
        return F.reshape(output, steps, batch, self.embedding.out_features)


def conv_stack(nc: int = 1, leakyRelu: bool = False) -> nn.Sequential:
    cnn = nn.Sequential()
    for i, (n_out, k, p) in enumerate(zip(_CHANNELS, _KERNELS, _PADDINGS)):
        n_in = nc if i == 0 else _CHANNELS[i - 1]
        cnn.add_module(f"conv{i}", nn.Conv2d(n_in, n_out, k, 1, p))
        if i in _BATCHNORM:
            cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(n_out))
        cnn.add_module(f"relu{i}", nn.LeakyReLU(0.2, inplace=True) if leakyRelu else nn.ReLU(True))
        if i in _POOLS:
            name, kernel, stride, padding = _POOLS[i]
            cnn.add_module(name, nn.MaxPool2d(kernel, stride, padding))
    return cnn


class CRNN(nn.Module):
    """imgH: image height (a multiple of 16; 32 gives a 1-pixel-high feature map); nc: image
    channels; nclass: CTC classes including the blank; nh: LSTM hidden size."""

    def __init__(self, imgH: int = 32, nc: int = 1, nclass: int = 37, nh: int = 256, leakyRelu: bool = False) -> None:
        super().__init__()
        if imgH % 16:
            raise ValueError(f"imgH has to be a multiple of 16, got {imgH}")
        self.cnn = conv_stack(nc, leakyRelu)
        self.rnn = nn.Sequential(BidirectionalLSTM(512, nh, nh), BidirectionalLSTM(nh, nh, nclass))

    def forward(self, input: Any) -> Any:
        conv = self.cnn(input)
        if conv.shape[2] != 1:
            network.current().fail(f"CRNN: the conv features must be 1 pixel high, got {conv.shape[2]} "
                                   f"(an input {input.shape[2]} pixels high; use 32)")
        conv = F.permute(F.squeeze(conv, 2), 2, 0, 1)  # (width steps, batch, channels)
        return self.rnn(conv)


def crnn() -> CRNN:
    """crnn.pytorch's configuration: 1x32xW grey images, 37 classes (blank, 0-9, a-z), 256 hidden."""
    return CRNN()


__all__ = ["CRNN", "BidirectionalLSTM", "conv_stack", "crnn"]
