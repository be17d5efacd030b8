"""benchmarks/bench_seeds.py's CPU limit: the FLOPs it counts for a training step, by hand, and
the floor it derives from them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_seeds import cpu_floor, matmul_flops_per_second, train_flops  # noqa: E402


class OneConv(nn.Module):
    """A conv and a linear layer, small enough to count their FLOPs by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.Flatten())
        self.classifier = nn.Linear(4 * 8 * 8, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_train_flops_counts_forward_and_backward_by_hand():
    images = 3
    conv = 2 * images * 4 * 8 * 8 * 9  # 2 FLOPs a multiply-add; 4 x 8 x 8 outputs, 3x3x1
    linear = 2 * images * 256 * 10
    # forward conv + linear; backward: the linear's input and weight gradients, the conv's weight
    # gradient only (the images need none)
    assert train_flops(OneConv(), images, (1, 8, 8)) == conv + linear + 2 * linear + conv


def test_train_flops_leaves_no_gradient_behind():
    model = OneConv()
    train_flops(model, 2, (1, 8, 8))
    assert all(p.grad is None for p in model.parameters())


def test_the_floor_is_s_seeds_flops_at_the_cores_rate_over_the_one_seed_step():
    # 390 MFLOP a step, 95 GFLOP/s, an 8.3 ms step: 3 seeds' FLOPs alone take 12.3 ms
    assert cpu_floor(8.3e-3, 390e6, 95e9, 3) == pytest.approx(3 * 390e6 / 95e9 / 8.3e-3)
    assert cpu_floor(1.0, 1e9, 1e9, 2) == 2.0


def test_the_matmul_rate_is_a_rate():
    rate = matmul_flops_per_second(size=64, repeats=2)
    assert 1e6 < rate < 1e14
