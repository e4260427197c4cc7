"""Regression with plain PyTorch, searched for the largest validation R²: an MLP on
scikit-learn's Friedman #1 problem (generated locally: y = 10 sin(pi x1 x2) + 20 (x3 -
0.5)^2 + 10 x4 + 5 x5 + noise, five more inputs that do not matter).

    python examples/pytorch/regression.py                # one run with CONFIG
    gridless run examples/pytorch/regression.yaml        # metric: {name: val_r2, mode: max}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import AdamW
from torch.optim.lr_scheduler import CosineAnnealingLR
from torch.utils.data import DataLoader, TensorDataset

import gridless

DATA = Path(os.environ.get("EXAMPLE_DATA", Path.home() / ".cache" / "gridless-examples"))
CONFIG = {"lr": 3e-3, "weight_decay": 1e-4, "hidden": 64, "layers": 2, "epochs": 20}


def make_npz(path: Path) -> Path:
    """2,000 examples of Friedman #1, float targets, standardized inputs and targets."""
    if not path.exists():
        from sklearn.datasets import make_friedman1

        x, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
        x = (x - x.mean(0)) / x.std(0)
        y = (y - y.mean()) / y.std()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x.astype(np.float32), y=y.astype(np.float32), n_train=1500)
        tmp.replace(path)  # atomic: parallel trials may write it at once
    return path


def splits(path: Path) -> tuple[TensorDataset, TensorDataset]:
    with np.load(path) as data:
        n, x, y = int(data["n_train"]), torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    return TensorDataset(x[:n], y[:n]), TensorDataset(x[n:], y[n:])


def mlp(width: int, layers: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(10 if i == 0 else width, width), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(width, 1))


def evaluate(model: nn.Module, data: TensorDataset) -> dict[str, float]:
    x, y = data.tensors
    model.eval()
    with torch.no_grad():
        pred = model(x).squeeze(1)
    mse = F.mse_loss(pred, y).item()
    r2 = 1.0 - ((pred - y) ** 2).sum().item() / ((y - y.mean()) ** 2).sum().item()
    return {"val_loss": mse, "val_rmse": mse**0.5, "val_r2": r2}


def main(trial: gridless.Trial) -> None:
    config = trial.params
    torch.manual_seed(trial.seed)
    train_set, val_set = splits(make_npz(DATA / "friedman1.npz"))
    loader = DataLoader(train_set, batch_size=64, shuffle=True)
    model = mlp(int(config["hidden"]), int(config["layers"]))
    optimizer = AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = CosineAnnealingLR(optimizer, T_max=trial.max_epochs)
    if (state := trial.restore()) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    for epoch in trial.epochs():
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            F.mse_loss(model(x).squeeze(1), y).backward()
            optimizer.step()
        scheduler.step()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        checkpoint = {**state, "scheduler": scheduler.state_dict()}
        trial.report(epoch, checkpoint=checkpoint, **evaluate(model, val_set))


if __name__ == "__main__":
    main(gridless.Trial(CONFIG, max_epochs=CONFIG["epochs"], metric="val_r2"))
