"""The model and the local steps of the app: a tiny CNN on 32x32 images, plain SGD."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torchvision.transforms import v2

from flickr_mammal.classes import CLASS_NAMES

TRANSFORM = v2.Compose([v2.PILToTensor(), v2.Resize((32, 32), antialias=True),
                        v2.ToDtype(torch.float32, scale=True)])


class Net(nn.Module):
    """Small enough that a round on a CPU takes well under a second for a few hundred images."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train(net: Net, data: Dataset | IterableDataset, epochs: int = 1, lr: float = 0.05,
          batch_size: int = 16) -> float:
    """Local SGD epochs; returns the mean training loss of the last epoch."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    total, seen = 0.0, 0
    for _ in range(epochs):
        total, seen = 0.0, 0
        for images, labels in DataLoader(data, batch_size=batch_size):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(labels), seen + len(labels)
    return total / max(seen, 1)


@torch.no_grad()
def evaluate(net: Net, data: Dataset | IterableDataset,
             batch_size: int = 64) -> tuple[float, float]:
    """(mean loss, accuracy) of ``net`` on ``data``."""
    net.eval()
    loss, correct, seen = 0.0, 0, 0
    for images, labels in DataLoader(data, batch_size=batch_size):
        logits = net(images)
        loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return loss / max(seen, 1), correct / max(seen, 1)
