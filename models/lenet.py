"""LeNet-5 for 1x28x28 digits; state_dict names equal `netdef.models.originals.LeNet5`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from netdef import nn

# Trained weights (lenet5.safetensors, lenet5.wts) ship inside the package as package data, so the
# main job works from a regular install too; weights/README.md there says how they were trained.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and average pooling; returns the 10 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(2, 2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(400, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Any) -> Any:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)
