"""`train_plain.py` made a study: the same PyTorch script (a small CNN on 8x8 digit
images, its own Dataset over an npz file, AdamW, a cosine schedule) after the few lines
that hand it to gridless (the diff is in docs/user-code.md). It still runs as a script:

    python examples/pytorch/train.py            # one run with CONFIG, as before
    gridless run examples/pytorch/study.yaml    # a coarse-to-fine search of it
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
from torch.utils.data import DataLoader, Dataset

import gridless

DATA = Path(os.environ.get("EXAMPLE_DATA", Path.home() / ".cache" / "gridless-examples"))
CONFIG = {"lr": 3e-3, "weight_decay": 1e-4, "hidden": 64, "dropout": 0.1, "epochs": 8}


def make_npz(path: Path) -> Path:
    """Write scikit-learn's bundled digits as (N, 1, 8, 8) images with a fixed split."""
    if not path.exists():
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x = (x[order] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y[order].astype(np.int64), n_train=1400)
        tmp.replace(path)  # atomic: parallel trials may write it at once
    return path


class DigitsNpz(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """One split of the npz: the first `n_train` rows train, 200 validate, the rest test."""

    def __init__(self, path: Path, split: str) -> None:
        with np.load(path) as data:
            n = int(data["n_train"])
            splits = {"train": slice(0, n), "val": slice(n, n + 200), "test": slice(n + 200, None)}
            rows = splits[split]
            self.x = torch.from_numpy(data["x"][rows])
            self.y = torch.from_numpy(data["y"][rows])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class SmallCNN(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


def evaluate(model: nn.Module, loader: DataLoader, device: str) -> tuple[float, float]:
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
    return loss / seen, correct / seen


def main(trial: gridless.Trial) -> None:
    config, device = trial.params, trial.device
    torch.manual_seed(0)
    path = make_npz(DATA / "digits.npz")
    train_loader = DataLoader(DigitsNpz(path, "train"), batch_size=64, shuffle=True)
    val_loader = DataLoader(DigitsNpz(path, "val"), batch_size=256)
    model = SmallCNN(int(config["hidden"]), float(config["dropout"])).to(device)
    optimizer = AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    scheduler = CosineAnnealingLR(optimizer, T_max=trial.max_epochs)
    if (state := trial.restore()) is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    trial.watch(model, optimizer)  # babysitting: update ratios, layer statistics, warnings
    for epoch in trial.epochs():
        model.train()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        scheduler.step()
        val_loss, val_accuracy = evaluate(model, val_loader, device)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        checkpoint = {**state, "scheduler": scheduler.state_dict()}
        trial.report(epoch, checkpoint=checkpoint, val_loss=val_loss, val_accuracy=val_accuracy)


if __name__ == "__main__":
    main(gridless.Trial(CONFIG, max_epochs=CONFIG["epochs"], checkpoint_dir="checkpoints"))
