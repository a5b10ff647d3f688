"""Porting an op an ONNX path rejected: PointPillars' PillarScatter, written with the scatter layer.

PillarScatter writes each pillar's feature vector into its (y, x) cell of a bird's-eye-view
canvas. Exported to ONNX it becomes ScatterND on a zero canvas, which TensorRT 7.1's ONNX
parser could not import, so PointPillars ports ended in a hand-written plugin. With netdef
it is one `F.scatter_nd` — TensorRT's own scatter layer — inside a small
PFN -> scatter -> conv backbone, verified module by module against the torch original.

Run: python examples/pointpillars_scatter.py [--pillars 300] [--grid 64]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import netdef
from netdef import functional as F
from netdef import nn

C = 32  # pillar feature channels


# ---- the torch original -----------------------------------------------------------------
class TorchPFN(torch.nn.Module):
    """Pillar feature net: per-point linear + BN + ReLU, then max over the points of a pillar."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(9, C, bias=False)
        self.norm = torch.nn.BatchNorm1d(C, eps=1e-3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (P, N, 9)
        x = self.linear(features)
        x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        return torch.relu(x).amax(dim=1)  # (P, C)


class TorchPillarScatter(torch.nn.Module):
    def __init__(self, ny: int, nx: int) -> None:
        super().__init__()
        self.ny, self.nx = ny, nx

    def forward(self, pillars: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        canvas = torch.zeros(self.ny * self.nx, C, dtype=pillars.dtype)
        canvas[(coords[:, 0] * self.nx + coords[:, 1]).long()] = pillars
        return canvas.t().reshape(1, C, self.ny, self.nx)


class TorchTinyPointPillars(torch.nn.Module):
    def __init__(self, ny: int, nx: int) -> None:
        super().__init__()
        self.pfn = TorchPFN()
        self.scatter = TorchPillarScatter(ny, nx)
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(C, 64, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(64, eps=1e-3),
            torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1, bias=False),
            torch.nn.BatchNorm2d(64, eps=1e-3), torch.nn.ReLU())

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.scatter(self.pfn(features), coords))


# ---- the netdef port: same structure, same state_dict names ------------------------------
class PFN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(9, C, bias=False)
        self.norm = nn.BatchNorm1d(C, eps=1e-3)

    def forward(self, features):
        x = self.linear(features)
        x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)
        return F.amax(F.relu(x), dim=1)


class PillarScatter(nn.Module):
    """The op the ONNX route rejected: one TensorRT scatter layer (ScatterMode.ND)."""

    def __init__(self, ny: int, nx: int) -> None:
        super().__init__()
        self.ny, self.nx = ny, nx

    def forward(self, pillars, coords):
        canvas = F.constant(np.zeros((self.ny * self.nx, C), np.float32), dtype=pillars.dtype)
        cell = coords[:, 0:1] * self.nx + coords[:, 1:2]  # (P, 1) flat cell index
        canvas = F.scatter_nd(canvas, cell, pillars)  # canvas[cell[i]] = pillars[i]
        return canvas.transpose(0, 1).reshape(1, C, self.ny, self.nx)


class TinyPointPillars(nn.Module):
    def __init__(self, ny: int, nx: int) -> None:
        super().__init__()
        self.pfn = PFN()
        self.scatter = PillarScatter(ny, nx)
        self.backbone = nn.Sequential(
            nn.Conv2d(C, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64, eps=1e-3), nn.ReLU())

    def forward(self, features, coords):
        return self.backbone(self.scatter(self.pfn(features), coords))


def make_inputs(pillars: int, grid: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random point features and distinct pillar cells (duplicates would make scatter order-dependent)."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(pillars, 16, 9, generator=gen)
    cells = torch.randperm(grid * grid, generator=gen)[:pillars]
    coords = torch.stack([cells // grid, cells % grid], dim=1).to(torch.int32)
    return features, coords


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pillars", type=int, default=300, help="non-empty pillars (default 300)")
    p.add_argument("--grid", type=int, default=64, help="BEV grid size (default 64x64)")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    original = TorchTinyPointPillars(args.grid, args.grid).eval()
    with torch.no_grad():  # random BatchNorm statistics, so folding mistakes cannot hide
        for m in original.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    model = TinyPointPillars(args.grid, args.grid)
    model.load_state_dict(original.state_dict())

    features, coords = make_inputs(args.pillars, args.grid)
    report = netdef.compare(original, model, (features, coords), input_names=["features", "coords"])
    print(report)
    scatter_layers = [layer.name for layer in netdef.trace(
        model, netdef.Input("features", tuple(features.shape)),
        netdef.Input("coords", tuple(coords.shape), "int32")).layers if layer.type.name == "SCATTER"]
    print(f"scatter layers in the TensorRT network: {scatter_layers}")
    plan = netdef.build(model, netdef.Input("features", tuple(features.shape)),
                        netdef.Input("coords", tuple(coords.shape), "int32"), progress=False)
    print(f"engine: {len(plan):,} bytes")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
