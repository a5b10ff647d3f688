"""Train the shipped LeNet-5 weights (models/weights/lenet5.safetensors and .wts).

Data: the handwritten digits bundled inside the scikit-learn wheel (UCI optdigits, 8x8),
made 1x28x28 and split by netdef.data.load_digits -- the same function the main job uses,
so preprocessing is defined once. Nothing is downloaded. CPU only, one thread, fixed seeds:
15-30 s on one core. Run from a checkout installed with `pip install -e ".[dev]"`:

    python models/weights/train_lenet.py
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
import torch.nn.functional as F

import netdef.weights
from netdef.data import load_digits
from netdef.models.originals import LeNet5

HERE = Path(__file__).resolve().parent
BATCH = 32
MAX_LR = 3e-3
WEIGHT_DECAY = 1e-4
MAX_ROTATION = 0.26  # radians, about 15 degrees
MAX_SCALE = 0.1  # +-10% size
MAX_SHIFT = 2 / 14  # +-2 pixels, in affine_grid's [-1, 1] units of a 28-pixel image


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random small rotation, scale and shift: 1437 digits alone overfit (about 94% held out)."""
    n = len(x)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * MAX_ROTATION
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * MAX_SCALE
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * MAX_SHIFT
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def train(epochs: int, seed: int) -> tuple[LeNet5, float]:
    """Train from a seeded initialization; returns the model and its held-out accuracy."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = map(torch.from_numpy, load_digits("train"))
    x_test, y_test = map(torch.from_numpy, load_digits("test"))
    print(f"data: scikit-learn {sklearn.__version__} bundled digits (UCI optdigits, 8x8 -> 1x28x28 by "
          f"netdef.data): {len(y_train)} train, {len(y_test)} held out")

    model = LeNet5()
    steps_per_epoch = -(-len(y_train) // BATCH)
    opt = torch.optim.AdamW(model.parameters(), lr=MAX_LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=epochs * steps_per_epoch)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        total = 0.0
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(model(augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}: train loss {total / len(order):.4f}, "
                  f"held-out accuracy {accuracy(model, x_test, y_test):.2%}")
    return model, accuracy(model, x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the summation order, hence the weights, repeat run to run

    start = time.perf_counter()
    model, acc = train(args.epochs, args.seed)
    n_test = len(load_digits("test")[1])
    print(f"held-out accuracy: {acc:.4f} ({round(acc * n_test)}/{n_test}), trained in "
          f"{time.perf_counter() - start:.0f} s")

    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("lenet5.safetensors", "lenet5.wts"):
        path = args.out / name
        netdef.weights.save(state, path)
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
